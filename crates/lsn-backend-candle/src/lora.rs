//! LoRA on Candle: an adapter's host values as the factors lsn-core's layer adds to each adapted linear
//! (`x·Wᵀ + (x·Aᵀ)·(s·B ⊙ M)ᵀ`, the base weight untouched), Candle variables when training, whose gradients each
//! backward of lsn-core's training step adds up; and the weighted NLL its losses take.

use candle_core::backprop::GradStore;
use candle_core::{D, Device, Result, Tensor, Var};
use lsn_core::{Adapter, LoraTarget, ModelConfig};

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

    /// The factors `(A, s·(B ⊙ M))` on `target` of `layer`, where the adapter has them.
    pub(crate) fn factors(&self, layer: usize, target: LoraTarget) -> Option<(Tensor, Tensor)> {
        self.mods[layer][slot(target)].clone()
    }

    /// The classification head's weight, when the adapter has one.
    pub(crate) fn head(&self) -> Option<&Tensor> {
        self.head.as_ref()
    }

    /// Whether the parameters are variables (a training step).
    pub(crate) fn trains(&self) -> bool {
        self.train
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
pub(crate) fn weighted_nll(logits: &Tensor, targets: &[u32], weights: Option<&[f32]>) -> Result<Tensor> {
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
