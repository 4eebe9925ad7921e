//! `Arch`: the per-family decoder description every backend's layer loop reads (norm placement, q/k norms, the
//! embedding scale, soft-capping, HF tensor names), so that no backend re-decides what a family is.

use crate::ModelConfig;

/// What a decoder family computes, beyond the shapes in `ModelConfig`.
#[derive(Debug, Clone, PartialEq)]
pub struct Arch {
    /// Norm weights are stored as `w` and applied as `1 + w` (Gemma); backends fold it in at load.
    pub norm_plus_one: bool,
    /// Token embeddings are multiplied by this (Gemma: √hidden in f32, not bf16's 25.25).
    pub embed_scale: Option<f32>,
    /// RMSNorm over each head of q and k (one weight shared by the heads), before RoPE.
    pub qk_norm: bool,
    /// q, k and v projections carry biases (Qwen2).
    pub qkv_bias: bool,
    /// Norms on the attention output and the FFN output before each residual add (Gemma's sandwich norms).
    pub post_norms: bool,
    /// Final-logit soft-capping `cap · tanh(x / cap)`.
    pub final_softcap: Option<f64>,
    /// The LM head's weight: the embedding matrix of tied models, `lm_head.weight` otherwise.
    pub head_weight: &'static str,
}

/// The HF tensor names of one layer, as `Arch::layer` gives them; `None` where the family has no such norm.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNames {
    pub input_norm: String,
    pub q: String,
    pub k: String,
    pub v: String,
    pub o: String,
    pub q_bias: Option<String>,
    pub k_bias: Option<String>,
    pub v_bias: Option<String>,
    pub q_norm: Option<String>,
    pub k_norm: Option<String>,
    pub post_attn_norm: Option<String>,
    /// The norm in front of the FFN: Llama's `post_attention_layernorm`, Gemma's `pre_feedforward_layernorm`.
    pub pre_ffn_norm: String,
    pub post_ffn_norm: Option<String>,
    pub gate: String,
    pub up: String,
    pub down: String,
}

/// One layer's weights in a backend's tensor type, loaded by [`Arch::load_layer`]; `None` where the family has no such
/// norm. Norm weights are as the backend's `norm` loader returns them (Gemma's `1 + w` folded in).
#[derive(Debug, Clone)]
pub struct LayerWeights<T> {
    pub kind: crate::AttentionKind,
    pub input_norm: T,
    pub q: T,
    pub k: T,
    pub v: T,
    pub o: T,
    pub q_bias: Option<T>,
    pub k_bias: Option<T>,
    pub v_bias: Option<T>,
    pub q_norm: Option<T>,
    pub k_norm: Option<T>,
    pub post_attn_norm: Option<T>,
    pub pre_ffn_norm: T,
    pub post_ffn_norm: Option<T>,
    pub gate: T,
    pub up: T,
    pub down: T,
}

/// A whole decoder's weights in a backend's tensor type, loaded by [`Arch::load_decoder`].
#[derive(Debug, Clone)]
pub struct DecoderWeights<T> {
    pub embed: T,
    pub layers: Vec<LayerWeights<T>>,
    /// The final norm.
    pub norm: T,
    /// `lm_head.weight` of untied models; tied models use `embed`.
    pub lm_head: Option<T>,
}

impl<T> DecoderWeights<T> {
    /// The LM head's weight.
    pub fn head(&self) -> &T {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }
}

pub const EMBED: &str = "model.embed_tokens.weight";
pub const FINAL_NORM: &str = "model.norm.weight";

impl Arch {
    pub fn of(cfg: &ModelConfig) -> Arch {
        let spec = cfg.family.spec();
        Arch {
            norm_plus_one: spec.norm_plus_one,
            embed_scale: crate::positions::embed_scale(cfg),
            qk_norm: spec.qk_norm,
            qkv_bias: spec.qkv_bias,
            post_norms: spec.sandwich_norms,
            final_softcap: cfg.final_logit_softcap,
            head_weight: if cfg.tie_word_embeddings { EMBED } else { "lm_head.weight" },
        }
    }

    /// Layer `l` of `cfg`, each tensor read by `get` (projections) or `norm` (norm weights), in a backend's own type.
    pub fn load_layer<T, E>(
        &self,
        cfg: &ModelConfig,
        l: usize,
        get: impl Fn(&str) -> Result<T, E>,
        norm: impl Fn(&str) -> Result<T, E>,
    ) -> Result<LayerWeights<T>, E> {
        let n = self.layer(l);
        let opt = |name: &Option<String>| name.as_deref().map(&norm).transpose();
        let bias = |name: &Option<String>| name.as_deref().map(&get).transpose();
        Ok(LayerWeights {
            kind: cfg.layer_kinds[l],
            input_norm: norm(&n.input_norm)?,
            q: get(&n.q)?,
            k: get(&n.k)?,
            v: get(&n.v)?,
            o: get(&n.o)?,
            q_bias: bias(&n.q_bias)?,
            k_bias: bias(&n.k_bias)?,
            v_bias: bias(&n.v_bias)?,
            q_norm: opt(&n.q_norm)?,
            k_norm: opt(&n.k_norm)?,
            post_attn_norm: opt(&n.post_attn_norm)?,
            pre_ffn_norm: norm(&n.pre_ffn_norm)?,
            post_ffn_norm: opt(&n.post_ffn_norm)?,
            gate: get(&n.gate)?,
            up: get(&n.up)?,
            down: get(&n.down)?,
        })
    }

    /// Every weight of `cfg`, each tensor read by `get` (embeddings, projections, biases, the LM head) or `norm`
    /// (norm weights), in a backend's own type.
    pub fn load_decoder<T, E>(
        &self,
        cfg: &ModelConfig,
        get: impl Fn(&str) -> Result<T, E>,
        norm: impl Fn(&str) -> Result<T, E>,
    ) -> Result<DecoderWeights<T>, E> {
        let layers = (0..cfg.num_layers).map(|l| self.load_layer(cfg, l, &get, &norm)).collect::<Result<_, E>>()?;
        let lm_head = if cfg.tie_word_embeddings { None } else { Some(get(self.head_weight)?) };
        Ok(DecoderWeights { embed: get(EMBED)?, layers, norm: norm(FINAL_NORM)?, lm_head })
    }

    /// The tensor names of layer `l`.
    pub fn layer(&self, l: usize) -> LayerNames {
        let p = format!("model.layers.{l}");
        let n = |s: &str| format!("{p}.{s}.weight");
        let gemma = |s: &str| self.post_norms.then(|| n(s));
        let bias = |s: &str| self.qkv_bias.then(|| format!("{p}.self_attn.{s}.bias"));
        LayerNames {
            input_norm: n("input_layernorm"),
            q: n("self_attn.q_proj"),
            k: n("self_attn.k_proj"),
            v: n("self_attn.v_proj"),
            o: n("self_attn.o_proj"),
            q_bias: bias("q_proj"),
            k_bias: bias("k_proj"),
            v_bias: bias("v_proj"),
            q_norm: self.qk_norm.then(|| n("self_attn.q_norm")),
            k_norm: self.qk_norm.then(|| n("self_attn.k_norm")),
            post_attn_norm: gemma("post_attention_layernorm"),
            pre_ffn_norm: n(if self.post_norms { "pre_feedforward_layernorm" } else { "post_attention_layernorm" }),
            post_ffn_norm: gemma("post_feedforward_layernorm"),
            gate: n("mlp.gate_proj"),
            up: n("mlp.up_proj"),
            down: n("mlp.down_proj"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_tensor_is_one_the_checkpoint_holds() {
        for cfg in [crate::config::tests::gemma_config(), crate::config::tests::llama_config()] {
            let arch = Arch::of(&cfg);
            let expected: std::collections::BTreeSet<String> =
                crate::expected_tensors(&cfg).into_iter().map(|t| t.name).collect();
            let mut named = vec![EMBED.to_owned(), FINAL_NORM.to_owned(), arch.head_weight.to_owned()];
            for l in 0..cfg.num_layers {
                let n = arch.layer(l);
                named.extend([n.input_norm, n.q, n.k, n.v, n.o, n.pre_ffn_norm, n.gate, n.up, n.down]);
                named.extend([n.q_norm, n.k_norm, n.post_attn_norm, n.post_ffn_norm].into_iter().flatten());
                named.extend([n.q_bias, n.k_bias, n.v_bias].into_iter().flatten());
            }
            // Each expected tensor is read by the loop, and nothing else is.
            let named: std::collections::BTreeSet<String> = named.into_iter().collect();
            assert_eq!(named, expected, "{:?}", cfg.family);
        }
    }
}
