//! Building blocks shared by the model families on libtorch: linear layers, RMSNorm, FFN activations, RoPE tables
//! and masks (from lsn-core's rules), grouped-query attention, soft-capping and the stable next-token NLL.

use lsn_core::positions::{self, LayerPositions};
use lsn_core::{Activation, AttentionKind, ModelConfig};
use tch::{Device, Kind, TchError, Tensor};

type Result<T> = std::result::Result<T, TchError>;

/// Rows up to which a body linear on the CPU is computed as `(w @ xᵀ)ᵀ` rather than `x @ wᵀ`: for a few rows (a
/// cached decode step) MKL's sgemm spends more time packing the transposed weight than multiplying. Measured on the
/// 2-core CI machine, 4 rows × Gemma-3-270M's [2048, 640] and [640, 2048]: 0.24 → 0.16 ms and 0.23 → 0.16 ms; from 6
/// to 12 rows neither form wins consistently, from 128 on they tie.
const FEW_ROWS: i64 = 4;

/// `x @ wᵀ` for `x` `[.., in]` and a HF weight `w` `[out, in]`.
pub(crate) fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    product(x, w, FEW_ROWS)
}

/// [`linear`] for the LM head, whose weight is vocabulary-wide ([262144, 640] on Gemma 3): on the CPU always as
/// `(w @ xᵀ)ᵀ`, where MKL does not copy the 671 MB weight on every call. Measured on the CI machine (2 threads), ms
/// per product for `x @ wᵀ` → `(w @ xᵀ)ᵀ`: 4 rows 83–124 → 21–29, 16 rows 82–133 → 69–80, 128 rows (a scoring chunk)
/// 451 → 295.
pub(crate) fn head_linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    product(x, w, i64::MAX)
}

/// `x @ wᵀ` in `x`'s kind (a bf16 weight widened for the product), as `(w @ xᵀ)ᵀ` on the CPU when `x` has at most
/// `weight_first_rows` rows.
fn product(x: &Tensor, w: &Tensor, weight_first_rows: i64) -> Result<Tensor> {
    let widened;
    let w = if w.kind() == x.kind() {
        w
    } else {
        widened = w.f_to_kind(x.kind())?;
        &widened
    };
    let (out, inp) = w.size2()?;
    let flat = x.f_reshape([-1, inp])?;
    if x.device() != Device::Cpu || flat.size()[0] > weight_first_rows {
        return x.f_linear::<Tensor>(w, None);
    }
    let mut shape = x.size();
    if let Some(last) = shape.last_mut() {
        *last = out;
    }
    w.f_mm(&flat.f_tr()?)?.f_tr()?.f_reshape(shape)
}

/// RMSNorm over the last axis in f32, `x · rsqrt(mean(x²) + eps) · alpha` (Gemma's `1 + w` is folded into `alpha`).
pub(crate) fn rms_norm(x: &Tensor, alpha: &Tensor, eps: f64) -> Result<Tensor> {
    let inv = x.f_square()?.f_mean_dim(-1, true, Kind::Float)?.f_add_scalar(eps)?.f_rsqrt()?;
    x.f_mul(&inv)?.f_mul(alpha)
}

/// The FFN activation `act_fn`.
pub(crate) fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    match act {
        Activation::Silu => x.f_silu(),
        Activation::GeluTanh => x.f_gelu("tanh"),
        Activation::Gelu => x.f_gelu("none"),
    }
}

/// Rotate-half RoPE: cos/sin `[1, t, 1, head_dim]` for one sequence length, or `[b, t, 1, head_dim]` with a position
/// per row (each half repeated), and a copy of both premultiplied by the attention scale for the queries (the scale
/// then costs nothing per pass; exact for the usual power-of-two scales).
pub(crate) struct Rope {
    cos: Tensor,
    sin: Tensor,
    cos_q: Tensor,
    sin_q: Tensor,
}

impl Rope {
    fn new(inv_freqs: &[f32], seq_len: usize, q_scale: f64, device: Device) -> Result<Self> {
        let (cos, sin) = positions::rope_tables(inv_freqs, seq_len);
        Self::from_tables(&cos, &sin, (1, seq_len, inv_freqs.len()), q_scale, device)
    }

    /// From tables `[rows · t, half]`.
    fn from_tables(
        cos: &[f32],
        sin: &[f32],
        (rows, t, half): (usize, usize, usize),
        q_scale: f64,
        device: Device,
    ) -> Result<Self> {
        let (rows, t, half) = (rows as i64, t as i64, half as i64);
        let table = |v: &[f32]| -> Result<Tensor> {
            let x = Tensor::f_from_slice(v)?.f_reshape([rows * t, half])?;
            Tensor::f_cat(&[&x, &x], -1)?.f_reshape([rows, t, 1, 2 * half])?.f_to_device(device)
        };
        let (cos, sin) = (table(cos)?, table(sin)?);
        Ok(Self { cos_q: cos.f_mul_scalar(q_scale)?, sin_q: sin.f_mul_scalar(q_scale)?, cos, sin })
    }

    /// Rotates `x` `[b, t, heads, head_dim]`: `x · cos + rotate_half(x) · sin`; queries also by the attention scale.
    pub(crate) fn apply(&self, x: &Tensor, query: bool) -> Result<Tensor> {
        let (cos, sin) = if query { (&self.cos_q, &self.sin_q) } else { (&self.cos, &self.sin) };
        let d = *x.size().last().unwrap_or(&0);
        let x1 = x.f_narrow(-1, 0, d / 2)?;
        let x2 = x.f_narrow(-1, d / 2, d / 2)?;
        let rotated = Tensor::f_cat(&[&x2.f_neg()?, &x1], -1)?;
        x.f_mul(cos)?.f_add(&rotated.f_mul(sin)?)
    }
}

/// RoPE table and additive mask of each attention kind for one sequence length (masks `[t, t]`) or one cached step
/// (masks `[b, 1, t, s]`).
pub(crate) struct Positions {
    seq_len: usize,
    global: (Rope, Tensor),
    sliding: Option<(Rope, Tensor)>,
}

impl Positions {
    /// The tables and masks lsn-core computed for a cached step.
    pub(crate) fn of_step(step: &lsn_core::Step<'_>, q_scale: f64, device: Device) -> Result<Self> {
        let (rows, len, total) = (step.rows, step.len, step.past + step.len);
        let build = |p: &lsn_core::StepPositions| -> Result<(Rope, Tensor)> {
            let half = p.cos.len() / (rows * len).max(1);
            let mask = Tensor::f_from_slice(&p.mask)?
                .f_reshape([rows as i64, 1, len as i64, total as i64])?
                .f_to_device(device)?;
            Ok((Rope::from_tables(&p.cos, &p.sin, (rows, len, half), q_scale, device)?, mask))
        };
        let global = build(step.of(AttentionKind::Global))?;
        let sliding = step.positions.iter().find(|p| p.kind == AttentionKind::Sliding).map(build).transpose()?;
        Ok(Self { seq_len: len, global, sliding })
    }

    fn build(kind: &LayerPositions, seq_len: usize, q_scale: f64, device: Device) -> Result<(Rope, Tensor)> {
        let mask = Tensor::f_from_slice(&positions::causal_mask(seq_len, kind.window))?
            .f_reshape([seq_len as i64, seq_len as i64])?
            .f_to_device(device)?;
        Ok((Rope::new(&kind.inv_freqs, seq_len, q_scale, device)?, mask))
    }

    /// The tables of `cfg` for `seq_len`, reusing `last` when it has that length (capture runs batch after batch of
    /// one length).
    pub(crate) fn for_len<'a>(
        last: &'a mut Option<Positions>,
        cfg: &ModelConfig,
        seq_len: usize,
        device: Device,
    ) -> Result<&'a Positions> {
        if let Some(p) = last.take_if(|p| p.seq_len == seq_len) {
            return Ok(last.insert(p));
        }
        let build = |kind| Self::build(&positions::layer_positions(cfg, kind), seq_len, cfg.attn_scale, device);
        let global = build(AttentionKind::Global)?;
        let sliding =
            if cfg.layer_kinds.contains(&AttentionKind::Sliding) { Some(build(AttentionKind::Sliding)?) } else { None };
        Ok(last.insert(Positions { seq_len, global, sliding }))
    }

    /// The table and mask of a layer of this kind.
    pub(crate) fn of(&self, kind: AttentionKind) -> (&Rope, &Tensor) {
        match (kind, &self.sliding) {
            (AttentionKind::Sliding, Some((r, m))) => (r, m),
            _ => (&self.global.0, &self.global.1),
        }
    }
}

/// Dot-product attention with grouped KV heads (query head `h` uses KV head `h / (heads / kv_heads)`, as HF's
/// `repeat_kv`). `q` `[b, heads, t, d]` (RoPE and the attention scale applied), `k`/`v` `[b, kv_heads, s, d]` after
/// RoPE; `mask` additive, `[t, t]` or `[b, 1, t, s]`; scores soft-capped by `cap` where given (before the mask: the
/// composed form, since the fused kernel has no soft-cap). Returns `[b, t, heads·d]`.
pub(crate) fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, cap: Option<f64>) -> Result<Tensor> {
    let (b, heads, t, d) = q.size4()?;
    let out = match cap {
        None => Tensor::f_scaled_dot_product_attention(q, k, v, Some(mask), 0.0, false, 1.0, true)?,
        Some(_) => {
            let group = heads / k.size()[1];
            let k = k.f_repeat_interleave_self_int(group, 1, None)?;
            let v = v.f_repeat_interleave_self_int(group, 1, None)?;
            let scores = softcap(q.f_matmul(&k.f_transpose(-2, -1)?)?, cap)?.f_add(mask)?;
            scores.f_softmax(-1, Kind::Float)?.f_matmul(&v)?
        }
    };
    out.f_transpose(1, 2)?.f_contiguous()?.f_reshape([b, t, heads * d])
}

/// Soft-capping `cap · tanh(x / cap)` (final logits, and Gemma 2's attention scores).
pub(crate) fn softcap(x: Tensor, cap: Option<f64>) -> Result<Tensor> {
    match cap {
        Some(c) => x.f_div_scalar(c)?.f_tanh()?.f_mul_scalar(c),
        None => Ok(x),
    }
}

/// `−log softmax(logits)[target]` per row of `logits` `[n, vocab]`, with the log-sum-exp in f64 (an f32 sum over a
/// 262144-entry vocabulary biases the NLL by about 1e-5). `targets` `[n]` i64; returns f32 `[n]`.
pub(crate) fn nll_rows(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let wide = logits.f_to_kind(Kind::Double)?;
    let lse = wide.f_logsumexp([-1], false)?;
    let picked = wide.f_gather(1, &targets.f_unsqueeze(1)?, false)?.f_squeeze_dim(1)?;
    lse.f_sub(&picked)?.f_to_kind(Kind::Float)
}

/// A host copy of `t` as a flat f32/i64/f64 vector.
pub(crate) fn to_vec<T: tch::kind::Element + Copy>(t: &Tensor) -> Result<Vec<T>> {
    let flat = t.f_to_device(Device::Cpu)?.f_to_kind(T::KIND)?.f_contiguous()?.f_reshape([-1])?;
    Vec::<T>::try_from(&flat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nll_is_stable_for_large_negative_logits() {
        let logits = Tensor::from_slice(&[-100.0f32, -101.0, -300.0, 1e4, 0.0, -1e4]).reshape([2, 3]);
        let t = Tensor::from_slice(&[1i64, 0]);
        let nll: Vec<f32> = to_vec(&nll_rows(&logits, &t).unwrap()).unwrap();
        let want0 = 1.0 + (1.0f64 + (-1.0f64).exp()).ln();
        assert!((nll[0] as f64 - want0).abs() < 1e-5, "{nll:?}");
        assert!(nll[1].abs() < 1e-6, "{nll:?}");
    }

    #[test]
    fn rope_rotates_pairs_by_position_angle() {
        let rope = Rope::new(&[1.0, 0.0], 2, 0.5, Device::Cpu).unwrap();
        // Position 1, head_dim 4: the pair (x0, x2) turns by 1 rad, the pair (x1, x3) by 0.
        let x = Tensor::from_slice(&[0.0f32, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0]).reshape([1, 2, 1, 4]);
        let y: Vec<f32> = to_vec(&rope.apply(&x, false).unwrap()).unwrap();
        let (c, s) = (1.0f32.cos(), 1.0f32.sin());
        assert!((y[4] - c).abs() < 1e-6 && (y[6] - s).abs() < 1e-6, "{y:?}");
        assert!((y[5] - 2.0).abs() < 1e-6 && y[7].abs() < 1e-6, "{y:?}");
        // Queries come out multiplied by the attention scale.
        let yq: Vec<f32> = to_vec(&rope.apply(&x, true).unwrap()).unwrap();
        assert!(yq.iter().zip(&y).all(|(a, b)| (a - 0.5 * b).abs() < 1e-7), "{yq:?}");
    }
}
