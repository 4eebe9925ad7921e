//! LoRA on libtorch: an adapter's host values as the factors lsn-core's layer adds to each adapted linear
//! (`x·Wᵀ + (x·Aᵀ)·(s·B ⊙ M)ᵀ`, the base weight untouched), autograd leaves when training, whose gradients
//! lsn-core's training step accumulates.

use lsn_core::{Adapter, LoraTarget, ModelConfig};
use tch::{Device, TchError, Tensor};

use crate::ops;

type Result<T> = std::result::Result<T, TchError>;

/// An adapter on the device. `leaves` are the parameters in `LoraLayout::params` order (autograd leaves when
/// training); `mods[layer][target]` the factors lsn-core's layer applies (B already masked and scaled).
pub(crate) struct LoraTensors {
    pub(crate) leaves: Vec<Tensor>,
    mods: Vec<[Option<(Tensor, Tensor)>; 7]>,
    pub(crate) head: Option<Tensor>,
}

fn slot(t: LoraTarget) -> usize {
    LoraTarget::ALL.iter().position(|&x| x == t).unwrap_or(0)
}

impl LoraTensors {
    /// Uploads `adapter` (validated by the caller) to `device`; `train` makes every parameter an autograd leaf.
    pub(crate) fn new(adapter: &Adapter, cfg: &ModelConfig, device: Device, train: bool) -> Result<Self> {
        let layout = &adapter.layout;
        let params = layout.params(cfg);
        let mut leaves = Vec::with_capacity(params.len());
        for (p, v) in params.iter().zip(&adapter.values) {
            let shape: Vec<i64> = p.shape.iter().map(|&d| d as i64).collect();
            let t = Tensor::f_from_slice(v)?.f_reshape(&shape)?.f_to_device(device)?;
            leaves.push(if train { t.set_requires_grad(true) } else { t });
        }
        let mut mods: Vec<[Option<(Tensor, Tensor)>; 7]> = (0..cfg.num_layers).map(|_| Default::default()).collect();
        let scale = layout.scale();
        for m in layout.modules(cfg) {
            // `s·(B ⊙ M)` once per adapter: the layer's product then makes no output-sized scaled copy.
            let b = match (m.target, layout.gate_rows_of(m.layer, cfg.intermediate_size)) {
                (LoraTarget::GateProj, Some(rows)) => {
                    let mask: Vec<f32> = rows.iter().map(|&r| if r { scale } else { 0.0 }).collect();
                    leaves[m.b].f_mul(&Tensor::f_from_slice(&mask)?.f_reshape([-1, 1])?.f_to_device(device)?)?
                }
                _ => leaves[m.b].f_mul_scalar(f64::from(scale))?,
            };
            mods[m.layer][slot(m.target)] = Some((leaves[m.a].shallow_clone(), b));
        }
        let head = layout.head_index(cfg).map(|i| leaves[i].shallow_clone());
        Ok(Self { leaves, mods, head })
    }

    /// The factors `(A, s·(B ⊙ M))` on `target` of `layer`, where the adapter has them.
    pub(crate) fn factors(&self, layer: usize, target: LoraTarget) -> Option<(Tensor, Tensor)> {
        self.mods[layer][slot(target)].as_ref().map(|(a, b)| (a.shallow_clone(), b.shallow_clone()))
    }

    /// The gradient of each leaf after `backward` (zeros where none reached it), as host vectors.
    pub(crate) fn grads(&self) -> Result<Vec<Vec<f32>>> {
        self.leaves
            .iter()
            .map(|t| {
                let g = t.grad();
                if g.defined() { ops::to_vec::<f32>(&g) } else { Ok(vec![0.0; t.numel()]) }
            })
            .collect()
    }
}
