//! lsn-select against the published reference code, transcribed in torch by `xtask/fixtures/select_reference.py`
//! (fixtures/select/*.json): identical neuron sets, bit-identical thresholds, entropies within 1e-6, and
//! torch.quantile bit for bit.

use std::path::PathBuf;

use lsn_core::NeuronId;
use lsn_select::{CountTable, LangCounts, LapeParams, LapePreset, act_prob, lape, quantile_linear_f32};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/select")
}

fn read(path: &std::path::Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The count-table cases (every fixture with `langs`), by file name.
fn cases() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(dir())
        .unwrap_or_else(|e| panic!("{}: {e}", dir().display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), read(&p)))
        .filter(|(_, doc)| doc.get("langs").is_some())
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<&str> = out.iter().map(|c| c.0.as_str()).collect();
    for want in ["half-L2-I5-K5.json", "round-L7-I150-K3.json", "fma-L4-I38-K3.json", "ties-L5-I80-K4.json"] {
        assert!(
            names.contains(&want),
            "{want} missing from {}: run xtask/fixtures/select_reference.py",
            dir().display()
        );
    }
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

/// A number written by Python from an f32 (exact in f64), or null = +∞.
fn f32_or_inf(v: &Value) -> f32 {
    v.as_f64().map_or(f32::INFINITY, |x| x as f32)
}

fn sets(v: &Value) -> Vec<Vec<NeuronId>> {
    let pair = |p: &Value| NeuronId::new(p[0].as_u64().unwrap() as u32, p[1].as_u64().unwrap() as u32);
    v.as_array().unwrap().iter().map(|s| s.as_array().unwrap().iter().map(pair).collect()).collect()
}

fn bits(x: Option<f32>) -> Option<u32> {
    x.map(f32::to_bits)
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
            let th = &got.thresholds;
            assert_eq!(bits(th.filter), bits(Some(f32_or_inf(&want["filter"]))), "{ctx}: filter threshold");
            assert_eq!(bits(th.activation_bar), bits(Some(f32_or_inf(&want["bar"]))), "{ctx}: activation bar");
            let cutoff = (got.m > 0).then(|| f32_or_inf(&want["cutoff"]));
            assert_eq!(bits(th.entropy_cutoff), bits(cutoff), "{ctx}: entropy cutoff");
            for (k, s) in sets(&want["sets"]).into_iter().enumerate() {
                assert_eq!(got.neurons[&format!("l{k}")], s, "{ctx}: neurons of language {k}");
            }
            // Entropies of the candidates agree with torch's.
            let h: Vec<f32> = want["entropy"].as_array().unwrap().iter().map(f32_or_inf).collect();
            let mut worst = 0f32;
            for s in got.lape_scores.as_ref().unwrap() {
                let want = h[s.neuron.flat(t.intermediate)];
                if want.is_finite() {
                    worst = worst.max((s.entropy - want).abs());
                } else {
                    assert_eq!(s.entropy, want, "{ctx}: entropy of {:?}", s.neuron);
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
        assert_eq!(got.m, want["m"].as_u64().unwrap() as usize, "{name}: m");
        for (k, s) in sets(&want["sets"]).into_iter().enumerate() {
            let lang = format!("l{k}");
            assert_eq!(got.neurons[&lang], s, "{name}: language {k}");
            let cut = want["cutoff"][k].as_f64().map(|x| x as f32);
            assert_eq!(bits(got.thresholds.score_cutoff.get(&lang).copied()), bits(cut), "{name}: cut of {k}");
        }
    }
}

#[test]
fn quantile_is_torch_quantile_bit_for_bit() {
    let doc = read(&dir().join("torch-quantile.json"));
    let cases = doc["cases"].as_array().unwrap();
    let (mut unfused, mut f32_rank) = (0, 0);
    for (i, c) in cases.iter().enumerate() {
        let v: Vec<f32> = c["values"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        assert!(v.windows(2).all(|w| w[0] <= w[1]), "case {i}: values must be sorted");
        let q = c["q"].as_f64().unwrap() as f32;
        let want = c["want"].as_f64().unwrap() as f32;
        let got = quantile_linear_f32(&v, q);
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "case {i}: quantile {q} of {} values: {got} vs torch {want}",
            v.len()
        );
        unfused += usize::from(c["unfused_differs"].as_bool().unwrap());
        f32_rank += usize::from(c["f32_rank_differs"].as_bool().unwrap());
    }
    // The fixture must be able to tell the rules apart.
    assert!(unfused > 0 && f32_rank > 0, "torch-quantile.json no longer separates the rules: regenerate it");
    eprintln!("{} cases; an unfused lerp would miss {unfused}, an f32 rank {f32_rank}", cases.len());
}
