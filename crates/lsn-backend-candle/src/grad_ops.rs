//! The differentiable forms of the decoder's fused Candle kernels, for training: Candle's fused RMSNorm, softmax and
//! RoPE kernels record no backward (a gradient would silently stop at them), so a training pass uses these
//! compositions of differentiable ops instead; the PyTorch-order GELU op gets its own backward.

use candle_core::{D, Result, Tensor};

/// RMSNorm over the last axis, `x · rsqrt(mean(x²) + eps) · alpha`, from differentiable ops.
pub(crate) fn rms_norm(x: &Tensor, alpha: &Tensor, eps: f64) -> Result<Tensor> {
    let inv = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
    x.broadcast_mul(&inv)?.broadcast_mul(alpha)
}

/// Softmax over the last axis, from differentiable ops (max-shifted).
pub(crate) fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let e = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// Rotate-half RoPE of `x` `[b, t, heads, d]` with tables `[t, d/2]`: `(x₁·cos − x₂·sin, x₂·cos + x₁·sin)`.
pub(crate) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (_, t, _, d) = x.dims4()?;
    let half = d / 2;
    let cos = cos.reshape((1, t, 1, half))?;
    let sin = sin.reshape((1, t, 1, half))?;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let a = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
    let b = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
    Tensor::cat(&[a, b], D::Minus1)
}

/// d/dx of GELU-tanh: `0.5·(1 + tanh u) + 0.5·x·(1 − tanh² u)·√(2/π)·(1 + 3·0.044715·x²)`, `u = √(2/π)(x +
/// 0.044715x³)`.
pub(crate) fn gelu_tanh_grad(x: &Tensor) -> Result<Tensor> {
    const K: f64 = 0.797_884_560_802_865_4; // √(2/π)
    const C: f64 = 0.044_715;
    let x2 = x.sqr()?;
    let u = ((x * &x2)? * C + x)?.affine(K, 0.0)?;
    let t = u.tanh()?;
    let left = ((&t + 1.0)? * 0.5)?;
    let sech2 = (t.sqr()?.neg()? + 1.0)?;
    let du = ((x2 * (3.0 * C))? + 1.0)?.affine(K, 0.0)?;
    left + ((x * 0.5)? * sech2)?.mul(&du)?
}
