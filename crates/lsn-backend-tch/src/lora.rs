//! LoRA on libtorch: an adapter's host values as tensors the layer loop adds to each adapted linear
//! (`x·Wᵀ + s·(x·Aᵀ)·(B ⊙ M)ᵀ`, the base weight untouched), and the gradient of one training batch through autograd —
//! the head's cross-entropy at the last real token, or the next-token loss with the LM head run in chunks whose
//! graphs are freed one by one (the hidden states' gradient is gathered first, then sent through the body).

use lsn_core::{Adapter, LoraTarget, ModelConfig, Objective, TrainBatch};
use tch::{Device, Kind, Reduction, TchError, Tensor};

use crate::ops;

type Result<T> = std::result::Result<T, TchError>;

/// Positions of the LM head per chunk of the next-token loss: bounds the logits (and their gradient) held at once.
const HEAD_CHUNK: usize = 256;

/// An adapter on the device. `leaves` are the parameters in `LoraLayout::params` order (autograd leaves when
/// training); `mods[layer][target]` the factors the layer loop applies (B already masked).
pub(crate) struct LoraTensors {
    pub(crate) leaves: Vec<Tensor>,
    mods: Vec<[Option<(Tensor, Tensor)>; 7]>,
    scale: f64,
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
        for m in layout.modules(cfg) {
            let b = match (m.target, layout.gate_rows_of(m.layer, cfg.intermediate_size)) {
                (LoraTarget::GateProj, Some(rows)) => {
                    let mask: Vec<f32> = rows.iter().map(|&r| if r { 1.0 } else { 0.0 }).collect();
                    leaves[m.b].f_mul(&Tensor::f_from_slice(&mask)?.f_reshape([-1, 1])?.f_to_device(device)?)?
                }
                _ => leaves[m.b].shallow_clone(),
            };
            mods[m.layer][slot(m.target)] = Some((leaves[m.a].shallow_clone(), b));
        }
        let head = layout.head_index(cfg).map(|i| leaves[i].shallow_clone());
        Ok(Self { leaves, mods, scale: f64::from(layout.scale()), head })
    }

    /// `x·Wᵀ`, plus the adapter's `s·(x·Aᵀ)·Bᵀ` where `target` of `layer` carries one.
    pub(crate) fn linear(
        lora: Option<&LoraTensors>,
        layer: usize,
        target: LoraTarget,
        x: &Tensor,
        w: &Tensor,
    ) -> Result<Tensor> {
        let y = ops::linear(x, w)?;
        match lora.and_then(|l| l.mods[layer][slot(target)].as_ref().map(|m| (m, l.scale))) {
            Some(((a, b), s)) => y.f_add(&ops::linear(&ops::linear(x, a)?, b)?.f_mul_scalar(s)?),
            None => Ok(y),
        }
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

/// The summed loss of `tb` given the final-normed hidden states `hidden` `[rows · seq, d]` (with their graph), and
/// `backward` run on it. `lm_head` is the LM head weight (for next-token objectives), `softcap` its soft-cap.
/// Returns `(loss sum, count)`.
pub(crate) fn loss_backward(
    tb: &TrainBatch,
    hidden: &Tensor,
    lora: &LoraTensors,
    lm_head: &Tensor,
    softcap: Option<f64>,
) -> Result<(f64, f64)> {
    let device = hidden.device();
    let b = &tb.batch;
    match &tb.objective {
        Objective::Classify { labels } => {
            let head =
                lora.head.as_ref().ok_or_else(|| TchError::Kind("a classification batch without a head".into()))?;
            let last: Vec<i64> = (0..b.rows).map(|r| (r * b.seq_len + b.lengths[r] - 1) as i64).collect();
            let h = hidden.f_index_select(0, &Tensor::f_from_slice(&last)?.f_to_device(device)?)?;
            let logits = ops::linear(&h, head)?;
            let y: Vec<i64> = labels.iter().map(|&l| i64::from(l)).collect();
            let y = Tensor::f_from_slice(&y)?.f_to_device(device)?;
            let loss = logits.f_cross_entropy_loss::<Tensor>(&y, None, Reduction::Sum, -100, 0.0)?;
            loss.f_backward()?;
            Ok((loss.f_double_value(&[])?, b.rows as f64))
        }
        Objective::NextToken { .. } => {
            let terms = tb.next_token_terms();
            if terms.is_empty() {
                return Ok((0.0, 0.0));
            }
            let pos: Vec<i64> = terms.iter().map(|t| i64::from(t.0)).collect();
            let h = hidden.f_index_select(0, &Tensor::f_from_slice(&pos)?.f_to_device(device)?)?;
            // The head's graph per chunk is freed after its backward; the hidden states' gradient gathers in `hd`.
            let hd = h.f_detach()?.set_requires_grad(true);
            let mut loss_sum = 0.0;
            for (c, chunk) in terms.chunks(HEAD_CHUNK).enumerate() {
                let start = (c * HEAD_CHUNK) as i64;
                let x = hd.f_narrow(0, start, chunk.len() as i64)?;
                let logits = ops::softcap(ops::linear(&x, lm_head)?, softcap)?;
                let tgt: Vec<i64> = chunk.iter().map(|t| i64::from(t.1)).collect();
                let w: Vec<f32> = chunk.iter().map(|t| t.2).collect();
                let tgt = Tensor::f_from_slice(&tgt)?.f_to_device(device)?;
                let w = Tensor::f_from_slice(&w)?.f_to_device(device)?;
                let nll = logits.f_cross_entropy_loss::<Tensor>(&tgt, None, Reduction::None, -100, 0.0)?;
                let loss = nll.f_mul(&w)?.f_sum(Kind::Float)?;
                loss.f_backward()?;
                loss_sum += loss.f_double_value(&[])?;
            }
            h.f_mul(&hd.grad())?.f_sum(Kind::Float)?.f_backward()?;
            Ok((loss_sum, terms.iter().map(|t| f64::from(t.2)).sum()))
        }
    }
}
