//! The bf16 cases: every golden model loaded with bf16 weight matrices on each backend that holds them. What rounding
//! the weights costs is measured against the f32 goldens (`logits-bf16/`, `nll-bf16/`), and the backends must still
//! agree with each other at the f32 tolerances (`logits-bf16-agree/`): they round the same weights the same way and
//! compute in f32. On the capture slice, the neuron sets of a bf16 capture are compared with the f32 sets of the same
//! backend (pairwise table: the size of the symmetric difference, measured, not assumed zero).

use lsn_core::{Backend, LoadOptions, ModelFiles, WeightDType};

use crate::golden::{self, GoldenModel, LOGIT_TOL};
use crate::report::{Check, PairRow};
use crate::suite::Env;

/// Largest |Δlogit| of a bf16-weight model against the f32 goldens. bf16 keeps 8 significant bits, so each weight
/// moves by up to 2⁻⁹ relative and the logits (O(10–30)) by tenths. Measured on CPU (2026-12-03, candle and tch
/// alike): Gemma-3-270M 0.542, SmolLM2-135M 0.329, the tiny models 0.025; the bound is about twice the worst.
pub const BF16_LOGIT_TOL: f64 = 1.0;
/// Largest |Δ mean NLL| per sequence of a bf16-weight model against the f32 goldens (nats). Measured: Gemma-3-270M
/// 0.0201, SmolLM2-135M 0.0046, the tiny models 0.0024.
pub const BF16_NLL_TOL: f64 = 0.05;

/// One backend's bf16 logits of one model at the goldens' compared positions and ids.
#[derive(Debug)]
pub struct Bf16Logits {
    pub backend: String,
    pub model: String,
    pub values: Vec<f32>,
}

fn cases(m: &GoldenModel) -> [String; 2] {
    [format!("logits-bf16/{}", m.name), format!("nll-bf16/{}", m.name)]
}

/// The bf16 golden cases of `m` on `backend`, and its logits for [`agreement`].
pub fn checks(backend: &dyn Backend, env: &Env, m: &GoldenModel) -> (Vec<Check>, Option<Bf16Logits>) {
    let b = backend.name();
    let [logits, nll] = cases(m);
    if !backend.capabilities().dtypes.contains(&WeightDType::Bf16) {
        let why = format!("{b} holds f32 weights only");
        return (vec![Check::skipped(&logits, b, why.clone()), Check::skipped(&nll, b, why)], None);
    }
    let run = || -> Result<golden::Worst, String> {
        let g = golden::read_golden(&env.root, m.name)?;
        let dir = golden::model_dir(env, m)?;
        let opts = LoadOptions { device: env.device, dtype: WeightDType::Bf16 };
        let mut model = backend.load(&ModelFiles::new(&dir), &opts).map_err(|e| e.to_string())?;
        golden::measure(model.as_mut(), &g)
    };
    match run() {
        Err(e) => (vec![Check::failed(&logits, b, e.clone()), Check::failed(&nll, b, e)], None),
        Ok(w) => {
            let taps = format!(
                "vs the f32 goldens; {} neuron(s) count a > 0 differently from them on these tokens",
                w.tap_mismatched
            );
            let checks = vec![
                Check::measured(&logits, b, "max abs Δlogit", w.logit, BF16_LOGIT_TOL, taps),
                Check::measured(
                    &nll,
                    b,
                    "max abs Δ mean NLL",
                    w.mean_nll,
                    BF16_NLL_TOL,
                    format!("vs the f32 goldens; largest per-token |ΔNLL| {:.2e}", w.token_nll),
                ),
            ];
            (checks, Some(Bf16Logits { backend: b.to_owned(), model: m.name.to_owned(), values: w.compared }))
        }
    }
}

/// Every backend's bf16 logits against the first backend's of the same model, at the f32 tolerance.
pub fn agreement(all: &[Bf16Logits]) -> Vec<Check> {
    let mut out = Vec::new();
    for (i, run) in all.iter().enumerate() {
        let Some(reference) = all[..i].iter().find(|r| r.model == run.model) else { continue };
        let case = format!("logits-bf16-agree/{}", run.model);
        if reference.values.len() != run.values.len() {
            out.push(Check::failed(&case, &run.backend, "compared a different number of logits".into()));
            continue;
        }
        let worst = reference.values.iter().zip(&run.values).map(|(a, b)| f64::from((a - b).abs())).fold(0.0, f64::max);
        let note = format!("vs {} with bf16 weights, {} logits", reference.backend, run.values.len());
        out.push(Check::measured(&case, &run.backend, "max abs Δlogit", worst, LOGIT_TOL, note));
    }
    out
}

/// Pairwise rows: the size of each method's `f32 △ bf16` neuron sets on the slice, one backend.
pub fn set_rows(
    backend: &str,
    f32_sets: &[lsn_select::Selection],
    bf16_sets: &[lsn_select::Selection],
) -> Vec<PairRow> {
    f32_sets
        .iter()
        .zip(bf16_sets)
        .map(|(x, y)| match crate::compare::selections(x, y) {
            Ok(d) => PairRow {
                a: format!("{backend} f32"),
                b: format!("{backend} bf16"),
                what: format!("neurons {}: size of A △ B (weights f32 vs bf16)", d.method),
                value: d.symmetric_difference as f64,
                note: d.note,
            },
            Err(e) => PairRow {
                a: format!("{backend} f32"),
                b: format!("{backend} bf16"),
                what: format!("neurons {}", x.method),
                value: f64::NAN,
                note: e,
            },
        })
        .collect()
}
