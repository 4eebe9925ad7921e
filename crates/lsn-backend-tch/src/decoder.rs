//! The two decoder families on libtorch, one layer loop reading lsn-core's [`Arch`]: Llama (RMSNorm `w·x`, RoPE with
//! optional scaling, GQA, SwiGLU) and Gemma 3 (embeddings × √hidden, `(1 + w)` norms, q/k norms before RoPE, sandwich
//! norms around attention and FFN, sliding-window layers with their own RoPE base, GeGLU). The same loop serves a
//! whole pass and a cached step; it mirrors HF transformers in f32.

use lsn_core::arch::{self, Arch, LayerWeights};
use lsn_core::{LoraTarget, ModelConfig, Overwrite, TapPoint};
use tch::{Device, Kind, TchError, Tensor};

use crate::error::Result;
use crate::lora::LoraTensors;
use crate::ops::{self, Positions};
use crate::taps::DeviceTaps;
use crate::weights::Weights;

type Layer = LayerWeights<Tensor>;

/// What [`Decoder::train_forward`] kept for the backward through the layers it ran without a graph.
pub(crate) struct Recomputed {
    /// The input of each such layer, in order.
    inputs: Vec<Tensor>,
    /// The first graphed layer's input, an autograd leaf (when any layer is recomputed).
    leaf: Tensor,
    /// The real positions the layers ran over, when the batch is padded.
    unpadded: Option<Unpadded>,
}

/// A right-padded batch `[rows, seq]` run over its `n` real positions only: every linear, norm and the FFN see
/// `[n, width]`; attention alone sees the padded `[rows, seq, …]` layout (pad rows zero; a real query never reaches
/// a pad key under the causal mask, since padding only follows real tokens).
pub(crate) struct Unpadded {
    /// Flat indices `r·seq + t` of the real positions (i64 `[n]`).
    idx: Tensor,
    rows: i64,
    seq: i64,
}

impl Unpadded {
    /// `None` when every position of `batch` is real.
    pub(crate) fn of(batch: &lsn_core::TokenBatch, device: Device) -> std::result::Result<Option<Self>, TchError> {
        let Some(real) = batch.real_positions() else { return Ok(None) };
        let idx: Vec<i64> = real.iter().map(|&i| i64::from(i)).collect();
        let idx = Tensor::f_from_slice(&idx)?.f_to_device(device)?;
        Ok(Some(Self { idx, rows: batch.rows as i64, seq: batch.seq_len as i64 }))
    }

    /// Real rows `[n, w]` → the padded layout `[rows · seq, w]` (zeros at padding; the gradient flows back to `t`).
    fn pad(&self, t: &Tensor) -> std::result::Result<Tensor, TchError> {
        let w = t.size()[1];
        Tensor::f_zeros([self.rows * self.seq, w], (t.kind(), t.device()))?.f_index_copy(0, &self.idx, t)
    }
}

/// A decoder stack from token ids to the final norm.
pub(crate) struct Decoder {
    cfg: ModelConfig,
    pub(crate) arch: Arch,
    pub(crate) embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    positions: Option<Positions>,
}

/// Keys and values of every layer `[rows, kv_heads, slots, head_dim]`; `None` before the first step.
#[derive(Default)]
pub(crate) struct Cache {
    pub(crate) layers: Vec<Option<(Tensor, Tensor)>>,
}

/// The FFN hook of one pass: overwrite the chosen neurons, then hand the tapped value to the device reducer.
pub(crate) struct Hook<'t> {
    /// Per layer, the mask (bool) and values `[intermediate]` of the overwritten neurons; `None` where none is.
    overwrite: Vec<Option<(Tensor, Tensor)>>,
    taps: Option<&'t mut DeviceTaps>,
    point: TapPoint,
}

impl<'t> Hook<'t> {
    pub(crate) fn new(
        overwrite: Option<&Overwrite>,
        taps: Option<&'t mut DeviceTaps>,
        point: TapPoint,
        layers: usize,
        device: Device,
    ) -> std::result::Result<Self, TchError> {
        let mut per_layer = Vec::with_capacity(layers);
        for l in 0..layers {
            per_layer.push(match overwrite.and_then(|o| o.layer(l)) {
                Some((mask, value)) => Some((
                    Tensor::f_from_slice(mask)?.f_to_kind(Kind::Bool)?.f_to_device(device)?,
                    Tensor::f_from_slice(value)?.f_to_device(device)?,
                )),
                None => None,
            });
        }
        Ok(Self { overwrite: per_layer, taps, point })
    }

    /// `act_fn(gate)` of layer `l` after the overwrite; taps read it (or `gate`, at `TapPoint::GatePre`).
    fn apply(&mut self, l: usize, gate: &Tensor, a: Tensor) -> std::result::Result<Tensor, TchError> {
        let a = match &self.overwrite[l] {
            Some((mask, value)) => value.f_where_self(mask, &a)?,
            None => a,
        };
        if let Some(t) = self.taps.as_deref_mut() {
            let tapped = match self.point {
                TapPoint::Act => &a,
                TapPoint::GatePre => gate,
            };
            let width = *tapped.size().last().unwrap_or(&0);
            t.push(&tapped.f_reshape([-1, width])?)?;
        }
        Ok(a)
    }
}

impl Decoder {
    pub(crate) fn load(w: &Weights, cfg: &ModelConfig) -> Result<Self> {
        let arch = Arch::of(cfg);
        let plus_one = arch.norm_plus_one;
        let norm = |n: &str| w.norm(n, plus_one);
        let layers = (0..cfg.num_layers)
            .map(|l| arch.load_layer(cfg, l, |n| w.matrix(n), norm))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            embed: w.matrix(arch::EMBED)?,
            layers,
            norm: norm(arch::FINAL_NORM)?,
            positions: None,
            arch,
        })
    }

    /// Runs `ids` (`[rows, seq]`, i64) through every layer with the FFN `hook`, with the RoPE tables and masks of a
    /// whole pass (`step == None`) or of a cached step (its keys and values appended to `cache`). Returns the
    /// final-normed hidden states `[n, hidden]` of the flat positions `out` (all when `None`), or nothing when
    /// `hidden` is false (the pass then stops after the last tap). `lora` adds an adapter to the linears it targets.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &mut self,
        ids: &Tensor,
        step: Option<(&Positions, &mut Cache)>,
        hook: &mut Hook<'_>,
        hidden: bool,
        out: Option<&Tensor>,
        lora: Option<&LoraTensors>,
    ) -> std::result::Result<Option<Tensor>, TchError> {
        let (rows, seq) = ids.size2()?;
        let device = ids.device();
        let mut x = self.embed_ids(ids)?;
        let (pos, mut cache) = match step {
            Some((pos, cache)) => {
                cache.layers.resize_with(self.layers.len(), || None);
                (pos, Some(cache))
            }
            None => (Positions::for_len(&mut self.positions, &self.cfg, seq as usize, device)?, None),
        };
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let stop = l == last && !hidden;
            match run_layer(&self.cfg, layer, l, &x, pos, cache.as_deref_mut(), hook, lora, stop, None)? {
                Some(y) => x = y,
                // Only the taps are wanted: the last FFN's output and the final norm feed nothing else.
                None => return Ok(None),
            }
        }
        let mut x = x.f_reshape([rows * seq, -1])?;
        if let Some(out) = out {
            x = x.f_index_select(0, out)?;
        }
        Ok(Some(ops::rms_norm(&x, &self.norm, self.cfg.rms_norm_eps)?))
    }

    /// The embeddings of `ids` `[rows, seq]` → `[rows, seq, hidden]` in f32 (scaled where the family scales them).
    fn embed_ids(&self, ids: &Tensor) -> std::result::Result<Tensor, TchError> {
        let x = Tensor::f_embedding(&self.embed, ids, -1, false, false)?.f_to_kind(Kind::Float)?;
        match self.arch.embed_scale {
            Some(s) => x.f_mul_scalar(f64::from(s)),
            None => Ok(x),
        }
    }

    /// Training's forward over `ids` with adapter `lora`: layers `[0, recompute)` run without a graph (each one's
    /// input kept), the rest with one from a leaf at layer `recompute`'s input, so the graph held for the backward
    /// is that of the other layers only. With `unpadded`, the layers run over the real positions alone. Returns the
    /// final-normed hidden states `[rows · seq, hidden]` (zeros at padding); [`Self::train_backward`] finishes the
    /// backward once the loss's has reached the leaf.
    pub(crate) fn train_forward(
        &mut self,
        ids: &Tensor,
        unpadded: Option<Unpadded>,
        lora: &LoraTensors,
        recompute: usize,
    ) -> std::result::Result<(Tensor, Recomputed), TchError> {
        let (rows, seq) = ids.size2()?;
        let device = ids.device();
        let mut x = match &unpadded {
            Some(u) => self.embed_ids(&ids.f_reshape([-1])?.f_index_select(0, &u.idx)?)?,
            None => self.embed_ids(ids)?,
        };
        let pos = Positions::for_len(&mut self.positions, &self.cfg, seq as usize, device)?;
        let mut hook = Hook::new(None, None, TapPoint::Act, self.layers.len(), device)?;
        let mut inputs = Vec::with_capacity(recompute);
        let u = unpadded.as_ref();
        for (l, layer) in self.layers.iter().enumerate().take(recompute) {
            inputs.push(x.shallow_clone());
            x = tch::no_grad(|| train_layer(&self.cfg, layer, l, &x, pos, &mut hook, lora, u))?;
        }
        let leaf = x.f_detach()?.set_requires_grad(recompute > 0);
        let mut x = leaf.shallow_clone();
        for (l, layer) in self.layers.iter().enumerate().skip(recompute) {
            x = train_layer(&self.cfg, layer, l, &x, pos, &mut hook, lora, u)?;
        }
        let x = ops::rms_norm(&x.f_reshape([-1, self.cfg.hidden_size as i64])?, &self.norm, self.cfg.rms_norm_eps)?;
        let x = match u {
            Some(u) => u.pad(&x)?,
            None => x,
        };
        debug_assert_eq!(x.size()[0], rows * seq);
        Ok((x, Recomputed { inputs, leaf, unpadded }))
    }

    /// Sends the gradient that reached `r.leaf` back through the layers `train_forward` ran without a graph, last
    /// first: each is rerun from its kept input with a graph, `(y · g).sum()` is sent back (its LoRA parameters
    /// gather their gradients), and the gradient at its input goes on to the layer below.
    pub(crate) fn train_backward(&mut self, r: Recomputed, lora: &LoraTensors) -> std::result::Result<(), TchError> {
        let mut g = r.leaf.grad();
        let Some(first) = r.inputs.first() else { return Ok(()) };
        let device = first.device();
        let seq = match &r.unpadded {
            Some(u) => u.seq,
            None => first.size()[1],
        };
        let pos = Positions::for_len(&mut self.positions, &self.cfg, seq as usize, device)?;
        let mut hook = Hook::new(None, None, TapPoint::Act, self.layers.len(), device)?;
        for (l, input) in r.inputs.iter().enumerate().rev() {
            if !g.defined() {
                break;
            }
            // Layer 0's input is the frozen embedding: no gradient is needed there.
            let x = input.f_detach()?.set_requires_grad(l > 0);
            let y = train_layer(&self.cfg, &self.layers[l], l, &x, pos, &mut hook, lora, r.unpadded.as_ref())?;
            y.f_mul(&g)?.f_sum(Kind::Float)?.f_backward()?;
            if l > 0 {
                g = x.grad();
            }
        }
        Ok(())
    }

    /// Keeps rows `keep` of every layer's cached keys and values.
    pub(crate) fn keep_rows(cache: &mut Cache, keep: &[usize]) -> std::result::Result<(), TchError> {
        let Some(device) = cache.layers.iter().flatten().next().map(|(k, _)| k.device()) else { return Ok(()) };
        let idx: Vec<i64> = keep.iter().map(|&r| r as i64).collect();
        let idx = Tensor::f_from_slice(&idx)?.f_to_device(device)?;
        for (k, v) in cache.layers.iter_mut().flatten() {
            *k = k.f_index_select(0, &idx)?;
            *v = v.f_index_select(0, &idx)?;
        }
        Ok(())
    }
}

/// Layer `l` of a training pass over `x` (`[n, hidden]` when `unpadded`): adapter `lora`, no cache, never stopped
/// after the tap.
#[allow(clippy::too_many_arguments)]
fn train_layer(
    c: &ModelConfig,
    layer: &Layer,
    l: usize,
    x: &Tensor,
    pos: &Positions,
    hook: &mut Hook<'_>,
    lora: &LoraTensors,
    unpadded: Option<&Unpadded>,
) -> std::result::Result<Tensor, TchError> {
    run_layer(c, layer, l, x, pos, None, hook, Some(lora), false, unpadded)?
        .ok_or_else(|| TchError::Kind("a layer returned nothing".into()))
}

/// One decoder layer over `x` `[rows, seq, hidden]` (or `[n, hidden]`, the real positions of `unpadded`) with the
/// RoPE tables and masks of `pos`, appending its keys and values to `cache` on a cached step; `None` when `stop` (the
/// pass wants only the taps, and this is the last layer).
#[allow(clippy::too_many_arguments)]
fn run_layer(
    c: &ModelConfig,
    layer: &Layer,
    l: usize,
    x: &Tensor,
    pos: &Positions,
    cache: Option<&mut Cache>,
    hook: &mut Hook<'_>,
    lora: Option<&LoraTensors>,
    stop: bool,
    unpadded: Option<&Unpadded>,
) -> std::result::Result<Option<Tensor>, TchError> {
    let (rows, seq) = match unpadded {
        Some(u) => (u.rows, u.seq),
        None => (x.size()[0], x.size()[1]),
    };
    let (heads, kv, d, eps) = (c.num_heads as i64, c.num_kv_heads as i64, c.head_dim as i64, c.rms_norm_eps);
    let lin = |t: LoraTarget, x: &Tensor, w: &Tensor| LoraTensors::linear(lora, l, t, x, w);
    // Into attention's padded layout.
    let padded = |t: Tensor, n_heads: i64| -> std::result::Result<Tensor, TchError> {
        match unpadded {
            Some(u) => u.pad(&t)?.f_reshape([rows, seq, n_heads, d]),
            None => t.f_reshape([rows, seq, n_heads, d]),
        }
    };
    let (rope, mask) = pos.of(layer.kind);
    let h = ops::rms_norm(x, &layer.input_norm, eps)?;
    let mut q = padded(lin(LoraTarget::QProj, &h, &layer.q)?, heads)?;
    let mut k = padded(lin(LoraTarget::KProj, &h, &layer.k)?, kv)?;
    let v = padded(lin(LoraTarget::VProj, &h, &layer.v)?, kv)?;
    if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
        q = ops::rms_norm(&q, qn, eps)?;
        k = ops::rms_norm(&k, kn, eps)?;
    }
    let q = rope.apply(&q)?.f_transpose(1, 2)?; // [b, heads, t, d]
    let mut k = rope.apply(&k)?.f_transpose(1, 2)?; // [b, kv, t, d]
    let mut v = v.f_transpose(1, 2)?;
    if let Some(cache) = cache {
        if let Some((pk, pv)) = &cache.layers[l] {
            k = Tensor::f_cat(&[pk, &k], 2)?;
            v = Tensor::f_cat(&[pv, &v], 2)?;
        }
        cache.layers[l] = Some((k.shallow_clone(), v.shallow_clone()));
    }
    // `attn_logit_softcapping` is not applied: transformers' Gemma3Attention does not pass it on either.
    let att = ops::attention(&q, &k, &v, mask, c.attn_scale)?;
    let att = match unpadded {
        Some(u) => att.f_reshape([rows * seq, heads * d])?.f_index_select(0, &u.idx)?,
        None => att,
    };
    let mut att = lin(LoraTarget::OProj, &att, &layer.o)?;
    if let Some(n) = &layer.post_attn_norm {
        att = ops::rms_norm(&att, n, eps)?;
    }
    let x = x.f_add(&att)?;

    let h = ops::rms_norm(&x, &layer.pre_ffn_norm, eps)?;
    let gate = lin(LoraTarget::GateProj, &h, &layer.gate)?;
    let a = ops::activate(&gate, c.activation)?;
    let a = hook.apply(l, &gate, a)?;
    if stop {
        return Ok(None);
    }
    let mut f = lin(LoraTarget::DownProj, &a.f_mul(&lin(LoraTarget::UpProj, &h, &layer.up)?)?, &layer.down)?;
    if let Some(n) = &layer.post_ffn_norm {
        f = ops::rms_norm(&f, n, eps)?;
    }
    Ok(Some(x.f_add(&f)?))
}
