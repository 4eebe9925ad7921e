//! `lsn capture` killed with SIGKILL mid-run and started again ends with statistics byte-identical to an
//! uninterrupted run — on a tiny random model with its byte-level tokenizer, so the test needs no downloads.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::lsn;

/// A tiny Gemma 3 checkpoint (with its byte-level tokenizer) and a text file of 300 short documents.
fn setup(root: &Path) -> (PathBuf, PathBuf) {
    (common::random_model(root, "model", "tiny-gemma3", 3), common::text_file(root, "xx.txt", 300))
}

fn capture(model: &Path, text: &Path, run: &Path) -> Command {
    let mut c = lsn();
    c.args(["capture", "--lang", "en", "--corpus", "none", "--row-len", "16", "--batch-rows", "1"])
        .args(["--checkpoint-every", "1", "--model"])
        .arg(model)
        .arg("--text")
        .arg(format!("en={}", text.display()))
        .arg("--run")
        .arg(run);
    c
}

/// The "N token-passes" figure of the summary line.
fn token_passes(stdout: &str) -> u64 {
    let before = stdout.split(" token-passes").next().unwrap();
    before.rsplit('(').next().unwrap().trim().parse().unwrap_or_else(|_| panic!("no token count in {stdout:?}"))
}

#[test]
fn sigkill_then_rerun_gives_identical_statistics() {
    let t = tempfile::tempdir().unwrap();
    let (model, text) = setup(t.path());

    let clean = t.path().join("clean");
    let out = capture(&model, &text, &clean).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let full = token_passes(&String::from_utf8_lossy(&out.stdout));
    let reference = std::fs::read(clean.join("stats/en.safetensors")).unwrap();

    let run = t.path().join("killed");
    let partial = run.join("stats/en.partial.safetensors");
    let mut child = capture(&model, &text, &run).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    while !partial.exists() {
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        assert!(child.try_wait().unwrap().is_none(), "capture ended before it could be killed");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(!run.join("stats/en.safetensors").exists(), "the kill came too late: the capture had finished");
    assert!(partial.exists());

    let out = capture(&model, &text, &run).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let resumed = token_passes(&String::from_utf8_lossy(&out.stdout));
    assert!(resumed < full, "the rerun did not resume: {resumed} of {full} token-passes");
    assert!(std::fs::read(run.join("stats/en.safetensors")).unwrap() == reference, "statistics differ");
    assert!(!partial.exists());
    assert_eq!(std::fs::read(run.join("stats/en.json")).unwrap(), std::fs::read(clean.join("stats/en.json")).unwrap());
}
