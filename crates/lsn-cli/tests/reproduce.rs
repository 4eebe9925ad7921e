//! `lsn reproduce --scale smoke` on a tiny random model and a data directory written here: the whole stage graph
//! runs and reports; a run killed with SIGKILL and rerun, and a run with every stage in its own process, end with the
//! bytes of an uninterrupted run's results.json; a second run on a busy directory is refused; a changed setting
//! reruns only the stages it reaches.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{fails_with, lsn, ok, random_model, s};
use serde_json::Value;

const LANGS: [(&str, &str); 16] = [
    ("en", "eng_Latn"),
    ("fr", "fra_Latn"),
    ("es", "spa_Latn"),
    ("vi", "vie_Latn"),
    ("id", "ind_Latn"),
    ("ja", "jpn_Jpan"),
    ("zh", "zho_Hans"),
    ("bn", "ben_Beng"),
    ("hi", "hin_Deva"),
    ("ta", "tam_Taml"),
    ("te", "tel_Telu"),
    ("mr", "mar_Deva"),
    ("ur", "urd_Arab"),
    ("kn", "kan_Knda"),
    ("ml", "mal_Mlym"),
    ("pa", "pan_Guru"),
];

/// FLORES-shaped text for every language of sets 1 and 6 (each its own alphabet of words), XNLI en dev and vi/hi/ur
/// dev+test, XQuAD en/vi/hi/zh of 12 short questions each.
fn data_dir(root: &Path) -> PathBuf {
    let dir = root.join("data");
    for sub in ["corpus/flores200_devtest", "xnli", "xquad"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for (k, (code, flores)) in LANGS.iter().enumerate() {
        let mut x = 7 + k as u64;
        let text: String = (0..60)
            .map(|_| {
                (0..6)
                    .map(|_| {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let c = char::from(b'a' + ((x >> 33) % 8) as u8 + (k % 18) as u8);
                        c.to_string().repeat(1 + (x >> 40) as usize % 4)
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
                    + "\n"
            })
            .collect();
        std::fs::write(dir.join(format!("corpus/flores200_devtest/{code}.{flores}.devtest")), text).unwrap();
    }
    let labels = ["entailment", "neutral", "contradiction"];
    for lang in ["en", "vi", "hi", "ur"] {
        for split in ["dev", "test"] {
            let mut body = "premise\thypothesis\tlabel\tgenre\n".to_string();
            for i in 0..20 {
                body += &format!("{lang} cat {i} sees a dog.\tA {lang} dog {}.\t{}\tg\n", i % 5, labels[i % 3]);
            }
            std::fs::write(dir.join(format!("xnli/xnli.{lang}.{split}.tsv")), body).unwrap();
        }
    }
    for lang in ["en", "vi", "hi", "zh"] {
        let qas: Vec<Value> = (0..12)
            .map(|i| {
                let context = format!("{lang} item {i} is in Paris.");
                let at = context.find("Paris").unwrap();
                serde_json::json!({"context": context, "qas": [{"id": format!("{lang}{i}"), "question": "Where?",
                    "answers": [{"text": "Paris", "answer_start": at}]}]})
            })
            .collect();
        let doc = serde_json::json!({"version": "1.1", "data": [{"title": "t", "paragraphs": qas}]});
        std::fs::write(dir.join(format!("xquad/xquad.{lang}.json")), doc.to_string()).unwrap();
    }
    dir
}

/// Stages of the smoke plan: 16 captures, their gathering, 2 selections, PPXC; per task a baseline, 12 fine-tunes and
/// their 12 evaluations, 7 + 2 fills on 2 sets.
const STAGES: usize = 16 + 1 + 2 + 1 + 2 * (1 + 12 + 12 + 9 * 2);

struct Setup {
    _t: tempfile::TempDir,
    root: PathBuf,
    model: PathBuf,
    data: PathBuf,
}

fn setup() -> Setup {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().to_path_buf();
    let model = random_model(&root, "m", "tiny-gemma3", 5);
    let data = data_dir(&root);
    Setup { _t: t, root, model, data }
}

impl Setup {
    fn args(&self, out: &Path, extra: &[&str]) -> Vec<String> {
        let base = ["reproduce", "--scale", "smoke", "--backend", "tch", "--model", s(&self.model), "--data-dir"];
        let mut v: Vec<String> = base.iter().map(|a| a.to_string()).collect();
        v.extend([s(&self.data), "--out", s(out), "--home", s(&self.root.join("home"))].map(String::from));
        v.extend(extra.iter().map(|a| a.to_string()));
        v
    }
}

fn read(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn complete_stages(out: &Path) -> usize {
    let Ok(bytes) = std::fs::read(out.join("reproduce.json")) else { return 0 };
    let Ok(v) = serde_json::from_slice::<Value>(&bytes) else { return 0 };
    v["stages"].as_object().map_or(0, |m| m.values().filter(|s| s["state"] == "complete").count())
}

#[test]
fn a_killed_run_and_a_run_of_separate_processes_end_with_the_uninterrupted_results() {
    let st = setup();
    // A: uninterrupted, in one process.
    let a = st.root.join("a");
    let args: Vec<String> = st.args(&a, &[]);
    ok(&common::strs(&args));
    let results = std::fs::read(a.join("results.json")).unwrap();
    let doc = read(&a.join("results.json"));
    assert!(doc["missing_stages"].as_array().unwrap().is_empty(), "{}", doc["missing_stages"]);
    let tables: Vec<&str> = doc["tables"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    for id in ["xnli-intervention-act-prob-90p", "xquad-intervention-act-prob-90p", "xnli-ftl", "xquad-ftl", "ppxc"] {
        assert!(tables.contains(&id), "table {id} missing from {tables:?}");
    }
    // Every table that judges the paper's claim has a verdict of the four, with its rules; the smoke fine-tunes (one
    // seed, a random tiny model) cannot test it.
    let verdicts: Vec<&Value> = doc["verdicts"].as_array().unwrap().iter().collect();
    let judged: Vec<&str> = verdicts.iter().map(|v| v["table"].as_str().unwrap()).collect();
    for id in tables.iter().filter(|id| id.contains("-intervention-") || id.ends_with("-ftl")) {
        assert!(judged.contains(id), "table {id} has no verdict: {judged:?}");
    }
    for v in &verdicts {
        let class = v["verdict"].as_str().unwrap();
        assert!(["consistent", "contradicts", "inconclusive", "cannot_test"].contains(&class), "{v}");
        assert!(v["margin"] == 2.0 && v["correction"] == "holm-bonferroni" && v["seeds"] == 1, "{v}");
        if v["table"].as_str().unwrap().ends_with("-ftl") {
            assert_eq!(class, "cannot_test", "one training seed cannot test an FTL table: {v}");
        }
    }
    for d in doc["deltas"].as_array().unwrap() {
        let class = d["class"].as_str().unwrap();
        assert!(["higher", "lower", "equivalent", "inconclusive", "cannot_test"].contains(&class), "{d}");
        assert!(d["lo90"].as_f64().unwrap() >= d["lo"].as_f64().unwrap() && d["p"].as_f64().unwrap() <= 1.0, "{d}");
    }
    let md = std::fs::read_to_string(a.join("report.md")).unwrap();
    assert!(
        md.contains("equivalence margin δ = ±2 points") && md.contains("**cannot test** — no cell can test"),
        "{md}"
    );
    assert!(md.contains("| vi, Llama-3.1-8B (paper)") || md.contains("_vi, Llama-3.1-8B (paper)_"), "{md}");
    assert!(md.contains("**Verdict:**") && md.contains("Smoke scale"), "{md}");
    // δ was fixed when A started: a rerun with another margin is refused, and changes nothing.
    let config = std::fs::read(a.join("config.json")).unwrap();
    fails_with(&common::strs(&st.args(&a, &["--margin", "1.5"])), &["--margin 1.5", "equivalence margin of 2"]);
    fails_with(
        &common::strs(&st.args(&a, &["--forcing-margin", "5"])),
        &["--forcing-margin 5", "equivalence margin of 10", "rerun with --forcing-margin 10"],
    );
    assert_eq!(std::fs::read(a.join("results.json")).unwrap(), results);
    assert_eq!(std::fs::read(a.join("config.json")).unwrap(), config);
    let html = std::fs::read_to_string(a.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("<table>") && !html.contains("src=\""), "self-contained");

    // B: killed with SIGKILL part-way, a second run refused while it lives, then rerun to the end.
    let b = st.root.join("b");
    let mut child = lsn().args(st.args(&b, &[])).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    while complete_stages(&b) < 30 {
        assert!(t0.elapsed() < Duration::from_secs(300), "the run did not get going");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let busy = st.args(&b, &[]);
    fails_with(&common::strs(&busy), &["in use by pid", "--out"]);
    child.kill().unwrap();
    child.wait().unwrap();
    let done = complete_stages(&b);
    assert!(done < STAGES, "killed after {done} stages: nothing left to resume");
    let (_, err) = ok(&common::strs(&st.args(&b, &[])));
    assert!(err.contains("done before, skipped"), "the rerun skipped nothing: {err}");
    assert_eq!(std::fs::read(b.join("results.json")).unwrap(), results, "resumed run ≠ uninterrupted run");

    // C: every stage its own process.
    let c = st.root.join("c");
    ok(&common::strs(&st.args(&c, &["--processes"])));
    assert_eq!(std::fs::read(c.join("results.json")).unwrap(), results, "separate processes ≠ one process");

    // D: three shards at once (as a cluster's array job), then the same command unsharded, which only reports.
    // Each shard's output goes to a file: pipes read one after the other would fill and stall the shards (each
    // waits for the others' stages), and a stalled shard must fail the test, not hang it.
    let d = st.root.join("d");
    let shards: Vec<_> = (0..3)
        .map(|i| {
            let log = st.root.join(format!("shard-{i}.log"));
            let shard = format!("{i}/3");
            let err = std::fs::File::create(&log).unwrap();
            let child = lsn().args(st.args(&d, &["--shard", &shard])).stdout(Stdio::null()).stderr(err).spawn();
            (child.unwrap(), log)
        })
        .collect();
    let t0 = Instant::now();
    for (mut child, log) in shards {
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if t0.elapsed() > Duration::from_secs(900) {
                let _ = child.kill();
                panic!("a shard ran for 15 min: {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let err = std::fs::read_to_string(&log).unwrap();
        assert!(status.success() && err.contains("done in"), "a shard failed: {err}");
    }
    assert!(!d.join("results.json").exists(), "shards write no report");
    let (_, err) = ok(&common::strs(&st.args(&d, &[])));
    assert_eq!(err.matches("done before, skipped").count(), STAGES, "the shards left work undone: {err}");
    assert_eq!(std::fs::read(d.join("results.json")).unwrap(), results, "three shards ≠ one process");

    // An unchanged rerun reruns nothing; a changed setting (the tap point) reruns what it reaches, and only that:
    // not the base model's baselines and not the FTL-null fine-tunes and their evaluations, which read no neurons.
    let (_, err) = ok(&common::strs(&st.args(&a, &[])));
    assert_eq!(err.matches("done before, skipped").count(), STAGES, "an unchanged rerun reruns nothing: {err}");
    let (_, err) = ok(&common::strs(&st.args(&a, &["--tap-point", "gate_pre"])));
    let skipped: Vec<&str> = err.lines().filter(|l| l.ends_with("done before, skipped")).collect();
    assert_eq!(skipped.len(), 6, "{skipped:#?}");
    for key in ["eval/xnli/baseline", "train/xnli/null", "eval/xnli/ftl/null", "train/xquad/null"] {
        assert!(skipped.iter().any(|l| l.contains(&format!("] {key} ·"))), "{key} reran: {skipped:#?}");
    }
    assert_ne!(std::fs::read(a.join("results.json")).unwrap(), results);
}

#[test]
fn backend_all_reports_how_far_the_backends_agree() {
    let st = setup();
    let out = st.root.join("all");
    let mut args = st.args(&out, &[]);
    args[4] = "all".into();
    ok(&common::strs(&args));
    let doc = read(&out.join("results.json"));
    let agree = doc["backend_agreement"].as_array().unwrap();
    let neurons: Vec<&Value> = agree.iter().filter(|r| r["method"].is_string()).collect();
    let preds: Vec<&Value> = agree.iter().filter(|r| r["task"].is_string()).collect();
    // candle and ort against tch (the study's backend: the trainer, tch when built in); per set, LAPE and ActProb-90p
    // hold a set per language and the random control one; two tasks of three languages.
    assert_eq!(neurons.len(), 2 * ((7 + 7 + 1) + (10 + 10 + 1)), "{agree:#?}");
    assert_eq!(preds.len(), 2 * 2 * 3, "{agree:#?}");
    for r in neurons {
        assert_eq!(r["differ"], 0, "{r}");
    }
    for r in preds {
        assert_eq!(r["same_prediction"], r["examples"], "{r}");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("Agreement between backends") && md.contains("tch vs candle") && md.contains("tch vs ort"),
        "{md}"
    );
}

#[test]
fn bad_input_is_one_clear_error() {
    let st = setup();
    let out = st.root.join("o");
    let mut args = st.args(&out, &[]);
    args[4] = "nope".into();
    fails_with(&common::strs(&args), &["--backend nope", "available"]);
    // No --backend: auto, tch when built in (this test build has it) — every stage of the plan runs on it.
    let mut args = st.args(&out, &["--plan"]);
    args.drain(3..5);
    let (plan, _) = ok(&common::strs(&args));
    assert!(plan.lines().count() > 50 && plan.lines().all(|l| !l.contains("--backend candle")), "{plan}");
    assert!(plan.lines().any(|l| l.contains("train --task xnli") && l.contains("--backend tch")), "{plan}");
    // --backend ort: what ort can do runs on it, the fine-tunes on the same trainer as auto's.
    let mut args = st.args(&out, &["--plan"]);
    args[4] = "ort".into();
    let (plan, _) = ok(&common::strs(&args));
    let (train, rest): (Vec<&str>, Vec<&str>) = plan.lines().partition(|l| l.contains(" train --task "));
    assert!(!train.is_empty() && train.iter().all(|l| l.contains("--backend tch")), "{plan}");
    assert!(rest.iter().any(|l| l.contains(" capture ") && l.contains("--backend ort")), "{plan}");
    fails_with(&common::strs(&st.args(&out, &["--margin", "0"])), &["--margin", "above 0"]);
    let mut args = st.args(&out, &["--device", "gpu"]);
    fails_with(&common::strs(&args), &["--device", "gpu"]);
    args.truncate(args.len() - 2);
    args.extend(["--dtype".into(), "f8".into()]);
    fails_with(&common::strs(&args), &["--dtype", "f8"]);
    let args =
        ["reproduce", "--scale", "smoke", "--model", s(&st.model), "--out", s(&out), "--data-dir", "/nonexistent"];
    fails_with(&args, &["/nonexistent"]);
    // A data directory without the XQuAD folder is refused before anything runs.
    std::fs::remove_dir_all(st.data.join("xquad")).unwrap();
    let args = st.args(&out, &[]);
    fails_with(&common::strs(&args), &["no xquad/ folder", "LSN_DATA_DIR"]);
    assert!(!out.join("reproduce.json").exists(), "nothing ran");
}

/// A shard whose stages another shard needs, and which failed or was killed, stops the shards waiting for it with
/// one error naming it (they do not wait for ever).
#[test]
fn shards_waiting_for_a_dead_or_failed_shard_stop() {
    let st = setup();
    let (plan, _) = ok(&common::strs(&st.args(&st.root.join("p"), &["--plan"])));
    for (state, needles) in [
        ("running", ["shard 1/2 stopped while running", "rerun that shard"]),
        ("failed", ["failed on shard 1/2", "rerun it"]),
    ] {
        // Shard 1's state file says it was running (or failed) every stage, and no process holds its lock.
        let out = st.root.join(state);
        std::fs::create_dir_all(&out).unwrap();
        let stages: serde_json::Map<String, Value> = plan
            .lines()
            .map(|l| {
                (l.split_whitespace().next().unwrap().to_string(), serde_json::json!({"sha256": "x", "state": state}))
            })
            .collect();
        let doc = serde_json::json!({ "stages": stages });
        std::fs::write(out.join("reproduce.shard-1-of-2.json"), doc.to_string()).unwrap();
        let line = fails_with(&common::strs(&st.args(&out, &["--shard", "0/2"])), &needles);
        assert!(line.contains("capture/"), "shard 0 first waits for a capture of shard 1's: {line}");
    }
}
