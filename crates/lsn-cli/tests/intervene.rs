//! Interventions, generation and PPXC through the CLI on tiny random models: `lsn ppl --neurons/--heldout`,
//! `lsn ppxc` (matrix, random control, heatmap, manifest) and `lsn generate`, and the bad inputs each must refuse
//! with one clear error and nothing written.

mod common;

use std::path::{Path, PathBuf};

use common::{fails_with, ok, random_model, s, strs};

/// A text file of `docs` lines over the letters of `alphabet` (deterministic, different per alphabet).
fn text(root: &Path, name: &str, alphabet: &str, docs: usize) -> PathBuf {
    let letters: Vec<char> = alphabet.chars().collect();
    let mut x = 99u64;
    let mut out = String::new();
    for _ in 0..docs {
        for w in 0..6 {
            if w > 0 {
                out.push(' ');
            }
            for _ in 0..4 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                out.push(letters[(x >> 33) as usize % letters.len()]);
            }
        }
        out.push('\n');
    }
    let file = root.join(name);
    std::fs::write(&file, out).unwrap();
    file
}

struct Study {
    _t: tempfile::TempDir,
    root: PathBuf,
    model: PathBuf,
    run: PathBuf,
}

/// tiny-gemma3 captured on three "languages" (4 rows of 16 tokens each, the rest of each text held out), then
/// LAPE and ActProb-90p selected.
fn study() -> Study {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().to_path_buf();
    let model = random_model(&root, "m", "tiny-gemma3", 3);
    let run = root.join("run");
    let mut args: Vec<String> = ["capture", "--model", s(&model), "--lang", "en,fr,de", "--corpus", "none"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    for (lang, alphabet) in [("en", "abcdefgh"), ("fr", "éèàùçôîê"), ("de", "äöüßxyzq")] {
        let f = text(&root, &format!("{lang}.txt"), alphabet, 40);
        args.extend(["--text".into(), format!("{lang}={}", f.display())]);
    }
    for (flag, v) in [("--run", s(&run)), ("--row-len", "16"), ("--batch-rows", "1"), ("--max-tokens", "64")] {
        args.extend([flag.to_string(), v.to_string()]);
    }
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    ok(&["select", "--run", s(&run), "--lang", "en,fr,de", "--method", "lape-mondal,act-prob-90p"]);
    Study { _t: t, root, model, run }
}

#[test]
fn ppxc_ppl_and_generate_run_with_interventions() {
    let st = study();
    let (m, r) = (s(&st.model), s(&st.run));
    let neurons = st.run.join("neurons/lape-mondal.json");
    let n = s(&neurons);
    // Held-out perplexity, plain and with each language's own neurons filled from its statistics.
    let json = st.root.join("ppl.json");
    let (out, _) = ok(&["ppl", "--model", m, "--lang", "en,fr", "--heldout", r, "--rows", "2", "--json", s(&json)]);
    assert!(out.contains("held-out rows 5..7"), "{out}");
    let plain: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for fill in ["zero", "mean", "p90", "p5"] {
        let (out, _) = ok(&[
            "ppl",
            "--model",
            m,
            "--lang",
            "en,fr",
            "--heldout",
            r,
            "--rows",
            "2",
            "--neurons",
            n,
            "--fill",
            fill,
            "--json",
            s(&json),
        ]);
        assert!(out.contains(&format!("fill {fill}")), "{out}");
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        let r0 = &doc["results"][0];
        assert!(r0["neurons_overwritten"].as_u64().unwrap() > 0);
        assert_eq!(r0["tokens"], plain["results"][0]["tokens"]);
        assert_ne!(r0["mean_nll"], plain["results"][0]["mean_nll"], "fill {fill} changed nothing");
    }
    // PPXC with its random control: a 3 × 3 matrix per method, a heatmap, and a manifest record.
    let (out, _) = ok(&["ppxc", "--run", r, "--method", "lape-mondal", "--rows", "2", "--batch", "2"]);
    assert!(out.contains("| en |") && out.contains("| random de |"), "{out}");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(st.run.join("ppxc/lape-mondal.json")).unwrap()).unwrap();
    for part in ["lape", "random"] {
        let d = doc[part]["delta"].as_array().unwrap();
        assert_eq!((d.len(), d[0].as_array().unwrap().len()), (3, 3), "{part}");
    }
    assert_eq!(doc["languages"], serde_json::json!(["en", "fr", "de"]));
    assert!(st.run.join("ppxc/lape-mondal.heatmap.svg").is_file());
    let manifest = std::fs::read_to_string(st.run.join("run.json")).unwrap();
    assert!(manifest.contains("ppxc/lape-mondal"), "{manifest}");
    // Generation, with and without the language's neurons zeroed.
    let (out, _) = ok(&["generate", "--model", m, "--prompt", "abcd efgh", "--max-new-tokens", "3"]);
    assert!(out.contains("3 new tokens"), "{out}");
    let (out, _) = ok(&["generate", "--model", m, "--prompt", "abcd efgh", "--max-new-tokens", "3", "--neurons", n]);
    assert!(out.contains("lape-mondal") && out.contains("fill zero"), "{out}");
}

#[test]
fn bad_intervention_inputs_are_refused_and_nothing_is_written() {
    let st = study();
    let (m, r) = (s(&st.model), s(&st.run));
    let neurons = st.run.join("neurons/lape-mondal.json");
    let n = s(&neurons);
    let json = st.root.join("out.json");
    let j = s(&json);
    let ppl = |extra: &[&str]| -> Vec<String> {
        ["ppl", "--model", m, "--heldout", r, "--rows", "1", "--json", j]
            .iter()
            .chain(extra)
            .map(|a| a.to_string())
            .collect()
    };
    let strs = |v: &[String]| v.iter().map(String::as_str).collect::<Vec<_>>().join("\u{1}");
    let fails = |v: Vec<String>, needles: &[&str]| {
        let joined = strs(&v);
        fails_with(&joined.split('\u{1}').collect::<Vec<_>>(), needles);
    };
    // A neuron file of another model of the same shape.
    let other = random_model(&st.root, "other", "tiny-gemma3", 4);
    fails_with(
        &["ppl", "--model", s(&other), "--lang", "en", "--heldout", r, "--neurons", n, "--json", j],
        &["was made with model", "not with the model this command loads", "weights"],
    );
    // A fill the statistics do not have, and a fill name that does not exist.
    fails(ppl(&["--lang", "en", "--neurons", n, "--fill", "p99"]), &["unknown fill \"p99\"", "p95"]);
    let empty_run = st.root.join("no-stats");
    std::fs::create_dir_all(&empty_run).unwrap();
    fails(
        ppl(&["--lang", "en", "--neurons", n, "--fill", "mean", "--stats-run", s(&empty_run)]),
        &["en's statistics", "does not exist"],
    );
    // Statistics of another tap point.
    let pre = st.root.join("pre");
    let f = st.root.join("en.txt");
    ok(&[
        "capture",
        "--model",
        m,
        "--lang",
        "en",
        "--corpus",
        "none",
        "--text",
        &format!("en={}", f.display()),
        "--run",
        s(&pre),
        "--row-len",
        "16",
        "--batch-rows",
        "1",
        "--max-tokens",
        "64",
        "--tap-point",
        "gate_pre",
    ]);
    fails(
        ppl(&["--lang", "en", "--neurons", n, "--fill", "p90", "--stats-run", s(&pre)]),
        &["tap point gate_pre", "act"],
    );
    // Languages without a set.
    fails(ppl(&["--lang", "en", "--neurons", n, "--neuron-lang", "zh"]), &["--neuron-lang zh", "en, fr, de"]);
    fails_with(&["ppxc", "--run", r, "--set", "set9"], &["neurons/set9/lape-mondal.json", "lsn select"]);
    // Generation: an empty prompt, no new token, a language without a set.
    fails_with(&["generate", "--model", m, "--prompt", " ", "--json", j], &["empty"]);
    fails_with(
        &["generate", "--model", m, "--prompt", "ab", "--max-new-tokens", "0", "--json", j],
        &["0 is not allowed"],
    );
    fails_with(
        &["generate", "--model", m, "--prompt", "ab", "--lang", "zh", "--neurons", n, "--json", j],
        &["no neuron set for zh"],
    );
    assert!(!json.exists(), "a failed command wrote {}", json.display());
    assert!(!st.run.join("ppxc").exists(), "a failed ppxc left a directory behind");
}

#[test]
fn an_empty_set_is_refused_by_ppl_unless_allowed_and_flagged_by_ppxc() {
    let st = study();
    let (m, r) = (s(&st.model), s(&st.run));
    // The LAPE file with fr's set emptied (a small model or capture can leave a language without neurons).
    let mut sel: serde_json::Value =
        serde_json::from_slice(&std::fs::read(st.run.join("neurons/lape-mondal.json")).unwrap()).unwrap();
    let layers = sel["layers"].as_u64().unwrap() as usize;
    sel["neurons"]["fr"] = serde_json::json!([]);
    sel["counts"]["fr"] = serde_json::json!(0);
    sel["per_layer"]["fr"] = serde_json::json!(vec![0; layers]);
    let file = st.run.join("neurons/empty/lape-mondal.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, sel.to_string()).unwrap();
    let json = st.root.join("ppl.json");
    let ppl = ["ppl", "--model", m, "--lang", "fr", "--heldout", r, "--rows", "1", "--neurons", s(&file)];
    fails_with(&[&ppl[..], &["--json", s(&json)]].concat(), &["fr's neuron set", "is empty", "--allow-empty-set"]);
    assert!(!json.exists());
    let (_, stderr) = ok(&[&ppl[..], &["--allow-empty-set", "--json", s(&json)]].concat());
    assert!(stderr.contains("fr is evaluated without any intervention"), "{stderr}");
    let (_, stderr) = ok(&["ppxc", "--run", r, "--set", "empty", "--rows", "1", "--batch", "1", "--no-random"]);
    assert!(stderr.contains("the lape-mondal neuron set of fr is empty"), "{stderr}");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(st.run.join("ppxc/empty/lape-mondal.json")).unwrap()).unwrap();
    assert_eq!(doc["empty_sets"], serde_json::json!(["fr"]));
    // A method PPXC cannot read is named with the ones it can, not sent to select.
    fails_with(
        &["ppxc", "--run", r, "--method", "random"],
        &["--method \"random\"", "lape-mondal, lape-tang, act-prob-90p"],
    );
}

#[test]
fn a_capture_of_all_the_text_leaves_its_last_rows_for_perplexity_with_leave_rows() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let model = random_model(root, "m", "tiny-gemma3", 3);
    let m = s(&model);
    let en = text(root, "en.txt", "abcdefgh", 40);
    let capture = |run: &Path, extra: &[&str]| -> Vec<String> {
        let text = format!("en={}", en.display());
        let base = ["capture", "--model", m, "--lang", "en", "--corpus", "none", "--text", &text, "--run", s(run)];
        [&base[..], &["--row-len", "16", "--batch-rows", "1"], extra].concat().iter().map(|a| a.to_string()).collect()
    };
    // All the text: no held-out row is left, and the error names the flag that leaves some.
    let all = root.join("all");
    ok(&strs(&capture(&all, &[])));
    let err = fails_with(
        &["ppl", "--model", m, "--lang", "en", "--heldout", s(&all), "--rows", "2"],
        &["no held-out row is left", "--leave-rows 3"],
    );
    let total: usize = err.split(" of the ").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
    // --leave-rows 3 keeps all but the last 3 rows: a skipped row, then the 2 held-out ones.
    let left = root.join("left");
    ok(&strs(&capture(&left, &["--leave-rows", "3"])));
    let (out, _) = ok(&["ppl", "--model", m, "--lang", "en", "--heldout", s(&left), "--rows", "2"]);
    assert!(out.contains(&format!("held-out rows {}..{total}", total - 2)), "{total} rows: {out}");
    // Leaving every row is refused before anything is written.
    let none = root.join("none");
    let err = fails_with(&strs(&capture(&none, &["--leave-rows", &total.to_string()])), &["keeps none"]);
    assert!(err.contains(&format!("at most {} rows", total - 1)), "{err}");
    assert!(!none.join("stats/en.safetensors").exists());
}
