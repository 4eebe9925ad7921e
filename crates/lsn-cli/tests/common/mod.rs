//! Helpers shared by the CLI's integration tests: running `lsn`, tiny random models, small text files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn lsn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lsn"))
}

/// Runs `lsn args` and returns (success, stdout, stderr); a panic is always a failure.
pub fn run(args: &[&str]) -> (bool, String, String) {
    output(lsn().args(args).output().expect("lsn runs"))
}

pub fn output(out: Output) -> (bool, String, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "lsn panicked: {stderr}");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// Succeeds; returns (stdout, stderr).
pub fn ok(args: &[&str]) -> (String, String) {
    let (ok, stdout, stderr) = run(args);
    assert!(ok, "lsn {args:?} failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// Fails, with exactly one `error:` line on stderr containing every one of `needles`; returns that line.
pub fn fails_with(args: &[&str], needles: &[&str]) -> String {
    let (ok, _, stderr) = run(args);
    assert!(!ok, "lsn {args:?} succeeded");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "expected one error line, got: {stderr}");
    for n in needles {
        assert!(errors[0].contains(n), "error line lacks {n:?}: {}", errors[0]);
    }
    errors[0].to_owned()
}

/// `lsn random-model PRESET --seed SEED --out ROOT/NAME` (config.json, model.safetensors, byte-level tokenizer).
pub fn random_model(root: &Path, name: &str, preset: &str, seed: u64) -> PathBuf {
    let dir = root.join(name);
    ok(&["random-model", preset, "--seed", &seed.to_string(), "--out", dir.to_str().unwrap()]);
    dir
}

/// A temporary directory holding a tiny random Gemma-3 model (`m`, seed 5) and a data directory written by the
/// test's own writer: what the `lsn eval` and `lsn train` tests run on.
pub struct Workspace {
    _t: tempfile::TempDir,
    pub root: PathBuf,
    pub model: PathBuf,
    pub data: PathBuf,
}

impl Workspace {
    pub fn new(write_data: impl FnOnce(&Path) -> PathBuf) -> Self {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_path_buf();
        let model = random_model(&root, "m", "tiny-gemma3", 5);
        let data = write_data(&root);
        Self { _t: t, root, model, data }
    }

    /// `CMD --model M --data-dir D --out OUT EXTRA…`.
    pub fn args(&self, cmd: &str, out: &Path, extra: &[&str]) -> Vec<String> {
        let base = [cmd, "--model", s(&self.model), "--data-dir", s(&self.data), "--out", s(out)];
        base.iter().chain(extra).map(|a| a.to_string()).collect()
    }
}

pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A word-level `tokenizer.json` over the words `w1`…`w299` (id = the number; `<unk>` 0), without BOS.
pub fn word_level_tokenizer() -> String {
    let vocab: Vec<String> =
        std::iter::once("\"<unk>\":0".to_owned()).chain((1..300).map(|i| format!("\"w{i}\":{i}"))).collect();
    format!(
        r#"{{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
        "pre_tokenizer":{{"type":"Whitespace"}},"post_processor":null,"decoder":null,
        "model":{{"type":"WordLevel","vocab":{{{}}},"unk_token":"<unk>"}}}}"#,
        vocab.join(",")
    )
}

/// A text file of `docs` short pseudo-random "sentences" (deterministic).
pub fn text_file(root: &Path, name: &str, docs: usize) -> PathBuf {
    let mut x = 12345u64;
    let text: String = (0..docs)
        .map(|_| {
            (0..8)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    format!("w{}", 1 + (x >> 33) % 299)
                })
                .collect::<Vec<_>>()
                .join(" ")
                + "\n"
        })
        .collect();
    let file = root.join(name);
    std::fs::write(&file, text).unwrap();
    file
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
