//! The two decoder families on libtorch, one layer loop: Llama (RMSNorm `w·x`, RoPE with optional scaling, GQA,
//! SwiGLU) and Gemma 3 (embeddings × √hidden, `(1 + w)` norms, q/k norms before RoPE, sandwich norms around attention
//! and FFN, sliding-window layers with their own RoPE base, GeGLU). Prefill only; mirrors HF transformers in f32.

use lsn_core::{AttentionKind, Family, ModelConfig};
use tch::{TchError, Tensor};

use crate::error::Result;
use crate::ops::{self, Positions};
use crate::taps::DeviceTaps;
use crate::weights::Weights;

/// Gemma 3's extra norms: q/k norms and the norms after attention and around the FFN.
struct GemmaNorms {
    q_norm: Tensor,
    k_norm: Tensor,
    post_attn: Tensor,
    post_ffn: Tensor,
}

struct Layer {
    kind: AttentionKind,
    input_norm: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    /// Llama: `post_attention_layernorm` (before the FFN); Gemma 3: `pre_feedforward_layernorm`.
    pre_ffn_norm: Tensor,
    gemma: Option<GemmaNorms>,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
}

/// A decoder stack from token ids to the final norm.
pub(crate) struct Decoder {
    cfg: ModelConfig,
    pub(crate) embed: Tensor,
    embed_scale: Option<f64>,
    layers: Vec<Layer>,
    norm: Tensor,
    positions: Option<Positions>,
}

/// What the decoder returns.
pub(crate) enum BodyOut {
    /// The final-normed hidden states `[rows·seq, hidden]`.
    Hidden(Tensor),
    /// The head was not wanted: the pass stopped after the last layer's tap.
    TapsOnly,
}

impl Decoder {
    pub(crate) fn load(w: &Weights, cfg: &ModelConfig) -> Result<Self> {
        let gemma = cfg.family == Family::Gemma3;
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for (l, &kind) in cfg.layer_kinds.iter().enumerate() {
            let p = format!("model.layers.{l}");
            let get = |n: &str| w.get(&format!("{p}.{n}.weight"));
            let norm = |n: &str| w.norm(&format!("{p}.{n}.weight"), gemma);
            let gemma_norms = if gemma {
                Some(GemmaNorms {
                    q_norm: norm("self_attn.q_norm")?,
                    k_norm: norm("self_attn.k_norm")?,
                    post_attn: norm("post_attention_layernorm")?,
                    post_ffn: norm("post_feedforward_layernorm")?,
                })
            } else {
                None
            };
            layers.push(Layer {
                kind,
                input_norm: norm("input_layernorm")?,
                q: get("self_attn.q_proj")?,
                k: get("self_attn.k_proj")?,
                v: get("self_attn.v_proj")?,
                o: get("self_attn.o_proj")?,
                pre_ffn_norm: norm(if gemma { "pre_feedforward_layernorm" } else { "post_attention_layernorm" })?,
                gemma: gemma_norms,
                gate: get("mlp.gate_proj")?,
                up: get("mlp.up_proj")?,
                down: get("mlp.down_proj")?,
            });
        }
        Ok(Self {
            cfg: cfg.clone(),
            embed: w.get("model.embed_tokens.weight")?,
            embed_scale: lsn_core::positions::embed_scale(cfg).map(f64::from),
            layers,
            norm: w.norm("model.norm.weight", gemma)?,
            positions: None,
        })
    }

    /// Runs `ids` (`[rows, seq]`, i64) through every layer, handing each layer's FFN tap to `taps`. With
    /// `head == false` nothing after the last tap is computed.
    pub(crate) fn forward(
        &mut self,
        ids: &Tensor,
        mut taps: Option<&mut DeviceTaps>,
        head: bool,
    ) -> std::result::Result<BodyOut, TchError> {
        let c = &self.cfg;
        let (rows, seq) = ids.size2()?;
        let (heads, kv, d, eps) = (c.num_heads as i64, c.num_kv_heads as i64, c.head_dim as i64, c.rms_norm_eps);
        let pos = Positions::for_len(&mut self.positions, c, seq as usize, ids.device())?;
        let mut x = Tensor::f_embedding(&self.embed, ids, -1, false, false)?;
        if let Some(s) = self.embed_scale {
            x = x.f_mul_scalar(s)?;
        }
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (rope, mask) = pos.of(layer.kind);
            let h = ops::rms_norm(&x, &layer.input_norm, eps)?;
            let mut q = ops::linear(&h, &layer.q)?.f_reshape([rows, seq, heads, d])?;
            let mut k = ops::linear(&h, &layer.k)?.f_reshape([rows, seq, kv, d])?;
            let v = ops::linear(&h, &layer.v)?.f_reshape([rows, seq, kv, d])?;
            if let Some(g) = &layer.gemma {
                q = ops::rms_norm(&q, &g.q_norm, eps)?;
                k = ops::rms_norm(&k, &g.k_norm, eps)?;
            }
            // `attn_logit_softcapping` is not applied: transformers' Gemma3Attention does not pass it on either.
            let att = ops::attention(&rope.apply(&q)?, &rope.apply(&k)?, &v, mask, c.attn_scale)?;
            let mut att = ops::linear(&att, &layer.o)?;
            if let Some(g) = &layer.gemma {
                att = ops::rms_norm(&att, &g.post_attn, eps)?;
            }
            x = x.f_add(&att)?;

            let h = ops::rms_norm(&x, &layer.pre_ffn_norm, eps)?;
            let a = ops::activate(&ops::linear(&h, &layer.gate)?, c.activation)?;
            if let Some(t) = taps.as_deref_mut() {
                t.push(&a.f_reshape([rows * seq, -1])?)?;
            }
            if l == last && !head {
                // Capture needs only the taps: the last FFN's output and the final norm feed nothing else.
                return Ok(BodyOut::TapsOnly);
            }
            let mut f = ops::linear(&a.f_mul(&ops::linear(&h, &layer.up)?)?, &layer.down)?;
            if let Some(g) = &layer.gemma {
                f = ops::rms_norm(&f, &g.post_ffn, eps)?;
            }
            x = x.f_add(&f)?;
        }
        Ok(BodyOut::Hidden(ops::rms_norm(&x, &self.norm, eps)?.f_reshape([rows * seq, -1])?))
    }
}
