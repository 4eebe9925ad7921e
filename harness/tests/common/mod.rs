//! Test support: writes tiny random checkpoints (HF layout) of both families into temporary directories.

use std::collections::HashMap;

use lsn_core::{HfConfig, ModelConfig, expected_tensors, is_norm};
use tempfile::TempDir;

/// A deterministic xorshift generator, so the tiny models are the same on every run.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// Writes `config.json` and `model.safetensors` for `hf` with seeded random weights.
pub fn write_checkpoint(hf: &HfConfig, seed: u64) -> (TempDir, ModelConfig) {
    let cfg = hf.resolve().expect("test config resolves");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("config.json"), serde_json::to_string_pretty(hf).unwrap()).unwrap();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let plus_one = cfg.family.spec().norm_plus_one;
    let mut tensors = HashMap::new();
    for spec in expected_tensors(&cfg) {
        let n: usize = spec.shape.iter().product();
        let fan_in = *spec.shape.last().unwrap() as f32;
        let data: Vec<f32> = (0..n)
            .map(|_| {
                let u = rng.uniform();
                if is_norm(&spec.name) {
                    // Gemma stores w and applies 1 + w; Llama applies w.
                    if plus_one { 0.2 * u } else { 1.0 + 0.2 * u }
                } else if spec.name.contains("embed") || spec.name.starts_with("lm_head") {
                    u
                } else {
                    u * 1.7 / fan_in.sqrt()
                }
            })
            .collect();
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        tensors.insert(spec.name.clone(), (spec.shape.clone(), bytes));
    }
    let views: HashMap<String, safetensors::tensor::TensorView<'_>> = tensors
        .iter()
        .map(|(n, (shape, bytes))| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();
    (dir, cfg)
}

/// Llama with GQA (8 heads / 2 KV heads), head_dim 16 ≠ hidden/heads, untied head, Llama-3.1 RoPE scaling.
pub fn tiny_llama() -> HfConfig {
    serde_json::from_value(serde_json::json!({
        "model_type": "llama", "vocab_size": 96, "hidden_size": 48, "intermediate_size": 80,
        "num_hidden_layers": 3, "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 16,
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu", "tie_word_embeddings": false,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192},
        "bos_token_id": 1, "eos_token_id": 2
    }))
    .unwrap()
}

/// Mistral-style Llama whose every layer has a sliding window of `window` tokens.
pub fn tiny_sliding_llama(window: usize) -> HfConfig {
    serde_json::from_value(serde_json::json!({
        "model_type": "mistral", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": true,
        "sliding_window": window
    }))
    .unwrap()
}

/// Gemma 3 with 4 layers (the last global), sliding window 4, multi-query attention, tied head.
pub fn tiny_gemma() -> HfConfig {
    serde_json::from_value(serde_json::json!({
        "model_type": "gemma3_text", "vocab_size": 80, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 4, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "sliding_window": 4,
        "query_pre_attn_scalar": 16, "hidden_activation": "gelu_pytorch_tanh",
        "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
        "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0
    }))
    .unwrap()
}

/// Token ids in `1..vocab` from a seed.
pub fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    (0..n).map(|_| 1 + ((rng.uniform() + 1.0) * 0.5 * (vocab - 2) as f32) as u32).collect()
}
