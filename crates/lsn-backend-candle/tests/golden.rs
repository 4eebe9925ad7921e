//! The Candle backend against HF transformers goldens (`fixtures/golden/*.json`, made by `cargo xtask fixtures`).
//!
//! Real models come from the cache that `cargo xtask test` fills (`lsn fetch-model`); tiny models are rewritten
//! from their seed and must hash to the weights the goldens were made from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lsn_backend_candle::CandleBackend;
use lsn_core::{Backend, LoadOptions, ModelFiles, Taps, TokenBatch, Want};
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    model: String,
    weights_sha256: String,
    tokenizer_sha256: Option<String>,
    sample_ids: Vec<u32>,
    sequences: Vec<Sequence>,
    taps: GoldenTaps,
}

#[derive(Deserialize)]
struct Sequence {
    lang: Option<String>,
    text: Option<String>,
    ids: Vec<u32>,
    nll: Vec<f64>,
    mean_nll: f64,
    topk: Vec<Vec<(u32, f32)>>,
    sample_logits: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct GoldenTaps {
    layers: usize,
    intermediate: usize,
    n_tokens: u64,
    count_pos: Vec<Vec<u64>>,
    near_zero: Vec<(usize, usize, u64)>,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn golden(name: &str) -> Golden {
    let path = workspace().join("fixtures/golden").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sha256(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::io::copy(&mut f, &mut h).unwrap();
    hex::encode(h.finalize())
}

/// A fetched real model's directory; a missing model is a failure with the command that fixes it.
fn real_model(name: &str) -> PathBuf {
    let dir = lsn_data::cache_home().join("models").join(name);
    assert!(
        dir.join("lsn-fetch.json").is_file(),
        "{name} is not in the model cache {}: run `cargo xtask test` (it fetches the models) or `lsn fetch-model {name}`",
        dir.display()
    );
    dir
}

/// Worst deviations seen while comparing one model with its golden.
#[derive(Debug, Default)]
struct Worst {
    logit: f32,
    mean_nll: f64,
    token_nll: f64,
    tap_excess: u64,
    tap_mismatched_neurons: usize,
}

fn log_softmax_at(row: &[f32], id: u32) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln() + max;
    row[id as usize] as f64 - lse
}

fn compare(name: &str, dir: &Path) -> Worst {
    let g = golden(name);
    assert_eq!(g.model, name);
    assert_eq!(
        sha256(&dir.join("model.safetensors")),
        g.weights_sha256,
        "{name}: the weights differ from those the goldens were made from; if the converter changed on purpose, \
         regenerate the goldens with `cargo xtask fixtures`"
    );
    let mut model = CandleBackend.load(&ModelFiles::new(dir), &LoadOptions::default()).expect("model loads");
    let (layers, inter) = (g.taps.layers, g.taps.intermediate);
    let mut counts = vec![0u64; layers * inter];
    let mut n_tokens = 0;
    let mut w = Worst::default();
    for seq in &g.sequences {
        let batch = TokenBatch::single(&seq.ids).unwrap();
        let out = model.forward(&batch, &Taps::COUNT_POS, Want::Logits).expect("forward");
        let logits = out.logits.expect("logits");
        let vocab = logits.shape[2];
        let taps = out.taps.expect("taps");
        n_tokens += taps.n_tokens;
        for (c, t) in counts.iter_mut().zip(taps.count_pos.expect("count_pos")) {
            *c += t;
        }
        let mut nll_sum = 0.0;
        for t in 0..seq.ids.len() {
            let row = &logits.data[t * vocab..(t + 1) * vocab];
            for &(id, v) in &seq.topk[t] {
                w.logit = w.logit.max((row[id as usize] - v).abs());
            }
            for (&id, &v) in g.sample_ids.iter().zip(&seq.sample_logits[t]) {
                w.logit = w.logit.max((row[id as usize] - v).abs());
            }
            if t + 1 < seq.ids.len() {
                let nll = -log_softmax_at(row, seq.ids[t + 1]);
                w.token_nll = w.token_nll.max((nll - seq.nll[t]).abs());
                nll_sum += nll;
            }
        }
        let mean = nll_sum / (seq.ids.len() - 1) as f64;
        w.mean_nll = w.mean_nll.max((mean - seq.mean_nll).abs());

        // The on-device NLL path must agree with the log-softmax of the returned logits.
        let nll = model.forward(&batch, &Taps::NONE, Want::Nll).expect("nll").nll.expect("nll out");
        let device_mean = nll.data.iter().map(|&x| x as f64).sum::<f64>() / nll.data.len() as f64;
        w.mean_nll = w.mean_nll.max((device_mean - seq.mean_nll).abs());
    }
    assert_eq!(n_tokens, g.taps.n_tokens);
    let slack: HashMap<(usize, usize), u64> = g.taps.near_zero.iter().map(|&(l, j, n)| ((l, j), n)).collect();
    for l in 0..layers {
        for j in 0..inter {
            let (ours, theirs) = (counts[l * inter + j], g.taps.count_pos[l][j]);
            if ours != theirs {
                w.tap_mismatched_neurons += 1;
                let allowed = slack.get(&(l, j)).copied().unwrap_or(0);
                w.tap_excess = w.tap_excess.max(ours.abs_diff(theirs).saturating_sub(allowed));
            }
        }
    }
    eprintln!("{name} vs transformers: {w:?}");
    assert!(w.logit <= 1e-3, "{name}: max |Δlogit| {} > 1e-3", w.logit);
    assert!(w.mean_nll <= 1e-4, "{name}: mean NLL differs by {} > 1e-4", w.mean_nll);
    assert_eq!(w.tap_excess, 0, "{name}: tap counts differ beyond activations with |a| < 1e-6");
    w
}

fn check_tokenizer(name: &str, dir: &Path) {
    let g = golden(name);
    let tok_path = dir.join("tokenizer.json");
    assert_eq!(Some(sha256(&tok_path)), g.tokenizer_sha256, "{name}: tokenizer.json differs from the goldens'");
    let tok = lsn_data::Tokenizer::from_file(&tok_path).unwrap();
    let mut checked = 0;
    for seq in g.sequences.iter().filter(|s| s.text.is_some()) {
        let ids = tok.encode(seq.text.as_deref().unwrap()).unwrap();
        assert_eq!(
            ids,
            seq.ids,
            "{name} [{}]: token ids differ from transformers'",
            seq.lang.as_deref().unwrap_or("?")
        );
        checked += 1;
    }
    assert!(checked >= 5, "{name}: goldens hold only {checked} texts");
}

#[test]
fn gemma_3_270m_matches_transformers() {
    let dir = real_model("gemma-3-270m");
    check_tokenizer("gemma-3-270m", &dir);
    compare("gemma-3-270m", &dir);
}

#[test]
fn smollm2_135m_matches_transformers() {
    let dir = real_model("smollm2-135m");
    check_tokenizer("smollm2-135m", &dir);
    compare("smollm2-135m", &dir);
}

fn tiny(preset: &str, seed: u64) {
    let (_, cfg) = lsn_weights::tiny_configs().into_iter().find(|(n, _)| *n == preset).expect("preset exists");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(preset);
    lsn_weights::write_random_model(&cfg, seed, &dir).unwrap();
    compare(preset, &dir);
}

#[test]
fn tiny_llama_matches_transformers() {
    tiny("tiny-llama", 1);
}

#[test]
fn tiny_gemma3_matches_transformers() {
    tiny("tiny-gemma3", 2);
}
