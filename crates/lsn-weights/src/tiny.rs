//! The tiny model configurations of the fast tests (small, but covering what each family computes), and the real
//! shapes of the models researchers run, for random-weight measurements at full size.

use lsn_core::{Activation, AttentionKind, Family, HfConfig, ModelConfig, RopeScaling};
use serde_json::{Value, json};

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

/// The tiny models' context: the task cases' longest XQuAD prompt in bytes (1,905 tokens of the byte tokenizer, in
/// Hindi) plus its new tokens fits.
const TINY_POSITIONS: usize = 4096;

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
        max_position_embeddings: TINY_POSITIONS,
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

/// A preset written as the `config.json` HF would read, resolved as any checkpoint's is.
fn from_hf(config: Value) -> ModelConfig {
    let hf: HfConfig = serde_json::from_value(config).expect("a preset is a valid config.json");
    hf.resolve().expect("a preset resolves")
}

/// Shapes shared by the tiny presets of the newer families: vocabulary 512, hidden 64, 4 query heads over 2 KV heads.
fn tiny_hf(model_type: &str, layers: usize, extra: Value) -> ModelConfig {
    let mut v = json!({
        "model_type": model_type, "vocab_size": 512, "hidden_size": 64, "intermediate_size": 96,
        "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": TINY_POSITIONS, "bos_token_id": 1, "eos_token_id": 2,
    });
    if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
        v.extend(extra);
    }
    from_hf(v)
}

/// A Qwen2.5-like model: q/k/v biases, tied embeddings, a `sliding_window` that `use_sliding_window: false` turns
/// off (as Qwen2.5's configs do).
fn tiny_qwen2() -> ModelConfig {
    tiny_hf(
        "qwen2",
        3,
        json!({"rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": true,
               "use_sliding_window": false, "sliding_window": 8, "max_window_layers": 3}),
    )
}

/// A Qwen3-like model: q/k norms, `head_dim` (32) ≠ hidden / heads (16), tied embeddings.
fn tiny_qwen3() -> ModelConfig {
    tiny_hf(
        "qwen3",
        3,
        json!({"head_dim": 32, "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": true,
               "use_sliding_window": false, "max_window_layers": 3}),
    )
}

/// A Gemma 2-like model: four layers alternating sliding (over 8 tokens) and global, sandwich norms,
/// `query_pre_attn_scalar` ≠ head_dim, and soft-caps small enough to bend these random models' scores and logits.
fn tiny_gemma2() -> ModelConfig {
    tiny_hf(
        "gemma2",
        4,
        json!({"head_dim": 32, "intermediate_size": 128, "sliding_window": 8, "query_pre_attn_scalar": 16,
               "attn_logit_softcapping": 5.0, "final_logit_softcapping": 3.0, "rms_norm_eps": 1e-6,
               "hidden_activation": "gelu_pytorch_tanh", "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0}),
    )
}

/// A Llama 3.2-like model: tied embeddings and Llama 3.2's RoPE scaling (llama3, factor 32).
fn tiny_llama32() -> ModelConfig {
    tiny_hf(
        "llama",
        2,
        json!({"head_dim": 16, "rope_theta": 500_000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": true,
               "hidden_act": "silu", "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}),
    )
}

/// Full-size shapes by name, from each model's published `config.json`: random weights of the real sizes.
pub fn full_size_configs() -> Vec<(&'static str, ModelConfig)> {
    let qwen = |hidden: usize, inter: usize, layers: usize, heads: usize, kv: usize, max_pos: usize| {
        from_hf(json!({
            "model_type": "qwen2", "vocab_size": 151_936, "hidden_size": hidden, "intermediate_size": inter,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
            "max_position_embeddings": max_pos, "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6,
            "tie_word_embeddings": true, "use_sliding_window": false, "sliding_window": max_pos,
            "max_window_layers": layers, "bos_token_id": 151_643, "eos_token_id": 151_643, "hidden_act": "silu",
        }))
    };
    vec![
        ("llama-3.1-8b", llama31_8b()),
        ("qwen2.5-0.5b", qwen(896, 4864, 24, 14, 2, 32_768)),
        ("qwen2.5-1.5b", qwen(1536, 8960, 28, 12, 2, 131_072)),
        (
            "qwen3-0.6b",
            from_hf(json!({
                "model_type": "qwen3", "vocab_size": 151_936, "hidden_size": 1024, "intermediate_size": 3072,
                "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
                "max_position_embeddings": 40_960, "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6,
                "tie_word_embeddings": true, "use_sliding_window": false, "max_window_layers": 28,
                "bos_token_id": 151_643, "eos_token_id": 151_645, "hidden_act": "silu",
            })),
        ),
        (
            "gemma-2-2b",
            from_hf(json!({
                "model_type": "gemma2", "vocab_size": 256_000, "hidden_size": 2304, "intermediate_size": 9216,
                "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
                "max_position_embeddings": 8192, "rope_theta": 10_000.0, "rms_norm_eps": 1e-6,
                "query_pre_attn_scalar": 256, "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
                "sliding_window": 4096, "hidden_activation": "gelu_pytorch_tanh", "bos_token_id": 2,
                "eos_token_id": 1, "pad_token_id": 0,
            })),
        ),
        (
            "llama-3.2-1b",
            from_hf(json!({
                "model_type": "llama", "vocab_size": 128_256, "hidden_size": 2048, "intermediate_size": 8192,
                "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
                "max_position_embeddings": 131_072, "rope_theta": 500_000.0, "rms_norm_eps": 1e-5,
                "tie_word_embeddings": true, "hidden_act": "silu", "bos_token_id": 128_000, "eos_token_id": 128_001,
                "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
            })),
        ),
    ]
}

/// The tiny configurations by name: one or two per family.
pub fn tiny_configs() -> Vec<(&'static str, ModelConfig)> {
    vec![
        ("tiny-llama", tiny_llama()),
        ("tiny-gemma3", tiny_gemma3()),
        ("tiny-qwen2", tiny_qwen2()),
        ("tiny-qwen3", tiny_qwen3()),
        ("tiny-gemma2", tiny_gemma2()),
        ("tiny-llama32", tiny_llama32()),
    ]
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
        // Each full-size preset's parameter count is the published model's (Qwen2.5-1.5B: 1.54B incl. the tied
        // embeddings; Gemma-2-2B: 2.61B).
        let want = [
            ("llama-3.1-8b", 8_030_261_248usize),
            ("qwen2.5-0.5b", 494_032_768),
            ("qwen2.5-1.5b", 1_543_714_304),
            ("qwen3-0.6b", 596_049_920),
            ("gemma-2-2b", 2_614_341_888),
            ("llama-3.2-1b", 1_235_814_400),
        ];
        for (name, cfg) in full_size_configs() {
            assert_eq!(cfg.to_hf().resolve().unwrap(), cfg, "{name}");
            let params: usize =
                lsn_core::expected_tensors(&cfg).iter().map(|t| t.shape.iter().product::<usize>()).sum();
            let expected = want.iter().find(|(n, _)| *n == name).map(|w| w.1);
            assert_eq!(Some(params), expected, "{name}'s parameter count");
        }
        let (_, llama) = &tiny_configs()[0];
        assert_ne!(llama.head_dim, llama.hidden_size / llama.num_heads);
        assert!(llama.num_kv_heads > 1 && llama.num_kv_heads < llama.num_heads);
        let get = |n: &str| tiny_configs().into_iter().find(|(name, _)| *name == n).unwrap().1;
        // Qwen2.5's sliding_window without use_sliding_window: every layer global.
        let qwen2 = get("tiny-qwen2");
        assert!(qwen2.sliding_window.is_none() && qwen2.layer_kinds.iter().all(|k| *k == AttentionKind::Global));
        assert_eq!(get("tiny-qwen3").head_dim, 32);
        // Gemma 2: even layers sliding, odd global; the scale from query_pre_attn_scalar.
        let gemma2 = get("tiny-gemma2");
        let kinds = [AttentionKind::Sliding, AttentionKind::Global];
        assert_eq!(gemma2.layer_kinds, [kinds, kinds].concat());
        assert_eq!(gemma2.attn_scale, 0.25);
    }
}
