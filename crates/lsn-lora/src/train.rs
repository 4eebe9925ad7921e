//! The training loop, written once for every backend: the data order from the seed, micro-batches whose summed
//! gradients make one optimizer step over the effective batch (averaged over all its examples or counted tokens),
//! clipping by global norm, AdamW on host values with the linear schedule, and a checkpoint every N steps from which
//! a killed run resumes to the same bytes an uninterrupted run writes. A backend only computes each micro-batch's
//! loss and gradient ([`lsn_core::Model::gradient`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use lsn_core::{Adapter, LoraLayout, Model, Objective, ParamRole, SeededRng, TokenBatch, TrainBatch};
use serde::{Deserialize, Serialize};

use crate::optim::{Moments, clip_global_norm, linear_schedule, warmup_steps};
use crate::spec::TrainSpec;
use crate::{Error, Result};

/// One training example: token ids and what the loss compares them with.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub ids: Vec<u32>,
    pub target: Target,
}

/// The target of one example.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A class for the head at the last token.
    Label(u32),
    /// Per-token loss weights (one per id; position `t` predicts `ids[t + 1]`, the last weight is unused).
    Weights(Vec<f32>),
}

/// What one optimizer step did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    /// 1-based.
    pub step: u64,
    pub epoch: u32,
    /// Mean loss over the step's examples (classification) or counted tokens (causal LM).
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// The LoRA learning rate used.
    pub lr: f32,
    /// Real tokens in the step's batches.
    pub tokens: u64,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub adapter: Adapter,
    pub log: Vec<StepLog>,
    /// The step a checkpoint let the run start after (0: from the beginning).
    pub resumed_at: u64,
    /// Real tokens per second of the steps this process ran.
    pub tokens_per_s: f64,
}

/// Where checkpoints go and what identifies the run.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    /// The checkpoint file (`…/checkpoint.safetensors`).
    pub path: PathBuf,
    /// A digest of everything that defines the run (spec, layout, data, model); a checkpoint with another key is
    /// refused, never resumed.
    pub run_key: String,
}

/// Optimizer steps per epoch and in all.
pub fn steps(spec: &TrainSpec, n_examples: usize) -> (u64, u64) {
    let per_epoch = n_examples.div_ceil(spec.batch) as u64;
    (per_epoch, per_epoch * u64::from(spec.epochs))
}

/// The example order of epoch `epoch`: epoch after epoch, a fresh Fisher–Yates shuffle of `0..n` from one stream
/// seeded with `seed`.
pub fn epoch_order(seed: u64, n: usize, epoch: u32) -> Vec<usize> {
    let mut rng = SeededRng::new(seed);
    let mut order = Vec::new();
    for _ in 0..=epoch {
        order = (0..n).collect();
        rng.shuffle(&mut order);
    }
    order
}

/// Windows of this many batches are sorted by length when batches are grouped by length.
pub const GROUP_WINDOW: usize = 8;

/// The batches (example indices) of epoch `epoch`: [`epoch_order`] cut into batches of `batch`; with `group`, each
/// window of [`GROUP_WINDOW`] batches of that order is sorted by length (ties by index) before the cut, and the
/// batches are then shuffled by a second stream of the seed. Every epoch has `n.div_ceil(batch)` batches; only the
/// last window's last batch can be short.
pub fn epoch_batches(seed: u64, lengths: &[usize], batch: usize, epoch: u32, group: bool) -> Vec<Vec<usize>> {
    let mut order = epoch_order(seed, lengths.len(), epoch);
    if !group {
        return order.chunks(batch).map(<[usize]>::to_vec).collect();
    }
    for window in order.chunks_mut(batch * GROUP_WINDOW) {
        window.sort_by_key(|&i| (lengths[i], i));
    }
    let batches: Vec<&[usize]> = order.chunks(batch).collect();
    let mut rng = SeededRng::new(seed ^ 0x6772_6f75_7065_6421);
    let mut perm = Vec::new();
    for _ in 0..=epoch {
        perm = (0..batches.len()).collect();
        rng.shuffle(&mut perm);
    }
    perm.iter().map(|&i| batches[i].to_vec()).collect()
}

/// The micro-batches of one step's examples, in order: padded ids and the objective.
fn micro_batches(examples: &[&Example], micro: usize, pad: u32) -> Result<Vec<TrainBatch>> {
    examples
        .chunks(micro)
        .map(|chunk| {
            let seqs: Vec<Vec<u32>> = chunk.iter().map(|e| e.ids.clone()).collect();
            let batch = TokenBatch::padded(&seqs, pad)?;
            let objective = match &chunk[0].target {
                Target::Label(_) => Objective::Classify {
                    labels: chunk
                        .iter()
                        .map(|e| match e.target {
                            Target::Label(l) => Ok(l),
                            Target::Weights(_) => {
                                Err(Error::Invalid("a training set mixes labels and LM targets".into()))
                            }
                        })
                        .collect::<Result<_>>()?,
                },
                Target::Weights(_) => {
                    let mut w = vec![0.0f32; batch.rows * batch.seq_len];
                    for (r, e) in chunk.iter().enumerate() {
                        let Target::Weights(ew) = &e.target else {
                            return Err(Error::Invalid("a training set mixes labels and LM targets".into()));
                        };
                        w[r * batch.seq_len..r * batch.seq_len + ew.len()].copy_from_slice(ew);
                    }
                    Objective::NextToken { weights: w }
                }
            };
            Ok(TrainBatch { batch, objective })
        })
        .collect()
}

/// The optimizer state a checkpoint holds.
struct State {
    adapter: Adapter,
    moments: Vec<Moments>,
    step: u64,
    log: Vec<StepLog>,
}

fn save(ck: &Checkpoints, s: &State, params: &[lsn_core::ParamSpec]) -> Result<()> {
    let mut tensors = Vec::with_capacity(params.len() * 3);
    for (i, p) in params.iter().enumerate() {
        tensors.push((format!("value.{}", p.name), p.shape.clone(), s.adapter.values[i].clone()));
        tensors.push((format!("adam_m.{}", p.name), p.shape.clone(), s.moments[i].m.clone()));
        tensors.push((format!("adam_v.{}", p.name), p.shape.clone(), s.moments[i].v.clone()));
    }
    let log = serde_json::to_string(&s.log).map_err(|e| Error::Invalid(e.to_string()))?;
    let meta = BTreeMap::from([
        ("run_key".to_string(), ck.run_key.clone()),
        ("step".to_string(), s.step.to_string()),
        ("log".to_string(), log),
    ]);
    Ok(lsn_weights::write_safetensors_f32(&ck.path, &tensors, &meta)?)
}

fn load(ck: &Checkpoints, layout: &LoraLayout, params: &[lsn_core::ParamSpec]) -> Result<Option<State>> {
    if !ck.path.exists() {
        return Ok(None);
    }
    let foreign = |reason: String| Error::ForeignCheckpoint { path: ck.path.clone(), reason };
    let (tensors, meta) = lsn_weights::read_safetensors_f32(&ck.path)?;
    if meta.get("run_key") != Some(&ck.run_key) {
        return Err(foreign("its run key differs: another spec, data, neuron set or model".into()));
    }
    let step: u64 = meta.get("step").and_then(|s| s.parse().ok()).ok_or_else(|| foreign("no step recorded".into()))?;
    let log: Vec<StepLog> = meta
        .get("log")
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| foreign("no readable step log".into()))?;
    let mut by_name: BTreeMap<String, Vec<f32>> = tensors.into_iter().map(|(n, _, v)| (n, v)).collect();
    let mut take = |name: String, len: usize| -> Result<Vec<f32>> {
        by_name
            .remove(&name)
            .filter(|v| v.len() == len)
            .ok_or_else(|| foreign(format!("{name} is missing or misshapen")))
    };
    let mut values = Vec::with_capacity(params.len());
    let mut moments = Vec::with_capacity(params.len());
    for p in params {
        values.push(take(format!("value.{}", p.name), p.len())?);
        moments.push(Moments {
            m: take(format!("adam_m.{}", p.name), p.len())?,
            v: take(format!("adam_v.{}", p.name), p.len())?,
        });
    }
    Ok(Some(State { adapter: Adapter { layout: layout.clone(), values }, moments, step, log }))
}

/// Trains `initial` on `examples` with `spec` through `model`'s gradients, resuming from `ck` when it holds a
/// checkpoint of this run. `pad` fills short rows (never attended, never counted). `progress` is told of every step
/// with the total step count.
pub fn train(
    model: &mut dyn Model,
    spec: &TrainSpec,
    initial: Adapter,
    examples: &[Example],
    pad: u32,
    ck: &Checkpoints,
    progress: &mut dyn FnMut(&StepLog, u64),
) -> Result<Outcome> {
    spec.validate()?;
    if examples.is_empty() {
        return Err(Error::Invalid(
            "no training example left: the training set is empty after the length filter".into(),
        ));
    }
    let cfg = model.config().clone();
    let params = initial.validate(&cfg)?;
    let (per_epoch, total) = steps(spec, examples.len());
    let warm = warmup_steps(spec.warmup, total);
    let mut state = match load(ck, &initial.layout, &params)? {
        Some(s) => s,
        None => State {
            moments: params.iter().map(|p| Moments::zeros(p.len())).collect(),
            adapter: initial,
            step: 0,
            log: Vec::new(),
        },
    };
    let resumed_at = state.step;
    let (started, mut tokens_run) = (Instant::now(), 0u64);
    let lengths: Vec<usize> = examples.iter().map(|e| e.ids.len()).collect();
    let mut order: Option<(u32, Vec<Vec<usize>>)> = None;
    while state.step < total {
        let epoch = (state.step / per_epoch) as u32;
        if order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            order = Some((epoch, epoch_batches(spec.seed, &lengths, spec.batch, epoch, spec.group_by_length)));
        }
        let batches = &order.as_ref().map(|(_, o)| o).expect("order was just set");
        let chosen: Vec<&Example> = batches[(state.step % per_epoch) as usize].iter().map(|&i| &examples[i]).collect();
        let mut grads: Vec<Vec<f32>> = params.iter().map(|p| vec![0.0; p.len()]).collect();
        let (mut loss_sum, mut count, mut tokens) = (0.0f64, 0.0f64, 0u64);
        for mb in micro_batches(&chosen, spec.micro_batch, pad)? {
            tokens += mb.batch.n_tokens() as u64;
            let g = model.gradient(&state.adapter, &mb)?;
            loss_sum += g.loss_sum;
            count += g.count;
            for (acc, gi) in grads.iter_mut().zip(&g.grads) {
                acc.iter_mut().zip(gi).for_each(|(a, b)| *a += b);
            }
        }
        let step = state.step + 1;
        if !loss_sum.is_finite() || grads.iter().flatten().any(|g| !g.is_finite()) {
            return Err(Error::Diverged { step });
        }
        if count <= 0.0 {
            return Err(Error::Invalid(format!("step {step} has nothing to count the loss over (no target token)")));
        }
        let inv = (1.0 / count) as f32;
        grads.iter_mut().flatten().for_each(|g| *g *= inv);
        let grad_norm = clip_global_norm(&mut grads, spec.clip);
        let factor = linear_schedule(state.step, warm, total);
        for (i, p) in params.iter().enumerate() {
            let lr = if p.role == ParamRole::Head { spec.head_lr } else { spec.lr } * factor;
            spec.adamw.update(&mut state.adapter.values[i], &grads[i], &mut state.moments[i], lr, step);
        }
        state.step = step;
        tokens_run += tokens;
        let entry = StepLog { step, epoch, loss: loss_sum / count, grad_norm, lr: spec.lr * factor, tokens };
        progress(&entry, total);
        state.log.push(entry);
        if step % spec.checkpoint_every == 0 || step == total {
            state.adapter.validate(&cfg)?;
            save(ck, &state, &params)?;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(Outcome {
        adapter: state.adapter,
        log: state.log,
        resumed_at,
        tokens_per_s: if secs > 0.0 { tokens_run as f64 / secs } else { 0.0 },
    })
}

/// The checkpoint path inside a training output directory.
pub fn checkpoint_path(out: &Path) -> PathBuf {
    out.join("checkpoint.safetensors")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_orders_are_seeded_permutations_that_differ_between_epochs() {
        let a = epoch_order(42, 10, 0);
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..10).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(42, 10, 0));
        assert_ne!(a, epoch_order(42, 10, 1));
        assert_ne!(a, epoch_order(43, 10, 0));
    }

    #[test]
    fn grouped_batches_cover_every_example_once_with_less_padding() {
        let lengths: Vec<usize> = (0..100).map(|i| 5 + (i * 37) % 61).collect();
        let padded = |bs: &[Vec<usize>]| -> usize {
            bs.iter().map(|b| b.len() * b.iter().map(|&i| lengths[i]).max().unwrap()).sum()
        };
        for group in [false, true] {
            let bs = epoch_batches(7, &lengths, 4, 1, group);
            assert_eq!(bs.len(), 25);
            assert!(bs.iter().all(|b| b.len() == 4));
            let mut all: Vec<usize> = bs.iter().flatten().copied().collect();
            all.sort();
            assert_eq!(all, (0..100).collect::<Vec<_>>());
            assert_eq!(bs, epoch_batches(7, &lengths, 4, 1, group), "seeded");
            assert_ne!(bs, epoch_batches(7, &lengths, 4, 2, group), "epochs differ");
        }
        let (plain, grouped) = (epoch_batches(7, &lengths, 4, 0, false), epoch_batches(7, &lengths, 4, 0, true));
        assert!(padded(&grouped) < padded(&plain), "{} vs {}", padded(&grouped), padded(&plain));
        // Ungrouped batches are the epoch order cut in pieces.
        assert_eq!(plain.concat(), epoch_order(7, 100, 0));
        // 10 examples in batches of 4: the short batch is the last window's last.
        let short = epoch_batches(1, &lengths[..10], 4, 0, true);
        assert_eq!(short.iter().map(Vec::len).sum::<usize>(), 10);
        assert_eq!(short.len(), 3);
    }

    #[test]
    fn micro_batches_pad_and_place_weights() {
        let e1 = Example { ids: vec![1, 2, 3], target: Target::Weights(vec![0.0, 1.0, 1.0]) };
        let e2 = Example { ids: vec![4, 5], target: Target::Weights(vec![1.0, 1.0]) };
        let mb = micro_batches(&[&e1, &e2], 2, 0).unwrap();
        assert_eq!(mb.len(), 1);
        assert_eq!(mb[0].batch.ids, vec![1, 2, 3, 4, 5, 0]);
        assert_eq!(mb[0].objective, Objective::NextToken { weights: vec![0.0, 1.0, 1.0, 1.0, 1.0, 0.0] });
        let l = Example { ids: vec![7], target: Target::Label(2) };
        assert!(micro_batches(&[&l, &e1], 2, 0).is_err());
        assert_eq!(micro_batches(&[&l, &l, &l], 2, 0).unwrap().len(), 2);
    }
}
