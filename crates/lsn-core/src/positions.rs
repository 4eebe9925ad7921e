//! The per-model numeric rules every backend must apply identically: RoPE inverse frequencies (with linear or
//! Llama-3 scaling, and Gemma 3's rule that only global layers are scaled), the cos/sin tables, which keys a query
//! sees (causal, optionally within a sliding window), and Gemma's embedding scale.

use crate::{AttentionKind, ModelConfig, RopeScaling};

/// Inverse RoPE frequencies of a rotate-half head of width `head_dim`, computed in f32 exactly as HF transformers
/// does (`1 / base^(2i/d)`, then the optional scaling), so the angles agree to the last bit where possible.
pub fn inv_freqs(head_dim: usize, base: f64, scaling: Option<RopeScaling>) -> Vec<f32> {
    let base = base as f32;
    let inv: Vec<f32> = (0..head_dim / 2).map(|i| 1.0 / base.powf((2 * i) as f32 / head_dim as f32)).collect();
    match scaling {
        None => inv,
        Some(RopeScaling::Linear { factor }) => inv.iter().map(|f| f / factor as f32).collect(),
        Some(RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings }) => {
            let (factor, low, high) = (factor as f32, low_freq_factor as f32, high_freq_factor as f32);
            let old = original_max_position_embeddings as f32;
            let (low_wavelen, high_wavelen) = (old / low, old / high);
            inv.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    let scaled = if wavelen > low_wavelen { f / factor } else { f };
                    if wavelen < high_wavelen || wavelen > low_wavelen {
                        scaled
                    } else {
                        let smooth = (old / wavelen - low) / (high - low);
                        (1.0 - smooth) * scaled / factor + smooth * scaled
                    }
                })
                .collect()
        }
    }
}

/// The RoPE frequencies and attention window of one kind of layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPositions {
    pub inv_freqs: Vec<f32>,
    /// Sliding window: key `j` is visible from query `i` when `i − window < j ≤ i`; `None` = plain causal.
    pub window: Option<usize>,
}

/// The frequencies and window of layers of `kind`. Sliding layers use `rope_local_theta` and, in Gemma 3, no RoPE
/// scaling (Gemma scales only its global layers; the Llama family scales every layer).
pub fn layer_positions(cfg: &ModelConfig, kind: AttentionKind) -> LayerPositions {
    match (kind, cfg.sliding_window) {
        (AttentionKind::Sliding, Some(window)) => {
            // A family whose sliding layers have their own base (Gemma 3) scales only its global layers.
            let scaling = if cfg.family.spec().local_rope_theta.is_some() { None } else { cfg.rope_scaling };
            LayerPositions { inv_freqs: inv_freqs(cfg.head_dim, cfg.rope_local_theta, scaling), window: Some(window) }
        }
        _ => LayerPositions { inv_freqs: inv_freqs(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling), window: None },
    }
}

/// cos and sin tables `[seq_len, inv_freqs.len()]` for positions `0..seq_len` (angle `t · f` in f32).
pub fn rope_tables(inv_freqs: &[f32], seq_len: usize) -> (Vec<f32>, Vec<f32>) {
    rope_at(inv_freqs, (0..seq_len).map(|t| t as u32))
}

/// cos and sin tables `[positions, inv_freqs.len()]` for the given positions, one row each (the rule of
/// [`rope_tables`], for cached steps whose rows sit at different positions).
pub fn rope_at(inv_freqs: &[f32], positions: impl ExactSizeIterator<Item = u32>) -> (Vec<f32>, Vec<f32>) {
    let n = positions.len() * inv_freqs.len();
    let (mut cos, mut sin) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for t in positions {
        for &f in inv_freqs {
            let angle = t as f32 * f;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    (cos, sin)
}

/// Additive causal mask `[seq_len, seq_len]`: 0 where key `j` is visible from query `i` (`j ≤ i`, and
/// `i − window < j` for a sliding window), −∞ elsewhere. The diagonal is always visible, so no row is all −∞.
pub fn causal_mask(seq_len: usize, window: Option<usize>) -> Vec<f32> {
    let mut m = vec![f32::NEG_INFINITY; seq_len * seq_len];
    for i in 0..seq_len {
        let first = window.map_or(0, |w| (i + 1).saturating_sub(w));
        m[i * seq_len + first..=i * seq_len + i].fill(0.0);
    }
    m
}

/// The factor token embeddings are multiplied by: √hidden rounded to f32 for Gemma 3 (as HF's
/// `Gemma3TextScaledWordEmbedding`), none for the Llama family.
pub fn embed_scale(cfg: &ModelConfig) -> Option<f32> {
    cfg.family.spec().embed_scale.then(|| (cfg.hidden_size as f64).sqrt() as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_mask_matches_definition() {
        let m = causal_mask(5, Some(2));
        for i in 0..5 {
            for j in 0..5 {
                let visible = j <= i && (i as i64 - 2) < j as i64;
                assert_eq!(m[i * 5 + j] == 0.0, visible, "({i}, {j})");
            }
        }
    }

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let plain = inv_freqs(128, 500_000.0, None);
        let s = inv_freqs(
            128,
            500_000.0,
            Some(RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            }),
        );
        assert_eq!(s[0], plain[0]);
        assert_eq!(s[63], plain[63] / 8.0);
        assert!(s.iter().zip(&plain).all(|(a, b)| a <= b && *a >= b / 8.0));
    }

    #[test]
    fn tables_hold_cos_and_sin_of_position_times_frequency() {
        let (cos, sin) = rope_tables(&[1.0, 0.5], 3);
        assert_eq!(cos.len(), 6);
        assert_eq!(cos[2 * 2 + 1], (2.0f32 * 0.5).cos());
        assert_eq!(sin[2], 1.0f32.sin());
    }
}
