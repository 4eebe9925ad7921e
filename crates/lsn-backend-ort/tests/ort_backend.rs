//! The ort backend's own behaviour on tiny random checkpoints: the two quantile passes agree bit for bit, exports are
//! cached by content, a damaged export is a clear error, interventions and cached decoding work. (Forward behaviour shared by every backend is tested in
//! harness/tests/forward.rs; numbers against transformers in the conformance suite and xtask/fixtures/check_onnx.py.)

use std::path::Path;

use lsn_backend_ort::{OrtBackend, QuantilePass};
use lsn_core::{Backend, LoadOptions, ModelConfig, ModelFiles, QUANTILES, Taps, TokenBatch, Want};
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
        // Padded rows: the taps reduce over the real tokens only.
        let batch = TokenBatch::padded(&[(1..20).collect(), (5..12).collect(), vec![7, 3]], 0).unwrap();
        let thresholds = std::sync::Arc::new(vec![0.01f32; cfg.num_layers * cfg.intermediate_size * 2]);
        let taps = Taps { above: Some(thresholds), ..Taps::pass1() };
        let mut out = Vec::new();
        for pass in [QuantilePass::InGraph, QuantilePass::OnHost] {
            let backend = fx.backend().with_quantile_pass(pass);
            let mut model = backend.load(&fx.files(), &LoadOptions::default()).unwrap();
            out.push(model.forward(&batch, &taps, Want::Logits).unwrap());
        }
        let (a, b) = (out[0].taps.as_ref().unwrap(), out[1].taps.as_ref().unwrap());
        assert_eq!(a.n_tokens, 28, "{name}");
        let q = a.quantiles.as_ref().unwrap();
        let plane = cfg.num_layers * cfg.intermediate_size;
        assert_eq!(q.len(), QUANTILES.len() * plane, "{name}");
        assert_eq!(a.quantiles, b.quantiles, "{name}: quantiles differ between the passes");
        assert_eq!(
            (&a.count_pos, &a.sum, &a.sum_sq, &a.count_above),
            (&b.count_pos, &b.sum, &b.sum_sq, &b.count_above)
        );
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

#[test]
fn interventions_overwrite_activations_without_a_new_export() {
    use lsn_core::{Intervention, NeuronId};
    for (name, cfg) in tiny_configs() {
        let fx = Fixture::new(&cfg, 4);
        let mut model = fx.backend().load(&fx.files(), &LoadOptions::default()).unwrap();
        let batch = TokenBatch::padded(&[(1..15).collect(), (3..9).collect()], 0).unwrap();
        let plain = model.forward(&batch, &Taps::pass1(), Want::Logits).unwrap();
        // An empty intervention changes nothing.
        let none = model.forward_intervened(&batch, &Taps::pass1(), &Intervention::default(), Want::Logits).unwrap();
        assert_eq!(none, plain, "{name}");
        // Layer 0 off entirely, and neuron (1, 3) held at 2.5.
        let width = cfg.intermediate_size as u32;
        let mut iv = Intervention::deactivate((0..width).map(|j| NeuronId::new(0, j)));
        iv.set.push((NeuronId::new(1, 3), 2.5));
        let out = model.forward_intervened(&batch, &Taps::pass1(), &iv, Want::Logits).unwrap();
        let t = out.taps.as_ref().unwrap();
        let w = cfg.intermediate_size;
        assert!(t.count_pos.as_ref().unwrap()[..w].iter().all(|&c| c == 0), "{name}");
        assert!(t.sum.as_ref().unwrap()[..w].iter().all(|&s| s == 0.0), "{name}");
        let at = w + 3;
        assert_eq!(t.count_pos.as_ref().unwrap()[at], t.n_tokens, "{name}");
        assert_eq!(t.sum.as_ref().unwrap()[at], 2.5 * t.n_tokens as f64, "{name}");
        let plane = cfg.num_layers * w;
        assert!((0..QUANTILES.len()).all(|k| t.quantiles.as_ref().unwrap()[k * plane + at] == 2.5), "{name}");
        assert_ne!(out.logits, plain.logits, "{name}: the intervention must reach the logits");
        // A neuron set from another model is a clear error.
        let bad = Intervention::deactivate([NeuronId::new(cfg.num_layers as u32, 0)]);
        let e = model.forward_intervened(&batch, &Taps::NONE, &bad, Want::Logits).unwrap_err().to_string();
        assert!(e.contains("outside the model"), "{e}");
    }
}

#[test]
fn cached_decoding_gives_the_logits_of_the_full_pass() {
    for (name, cfg) in tiny_configs() {
        let fx = Fixture::new(&cfg, 6);
        let (files, backend) = (fx.files(), fx.backend());
        // Two rows of 14 tokens: longer than tiny-gemma3's sliding window of 8, so cached steps must drop old keys.
        let rows: Vec<Vec<u32>> = vec![(1..15).collect(), (20..34).collect()];
        let full = TokenBatch::padded(&rows, 0).unwrap();
        let want = backend.load(&files, &LoadOptions::default()).unwrap().forward(&full, &Taps::NONE, Want::Logits);
        let want = want.unwrap().logits.unwrap();
        let vocab = cfg.vocab_size;
        let mut dec = backend.load_cached(&files, &LoadOptions::default()).unwrap();
        let mut got = vec![Vec::new(); 2];
        // A 6-token prompt, then one token at a time.
        let mut start = 0;
        for len in [6, 1, 1, 1, 1, 1, 1, 1, 1] {
            let ids: Vec<u32> = rows.iter().flat_map(|r| r[start..start + len].to_vec()).collect();
            let out = dec.feed(2, &ids).unwrap();
            assert_eq!(out.shape, vec![2, len, vocab]);
            for (r, g) in got.iter_mut().enumerate() {
                g.extend_from_slice(&out.data[r * len * vocab..(r + 1) * len * vocab]);
            }
            start += len;
        }
        assert_eq!(dec.len(), 14);
        let mut worst = 0f32;
        for (r, g) in got.iter().enumerate() {
            let w = &want.data[r * 14 * vocab..(r + 1) * 14 * vocab];
            worst = g.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(worst, f32::max);
        }
        eprintln!("{name}: cached vs full pass, max |Δlogit| {worst:e}");
        assert!(worst < 1e-4, "{name}: cached logits differ by {worst:e}");
        // Misuse is an error, and reset starts over.
        assert!(dec.feed(3, &[1, 2, 3]).unwrap_err().to_string().contains("reset"));
        dec.reset();
        assert_eq!(dec.feed(1, &[1, 2, 3]).unwrap().shape, vec![1, 3, vocab]);
    }
}
