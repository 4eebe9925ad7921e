//! `lsn forcing` (and `lsn layer-means`, which its difference-of-means steering needs) on a tiny random model: the
//! table and results it writes, reuse of finished runs, and the bad inputs it must refuse with one clear error. (A random model's continuations are noise: this checks the command, not
//! the effect; lsn-eval's forcing tests and the harness check the arithmetic.)

mod common;

use std::path::{Path, PathBuf};

use common::{fails_with, ok, random_model, s};

/// Sentences of a language, one per line, written into `dir/name`.
fn lines(dir: &Path, name: &str, text: &[&str], copies: usize) -> PathBuf {
    let path = dir.join(name);
    let body: Vec<String> = (0..copies).flat_map(|i| text.iter().map(move |t| format!("{t} ({i})"))).collect();
    std::fs::write(&path, body.join("\n") + "\n").unwrap();
    path
}

const EN: &[&str] = &["The river runs past the old mill.", "We met at the station before noon."];
const VI: &[&str] = &["Dòng sông chảy qua cối xay cũ.", "Chúng tôi gặp nhau ở nhà ga trước buổi trưa."];
const HI: &[&str] = &["नदी पुरानी चक्की के पास से बहती है।", "हम दोपहर से पहले स्टेशन पर मिले।"];

#[test]
fn forcing_writes_its_table_reuses_finished_runs_and_refuses_bad_input() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let model = random_model(root, "m", "tiny-gemma3", 3);
    let data = root.join("data");
    std::fs::create_dir_all(data.join("corpus/flores200_devtest")).unwrap();
    lines(&data.join("corpus/flores200_devtest"), "en.eng_Latn.devtest", EN, 6);
    let run = root.join("run");
    let mut args: Vec<String> =
        ["capture", "--model", s(&model), "--lang", "en,vi,hi", "--corpus", "none"].map(String::from).to_vec();
    for (lang, text) in [("en", EN), ("vi", VI), ("hi", HI)] {
        let f = lines(root, &format!("{lang}.txt"), text, 20);
        args.extend(["--text".into(), format!("{lang}={}", f.display())]);
    }
    args.extend(["--run", s(&run), "--row-len", "16", "--batch-rows", "2", "--max-tokens", "128"].map(String::from));
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    ok(&["select", "--run", s(&run), "--lang", "en,vi,hi", "--method", "act-prob-90p"]);
    let neurons = run.join("neurons/act-prob-90p.json");
    let out = root.join("out/forcing.json");
    let base = |steer: &str, out: &Path| -> Vec<String> {
        [
            "forcing",
            "--model",
            s(&model),
            "--neurons",
            s(&neurons),
            "--steer",
            steer,
            "--alpha",
            "4",
            "--targets",
            "vi,hi",
            "--prompts",
            "6",
            "--max-new-tokens",
            "5",
            "--batch",
            "4",
            "--data-dir",
            s(&data),
            "--out",
            s(out),
        ]
        .map(String::from)
        .to_vec()
    };
    let a = base("arithmetic", &out);
    let (stdout, _) = ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(stdout.contains("| steering | target | in target %"), "{stdout}");
    assert!(stdout.contains("| arithmetic α = 4 (en off) | vi |"), "{stdout}");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let cells = doc["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    for c in cells {
        assert_eq!(c["share"]["n"], 6, "{c}");
        assert!(c["control_share"]["n"] == 6 && c["vs_control"]["n"] == 6, "{c}");
    }
    assert_eq!(doc["prompts"].as_array().unwrap().len(), 6);
    assert_eq!(doc["plain"].as_array().unwrap().len(), 6);
    assert!(std::fs::read_to_string(out.with_extension("md")).unwrap().contains("| hi |"));
    // A second run with the same settings reuses every finished part and writes the same cells.
    let (_, stderr) = ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    for part in ["plain", "vi-steered", "vi-control", "hi-steered", "hi-control"] {
        assert!(stderr.contains(&format!("{part}: reusing")), "{part}: {stderr}");
    }
    let again: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(again["cells"], doc["cells"]);
    // Another operation does not reuse the steered parts (the unsteered ones it may).
    let (_, stderr) = ok(&base("scale", &out).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!stderr.contains("vi-steered: reusing"), "{stderr}");

    // Difference-of-means steering needs the languages' layer means, which `lsn layer-means` writes (once).
    let dm = root.join("out/diffmean.json");
    fails_with(&base("diffmean", &dm).iter().map(String::as_str).collect::<Vec<_>>(), &["lsn layer-means"]);
    let means = ["layer-means", "--model", s(&model), "--run", s(&run), "--lang", "en,vi,hi", "--max-rows", "3"];
    let (stdout, _) = ok(&means);
    assert!(stdout.contains("vi: means of 6 layers over 3 rows (48 tokens)"), "{stdout}");
    let (_, stderr) = ok(&means);
    assert!(stderr.contains("skipped"), "{stderr}");
    let (stdout, _) = ok(&base("diffmean", &dm).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(stdout.contains("| diffmean α = 4 at layer 4 (from en) | hi |"), "{stdout}");

    let bad = |extra: &[&str], needles: &[&str]| {
        let mut v = base("add", &root.join("bad/forcing.json"));
        for pair in extra.chunks(2) {
            match v.iter().position(|x| x == pair[0]) {
                Some(i) => v[i + 1] = pair[1].into(),
                None => v.extend(pair.iter().map(|x| x.to_string())),
            }
        }
        fails_with(&v.iter().map(String::as_str).collect::<Vec<_>>(), needles);
        assert!(!root.join("bad/forcing.json").exists());
    };
    bad(&["--targets", "kn"], &["no model of Kannada"]);
    bad(&["--targets", "en"], &["own language"]);
    bad(&["--prompts", "500"], &["holds 12 sentences"]);
    bad(&["--random-like", "3"], &["--control-seed"]);
    bad(&["--targets", "fr"], &["holds sets for"]);
}
