//! The decoder families as data: one [`FamilySpec`] per family in [`FAMILIES`], holding everything that tells one
//! family from another — how HF's `config.json` and GGUF name it, the defaults its configs leave out, and what its
//! layers compute. Config parsing, positions, tensor names, conversion and random models read the entry; nothing
//! else decides what a family is.

use serde::{Deserialize, Serialize};

use crate::Activation;

/// The architecture families lsn implements; what each is lives in its [`FamilySpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Llama 2/3.x, Mistral, Mistral-Nemo, SmolLM2.
    Llama,
    /// Gemma 3 (text).
    Gemma3,
    /// Gemma 2.
    Gemma2,
    /// Qwen2 and Qwen2.5.
    Qwen2,
    /// Qwen3 (dense).
    Qwen3,
}

/// Everything that distinguishes one decoder family.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilySpec {
    pub family: Family,
    /// The HF `model_type`s read as this family; the first is the one written.
    pub model_types: &'static [&'static str],
    /// The HF `architectures` entry written into `config.json`.
    pub hf_architecture: &'static str,
    /// The GGUF `general.architecture` that `lsn convert` reads as this family; `None` where conversion is not
    /// implemented (its tensors and metadata keys are not mapped: use the HF checkpoint).
    pub gguf_arch: Option<&'static str>,
    /// The `config.json` key of the FFN activation (`hidden_act`, or Gemma's `hidden_activation`).
    pub activation_key: &'static str,
    /// The activation when the config names none.
    pub default_activation: Activation,
    /// `rope_theta` when the config gives none.
    pub default_rope_theta: f64,
    /// Sliding layers have their own RoPE base (`rope_local_base_freq`, this default when absent) and no RoPE
    /// scaling; `None`: sliding layers share the global layers' frequencies, scaling included.
    pub local_rope_theta: Option<f64>,
    /// `tie_word_embeddings` when the config gives none.
    pub default_tied: bool,
    /// `head_dim` when the config gives none (`None`: hidden / heads).
    pub default_head_dim: Option<usize>,
    /// `config.json` switches sliding attention with `use_sliding_window` (`sliding_window` is ignored without it),
    /// from layer `max_window_layers` on, and is written with `layer_types` (Qwen).
    pub sliding_switch: bool,
    /// Without `layer_types`: every n-th layer is global and the others sliding (`sliding_window_pattern`, this
    /// default when absent), and `config.json` is written with `layer_types`. `None`: every layer is sliding when
    /// `sliding_window` is set (Mistral), global otherwise.
    pub global_every: Option<usize>,
    /// The attention scale is `1/√query_pre_attn_scalar` when the config gives it (else `1/√head_dim`).
    pub query_pre_attn_scalar: bool,
    /// Norm weights are stored as `w` and applied as `1 + w`.
    pub norm_plus_one: bool,
    /// Token embeddings are multiplied by √hidden (rounded to f32).
    pub embed_scale: bool,
    /// RMSNorm over each head of q and k before RoPE.
    pub qk_norm: bool,
    /// The q, k and v projections carry biases.
    pub qkv_bias: bool,
    /// Attention scores are soft-capped by `attn_logit_softcapping` (Gemma 2; Gemma 3's configs may carry the key,
    /// but transformers does not apply it).
    pub attn_softcap: bool,
    /// Norms on the attention and FFN outputs before each residual add, and a separate pre-FFN norm.
    pub sandwich_norms: bool,
    /// GGUF (llama.cpp) stores q and k with each head's rows permuted for interleaved RoPE.
    pub gguf_permuted_qk: bool,
    /// GGUF does not record `query_pre_attn_scalar`: llama.cpp takes `head_dim`, except for this family's model of
    /// this many layers (its 27B), whose scalar is hidden / heads.
    pub gguf_wide_scalar_layers: Option<usize>,
}

/// Llama 2/3.x, Mistral, Mistral-Nemo, SmolLM2: RMSNorm, RoPE, GQA, SwiGLU.
const LLAMA: FamilySpec = FamilySpec {
    family: Family::Llama,
    model_types: &["llama", "mistral"],
    hf_architecture: "LlamaForCausalLM",
    gguf_arch: Some("llama"),
    activation_key: "hidden_act",
    default_activation: Activation::Silu,
    default_rope_theta: 10_000.0,
    local_rope_theta: None,
    default_tied: false,
    default_head_dim: None,
    sliding_switch: false,
    global_every: None,
    query_pre_attn_scalar: false,
    norm_plus_one: false,
    embed_scale: false,
    qk_norm: false,
    qkv_bias: false,
    attn_softcap: false,
    sandwich_norms: false,
    gguf_permuted_qk: true,
    gguf_wide_scalar_layers: None,
};

/// Gemma 3 (text): GeGLU, q/k norms, sandwich norms, sliding-window layers (5 of every 6), scaled embeddings.
const GEMMA3: FamilySpec = FamilySpec {
    family: Family::Gemma3,
    model_types: &["gemma3_text", "gemma3"],
    hf_architecture: "Gemma3ForCausalLM",
    gguf_arch: Some("gemma3"),
    activation_key: "hidden_activation",
    default_activation: Activation::GeluTanh,
    default_rope_theta: 1_000_000.0,
    local_rope_theta: Some(10_000.0),
    default_tied: true,
    default_head_dim: None,
    sliding_switch: false,
    global_every: Some(6),
    query_pre_attn_scalar: true,
    norm_plus_one: true,
    embed_scale: true,
    qk_norm: true,
    qkv_bias: false,
    attn_softcap: false,
    sandwich_norms: true,
    gguf_permuted_qk: false,
    gguf_wide_scalar_layers: Some(62),
};

/// Gemma 2: Gemma 3's layer without q/k norms, one RoPE base, sliding and global layers alternating (even layers
/// sliding), attention scores and final logits soft-capped.
const GEMMA2: FamilySpec = FamilySpec {
    family: Family::Gemma2,
    model_types: &["gemma2"],
    hf_architecture: "Gemma2ForCausalLM",
    gguf_arch: Some("gemma2"),
    activation_key: "hidden_activation",
    default_activation: Activation::GeluTanh,
    default_rope_theta: 10_000.0,
    local_rope_theta: None,
    default_tied: true,
    default_head_dim: None,
    sliding_switch: false,
    global_every: Some(2),
    query_pre_attn_scalar: true,
    norm_plus_one: true,
    embed_scale: true,
    qk_norm: false,
    qkv_bias: false,
    attn_softcap: true,
    sandwich_norms: true,
    gguf_permuted_qk: false,
    gguf_wide_scalar_layers: Some(46),
};

/// Qwen2 / Qwen2.5: Llama's layer with biases on q, k and v.
const QWEN2: FamilySpec = FamilySpec {
    family: Family::Qwen2,
    model_types: &["qwen2"],
    hf_architecture: "Qwen2ForCausalLM",
    gguf_arch: Some("qwen2"),
    activation_key: "hidden_act",
    default_activation: Activation::Silu,
    default_rope_theta: 10_000.0,
    local_rope_theta: None,
    default_tied: false,
    default_head_dim: None,
    sliding_switch: true,
    global_every: None,
    query_pre_attn_scalar: false,
    norm_plus_one: false,
    embed_scale: false,
    qk_norm: false,
    qkv_bias: true,
    attn_softcap: false,
    sandwich_norms: false,
    gguf_permuted_qk: false,
    gguf_wide_scalar_layers: None,
};

/// Qwen3 (dense): Llama's layer with RMSNorm over each head of q and k before RoPE, no biases.
const QWEN3: FamilySpec = FamilySpec {
    family: Family::Qwen3,
    model_types: &["qwen3"],
    hf_architecture: "Qwen3ForCausalLM",
    gguf_arch: Some("qwen3"),
    activation_key: "hidden_act",
    default_activation: Activation::Silu,
    default_rope_theta: 10_000.0,
    local_rope_theta: None,
    default_tied: false,
    default_head_dim: Some(128),
    sliding_switch: true,
    global_every: None,
    query_pre_attn_scalar: false,
    norm_plus_one: false,
    embed_scale: false,
    qk_norm: true,
    qkv_bias: false,
    attn_softcap: false,
    sandwich_norms: false,
    gguf_permuted_qk: false,
    gguf_wide_scalar_layers: None,
};

/// Every family lsn implements.
pub const FAMILIES: &[FamilySpec] = &[LLAMA, GEMMA3, GEMMA2, QWEN2, QWEN3];

impl Family {
    /// This family's entry in [`FAMILIES`].
    pub fn spec(self) -> &'static FamilySpec {
        FAMILIES.iter().find(|s| s.family == self).expect("every family has an entry in FAMILIES")
    }

    /// The family HF's `model_type` names, if lsn implements it.
    pub fn from_model_type(model_type: &str) -> Option<Family> {
        FAMILIES.iter().find(|s| s.model_types.contains(&model_type)).map(|s| s.family)
    }

    /// The family of a GGUF `general.architecture`, if lsn implements it.
    pub fn from_gguf_arch(arch: &str) -> Option<Family> {
        FAMILIES.iter().find(|s| s.gguf_arch == Some(arch)).map(|s| s.family)
    }

    /// The model types lsn reads, for messages.
    pub fn known_model_types() -> Vec<&'static str> {
        FAMILIES.iter().flat_map(|s| s.model_types.iter().copied()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_one_entry_and_names_map_back() {
        for spec in FAMILIES {
            assert_eq!(spec.family.spec(), spec);
            for t in spec.model_types {
                assert_eq!(Family::from_model_type(t), Some(spec.family));
            }
            if let Some(arch) = spec.gguf_arch {
                assert_eq!(Family::from_gguf_arch(arch), Some(spec.family));
            }
        }
        assert_eq!(Family::from_model_type("qwen2_moe"), None);
    }
}
