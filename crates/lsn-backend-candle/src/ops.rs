//! Building blocks shared by the model families: linear layers, RMSNorm, RoPE tables, attention masks, GQA attention,
//! FFN activations, the FFN tap reduction and the stable next-token NLL.

use std::sync::{Arc, Mutex};

use candle_core::{D, DType, Device, Result, Storage, Tensor};
use lsn_core::{Activation, AttentionKind, Family, ModelConfig, RopeScaling, TapReducer, TapStats};

/// `x @ wᵀ` for a 2-D `x` `[n, in]` and a HF weight `w` `[out, in]`.
pub(crate) fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.matmul(&w.t()?)
}

/// RMSNorm over the last axis, `x / sqrt(mean(x²) + eps) · alpha`, computed in f32.
/// Gemma's `(1 + w)` is folded into `alpha` at load time.
pub(crate) fn rms_norm(x: &Tensor, alpha: &Tensor, eps: f64) -> Result<Tensor> {
    candle_nn::ops::rms_norm(x, alpha, eps as f32)
}

/// The FFN activation `act_fn`.
pub(crate) fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    match act {
        Activation::Silu => x.silu(),
        Activation::GeluTanh => x.gelu(),
        Activation::Gelu => x.gelu_erf(),
    }
}

/// Inverse RoPE frequencies of a rotate-half head of width `head_dim`, computed in f32 exactly as HF transformers
/// does (`1 / base^(2i/d)`, then the optional scaling), so the angles agree to the last bit where possible.
pub(crate) fn inv_freqs(head_dim: usize, base: f64, scaling: Option<RopeScaling>) -> Vec<f32> {
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

/// cos/sin tables `[seq_len, head_dim/2]` for positions `0..seq_len`, as candle's rotate-half `rope` kernels take them,
/// plus a copy premultiplied by the attention scale for the queries (saves a pass over `q`; exact for the usual
/// power-of-two scales).
#[derive(Debug, Clone)]
pub(crate) struct Rope {
    cos: Tensor,
    sin: Tensor,
    cos_q: Tensor,
    sin_q: Tensor,
}

impl Rope {
    pub(crate) fn new(inv_freq: &[f32], seq_len: usize, q_scale: f64, device: &Device) -> Result<Self> {
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(seq_len * half);
        let mut sin = Vec::with_capacity(seq_len * half);
        for t in 0..seq_len {
            for &f in inv_freq {
                let angle = t as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let s = q_scale as f32;
        let (cos_q, sin_q): (Vec<f32>, Vec<f32>) = cos.iter().zip(&sin).map(|(c, n)| (c * s, n * s)).unzip();
        let t = |v: Vec<f32>| Tensor::from_vec(v, (seq_len, half), device);
        Ok(Self { cos: t(cos)?, sin: t(sin)?, cos_q: t(cos_q)?, sin_q: t(sin_q)? })
    }

    /// Rotates keys `[batch, seq, heads, head_dim]` (contiguous).
    pub(crate) fn keys(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::rotary_emb::rope_thd(x, &self.cos, &self.sin)
    }

    /// Rotates queries `[batch, seq, heads, head_dim]` (contiguous) and multiplies them by the attention scale.
    pub(crate) fn queries(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::rotary_emb::rope_thd(x, &self.cos_q, &self.sin_q)
    }
}

/// Additive causal mask `[seq_len, seq_len]`: 0 where key `j` is visible from query `i` (`j ≤ i`, and
/// `i − window < j` for a sliding window), −∞ elsewhere. The diagonal is always visible, so no row is all −∞.
pub(crate) fn causal_mask(seq_len: usize, window: Option<usize>, device: &Device) -> Result<Tensor> {
    let mut m = vec![f32::NEG_INFINITY; seq_len * seq_len];
    for i in 0..seq_len {
        let first = window.map_or(0, |w| (i + 1).saturating_sub(w));
        m[i * seq_len + first..=i * seq_len + i].fill(0.0);
    }
    Tensor::from_vec(m, (seq_len, seq_len), device)
}

/// A model's RoPE frequencies per attention kind, computed once at load; [`RopeFreqs::positions`] builds the tables
/// for one sequence length and keeps the last ones, since capture runs batch after batch of the same length.
#[derive(Debug)]
pub(crate) struct RopeFreqs {
    global: Vec<f32>,
    /// Frequencies and window of the sliding layers, when the model has any.
    sliding: Option<(Vec<f32>, usize)>,
    q_scale: f64,
    /// The tables of the last sequence length asked for (a model lives on one device).
    last: Mutex<Option<(usize, Arc<Positions>)>>,
}

impl RopeFreqs {
    pub(crate) fn new(cfg: &ModelConfig) -> Self {
        // Gemma 3 scales only its global layers' RoPE; the Llama family scales every layer's.
        let local_scaling = match cfg.family {
            Family::Gemma3 => None,
            Family::Llama => cfg.rope_scaling,
        };
        let sliding = cfg
            .sliding_window
            .filter(|_| cfg.layer_kinds.contains(&AttentionKind::Sliding))
            .map(|w| (inv_freqs(cfg.head_dim, cfg.rope_local_theta, local_scaling), w));
        let global = inv_freqs(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling);
        Self { global, sliding, q_scale: cfg.attn_scale, last: Mutex::new(None) }
    }

    /// RoPE tables and masks for positions `0..seq_len`, reused while the length stays the same.
    pub(crate) fn positions(&self, seq_len: usize, device: &Device) -> Result<Arc<Positions>> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, pos)) = last.as_ref().filter(|(len, _)| *len == seq_len) {
            return Ok(Arc::clone(pos));
        }
        let pos = Arc::new(self.build(seq_len, device)?);
        *last = Some((seq_len, Arc::clone(&pos)));
        Ok(pos)
    }

    fn build(&self, seq_len: usize, device: &Device) -> Result<Positions> {
        let global = (Rope::new(&self.global, seq_len, self.q_scale, device)?, causal_mask(seq_len, None, device)?);
        let sliding = match &self.sliding {
            Some((inv, window)) => {
                Some((Rope::new(inv, seq_len, self.q_scale, device)?, causal_mask(seq_len, Some(*window), device)?))
            }
            None => None,
        };
        Ok(Positions { global, sliding })
    }
}

/// The RoPE table and mask of each attention kind for one sequence length.
#[derive(Debug)]
pub(crate) struct Positions {
    global: (Rope, Tensor),
    sliding: Option<(Rope, Tensor)>,
}

impl Positions {
    /// The table and mask of a layer of this kind.
    pub(crate) fn of(&self, kind: AttentionKind) -> (&Rope, &Tensor) {
        match (kind, &self.sliding) {
            (AttentionKind::Sliding, Some((r, m))) => (r, m),
            _ => (&self.global.0, &self.global.1),
        }
    }
}

/// Scaled dot-product attention with grouped KV heads.
///
/// `q` `[b, t, heads, d]` (RoPE and the score scale already applied), `k`/`v` `[b, t, kv_heads, d]`;
/// `mask` `[t, t]` additive.
/// Query head `h` uses KV head `h / (heads / kv_heads)`, as HF's `repeat_kv`. The KV heads are never copied: each
/// KV head's query group is stacked along the sequence axis so one batched matmul serves the whole group.
/// Returns `[b·t, heads·d]`.
pub(crate) fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (b, t, heads, d) = q.dims4()?;
    let kv_heads = k.dim(2)?;
    let group = heads / kv_heads;
    let q = q.transpose(1, 2)?.contiguous()?.reshape((b, kv_heads, group * t, d))?;
    let k = k.transpose(1, 2)?.contiguous()?;
    let v = v.transpose(1, 2)?.contiguous()?;
    let scores = q.matmul(&k.t()?)?.reshape((b, kv_heads, group, t, t))?.broadcast_add(mask)?;
    let probs = candle_nn::ops::softmax_last_dim(&scores)?.reshape((b, kv_heads, group * t, t))?;
    probs.matmul(&v)?.reshape((b, heads, t, d))?.transpose(1, 2)?.contiguous()?.reshape((b * t, heads * d))
}

/// Hands each layer's FFN tap `a` `[b·t, intermediate]` to lsn-core's host reducer (the one definition of the tap
/// statistics). On the CPU device the activations are read in place; other devices copy them to the host first.
#[derive(Debug)]
pub(crate) struct TapCounter {
    /// Flat indices of the real tokens when the batch has padding; `None` when every position is real.
    real: Option<Vec<u32>>,
    reducer: TapReducer,
    layer: usize,
}

fn tap_err(e: lsn_core::Error) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

impl TapCounter {
    pub(crate) fn new(real: Option<Vec<u32>>, reducer: TapReducer) -> Self {
        Self { real, reducer, layer: 0 }
    }

    /// Reduces the next layer's activations over the real tokens.
    pub(crate) fn push(&mut self, a: &Tensor) -> Result<()> {
        let a = a.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.contiguous()?;
        let (storage, layout) = a.storage_and_layout();
        let Storage::Cpu(cpu) = &*storage else { candle_core::bail!("tap activations are not in host memory") };
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("tap input must be contiguous".into()))?;
        let data = &cpu.as_slice::<f32>()?[start..end];
        self.reducer.push(self.layer, data, self.real.as_deref()).map_err(tap_err)?;
        self.layer += 1;
        Ok(())
    }

    /// The statistics of all layers over `n_tokens` real tokens.
    pub(crate) fn finish(self, n_tokens: u64) -> Result<TapStats> {
        self.reducer.finish(n_tokens).map_err(tap_err)
    }
}

/// How many logits one head chunk may hold (f32 elements): bounds the memory of `Want::Logits`/`Want::Nll`.
const HEAD_CHUNK_ELEMS: usize = 1 << 25;

/// Positions per LM-head chunk for a vocabulary of `vocab`.
pub(crate) fn head_chunk(vocab: usize) -> usize {
    (HEAD_CHUNK_ELEMS / vocab.max(1)).max(1)
}

/// Final-logit soft-capping `cap · tanh(x / cap)`.
pub(crate) fn softcap(x: Tensor, cap: Option<f64>) -> Result<Tensor> {
    match cap {
        Some(c) => (x / c)?.tanh()? * c,
        None => Ok(x),
    }
}

/// `−log softmax(logits)[target]` per row of `logits` `[n, vocab]`, computed stably as
/// `log Σ exp(x − max) − (x[target] − max)`; the exponentials are summed in f64, since an f32 sum over a 262144-entry
/// vocabulary biases the NLL by about 1e-5. `targets` `[n]` u32; returns f32 `[n]`.
pub(crate) fn nll_rows(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let shifted = logits.broadcast_sub(&logits.max_keepdim(D::Minus1)?)?;
    let log_sum = shifted.to_dtype(DType::F64)?.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let picked = shifted.gather(&targets.unsqueeze(1)?, D::Minus1)?.to_dtype(DType::F64)?;
    (log_sum - picked)?.squeeze(1)?.to_dtype(DType::F32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_mask_matches_definition() {
        let m = causal_mask(5, Some(2), &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        for (i, row) in m.iter().enumerate() {
            for (j, &x) in row.iter().enumerate() {
                let visible = j <= i && (i as i64 - 2) < j as i64;
                assert_eq!(x == 0.0, visible, "({i}, {j})");
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
    fn nll_is_stable_for_large_negative_logits() {
        let logits = Tensor::new(&[[-100.0f32, -101.0, -300.0], [1e4, 0.0, -1e4]], &Device::Cpu).unwrap();
        let t = Tensor::new(&[1u32, 0], &Device::Cpu).unwrap();
        let nll = nll_rows(&logits, &t).unwrap().to_vec1::<f32>().unwrap();
        let want0 = 1.0 + (1.0f64 + (-1.0f64).exp()).ln();
        assert!((nll[0] as f64 - want0).abs() < 1e-5, "{nll:?}");
        assert!(nll[1].abs() < 1e-6, "{nll:?}");
    }

    #[test]
    fn tap_counter_skips_padding() {
        use lsn_core::Taps;
        let a = Tensor::new(&[[1.0f32, -1.0], [2.0, 0.0], [3.0, 5.0]], &Device::Cpu).unwrap();
        let mut c = TapCounter::new(Some(vec![0, 1]), TapReducer::new(2, 2, &Taps::COUNT_POS).unwrap());
        c.push(&a).unwrap();
        c.push(&a.neg().unwrap()).unwrap();
        assert_eq!(c.finish(2).unwrap().count_pos.unwrap(), vec![2, 0, 0, 1]);
    }
}
