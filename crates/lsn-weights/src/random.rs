//! Deterministic random-init checkpoints for tests: same config and seed ⇒ byte-identical files on every platform.

use std::path::Path;

use lsn_core::{ModelConfig, WeightDType, expected_tensors, is_norm};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::atomic::Staging;
use crate::st_write::{Pending, write_safetensors};
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
    let n: usize = shape.iter().product();
    let (mean, std) = if is_norm(name) {
        (if cfg.family.spec().norm_plus_one { 0.0 } else { 1.0 }, 0.1)
    } else {
        let fan_in = if name.ends_with("embed_tokens.weight") { cfg.hidden_size } else { shape[shape.len() - 1] };
        (0.0, 1.0 / (fan_in as f64).sqrt())
    };
    let threads = if n >= PARALLEL_FROM { std::thread::available_parallelism().map_or(1, |t| t.get()) } else { 1 };
    let mut out = vec![0f32; n];
    fill(&mut out, seed, index as u64, mean, std, threads);
    out
}

/// Tensors of at least this many values are drawn on every core (an 8B-shaped model has 8·10⁹).
const PARALLEL_FROM: usize = 1 << 22;

/// ChaCha8 words one value consumes: 12 `u64` draws of two words each.
const WORDS_PER_VALUE: u128 = 24;

/// `out[i] = mean + std·N_i` with `N_i` the `i`-th normal of the stream `(seed, stream)`. Each thread jumps to its
/// first value's word, so the values do not depend on `threads`.
fn fill(out: &mut [f32], seed: u64, stream: u64, mean: f64, std: f64, threads: usize) {
    let per = out.len().div_ceil(threads.max(1)).max(1);
    let work = |start: usize, chunk: &mut [f32]| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        rng.set_word_pos(WORDS_PER_VALUE * start as u128);
        for o in chunk {
            *o = (mean + std * normal(&mut rng)) as f32;
        }
    };
    if threads <= 1 {
        return work(0, out);
    }
    std::thread::scope(|s| {
        for (c, chunk) in out.chunks_mut(per).enumerate() {
            s.spawn(move || work(c * per, chunk));
        }
    });
}

/// Writes `config.json`, `model.safetensors` and a byte-level `tokenizer.json` ([`crate::byte_tokenizer`]) of a
/// random model for `cfg` into `out_dir` (atomically; a non-empty existing `out_dir` is refused).
pub fn write_random_model(cfg: &ModelConfig, seed: u64, out_dir: &Path) -> Result<()> {
    write_random_model_as(cfg, seed, out_dir, WeightDType::F32)
}

/// [`write_random_model`] with the weights stored as `dtype` (bf16: the f32 values rounded to nearest even).
pub fn write_random_model_as(cfg: &ModelConfig, seed: u64, out_dir: &Path, dtype: WeightDType) -> Result<()> {
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
    write_safetensors(&dir.join("model.safetensors"), pending, &Default::default(), dtype)?;
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

    #[test]
    fn parallel_draws_equal_the_sequential_stream() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        rng.set_stream(4);
        let sequential: Vec<f32> = (0..1001).map(|_| (0.5 + 0.1 * normal(&mut rng)) as f32).collect();
        for threads in [1, 2, 3, 7] {
            let mut out = vec![0f32; 1001];
            fill(&mut out, 9, 4, 0.5, 0.1, threads);
            assert_eq!(out, sequential, "{threads} threads");
        }
    }

    #[test]
    fn bf16_model_holds_the_rounded_f32_values() {
        let (_, cfg) = crate::tiny_configs().into_iter().next().unwrap();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_random_model(&cfg, 5, a.path()).unwrap();
        write_random_model_as(&cfg, 5, &b.path().join("m"), WeightDType::Bf16).unwrap();
        let (fa, fb) = (
            std::fs::read(a.path().join("model.safetensors")).unwrap(),
            std::fs::read(b.path().join("m/model.safetensors")).unwrap(),
        );
        assert!(fb.len() < fa.len() / 2 + 4096);
        let (ra, rb) = (
            crate::TensorReader::open(&crate::open_checkpoint(a.path()).unwrap()).unwrap(),
            crate::TensorReader::open(&crate::open_checkpoint(&b.path().join("m")).unwrap()).unwrap(),
        );
        for name in ["model.embed_tokens.weight", "model.layers.2.mlp.down_proj.weight", "model.norm.weight"] {
            let (_, x) = ra.read::<half::bf16>(name).unwrap();
            let (_, y) = rb.read::<half::bf16>(name).unwrap();
            assert_eq!(x, y, "{name}");
        }
    }
}
