//! The Llama family (Llama 2/3.x, Mistral, SmolLM2): RMSNorm `w·x`, rotate-half RoPE in HF layout (with linear or
//! Llama-3 scaling), grouped-query attention, SwiGLU FFN; prefill only.

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
    post_attn_norm: Tensor,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
}

/// A Llama-family decoder without its LM head.
pub(crate) struct Llama {
    cfg: ModelConfig,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    rope: RopeFreqs,
}

impl Llama {
    pub(crate) fn load(w: &Weights, cfg: &ModelConfig) -> crate::error::Result<Self> {
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for (l, &kind) in cfg.layer_kinds.iter().enumerate() {
            let p = format!("model.layers.{l}");
            layers.push(Layer {
                kind,
                input_norm: w.norm(&format!("{p}.input_layernorm.weight"), false)?,
                q: w.get(&format!("{p}.self_attn.q_proj.weight"))?,
                k: w.get(&format!("{p}.self_attn.k_proj.weight"))?,
                v: w.get(&format!("{p}.self_attn.v_proj.weight"))?,
                o: w.get(&format!("{p}.self_attn.o_proj.weight"))?,
                post_attn_norm: w.norm(&format!("{p}.post_attention_layernorm.weight"), false)?,
                gate: w.get(&format!("{p}.mlp.gate_proj.weight"))?,
                up: w.get(&format!("{p}.mlp.up_proj.weight"))?,
                down: w.get(&format!("{p}.mlp.down_proj.weight"))?,
            });
        }
        Ok(Self {
            cfg: cfg.clone(),
            embed: w.get("model.embed_tokens.weight")?,
            layers,
            norm: w.norm("model.norm.weight", false)?,
            rope: RopeFreqs::new(cfg),
        })
    }
}

impl Body for Llama {
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
        let mut x = self.embed.index_select(ids, 0)?;
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (rope, mask) = pos.of(layer.kind);
            let h = ops::rms_norm(&x, &layer.input_norm, eps)?;
            let q = ops::linear(&h, &layer.q)?.reshape((rows, seq, heads, d))?;
            let k = ops::linear(&h, &layer.k)?.reshape((rows, seq, kv, d))?;
            let v = ops::linear(&h, &layer.v)?.reshape((rows, seq, kv, d))?;
            let att = ops::attention(&rope.queries(&q)?, &rope.keys(&k)?, &v, mask)?;
            x = (x + ops::linear(&att, &layer.o)?)?;

            let h = ops::rms_norm(&x, &layer.post_attn_norm, eps)?;
            let a = ops::activate(&ops::linear(&h, &layer.gate)?, c.activation)?;
            if let Some(t) = taps.as_deref_mut() {
                t.push(&a)?;
            }
            if l == last && !head {
                // Capture needs only the taps: the last FFN's output and the final norm feed nothing else.
                return Ok(BodyOut::TapsOnly);
            }
            x = (x + ops::linear(&(a * ops::linear(&h, &layer.up)?)?, &layer.down)?)?;
        }
        Ok(BodyOut::Hidden(ops::rms_norm(&x, &self.norm, eps)?))
    }
}
