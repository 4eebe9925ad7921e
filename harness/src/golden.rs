//! Cases against HF transformers goldens (`fixtures/golden/<model>.json`, made by `cargo xtask fixtures`): logits at
//! the golden's top-k and sample ids, next-token NLL (from the logits and from the backend's own `Outputs::NLL`), and
//! per-neuron positive-activation counts of the FFN tap.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lsn_core::{Backend, LoadOptions, Model, ModelFiles, Outputs, Request, Taps, TokenBatch};
use serde::Deserialize;

use crate::report::Check;
use crate::suite::Env;

/// Largest |Δlogit| against the goldens (DESIGN §7; logits are O(10–30)).
pub const LOGIT_TOL: f64 = 1e-3;
/// Largest |Δ mean NLL| per sequence.
pub const NLL_TOL: f64 = 1e-4;

/// Where a golden model's weights come from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// `lsn fetch-model NAME` into the model cache (`cargo xtask test` does it).
    Fetched,
    /// `lsn_weights::write_random_model` of the preset with this seed.
    Tiny(u64),
}

/// A model with goldens.
#[derive(Debug, Clone, Copy)]
pub struct GoldenModel {
    pub name: &'static str,
    pub source: Source,
}

/// Every model with goldens, tiny ones first (fast, one or two per family; they cover GQA, head_dim ≠ hidden/heads,
/// tied and untied heads, Llama-3 RoPE scaling, q/k/v biases, q/k norms, soft-capping and alternating windows).
pub const MODELS: &[GoldenModel] = &[
    GoldenModel { name: "tiny-llama", source: Source::Tiny(1) },
    GoldenModel { name: "tiny-gemma3", source: Source::Tiny(2) },
    GoldenModel { name: "tiny-qwen2", source: Source::Tiny(3) },
    GoldenModel { name: "tiny-qwen3", source: Source::Tiny(4) },
    GoldenModel { name: "tiny-gemma2", source: Source::Tiny(5) },
    GoldenModel { name: "tiny-llama32", source: Source::Tiny(6) },
    GoldenModel { name: "gemma-3-270m", source: Source::Fetched },
    GoldenModel { name: "smollm2-135m", source: Source::Fetched },
];

#[derive(Deserialize)]
pub(crate) struct Golden {
    model: String,
    pub(crate) weights_sha256: String,
    sample_ids: Vec<u32>,
    pub(crate) sequences: Vec<Sequence>,
    taps: GoldenTaps,
}

#[derive(Deserialize)]
pub(crate) struct Sequence {
    pub(crate) ids: Vec<u32>,
    nll: Vec<f64>,
    mean_nll: f64,
    /// Per position, the golden's top-k `(id, logit)`.
    pub(crate) topk: Vec<Vec<(u32, f32)>>,
    sample_logits: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct GoldenTaps {
    layers: usize,
    intermediate: usize,
    n_tokens: u64,
    count_pos: Vec<Vec<u64>>,
    /// `(layer, neuron, n)`: n of the neuron's activations lie within `near_zero_threshold` of zero, where the sign
    /// may legitimately differ between implementations.
    near_zero: Vec<(usize, usize, u64)>,
}

pub(crate) fn read_golden(root: &Path, name: &str) -> Result<Golden, String> {
    let path = root.join("fixtures/golden").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let g: Golden = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if g.model != name {
        return Err(format!("{} holds the goldens of {}", path.display(), g.model));
    }
    Ok(g)
}

/// [`lsn_data::sha256_file`] with the error as text.
pub fn sha256(path: &Path) -> Result<String, String> {
    lsn_data::sha256_file(path).map_err(|e| e.to_string())
}

/// The checkpoint directory of `m`: the fetched model in the cache, or the tiny model written once per run.
pub fn model_dir(env: &Env, m: &GoldenModel) -> Result<PathBuf, String> {
    match m.source {
        Source::Fetched => {
            let dir = lsn_data::model_dir(&env.home, m.name);
            if dir.join(lsn_data::FETCH_MARKER).is_file() {
                Ok(dir)
            } else {
                Err(format!(
                    "{} is not in the model cache {}: run `cargo xtask test` (it fetches the models) or `lsn fetch-model {}`",
                    m.name,
                    env.home.display(),
                    m.name
                ))
            }
        }
        Source::Tiny(seed) => {
            let dir = env.scratch().join(m.name);
            if !dir.join("model.safetensors").is_file() {
                let (_, cfg) = lsn_weights::tiny_configs()
                    .into_iter()
                    .find(|(n, _)| *n == m.name)
                    .ok_or_else(|| format!("no tiny preset {}", m.name))?;
                lsn_weights::write_random_model(&cfg, seed, &dir).map_err(|e| e.to_string())?;
            }
            Ok(dir)
        }
    }
}

fn log_softmax_at(row: &[f32], id: u32) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln() + max;
    row[id as usize] as f64 - lse
}

/// Worst deviations of one model on one backend.
#[derive(Debug, Default)]
pub(crate) struct Worst {
    pub(crate) logit: f64,
    pub(crate) mean_nll: f64,
    pub(crate) token_nll: f64,
    pub(crate) tap_excess: u64,
    pub(crate) tap_mismatched: usize,
    pub(crate) near_zero_neurons: usize,
    /// The backend's logits at every compared `(position, id)`, in the goldens' order (for comparing backends).
    pub(crate) compared: Vec<f32>,
}

pub(crate) fn measure(model: &mut dyn Model, g: &Golden) -> Result<Worst, String> {
    let (layers, inter) = (g.taps.layers, g.taps.intermediate);
    let mut counts = vec![0u64; layers * inter];
    let mut n_tokens = 0;
    let mut w = Worst::default();
    for (s, seq) in g.sequences.iter().enumerate() {
        let batch = TokenBatch::single(&seq.ids).map_err(|e| e.to_string())?;
        let req = Request::new(&batch, Outputs::LOGITS).taps(&Taps::COUNT_POS);
        let out = model.run(&req).map_err(|e| e.to_string())?;
        let logits = out.logits.ok_or("no logits returned")?;
        let vocab = logits.shape[2];
        let taps = out.taps.ok_or("no taps returned")?;
        n_tokens += taps.n_tokens;
        for (c, t) in counts.iter_mut().zip(taps.count_pos.ok_or("no count_pos returned")?) {
            *c += t;
        }
        let mut nll_sum = 0.0;
        for t in 0..seq.ids.len() {
            let row = &logits.data[t * vocab..(t + 1) * vocab];
            let pairs = seq.topk[t]
                .iter()
                .copied()
                .chain(g.sample_ids.iter().copied().zip(seq.sample_logits[t].iter().copied()));
            for (id, v) in pairs {
                w.logit = w.logit.max(f64::from((row[id as usize] - v).abs()));
                w.compared.push(row[id as usize]);
            }
            if t + 1 < seq.ids.len() {
                let nll = -log_softmax_at(row, seq.ids[t + 1]);
                w.token_nll = w.token_nll.max((nll - seq.nll[t]).abs());
                nll_sum += nll;
            }
        }
        let mean = nll_sum / (seq.ids.len() - 1) as f64;
        w.mean_nll = w.mean_nll.max((mean - seq.mean_nll).abs());
        // The backend's own NLL path must agree too.
        let nll = model.run(&Request::new(&batch, Outputs::NLL)).map_err(|e| e.to_string())?.nll;
        let nll = nll.ok_or_else(|| format!("sequence {s}: no NLL returned"))?;
        let device_mean = nll.data.iter().map(|&x| f64::from(x)).sum::<f64>() / nll.data.len() as f64;
        w.mean_nll = w.mean_nll.max((device_mean - seq.mean_nll).abs());
    }
    if n_tokens != g.taps.n_tokens {
        return Err(format!("taps cover {n_tokens} tokens, the goldens {}", g.taps.n_tokens));
    }
    let slack: HashMap<(usize, usize), u64> = g.taps.near_zero.iter().map(|&(l, j, n)| ((l, j), n)).collect();
    w.near_zero_neurons = slack.len();
    for l in 0..layers {
        for j in 0..inter {
            let (ours, theirs) = (counts[l * inter + j], g.taps.count_pos[l][j]);
            if ours != theirs {
                w.tap_mismatched += 1;
                let allowed = slack.get(&(l, j)).copied().unwrap_or(0);
                w.tap_excess = w.tap_excess.max(ours.abs_diff(theirs).saturating_sub(allowed));
            }
        }
    }
    Ok(w)
}

/// The golden cases of `m` on `backend`: `logits/<m>`, `nll/<m>` and `taps/<m>`.
pub fn checks(backend: &dyn Backend, env: &Env, m: &GoldenModel) -> Vec<Check> {
    let b = backend.name();
    let (logits, nll, taps) = (format!("logits/{}", m.name), format!("nll/{}", m.name), format!("taps/{}", m.name));
    let all_failed = |reason: String| {
        vec![
            Check::failed(&logits, b, reason.clone()),
            Check::failed(&nll, b, reason.clone()),
            Check::failed(&taps, b, reason),
        ]
    };
    let run = || -> Result<Worst, String> {
        let g = read_golden(&env.root, m.name)?;
        let dir = model_dir(env, m)?;
        let weights = sha256(&dir.join("model.safetensors"))?;
        if weights != g.weights_sha256 {
            return Err(format!(
                "the weights in {} differ from those the goldens were made from; if the converter changed on purpose, \
                 regenerate the goldens with `cargo xtask fixtures`",
                dir.display()
            ));
        }
        let mut model = backend
            .load(&ModelFiles::new(&dir), &LoadOptions { device: env.device, ..LoadOptions::default() })
            .map_err(|e| e.to_string())?;
        measure(model.as_mut(), &g)
    };
    let taps_check = |w: &Worst| {
        Check::measured(
            &taps,
            b,
            "count_pos excess",
            w.tap_excess as f64,
            0.0,
            if w.tap_mismatched > 0 {
                format!(
                    "{} neuron(s) differ from transformers' counts; the goldens allow each of their {} neurons with \
                     activations within 1e-5 of zero to differ by that many",
                    w.tap_mismatched, w.near_zero_neurons
                )
            } else {
                String::new()
            },
        )
    };
    match run() {
        Err(e) => all_failed(e),
        Ok(w) => vec![
            Check::measured(&logits, b, "max abs Δlogit", w.logit, LOGIT_TOL, String::new()),
            Check::measured(
                &nll,
                b,
                "max abs Δ mean NLL",
                w.mean_nll,
                NLL_TOL,
                format!("largest per-token |ΔNLL| {:.2e}", w.token_nll),
            ),
            taps_check(&w),
        ],
    }
}
