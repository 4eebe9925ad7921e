//! Forward-pass behaviour every backend must show, written once and run on each backend compiled in, on tiny
//! random models of both families: shapes, padding invariance, taps, the skipped head, NLL against logits, sliding
//! windows, and clear errors.

mod common;

use common::{tiny_gemma, tiny_llama, tiny_sliding_llama, tokens, write_checkpoint};
use lsn_core::{Backend, Device, Error, ForwardOut, HfConfig, LoadOptions, Model, ModelFiles, Taps, TokenBatch, Want};
use lsn_harness::backends;

fn load_on(backend: &dyn Backend, hf: &HfConfig, seed: u64) -> (tempfile::TempDir, Box<dyn Model>) {
    let (dir, _) = write_checkpoint(hf, seed);
    let model = backend.load(&ModelFiles::new(dir.path()), &LoadOptions::default()).expect("tiny model loads");
    (dir, model)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Every backend × both families, named `backend/family` in messages.
fn cases() -> Vec<(Box<dyn Backend>, String, HfConfig)> {
    let mut v = Vec::new();
    for (family, hf) in [("llama", tiny_llama()), ("gemma3", tiny_gemma())] {
        for b in backends() {
            let name = format!("{}/{family}", b.name());
            v.push((b, name, hf.clone()));
        }
    }
    v
}

#[test]
fn shapes_of_logits_nll_and_taps() {
    for (backend, name, hf) in cases() {
        let (_dir, mut m) = load_on(backend.as_ref(), &hf, 1);
        let cfg = m.config().clone();
        let b = TokenBatch::padded(&[tokens(9, cfg.vocab_size, 1), tokens(6, cfg.vocab_size, 2)], 0).unwrap();
        let out = m.forward(&b, &Taps::COUNT_POS, Want::Logits).unwrap();
        let logits = out.logits.expect("logits");
        assert_eq!(logits.shape, vec![2, 9, cfg.vocab_size], "{name}");
        assert!(logits.data.iter().all(|x| x.is_finite()), "{name}");
        assert!(out.nll.is_none());
        let taps = out.taps.expect("taps");
        assert_eq!((taps.layers, taps.intermediate, taps.n_tokens), (cfg.num_layers, cfg.intermediate_size, 15));
        let counts = taps.count_pos.expect("count_pos");
        assert_eq!(counts.len(), cfg.num_layers * cfg.intermediate_size);
        assert!(counts.iter().all(|&c| c <= 15), "{name}");
        assert!(counts.iter().any(|&c| c > 0) && counts.iter().any(|&c| c < 15), "{name}: taps look degenerate");

        let out = m.forward(&b, &Taps::NONE, Want::Nll).unwrap();
        assert_eq!(out.nll.expect("nll").shape, vec![2, 8], "{name}");
        assert!(out.taps.is_none() && out.logits.is_none());
    }
}

#[test]
fn rows_do_not_depend_on_padding_or_neighbours() {
    for (backend, name, hf) in cases() {
        let (_dir, mut m) = load_on(backend.as_ref(), &hf, 2);
        let v = m.config().vocab_size;
        let seqs = [tokens(5, v, 10), tokens(13, v, 11), tokens(8, v, 12)];
        let batch = TokenBatch::padded(&seqs, 0).unwrap();
        let all = m.forward(&batch, &Taps::COUNT_POS, Want::Logits).unwrap();
        let all_nll = m.forward(&batch, &Taps::NONE, Want::Nll).unwrap().nll.unwrap();
        let logits = all.logits.unwrap();
        let mut summed = vec![0u64; all.taps.as_ref().unwrap().count_pos.as_ref().unwrap().len()];
        for (r, s) in seqs.iter().enumerate() {
            let single = TokenBatch::single(s).unwrap();
            let one = m.forward(&single, &Taps::COUNT_POS, Want::Logits).unwrap();
            let one_logits = one.logits.unwrap();
            for t in 0..s.len() {
                let d = max_abs_diff(logits.row(&[r, t]), one_logits.row(&[0, t]));
                assert!(d <= 1e-5, "{name}: row {r} position {t} logits moved by {d} in the padded batch");
            }
            let one_nll = m.forward(&single, &Taps::NONE, Want::Nll).unwrap().nll.unwrap();
            let row = all_nll.row(&[r]);
            let d = max_abs_diff(&row[..s.len() - 1], &one_nll.data);
            assert!(d <= 1e-5, "{name}: row {r} NLL moved by {d}");
            assert!(row[s.len() - 1..].iter().all(|&x| x == 0.0), "{name}: padded targets must have NLL 0");
            for (acc, c) in summed.iter_mut().zip(one.taps.unwrap().count_pos.unwrap()) {
                *acc += c;
            }
        }
        let taps = all.taps.unwrap();
        assert_eq!(taps.n_tokens, 26);
        assert_eq!(taps.count_pos.unwrap(), summed, "{name}: padded positions leaked into the taps");
    }
}

#[test]
fn want_nothing_skips_the_head_but_keeps_the_taps() {
    for (backend, name, hf) in cases() {
        let (_dir, mut m) = load_on(backend.as_ref(), &hf, 3);
        let v = m.config().vocab_size;
        let b = TokenBatch::full(2, 7, [tokens(7, v, 20), tokens(7, v, 21)].concat()).unwrap();
        let none = m.forward(&b, &Taps::COUNT_POS, Want::Nothing).unwrap();
        assert!(none.logits.is_none() && none.nll.is_none(), "{name}");
        let with_head = m.forward(&b, &Taps::COUNT_POS, Want::Logits).unwrap();
        assert_eq!(none.taps, with_head.taps, "{name}");
        assert_eq!(m.forward(&b, &Taps::NONE, Want::Nothing).unwrap(), ForwardOut::default(), "{name}");
    }
}

#[test]
fn nll_is_the_log_softmax_of_the_logits() {
    for (backend, name, hf) in cases() {
        let (_dir, mut m) = load_on(backend.as_ref(), &hf, 4);
        let v = m.config().vocab_size;
        let seqs = [tokens(10, v, 30), tokens(4, v, 31)];
        let b = TokenBatch::padded(&seqs, 0).unwrap();
        let logits = m.forward(&b, &Taps::NONE, Want::Logits).unwrap().logits.unwrap();
        let nll = m.forward(&b, &Taps::NONE, Want::Nll).unwrap().nll.unwrap();
        for (r, s) in seqs.iter().enumerate() {
            for t in 0..s.len() - 1 {
                let row = logits.row(&[r, t]);
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
                let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
                let want = lse - row[s[t + 1] as usize] as f64;
                let got = nll.row(&[r])[t] as f64;
                assert!((got - want).abs() < 1e-5, "{name}: row {r} t {t}: {got} vs {want}");
            }
        }
    }
}

#[test]
fn sliding_window_limits_how_far_back_a_token_reaches() {
    // Window 4 (key j visible from query i iff i − 4 < j ≤ i), two layers: token 0 reaches positions ≤ 6 only.
    for backend in backends() {
        let name = backend.name();
        let (_dir, mut m) = load_on(backend.as_ref(), &tiny_sliding_llama(4), 5);
        let v = m.config().vocab_size;
        let a = tokens(12, v, 40);
        let mut b = a.clone();
        b[0] = if a[0] == 1 { 2 } else { 1 };
        let la = m.forward(&TokenBatch::single(&a).unwrap(), &Taps::NONE, Want::Logits).unwrap().logits.unwrap();
        let lb = m.forward(&TokenBatch::single(&b).unwrap(), &Taps::NONE, Want::Logits).unwrap().logits.unwrap();
        for t in 0..12 {
            let d = max_abs_diff(la.row(&[0, t]), lb.row(&[0, t]));
            if t <= 6 {
                assert!(d > 1e-6, "{name}: position {t} should see token 0 (Δ {d})");
            } else {
                assert!(d == 0.0, "{name}: position {t} is outside the window's reach but moved by {d}");
            }
        }
    }
}

#[test]
fn gemma_global_layer_sees_past_the_window() {
    for backend in backends() {
        let (_dir, mut m) = load_on(backend.as_ref(), &tiny_gemma(), 6);
        let v = m.config().vocab_size;
        let a = tokens(16, v, 50);
        let mut b = a.clone();
        b[0] = if a[0] == 1 { 2 } else { 1 };
        let la = m.forward(&TokenBatch::single(&a).unwrap(), &Taps::NONE, Want::Logits).unwrap().logits.unwrap();
        let lb = m.forward(&TokenBatch::single(&b).unwrap(), &Taps::NONE, Want::Logits).unwrap().logits.unwrap();
        assert!(max_abs_diff(la.row(&[0, 15]), lb.row(&[0, 15])) > 1e-6, "{}", backend.name());
    }
}

#[test]
fn out_of_vocabulary_ids_are_rejected() {
    for backend in backends() {
        let (_dir, mut m) = load_on(backend.as_ref(), &tiny_llama(), 7);
        let v = m.config().vocab_size as u32;
        let b = TokenBatch::single(&[1, v]).unwrap();
        match m.forward(&b, &Taps::COUNT_POS, Want::Logits) {
            Err(Error::InvalidBatch(msg)) => assert!(msg.contains(&format!("token id {v}")), "{msg}"),
            other => panic!("{}: expected InvalidBatch, got {other:?}", backend.name()),
        }
        let broken = TokenBatch { rows: 2, seq_len: 3, ids: vec![1; 6], lengths: vec![3, 4] };
        assert!(matches!(m.forward(&broken, &Taps::NONE, Want::Nll), Err(Error::InvalidBatch(_))));
        let broken = TokenBatch { rows: 2, seq_len: 3, ids: vec![1; 5], lengths: vec![3, 3] };
        assert!(matches!(m.forward(&broken, &Taps::NONE, Want::Nll), Err(Error::InvalidBatch(_))));
    }
}

#[test]
fn bad_thresholds_are_rejected() {
    for backend in backends() {
        let (_dir, mut m) = load_on(backend.as_ref(), &tiny_gemma(), 11);
        let taps = Taps::pass2(std::sync::Arc::new(vec![0.0; 5]));
        let err = m.forward(&TokenBatch::single(&[2, 3]).unwrap(), &taps, Want::Nothing).unwrap_err().to_string();
        assert!(err.contains("not a multiple of layers × intermediate"), "{}: {err}", backend.name());
    }
}

#[test]
fn single_token_rows_have_an_empty_nll() {
    for backend in backends() {
        let (_dir, mut m) = load_on(backend.as_ref(), &tiny_gemma(), 8);
        let out = m.forward(&TokenBatch::single(&[2]).unwrap(), &Taps::COUNT_POS, Want::Nll).unwrap();
        let nll = out.nll.unwrap();
        assert_eq!(nll.shape, vec![1, 0], "{}", backend.name());
        assert_eq!(out.taps.unwrap().n_tokens, 1);
    }
}

#[test]
fn backends_report_themselves_and_refuse_devices_they_lack() {
    let (dir, _) = write_checkpoint(&tiny_llama(), 9);
    for backend in backends() {
        let caps = backend.capabilities();
        assert!(caps.taps && caps.devices.contains(&Device::Cpu), "{}", backend.name());
        // A device this build cannot use is a clear Unsupported error, never a panic.
        let missing =
            (0..8).map(Device::Cuda).find(|d| !caps.devices.contains(d)).expect("some CUDA ordinal is absent");
        match backend.load(&ModelFiles::new(dir.path()), &LoadOptions { device: missing }) {
            Err(Error::Unsupported { backend: b, capability }) => {
                assert_eq!(b, backend.name());
                assert!(capability.contains("CUDA"), "{capability}")
            }
            Err(e) => panic!("{}: expected Unsupported, got {e}", backend.name()),
            Ok(_) => panic!("{}: expected Unsupported, got a model", backend.name()),
        }
    }
}

#[test]
fn broken_checkpoints_are_clear_errors() {
    for backend in backends() {
        let missing = backend.load(&ModelFiles::new("/nonexistent/lsn-model"), &LoadOptions::default());
        let msg = missing.err().expect("missing dir fails").to_string();
        assert!(msg.contains("config.json"), "{msg}");

        // A config that disagrees with the weights.
        let (dir, _) = write_checkpoint(&tiny_llama(), 10);
        let mut hf = tiny_llama();
        hf.intermediate_size += 1;
        std::fs::write(dir.path().join("config.json"), serde_json::to_string(&hf).unwrap()).unwrap();
        match backend.load(&ModelFiles::new(dir.path()), &LoadOptions::default()) {
            Err(Error::WeightsMismatch(msg)) => assert!(msg.contains("mlp.gate_proj"), "{msg}"),
            Err(e) => panic!("{}: expected WeightsMismatch, got {e}", backend.name()),
            Ok(_) => panic!("{}: expected WeightsMismatch, got a model", backend.name()),
        }

        // Truncated weights.
        let (dir, _) = write_checkpoint(&tiny_llama(), 12);
        let st = dir.path().join("model.safetensors");
        let bytes = std::fs::read(&st).unwrap();
        std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
        let msg = backend.load(&ModelFiles::new(dir.path()), &LoadOptions::default()).err().expect("fails").to_string();
        assert!(msg.contains("model.safetensors"), "{}: {msg}", backend.name());
    }
}

#[test]
fn project_tiny_models_load_and_run() {
    // The tiny models lsn-weights writes for the fast suites (and the goldens) must run here unchanged.
    for backend in backends() {
        for (name, cfg) in lsn_weights::tiny_configs() {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join(name);
            lsn_weights::write_random_model(&cfg, 7, &out).expect("lsn-weights writes its tiny model");
            let mut m = backend.load(&ModelFiles::new(&out), &LoadOptions::default()).expect("it loads");
            assert_eq!(m.config(), &cfg, "{name}");
            let len = cfg.sliding_window.map_or(12, |w| w + 5);
            let b = TokenBatch::padded(&[tokens(len, cfg.vocab_size, 60), tokens(3, cfg.vocab_size, 61)], 0).unwrap();
            let out = m.forward(&b, &Taps::COUNT_POS, Want::Nll).unwrap();
            let nll = out.nll.unwrap();
            assert_eq!(nll.shape, vec![2, len - 1], "{name}");
            assert!(nll.data.iter().all(|x| x.is_finite() && *x >= 0.0), "{name}");
            assert_eq!(out.taps.unwrap().n_tokens, (len + 3) as u64, "{name}");
        }
    }
}
