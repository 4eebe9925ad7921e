//! The decoder on Candle: lsn-core's one layer algorithm ([`lsn_core::layer`]) over Candle's ops and fused kernels
//! ([`Pass`]), the embeddings, the final norm and the key/value cache. The same ops serve a whole pass, a cached
//! step and training (whose layers run over a padded batch's real positions alone); in f32 as HF transformers
//! (Gemma's residual stream reaches |x| ≈ 1e5, beyond f16).

use candle_core::{DType, Device, Result, Tensor, Var};
use lsn_core::arch::{Arch, DecoderWeights};
use lsn_core::layer::LayerOps;
use lsn_core::train::TrainOps;
use lsn_core::{Activation, AttentionKind, Edits, LoraTarget, ModelConfig, TapPoint};

use crate::lora::LoraTensors;
use crate::ops::{self, Positions, TapCounter};
use crate::weights::Weights;

/// Keys and values of every layer `[rows, kv_heads, slots, head_dim]`; `None` before the first step.
#[derive(Default)]
pub(crate) struct Cache {
    pub(crate) layers: Vec<Option<(Tensor, Tensor)>>,
}

/// The hooks of one pass: edit the chosen neurons, hand the tapped value to the reducer, add each layer's steering
/// vector to its output.
pub(crate) struct Hook {
    /// Per layer, `keep` and `add` `[intermediate]` of the edited neurons; `None` where none is.
    edits: Vec<Option<(Tensor, Tensor)>>,
    /// Per layer, the vector `[hidden]` added to its output; `None` where none is.
    residual: Vec<Option<Tensor>>,
    pub(crate) taps: Option<TapCounter>,
    point: TapPoint,
    /// With `Outputs::layer_sums`: the flat positions of the real tokens (`None`: all are real) and the sums
    /// `[layers × hidden]` of each layer's output over them, reduced on the host by lsn-core's `add_rows`.
    sums: Option<(Option<Vec<u32>>, Vec<f64>)>,
}

impl Hook {
    /// Also sums each layer's output (`layers × hidden`) over the real tokens `real` (flat positions).
    pub(crate) fn sum_layers(&mut self, real: Option<Vec<u32>>, layers: usize, hidden: usize) {
        self.sums = Some((real, vec![0.0; layers * hidden]));
    }

    /// The layer sums, when asked for.
    pub(crate) fn take_sums(&mut self) -> Option<Vec<f64>> {
        self.sums.take().map(|(_, s)| s)
    }

    fn sum_output(&mut self, l: usize, x: &Tensor) -> Result<()> {
        let Some((real, sums)) = self.sums.as_mut() else { return Ok(()) };
        let h = x.dim(candle_core::D::Minus1)?;
        let data = host(x)?;
        lsn_core::taps::add_rows(&mut sums[l * h..(l + 1) * h], &data, real.as_deref());
        Ok(())
    }

    pub(crate) fn new(
        edits: Option<&Edits>,
        taps: Option<TapCounter>,
        point: TapPoint,
        layers: usize,
        device: &Device,
    ) -> Result<Self> {
        let (mut per_layer, mut residual) = (Vec::with_capacity(layers), Vec::with_capacity(layers));
        for l in 0..layers {
            per_layer.push(match edits.and_then(|e| e.layer(l)) {
                Some((keep, add)) => {
                    Some((Tensor::from_slice(keep, keep.len(), device)?, Tensor::from_slice(add, add.len(), device)?))
                }
                None => None,
            });
            residual.push(match edits.and_then(|e| e.residual(l)) {
                Some(v) => Some(Tensor::from_slice(v, v.len(), device)?),
                None => None,
            });
        }
        Ok(Self { edits: per_layer, residual, taps, point, sums: None })
    }

    fn edit(&self, l: usize, a: Tensor) -> Result<Tensor> {
        match &self.edits[l] {
            Some((keep, add)) => a.broadcast_mul(&keep.to_dtype(a.dtype())?)?.broadcast_add(&add.to_dtype(a.dtype())?),
            None => Ok(a),
        }
    }

    fn steer(&self, l: usize, x: Tensor) -> Result<Tensor> {
        match &self.residual[l] {
            Some(v) => x.broadcast_add(&v.to_dtype(x.dtype())?),
            None => Ok(x),
        }
    }
}

/// A decoder stack from token ids to the final norm.
pub(crate) struct Decoder {
    cfg: ModelConfig,
    pub(crate) arch: Arch,
    /// Every weight, as lsn-core's layer and training step take them.
    pub(crate) w: DecoderWeights<Tensor>,
}

impl Decoder {
    pub(crate) fn load(w: &Weights, cfg: &ModelConfig) -> crate::error::Result<Self> {
        let arch = Arch::of(cfg);
        let plus_one = arch.norm_plus_one;
        let weights = arch.load_decoder(cfg, |n| w.matrix(n), |n| w.norm(n, plus_one))?;
        Ok(Self { cfg: cfg.clone(), w: weights, arch })
    }

    /// Runs `ids` (`[rows·seq]`, u32, row-major) through every layer with the FFN `hook`. With a `cache`, the tokens
    /// follow its slots (the masks in `pos` say what each sees) and their keys and values are appended to it.
    /// Returns the final-normed hidden states of positions `out` (all when `None`), or nothing when `hidden` is
    /// false (the pass then stops after the last tap). `lora` adds an adapter to the linears it targets. An inference
    /// pass: training runs lsn-core's [`train_step`](lsn_core::train::train_step) over a [`Pass`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &self,
        ids: &Tensor,
        rows: usize,
        seq: usize,
        pos: &Positions,
        hook: &mut Hook,
        mut cache: Option<&mut Cache>,
        hidden: bool,
        out: Option<&Tensor>,
        lora: Option<&LoraTensors>,
    ) -> Result<Option<Tensor>> {
        let x = self.embed_ids(ids)?;
        if let Some(cache) = cache.as_deref_mut() {
            cache.layers.resize(self.w.layers.len(), None);
        }
        let mut pass = Pass::new(self, rows, seq, pos, hook, lora);
        pass.cache = cache;
        let Some(mut x) = lsn_core::layer::decoder_layers(&mut pass, &self.cfg, &self.w.layers, x, hidden)? else {
            return Ok(None);
        };
        if let Some(out) = out {
            x = x.index_select(out, 0)?;
        }
        Ok(Some(self.final_norm(&x, false)?))
    }

    /// The embeddings of `ids` in f32 (scaled where the family scales them): the first layer's input.
    fn embed_ids(&self, ids: &Tensor) -> Result<Tensor> {
        let x = self.w.embed.index_select(ids, 0)?.to_dtype(DType::F32)?;
        match self.arch.embed_scale {
            Some(s) => x * f64::from(s),
            None => Ok(x),
        }
    }

    /// The final norm of the last layer's output `x`.
    fn final_norm(&self, x: &Tensor, grad: bool) -> Result<Tensor> {
        norm(x, &self.w.norm, self.cfg.rms_norm_eps, grad)
    }

    /// Keeps rows `keep` of every layer's cached keys and values.
    pub(crate) fn keep_rows(cache: &mut Cache, keep: &[usize]) -> Result<()> {
        let Some(dev) = cache.layers.iter().flatten().next().map(|(k, _)| k.device().clone()) else { return Ok(()) };
        let idx: Vec<u32> = keep.iter().map(|&r| r as u32).collect();
        let idx = Tensor::from_vec(idx, keep.len(), &dev)?;
        for (k, v) in cache.layers.iter_mut().flatten() {
            *k = k.index_select(&idx, 0)?;
            *v = v.index_select(&idx, 0)?;
        }
        Ok(())
    }
}

fn norm(x: &Tensor, w: &Tensor, eps: f64, grad: bool) -> Result<Tensor> {
    if grad { crate::grad_ops::rms_norm(x, w, eps) } else { ops::rms_norm(x, w, eps) }
}

/// One pass's state as lsn-core's [`LayerOps`]: values are `[tokens, width]` — every position of `[rows, seq]`, or
/// with `real` the real positions alone, every linear, norm and the FFN running over those and attention over the
/// padded layout (zeros at padding, which under the causal mask no real query reaches).
pub(crate) struct Pass<'a> {
    dec: &'a Decoder,
    rows: usize,
    seq: usize,
    pos: &'a Positions,
    hook: &'a mut Hook,
    lora: Option<&'a LoraTensors>,
    /// The cache a cached step appends to (a slot per layer).
    pub(crate) cache: Option<&'a mut Cache>,
    /// Differentiable ops only (Candle's fused norm, softmax and RoPE kernels record no backward).
    pub(crate) grad: bool,
    /// The flat indices (u32) of the real positions the pass runs over.
    pub(crate) real: Option<&'a Tensor>,
    /// A training step's gradient of each adapter parameter, summed over its backward passes (set to
    /// [`LoraTensors::zero_grads`] before the step).
    pub(crate) grads: Vec<Vec<f32>>,
}

impl<'a> Pass<'a> {
    pub(crate) fn new(
        dec: &'a Decoder,
        rows: usize,
        seq: usize,
        pos: &'a Positions,
        hook: &'a mut Hook,
        lora: Option<&'a LoraTensors>,
    ) -> Self {
        Self { dec, rows, seq, pos, hook, lora, cache: None, grad: false, real: None, grads: Vec::new() }
    }

    fn upload(&self, idx: &[u32]) -> Result<Tensor> {
        Tensor::from_slice(idx, idx.len(), self.dec.w.embed.device())
    }

    fn adapter(&self) -> Result<&'a LoraTensors> {
        self.lora.ok_or_else(|| candle_core::Error::Msg("a training step without an adapter".into()))
    }

    /// A training adapter: linears take the fused kernels whose backward skips the frozen weights' gradient.
    fn training(&self) -> bool {
        self.lora.is_some_and(LoraTensors::trains)
    }
}

impl LayerOps for Pass<'_> {
    type X = Tensor;
    type W = Tensor;
    type Error = candle_core::Error;

    fn norm(&mut self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        norm(x, w, self.dec.cfg.rms_norm_eps, self.grad)
    }

    fn linear(&mut self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        if self.training() { crate::grad_ops::frozen_linear(x, w) } else { ops::linear(x, w) }
    }

    fn lora(&self, l: usize, target: LoraTarget) -> Option<(Tensor, Tensor)> {
        self.lora.and_then(|a| a.factors(l, target))
    }

    fn lora_linear(&mut self, x: &Tensor, w: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        if self.training() {
            crate::grad_ops::lora_linear(x, w, a, b)
        } else {
            ops::linear(x, w)? + ops::linear(&ops::linear(x, a)?, b)?
        }
    }

    fn bias(&mut self, x: &Tensor, b: &Tensor) -> Result<Tensor> {
        x.broadcast_add(&ops::widen(b, x.dtype())?)
    }

    fn add(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        a + b
    }

    fn mul(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        a * b
    }

    fn split_heads(&mut self, x: Tensor, n_heads: usize) -> Result<Tensor> {
        let (rows, seq, d) = (self.rows, self.seq, self.dec.cfg.head_dim);
        match self.real {
            Some(idx) => crate::grad_ops::scatter_rows(&x, idx, rows * seq)?.reshape((rows, seq, n_heads, d)),
            None => x.reshape((rows, seq, n_heads, d)),
        }
    }

    fn rope(&mut self, x: &Tensor, kind: AttentionKind, query: bool) -> Result<Tensor> {
        let (rope, _) = self.pos.of(kind);
        let x = x.contiguous()?;
        match (query, self.grad) {
            (true, false) => rope.queries(&x),
            (false, false) => rope.keys(&x),
            (true, true) => rope.queries_grad(&x),
            (false, true) => rope.keys_grad(&x),
        }
    }

    fn attend(
        &mut self,
        l: usize,
        kind: AttentionKind,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        softcap: Option<f64>,
    ) -> Result<Tensor> {
        let mut k = k.transpose(1, 2)?.contiguous()?; // [b, kv, t, d]
        let mut v = v.transpose(1, 2)?.contiguous()?;
        if let Some(cache) = self.cache.as_deref_mut() {
            if let Some((pk, pv)) = &cache.layers[l] {
                k = Tensor::cat(&[pk, &k], 2)?;
                v = Tensor::cat(&[pv, &v], 2)?;
            }
            cache.layers[l] = Some((k.clone(), v.clone()));
        }
        let (_, mask) = self.pos.of(kind);
        let att = ops::attention(&q, &k, &v, mask, softcap, self.grad)?;
        match self.real {
            Some(idx) => att.index_select(idx, 0),
            None => Ok(att),
        }
    }

    fn activate(&mut self, x: &Tensor, act: Activation) -> Result<Tensor> {
        ops::activate(x, act)
    }

    fn edit(&mut self, l: usize, a: Tensor) -> Result<Tensor> {
        self.hook.edit(l, a)
    }

    fn steer(&mut self, l: usize, x: Tensor) -> Result<Tensor> {
        self.hook.steer(l, x)
    }

    fn sums_output(&self) -> bool {
        self.hook.sums.is_some()
    }

    fn sum_output(&mut self, l: usize, x: &Tensor) -> Result<()> {
        self.hook.sum_output(l, x)
    }

    fn tap_point(&self) -> Option<TapPoint> {
        self.hook.taps.as_ref().map(|_| self.hook.point)
    }

    fn tap(&mut self, _l: usize, x: &Tensor) -> Result<()> {
        match self.hook.taps.as_mut() {
            Some(t) => t.push(x),
            None => Ok(()),
        }
    }
}

impl TrainOps for Pass<'_> {
    fn fail(&self, message: &str) -> candle_core::Error {
        candle_core::Error::Msg(message.into())
    }

    fn embed(&mut self, ids: &[u32]) -> Result<Tensor> {
        self.dec.embed_ids(&self.upload(ids)?)
    }

    fn record(&mut self, on: bool) -> Result<()> {
        self.grad = on;
        Ok(())
    }

    fn detach(&mut self, x: &Tensor) -> Result<Tensor> {
        Ok(x.detach())
    }

    fn leaf(&mut self, x: &Tensor) -> Result<Tensor> {
        Ok(Var::from_tensor(&x.detach())?.as_tensor().clone())
    }

    fn final_norm(&mut self, x: &Tensor) -> Result<Tensor> {
        self.dec.final_norm(x, self.grad)
    }

    fn scatter_rows(&mut self, x: &Tensor, idx: &[u32], len: usize) -> Result<Tensor> {
        crate::grad_ops::scatter_rows(x, &self.upload(idx)?, len)
    }

    fn gather_rows(&mut self, x: &Tensor, idx: &[u32]) -> Result<Tensor> {
        x.index_select(&self.upload(idx)?, 0)
    }

    fn narrow_rows(&mut self, x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
        x.narrow(0, start, len)
    }

    fn lm_logits(&mut self, h: &Tensor) -> Result<Tensor> {
        ops::softcap(crate::grad_ops::frozen_linear(h, self.dec.w.head())?, self.dec.arch.final_softcap)
    }

    fn class_logits(&mut self, h: &Tensor) -> Result<Tensor> {
        let head = self.adapter()?.head().ok_or_else(|| self.fail("a classification batch without a head"))?;
        ops::linear(h, head)
    }

    fn nll_sum(&mut self, logits: &Tensor, targets: &[u32], weights: Option<&[f32]>) -> Result<Tensor> {
        crate::lora::weighted_nll(logits, targets, weights)
    }

    fn scalar(&mut self, x: &Tensor) -> Result<f64> {
        Ok(f64::from(x.to_scalar::<f32>()?))
    }

    fn backward(&mut self, y: &Tensor, seed: Option<&Tensor>, wrt: &[&Tensor]) -> Result<Vec<Option<Tensor>>> {
        let store = match seed {
            Some(g) => y.mul(&g.detach())?.sum_all()?.backward()?,
            None => y.backward()?,
        };
        self.adapter()?.add_grads(&store, &mut self.grads)?;
        Ok(wrt.iter().map(|x| store.get(x).map(Tensor::detach)).collect())
    }
}

/// f32 host copy of a tensor, flattened.
pub(crate) fn host(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}
