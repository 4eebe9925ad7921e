//! `lsn train`, `lsn eval --adapter` and `lsn merge-adapter` on a tiny random model and a data directory written
//! here: a PEFT-layout adapter, the masked gate rows exactly 0, the unmerged adapter (tch) and the merged model (ort)
//! predicting the same labels, a run killed with SIGKILL that resumes to the same bytes, and bad input refused with
//! nothing written.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{fails_with, lsn, ok, s, strs};
use serde_json::Value;

/// XNLI en dev (24 rows) and test (6 rows), and an XQuAD en file of 10 questions.
fn data_dir(root: &Path) -> PathBuf {
    let dir = root.join("data");
    std::fs::create_dir_all(dir.join("xnli")).unwrap();
    std::fs::create_dir_all(dir.join("xquad")).unwrap();
    let labels = ["entailment", "neutral", "contradiction"];
    let words = ["cat", "dog", "sun", "tree"];
    for (split, n) in [("dev", 24), ("test", 6)] {
        let mut body = "premise\thypothesis\tlabel\tgenre\n".to_string();
        for i in 0..n {
            body +=
                &format!("The {} sees {i}.\tA {} is here.\t{}\tg\n", words[i % 4], words[(i + 1) % 4], labels[i % 3]);
        }
        std::fs::write(dir.join(format!("xnli/xnli.en.{split}.tsv")), body).unwrap();
    }
    let qas: Vec<Value> = (0..10)
        .map(|i| {
            let context = format!("Item {i} lies in Paris.");
            let at = context.find("Paris").unwrap();
            serde_json::json!({"context": context, "qas": [{"id": format!("q{i}"), "question": "Where?",
                "answers": [{"text": "Paris", "answer_start": at}]}]})
        })
        .collect();
    let doc = serde_json::json!({"version": "1.1", "data": [{"title": "t", "paragraphs": qas}]});
    std::fs::write(dir.join("xquad/xquad.en.json"), doc.to_string()).unwrap();
    dir
}

/// A neuron file as `lsn select` writes it (no model identity recorded: checked by shape), with `en` and `vi` sets.
fn neuron_file(root: &Path, layers: usize, width: usize) -> PathBuf {
    // The last layer's neuron only where the model has six layers (a file of a smaller model omits it).
    let last = if layers > 5 { vec![[5, 100]] } else { vec![] };
    let en: Vec<[usize; 2]> = [vec![[0, 1], [0, 5], [2, 7]], last.clone()].concat();
    let vi: Vec<[usize; 2]> = [vec![[1, 3]], last].concat();
    let per_layer = |set: &[[usize; 2]]| {
        let mut h = vec![0; layers];
        set.iter().for_each(|p| h[p[0]] += 1);
        h
    };
    let doc = serde_json::json!({
        "method": "act-prob-90p", "params": {}, "layers": layers, "intermediate": width,
        "languages": ["en", "vi"], "m": 4, "candidates": 4, "thresholds": {},
        "neurons": {"en": en, "vi": vi}, "counts": {"en": en.len(), "vi": vi.len()},
        "per_layer": {"en": per_layer(&en), "vi": per_layer(&vi)},
    });
    let p = root.join("neurons.json");
    std::fs::write(&p, doc.to_string()).unwrap();
    p
}

type Setup = common::Workspace;

fn setup() -> Setup {
    Setup::new(data_dir)
}

impl common::Workspace {
    fn train(&self, out: &str, extra: &[&str]) -> PathBuf {
        let out = self.root.join(out);
        ok(&strs(&self.args("train", &out, extra)));
        out
    }
}

fn json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// The tensors of a safetensors file as (shape, values).
fn tensors(p: &Path) -> std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| {
            let vals = v.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            (n, (v.shape().to_vec(), vals))
        })
        .collect()
}

fn predictions(results: &Path) -> Vec<String> {
    json(results)["languages"][0]["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"]["pred"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn xnli_adapter_is_peft_shaped_and_merged_inference_on_ort_predicts_what_tch_does_unmerged() {
    let st = setup();
    let a = st.train("a", &["--task", "xnli", "--backend", "candle", "--batch", "4", "--epochs", "2", "--lr", "1e-3"]);
    let cfg = json(&a.join("adapter_config.json"));
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["task_type"], "SEQ_CLS");
    assert_eq!(cfg["target_modules"], serde_json::json!(["q_proj", "k_proj", "v_proj", "o_proj"]));
    assert_eq!(cfg["modules_to_save"], serde_json::json!(["score"]));
    assert_eq!((cfg["r"].as_u64(), cfg["lora_alpha"].as_f64()), (Some(8), Some(16.0)));
    let t = tensors(&a.join("adapter_model.safetensors"));
    assert_eq!(t["base_model.model.score.weight"].0, vec![3, 64]);
    assert_eq!(t["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].0, vec![8, 64]);
    let b = &t["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"];
    assert_eq!(b.0, vec![128, 8]);
    assert!(b.1.iter().any(|&x| x != 0.0), "B moved away from its zero start");
    let log = json(&a.join("train.json"));
    assert_eq!(log["log"].as_array().unwrap().len(), 12, "24 pairs, batch 4, 2 epochs");

    let eval = |out: &str, extra: &[&str]| {
        let out = st.root.join(out);
        let base = ["eval", "--task", "xnli", "--protocol", "head", "--lang", "en", "--split", "test"];
        let mut args: Vec<&str> = base.to_vec();
        args.extend(["--data-dir", s(&st.data), "--out", s(&out)]);
        args.extend(extra);
        ok(&args);
        predictions(&out.join("results.json"))
    };
    let unmerged = eval("e1", &["--model", s(&st.model), "--adapter", s(&a), "--backend", "tch"]);
    let merged_dir = st.root.join("merged");
    ok(&["merge-adapter", "--model", s(&st.model), "--adapter", s(&a), "--out", s(&merged_dir)]);
    let head = merged_dir.join("head.safetensors");
    let merged = eval("e2", &["--model", s(&merged_dir), "--head", s(&head), "--backend", "ort"]);
    assert_eq!(unmerged, merged);
    // The base model with the same head but no adapter is another model: its hidden states differ.
    let base_only = st.root.join("e3");
    let args = ["eval", "--task", "xnli", "--protocol", "head", "--lang", "en", "--split", "test", "--data-dir"];
    let mut args: Vec<&str> = args.to_vec();
    args.extend([s(&st.data), "--model", s(&st.model), "--head", s(&head), "--backend", "tch", "--out"]);
    args.push(s(&base_only));
    ok(&args);
    let scores = |p: &Path| json(&p.join("results.json"))["languages"][0]["examples"][0]["detail"]["scores"].clone();
    assert_ne!(scores(&base_only), scores(&st.root.join("e1")));
}

#[test]
fn masked_gate_rows_stay_zero_and_only_the_ftl_neurons_train() {
    let st = setup();
    let neurons = neuron_file(&st.root, 6, 128);
    let a = st.train("a", &["--task", "xquad", "--ftl", "en+vi", "--neurons", s(&neurons), "--backend", "tch"]);
    let cfg = json(&a.join("adapter_config.json"));
    assert_eq!(cfg["task_type"], "CAUSAL_LM");
    assert_eq!(cfg["target_modules"], serde_json::json!(["q_proj", "k_proj", "v_proj", "gate_proj"]));
    let want = serde_json::json!([[0, 1], [0, 5], [1, 3], [2, 7], [5, 100]]);
    assert_eq!(cfg["lsn"]["gate_neurons"], want);
    let t = tensors(&a.join("adapter_model.safetensors"));
    let trained: Vec<(usize, usize)> = vec![(0, 1), (0, 5), (1, 3), (2, 7), (5, 100)];
    let mut moved = 0;
    for l in 0..6 {
        let (shape, b) = &t[&format!("base_model.model.model.layers.{l}.mlp.gate_proj.lora_B.weight")];
        assert_eq!(shape, &vec![128, 64]);
        for j in 0..128 {
            let row = &b[j * 64..(j + 1) * 64];
            if trained.contains(&(l, j)) {
                moved += usize::from(row.iter().any(|&x| x != 0.0));
            } else {
                assert!(row.iter().all(|&x| x.to_bits() == 0), "layer {l} row {j} is outside the mask but moved");
            }
        }
    }
    assert_eq!(moved, trained.len(), "every trained neuron's row moved");
}

/// Trains `extra` uninterrupted into `clean`, then again into `killed` with a SIGKILL after its first checkpoint and
/// a rerun; both adapters must be the same bytes.
fn killed_run_resumes_to_the_uninterrupted_bytes(st: &Setup, extra: &[&str]) {
    let clean = st.train("clean", extra);
    let reference = std::fs::read(clean.join("adapter_model.safetensors")).unwrap();

    let out = st.root.join("killed");
    let checkpoint = out.join("checkpoint.safetensors");
    let args = st.args("train", &out, extra);
    let mut child = lsn().args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    while !checkpoint.exists() {
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        assert!(child.try_wait().unwrap().is_none(), "training ended before it could be killed");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(!out.join("adapter_model.safetensors").exists(), "the kill came too late: training had finished");
    let (stdout, _) = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!stdout.contains("resumed at 0)"), "the rerun started over instead of resuming: {stdout}");
    assert_eq!(std::fs::read(out.join("adapter_model.safetensors")).unwrap(), reference);
    assert_eq!(
        std::fs::read(out.join("adapter_config.json")).unwrap(),
        std::fs::read(clean.join("adapter_config.json")).unwrap()
    );
}

#[test]
fn a_run_killed_with_sigkill_resumes_to_the_bytes_of_an_uninterrupted_run() {
    let st = setup();
    let extra = ["--task", "xnli", "--backend", "candle", "--batch", "1", "--epochs", "8", "--checkpoint-every", "1"];
    killed_run_resumes_to_the_uninterrupted_bytes(&st, &extra);
}

/// A capture run of `en` and `vi` text files (rows of 16 tokens, 8 per language) and its ActProb-90p neurons.
fn captured_run(st: &Setup) -> (PathBuf, PathBuf) {
    let run = st.root.join("run");
    let mut args: Vec<String> =
        ["capture", "--model", s(&st.model), "--lang", "en,vi", "--corpus", "none"].map(String::from).to_vec();
    for (lang, line) in [("en", "The river runs past the old mill"), ("vi", "Dòng sông chảy qua cối xay cũ")] {
        let body: String = (0..60).map(|i| format!("{line} {i}.\n")).collect();
        let f = st.root.join(format!("{lang}.txt"));
        std::fs::write(&f, body).unwrap();
        args.extend(["--text".into(), format!("{lang}={}", f.display())]);
    }
    args.extend(["--run", s(&run), "--row-len", "16", "--batch-rows", "2", "--max-tokens", "128"].map(String::from));
    ok(&strs(&args));
    ok(&["select", "--run", s(&run), "--lang", "en,vi", "--method", "act-prob-90p"]);
    let neurons = run.join("neurons/act-prob-90p.json");
    (run, neurons)
}

#[test]
fn lm_training_on_a_languages_captured_rows_trains_its_neurons_only_and_resumes_after_sigkill() {
    let st = setup();
    let (run, neurons) = captured_run(&st);
    let lm = ["--task", "lm", "--text", "vi", "--ftl", "vi", "--neurons", s(&neurons), "--backend", "candle"];
    let a = st.train("lm", &[&lm[..], &["--epochs", "2", "--lr", "1e-2"]].concat());
    let cfg = json(&a.join("adapter_config.json"));
    assert_eq!(cfg["task_type"], "CAUSAL_LM");
    assert_eq!(cfg["target_modules"], serde_json::json!(["gate_proj"]));
    let train = json(&a.join("train.json"));
    assert_eq!(train["run"]["data"]["examples"], 8, "the capture's 8 rows of vi");
    assert_eq!(train["run"]["spec"]["preset"], "subnetwork (overridden)");
    assert!(train["run"]["data"]["file"].as_str().unwrap().ends_with("stats/vi.safetensors"));
    let losses: Vec<f64> = train["log"].as_array().unwrap().iter().map(|l| l["loss"].as_f64().unwrap()).collect();
    assert!(losses.last().unwrap() < losses.first().unwrap(), "the LM loss did not fall: {losses:?}");
    // Held-out perplexity of vi (rows the training never saw) with and without the adapter.
    let ppl = |extra: &[&str]| {
        let j = st.root.join("ppl.json");
        let base = ["ppl", "--model", s(&st.model), "--lang", "vi", "--heldout", s(&run), "--rows", "2", "--json"];
        ok(&[&base[..], &[s(&j)], extra].concat());
        json(&j)["results"][0]["ppl"].as_f64().unwrap()
    };
    let (before, after) = (ppl(&[]), ppl(&["--adapter", s(&a)]));
    assert!(before.is_finite() && after.is_finite() && before != after, "{before} vs {after}");
    // 8 rows of 16 tokens train in about a millisecond a step: 400 steps, so the kill lands mid-run.
    killed_run_resumes_to_the_uninterrupted_bytes(
        &st,
        &[&lm[..], &["--batch", "1", "--epochs", "50", "--checkpoint-every", "1"]].concat(),
    );
    // LM training needs its text, and its own preset.
    let out = st.root.join("bad");
    for (extra, needle) in [
        (vec!["--task", "lm", "--ftl", "vi", "--neurons", s(&neurons)], "--text"),
        (vec!["--task", "xnli", "--text", "vi"], "--text"),
        ([&lm[..], &["--preset", "small-data"]].concat(), "--preset subnetwork"),
        (vec!["--task", "lm", "--text", "vi", "--stats-run", s(&run)], "trains nothing"),
        (vec!["--task", "lm", "--text", "fr", "--stats-run", s(&run), "--targets", "q,v"], "capture fr"),
    ] {
        fails_with(&strs(&st.args("train", &out, &extra)), &[needle]);
        assert!(!out.exists(), "{extra:?} left {}", out.display());
    }
}

#[test]
fn extra_rows_of_text_stay_clear_of_the_held_out_rows_and_the_equal_budget_lora_matches_the_masked_ones_size() {
    let st = setup();
    let (run, neurons) = captured_run(&st);
    let lm = ["--task", "lm", "--text", "vi", "--neurons", s(&neurons), "--backend", "candle"];
    let a = st.train("lm-extra", &[&lm[..], &["--ftl", "vi", "--extra-rows", "4"]].concat());
    let run_doc = json(&a.join("train.json"))["run"].clone();
    let text = &run_doc["data"]["text"];
    assert_eq!(run_doc["data"]["examples"], 12, "the capture's 8 rows and 4 from the end: {text}");
    let (captured, tail, total) = (
        text["captured_rows"].as_u64().unwrap(),
        text["tail_first"].as_u64().unwrap(),
        text["rows_total"].as_u64().unwrap(),
    );
    assert_eq!((captured, tail), (8, total - 4));
    // Held-out rows start at 9 (row 8 is skipped); they may reach row tail − 2, not the skipped row tail − 1.
    let fits = (tail - 1 - 9).to_string();
    let over = (tail - 9).to_string();
    let j = st.root.join("ppl.json");
    let ppl = |rows: &str, adapter: bool| -> Vec<String> {
        let mut v = vec!["ppl", "--model", s(&st.model), "--lang", "vi", "--heldout", s(&run), "--rows", rows];
        v.extend(["--json", s(&j)]);
        if adapter {
            v.extend(["--adapter", s(&a)]);
        }
        v.into_iter().map(String::from).collect()
    };
    ok(&strs(&ppl(&fits, true)));
    let per_row = json(&j)["results"][0]["sequence_mean_nll"].as_array().unwrap().len();
    assert_eq!(per_row.to_string(), fits, "one mean NLL per held-out row");
    assert_eq!(json(&j)["results"][0]["first_row"], 9);
    fails_with(&strs(&ppl(&over, true)), &["reach the rows", &format!("--rows {fits}")]);
    // Without the adapter nothing was trained on them.
    ok(&strs(&ppl(&over, false)));
    // Extra rows that would leave no held-out row are refused before anything is written.
    let out = st.root.join("too-many");
    let too_many = (total - captured - 2).to_string();
    fails_with(
        &strs(&st.args("train", &out, &[&lm[..], &["--ftl", "vi", "--extra-rows", &too_many]].concat())),
        &["leaves no held-out row", &format!("at most {} extra rows", total - captured - 3)],
    );
    assert!(!out.exists());

    // The equal-budget control: a q,v LoRA whose rank gives the masked gate_proj LoRA's trainable parameters.
    let masked = run_doc["trainable_params"].as_u64().unwrap();
    let b = st.train("lm-qv", &[&lm[..], &["--targets", "q,v", "--match-params", "vi"]].concat());
    let doc = json(&b.join("train.json"))["run"].clone();
    let m = &doc["matched"];
    assert_eq!(m["reference_params"].as_u64(), Some(masked), "{m}");
    let rank = m["rank"].as_u64().unwrap();
    let cfg = json(&b.join("adapter_config.json"));
    assert_eq!(cfg["r"].as_u64(), Some(rank));
    assert_eq!(cfg["target_modules"], serde_json::json!(["q_proj", "v_proj"]));
    assert_eq!(doc["spec"]["alpha"].as_f64(), Some(2.0 * rank as f64), "α keeps the preset's α/r = 2");
    // The nearest rank: one more or one less is no closer.
    let params = doc["trainable_params"].as_u64().unwrap();
    let per_rank = params / rank;
    assert!(params.abs_diff(masked) <= per_rank / 2 + 1 || rank == 1, "{params} vs {masked} at rank {rank}");
    for (extra, needle) in [
        (vec!["--targets", "q,v", "--match-params", "vi", "--ftl", "vi"], "--ftl null"),
        (vec!["--match-params", "vi"], "--targets"),
        (vec!["--targets", "q,v", "--match-params", "null"], "name the FTL"),
        (vec!["--targets", "q,v", "--match-params", "vi", "--rank", "4"], "--rank"),
    ] {
        let out = st.root.join("bad-match");
        fails_with(&strs(&st.args("train", &out, &[&lm[..], &extra[..]].concat())), &[needle]);
        assert!(!out.exists(), "{extra:?} left {}", out.display());
    }
}

#[test]
fn bad_input_is_refused_and_nothing_is_written() {
    let st = setup();
    let neurons = neuron_file(&st.root, 6, 128);
    let elsewhere = st.root.join("o");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let other = neuron_file(&elsewhere, 4, 128);
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--task", "xnli", "--rank", "0"], vec!["--rank", "give at least 1"]),
        // The flag that was given is named, not one derived from it.
        (vec!["--task", "xnli", "--batch", "0"], vec!["--batch", "give at least 1"]),
        (vec!["--task", "xnli", "--lr", "NaN"], vec!["learning rate", "finite"]),
        (vec!["--task", "xnli", "--lr", "inf"], vec!["learning rate", "finite"]),
        (vec!["--task", "xnli", "--max-len", "3"], vec!["no training example"]),
        (vec!["--task", "xnli", "--ftl", "fr", "--neurons", s(&neurons)], vec!["\"fr\"", "does not hold"]),
        (
            vec!["--task", "xnli", "--ftl", "en", "--neurons", s(&other)],
            vec!["4 layers", "select neurons on this model"],
        ),
        (vec!["--task", "xnli", "--ftl", "en"], vec!["--neurons"]),
        (vec!["--task", "xnli", "--ftl", "random"], vec!["random:<languages>"]),
        (vec!["--task", "nli"], vec!["unknown task"]),
        (vec!["--task", "xnli", "--split", "train"], vec!["no split"]),
        // Refused only once the model is loaded, after --out was made: it is removed again.
        (vec!["--task", "xnli", "--backend", "ort"], vec!["ort does not support training"]),
    ];
    for (i, (extra, needles)) in cases.into_iter().enumerate() {
        let out = st.root.join(format!("bad{i}"));
        let args = st.args("train", &out, &extra);
        fails_with(&args.iter().map(String::as_str).collect::<Vec<_>>(), &needles);
        assert!(!out.exists(), "{extra:?} left {} behind", out.display());
    }
}
