//! LoRA cases against HF transformers + PEFT (`fixtures/golden/lora/<model>/<task>/`, made by `cargo xtask
//! fixtures`): the adapter PEFT itself saved is read by lsn's PEFT reader (its gate_proj B rows outside a neuron mask
//! are 0: a masked LoRA) and, on one fixed right-padded batch,
//! - `lora-forward-<task>/<model>`: the adapted model's outputs (the head's logits at the last real token for
//!   SEQ_CLS, the LM's logits there for CAUSAL_LM) — unmerged where the backend applies adapters, else (ort) through
//!   the checkpoint `lsn_lora::merge` writes;
//! - `lora-grad-<task>/<model>`: the summed loss and the gradient of every adapter tensor (masked rows 0 on both
//!   sides), where the backend trains (ort: a recorded skip).

use std::path::{Path, PathBuf};

use lsn_core::{
    Backend, Error as CoreError, HiddenAt, LoadOptions, Model, ModelFiles, Objective, Outputs, Request, TokenBatch,
    TrainBatch,
};
use serde::Deserialize;

use crate::golden::{self, GoldenModel};
use crate::report::Check;
use crate::suite::Env;

/// The models with LoRA goldens.
pub const MODELS: &[&str] = &["tiny-llama", "tiny-gemma3"];
/// The PEFT task types of the goldens.
pub const TASKS: &[&str] = &["seq_cls", "causal_lm"];
/// Largest |Δ| of the adapted logits (O(1) on the tiny models; measured ≤ 4.3e-6 on every backend).
pub const LOGIT_TOL: f64 = 2e-5;
/// Largest |Δ loss sum| relative to the loss (measured ≤ 2.1e-7).
pub const LOSS_TOL: f64 = 2e-6;
/// Largest |Δ gradient| of a tensor relative to that tensor's largest |gradient| (f32 backward through every layer,
/// summed in another order; measured ≤ 4.7e-6 on candle and tch).
pub const GRAD_TOL: f64 = 5e-5;

#[derive(Deserialize)]
struct LoraGolden {
    rows: Vec<Vec<u32>>,
    labels: Option<Vec<u32>>,
    weights: Option<Vec<Vec<f32>>>,
    pad: u32,
    loss_sum: f64,
    count: f64,
    /// SEQ_CLS: the head's logits `[rows][3]`; CAUSAL_LM: the logits at each row's last real token `[rows][vocab]`.
    logits: Vec<Vec<f32>>,
}

fn fixture(env: &Env, model: &str, task: &str) -> PathBuf {
    env.root.join("fixtures/golden/lora").join(model).join(task)
}

fn train_batch(g: &LoraGolden) -> Result<TrainBatch, String> {
    let batch = TokenBatch::padded(&g.rows, g.pad).map_err(|e| e.to_string())?;
    let objective = match (&g.labels, &g.weights) {
        (Some(l), _) => Objective::Classify { labels: l.clone() },
        (None, Some(w)) => {
            let mut flat = vec![0.0; batch.rows * batch.seq_len];
            for (r, row) in w.iter().enumerate() {
                flat[r * batch.seq_len..r * batch.seq_len + row.len()].copy_from_slice(row);
            }
            Objective::NextToken { weights: flat }
        }
        (None, None) => return Err("the golden has neither labels nor weights".into()),
    };
    Ok(TrainBatch { batch, objective })
}

/// The adapted outputs of the golden batch on `model`: head logits at the last real token, or LM logits there.
fn adapted_logits(model: &mut dyn Model, tb: &TrainBatch, head: Option<&[f32]>) -> Result<Vec<Vec<f32>>, String> {
    let b = &tb.batch;
    match head {
        Some(w) => {
            let h = model.run(&Request::new(b, Outputs::hidden(HiddenAt::LastReal))).map_err(|e| e.to_string())?;
            let h = h.hidden.ok_or("no hidden states returned")?;
            let d = h.shape[1];
            let classes = w.len() / d;
            Ok((0..b.rows)
                .map(|r| {
                    let x = &h.data[r * d..(r + 1) * d];
                    (0..classes).map(|c| w[c * d..(c + 1) * d].iter().zip(x).map(|(a, b)| a * b).sum()).collect()
                })
                .collect())
        }
        None => {
            let out = model.run(&Request::new(b, Outputs::LAST_LOGITS)).map_err(|e| e.to_string())?;
            let l = out.last_logits.ok_or("no logits returned")?;
            let v = l.shape[1];
            Ok((0..b.rows).map(|r| l.data[r * v..(r + 1) * v].to_vec()).collect())
        }
    }
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> Result<f64, String> {
    if a.len() != b.len() || a.iter().zip(b).any(|(x, y)| x.len() != y.len()) {
        return Err("logits of another shape than the golden's".into());
    }
    Ok(a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| f64::from((x - y).abs())).fold(0.0, f64::max))
}

fn load(backend: &dyn Backend, env: &Env, dir: &Path) -> Result<Box<dyn Model>, String> {
    backend.load(&ModelFiles::new(dir), &LoadOptions { device: env.device }).map_err(|e| e.to_string())
}

/// The LoRA cases of every model with goldens on `backend`.
pub fn checks(backend: &dyn Backend, env: &Env) -> Vec<Check> {
    let mut out = Vec::new();
    for &name in MODELS {
        for &task in TASKS {
            out.extend(task_checks(backend, env, name, task));
        }
    }
    out
}

fn task_checks(backend: &dyn Backend, env: &Env, name: &str, task: &str) -> Vec<Check> {
    let b = backend.name();
    let (fwd, grad) = (format!("lora-forward-{task}/{name}"), format!("lora-grad-{task}/{name}"));
    let prepared = || -> Result<_, String> {
        let m: &GoldenModel =
            golden::MODELS.iter().find(|m| m.name == name).ok_or_else(|| format!("{name} is not a golden model"))?;
        let dir = golden::model_dir(env, m)?;
        let fix = fixture(env, name, task);
        let text = std::fs::read_to_string(fix.join("golden.json")).map_err(|e| format!("{}: {e}", fix.display()))?;
        let g: LoraGolden = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", fix.display()))?;
        let model = load(backend, env, &dir)?;
        let (adapter, _) = lsn_lora::read_adapter(&fix, model.config()).map_err(|e| e.to_string())?;
        Ok((dir, fix, g, model, adapter))
    };
    let (dir, fix, g, mut model, adapter) = match prepared() {
        Ok(p) => p,
        Err(e) => return vec![Check::failed(&fwd, b, e.clone()), Check::failed(&grad, b, e)],
    };
    let head = adapter.layout.head_classes.and_then(|_| adapter.values.last().map(Vec::as_slice));
    let mut forward = || -> Result<(f64, &'static str), String> {
        let tb = train_batch(&g)?;
        let how = match model.set_adapter(Some(&adapter)) {
            Ok(()) => "unmerged",
            Err(CoreError::Unsupported { .. }) => {
                let merged = env.scratch().join(format!("merged-{name}-{task}-{b}"));
                if !merged.join("model.safetensors").is_file() {
                    let ckpt = lsn_weights::open_checkpoint(&dir).map_err(|e| e.to_string())?;
                    lsn_lora::merge::merge_into(&ckpt, &adapter, &merged).map_err(|e| e.to_string())?;
                }
                model = load(backend, env, &merged)?;
                "merged"
            }
            Err(e) => return Err(e.to_string()),
        };
        Ok((max_abs_diff(&adapted_logits(model.as_mut(), &tb, head)?, &g.logits)?, how))
    };
    let mut checks = vec![match forward() {
        Ok((worst, how)) => {
            Check::measured(&fwd, b, "max |Δlogit| vs PEFT", worst, LOGIT_TOL, format!("adapter applied {how}"))
        }
        Err(e) => Check::failed(&fwd, b, e),
    }];
    let gradient = || -> Result<Option<(f64, f64)>, String> {
        let mut model = load(backend, env, &dir)?;
        let tb = train_batch(&g)?;
        let ours = match model.gradient(&adapter, &tb) {
            Ok(x) => x,
            Err(CoreError::Unsupported { .. }) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        if (ours.count - g.count).abs() > 0.0 {
            return Err(format!("the loss counts {} terms, the golden {}", ours.count, g.count));
        }
        let loss_rel = (ours.loss_sum - g.loss_sum).abs() / g.loss_sum.abs().max(1e-12);
        let (want, _) = lsn_weights::read_safetensors_f32(&fix.join("grads.safetensors")).map_err(|e| e.to_string())?;
        let params = adapter.layout.params(model.config());
        let mut worst = 0.0f64;
        for (p, gv) in params.iter().zip(&ours.grads) {
            let (_, _, w) = want
                .iter()
                .find(|(n, _, _)| *n == p.name)
                .ok_or_else(|| format!("the golden has no gradient of {}", p.name))?;
            let scale = w.iter().map(|x| f64::from(x.abs())).fold(0.0, f64::max).max(1e-12);
            let d = gv.iter().zip(w).map(|(a, b)| f64::from((a - b).abs())).fold(0.0, f64::max);
            worst = worst.max(d / scale);
        }
        Ok(Some((worst, loss_rel)))
    };
    checks.push(match gradient() {
        Ok(Some((worst, loss_rel))) => Check::measured(
            &grad,
            b,
            "max |Δgrad| / max |grad| per tensor",
            worst,
            GRAD_TOL,
            format!("loss sum relative Δ {loss_rel:.1e} (tolerance {LOSS_TOL:.0e})"),
        )
        .fail_if(loss_rel > LOSS_TOL),
        Ok(None) => {
            Check::skipped(&grad, b, format!("{b} does not train (no autograd): adapters train on tch or candle"))
        }
        Err(e) => Check::failed(&grad, b, e),
    });
    checks
}
