//! Checkpoints as HF transformers writes them (`fixtures/golden/hf_saved.json`, made by
//! `xtask/fixtures/golden_hf_saved.py`): every `lsn random-model` preset's config.json as transformers saved it resolves
//! to the preset's configuration exactly, and the tiny presets' model.safetensors as transformers saved it holds the
//! tensors lsn expects (names, shapes, f32). A family whose config.json transformers writes differently from lsn
//! (transformers 5's `rope_parameters`, `layer_types`, `dtype`, …) fails here by name.

use std::collections::BTreeMap;

use lsn_core::{HfConfig, expected_tensors};
use serde::Deserialize;

#[derive(Deserialize)]
struct Doc {
    models: BTreeMap<String, Saved>,
}

#[derive(Deserialize)]
struct Saved {
    config: serde_json::Value,
    #[serde(default)]
    tensors: Option<BTreeMap<String, Tensor>>,
    #[serde(default)]
    parameters: Option<u64>,
}

#[derive(Deserialize)]
struct Tensor {
    dtype: String,
    shape: Vec<usize>,
}

fn golden() -> Doc {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/golden/hf_saved.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask fixtures hf-saved`)", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_preset_as_transformers_saves_it_reads_back_as_the_same_model() {
    let doc = golden();
    let presets: Vec<_> = lsn_weights::tiny_configs().into_iter().chain(lsn_weights::full_size_configs()).collect();
    for (name, cfg) in &presets {
        let saved = doc
            .models
            .get(*name)
            .unwrap_or_else(|| panic!("{name} has no golden: run `cargo xtask fixtures hf-saved`"));
        let hf: HfConfig = serde_json::from_value(saved.config.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = hf.resolve().unwrap_or_else(|e| panic!("{name}: transformers' config.json does not resolve: {e}"));
        assert_eq!(&got, cfg, "{name}: transformers' config.json resolves to another model");
        let want = expected_tensors(cfg);
        match (&saved.tensors, saved.parameters) {
            (Some(tensors), _) => {
                let want: BTreeMap<&str, &[usize]> =
                    want.iter().map(|t| (t.name.as_str(), t.shape.as_slice())).collect();
                let got: BTreeMap<&str, &[usize]> =
                    tensors.iter().map(|(n, t)| (n.as_str(), t.shape.as_slice())).collect();
                assert_eq!(got, want, "{name}: the tensors transformers saved are not the ones lsn expects");
                assert!(tensors.values().all(|t| t.dtype == "F32"), "{name}: transformers saved non-f32 tensors");
            }
            (None, Some(n)) => {
                let ours: u64 = want.iter().map(|t| t.shape.iter().product::<usize>() as u64).sum();
                assert_eq!(ours, n, "{name}: lsn's tensors hold another parameter count than transformers' model");
            }
            (None, None) => panic!("{name}: the golden has neither tensors nor a parameter count"),
        }
    }
    assert_eq!(doc.models.len(), presets.len(), "the golden names presets lsn no longer has");
}
