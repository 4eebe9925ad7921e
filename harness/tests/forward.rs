//! Forward-pass behaviour every backend must show, written once and run on each backend compiled in, on tiny
//! random models of both families: shapes, padding invariance, taps, the skipped head, NLL against logits, sliding
//! windows, and clear errors.

mod common;

use common::{tiny_gemma, tiny_llama, tiny_sliding_llama, tokens, write_checkpoint};
use lsn_core::{
    Backend, Device, Error, ForwardOut, HfConfig, LoadOptions, Model, ModelFiles, Outputs, Request, Taps, TokenBatch,
};
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
        let out = m.run(&Request::new(&b, Outputs::LOGITS).taps(&Taps::COUNT_POS)).unwrap();
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

        let out = m.run(&Request::new(&b, Outputs::NLL)).unwrap();
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
        let all = m.run(&Request::new(&batch, Outputs::LOGITS).taps(&Taps::COUNT_POS)).unwrap();
        let all_nll = m.run(&Request::new(&batch, Outputs::NLL)).unwrap().nll.unwrap();
        let logits = all.logits.unwrap();
        let mut summed = vec![0u64; all.taps.as_ref().unwrap().count_pos.as_ref().unwrap().len()];
        for (r, s) in seqs.iter().enumerate() {
            let single = TokenBatch::single(s).unwrap();
            let one = m.run(&Request::new(&single, Outputs::LOGITS).taps(&Taps::COUNT_POS)).unwrap();
            let one_logits = one.logits.unwrap();
            for t in 0..s.len() {
                let d = max_abs_diff(logits.row(&[r, t]), one_logits.row(&[0, t]));
                assert!(d <= 1e-5, "{name}: row {r} position {t} logits moved by {d} in the padded batch");
            }
            let one_nll = m.run(&Request::new(&single, Outputs::NLL)).unwrap().nll.unwrap();
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
        let none = m.run(&Request::new(&b, Outputs::NONE).taps(&Taps::COUNT_POS)).unwrap();
        assert!(none.logits.is_none() && none.nll.is_none(), "{name}");
        let with_head = m.run(&Request::new(&b, Outputs::LOGITS).taps(&Taps::COUNT_POS)).unwrap();
        assert_eq!(none.taps, with_head.taps, "{name}");
        assert_eq!(m.run(&Request::new(&b, Outputs::NONE)).unwrap(), ForwardOut::default(), "{name}");
    }
}

#[test]
fn nll_is_the_log_softmax_of_the_logits() {
    for (backend, name, hf) in cases() {
        let (_dir, mut m) = load_on(backend.as_ref(), &hf, 4);
        let v = m.config().vocab_size;
        let seqs = [tokens(10, v, 30), tokens(4, v, 31)];
        let b = TokenBatch::padded(&seqs, 0).unwrap();
        let logits = m.run(&Request::new(&b, Outputs::LOGITS)).unwrap().logits.unwrap();
        let nll = m.run(&Request::new(&b, Outputs::NLL)).unwrap().nll.unwrap();
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
        let la = m.run(&Request::new(&TokenBatch::single(&a).unwrap(), Outputs::LOGITS)).unwrap().logits.unwrap();
        let lb = m.run(&Request::new(&TokenBatch::single(&b).unwrap(), Outputs::LOGITS)).unwrap().logits.unwrap();
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
        let la = m.run(&Request::new(&TokenBatch::single(&a).unwrap(), Outputs::LOGITS)).unwrap().logits.unwrap();
        let lb = m.run(&Request::new(&TokenBatch::single(&b).unwrap(), Outputs::LOGITS)).unwrap().logits.unwrap();
        assert!(max_abs_diff(la.row(&[0, 15]), lb.row(&[0, 15])) > 1e-6, "{}", backend.name());
    }
}

#[test]
fn out_of_vocabulary_ids_are_rejected() {
    for backend in backends() {
        let (_dir, mut m) = load_on(backend.as_ref(), &tiny_llama(), 7);
        let v = m.config().vocab_size as u32;
        let b = TokenBatch::single(&[1, v]).unwrap();
        match m.run(&Request::new(&b, Outputs::LOGITS).taps(&Taps::COUNT_POS)) {
            Err(Error::InvalidBatch(msg)) => assert!(msg.contains(&format!("token id {v}")), "{msg}"),
            other => panic!("{}: expected InvalidBatch, got {other:?}", backend.name()),
        }
        let broken = TokenBatch { rows: 2, seq_len: 3, ids: vec![1; 6], lengths: vec![3, 4] };
        assert!(matches!(m.run(&Request::new(&broken, Outputs::NLL)), Err(Error::InvalidBatch(_))));
        let broken = TokenBatch { rows: 2, seq_len: 3, ids: vec![1; 5], lengths: vec![3, 3] };
        assert!(matches!(m.run(&Request::new(&broken, Outputs::NLL)), Err(Error::InvalidBatch(_))));
    }
}

#[test]
fn bad_thresholds_are_rejected() {
    for backend in backends() {
        let (_dir, mut m) = load_on(backend.as_ref(), &tiny_gemma(), 11);
        let taps = Taps::pass2(std::sync::Arc::new(vec![0.0; 5]));
        let err = m
            .run(&Request::new(&TokenBatch::single(&[2, 3]).unwrap(), Outputs::NONE).taps(&taps))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a multiple of layers × intermediate"), "{}: {err}", backend.name());
    }
}

#[test]
fn single_token_rows_have_an_empty_nll() {
    for backend in backends() {
        let (_dir, mut m) = load_on(backend.as_ref(), &tiny_gemma(), 8);
        let out =
            m.run(&Request::new(&TokenBatch::single(&[2]).unwrap(), Outputs::NLL).taps(&Taps::COUNT_POS)).unwrap();
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
        assert!(caps.devices.contains(&Device::Cpu), "{}", backend.name());
        // A device this build cannot use is a clear Unsupported error, never a panic.
        let missing =
            (0..8).map(Device::Cuda).find(|d| !caps.devices.contains(d)).expect("some CUDA ordinal is absent");
        match backend.load(&ModelFiles::new(dir.path()), &LoadOptions { device: missing, ..LoadOptions::default() }) {
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
            let out = m.run(&Request::new(&b, Outputs::NLL).taps(&Taps::COUNT_POS)).unwrap();
            let nll = out.nll.unwrap();
            assert_eq!(nll.shape, vec![2, len - 1], "{name}");
            assert!(nll.data.iter().all(|x| x.is_finite() && *x >= 0.0), "{name}");
            assert_eq!(out.taps.unwrap().n_tokens, (len + 3) as u64, "{name}");
        }
    }
}

#[test]
fn interventions_overwrite_activations_at_every_position() {
    use lsn_core::{Intervention, NeuronId, QUANTILES};
    for (backend, name, hf) in cases() {
        let (_dir, mut m) = load_on(backend.as_ref(), &hf, 5);
        let cfg = m.config().clone();
        let v = cfg.vocab_size;
        let batch = TokenBatch::padded(&[tokens(11, v, 40), tokens(5, v, 41)], 0).unwrap();
        let both = Outputs { logits: true, nll: true, ..Outputs::NONE };
        let plain = m.run(&Request::new(&batch, both).taps(&Taps::pass1())).unwrap();
        // An empty intervention changes nothing.
        let empty = Intervention::default();
        let none = m.run(&Request::new(&batch, both).taps(&Taps::pass1()).intervene(Some(&empty))).unwrap();
        assert_eq!(none, plain, "{name}");
        // Layer 0 off entirely, and neuron (1, 3) held at 2.5: the taps see the overwritten values.
        let w = cfg.intermediate_size;
        let mut iv = Intervention::deactivate((0..w as u32).map(|j| NeuronId::new(0, j)));
        iv.set.push((NeuronId::new(1, 3), 2.5));
        let out = m.run(&Request::new(&batch, both).taps(&Taps::pass1()).intervene(Some(&iv))).unwrap();
        let t = out.taps.as_ref().unwrap();
        assert!(t.count_pos.as_ref().unwrap()[..w].iter().all(|&c| c == 0), "{name}");
        assert!(t.sum.as_ref().unwrap()[..w].iter().all(|&s| s == 0.0), "{name}");
        let at = w + 3;
        assert_eq!(t.count_pos.as_ref().unwrap()[at], t.n_tokens, "{name}");
        assert_eq!(t.sum.as_ref().unwrap()[at], 2.5 * t.n_tokens as f64, "{name}");
        let plane = cfg.num_layers * w;
        assert!((0..QUANTILES.len()).all(|k| t.quantiles.as_ref().unwrap()[k * plane + at] == 2.5), "{name}");
        assert_ne!(out.logits, plain.logits, "{name}: the intervention must reach the logits");
        // Interventions keep rows independent of padding and neighbours.
        let single = TokenBatch::single(&batch.ids[..11]).unwrap();
        let one = m.run(&Request::new(&single, Outputs::LOGITS).intervene(Some(&iv))).unwrap().logits.unwrap();
        let d = max_abs_diff(&out.logits.as_ref().unwrap().data[..11 * v], &one.data);
        assert!(d <= 1e-5, "{name}: intervened row 0 moved by {d} in the batch");
        // gate_pre taps read gate_proj(x): the intervention (after the activation) does not touch them.
        let pre = Taps::pass1().at(lsn_core::TapPoint::GatePre);
        let a = m.run(&Request::new(&batch, Outputs::NONE).taps(&pre)).unwrap().taps.unwrap();
        let b = m.run(&Request::new(&batch, Outputs::NONE).taps(&pre).intervene(Some(&iv))).unwrap().taps.unwrap();
        assert_eq!(a.count_pos.as_ref().unwrap()[..w], b.count_pos.as_ref().unwrap()[..w], "{name}");
        // Counts of > 0 agree at both tap points (the activations keep the sign); values do not.
        assert_eq!(a.count_pos, plain.taps.as_ref().unwrap().count_pos, "{name}");
        assert_ne!(a.sum, plain.taps.as_ref().unwrap().sum, "{name}");
        // A neuron set from another model is a clear error.
        let bad = Intervention::deactivate([NeuronId::new(cfg.num_layers as u32, 0)]);
        let e = m.run(&Request::new(&batch, Outputs::LOGITS).intervene(Some(&bad))).unwrap_err().to_string();
        assert!(e.contains("outside the model"), "{name}: {e}");
    }
}

#[test]
fn last_logits_and_hidden_states_are_read_at_the_last_real_token() {
    use lsn_core::HiddenAt;
    for (backend, name, hf) in cases() {
        let (_dir, mut m) = load_on(backend.as_ref(), &hf, 6);
        let cfg = m.config().clone();
        let (v, d) = (cfg.vocab_size, cfg.hidden_size);
        let batch = TokenBatch::padded(&[tokens(4, v, 50), tokens(9, v, 51)], 0).unwrap();
        let all = Outputs { logits: true, last_logits: true, hidden: Some(HiddenAt::All), ..Outputs::NONE };
        let out = m.run(&Request::new(&batch, all)).unwrap();
        let (logits, last) = (out.logits.unwrap(), out.last_logits.unwrap());
        let hidden = out.hidden.unwrap();
        assert_eq!((last.shape.clone(), hidden.shape.clone()), (vec![2, v], vec![2, 9, d]), "{name}");
        let lr = m.run(&Request::new(&batch, Outputs::hidden(HiddenAt::LastReal))).unwrap().hidden.unwrap();
        for (r, len) in [(0, 4), (1, 9)] {
            // The head runs on other chunks of rows, so its GEMM may round differently in the last bit.
            let dl = max_abs_diff(last.row(&[r]), logits.row(&[r, len - 1]));
            assert!(dl <= 1e-5, "{name}: row {r} last logits differ by {dl}");
            assert_eq!(lr.row(&[r]), hidden.row(&[r, len - 1]), "{name}: row {r}");
        }
    }
}

#[test]
fn cached_decoding_gives_the_logits_of_the_full_pass() {
    use lsn_core::{Intervention, NeuronId};
    // Sequences longer than tiny-gemma's sliding window of 4, so cached steps must hide old keys.
    for (backend, name, hf) in cases() {
        let (_dir, mut m) = load_on(backend.as_ref(), &hf, 7);
        let v = m.config().vocab_size;
        let seqs = [tokens(14, v, 60), tokens(12, v, 61), tokens(13, v, 62)];
        let prompts = [3, 7, 1]; // ragged prompts: padding in the prefill
        // Every kind of edit and a steering vector, so cached steps apply each as the full pass does.
        let h = m.config().hidden_size;
        let iv = Intervention {
            set: vec![(NeuronId::new(0, 1), 0.0), (NeuronId::new(1, 2), 1.5)],
            scale: vec![(NeuronId::new(0, 3), 2.0)],
            add: vec![(NeuronId::new(1, 2), 0.5), (NeuronId::new(0, 0), -0.25)],
            residual: vec![(0, (0..h).map(|i| (i as f32 * 0.37).sin() * 0.1).collect())],
        };
        for intervention in [None, Some(&iv)] {
            let full = TokenBatch::padded(&seqs, 0).unwrap();
            let want = m.run(&Request::new(&full, Outputs::LOGITS).intervene(intervention)).unwrap().logits.unwrap();
            let mut dec = m.decoder(intervention).unwrap();
            let prompt_rows: Vec<Vec<u32>> = seqs.iter().zip(prompts).map(|(s, p)| s[..p].to_vec()).collect();
            let first = dec.prefill(&TokenBatch::padded(&prompt_rows, 0).unwrap()).unwrap();
            let mut worst = 0f32;
            for (r, p) in prompts.iter().enumerate() {
                worst = worst.max(max_abs_diff(first.row(&[r]), want.row(&[r, p - 1])));
            }
            // Feed the rest of each sequence one token per step; retire row 1 after two steps.
            let mut pos = prompts;
            for step in 0.. {
                if step == 2 {
                    dec.retire(&[1]).unwrap();
                }
                let live = dec.live().to_vec();
                let live: Vec<usize> = live.into_iter().filter(|&r| pos[r] < seqs[r].len()).collect();
                if live.len() < dec.live().len() {
                    let done: Vec<usize> = dec.live().iter().copied().filter(|r| !live.contains(r)).collect();
                    dec.retire(&done).unwrap();
                }
                if live.is_empty() {
                    break;
                }
                let next: Vec<u32> = live.iter().map(|&r| seqs[r][pos[r]]).collect();
                let out = dec.step(&next).unwrap();
                assert_eq!(out.shape, vec![live.len(), v], "{name}");
                for (i, &r) in live.iter().enumerate() {
                    worst = worst.max(max_abs_diff(out.row(&[i]), want.row(&[r, pos[r]])));
                    pos[r] += 1;
                }
            }
            assert_eq!(pos, [14, 9, 13], "{name}");
            eprintln!("{name} (intervention: {}): cached vs full pass, max |Δlogit| {worst:e}", intervention.is_some());
            assert!(worst < 1e-4, "{name}: cached logits differ by {worst:e}");
            // Misuse is a clear error.
            assert!(dec.step(&[1, 2, 3, 4]).unwrap_err().to_string().contains("live"), "{name}");
            dec.reset();
            assert!(dec.step(&[1]).unwrap_err().to_string().contains("prefill"), "{name}");
        }
    }
}

#[test]
fn greedy_generation_is_the_argmax_of_the_full_pass_and_stops_at_eos() {
    use lsn_core::{Greedy, greedy};
    for (backend, name, hf) in cases() {
        let (_dir, mut m) = load_on(backend.as_ref(), &hf, 8);
        let v = m.config().vocab_size;
        let prompts = vec![tokens(5, v, 70), tokens(2, v, 71)];
        let opts = Greedy { max_new_tokens: 6, eos: vec![], pad: 0 };
        let got = greedy(m.decoder(None).unwrap().as_mut(), &prompts, &opts).unwrap();
        for (r, g) in got.iter().enumerate() {
            // Re-derive each token with full passes, no cache.
            let mut seq = prompts[r].clone();
            for &id in &g.ids {
                let out = m.run(&Request::new(&TokenBatch::single(&seq).unwrap(), Outputs::LAST_LOGITS)).unwrap();
                assert_eq!(lsn_core::decode::argmax(&out.last_logits.unwrap().data), id, "{name}: row {r}");
                seq.push(id);
            }
            assert_eq!((g.ids.len(), g.eos), (6, false), "{name}");
        }
        // With the third token of row 0 declared EOS, row 0 stops there; row 1 goes on unless it meets it too.
        let eos = got[0].ids[2];
        let opts = Greedy { eos: vec![eos], ..opts };
        let stopped = greedy(m.decoder(None).unwrap().as_mut(), &prompts, &opts).unwrap();
        let cut = got[0].ids.iter().position(|&t| t == eos).unwrap() + 1;
        assert_eq!(stopped[0].ids, got[0].ids[..cut], "{name}");
        assert!(stopped[0].eos, "{name}");
        let cut1 = got[1].ids.iter().position(|&t| t == eos).map_or(6, |i| i + 1);
        assert_eq!(stopped[1].ids, got[1].ids[..cut1], "{name}");
        // Bad requests are clear errors.
        let zero = Greedy { max_new_tokens: 0, ..opts.clone() };
        let e = greedy(m.decoder(None).unwrap().as_mut(), &prompts, &zero).unwrap_err().to_string();
        assert!(e.contains("max_new_tokens"), "{name}: {e}");
        let e = greedy(m.decoder(None).unwrap().as_mut(), &[vec![]], &opts).unwrap_err().to_string();
        assert!(e.contains("empty"), "{name}: {e}");
    }
}

#[test]
fn forcing_scores_each_continuation_as_its_own_pass_would() {
    // Batched and padded with others, a continuation's mean NLL is the one its own sequence gives.
    for (backend, name, hf) in cases() {
        let (_dir, mut m) = load_on(backend.as_ref(), &hf, 8);
        let v = m.config().vocab_size;
        let prompts = [tokens(5, v, 70), tokens(9, v, 71), tokens(3, v, 72)];
        let conts = [tokens(4, v, 73), Vec::new(), tokens(7, v, 74)];
        let got = lsn_eval::forcing::continuation_nll(m.as_mut(), &prompts, &conts, 2, 0).unwrap();
        assert_eq!(got[1], None, "{name}: an empty continuation has no NLL");
        for i in [0, 2] {
            let seq = [&prompts[i][..], &conts[i][..]].concat();
            let nll = m.run(&Request::new(&TokenBatch::single(&seq).unwrap(), Outputs::NLL)).unwrap().nll.unwrap();
            let (p, k) = (prompts[i].len(), conts[i].len());
            let want = nll.data[p - 1..p - 1 + k].iter().map(|&x| f64::from(x)).sum::<f64>() / k as f64;
            let d = (got[i].unwrap() - want).abs();
            assert!(d < 1e-5, "{name}: continuation {i}: {} vs {want} (Δ {d:e})", got[i].unwrap());
        }
    }
}

#[test]
fn layer_sums_cover_the_real_tokens_only_and_see_the_steering() {
    use lsn_core::Intervention;
    for (backend, name, hf) in cases() {
        let (_dir, mut m) = load_on(backend.as_ref(), &hf, 9);
        let (v, h, layers) = (m.config().vocab_size, m.config().hidden_size, m.config().num_layers);
        let rows = [tokens(7, v, 80), tokens(3, v, 81)];
        let sums = |m: &mut Box<dyn Model>, b: &TokenBatch, iv: Option<&Intervention>| {
            m.run(&Request::new(b, Outputs::LAYER_SUMS).intervene(iv)).unwrap().layer_sums.unwrap()
        };
        let padded = sums(&mut m, &TokenBatch::padded(&rows, 0).unwrap(), None);
        let apart: Vec<Vec<f64>> = rows.iter().map(|r| sums(&mut m, &TokenBatch::single(r).unwrap(), None)).collect();
        assert_eq!(padded.len(), layers * h, "{name}");
        let worst = (0..padded.len()).map(|i| (padded[i] - apart[0][i] - apart[1][i]).abs()).fold(0f64, f64::max);
        assert!(worst < 1e-3, "{name}: padded sums differ from the rows' own by {worst:e}");
        // A steering vector at layer 0 moves layer 0's sum by exactly tokens × vector.
        let vector: Vec<f32> = (0..h).map(|i| i as f32 * 0.01).collect();
        let iv = Intervention { residual: vec![(0, vector.clone())], ..Intervention::default() };
        let one = TokenBatch::single(&rows[0]).unwrap();
        let steered = sums(&mut m, &one, Some(&iv));
        let d = (0..h).map(|j| (steered[j] - apart[0][j] - 7.0 * f64::from(vector[j])).abs()).fold(0f64, f64::max);
        assert!(d < 1e-3, "{name}: layer 0's sum moved by {d:e} more than the vector");
        assert!(m.run(&Request::new(&one, Outputs::NONE)).unwrap().layer_sums.is_none(), "{name}");
    }
}
