//! Every stage is as hard to corrupt as capture: each command that writes a directory takes that directory's one
//! lock (and keeps out of a running study's tree), consumes only files made with its own model, split and data, and
//! writes all of its outputs or none. On a tiny random model and a data directory written here.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{fails_with, lsn, ok, random_model, run, s, strs, text_file};
use serde_json::Value;

/// XNLI en dev (24 rows) and test (12 rows).
fn data_dir(root: &Path) -> PathBuf {
    let dir = root.join("data");
    std::fs::create_dir_all(dir.join("xnli")).unwrap();
    let labels = ["entailment", "neutral", "contradiction"];
    let words = ["cat", "dog", "sun", "tree"];
    for (split, n) in [("dev", 24), ("test", 12)] {
        let mut body = "premise\thypothesis\tlabel\tgenre\n".to_string();
        for i in 0..n {
            body += &format!(
                "The {} sees {i}.\tA {} is {split}.\t{}\tg\n",
                words[i % 4],
                words[(i + 1) % 4],
                labels[i % 3]
            );
        }
        std::fs::write(dir.join(format!("xnli/xnli.en.{split}.tsv")), body).unwrap();
    }
    dir
}

fn json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Holds the lock file `name` of `dir` the way a live lsn process `pid` does (an OS lock, and a record naming it),
/// until dropped.
fn hold(dir: &Path, name: &str, pid: u32, command: &str) -> std::fs::File {
    std::fs::create_dir_all(dir).unwrap();
    let mut f =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(dir.join(name)).unwrap();
    f.try_lock().unwrap();
    let record = serde_json::json!({"pid": pid, "command": command, "since": 0});
    f.write_all(record.to_string().as_bytes()).unwrap();
    f
}

const TRAIN: [&str; 8] = ["--task", "xnli", "--limit", "8", "--batch", "4", "--epochs", "1"];

#[test]
fn every_writing_command_takes_the_one_lock_of_its_directory() {
    let ws = common::Workspace::new(data_dir);
    let adapter = ws.root.join("adapter");
    ok(&strs(&ws.args("train", &adapter, &TRAIN)));
    // A busy directory: every command that writes into it is refused, naming the holder.
    let busy = ws.root.join("busy");
    let _held = hold(&busy, ".lsn.lock", std::process::id(), "lsn something --out busy");
    std::fs::create_dir_all(busy.join("neurons")).unwrap();
    let sel = serde_json::json!({"method": "lape-mondal", "params": {}, "layers": 2, "intermediate": 128,
        "languages": ["en", "fr"], "m": 1, "candidates": 1, "thresholds": {}, "neurons": {"en": [[0, 1]], "fr": [[1, 2]]},
        "counts": {"en": 1, "fr": 1}, "per_layer": {"en": [1, 0], "fr": [0, 1]}});
    std::fs::write(busy.join("neurons/lape-mondal.json"), sel.to_string()).unwrap();
    let text = text_file(&ws.root, "en.txt", 20);
    let (m, b, a) = (s(&ws.model), s(&busy), s(&adapter));
    let en = format!("en={}", text.display());
    let cases: Vec<Vec<String>> = vec![
        ws.args("train", &busy, &TRAIN),
        ws.args("eval", &busy, &["--task", "xnli", "--lang", "en", "--limit", "2"]),
        ["merge-adapter", "--model", m, "--adapter", a, "--out", b].map(String::from).to_vec(),
        ["capture", "--model", m, "--lang", "en", "--corpus", "none", "--text", &en, "--run", b]
            .map(String::from)
            .to_vec(),
        ["select", "--run", b, "--lang", "en"].map(String::from).to_vec(),
        ["ppxc", "--run", b, "--model", m].map(String::from).to_vec(),
    ];
    let me = format!("in use by pid {}", std::process::id());
    for args in &cases {
        fails_with(&strs(args), &[&me, "lsn something --out busy"]);
    }
    let left: Vec<String> =
        std::fs::read_dir(&busy).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(left.len(), 2, "a refused command wrote into the busy directory: {left:?}");

    // A study running in a directory (another process's `lsn reproduce`) guards its whole tree.
    let study = ws.root.join("study");
    // (Held by a process that is neither the command nor its parent, as a user's own command would find it: the
    // study's child processes are part of it.)
    let _study = hold(&study, ".reproduce.lock", 4_000_000, "lsn reproduce --out study");
    let inside = [
        ws.args("train", &study.join("train/x"), &TRAIN),
        ws.args("eval", &study.join("eval/x"), &["--task", "xnli", "--lang", "en", "--limit", "2"]),
        ["capture", "--model", m, "--lang", "en", "--corpus", "none", "--text", &en, "--run", s(&study)]
            .map(String::from)
            .to_vec(),
    ];
    for args in &inside {
        fails_with(&strs(args), &["running a study", "lsn reproduce --out study"]);
    }
    assert_eq!(std::fs::read_dir(&study).unwrap().count(), 1, "a refused command wrote into the study");

    // Two trainings into one directory at once, with different learning rates: one adapter, never a mix.
    let shared = ws.root.join("shared");
    let slow =
        ["--task", "xnli", "--limit", "8", "--batch", "1", "--epochs", "6", "--checkpoint-every", "1", "--lr", "1e-4"];
    let mut first =
        lsn().args(ws.args("train", &shared, &slow)).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    while std::fs::read(shared.join(".lsn.lock")).map(|b| b.is_empty()).unwrap_or(true) {
        assert!(t0.elapsed() < Duration::from_secs(60), "the first training never took the lock");
        std::thread::sleep(Duration::from_millis(2));
    }
    let (okay, _, stderr) = run(&strs(&ws.args("train", &shared, &[&TRAIN[..], &["--lr", "2e-4"]].concat())));
    assert!(!okay, "a second training into a busy --out succeeded");
    // Refused while the first runs, or, if the first was already done, as another setting of a finished adapter.
    assert!(stderr.contains("in use by pid") || stderr.contains("other settings"), "{stderr}");
    assert!(first.wait().unwrap().success(), "the first training failed");
    let lr = json(&shared.join("train.json"))["run"]["spec"]["lr"].as_f64().unwrap();
    assert!((lr - 1e-4).abs() < 1e-9, "the adapter is not the first training's: lr {lr}");
}

#[test]
fn adapters_are_checked_against_the_model_and_a_finished_one_is_kept() {
    let ws = common::Workspace::new(data_dir);
    let adapter = ws.root.join("adapter");
    ok(&strs(&ws.args("train", &adapter, &TRAIN)));
    let weights = std::fs::read(adapter.join("adapter_model.safetensors")).unwrap();
    // The same shapes, other weights.
    let other = random_model(&ws.root, "other", "tiny-gemma3", 6);
    let (a, o) = (s(&adapter), s(&other));
    let out = ws.root.join("eval-other");
    let eval = [
        "eval",
        "--model",
        o,
        "--data-dir",
        s(&ws.data),
        "--adapter",
        a,
        "--task",
        "xnli",
        "--lang",
        "en",
        "--out",
        s(&out),
    ];
    fails_with(&eval, &["was made with model", "differ in weights", "--model it was trained on"]);
    let merged = ws.root.join("merged");
    fails_with(
        &["merge-adapter", "--model", o, "--adapter", a, "--out", s(&merged)],
        &["was made with model", "weights"],
    );
    assert!(!out.exists() && !merged.exists(), "a refused command left its --out behind");
    // The right model merges; the same merge again finds it done.
    ok(&["merge-adapter", "--model", s(&ws.model), "--adapter", a, "--out", s(&merged)]);
    let (stdout, _) = ok(&["merge-adapter", "--model", s(&ws.model), "--adapter", a, "--out", s(&merged)]);
    assert!(stdout.contains("nothing to do"), "{stdout}");

    // A finished adapter whose checkpoint was deleted: another setting is refused, naming it; the same is done.
    std::fs::remove_file(adapter.join("checkpoint.safetensors")).unwrap();
    fails_with(
        &strs(&ws.args("train", &adapter, &[&TRAIN[..], &["--lr", "3e-3"]].concat())),
        &["other settings", "lr"],
    );
    let (stdout, _) = ok(&strs(&ws.args("train", &adapter, &TRAIN)));
    assert!(stdout.contains("nothing to do"), "{stdout}");
    assert_eq!(std::fs::read(adapter.join("adapter_model.safetensors")).unwrap(), weights, "the adapter changed");
}

#[test]
fn evaluations_of_other_splits_data_or_models_are_not_compared_and_outputs_are_all_or_nothing() {
    let ws = common::Workspace::new(data_dir);
    let eval = |out: &str, model: &Path, data: &Path, extra: &[&str]| -> PathBuf {
        let out = ws.root.join(out);
        let base =
            ["eval", "--model", s(model), "--data-dir", s(data), "--task", "xnli", "--lang", "en", "--out", s(&out)];
        ok(&[&base[..], &["--limit", "12"], extra].concat());
        out.join("results.json")
    };
    let test = eval("test", &ws.model, &ws.data, &[]);
    let dev = eval("dev", &ws.model, &ws.data, &["--split", "dev"]);
    fails_with(&["compare", s(&test), s(&dev)], &["the test split, another the dev split"]);
    // The same split in another version: one hypothesis edited.
    let data2 = ws.root.join("data2");
    std::fs::create_dir_all(data2.join("xnli")).unwrap();
    for split in ["dev", "test"] {
        let f = format!("xnli/xnli.en.{split}.tsv");
        std::fs::write(
            data2.join(&f),
            std::fs::read_to_string(ws.data.join(&f)).unwrap().replacen("sees 0", "saw 0", 1),
        )
        .unwrap();
    }
    let edited = eval("edited", &ws.model, &data2, &[]);
    fails_with(&["compare", s(&test), s(&edited)], &["en: the runs read different data", "same data files"]);
    let other = random_model(&ws.root, "other", "tiny-gemma3", 6);
    let theirs = eval("theirs", &other, &ws.data, &[]);
    fails_with(&["compare", s(&test), s(&theirs)], &["different models", "weights", "--across-models"]);
    let (stdout, _) = ok(&["compare", s(&test), s(&theirs), "--across-models"]);
    assert!(stdout.contains("| en | accuracy |"), "{stdout}");
    // An --out that holds another model's results is refused, not overwritten.
    let before = std::fs::read(&test).unwrap();
    let base = ["eval", "--model", s(&other), "--data-dir", s(&ws.data), "--task", "xnli", "--lang", "en"];
    fails_with(
        &[&base[..], &["--limit", "12", "--out", s(test.parent().unwrap())]].concat(),
        &["holds results of model"],
    );
    // A write that fails late (the disk fills up at the second file) leaves no results behind, and earlier ones intact.
    let full = ws.root.join("full");
    let args = [&base[..], &["--limit", "12", "--out", s(&full)]].concat();
    let out = lsn().args(&args).env("LSN_FAIL_WRITE", "results.md").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("no space left on device"), "{stderr}");
    assert!(!full.join("results.json").exists() && !full.join("results.md").exists(), "a half-written result");
    let theirs_dir = ws.root.join("theirs");
    let again = [&base[..], &["--limit", "12", "--out", s(&theirs_dir)]].concat();
    let out = lsn().args(&again).env("LSN_FAIL_WRITE", "results.md").output().unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&test).unwrap(), before);
    assert!(ws.root.join("theirs/results.md").is_file(), "a failed rerun removed the results it would replace");
}

#[test]
fn select_writes_every_method_or_none() {
    let t = tempfile::tempdir().unwrap();
    let model = random_model(t.path(), "m", "tiny-gemma3", 3);
    let run = t.path().join("run");
    let mut args: Vec<String> =
        ["capture", "--model", s(&model), "--lang", "en,fr", "--corpus", "none"].map(String::from).to_vec();
    for lang in ["en", "fr"] {
        let f = text_file(t.path(), &format!("{lang}.txt"), 30);
        args.extend(["--text".into(), format!("{lang}={}", f.display())]);
    }
    // One batch per language: LAPE can select, ActProb-90p cannot.
    args.extend(["--run", s(&run), "--row-len", "16", "--batch-rows", "64", "--max-tokens", "64"].map(String::from));
    ok(&strs(&args));
    fails_with(&["select", "--run", s(&run), "--lang", "en,fr"], &["act-prob-90p needs statistics of at least 2"]);
    let written: Vec<_> = std::fs::read_dir(run.join("neurons")).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(written.is_empty(), "select --method all failed and left {written:?}");
    assert!(!std::fs::read_to_string(run.join("run.json")).unwrap().contains("select/"));
    ok(&["select", "--run", s(&run), "--lang", "en,fr", "--method", "lape-mondal,random"]);
    for f in ["lape-mondal.json", "random.json", "lape-mondal.layers.svg", "random.layers.svg"] {
        assert!(run.join("neurons").join(f).is_file(), "{f}");
    }
    assert!(!run.join(".lsn-staging").exists());
}
