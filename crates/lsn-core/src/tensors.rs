//! The HF tensor names and shapes a checkpoint of each family must hold: one list used by loaders, converters and writers.

use crate::ModelConfig;

/// One tensor of a HF checkpoint: its name and row-major shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

/// Whether a tensor is an RMSNorm weight (Gemma stores these as `w` and applies `1 + w`).
pub fn is_norm(name: &str) -> bool {
    name.ends_with("norm.weight")
}

/// Every tensor a HF checkpoint of `cfg` holds, in a fixed order.
pub fn expected_tensors(cfg: &ModelConfig) -> Vec<TensorSpec> {
    let (h, i, d) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
    let (q, kv) = (cfg.num_heads * d, cfg.num_kv_heads * d);
    let spec = cfg.family.spec();
    let mut out = Vec::new();
    let mut push = |name: String, shape: Vec<usize>| out.push(TensorSpec { name, shape });
    push("model.embed_tokens.weight".into(), vec![cfg.vocab_size, h]);
    for l in 0..cfg.num_layers {
        let p = format!("model.layers.{l}");
        push(format!("{p}.input_layernorm.weight"), vec![h]);
        push(format!("{p}.self_attn.q_proj.weight"), vec![q, h]);
        push(format!("{p}.self_attn.k_proj.weight"), vec![kv, h]);
        push(format!("{p}.self_attn.v_proj.weight"), vec![kv, h]);
        push(format!("{p}.self_attn.o_proj.weight"), vec![h, q]);
        if spec.qkv_bias {
            push(format!("{p}.self_attn.q_proj.bias"), vec![q]);
            push(format!("{p}.self_attn.k_proj.bias"), vec![kv]);
            push(format!("{p}.self_attn.v_proj.bias"), vec![kv]);
        }
        push(format!("{p}.post_attention_layernorm.weight"), vec![h]);
        if spec.qk_norm {
            push(format!("{p}.self_attn.q_norm.weight"), vec![d]);
            push(format!("{p}.self_attn.k_norm.weight"), vec![d]);
        }
        if spec.sandwich_norms {
            push(format!("{p}.pre_feedforward_layernorm.weight"), vec![h]);
            push(format!("{p}.post_feedforward_layernorm.weight"), vec![h]);
        }
        push(format!("{p}.mlp.gate_proj.weight"), vec![i, h]);
        push(format!("{p}.mlp.up_proj.weight"), vec![i, h]);
        push(format!("{p}.mlp.down_proj.weight"), vec![h, i]);
    }
    push("model.norm.weight".into(), vec![h]);
    if !cfg.tie_word_embeddings {
        push("lm_head.weight".into(), vec![cfg.vocab_size, h]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HfConfig;

    #[test]
    fn gemma_has_four_norms_per_layer_and_no_head_when_tied() {
        let cfg = HfConfig {
            model_type: "gemma3_text".into(),
            vocab_size: 16,
            hidden_size: 8,
            intermediate_size: 12,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            num_key_value_heads: Some(1),
            head_dim: Some(4),
            sliding_window: Some(4),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let t = expected_tensors(&cfg);
        assert_eq!(t.len(), 1 + 2 * 13 + 1);
        assert_eq!(t.iter().filter(|s| is_norm(&s.name)).count(), 2 * 6 + 1);
        assert!(!t.iter().any(|s| s.name == "lm_head.weight"));
        let q = t.iter().find(|s| s.name == "model.layers.1.self_attn.q_proj.weight").unwrap();
        assert_eq!(q.shape, vec![8, 8]);
    }
}
