//! The ort backend's own behaviour on tiny random checkpoints: the two quantile passes agree bit for bit (and a batch
//! run whole agrees with the same batch run in parts), exports are cached by content, a damaged export is a clear error, interventions and cached decoding work. (Forward behaviour shared by every backend is tested in
//! harness/tests/forward.rs; numbers against transformers in the conformance suite and xtask/fixtures/check_onnx.py.)

use std::path::Path;

use lsn_backend_ort::{OrtBackend, QuantilePass};
use lsn_core::{Backend, LoadOptions, ModelConfig, ModelFiles, Outputs, QUANTILES, Request, Taps, TokenBatch};
use lsn_weights::{tiny_configs, write_random_model};
use tempfile::TempDir;

/// A tiny random checkpoint and an empty export cache, each in a temporary directory.
struct Fixture {
    model: TempDir,
    cache: TempDir,
}

impl Fixture {
    fn new(cfg: &ModelConfig, seed: u64) -> Self {
        let model = tempfile::tempdir().unwrap();
        write_random_model(cfg, seed, model.path()).unwrap();
        Self { model, cache: tempfile::tempdir().unwrap() }
    }
    fn files(&self) -> ModelFiles {
        ModelFiles::new(self.model.path())
    }
    fn backend(&self) -> OrtBackend {
        OrtBackend::with_cache(self.cache.path())
    }
}

fn export_dirs(cache: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "stat")
        .collect();
    v.sort();
    v
}

#[test]
fn quantiles_sorted_in_the_graph_equal_the_host_reducer() {
    for (name, cfg) in tiny_configs() {
        let fx = Fixture::new(&cfg, 3);
        // Padded rows: the taps reduce over the real tokens only. 3 × 300 positions: the graph pass runs the batch
        // whole, the host pass as three runs of one row (at most 512 positions a run), so this also checks that the
        // runs' statistics and hidden states add up to the whole batch's.
        let rows = [(1..300).collect(), (5..250).collect(), vec![7, 3]];
        let batch = TokenBatch::padded(&rows, 0).unwrap();
        let thresholds = std::sync::Arc::new(vec![0.01f32; cfg.num_layers * cfg.intermediate_size * 2]);
        let taps = Taps { above: Some(thresholds), ..Taps::pass1() };
        let mut out = Vec::new();
        for pass in [QuantilePass::InGraph, QuantilePass::OnHost] {
            let backend = fx.backend().with_quantile_pass(pass);
            let mut model = backend.load(&fx.files(), &LoadOptions::default()).unwrap();
            out.push(model.run(&Request::new(&batch, Outputs::LOGITS).taps(&taps)).unwrap());
        }
        let (a, b) = (out[0].taps.as_ref().unwrap(), out[1].taps.as_ref().unwrap());
        assert_eq!(a.n_tokens, 299 + 245 + 2, "{name}");
        let q = a.quantiles.as_ref().unwrap();
        let plane = cfg.num_layers * cfg.intermediate_size;
        assert_eq!(q.len(), QUANTILES.len() * plane, "{name}");
        assert_eq!(a.quantiles, b.quantiles, "{name}: quantiles differ between the passes");
        assert_eq!((&a.count_pos, &a.count_above), (&b.count_pos, &b.count_above), "{name}");
        // Sums of three runs' sums against one sum: equal up to f64 rounding.
        for (x, y) in [(&a.sum, &b.sum), (&a.sum_sq, &b.sum_sq)] {
            let (x, y) = (x.as_ref().unwrap(), y.as_ref().unwrap());
            assert_eq!(x.len(), plane, "{name}");
            assert!(x.iter().zip(y).all(|(x, y)| (x - y).abs() <= 1e-12 * x.abs().max(1.0)), "{name}: sums differ");
        }
        assert_eq!(out[0].logits, out[1].logits, "{name}");
        assert!((0..plane).all(|j| (1..QUANTILES.len()).all(|k| q[k * plane + j] >= q[(k - 1) * plane + j])));
    }
}

#[test]
fn exports_are_cached_by_checkpoint_content() {
    let (_, cfg) = &tiny_configs()[0];
    let fx = Fixture::new(cfg, 1);
    let (files, backend, cache) = (fx.files(), fx.backend(), fx.cache.path());
    backend.load(&files, &LoadOptions::default()).unwrap();
    let first = export_dirs(cache);
    assert_eq!(first.len(), 1, "{first:?}");
    let weights = cache.join(&first[0]).join("weights.bin");
    let written = std::fs::metadata(&weights).unwrap().modified().unwrap();
    // The same checkpoint again: the export is reused, not rewritten.
    backend.load(&files, &LoadOptions::default()).unwrap();
    assert_eq!(export_dirs(cache), first);
    assert_eq!(std::fs::metadata(&weights).unwrap().modified().unwrap(), written);
    // Other weights under the same path: a new export.
    let other = tempfile::tempdir().unwrap();
    write_random_model(cfg, 2, other.path()).unwrap();
    std::fs::copy(other.path().join("model.safetensors"), fx.model.path().join("model.safetensors")).unwrap();
    backend.load(&files, &LoadOptions::default()).unwrap();
    let second = export_dirs(cache);
    assert_eq!(second.len(), 2, "{second:?}");
    assert!(second.iter().all(|d| !d.ends_with(".tmp")), "{second:?}");
}

#[test]
fn a_damaged_export_is_a_clear_error() {
    let (_, cfg) = &tiny_configs()[1];
    let fx = Fixture::new(cfg, 1);
    let (files, backend) = (fx.files(), fx.backend());
    backend.load(&files, &LoadOptions::default()).unwrap();
    let dir = fx.cache.path().join(&export_dirs(fx.cache.path())[0]);
    std::fs::write(dir.join("manifest.json"), "{not json").unwrap();
    let e = backend.load(&files, &LoadOptions::default()).err().expect("a damaged manifest fails").to_string();
    assert!(e.contains("manifest.json") && e.contains("delete"), "{e}");
    // A truncated weights file is caught at load, not as garbage at the first forward pass.
    std::fs::remove_dir_all(&dir).unwrap();
    backend.load(&files, &LoadOptions::default()).unwrap();
    let weights = std::fs::OpenOptions::new().write(true).open(dir.join("weights.bin")).unwrap();
    weights.set_len(1000).unwrap();
    let e = backend.load(&files, &LoadOptions::default()).err().expect("a truncated export fails").to_string();
    assert!(e.contains("beyond the end") && e.contains("delete"), "{e}");
}

#[test]
fn the_stand_alone_export_names_its_input_output_and_weights() {
    let (_, cfg) = &tiny_configs()[1];
    let fx = Fixture::new(cfg, 5);
    let graph = lsn_backend_ort::export_model(&fx.files(), fx.cache.path()).unwrap();
    assert!(graph.is_file() && graph.with_file_name("weights.bin").is_file());
    let bytes = std::fs::read(&graph).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("input_ids") && text.contains("logits") && text.contains("weights.bin"));
    assert!(!text.contains("real_index"), "the stand-alone graph needs no tap inputs");
}
