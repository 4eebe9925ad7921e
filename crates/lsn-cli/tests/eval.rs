//! `lsn eval` and `lsn compare` on a tiny random model and a small data directory written here: batch sizes that
//! change nothing, interventions (own set and --neuron-lang), the paired comparison, the head protocol, and the bad
//! inputs that must fail with one clear error and write no results.

mod common;

use std::path::{Path, PathBuf};

use common::{fails_with, ok, s, strs};
use serde_json::Value;

const HEADER: &str = "premise\thypothesis\tlabel\tgenre\n";

/// A data directory: XNLI test files (12 rows) for en, fr, de, and an XQuAD file for en of 6 questions whose first
/// has a context long enough that its prompt reaches 511 tokens (byte-level tokenizer: one token per byte).
fn data_dir(root: &Path) -> PathBuf {
    let dir = root.join("data");
    std::fs::create_dir_all(dir.join("xnli")).unwrap();
    std::fs::create_dir_all(dir.join("xquad")).unwrap();
    let labels = ["entailment", "neutral", "contradiction"];
    for (lang, words) in
        [("en", ["cat", "dog", "sun"]), ("fr", ["chat", "chien", "soleil"]), ("de", ["Katze", "Hund", "Sonne"])]
    {
        let mut body = HEADER.to_string();
        for i in 0..12 {
            body += &format!(
                "The {} sees {} number {i}.\tA {} is here.\t{}\tg\n",
                words[i % 3],
                words[(i + 1) % 3],
                words[(i + 2) % 3],
                labels[i % 3]
            );
        }
        std::fs::write(dir.join(format!("xnli/xnli.{lang}.test.tsv")), body).unwrap();
    }
    let long = "word ".repeat(90);
    let mut qas = Vec::new();
    for i in 0..6 {
        let context = if i == 0 { format!("{long}Paris.") } else { format!("Item {i} lies in Paris and Rome.") };
        let at = context.find("Paris").unwrap();
        qas.push(serde_json::json!({"context": context, "qas": [{"id": format!("q{i}"), "question": "Where?",
            "answers": [{"text": "Paris", "answer_start": at}]}]}));
    }
    let doc = serde_json::json!({"version": "1.1", "data": [{"title": "t", "paragraphs": qas}]});
    std::fs::write(dir.join("xquad/xquad.en.json"), doc.to_string()).unwrap();
    dir
}

fn results(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap()
}

fn examples(v: &Value, lang: usize) -> Vec<Value> {
    v["languages"][lang]["examples"].as_array().unwrap().clone()
}

type Setup = common::Workspace;

fn setup() -> Setup {
    Setup::new(data_dir)
}

impl common::Workspace {
    fn eval(&self, out: &str, extra: &[&str]) -> PathBuf {
        let out = self.root.join(out);
        ok(&strs(&self.args("eval", &out, extra)));
        out
    }

    /// Fails with one error line holding `needles`, and writes no results.json into `out` — nor leaves `out` behind,
    /// empty, when it was not there before.
    fn eval_fails(&self, out: &Path, extra: &[&str], needles: &[&str]) {
        let existed = out.exists();
        fails_with(&strs(&self.args("eval", out, extra)), needles);
        assert!(!out.join("results.json").exists(), "{extra:?} wrote results");
        assert!(existed || !out.exists(), "{extra:?} left {} behind", out.display());
    }
}

#[test]
fn batch_size_changes_no_prediction_and_compare_sees_no_difference() {
    let st = setup();
    let xnli = ["--task", "xnli", "--lang", "en,fr"];
    let a = st.eval("a", &[&xnli[..], &["--batch", "1"]].concat());
    let b = st.eval("b", &[&xnli[..], &["--batch", "8"]].concat());
    let (ra, rb) = (results(&a), results(&b));
    for lang in 0..2 {
        let (ea, eb) = (examples(&ra, lang), examples(&rb, lang));
        assert_eq!(ea.len(), 12);
        for (x, y) in ea.iter().zip(&eb) {
            assert_eq!(
                (&x["key"], &x["detail"]["pred"], &x["metrics"]),
                (&y["key"], &y["detail"]["pred"], &y["metrics"])
            );
            for k in 0..3 {
                let (p, q) = (x["detail"]["scores"][k].as_f64().unwrap(), y["detail"]["scores"][k].as_f64().unwrap());
                assert!((p - q).abs() < 1e-4, "log-likelihood {p} vs {q}");
            }
        }
    }
    assert!(std::fs::read_to_string(a.join("results.md")).unwrap().contains("| en | 12 | 0 |"));
    assert_eq!(ra["config"]["identity"]["weights_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(ra["languages"][0]["data_sha256"].as_str().unwrap().len(), 64);
    let (stdout, _) =
        ok(&["compare", s(&a.join("results.json")), s(&b.join("results.json")), "--json", s(&st.root.join("c.json"))]);
    assert!(
        stdout.contains("| en | accuracy |")
            && stdout.contains("+0.00 [+0.00, +0.00] | [+0.00, +0.00] | 1.000 | inconclusive |"),
        "{stdout}"
    );
    // Several runs per side (one per training seed), comma-separated: the means over the runs.
    let two = format!("{},{}", s(&a.join("results.json")), s(&b.join("results.json")));
    let (stdout, _) = ok(&["compare", &two, &two]);
    assert!(
        stdout.contains("2 runs (")
            && stdout.contains("+0.00 [+0.00, +0.00] | [+0.00, +0.00] | 1.000 | inconclusive |"),
        "{stdout}"
    );

    let q = ["--task", "xquad", "--lang", "en", "--split", "all", "--max-new-tokens", "12"];
    let qa = st.eval("qa", &[&q[..], &["--batch", "1"]].concat());
    let qb = st.eval("qb", &[&q[..], &["--batch", "8"]].concat());
    let (ra, rb) = (results(&qa), results(&qb));
    assert_eq!(ra["languages"][0]["dropped"], serde_json::json!(["q0"]), "the 511-token prompt is dropped");
    let (ea, eb) = (examples(&ra, 0), examples(&rb, 0));
    assert_eq!(ea.len(), 5);
    for (x, y) in ea.iter().zip(&eb) {
        assert_eq!(x["detail"]["generated"], y["detail"]["generated"]);
        assert_eq!(x["metrics"], y["metrics"]);
        assert!(x["detail"]["generated"].as_array().unwrap().len() <= 12);
    }
    for m in ["paper_em", "paper_f1", "squad_em", "squad_f1", "mlqa_em", "mlqa_f1"] {
        let sc = &ra["languages"][0]["scores"][m];
        assert!(sc["lo"].as_f64().unwrap() <= sc["mean"].as_f64().unwrap(), "{m}: {sc}");
    }
    // A rerun with the same settings reuses the languages already done.
    let (_, stderr) = ok(&strs(&st.args("eval", &qa, &[&q[..], &["--batch", "1"]].concat())));
    assert!(stderr.contains("en: reusing"), "{stderr}");
}

/// A tiny capture on three "languages" (en, fr, de), then ActProb-90p selection.
fn neurons(st: &Setup) -> PathBuf {
    let run = st.root.join("run");
    let mut args: Vec<String> = ["capture", "--model", s(&st.model), "--lang", "en,fr,de", "--corpus", "none"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    for (i, lang) in ["en", "fr", "de"].iter().enumerate() {
        let f = common::text_file(&st.root, &format!("{lang}.txt"), 30 + 10 * i);
        args.extend(["--text".into(), format!("{lang}={}", f.display())]);
    }
    for (flag, v) in [("--run", s(&run)), ("--row-len", "16"), ("--batch-rows", "1"), ("--max-tokens", "64")] {
        args.extend([flag.to_string(), v.to_string()]);
    }
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    ok(&["select", "--run", s(&run), "--lang", "en,fr,de", "--method", "act-prob-90p"]);
    run.join("neurons/act-prob-90p.json")
}

#[test]
fn interventions_apply_each_languages_set_and_are_recorded() {
    let st = setup();
    let n = neurons(&st);
    let base = st.eval("base", &["--task", "xnli", "--lang", "en,fr"]);
    let own = st.eval("own", &["--task", "xnli", "--lang", "en,fr", "--neurons", s(&n), "--fill", "p90"]);
    let de = st.eval(
        "de",
        &["--task", "xnli", "--lang", "en,fr", "--neurons", s(&n), "--fill", "zero", "--neuron-lang", "de"],
    );
    let r = results(&own);
    assert_eq!(r["config"]["intervention"]["fill"], "p90");
    assert_eq!(results(&de)["config"]["intervention"]["neuron_lang"], "de");
    // The intervention moves the log-likelihoods (a tiny random model's predictions may or may not change).
    let moved = |other: &Path| {
        examples(&results(&base), 0).iter().zip(examples(&results(other), 0)).any(|(x, y)| {
            (x["detail"]["scores"][0].as_f64().unwrap() - y["detail"]["scores"][0].as_f64().unwrap()).abs() > 1e-4
        })
    };
    assert!(moved(&own) && moved(&de));
    // The matched random control: other neurons, the same fill, recorded.
    let rnd = st
        .eval("rnd", &["--task", "xnli", "--lang", "en,fr", "--neurons", s(&n), "--fill", "p90", "--random-like", "3"]);
    assert_eq!(results(&rnd)["config"]["intervention"]["random_like"], 3);
    assert!(moved(&rnd));
    assert_ne!(examples(&results(&rnd), 0), examples(&results(&own), 0));
    let (stdout, _) = ok(&["compare", s(&base.join("results.json")), s(&own.join("results.json"))]);
    assert!(stdout.contains("| en | accuracy |") && stdout.contains("| fr | accuracy |"), "{stdout}");
    // The set of a language without one is refused before anything is written.
    st.eval_fails(
        &st.root.join("none"),
        &["--task", "xnli", "--lang", "en", "--neurons", s(&n), "--neuron-lang", "zh"],
        &["--neuron-lang zh", "holds sets for"],
    );
}

#[test]
fn the_head_protocol_reads_a_head_from_safetensors() {
    let st = setup();
    let cfg: Value = serde_json::from_slice(&std::fs::read(st.model.join("config.json")).unwrap()).unwrap();
    let hidden = cfg["hidden_size"].as_u64().unwrap() as usize;
    let write_head = |name: &str, hidden: usize| {
        // Reads one direction of the hidden state: class 0 when h[0] > 0, class 1 when h[0] < 0.
        let mut w = vec![0f32; 3 * hidden];
        w[0] = 1.0;
        w[hidden] = -1.0;
        let bytes: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3, hidden], &bytes).unwrap();
        let path = st.root.join(name);
        std::fs::write(&path, safetensors::serialize(vec![("score.weight", view)], None).unwrap()).unwrap();
        path
    };
    let head = write_head("head.safetensors", hidden);
    let out = st.eval("head", &["--task", "xnli", "--protocol", "head", "--head", s(&head), "--lang", "en"]);
    for e in examples(&results(&out), 0) {
        let sc: Vec<f64> = e["detail"]["scores"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(sc[0], -sc[1]);
        assert_eq!(sc[2], 0.0);
        assert_eq!(e["detail"]["pred"], if sc[0] > 0.0 { "entailment" } else { "neutral" });
    }
    let wrong = write_head("wrong.safetensors", hidden + 1);
    st.eval_fails(
        &st.root.join("w"),
        &["--task", "xnli", "--protocol", "head", "--head", s(&wrong), "--lang", "en"],
        &["wrong.safetensors", &format!("exactly one tensor named …weight of shape [3, {hidden}]")],
    );
}

#[test]
fn bad_input_is_one_clear_error_and_no_results() {
    let st = setup();
    let out = st.root.join("out");
    let fails = |extra: &[&str], needles: &[&str]| st.eval_fails(&out, extra, needles);
    fails(&["--task", "xnli", "--lang", "xx"], &["xx"]);
    fails(&["--task", "xnli", "--lang", "ja"], &["no XNLI test file for ja"]);
    fails(&["--task", "xnli", "--lang", "en", "--split", "train"], &["no split \"train\""]);
    fails(&["--task", "xnli", "--lang", "en", "--protocol", "head"], &["--protocol head needs --head"]);
    fails(&["--task", "qa", "--lang", "en"], &["unknown task \"qa\""]);
    // An adapter that is not there: found after the model load, and the --out made for it is removed again.
    fails(&["--task", "xnli", "--lang", "en", "--adapter", "/nonexistent"], &["/nonexistent", "adapter_config.json"]);
    fails(
        &["--task", "xquad", "--lang", "en", "--split", "all", "--limit", "1"],
        &["no XQuAD example left", "1 dropped"],
    );
    // A TSV row with a missing column, a truncated XQuAD file.
    let tsv = st.data.join("xnli/xnli.fr.test.tsv");
    std::fs::write(&tsv, format!("{HEADER}A\tB\tneutral\n")).unwrap();
    fails(&["--task", "xnli", "--lang", "fr"], &["xnli.fr.test.tsv", "line 2 has 3 tab-separated fields"]);
    let json = st.data.join("xquad/xquad.en.json");
    let text = std::fs::read(&json).unwrap();
    std::fs::write(&json, &text[..text.len() / 2]).unwrap();
    fails(&["--task", "xquad", "--lang", "en"], &["xquad.en.json", "not SQuAD v1.1 JSON"]);
    // An --out under a file.
    let file = st.root.join("plain");
    std::fs::write(&file, "x").unwrap();
    st.eval_fails(&file.join("sub"), &["--task", "xnli", "--lang", "en"], &["--out"]);
    // compare: another task, or a file that is not a result.
    let a = st.eval("a", &["--task", "xnli", "--lang", "en", "--limit", "4"]);
    let b = st.eval("b", &["--task", "xnli", "--lang", "en", "--limit", "5"]);
    fails_with(&["compare", s(&a.join("results.json")), s(&b.join("results.json"))], &["different examples (4 and 5)"]);
    fails_with(&["compare", s(&a.join("results.json")), s(&a.join("results.md"))], &["not a results.json"]);
}
