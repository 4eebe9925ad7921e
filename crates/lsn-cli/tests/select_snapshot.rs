//! End to end on Gemma-3-270M: `lsn capture` over a small FLORES slice of seven languages, then `lsn select` with
//! every method; the neuron sets are insta snapshots (tests/snapshots/), so any change in capture or selection shows.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

const LANGS: &str = "en,fr,es,vi,zh,hi,ur";

fn lsn(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lsn")).args(args).output().expect("lsn runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "lsn {args:?} failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

/// One line per layer that holds any: "layer: index index …".
fn compact(sets: &serde_json::Value) -> BTreeMap<String, Vec<String>> {
    sets.as_object()
        .unwrap()
        .iter()
        .map(|(lang, pairs)| {
            let mut by_layer: BTreeMap<u64, Vec<String>> = BTreeMap::new();
            for p in pairs.as_array().unwrap() {
                by_layer.entry(p[0].as_u64().unwrap()).or_default().push(p[1].to_string());
            }
            (lang.clone(), by_layer.into_iter().map(|(l, ix)| format!("{l}: {}", ix.join(" "))).collect())
        })
        .collect()
}

#[test]
fn gemma_flores_slice_neuron_sets() {
    let model = lsn_data::cache_home().join("models/gemma-3-270m");
    assert!(model.join("lsn-fetch.json").is_file(), "run `cargo xtask test` (it fetches gemma-3-270m)");
    let data = lsn_data::resolve_data_dir(None).expect("LSN_DATA_DIR must point at the data dir (CI sets it)");
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("run");
    let (run_s, data_s, model_s) = (run.to_str().unwrap(), data.to_str().unwrap(), model.to_str().unwrap());
    lsn(&[
        "capture",
        "--model",
        model_s,
        "--lang",
        LANGS,
        "--data-dir",
        data_s,
        "--corpus",
        "flores",
        "--row-len",
        "128",
        "--max-tokens",
        "1024",
        "--batch-rows",
        "4",
        "--run",
        run_s,
    ]);
    let out = lsn(&["select", "--run", run_s, "--lang", LANGS, "--method", "all", "--seed", "42"]);
    for method in ["lape-mondal", "lape-tang", "act-prob-90p", "random"] {
        let path: PathBuf = run.join(format!("neurons/{method}.json"));
        let sel: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(run.join(format!("neurons/{method}.layers.svg")).is_file(), "{method}: no plot");
        let summary = serde_json::json!({
            "m": sel["m"], "candidates": sel["candidates"], "counts": sel["counts"],
            "thresholds": sel["thresholds"], "neurons": compact(&sel["neurons"]),
        });
        insta::assert_json_snapshot!(method, summary);
    }
    assert!(out.contains("lape-mondal: m = 369"), "{out}");
}
