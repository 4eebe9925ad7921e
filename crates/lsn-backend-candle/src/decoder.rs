//! The decoder of both families on Candle, one layer loop reading lsn-core's [`Arch`]: Llama (RMSNorm `w·x`, RoPE
//! with optional scaling, GQA, SwiGLU) and Gemma 3 (embeddings × √hidden, `(1 + w)` norms, q/k norms before RoPE,
//! sandwich norms around attention and FFN, sliding-window layers with their own RoPE base, GeGLU). The same loop
//! serves a whole pass and a cached step; it mirrors HF transformers in f32 (Gemma's residual stream reaches
//! |x| ≈ 1e5, beyond f16).

use candle_core::{DType, Device, Result, Tensor};
use lsn_core::arch::{self, Arch, LayerWeights};
use lsn_core::{LoraTarget, ModelConfig, Overwrite, TapPoint};

use crate::lora::LoraTensors;
use crate::ops::{self, Positions, TapCounter};
use crate::weights::Weights;

type Layer = LayerWeights<Tensor>;

/// Keys and values of every layer `[rows, kv_heads, slots, head_dim]`; `None` before the first step.
#[derive(Default)]
pub(crate) struct Cache {
    pub(crate) layers: Vec<Option<(Tensor, Tensor)>>,
}

/// The FFN hook of one pass: overwrite the chosen neurons, then hand the tapped value to the reducer.
pub(crate) struct Hook {
    /// Per layer, the mask (u8) and values `[intermediate]` of the overwritten neurons; `None` where none is.
    overwrite: Vec<Option<(Tensor, Tensor)>>,
    pub(crate) taps: Option<TapCounter>,
    point: TapPoint,
}

impl Hook {
    pub(crate) fn new(
        overwrite: Option<&Overwrite>,
        taps: Option<TapCounter>,
        point: TapPoint,
        layers: usize,
        device: &Device,
    ) -> Result<Self> {
        let mut per_layer = Vec::with_capacity(layers);
        for l in 0..layers {
            per_layer.push(match overwrite.and_then(|o| o.layer(l)) {
                Some((mask, value)) => {
                    let m: Vec<u8> = mask.iter().map(|&b| u8::from(b)).collect();
                    Some((Tensor::from_vec(m, mask.len(), device)?, Tensor::from_slice(value, value.len(), device)?))
                }
                None => None,
            });
        }
        Ok(Self { overwrite: per_layer, taps, point })
    }

    /// `act_fn(gate)` of layer `l` after the overwrite; taps read it (or `gate`, at `TapPoint::GatePre`).
    fn apply(&mut self, l: usize, gate: &Tensor, a: Tensor) -> Result<Tensor> {
        let a = match &self.overwrite[l] {
            Some((mask, value)) => {
                let shape = a.shape().clone();
                mask.broadcast_as(&shape)?.where_cond(&value.broadcast_as(&shape)?, &a)?
            }
            None => a,
        };
        if let Some(t) = self.taps.as_mut() {
            t.push(match self.point {
                TapPoint::Act => &a,
                TapPoint::GatePre => gate,
            })?;
        }
        Ok(a)
    }
}

/// A decoder stack from token ids to the final norm.
pub(crate) struct Decoder {
    cfg: ModelConfig,
    pub(crate) arch: Arch,
    pub(crate) embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
}

impl Decoder {
    pub(crate) fn load(w: &Weights, cfg: &ModelConfig) -> crate::error::Result<Self> {
        let arch = Arch::of(cfg);
        let plus_one = arch.norm_plus_one;
        let norm = |n: &str| w.norm(n, plus_one);
        let layers = (0..cfg.num_layers)
            .map(|l| arch.load_layer(cfg, l, |n| w.matrix(n), norm))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Self { cfg: cfg.clone(), embed: w.matrix(arch::EMBED)?, layers, norm: norm(arch::FINAL_NORM)?, arch })
    }

    /// Runs `ids` (`[rows·seq]`, u32, row-major) through every layer with the FFN `hook`. With a `cache`, the tokens
    /// follow its slots (the masks in `pos` say what each sees) and their keys and values are appended to it.
    /// Returns the final-normed hidden states of positions `out` (all when `None`), or nothing when `hidden` is
    /// false (the pass then stops after the last tap). `lora` adds an adapter to the linears it targets. An inference
    /// pass: training runs [`Decoder::layer`] itself.
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
        let mut x = self.embed_ids(ids)?;
        if let Some(cache) = cache.as_deref_mut() {
            cache.layers.resize(self.layers.len(), None);
        }
        let last = self.layers.len() - 1;
        for l in 0..self.layers.len() {
            let stop = l == last && !hidden;
            match self.layer(l, &x, rows, seq, pos, hook, cache.as_deref_mut(), stop, lora, false, None)? {
                Some(y) => x = y,
                None => return Ok(None),
            }
        }
        if let Some(out) = out {
            x = x.index_select(out, 0)?;
        }
        Ok(Some(self.final_norm(&x, false)?))
    }

    /// The number of layers.
    pub(crate) fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// The embeddings of `ids` in f32 (scaled where the family scales them): the first layer's input.
    pub(crate) fn embed_ids(&self, ids: &Tensor) -> Result<Tensor> {
        let x = self.embed.index_select(ids, 0)?.to_dtype(DType::F32)?;
        match self.arch.embed_scale {
            Some(s) => x * f64::from(s),
            None => Ok(x),
        }
    }

    /// The final norm of the last layer's output `x`.
    pub(crate) fn final_norm(&self, x: &Tensor, grad: bool) -> Result<Tensor> {
        self.norm_op(x, &self.norm, grad)
    }

    fn norm_op(&self, x: &Tensor, w: &Tensor, grad: bool) -> Result<Tensor> {
        let eps = self.cfg.rms_norm_eps;
        if grad { crate::grad_ops::rms_norm(x, w, eps) } else { ops::rms_norm(x, w, eps) }
    }

    /// Layer `l` on its input `x` (`[rows·seq, hidden]`, or `[n, hidden]`: the real positions `real` of a
    /// right-padded batch, u32 flat indices): the next layer's input, or nothing when `stop` (the pass ends after this
    /// layer's tap). With `real`, every linear, norm and the FFN run over the real positions alone and attention over
    /// the padded layout (zeros at padding, which under the causal mask no real query reaches). `grad` builds it from
    /// differentiable ops only (Candle's fused norm, softmax and RoPE kernels record no backward); the other arguments
    /// as in [`Decoder::forward`], whose cache has a slot per layer.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn layer(
        &self,
        l: usize,
        x: &Tensor,
        rows: usize,
        seq: usize,
        pos: &Positions,
        hook: &mut Hook,
        cache: Option<&mut Cache>,
        stop: bool,
        lora: Option<&LoraTensors>,
        grad: bool,
        real: Option<&Tensor>,
    ) -> Result<Option<Tensor>> {
        let c = &self.cfg;
        let (heads, kv, d) = (c.num_heads, c.num_kv_heads, c.head_dim);
        let layer = &self.layers[l];
        let norm = |x: &Tensor, w: &Tensor| self.norm_op(x, w, grad);
        let lin = |t: LoraTarget, x: &Tensor, w: &Tensor| LoraTensors::linear(lora, l, t, x, w);
        // Into attention's padded layout.
        let padded = |t: Tensor, n_heads: usize| match real {
            Some(idx) => crate::grad_ops::scatter_rows(&t, idx, rows * seq)?.reshape((rows, seq, n_heads, d)),
            None => t.reshape((rows, seq, n_heads, d)),
        };
        let (rope, mask) = pos.of(layer.kind);
        let h = norm(x, &layer.input_norm)?;
        let mut q = padded(lin(LoraTarget::QProj, &h, &layer.q)?, heads)?;
        let mut k = padded(lin(LoraTarget::KProj, &h, &layer.k)?, kv)?;
        let v = padded(lin(LoraTarget::VProj, &h, &layer.v)?, kv)?;
        if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
            q = norm(&q, qn)?;
            k = norm(&k, kn)?;
        }
        let q = if grad { rope.queries_grad(&q.contiguous()?)? } else { rope.queries(&q.contiguous()?)? };
        let k = if grad { rope.keys_grad(&k.contiguous()?)? } else { rope.keys(&k.contiguous()?)? };
        let mut k = k.transpose(1, 2)?.contiguous()?; // [b, kv, t, d]
        let mut v = v.transpose(1, 2)?.contiguous()?;
        if let Some(cache) = cache {
            if let Some((pk, pv)) = &cache.layers[l] {
                k = Tensor::cat(&[pk, &k], 2)?;
                v = Tensor::cat(&[pv, &v], 2)?;
            }
            cache.layers[l] = Some((k.clone(), v.clone()));
        }
        // `attn_logit_softcapping` is not applied: transformers' Gemma3Attention does not pass it on either.
        let att = ops::attention(&q, &k, &v, mask, grad)?;
        let att = match real {
            Some(idx) => att.index_select(idx, 0)?,
            None => att,
        };
        let mut att = lin(LoraTarget::OProj, &att, &layer.o)?;
        if let Some(n) = &layer.post_attn_norm {
            att = norm(&att, n)?;
        }
        let x = (x + att)?;

        let h = norm(&x, &layer.pre_ffn_norm)?;
        let gate = lin(LoraTarget::GateProj, &h, &layer.gate)?;
        let a = ops::activate(&gate, c.activation)?;
        let a = hook.apply(l, &gate, a)?;
        if stop {
            // Only the taps are wanted: the last FFN's output and the final norm feed nothing else.
            return Ok(None);
        }
        let mut f = lin(LoraTarget::DownProj, &(a * lin(LoraTarget::UpProj, &h, &layer.up)?)?, &layer.down)?;
        if let Some(n) = &layer.post_ffn_norm {
            f = norm(&f, n)?;
        }
        Ok(Some((x + f)?))
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

/// f32 host copy of a tensor, flattened.
pub(crate) fn host(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}
