//! LoRA on Candle: an adapter's host values as tensors the layer loop adds to each adapted linear
//! (`x·Wᵀ + s·(x·Aᵀ)·(B ⊙ M)ᵀ`, the base weight untouched), and the gradient of one training batch through Candle's
//! autograd — the head's cross-entropy at the last real token, or the next-token loss with the LM head run in chunks
//! whose graphs are dropped one by one (the hidden states' gradient is gathered first); the model then sends it back
//! through the body's graphed top layers, then through the others one recomputed layer at a time.

use candle_core::backprop::GradStore;
use candle_core::{D, Device, Result, Tensor, Var};
use lsn_core::{Adapter, LoraTarget, ModelConfig, Objective, TrainBatch};

use crate::{grad_ops, ops};

/// Positions of the LM head per chunk of the next-token loss: bounds the logits (and their gradient) held at once.
const HEAD_CHUNK: usize = 128;

/// An adapter on the device: `leaves` in `LoraLayout::params` order (Candle variables when training), `mods[layer]
/// [target]` the factors the layer loop applies (B already masked and scaled).
pub(crate) struct LoraTensors {
    leaves: Vec<Tensor>,
    mods: Vec<[Option<(Tensor, Tensor)>; 7]>,
    head: Option<Tensor>,
    /// Training: frozen weights take [`grad_ops::frozen_linear`], whose backward skips their own gradient.
    train: bool,
}

fn slot(t: LoraTarget) -> usize {
    LoraTarget::ALL.iter().position(|&x| x == t).unwrap_or(0)
}

impl LoraTensors {
    /// Uploads `adapter` (validated by the caller) to `device`; `train` makes every parameter a variable.
    pub(crate) fn new(adapter: &Adapter, cfg: &ModelConfig, device: &Device, train: bool) -> Result<Self> {
        let layout = &adapter.layout;
        let params = layout.params(cfg);
        let mut leaves = Vec::with_capacity(params.len());
        for (p, v) in params.iter().zip(&adapter.values) {
            let t = Tensor::from_slice(v, p.shape.as_slice(), device)?;
            leaves.push(if train { Var::from_tensor(&t)?.as_tensor().clone() } else { t });
        }
        let mut mods: Vec<[Option<(Tensor, Tensor)>; 7]> = (0..cfg.num_layers).map(|_| Default::default()).collect();
        let scale = f64::from(layout.scale());
        for m in layout.modules(cfg) {
            // `s·(B ⊙ M)` once per adapter: the layer loop's product then makes no output-sized scaled copy (which a
            // training graph would hold until its backward).
            let b = match (m.target, layout.gate_rows_of(m.layer, cfg.intermediate_size)) {
                (LoraTarget::GateProj, Some(rows)) => {
                    let mask: Vec<f32> = rows.iter().map(|&r| if r { scale as f32 } else { 0.0 }).collect();
                    leaves[m.b].broadcast_mul(&Tensor::from_vec(mask, (rows.len(), 1), device)?)?
                }
                _ => (&leaves[m.b] * scale)?,
            };
            mods[m.layer][slot(m.target)] = Some((leaves[m.a].clone(), b));
        }
        let head = layout.head_index(cfg).map(|i| leaves[i].clone());
        Ok(Self { leaves, mods, head, train })
    }

    /// `x·Wᵀ`, plus the adapter's `s·(x·Aᵀ)·Bᵀ` where `target` of `layer` carries one.
    pub(crate) fn linear(
        lora: Option<&LoraTensors>,
        layer: usize,
        target: LoraTarget,
        x: &Tensor,
        w: &Tensor,
    ) -> Result<Tensor> {
        let train = lora.is_some_and(|l| l.train);
        match (lora.and_then(|l| l.mods[layer][slot(target)].as_ref()), train) {
            (Some((a, b)), true) => grad_ops::lora_linear(x, w, a, b),
            (Some((a, b)), false) => ops::linear(x, w)? + ops::linear(&ops::linear(x, a)?, b)?,
            (None, true) => grad_ops::frozen_linear(x, w),
            (None, false) => ops::linear(x, w),
        }
    }

    /// A zero gradient per leaf, as host vectors.
    pub(crate) fn zero_grads(&self) -> Vec<Vec<f32>> {
        self.leaves.iter().map(|t| vec![0.0; t.elem_count()]).collect()
    }

    /// Adds each leaf's gradient in `store` (where one reached it) to `acc` ([`LoraTensors::zero_grads`]' shape).
    pub(crate) fn add_grads(&self, store: &GradStore, acc: &mut [Vec<f32>]) -> Result<()> {
        for (t, acc) in self.leaves.iter().zip(acc) {
            if let Some(g) = store.get(t) {
                for (a, g) in acc.iter_mut().zip(crate::decoder::host(g)?) {
                    *a += g;
                }
            }
        }
        Ok(())
    }
}

/// `−Σ w·log softmax(logits)[target]` over rows of `logits` `[n, classes]`.
fn weighted_nll(logits: &Tensor, targets: &[u32], weights: Option<&[f32]>) -> Result<Tensor> {
    let dev = logits.device();
    let lsm = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let t = Tensor::from_slice(targets, (targets.len(), 1), dev)?;
    let picked = lsm.gather(&t, D::Minus1)?.squeeze(1)?;
    let picked = match weights {
        Some(w) => picked.mul(&Tensor::from_slice(w, w.len(), dev)?)?,
        None => picked,
    };
    picked.sum_all()?.neg()
}

/// The summed loss of `tb` given the final-normed hidden states `hidden` `[rows · seq, d]` (with their graph),
/// `(loss sum, count, the store of its backward through hidden's graph)`; no store when no position carries a loss.
/// `lora` holds the classification head, `lm_head` is the LM head weight, `softcap` its soft-cap.
pub(crate) fn loss_and_backward(
    tb: &TrainBatch,
    hidden: &Tensor,
    lora: &LoraTensors,
    lm_head: &Tensor,
    softcap: Option<f64>,
) -> Result<(f64, f64, Option<GradStore>)> {
    let dev = hidden.device();
    let b = &tb.batch;
    match &tb.objective {
        Objective::Classify { labels } => {
            let head = lora
                .head
                .as_ref()
                .ok_or_else(|| candle_core::Error::Msg("a classification batch without a head".into()))?;
            let last: Vec<u32> = (0..b.rows).map(|r| (r * b.seq_len + b.lengths[r] - 1) as u32).collect();
            let h = hidden.index_select(&Tensor::from_slice(&last, last.len(), dev)?, 0)?;
            let loss = weighted_nll(&ops::linear(&h, head)?, labels, None)?;
            let store = loss.backward()?;
            Ok((f64::from(loss.to_scalar::<f32>()?), b.rows as f64, Some(store)))
        }
        Objective::NextToken { .. } => {
            let terms = tb.next_token_terms();
            if terms.is_empty() {
                return Ok((0.0, 0.0, None));
            }
            let pos: Vec<u32> = terms.iter().map(|t| t.0).collect();
            let h = hidden.index_select(&Tensor::from_slice(&pos, pos.len(), dev)?, 0)?;
            // The head's graph per chunk is dropped after its backward; the hidden states' gradient gathers here.
            let hd = Var::from_tensor(&h.detach())?;
            let (mut loss_sum, mut gh): (f64, Option<Tensor>) = (0.0, None);
            for (c, chunk) in terms.chunks(HEAD_CHUNK).enumerate() {
                let x = hd.as_tensor().narrow(0, c * HEAD_CHUNK, chunk.len())?;
                let logits = ops::softcap(grad_ops::frozen_linear(&x, lm_head)?, softcap)?;
                let tgt: Vec<u32> = chunk.iter().map(|t| t.1).collect();
                let w: Vec<f32> = chunk.iter().map(|t| t.2).collect();
                let loss = weighted_nll(&logits, &tgt, Some(&w))?;
                loss_sum += f64::from(loss.to_scalar::<f32>()?);
                let store = loss.backward()?;
                if let Some(g) = store.get(hd.as_tensor()) {
                    gh = Some(match gh {
                        Some(acc) => (acc + g)?,
                        None => g.clone(),
                    });
                }
            }
            let gh = gh.ok_or_else(|| candle_core::Error::Msg("no gradient reached the hidden states".into()))?;
            let store = h.mul(&gh.detach())?.sum_all()?.backward()?;
            Ok((loss_sum, terms.iter().map(|t| f64::from(t.2)).sum(), Some(store)))
        }
    }
}
