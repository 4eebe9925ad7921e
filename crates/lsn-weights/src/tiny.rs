//! The tiny model configurations of the fast tests: small, but covering what the paper's models need.

use lsn_core::{Activation, AttentionKind, Family, ModelConfig, RopeScaling};

/// Llama 3.1's `rope_scaling`: type llama3, factor 8, low/high frequency factors 1 and 4, original context 8192.
fn llama31_rope_scaling() -> RopeScaling {
    RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192,
    }
}

/// A Llama 3.1-like model: GQA with several KV heads, `head_dim` ≠ hidden / heads, untied embeddings and
/// `rope_scaling` of type llama3 (its three frequency bands are all hit with head_dim 16 and base 500000).
fn tiny_llama() -> ModelConfig {
    ModelConfig {
        family: Family::Llama,
        vocab_size: 512,
        hidden_size: 64,
        intermediate_size: 96,
        num_layers: 3,
        num_heads: 8,
        num_kv_heads: 2,
        head_dim: 16,
        rms_norm_eps: 1e-5,
        rope_theta: 500_000.0,
        rope_local_theta: 500_000.0,
        rope_scaling: Some(llama31_rope_scaling()),
        sliding_window: None,
        layer_kinds: vec![AttentionKind::Global; 3],
        activation: Activation::Silu,
        tie_word_embeddings: false,
        attn_scale: 0.25,
        attn_logit_softcap: None,
        final_logit_softcap: None,
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
        pad_token_id: None,
        max_position_embeddings: 131_072,
    }
}

/// A Gemma 3-like model: six layers, the last global, the others sliding over 8 tokens.
fn tiny_gemma3() -> ModelConfig {
    let mut layer_kinds = vec![AttentionKind::Sliding; 6];
    layer_kinds[5] = AttentionKind::Global;
    ModelConfig {
        family: Family::Gemma3,
        vocab_size: 512,
        hidden_size: 64,
        intermediate_size: 128,
        num_layers: 6,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 32,
        rms_norm_eps: 1e-6,
        rope_theta: 1_000_000.0,
        rope_local_theta: 10_000.0,
        rope_scaling: None,
        sliding_window: Some(8),
        layer_kinds,
        activation: Activation::GeluTanh,
        tie_word_embeddings: true,
        attn_scale: 1.0 / 32f64.sqrt(),
        attn_logit_softcap: None,
        final_logit_softcap: None,
        bos_token_id: Some(2),
        eos_token_ids: vec![1],
        pad_token_id: Some(0),
        max_position_embeddings: 1024,
    }
}

/// Llama-3.1-8B's exact shapes and config (8.03·10⁹ parameters; 16 GB in bf16), for measuring memory and throughput
/// at the paper's scale with random weights.
fn llama31_8b() -> ModelConfig {
    ModelConfig {
        family: Family::Llama,
        vocab_size: 128_256,
        hidden_size: 4096,
        intermediate_size: 14_336,
        num_layers: 32,
        num_heads: 32,
        num_kv_heads: 8,
        head_dim: 128,
        rms_norm_eps: 1e-5,
        rope_theta: 500_000.0,
        rope_local_theta: 500_000.0,
        rope_scaling: Some(llama31_rope_scaling()),
        sliding_window: None,
        layer_kinds: vec![AttentionKind::Global; 32],
        activation: Activation::Silu,
        tie_word_embeddings: false,
        attn_scale: 1.0 / 128f64.sqrt(),
        attn_logit_softcap: None,
        final_logit_softcap: None,
        bos_token_id: Some(128_000),
        eos_token_ids: vec![128_001],
        pad_token_id: None,
        max_position_embeddings: 131_072,
    }
}

/// Full-size shapes of the paper's models by name (`llama-3.1-8b`): random weights of the real sizes.
pub fn full_size_configs() -> Vec<(&'static str, ModelConfig)> {
    vec![("llama-3.1-8b", llama31_8b())]
}

/// The tiny configurations by name: `tiny-llama` and `tiny-gemma3`.
pub fn tiny_configs() -> Vec<(&'static str, ModelConfig)> {
    vec![("tiny-llama", tiny_llama()), ("tiny-gemma3", tiny_gemma3())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_configs_survive_the_config_json_round_trip() {
        for (name, cfg) in tiny_configs() {
            let again = cfg.to_hf().resolve().unwrap();
            assert_eq!(again, cfg, "{name}");
        }
        let (_, big) = &full_size_configs()[0];
        assert_eq!(big.to_hf().resolve().unwrap(), *big);
        let params: usize = lsn_core::expected_tensors(big).iter().map(|t| t.shape.iter().product::<usize>()).sum();
        assert_eq!(params, 8_030_261_248, "Llama-3.1-8B's parameter count");
        let (_, llama) = &tiny_configs()[0];
        assert_ne!(llama.head_dim, llama.hidden_size / llama.num_heads);
        assert!(llama.num_kv_heads > 1 && llama.num_kv_heads < llama.num_heads);
    }
}
