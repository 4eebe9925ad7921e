//! Gemma 3 (text): embeddings scaled by √hidden, `(1 + w)` RMSNorms, q/k norms before RoPE, sandwich norms around
//! attention and FFN, sliding-window layers with their own RoPE base, GeGLU (gelu-tanh) FFN; prefill only.
//!
//! Mirrors HF transformers' `Gemma3ForCausalLM` in f32 (the residual stream reaches |x| ≈ 1e5, beyond f16).

use candle_core::{Result, Tensor};
use lsn_core::{AttentionKind, ModelConfig};

use crate::model::{Body, BodyOut};
use crate::ops::{self, RopeFreqs, TapCounter};
use crate::weights::Weights;

struct Layer {
    kind: AttentionKind,
    input_norm: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    q_norm: Tensor,
    k_norm: Tensor,
    post_attn_norm: Tensor,
    pre_ffn_norm: Tensor,
    post_ffn_norm: Tensor,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
}

/// A Gemma 3 decoder without its (tied) LM head.
pub(crate) struct Gemma3 {
    cfg: ModelConfig,
    embed: Tensor,
    /// lsn-core's embedding scale (√hidden in f32).
    embed_scale: f64,
    layers: Vec<Layer>,
    norm: Tensor,
    rope: RopeFreqs,
}

impl Gemma3 {
    pub(crate) fn load(w: &Weights, cfg: &ModelConfig) -> crate::error::Result<Self> {
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for (l, &kind) in cfg.layer_kinds.iter().enumerate() {
            let p = format!("model.layers.{l}");
            let norm = |n: &str| w.norm(&format!("{p}.{n}.weight"), true);
            let get = |n: &str| w.get(&format!("{p}.{n}.weight"));
            layers.push(Layer {
                kind,
                input_norm: norm("input_layernorm")?,
                q: get("self_attn.q_proj")?,
                k: get("self_attn.k_proj")?,
                v: get("self_attn.v_proj")?,
                o: get("self_attn.o_proj")?,
                q_norm: norm("self_attn.q_norm")?,
                k_norm: norm("self_attn.k_norm")?,
                post_attn_norm: norm("post_attention_layernorm")?,
                pre_ffn_norm: norm("pre_feedforward_layernorm")?,
                post_ffn_norm: norm("post_feedforward_layernorm")?,
                gate: get("mlp.gate_proj")?,
                up: get("mlp.up_proj")?,
                down: get("mlp.down_proj")?,
            });
        }
        Ok(Self {
            cfg: cfg.clone(),
            embed: w.get("model.embed_tokens.weight")?,
            embed_scale: f64::from(lsn_core::positions::embed_scale(cfg).unwrap_or(1.0)),
            layers,
            norm: w.norm("model.norm.weight", true)?,
            rope: RopeFreqs::new(cfg),
        })
    }
}

impl Body for Gemma3 {
    fn embedding(&self) -> &Tensor {
        &self.embed
    }

    fn forward(
        &self,
        ids: &Tensor,
        rows: usize,
        seq: usize,
        mut taps: Option<&mut TapCounter>,
        head: bool,
    ) -> Result<BodyOut> {
        let c = &self.cfg;
        let (heads, kv, d, eps) = (c.num_heads, c.num_kv_heads, c.head_dim, c.rms_norm_eps);
        let pos = self.rope.positions(seq, ids.device())?;
        let mut x = (self.embed.index_select(ids, 0)? * self.embed_scale)?;
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (rope, mask) = pos.of(layer.kind);
            let h = ops::rms_norm(&x, &layer.input_norm, eps)?;
            let q = ops::linear(&h, &layer.q)?.reshape((rows, seq, heads, d))?;
            let k = ops::linear(&h, &layer.k)?.reshape((rows, seq, kv, d))?;
            let v = ops::linear(&h, &layer.v)?.reshape((rows, seq, kv, d))?;
            let q = rope.queries(&ops::rms_norm(&q, &layer.q_norm, eps)?)?;
            let k = rope.keys(&ops::rms_norm(&k, &layer.k_norm, eps)?)?;
            // `attn_logit_softcapping` is not applied: transformers' Gemma3Attention does not pass it on either.
            let att = ops::linear(&ops::attention(&q, &k, &v, mask)?, &layer.o)?;
            x = (x + ops::rms_norm(&att, &layer.post_attn_norm, eps)?)?;

            let h = ops::rms_norm(&x, &layer.pre_ffn_norm, eps)?;
            let a = ops::activate(&ops::linear(&h, &layer.gate)?, c.activation)?;
            if let Some(t) = taps.as_deref_mut() {
                t.push(&a)?;
            }
            if l == last && !head {
                // Capture needs only the taps: the last FFN's output and the final norm feed nothing else.
                return Ok(BodyOut::TapsOnly);
            }
            let f = ops::linear(&(a * ops::linear(&h, &layer.up)?)?, &layer.down)?;
            x = (x + ops::rms_norm(&f, &layer.post_ffn_norm, eps)?)?;
        }
        Ok(BodyOut::Hidden(ops::rms_norm(&x, &self.norm, eps)?))
    }
}
