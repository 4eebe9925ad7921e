//! The run directory cannot be corrupted: one process at a time (a lock naming its holder, stale locks taken over),
//! one model per run (by the weights' content), checks before compute, no argument silently ignored, degenerate
//! statistics called out, no leftovers. On tiny random models, so no download is needed.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{fails_with, lsn, ok, output, random_model, run, s, text_file, word_level_tokenizer};

/// `lsn capture` of `model` on `--text LANG=text` only; rows of 16 tokens, one row per batch, unless `extra` gives
/// --row-len or --batch-rows (every other flag of `extra` is appended).
fn capture_args(model: &Path, lang: &str, text: &str, run: &Path, extra: &[(&str, &str)]) -> Vec<String> {
    let mut a: Vec<String> = ["capture", "--model", s(model), "--lang", lang, "--corpus", "none", "--text", text]
        .iter()
        .map(|a| a.to_string())
        .collect();
    a.extend(["--run".into(), s(run).into()]);
    for (flag, default) in [("--row-len", "16"), ("--batch-rows", "1")] {
        if !extra.iter().any(|(f, _)| *f == flag) {
            a.extend([flag.into(), default.into()]);
        }
    }
    for (f, v) in extra {
        a.extend([f.to_string(), v.to_string()]);
    }
    a
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn a_second_capture_into_a_busy_run_is_refused_and_the_first_is_intact() {
    let t = tempfile::tempdir().unwrap();
    let model = random_model(t.path(), "m", "tiny-gemma3", 3);
    let text = text_file(t.path(), "en.txt", 200);
    let en = format!("en={}", text.display());
    let with_seed =
        |run: &Path, seed: &str| capture_args(&model, "en", &en, run, &[("--seed", seed), ("--checkpoint-every", "1")]);
    let clean = t.path().join("clean");
    ok(&strs(&with_seed(&clean, "1")));
    let reference = std::fs::read(clean.join("stats/en.safetensors")).unwrap();

    let shared = t.path().join("shared");
    let mut first = lsn().args(with_seed(&shared, "1")).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let lock = shared.join(".lsn.lock");
    let t0 = Instant::now();
    while std::fs::read(&lock).map(|b| b.is_empty()).unwrap_or(true) {
        assert!(t0.elapsed() < Duration::from_secs(60), "the first capture never took the lock");
        std::thread::sleep(Duration::from_millis(2));
    }
    let second = fails_with(&strs(&with_seed(&shared, "2")), &["in use by pid", "lsn capture", "another --run"]);
    let status = first.wait().unwrap();
    assert!(status.success(), "the first capture failed");
    assert!(second.contains(&format!("pid {}", first.id())), "{second}");
    assert!(std::fs::read(shared.join("stats/en.safetensors")).unwrap() == reference, "the first result changed");
    // A finished capture leaves no checkpoint behind, and releases the lock.
    let names: Vec<String> = std::fs::read_dir(shared.join("stats"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("partial") && !n.ends_with(".tmp")), "{names:?}");
    assert!(std::fs::read(&lock).unwrap().is_empty());
}

#[test]
fn a_stale_lock_is_taken_over_and_temporaries_of_killed_runs_are_removed() {
    let t = tempfile::tempdir().unwrap();
    let model = random_model(t.path(), "m", "tiny-llama", 1);
    let text = text_file(t.path(), "en.txt", 60);
    let run_dir = t.path().join("run");
    std::fs::create_dir_all(run_dir.join("stats")).unwrap();
    let dead = r#"{"pid":999999999,"command":"lsn capture --lang en (killed)","since":1}"#;
    std::fs::write(run_dir.join(".lsn.lock"), dead).unwrap();
    std::fs::write(run_dir.join("stats/.en.safetensors.999999999.tmp"), "half a file").unwrap();
    let en = format!("en={}", text.display());
    let (_, stderr) = ok(&strs(&capture_args(&model, "en", &en, &run_dir, &[])));
    assert!(stderr.contains("took over the lock") && stderr.contains("999999999"), "{stderr}");
    assert!(!run_dir.join("stats/.en.safetensors.999999999.tmp").exists());
}

#[test]
fn statistics_of_other_weights_under_the_same_config_and_tokenizer_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let base = random_model(t.path(), "base", "tiny-gemma3", 1);
    let tuned = random_model(t.path(), "tuned", "tiny-gemma3", 2);
    for f in ["config.json", "tokenizer.json"] {
        assert_eq!(std::fs::read(base.join(f)).unwrap(), std::fs::read(tuned.join(f)).unwrap());
    }
    let text = text_file(t.path(), "xx.txt", 60);
    let (en, fr) = (format!("en={}", text.display()), format!("fr={}", text.display()));
    let run_a = t.path().join("a");
    ok(&strs(&capture_args(&base, "en", &en, &run_a, &[])));
    // Capturing the fine-tune into the base model's run is refused before any compute.
    let e = fails_with(&strs(&capture_args(&tuned, "fr", &fr, &run_a, &[])), &["holds results of model", "weights"]);
    assert!(e.contains(s(&tuned)), "{e}");
    assert!(!run_a.join("stats/fr.safetensors").exists());
    // Statistics of the fine-tune copied into the base run are refused by select (and by merge).
    let run_b = t.path().join("b");
    ok(&strs(&capture_args(&tuned, "fr", &fr, &run_b, &[])));
    for ext in ["safetensors", "json"] {
        std::fs::copy(run_b.join(format!("stats/fr.{ext}")), run_a.join(format!("stats/fr.{ext}"))).unwrap();
    }
    fails_with(
        &["select", "--run", s(&run_a), "--lang", "en,fr", "--method", "lape-mondal"],
        &["fr.safetensors was made with another model", "run.json", "weights"],
    );
}

#[test]
fn bad_paths_fail_before_any_compute() {
    let t = tempfile::tempdir().unwrap();
    let model = random_model(t.path(), "m", "tiny-llama", 1);
    let text = text_file(t.path(), "en.txt", 20);
    let en = format!("en={}", text.display());
    let file = t.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    fails_with(&strs(&capture_args(&model, "en", &en, &file.join("run"), &[])), &["a-file is a file", "--run"]);
    fails_with(
        &strs(&capture_args(&model, "en", &en, Path::new("/proc/lsn-no-such-run"), &[])),
        &["cannot create", "--run"],
    );
    fails_with(
        &strs(&capture_args(&t.path().join("no-such-model"), "en", &en, &t.path().join("r"), &[])),
        &["no-such-model", "does not exist"],
    );
    fails_with(
        &["select", "--run", s(&t.path().join("r")), "--lang", "en", "--set", "../../escape"],
        &["not a set name"],
    );
    fails_with(
        &["ppl", "--model", s(&model), "--lang", "en", "--data-dir", s(t.path()), "--json", s(&file.join("x.json"))],
        &["a-file is a file", "--json"],
    );
}

#[test]
fn a_checkpoint_must_match_its_config() {
    let t = tempfile::tempdir().unwrap();
    let gemma = random_model(t.path(), "g", "tiny-gemma3", 1);
    let llama = random_model(t.path(), "l", "tiny-llama", 1);
    let text = text_file(t.path(), "en.txt", 20);
    let en = format!("en={}", text.display());
    // Rows beyond max_position_embeddings (4096 for tiny-gemma3).
    let a = capture_args(&gemma, "en", &en, &t.path().join("r1"), &[("--row-len", "8192")]);
    fails_with(&strs(&a), &["--row-len 8192", "max_position_embeddings (4096"]);
    // A layer the config does not account for: tiny-llama has 3, its config now says 2.
    let cfg_path = llama.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    cfg["num_hidden_layers"] = 2.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    fails_with(
        &strs(&capture_args(&llama, "en", &en, &t.path().join("r2"), &[])),
        &["not accounted for", "model.layers.2."],
    );
}

#[test]
fn every_given_argument_is_used_or_refused() {
    let t = tempfile::tempdir().unwrap();
    let model = random_model(t.path(), "m", "tiny-llama", 1);
    let text = text_file(t.path(), "en.txt", 20);
    let run_dir = t.path().join("r");
    let fr = format!("fr={}", text.display());
    let en = format!("en={}", text.display());
    let a = capture_args(&model, "en", &en, &run_dir, &[("--text", &fr)]);
    fails_with(&strs(&a), &["--text fr=", "not in --lang en"]);
    for (flag, value) in [("--batch-rows", "0"), ("--checkpoint-every", "0"), ("--row-len", "0"), ("--max-tokens", "0")]
    {
        let a = capture_args(&model, "en", &en, &run_dir, &[(flag, value)]);
        let e = fails_with(&strs(&a), &[flag]);
        assert!(!e.contains("multiple times"), "{e}");
    }
    for flag in ["--sentences", "--batch"] {
        fails_with(&["ppl", "--model", s(&model), "--lang", "en", flag, "0"], &[flag]);
    }
    fails_with(&strs(&capture_args(&model, "en,en", &en, &run_dir, &[])), &["--lang en,en names en twice"]);
    fails_with(&strs(&capture_args(&model, "en", &en, &run_dir, &[("--text", &en)])), &["are the same file"]);
    // A failed first capture leaves no run directory behind.
    let empty = t.path().join("empty.txt");
    std::fs::write(&empty, "\n").unwrap();
    fails_with(&strs(&capture_args(&model, "en", &format!("en={}", empty.display()), &run_dir, &[])), &["no text"]);
    assert!(!run_dir.exists(), "a failed first capture left {}", run_dir.display());
    // More tokens asked for than the text holds: said, with what was used.
    let (_, stderr) = ok(&strs(&capture_args(&model, "en", &en, &run_dir, &[("--max-tokens", "100000000")])));
    assert!(stderr.contains("--max-tokens 100000000 asks for more than its text holds; using all of it"), "{stderr}");
    let r = s(&run_dir);
    let select = |extra: &[&'static str]| -> Vec<String> {
        ["select", "--run", r, "--lang", "en"].iter().chain(extra).map(|a| a.to_string()).collect()
    };
    fails_with(
        &strs(&select(&["--method", "random", "--top-rate", "0.1"])),
        &["--top-rate is given but no chosen method"],
    );
    fails_with(&strs(&select(&["--method", "all,random"])), &["`all` cannot be combined"]);
    fails_with(&strs(&select(&["--method", "random,random"])), &["names random twice"]);
    fails_with(
        &strs(&select(&["--method", "act-prob-90p", "--act-prob-rate", "1e-9"])),
        &["no neuron", "--act-prob-rate"],
    );
    fails_with(&strs(&select(&["--method", "act-prob-90p", "--act-prob-rate", "NaN"])), &["--act-prob-rate NaN"]);
    assert!(!run_dir.join("neurons/act-prob-90p.json").exists());
    ok(&strs(&select(&["--method", "random", "--seed", "3"])));
}

#[test]
fn one_batch_per_language_is_called_out() {
    let t = tempfile::tempdir().unwrap();
    let model = random_model(t.path(), "m", "tiny-gemma3", 1);
    let text = text_file(t.path(), "xx.txt", 40);
    // 20 rows of 16 tokens per language, in batches of `rows`.
    let (en, fr) = (format!("en={}", text.display()), format!("fr={}", text.display()));
    let capture = |run: &Path, rows: &str| {
        let extra = [("--text", fr.as_str()), ("--max-tokens", "320"), ("--batch-rows", rows)];
        ok(&strs(&capture_args(&model, "en,fr", &en, run, &extra))).1
    };
    let run1 = t.path().join("r1");
    let stderr = capture(&run1, "20");
    assert!(stderr.contains("only 1 batch(es)") && stderr.contains("≈ 10% by construction"), "{stderr}");
    fails_with(
        &["select", "--run", s(&run1), "--lang", "en,fr", "--method", "act-prob-90p"],
        &["at least 2 capture batches", "en has 1", "--batch-rows"],
    );
    ok(&["select", "--run", s(&run1), "--lang", "en,fr", "--method", "lape-tang,random"]);
    // Two batches: selected, with the warning printed and recorded in the neuron file.
    let run2 = t.path().join("r2");
    let stderr = capture(&run2, "10");
    assert!(stderr.contains("only 2 batch(es)") && !stderr.contains("by construction"), "{stderr}");
    let (_, stderr) = ok(&["select", "--run", s(&run2), "--lang", "en,fr", "--method", "act-prob-90p"]);
    let sel: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run2.join("neurons/act-prob-90p.json")).unwrap()).unwrap();
    let w = sel["warnings"].as_array().unwrap();
    assert!(w.iter().any(|w| w.as_str().unwrap().contains("mean of only 2 batch quantiles")), "{w:?}");
    assert!(stderr.contains("warning: act-prob-90p"), "{stderr}");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(run2.join("run.json")).unwrap()).unwrap();
    assert!(manifest["stages"]["select/act-prob-90p"]["config_sha256"].is_string(), "{manifest}");
    assert_eq!(manifest["stages"]["capture/fr"]["outputs"][0], "stats/fr.safetensors", "{manifest}");
    assert_eq!(manifest["model"]["name"], s(&model), "{manifest}");
}

#[test]
fn a_damaged_cached_model_names_the_fix() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let dir = home.join("models/gemma-3-270m");
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    let src = random_model(t.path(), "src", "tiny-gemma3", 1);
    std::fs::rename(&src, &dir).unwrap();
    let mut files = serde_json::Map::new();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        let p = dir.join(f);
        files.insert(
            f.into(),
            serde_json::json!({"bytes": std::fs::metadata(&p).unwrap().len(), "sha256": lsn_data::sha256_file(&p).unwrap()}),
        );
    }
    let marker = serde_json::json!({"model": "gemma-3-270m",
        "gguf_sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", "files": files});
    std::fs::write(dir.join("lsn-fetch.json"), marker.to_string()).unwrap();
    let text = text_file(t.path(), "en.txt", 20);
    let en = format!("en={}", text.display());
    let home_args = |mut a: Vec<String>| {
        a.extend(["--home".into(), s(&home).into()]);
        a
    };
    let a = home_args(capture_args(Path::new("gemma-3-270m"), "en", &en, &t.path().join("r"), &[]));
    ok(&strs(&a));
    // One byte changed in place (same size): found by its sha256.
    let w = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&w, bytes).unwrap();
    let a = home_args(capture_args(Path::new("gemma-3-270m"), "en", &en, &t.path().join("r2"), &[]));
    fails_with(&strs(&a), &["model.safetensors has sha256", "lsn fetch-model gemma-3-270m --force"]);
    // fetch-model checks the files, not only its marker, before it says "already fetched".
    let (okay, stdout, stderr) =
        output(lsn().args(["fetch-model", "gemma-3-270m", "--python", "false", "--home", s(&home)]).output().unwrap());
    assert!(!okay && !stdout.contains("already fetched"), "{stdout}");
    assert!(stderr.contains("is damaged") && stderr.contains("fetching it again"), "{stderr}");
}

#[test]
fn no_nan_reaches_a_results_file() {
    let t = tempfile::tempdir().unwrap();
    let model = random_model(t.path(), "m", "tiny-llama", 1);
    // A word-level tokenizer without BOS: each one-word sentence is a single token, with nothing to predict.
    std::fs::write(model.join("tokenizer.json"), word_level_tokenizer()).unwrap();
    let flores = t.path().join("data/corpus/flores200_devtest");
    std::fs::create_dir_all(&flores).unwrap();
    std::fs::write(flores.join("en.eng_Latn.devtest"), "w1\nw2\nw3\n").unwrap();
    let json = t.path().join("ppl.json");
    let data = t.path().join("data");
    let args = ["ppl", "--model", s(&model), "--lang", "en", "--data-dir", s(&data), "--json", s(&json)];
    fails_with(&args, &["no token to predict"]);
    assert!(!json.exists());
}

#[test]
fn help_shows_only_the_flags_a_command_uses() {
    let help = |cmd: &str| run(&[cmd, "--help"]).1;
    for cmd in ["select", "merge", "convert", "random-model"] {
        assert!(!help(cmd).contains("--home"), "{cmd} --help offers --home, which it does not use");
    }
    for cmd in ["capture", "ppl", "fetch-model"] {
        assert!(help(cmd).contains("--home"), "{cmd} --help lacks --home");
    }
    let rm = help("random-model");
    assert!(
        rm.contains("tokenizer.json") && rm.contains("The directory to write") && rm.contains("Seed of the"),
        "{rm}"
    );
}

#[test]
fn statistics_of_different_context_lengths_are_not_compared() {
    let t = tempfile::tempdir().unwrap();
    let model = random_model(t.path(), "m", "tiny-llama", 1);
    let text = text_file(t.path(), "xx.txt", 40);
    let run_dir = t.path().join("r");
    ok(&strs(&capture_args(&model, "en", &format!("en={}", text.display()), &run_dir, &[])));
    ok(&strs(&capture_args(&model, "fr", &format!("fr={}", text.display()), &run_dir, &[("--row-len", "32")])));
    fails_with(
        &["select", "--run", s(&run_dir), "--lang", "en,fr", "--method", "lape-tang"],
        &["rows of 16 tokens", "rows of 32", "--row-len 16"],
    );
}

#[test]
fn inputs_are_neither_destroyed_nor_counted_twice() {
    let t = tempfile::tempdir().unwrap();
    // convert --force into the directory that holds its own input.
    let gx = t.path().join("gx");
    std::fs::create_dir(&gx).unwrap();
    std::fs::write(gx.join("in.gguf"), "GGUF not really").unwrap();
    fails_with(&["convert", s(&gx.join("in.gguf")), "--out", s(&gx), "--force"], &["holds the GGUF", "another --out"]);
    assert!(gx.join("in.gguf").is_file());
    // One text file under two spellings.
    let model = random_model(t.path(), "m", "tiny-llama", 1);
    let text = text_file(t.path(), "en.txt", 40);
    std::os::unix::fs::symlink(&text, t.path().join("link.txt")).unwrap();
    let run_dir = t.path().join("r");
    let twice = format!("en={}", t.path().join("link.txt").display());
    let a = capture_args(&model, "en", &format!("en={}", text.display()), &run_dir, &[("--text", &twice)]);
    fails_with(&strs(&a), &["are the same file", "count twice"]);
    // select checks every output path before it computes anything.
    ok(&strs(&capture_args(&model, "en", &format!("en={}", text.display()), &run_dir, &[])));
    std::fs::create_dir_all(run_dir.join("neurons/random.layers.png")).unwrap();
    fails_with(
        &["select", "--run", s(&run_dir), "--lang", "en", "--method", "random"],
        &["random.layers.png is a directory"],
    );
    let left: Vec<_> = std::fs::read_dir(run_dir.join("neurons")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 1, "{left:?}");
}
