//! Cases of the intervention and generation boundary against HF transformers (`fixtures/golden/<model>.intervene.json`,
//! made by `xtask/fixtures/golden_intervene.py`), and of cached decoding against the full pass's goldens:
//! - `taps-gate_pre/<m>`: per-neuron means of the FFN taps at both tap points (`act_fn(gate_proj(x))` and
//!   `gate_proj(x)` before the activation) over the golden sequences;
//! - `intervene/<m>`: logits (at the golden's top-k ids) and NLL with chosen neurons overwritten — by 0, by their mean
//!   activation, and by a 10th percentile of `gate_proj(x)` before the activation (the paper's statistics);
//! - `greedy/<m>`: greedy continuations through `Model::decoder` equal HF `generate`'s, with and without the zero
//!   intervention; a differing token counts only where HF's two best logits were further apart than
//!   [`NEAR_TIE`] (two correct f32 implementations may break a nearer tie either way);
//! - `decode/<m>`: a golden sequence fed as a prompt then one token per cached step (past Gemma's sliding window on
//!   the long sequence): each step's logits against the full-pass goldens.

use lsn_core::{Backend, Decoder, Greedy, Intervention, LoadOptions, Model, ModelFiles, NeuronId, Outputs, Request};
use lsn_core::{TapPoint, Taps, TokenBatch, greedy};
use serde::Deserialize;

use crate::golden::{self, GoldenModel, LOGIT_TOL, NLL_TOL};
use crate::report::Check;
use crate::suite::Env;

/// A greedy step whose two best HF logits are closer than this may pick either token.
pub const NEAR_TIE: f64 = 1e-3;
/// Tokens fed as the prompt before cached steps begin, at most (the rest of the sequence goes one token per step).
const PROMPT_MAX: usize = 480;
/// Cached steps per sequence, at most.
const STEPS_MAX: usize = 160;

#[derive(Deserialize)]
struct TapSums {
    n_tokens: u64,
    neurons_per_layer: usize,
    /// `[layer][neuron]`, over the first `neurons_per_layer` neurons of each layer.
    act: Vec<Vec<f64>>,
    gate_pre: Vec<Vec<f64>>,
}

#[derive(Deserialize)]
struct Golden {
    model: String,
    weights_sha256: String,
    /// In the intervention goldens, not the steering ones.
    #[serde(default)]
    tap_sums: Option<TapSums>,
    /// In the steering goldens: the mean of each layer's output over one sequence's tokens.
    #[serde(default)]
    layer_means: Option<LayerMeans>,
    eos: Vec<u32>,
    max_new_tokens: usize,
    cases: Vec<Case>,
    generation: Vec<Generation>,
}

#[derive(Deserialize)]
struct LayerMeans {
    ids: Vec<u32>,
    /// `[layer][hidden]`.
    mean: Vec<Vec<f64>>,
}

/// Largest |Δ| of a layer-output mean, relative to the largest |mean| of its layer (Gemma's residual stream reaches
/// 1e3–1e5; measured on every backend: at most 4.7e-7).
pub const LAYER_MEAN_TOL: f64 = 1e-5;

/// Each layer's output mean over the golden sequence (`Outputs::layer_sums`), against HF's: the worst |Δ| relative to
/// the layer's largest |mean|, and the token count.
fn measure_layer_means(model: &mut dyn Model, g: &Golden) -> Result<(f64, usize), String> {
    let lm = g.layer_means.as_ref().ok_or("the goldens hold no layer means")?;
    let batch = TokenBatch::single(&lm.ids).map_err(|e| e.to_string())?;
    let out = model.run(&Request::new(&batch, Outputs::LAYER_SUMS)).map_err(|e| e.to_string())?;
    let sums = out.layer_sums.ok_or("no layer sums")?;
    let (n, h) = (lm.ids.len() as f64, model.config().hidden_size);
    let mut worst = 0f64;
    for (l, want) in lm.mean.iter().enumerate() {
        let scale = want.iter().fold(1f64, |m, x| m.max(x.abs()));
        for (j, w) in want.iter().enumerate() {
            worst = worst.max((sums[l * h + j] / n - w).abs() / scale);
        }
    }
    Ok((worst, lm.ids.len()))
}

#[derive(Deserialize)]
struct Case {
    name: String,
    /// `[layer, index, value]`: replaced by the value.
    neurons: Vec<(u32, u32, f32)>,
    /// `[layer, index, factor]`: multiplied (steering goldens).
    #[serde(default)]
    scale: Vec<(u32, u32, f32)>,
    /// `[layer, index, value]`: added to (steering goldens).
    #[serde(default)]
    add: Vec<(u32, u32, f32)>,
    /// `[layer, vector]`: added to the layer's output (steering goldens).
    #[serde(default)]
    residual: Vec<(u32, Vec<f32>)>,
    sequences: Vec<CaseSequence>,
}

#[derive(Deserialize)]
struct CaseSequence {
    ids: Vec<u32>,
    topk_ids: Vec<Vec<u32>>,
    topk_logits: Vec<Vec<f32>>,
    nll: Vec<f64>,
}

#[derive(Deserialize)]
struct Generation {
    intervention: String,
    prompt: Vec<u32>,
    generated: Vec<u32>,
    margins: Vec<f64>,
}

/// The greedy continuations one backend produced, for the cross-backend table.
#[derive(Debug, Clone, PartialEq)]
pub struct Continuations {
    pub backend: String,
    pub model: String,
    pub ids: Vec<Vec<u32>>,
}

/// `fixtures/golden/<name>.<kind>.json` (`intervene` or `steer`).
fn read(env: &Env, name: &str, kind: &str) -> Result<Golden, String> {
    let path = env.root.join("fixtures/golden").join(format!("{name}.{kind}.json"));
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e} (run `cargo xtask fixtures`)", path.display()))?;
    let g: Golden = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if g.model != name {
        return Err(format!("{} holds the goldens of {}", path.display(), g.model));
    }
    Ok(g)
}

fn intervention(case: &Case) -> Intervention {
    let edits = |v: &[(u32, u32, f32)]| v.iter().map(|&(l, j, x)| (NeuronId::new(l, j), x)).collect();
    Intervention {
        set: edits(&case.neurons),
        scale: edits(&case.scale),
        add: edits(&case.add),
        residual: case.residual.clone(),
    }
}

/// The smallest largest-shift of the logits an intervention case must cause, so that its comparison tests
/// something (an intervention that moves nothing would pass against any golden).
const MIN_EFFECT: f64 = 1e-2;

/// Worst |Δlogit| at the golden's top-k ids, worst |Δ mean NLL| over every case and sequence, and the smallest (over
/// cases) largest shift an intervention caused against the plain pass.
fn measure_interventions(model: &mut dyn Model, g: &Golden) -> Result<(f64, f64, f64), String> {
    let (mut logit, mut nll, mut effect) = (0f64, 0f64, f64::INFINITY);
    for case in &g.cases {
        let iv = intervention(case);
        let mut moved = 0f64;
        for s in &case.sequences {
            let batch = TokenBatch::single(&s.ids).map_err(|e| e.to_string())?;
            let both = Outputs { logits: true, nll: true, ..Outputs::NONE };
            let out = model.run(&Request::new(&batch, both).intervene(Some(&iv))).map_err(|e| e.to_string())?;
            let plain = model.run(&Request::new(&batch, Outputs::LOGITS)).map_err(|e| e.to_string())?;
            let (logits, plain) = (out.logits.ok_or("no logits")?, plain.logits.ok_or("no logits")?);
            for (t, (ids, values)) in s.topk_ids.iter().zip(&s.topk_logits).enumerate() {
                let (row, base) = (logits.row(&[0, t]), plain.row(&[0, t]));
                for (&id, &v) in ids.iter().zip(values) {
                    logit = logit.max(f64::from((row[id as usize] - v).abs()));
                    moved = moved.max(f64::from((row[id as usize] - base[id as usize]).abs()));
                }
            }
            let ours = out.nll.ok_or("no NLL")?;
            let mean = |v: &mut dyn Iterator<Item = f64>, n: usize| v.sum::<f64>() / n as f64;
            let n = s.nll.len();
            let d = mean(&mut ours.data.iter().map(|&x| f64::from(x)), n) - mean(&mut s.nll.iter().copied(), n);
            nll = nll.max(d.abs());
        }
        effect = effect.min(moved);
    }
    Ok((logit, nll, effect))
}

/// What the greedy comparison found.
struct GreedyOutcome {
    ours: Vec<Vec<u32>>,
    /// Continuations that differ from HF's at a step where HF's choice was clear.
    real: usize,
    /// Continuations that differ first at a near-tie.
    near: usize,
    /// HF's tokens in all.
    tokens: usize,
}

/// Largest |Δ| of a per-neuron mean over the golden sequences' tokens, at either tap point: gate_proj(x) is O(1–10)
/// and f32 matmuls in another order differ by ~1e-6 relative.
pub const TAP_MEAN_TOL: f64 = 1e-4;

/// Per-neuron means of the taps at both points over the scored sequences, against HF's: the worst |Δ mean| at
/// `act` and at `gate_pre`.
fn measure_tap_points(model: &mut dyn Model, g: &Golden) -> Result<(f64, f64), String> {
    let seqs = &g.cases.first().ok_or("no case")?.sequences;
    let tap_sums = g.tap_sums.as_ref().ok_or("the goldens hold no tap sums")?;
    let width = model.config().intermediate_size;
    let mut worst = [0f64; 2];
    for (w, point, golden) in [(0, TapPoint::Act, &tap_sums.act), (1, TapPoint::GatePre, &tap_sums.gate_pre)] {
        let taps = Taps { moments: true, ..Taps::NONE }.at(point);
        let mut sums = vec![0f64; model.config().num_layers * width];
        let mut n = 0;
        for s in seqs {
            let batch = TokenBatch::single(&s.ids).map_err(|e| e.to_string())?;
            let t = model.run(&Request::new(&batch, Outputs::NONE).taps(&taps)).map_err(|e| e.to_string())?;
            let t = t.taps.ok_or("no taps")?;
            n += t.n_tokens;
            for (a, b) in sums.iter_mut().zip(t.sum.ok_or("no sums")?) {
                *a += b;
            }
        }
        if n != tap_sums.n_tokens {
            return Err(format!("the taps cover {n} tokens, the goldens {}", tap_sums.n_tokens));
        }
        for (l, row) in golden.iter().enumerate() {
            for (j, &want) in row.iter().enumerate().take(tap_sums.neurons_per_layer) {
                worst[w] = worst[w].max((sums[l * width + j] - want).abs() / n as f64);
            }
        }
    }
    Ok((worst[0], worst[1]))
}

/// Greedy continuations of every golden prompt, each under the case it names (or none), against HF's.
fn measure_greedy(model: &mut dyn Model, g: &Golden) -> Result<GreedyOutcome, String> {
    let pad = model.config().pad_token_id.unwrap_or(0);
    let opts = Greedy { max_new_tokens: g.max_new_tokens, eos: g.eos.clone(), pad };
    let (mut ours, mut real, mut near, mut tokens) = (Vec::new(), 0, 0, 0);
    for case_gen in &g.generation {
        let iv = match case_gen.intervention.as_str() {
            "none" => None,
            name => {
                Some(intervention(g.cases.iter().find(|c| c.name == name).ok_or_else(|| format!("no case {name}"))?))
            }
        };
        let mut dec: Box<dyn Decoder + '_> = model.decoder(iv.as_ref()).map_err(|e| e.to_string())?;
        let out = greedy(dec.as_mut(), std::slice::from_ref(&case_gen.prompt), &opts).map_err(|e| e.to_string())?;
        let got = out.into_iter().next().ok_or("no continuation")?.ids;
        tokens += case_gen.generated.len();
        // Compare up to the first difference: after it the two continue from different prefixes.
        if let Some(i) = got.iter().zip(&case_gen.generated).position(|(a, b)| a != b) {
            if case_gen.margins.get(i).is_some_and(|&m| m < NEAR_TIE) {
                near += 1;
            } else {
                real += 1;
            }
        } else if got.len() != case_gen.generated.len() {
            real += 1;
        }
        ours.push(got);
    }
    Ok(GreedyOutcome { ours, real, near, tokens })
}

/// Each golden sequence fed as a prompt, then one token per cached step: worst |Δlogit| at the golden's top-k ids.
fn measure_decode(model: &mut dyn Model, g: &golden::Golden) -> Result<(f64, usize, usize), String> {
    let (mut worst, mut steps, mut longest) = (0f64, 0, 0);
    let mut dec = model.decoder(None).map_err(|e| e.to_string())?;
    for s in &g.sequences {
        let n = s.ids.len();
        let prompt = (n / 2).clamp(1, PROMPT_MAX).max(n.saturating_sub(STEPS_MAX));
        let first = dec.prefill(&TokenBatch::single(&s.ids[..prompt]).map_err(|e| e.to_string())?);
        let mut logits = first.map_err(|e| e.to_string())?;
        for t in prompt - 1..n {
            for &(id, v) in &s.topk[t] {
                worst = worst.max(f64::from((logits.data[id as usize] - v).abs()));
            }
            if t + 1 < n {
                logits = dec.step(&[s.ids[t + 1]]).map_err(|e| e.to_string())?;
                steps += 1;
            }
        }
        longest = longest.max(n);
    }
    Ok((worst, steps, longest))
}

/// The three cases of `m` on `backend`, and the greedy continuations for the cross-backend table.
pub fn checks(backend: &dyn Backend, env: &Env, m: &GoldenModel) -> (Vec<Check>, Option<Continuations>) {
    let b = backend.name();
    let (iv_case, greedy_case, decode_case, tap_case) = (
        format!("intervene/{}", m.name),
        format!("greedy/{}", m.name),
        format!("decode/{}", m.name),
        format!("taps-gate_pre/{}", m.name),
    );
    let fail_all = |reason: String| {
        let v = [&tap_case, &iv_case, &greedy_case, &decode_case].map(|c| Check::failed(c, b, reason.clone()));
        (v.to_vec(), None)
    };
    let loaded = (|| -> Result<(Golden, golden::Golden, Box<dyn Model>), String> {
        let g = read(env, m.name, "intervene")?;
        let full = golden::read_golden(&env.root, m.name)?;
        let dir = golden::model_dir(env, m)?;
        let weights = golden::sha256(&dir.join("model.safetensors"))?;
        if weights != g.weights_sha256 || weights != full.weights_sha256 {
            return Err(format!(
                "the weights in {} differ from those the goldens were made from: regenerate them with `cargo xtask \
                 fixtures`",
                dir.display()
            ));
        }
        let model = backend
            .load(&ModelFiles::new(&dir), &LoadOptions { device: env.device, ..LoadOptions::default() })
            .map_err(|e| e.to_string())?;
        Ok((g, full, model))
    })();
    let (g, full, mut model) = match loaded {
        Ok(x) => x,
        Err(e) => return fail_all(e),
    };
    let mut v = Vec::new();
    v.push(match measure_tap_points(model.as_mut(), &g) {
        Ok((act, pre)) => Check::measured(
            &tap_case,
            b,
            "max abs Δmean at gate_pre",
            pre,
            TAP_MEAN_TOL,
            format!(
                "per-neuron means of gate_proj(x) over {} tokens (first {} neurons per layer); at act: {}",
                g.tap_sums.as_ref().map_or(0, |t| t.n_tokens),
                g.tap_sums.as_ref().map_or(0, |t| t.neurons_per_layer),
                crate::report::fmt_num(act)
            ),
        )
        .fail_if(act > TAP_MEAN_TOL),
        Err(e) => Check::failed(&tap_case, b, e),
    });
    v.push(intervention_check(model.as_mut(), &g, &iv_case, b));
    let (check, cont) = greedy_check(model.as_mut(), &g, &greedy_case, b, m.name);
    v.push(check);
    v.push(match measure_decode(model.as_mut(), &full) {
        Ok((worst, steps, longest)) => Check::measured(
            &decode_case,
            b,
            "max abs Δlogit",
            worst,
            LOGIT_TOL,
            format!("{steps} cached steps over {} sequences (longest {longest} tokens)", full.sequences.len()),
        ),
        Err(e) => Check::failed(&decode_case, b, e),
    });
    (v, cont)
}

/// The case `case` of `g`'s edit cases on `backend`: logits at the golden's top-k ids and mean NLL against HF's, each
/// case moving the logits.
fn intervention_check(model: &mut dyn Model, g: &Golden, case: &str, b: &str) -> Check {
    match measure_interventions(model, g) {
        Ok((logit, nll, effect)) => Check::measured(
            case,
            b,
            "max abs Δlogit",
            logit,
            LOGIT_TOL,
            format!(
                "{} cases ({}); largest |Δ mean NLL| {} (tolerance {NLL_TOL:e}){}; each case moves the logits by ≥ {}{}",
                g.cases.len(),
                g.cases.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
                crate::report::fmt_num(nll),
                if nll > NLL_TOL { " — over tolerance" } else { "" },
                crate::report::fmt_num(effect),
                if effect < MIN_EFFECT { " — too little for the case to test anything" } else { "" },
            ),
        )
        .fail_if(nll > NLL_TOL || effect < MIN_EFFECT),
        Err(e) => Check::failed(case, b, e),
    }
}

/// The case `case`: `g`'s greedy continuations against HF's, and ours for the cross-backend table.
fn greedy_check(model: &mut dyn Model, g: &Golden, case: &str, b: &str, m: &str) -> (Check, Option<Continuations>) {
    match measure_greedy(model, g) {
        Ok(GreedyOutcome { ours, real, near, tokens }) => (
            Check::measured(
                case,
                b,
                "continuations differing",
                real as f64,
                0.0,
                format!(
                    "{} continuations ({}), {tokens} HF tokens; {near} differ first at a near-tie (HF margin < \
                     {NEAR_TIE:e})",
                    g.generation.len(),
                    cases_named(g.generation.iter().map(|c| c.intervention.as_str()))
                ),
            ),
            Some(Continuations { backend: b.to_owned(), model: m.to_owned(), ids: ours }),
        ),
        Err(e) => (Check::failed(case, b, e), None),
    }
}

/// The distinct names of `names`, in order, joined.
fn cases_named<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for n in names {
        if !seen.contains(&n) {
            seen.push(n);
        }
    }
    seen.join(", ")
}

/// The models with steering goldens (`fixtures/golden/<m>.steer.json`, made by `xtask/fixtures/golden_steer.py`): a
/// Llama and a Gemma (the two layer shapes: plain and sandwich-normed) and the real Gemma-3-270M.
pub const STEER_MODELS: &[&str] = &["tiny-llama", "tiny-gemma3", "gemma-3-270m"];

/// Whether `m` has steering goldens.
pub fn steers(m: &GoldenModel) -> bool {
    STEER_MODELS.contains(&m.name)
}

/// The steering cases of `m` on `backend`, against HF transformers with the same hooks:
/// - `layer-sums/<m>`: the mean of each layer's output over a sequence (what difference-of-means vectors are made of);
/// - `steer/<m>`: logits and NLL under each steering operation (neurons scaled, added to by α × their mean, the
///   arithmetic "deactivate source + activate target" pair, and a difference-of-means vector added to a layer's
///   output);
/// - `steer-greedy/<m>`: greedy continuations under each, and with none.
pub fn steer_checks(backend: &dyn Backend, env: &Env, m: &GoldenModel) -> (Vec<Check>, Option<Continuations>) {
    let b = backend.name();
    let (iv_case, greedy_case, sums_case) =
        (format!("steer/{}", m.name), format!("steer-greedy/{}", m.name), format!("layer-sums/{}", m.name));
    let loaded = (|| -> Result<(Golden, Box<dyn Model>), String> {
        let g = read(env, m.name, "steer")?;
        let dir = golden::model_dir(env, m)?;
        if golden::sha256(&dir.join("model.safetensors"))? != g.weights_sha256 {
            return Err(format!(
                "the weights in {} differ from those the steering goldens were made from: regenerate them with \
                 `cargo xtask fixtures steer`",
                dir.display()
            ));
        }
        let model = backend
            .load(&ModelFiles::new(&dir), &LoadOptions { device: env.device, ..LoadOptions::default() })
            .map_err(|e| e.to_string())?;
        Ok((g, model))
    })();
    let (g, mut model) = match loaded {
        Ok(x) => x,
        Err(e) => {
            let v = [&sums_case, &iv_case, &greedy_case].map(|c| Check::failed(c, b, e.clone()));
            return (v.to_vec(), None);
        }
    };
    let sums = match measure_layer_means(model.as_mut(), &g) {
        Ok((worst, n)) => Check::measured(
            &sums_case,
            b,
            "max abs Δmean / layer max",
            worst,
            LAYER_MEAN_TOL,
            format!("means of every layer's output over {n} tokens"),
        ),
        Err(e) => Check::failed(&sums_case, b, e),
    };
    let iv = intervention_check(model.as_mut(), &g, &iv_case, b);
    let (greedy, cont) = greedy_check(model.as_mut(), &g, &greedy_case, b, &format!("{} steered", m.name));
    (vec![sums, iv, greedy], cont)
}
