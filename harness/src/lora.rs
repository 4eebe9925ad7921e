//! LoRA cases against HF transformers + PEFT (`fixtures/golden/lora/<model>/<task>/`, made by `cargo xtask
//! fixtures`): the adapter PEFT itself saved is read by lsn's PEFT reader (its gate_proj B rows outside a neuron mask
//! are 0: a masked LoRA) and, on one fixed right-padded batch,
//! - `lora-forward-<task>/<model>`: the adapted model's outputs (the head's logits at the last real token for
//!   SEQ_CLS, the LM's logits there for CAUSAL_LM and lm) — unmerged where the backend applies adapters, else (ort) through
//!   the checkpoint `lsn_lora::merge` writes;
//! - `lora-grad-<task>/<model>`: the summed loss and the gradient of every adapter tensor (masked rows 0 on both
//!   sides), where the backend trains (ort: a recorded skip);
//! - `lora-train-<task>/<model>`: `lsn_lora::train` from that adapter for 20 optimizer steps on the same batch (every
//!   step sees all rows, one row per micro-batch, so neither the data order nor the accumulation may change a sum)
//!   against PyTorch's AdamW, clipping and schedule driving PEFT: each step's loss, the trained tensors, and the
//!   trained model's outputs and predictions on the batch. tch and candle meeting the same golden is what makes
//!   their training curves agree with each other.

use std::path::{Path, PathBuf};

use lsn_core::decode::argmax;
use lsn_core::{
    Adapter, Backend, HiddenAt, LoadOptions, Model, ModelFiles, Objective, Outputs, ParamSpec, Request, TokenBatch,
    TrainBatch,
};
use serde::Deserialize;

use crate::golden::{self, GoldenModel};
use crate::report::Check;
use crate::suite::Env;

/// The models with LoRA goldens: every tiny golden model.
pub fn models() -> impl Iterator<Item = &'static str> {
    golden::MODELS.iter().filter(|m| matches!(m.source, golden::Source::Tiny(_))).map(|m| m.name)
}
/// The tasks of the goldens: PEFT's SEQ_CLS (XNLI's head), CAUSAL_LM (XQuAD's weighted next-token loss on q, k, v, o
/// and the masked gate_proj), and `lm` (`lsn train --task lm`: CAUSAL_LM with the masked gate_proj LoRA alone, every
/// real next token, the subnetwork preset's optimizer).
pub const TASKS: &[&str] = &["seq_cls", "causal_lm", "lm"];
/// The case kinds run per (task, model): `<kind>-<task>/<model>`.
pub const KINDS: &[&str] = &["lora-forward", "lora-grad", "lora-train"];
/// Largest |Δ| of the adapted logits (O(1) on the tiny models; measured ≤ 4.3e-6 on every backend).
pub const LOGIT_TOL: f64 = 2e-5;
/// Largest |Δ loss sum| relative to the loss (measured ≤ 2.1e-7).
pub const LOSS_TOL: f64 = 2e-6;
/// Largest |Δ gradient| of a tensor relative to that tensor's largest |gradient| (f32 backward through every layer,
/// summed in another order; measured ≤ 4.7e-6 on candle and tch).
pub const GRAD_TOL: f64 = 5e-5;
/// Largest |Δ loss| relative to the loss over the 20 training steps. Adam divides each gradient by its own running
/// scale, so an f32 difference in a small gradient element becomes a difference of its step; over 20 steps the loss
/// stays within 1.6e-5 (measured on candle and tch, both models and tasks).
pub const TRAIN_LOSS_TOL: f64 = 1e-4;
/// Largest |Δ value| of a trained tensor relative to that tensor's largest |value| after 20 steps (measured ≤ 6.5e-5).
pub const TRAINED_TOL: f64 = 5e-4;
/// Largest |Δ| of the trained model's outputs on the batch (measured ≤ 1.1e-5).
pub const TRAINED_LOGIT_TOL: f64 = 1e-4;

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
    backend
        .load(&ModelFiles::new(dir), &LoadOptions { device: env.device, ..LoadOptions::default() })
        .map_err(|e| e.to_string())
}

/// A LoRA golden ready to check: the tiny model's directory, the fixture directory, the golden batch, the model on
/// the backend and the adapter PEFT saved.
struct Prepared {
    dir: PathBuf,
    fix: PathBuf,
    g: LoraGolden,
    model: Box<dyn Model>,
    adapter: Adapter,
}

fn prepare(backend: &dyn Backend, env: &Env, name: &str, task: &str) -> Result<Prepared, String> {
    let m: &GoldenModel =
        golden::MODELS.iter().find(|m| m.name == name).ok_or_else(|| format!("{name} is not a golden model"))?;
    let dir = golden::model_dir(env, m)?;
    let fix = fixture(env, name, task);
    let text = std::fs::read_to_string(fix.join("golden.json")).map_err(|e| format!("{}: {e}", fix.display()))?;
    let g: LoraGolden = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", fix.display()))?;
    let model = load(backend, env, &dir)?;
    let (adapter, _) = lsn_lora::read_adapter(&fix, model.config()).map_err(|e| e.to_string())?;
    Ok(Prepared { dir, fix, g, model, adapter })
}

/// The largest |Δ| between each of `values` (one per parameter of `params`) and the tensor of the same name in the
/// safetensors file `file`, relative to that tensor's largest |entry|.
fn worst_relative(params: &[ParamSpec], values: &[Vec<f32>], file: &Path) -> Result<f64, String> {
    let (want, _) = lsn_weights::read_safetensors_f32(file).map_err(|e| e.to_string())?;
    let mut worst = 0.0f64;
    for (p, v) in params.iter().zip(values) {
        let (_, _, w) = want
            .iter()
            .find(|(n, _, _)| *n == p.name)
            .ok_or_else(|| format!("{} has no tensor {}", file.display(), p.name))?;
        let scale = w.iter().map(|x| f64::from(x.abs())).fold(0.0, f64::max).max(1e-12);
        worst = worst.max(v.iter().zip(w).map(|(a, b)| f64::from((a - b).abs())).fold(0.0, f64::max) / scale);
    }
    Ok(worst)
}

/// The LoRA cases of every model with goldens on `backend`.
pub fn checks(backend: &dyn Backend, env: &Env) -> Vec<Check> {
    let mut out = Vec::new();
    for name in models() {
        for &task in TASKS {
            out.extend(task_checks(backend, env, name, task));
            out.push(train_check(backend, env, name, task));
        }
    }
    out
}

/// The golden training run (`<task>/train.json`, `<task>/trained.safetensors`).
#[derive(Deserialize)]
struct TrainGolden {
    train: TrainConsts,
    log: Vec<TrainStep>,
    /// The trained model's outputs on the batch, as [`LoraGolden::logits`].
    logits: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct TrainConsts {
    steps: u32,
    lr: f32,
    head_lr: f32,
    clip: f32,
    warmup: f64,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
}

#[derive(Deserialize)]
struct TrainStep {
    loss: f64,
}

fn train_check(backend: &dyn Backend, env: &Env, name: &str, task: &str) -> Check {
    let b = backend.name();
    let case = format!("lora-train-{task}/{name}");
    let run = || -> Result<Option<(f64, String)>, String> {
        if !backend.capabilities().train {
            return Ok(None);
        }
        let Prepared { fix, g, mut model, adapter: initial, .. } = prepare(backend, env, name, task)?;
        let text = std::fs::read_to_string(fix.join("train.json")).map_err(|e| format!("{}: {e}", fix.display()))?;
        let t: TrainGolden = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", fix.display()))?;
        let (lsn_task, examples) = match (&g.labels, &g.weights) {
            (Some(labels), _) => (
                lsn_lora::Task::Xnli,
                g.rows
                    .iter()
                    .zip(labels)
                    .map(|(ids, &l)| lsn_lora::Example { ids: ids.clone(), target: lsn_lora::Target::Label(l) })
                    .collect::<Vec<_>>(),
            ),
            (None, Some(w)) => (
                if task == "lm" { lsn_lora::Task::Lm } else { lsn_lora::Task::Xquad },
                g.rows
                    .iter()
                    .zip(w)
                    .map(|(ids, w)| lsn_lora::Example {
                        ids: ids.clone(),
                        target: lsn_lora::Target::Weights(w.clone()),
                    })
                    .collect(),
            ),
            (None, None) => return Err("the golden has neither labels nor weights".into()),
        };
        let c = &t.train;
        let spec = lsn_lora::TrainSpec {
            preset: "golden".into(),
            rank: initial.layout.rank,
            alpha: initial.layout.alpha,
            lr: c.lr,
            head_lr: c.head_lr,
            adamw: lsn_lora::AdamW { beta1: c.beta1, beta2: c.beta2, eps: c.eps, weight_decay: c.weight_decay },
            clip: c.clip,
            warmup: c.warmup,
            batch: examples.len(),
            micro_batch: 1,
            epochs: c.steps,
            max_len: usize::MAX,
            checkpoint_every: u64::from(c.steps),
            ..lsn_lora::TrainSpec::paper(lsn_task)
        };
        let ck = lsn_lora::Checkpoints {
            path: env.scratch().join(format!("train-{name}-{task}-{b}.safetensors")),
            run_key: format!("{case}/{b}"),
        };
        let out = lsn_lora::train(model.as_mut(), &spec, initial, &examples, g.pad, &ck, &mut |_, _| {})
            .map_err(|e| e.to_string())?;
        if out.log.len() != t.log.len() {
            return Err(format!("{} steps trained, the golden has {}", out.log.len(), t.log.len()));
        }
        let loss_rel = out
            .log
            .iter()
            .zip(&t.log)
            .map(|(a, w)| (a.loss - w.loss).abs() / w.loss.abs().max(1e-12))
            .fold(0.0, f64::max);
        let params = out.adapter.layout.params(model.config());
        let worst = worst_relative(&params, &out.adapter.values, &fix.join("trained.safetensors"))?;
        model.set_adapter(Some(&out.adapter)).map_err(|e| e.to_string())?;
        let tb = train_batch(&g)?;
        let head = out.adapter.layout.head_classes.and_then(|_| out.adapter.values.last().map(Vec::as_slice));
        let logits = adapted_logits(model.as_mut(), &tb, head)?;
        let dlogit = max_abs_diff(&logits, &t.logits)?;
        let same = logits.iter().zip(&t.logits).all(|(a, w)| argmax(a) == argmax(w));
        let note = format!(
            "loss relative Δ over {} steps {loss_rel:.1e} (tolerance {TRAIN_LOSS_TOL:.0e}); trained model's max \
             |Δlogit| {dlogit:.1e} (tolerance {TRAINED_LOGIT_TOL:.0e}), predictions {}",
            t.log.len(),
            if same { "identical" } else { "DIFFER" }
        );
        if loss_rel > TRAIN_LOSS_TOL || !same || dlogit > TRAINED_LOGIT_TOL {
            return Err(format!("{note}; trained tensors' relative Δ {worst:.1e}"));
        }
        Ok(Some((worst, note)))
    };
    match run() {
        Ok(Some((worst, note))) => {
            Check::measured(&case, b, "max |Δtrained| / max |value| per tensor", worst, TRAINED_TOL, note)
        }
        Ok(None) => {
            Check::skipped(&case, b, format!("{b} does not train (no autograd): adapters train on tch or candle"))
        }
        Err(e) => Check::failed(&case, b, e),
    }
}

fn task_checks(backend: &dyn Backend, env: &Env, name: &str, task: &str) -> Vec<Check> {
    let b = backend.name();
    let (fwd, grad) = (format!("lora-forward-{task}/{name}"), format!("lora-grad-{task}/{name}"));
    let Prepared { dir, fix, g, mut model, adapter } = match prepare(backend, env, name, task) {
        Ok(p) => p,
        Err(e) => return vec![Check::failed(&fwd, b, e.clone()), Check::failed(&grad, b, e)],
    };
    let head = adapter.layout.head_classes.and_then(|_| adapter.values.last().map(Vec::as_slice));
    let mut forward = || -> Result<(f64, &'static str), String> {
        let tb = train_batch(&g)?;
        let how = if backend.capabilities().adapters {
            model.set_adapter(Some(&adapter)).map_err(|e| e.to_string())?;
            "unmerged"
        } else {
            let merged = env.scratch().join(format!("merged-{name}-{task}-{b}"));
            if !merged.join("model.safetensors").is_file() {
                let ckpt = lsn_weights::open_checkpoint(&dir).map_err(|e| e.to_string())?;
                lsn_lora::merge::merge_into(&ckpt, &adapter, &merged).map_err(|e| e.to_string())?;
            }
            model = load(backend, env, &merged)?;
            "merged"
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
        if !backend.capabilities().train {
            return Ok(None);
        }
        let mut model = load(backend, env, &dir)?;
        let tb = train_batch(&g)?;
        let ours = model.gradient(&adapter, &tb).map_err(|e| e.to_string())?;
        if (ours.count - g.count).abs() > 0.0 {
            return Err(format!("the loss counts {} terms, the golden {}", ours.count, g.count));
        }
        let loss_rel = (ours.loss_sum - g.loss_sum).abs() / g.loss_sum.abs().max(1e-12);
        let params = adapter.layout.params(model.config());
        let worst = worst_relative(&params, &ours.grads, &fix.join("grads.safetensors"))?;
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
