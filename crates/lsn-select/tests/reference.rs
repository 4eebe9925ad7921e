//! lsn-select against the published reference code, transcribed in torch by `xtask/fixtures/select_reference.py`
//! (fixtures/select/*.json): identical neuron sets, bit-identical thresholds, entropies within 1e-6.

use std::path::PathBuf;

use lsn_select::{CountTable, LangCounts, LapeParams, LapePreset, act_prob, lape};
use serde_json::Value;

fn cases() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/select");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 5, "expected the reference cases in {}", dir.display());
    out
}

fn table(doc: &Value) -> CountTable {
    CountTable {
        layers: doc["layers"].as_u64().unwrap() as usize,
        intermediate: doc["intermediate"].as_u64().unwrap() as usize,
        langs: doc["langs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| LangCounts {
                lang: l["lang"].as_str().unwrap().into(),
                n_tokens: l["n_tokens"].as_u64().unwrap(),
                counts: l["counts"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).collect(),
            })
            .collect(),
    }
}

fn f32_of(v: &Value) -> Option<f32> {
    v.as_f64().map(|x| x as f32)
}

fn sets(v: &Value) -> Vec<Vec<[u32; 2]>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s.as_array()
                .unwrap()
                .iter()
                .map(|p| [p[0].as_u64().unwrap() as u32, p[1].as_u64().unwrap() as u32])
                .collect()
        })
        .collect()
}

#[test]
fn lape_presets_match_the_torch_reference() {
    for (name, doc) in cases() {
        let t = table(&doc);
        for (preset, key) in [(LapePreset::Mondal, "mondal"), (LapePreset::Tang, "tang")] {
            let want = &doc[key];
            let got = lape(&t, &LapeParams::new(preset)).unwrap();
            let ctx = format!("{name} {key}");
            assert_eq!(got.m, want["m"].as_u64().unwrap() as usize, "{ctx}: m");
            assert_eq!(got.candidates, want["candidates"].as_u64().unwrap() as usize, "{ctx}: candidates");
            assert_eq!(got.thresholds.filter, f32_of(&want["filter"]), "{ctx}: filter threshold");
            assert_eq!(got.thresholds.activation_bar, f32_of(&want["bar"]), "{ctx}: activation bar");
            assert_eq!(got.thresholds.entropy_cutoff, f32_of(&want["cutoff"]), "{ctx}: entropy cutoff");
            for (k, s) in sets(&want["sets"]).into_iter().enumerate() {
                assert_eq!(got.neurons[&format!("l{k}")], s, "{ctx}: neurons of language {k}");
            }
            // Entropies of the candidates agree with torch's.
            let h: Vec<Option<f32>> = want["entropy"].as_array().unwrap().iter().map(f32_of).collect();
            let mut worst = 0f32;
            for s in got.lape_scores.as_ref().unwrap() {
                let j = s.neuron[0] as usize * t.intermediate + s.neuron[1] as usize;
                match (s.entropy, h[j]) {
                    (Some(a), Some(b)) => worst = worst.max((a - b).abs()),
                    (a, b) => assert_eq!(a, b, "{ctx}: entropy of {:?}", s.neuron),
                }
            }
            assert!(worst <= 1e-6, "{ctx}: entropy differs from torch by {worst}");
            eprintln!("{ctx}: {} candidates, max |Δentropy| {worst:e}", got.candidates);
        }
    }
}

#[test]
fn act_prob_matches_the_torch_reference() {
    for (name, doc) in cases() {
        let want = &doc["act_prob"];
        let got = act_prob(&table(&doc), 0.05).unwrap();
        assert_eq!(got.m, want["m"].as_u64().unwrap() as usize, "{name}");
        for (k, s) in sets(&want["sets"]).into_iter().enumerate() {
            assert_eq!(got.neurons[&format!("l{k}")], s, "{name}: language {k}");
        }
    }
}
