//! Model configuration: a serde mirror of HF `config.json` and the one internal `ModelConfig` every backend reads.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Family, Result};

/// Attention span of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionKind {
    /// Causal attention over the whole prefix (RoPE base `rope_theta`).
    Global,
    /// Causal attention over the last `sliding_window` tokens (RoPE base `rope_local_theta`).
    Sliding,
}

/// The FFN activation `act_fn` applied to `gate_proj(x)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Silu,
    /// GELU with the tanh approximation (`gelu_pytorch_tanh`).
    GeluTanh,
    /// Exact (erf) GELU.
    Gelu,
}

/// RoPE frequency scaling of the global layers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rope_type", rename_all = "snake_case")]
pub enum RopeScaling {
    /// All inverse frequencies divided by `factor`.
    Linear { factor: f64 },
    /// Llama 3.1's piecewise scaling.
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: usize },
}

/// The resolved configuration every backend implements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    /// RoPE base of global layers.
    pub rope_theta: f64,
    /// RoPE base of sliding layers (equals `rope_theta` where the family has no separate one).
    pub rope_local_theta: f64,
    /// Scaling of the global layers' RoPE.
    pub rope_scaling: Option<RopeScaling>,
    pub sliding_window: Option<usize>,
    /// One entry per layer.
    pub layer_kinds: Vec<AttentionKind>,
    pub activation: Activation,
    pub tie_word_embeddings: bool,
    /// Multiplier of q·k (1/sqrt(query_pre_attn_scalar) for Gemma 3, 1/sqrt(head_dim) otherwise).
    pub attn_scale: f64,
    pub attn_logit_softcap: Option<f64>,
    pub final_logit_softcap: Option<f64>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    pub max_position_embeddings: usize,
}

/// Serde mirror of the fields of HF `config.json` that lsn reads or writes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HfConfig {
    pub model_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
    #[serde(default)]
    pub vocab_size: usize,
    #[serde(default)]
    pub hidden_size: usize,
    #[serde(default)]
    pub intermediate_size: usize,
    #[serde(default)]
    pub num_hidden_layers: usize,
    #[serde(default)]
    pub num_attention_heads: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rms_norm_eps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_local_base_freq: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<Value>,
    /// transformers ≥ 5 writes RoPE settings here (flat, or per layer type for Gemma 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window_pattern: Option<usize>,
    /// Qwen: sliding attention is on only with this set, from layer `max_window_layers` on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_sliding_window: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_window_layers: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_act: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_activation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tie_word_embeddings: Option<bool>,
    /// transformers validates this as an integer: written as one when integral.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "int_if_integral")]
    pub query_pre_attn_scalar: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attn_logit_softcapping: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_logit_softcapping: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_position_embeddings: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_bias: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp_bias: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_dtype: Option<String>,
    /// Multimodal Gemma 3 checkpoints nest the language model's config here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_config: Option<Box<HfConfig>>,
}

fn int_if_integral<S: serde::Serializer>(v: &Option<f64>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match v {
        Some(x) if x.fract() == 0.0 && x.abs() < 2f64.powi(53) => s.serialize_i64(*x as i64),
        Some(x) => s.serialize_f64(*x),
        None => s.serialize_none(),
    }
}

fn token_ids(v: &Option<Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_u64).map(|x| x as u32).collect(),
        _ => Vec::new(),
    }
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn parse_scaling(v: &Value) -> Result<Option<RopeScaling>> {
    let kind = v.get("rope_type").or_else(|| v.get("type")).and_then(Value::as_str).unwrap_or("default");
    let need =
        |k: &str| num(v, k).ok_or_else(|| Error::InvalidConfig(format!("rope scaling {kind:?} needs the field {k:?}")));
    match kind {
        "default" => Ok(None),
        "linear" => Ok(Some(RopeScaling::Linear { factor: need("factor")? })),
        "llama3" => Ok(Some(RopeScaling::Llama3 {
            factor: need("factor")?,
            low_freq_factor: need("low_freq_factor")?,
            high_freq_factor: need("high_freq_factor")?,
            original_max_position_embeddings: need("original_max_position_embeddings")? as usize,
        })),
        other => Err(Error::InvalidConfig(format!(
            "rope scaling type {other:?} is not supported (supported: default, linear, llama3)"
        ))),
    }
}

impl HfConfig {
    /// Reads and parses `config.json`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::ConfigRead { path: path.to_owned(), reason: e.to_string() })?;
        serde_json::from_str(&text).map_err(|e| Error::ConfigRead {
            path: path.to_owned(),
            reason: format!("{e} (is this a HF config.json?)"),
        })
    }

    /// Resolves this config into the internal [`ModelConfig`], validating it.
    pub fn resolve(&self) -> Result<ModelConfig> {
        if let (Some(text), "gemma3") = (&self.text_config, self.model_type.as_str()) {
            let mut t = (**text).clone();
            if t.model_type.is_empty() {
                t.model_type = "gemma3_text".into();
            }
            return t.resolve();
        }
        let family = Family::from_model_type(&self.model_type).ok_or_else(|| Error::UnsupportedModelType {
            model_type: self.model_type.clone(),
            known: Family::known_model_types().join(", "),
        })?;
        let spec = family.spec();
        let positive = |name: &str, v: usize| {
            if v == 0 { Err(Error::InvalidConfig(format!("{name} is missing or zero"))) } else { Ok(v) }
        };
        let hidden_size = positive("hidden_size", self.hidden_size)?;
        let num_heads = positive("num_attention_heads", self.num_attention_heads)?;
        let num_layers = positive("num_hidden_layers", self.num_hidden_layers)?;
        let vocab_size = positive("vocab_size", self.vocab_size)?;
        let intermediate_size = positive("intermediate_size", self.intermediate_size)?;
        let num_kv_heads = self.num_key_value_heads.unwrap_or(num_heads);
        if num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(Error::InvalidConfig(format!(
                "num_attention_heads ({num_heads}) must be a multiple of num_key_value_heads ({num_kv_heads})"
            )));
        }
        let head_dim = match self.head_dim.or(spec.default_head_dim) {
            Some(d) => d,
            None if hidden_size % num_heads == 0 => hidden_size / num_heads,
            None => {
                return Err(Error::InvalidConfig(format!(
                    "head_dim is not given and hidden_size {hidden_size} is not a multiple of num_attention_heads {num_heads}"
                )));
            }
        };
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(Error::InvalidConfig(format!("head_dim must be even and positive, got {head_dim}")));
        }
        // Qwen2's q/k/v biases are the family's (its configs carry no switch); elsewhere biases are not implemented.
        if self.attention_bias.is_some_and(|b| b != spec.qkv_bias) || self.mlp_bias == Some(true) {
            return Err(Error::InvalidConfig(format!(
                "attention_bias = {:?} / mlp_bias = {:?} is not supported for {} (lsn implements q/k/v biases for \
                 qwen2 and no biases elsewhere)",
                self.attention_bias, self.mlp_bias, self.model_type
            )));
        }

        // RoPE: legacy fields, or transformers ≥ 5 `rope_parameters` (flat or keyed by layer type).
        let (mut rope_theta, mut rope_local_theta, mut rope_scaling) = (
            self.rope_theta.unwrap_or(spec.default_rope_theta),
            self.rope_local_base_freq,
            match &self.rope_scaling {
                Some(v) if !v.is_null() => parse_scaling(v)?,
                _ => None,
            },
        );
        if let Some(p) = &self.rope_parameters {
            if let Some(full) = p.get("full_attention") {
                rope_theta = num(full, "rope_theta").unwrap_or(rope_theta);
                rope_scaling = parse_scaling(full)?;
                if let Some(local) = p.get("sliding_attention") {
                    rope_local_theta = num(local, "rope_theta").or(rope_local_theta);
                }
            } else {
                rope_theta = num(p, "rope_theta").unwrap_or(rope_theta);
                rope_scaling = parse_scaling(p)?;
            }
        }

        let act_name = self.hidden_activation.as_deref().or(self.hidden_act.as_deref());
        let activation = match act_name {
            None => spec.default_activation,
            Some("silu" | "swish") => Activation::Silu,
            Some("gelu_pytorch_tanh" | "gelu_new" | "gelu_tanh") => Activation::GeluTanh,
            Some("gelu") => Activation::Gelu,
            Some(other) => {
                return Err(Error::InvalidConfig(format!(
                    "activation {other:?} is not supported (silu, gelu, gelu_pytorch_tanh)"
                )));
            }
        };

        let layer_kinds = match (&self.layer_types, spec.global_every) {
            (Some(types), _) => {
                if types.len() != num_layers {
                    return Err(Error::InvalidConfig(format!(
                        "layer_types has {} entries for {num_layers} layers",
                        types.len()
                    )));
                }
                types
                    .iter()
                    .map(|t| match t.as_str() {
                        "full_attention" => Ok(AttentionKind::Global),
                        "sliding_attention" => Ok(AttentionKind::Sliding),
                        other => Err(Error::InvalidConfig(format!("unknown layer type {other:?}"))),
                    })
                    .collect::<Result<Vec<_>>>()?
            }
            (None, Some(every)) => {
                let pattern = self.sliding_window_pattern.unwrap_or(every).max(1);
                (0..num_layers)
                    .map(|i| if (i + 1) % pattern == 0 { AttentionKind::Global } else { AttentionKind::Sliding })
                    .collect()
            }
            (None, None) if spec.sliding_switch => {
                // transformers' rule: sliding from layer `max_window_layers` on, and only with the switch on.
                let from = self.max_window_layers.unwrap_or(num_layers);
                let on = self.use_sliding_window == Some(true) && self.sliding_window.is_some();
                (0..num_layers)
                    .map(|i| if on && i >= from { AttentionKind::Sliding } else { AttentionKind::Global })
                    .collect()
            }
            (None, None) => {
                let kind = if self.sliding_window.is_some() { AttentionKind::Sliding } else { AttentionKind::Global };
                vec![kind; num_layers]
            }
        };
        // A Qwen config's `sliding_window` means nothing without `use_sliding_window` (transformers drops it).
        let sliding_window =
            if spec.sliding_switch && self.use_sliding_window != Some(true) { None } else { self.sliding_window };
        if layer_kinds.contains(&AttentionKind::Sliding) && sliding_window.is_none() {
            return Err(Error::InvalidConfig("sliding layers need sliding_window".into()));
        }
        let attn_scale = match (spec.query_pre_attn_scalar, self.query_pre_attn_scalar) {
            (true, Some(s)) => 1.0 / s.sqrt(),
            _ => 1.0 / (head_dim as f64).sqrt(),
        };
        Ok(ModelConfig {
            family,
            vocab_size,
            hidden_size,
            intermediate_size,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: self.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_local_theta: match spec.local_rope_theta {
                Some(default) => rope_local_theta.unwrap_or(default),
                None => rope_theta,
            },
            rope_scaling,
            sliding_window,
            layer_kinds,
            activation,
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(spec.default_tied),
            attn_scale,
            attn_logit_softcap: self.attn_logit_softcapping,
            final_logit_softcap: self.final_logit_softcapping,
            bos_token_id: token_ids(&self.bos_token_id).first().copied(),
            eos_token_ids: token_ids(&self.eos_token_id),
            pad_token_id: token_ids(&self.pad_token_id).first().copied(),
            max_position_embeddings: self.max_position_embeddings.unwrap_or(8192),
        })
    }
}

impl ModelConfig {
    /// Reads `config.json` and resolves it.
    pub fn from_file(path: &Path) -> Result<Self> {
        HfConfig::read(path)?.resolve()
    }

    /// The HF `config.json` that transformers reads for this model (legacy RoPE fields, accepted by every version).
    pub fn to_hf(&self) -> HfConfig {
        let ids = |v: &[u32]| match v {
            [] => None,
            [one] => Some(Value::from(*one)),
            many => Some(Value::from(many.to_vec())),
        };
        let mut hf = HfConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_layers,
            num_attention_heads: self.num_heads,
            num_key_value_heads: Some(self.num_kv_heads),
            head_dim: Some(self.head_dim),
            rms_norm_eps: Some(self.rms_norm_eps),
            rope_theta: Some(self.rope_theta),
            rope_scaling: self.rope_scaling.map(|s| serde_json::to_value(s).expect("plain data serializes")),
            sliding_window: self.sliding_window,
            tie_word_embeddings: Some(self.tie_word_embeddings),
            attn_logit_softcapping: self.attn_logit_softcap,
            final_logit_softcapping: self.final_logit_softcap,
            max_position_embeddings: Some(self.max_position_embeddings),
            bos_token_id: self.bos_token_id.map(Value::from),
            eos_token_id: ids(&self.eos_token_ids),
            pad_token_id: self.pad_token_id.map(Value::from),
            attention_bias: Some(self.family.spec().qkv_bias),
            mlp_bias: Some(false),
            torch_dtype: Some("float32".into()),
            ..HfConfig::default()
        };
        let act = match self.activation {
            Activation::Silu => "silu",
            Activation::GeluTanh => "gelu_pytorch_tanh",
            Activation::Gelu => "gelu",
        };
        let spec = self.family.spec();
        hf.model_type = spec.model_types[0].into();
        hf.architectures = Some(vec![spec.hf_architecture.into()]);
        match spec.activation_key {
            "hidden_activation" => hf.hidden_activation = Some(act.into()),
            _ => hf.hidden_act = Some(act.into()),
        }
        if spec.local_rope_theta.is_some() {
            hf.rope_local_base_freq = Some(self.rope_local_theta);
        }
        if spec.query_pre_attn_scalar {
            // attn_scale = 1/sqrt(q); recover q exactly when it was an integer (the usual case).
            let q = 1.0 / (self.attn_scale * self.attn_scale);
            let q = if (q - q.round()).abs() < 1e-6 * q { q.round() } else { q };
            hf.query_pre_attn_scalar = Some(q);
        }
        if spec.sliding_switch {
            hf.use_sliding_window = Some(self.sliding_window.is_some());
        }
        if spec.global_every.is_some() || spec.sliding_switch {
            hf.layer_types = Some(
                self.layer_kinds
                    .iter()
                    .map(|k| match k {
                        AttentionKind::Global => "full_attention".to_owned(),
                        AttentionKind::Sliding => "sliding_attention".to_owned(),
                    })
                    .collect(),
            );
        }
        hf
    }

    /// Total number of FFN neurons (`num_layers × intermediate_size`).
    pub fn n_neurons(&self) -> usize {
        self.num_layers * self.intermediate_size
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const GEMMA: &str = r#"{
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "vocab_size": 262144,
        "hidden_size": 640, "intermediate_size": 2048, "num_hidden_layers": 18, "num_attention_heads": 4,
        "num_key_value_heads": 1, "head_dim": 256, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
        "rope_local_base_freq": 10000.0, "sliding_window": 512, "query_pre_attn_scalar": 256,
        "hidden_activation": "gelu_pytorch_tanh", "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0,
        "max_position_embeddings": 32768, "rope_scaling": null
    }"#;

    const LLAMA31: &str = r#"{
        "model_type": "llama", "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
        "rope_theta": 500000.0, "hidden_act": "silu", "tie_word_embeddings": false,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]
    }"#;

    fn parse(s: &str) -> Result<ModelConfig> {
        serde_json::from_str::<HfConfig>(s).unwrap().resolve()
    }

    /// Gemma-3-270M's config (for other modules' tests).
    pub(crate) fn gemma_config() -> ModelConfig {
        parse(GEMMA).unwrap()
    }

    /// Llama-3.1-8B's config (untied head, GQA, Llama-3 RoPE scaling).
    pub(crate) fn llama_config() -> ModelConfig {
        parse(LLAMA31).unwrap()
    }

    #[test]
    fn gemma3_270m_resolves() {
        let c = parse(GEMMA).unwrap();
        assert_eq!(c.family, Family::Gemma3);
        assert_eq!((c.num_layers, c.hidden_size, c.intermediate_size, c.head_dim), (18, 640, 2048, 256));
        assert_eq!((c.num_heads, c.num_kv_heads), (4, 1));
        assert_eq!(c.activation, Activation::GeluTanh);
        assert!(c.tie_word_embeddings);
        assert_eq!(c.attn_scale, 1.0 / 16.0);
        let globals: Vec<usize> =
            c.layer_kinds.iter().enumerate().filter(|(_, k)| **k == AttentionKind::Global).map(|(i, _)| i).collect();
        assert_eq!(globals, vec![5, 11, 17]);
        assert_eq!((c.rope_theta, c.rope_local_theta), (1e6, 1e4));
        assert_eq!((c.bos_token_id, c.eos_token_ids.clone(), c.pad_token_id), (Some(2), vec![1], Some(0)));
    }

    #[test]
    fn llama31_rope_scaling_and_gqa() {
        let c = parse(LLAMA31).unwrap();
        assert_eq!(c.family, Family::Llama);
        assert_eq!((c.head_dim, c.num_kv_heads), (128, 8));
        assert!(!c.tie_word_embeddings);
        assert_eq!(
            c.rope_scaling,
            Some(RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192
            })
        );
        assert_eq!(c.eos_token_ids, vec![128001, 128008, 128009]);
        assert!(c.layer_kinds.iter().all(|k| *k == AttentionKind::Global));
    }

    #[test]
    fn mistral_nemo_head_dim_differs_from_hidden_over_heads() {
        let c = parse(
            r#"{"model_type": "mistral", "vocab_size": 131072, "hidden_size": 5120, "intermediate_size": 14336,
                "num_hidden_layers": 40, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
                "rope_theta": 1000000.0, "sliding_window": null}"#,
        )
        .unwrap();
        assert_eq!(c.head_dim, 128);
        assert_ne!(c.head_dim, c.hidden_size / c.num_heads);
    }

    #[test]
    fn transformers5_rope_parameters_per_layer_type() {
        let mut v: Value = serde_json::from_str(GEMMA).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("rope_theta");
        o.remove("rope_local_base_freq");
        o.insert(
            "rope_parameters".into(),
            serde_json::json!({"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                               "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}),
        );
        let c = parse(&v.to_string()).unwrap();
        assert_eq!((c.rope_theta, c.rope_local_theta), (1e6, 1e4));
        assert_eq!(c.rope_scaling, Some(RopeScaling::Linear { factor: 8.0 }));
    }

    #[test]
    fn round_trips_through_hf_json() {
        for s in [GEMMA, LLAMA31] {
            let c = parse(s).unwrap();
            let again = parse(&serde_json::to_string(&c.to_hf()).unwrap()).unwrap();
            assert_eq!(c, again);
        }
    }

    #[test]
    fn query_pre_attn_scalar_is_written_as_an_integer() {
        let c = parse(&GEMMA.replace("\"query_pre_attn_scalar\": 256", "\"query_pre_attn_scalar\": 32")).unwrap();
        let json = serde_json::to_string(&c.to_hf()).unwrap();
        assert!(json.contains("\"query_pre_attn_scalar\":32,"), "{json}");
    }

    #[test]
    fn unknown_model_type_is_a_clear_error() {
        let e = parse(r#"{"model_type": "gpt2", "vocab_size": 1}"#).unwrap_err().to_string();
        assert!(e.contains("gpt2") && e.contains("gemma3"), "{e}");
    }

    #[test]
    fn inconsistent_heads_rejected() {
        let e = parse(
            r#"{"model_type": "llama", "vocab_size": 10, "hidden_size": 64, "intermediate_size": 8,
                           "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 3}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("multiple of num_key_value_heads"), "{e}");
    }
}
