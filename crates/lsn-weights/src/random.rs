//! Deterministic random-init checkpoints for tests: same config and seed ⇒ byte-identical files on every platform.

use std::path::Path;

use lsn_core::{Family, ModelConfig, expected_tensors, is_norm};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::atomic::Staging;
use crate::st_write::{Pending, write_f32_safetensors};
use crate::{Error, Result};

/// An approximately standard normal value: the sum of 12 uniforms minus 6 (Irwin–Hall). Only exact IEEE additions
/// and power-of-two scalings are involved, so the result is the same on every platform (no libm `ln`/`cos`).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let mut s = 0.0f64;
    for _ in 0..12 {
        s += (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    }
    s - 6.0
}

/// Values of tensor `name` (number `index` in the checkpoint) of shape `[rows, cols]` or `[len]`.
///
/// Matrices have std `1/sqrt(fan_in)` (embeddings `1/sqrt(hidden)`), so every projection maps O(1) inputs to O(1)
/// outputs and attention scores and logits stay O(1). Norm weights are `0.1·N` for Gemma (HF applies `1 + w`) and
/// `1 + 0.1·N` for Llama. Each tensor draws from its own ChaCha8 stream, so the order of writing does not matter.
fn values(cfg: &ModelConfig, seed: u64, index: usize, name: &str, shape: &[usize]) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64);
    let n: usize = shape.iter().product();
    let (mean, std) = if is_norm(name) {
        (if cfg.family == Family::Gemma3 { 0.0 } else { 1.0 }, 0.1)
    } else {
        let fan_in = if name.ends_with("embed_tokens.weight") { cfg.hidden_size } else { shape[shape.len() - 1] };
        (0.0, 1.0 / (fan_in as f64).sqrt())
    };
    (0..n).map(|_| (mean + std * normal(&mut rng)) as f32).collect()
}

/// Writes `config.json`, `model.safetensors` and a byte-level `tokenizer.json` ([`crate::byte_tokenizer`]) of a
/// random model for `cfg` into `out_dir` (atomically; a non-empty existing `out_dir` is refused).
pub fn write_random_model(cfg: &ModelConfig, seed: u64, out_dir: &Path) -> Result<()> {
    if cfg.to_hf().resolve()? != *cfg {
        return Err(lsn_core::Error::InvalidConfig(
            "this ModelConfig cannot be expressed as a config.json (it does not survive the round trip)".into(),
        )
        .into());
    }
    let staging = Staging::new(out_dir, false)?;
    let dir = staging.path();
    let pending: Vec<Pending<'_>> = expected_tensors(cfg)
        .into_iter()
        .enumerate()
        .map(|(i, spec)| {
            let (name, shape) = (spec.name.clone(), spec.shape.clone());
            Pending {
                name: spec.name,
                shape: spec.shape,
                fill: Box::new(move || Ok(values(cfg, seed, i, &name, &shape))),
            }
        })
        .collect();
    write_f32_safetensors(&dir.join("model.safetensors"), pending)?;
    let text = crate::hf_config::config_json(cfg);
    std::fs::write(dir.join("config.json"), text).map_err(|e| Error::io(dir.join("config.json"), e))?;
    let tok =
        serde_json::to_string(&crate::tokenizer::byte_tokenizer(cfg)?).map_err(|e| Error::Tokenizer(e.to_string()))?;
    std::fs::write(dir.join("tokenizer.json"), tok).map_err(|e| Error::io(dir.join("tokenizer.json"), e))?;
    staging.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_has_roughly_unit_variance() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let xs: Vec<f64> = (0..20_000).map(|_| normal(&mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.05 && (var - 1.0).abs() < 0.05, "mean {mean} var {var}");
    }
}
