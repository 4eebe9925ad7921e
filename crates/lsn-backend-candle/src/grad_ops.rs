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

/// `x·Wᵀ` for a frozen weight `w` `[out, in]` whose backward computes only `∂/∂x = g·W`. Candle's matmul backward
/// always computes (and stores) the gradient of both operands, so through a frozen weight a training pass paid a
/// weight-sized GEMM and buffer per linear that nothing reads — for the LM head in the next-token loss, a
/// `[vocab, hidden]` gradient per chunk. Here the product is computed outside the graph and attached to `x` by an op
/// whose forward passes it through and whose backward is `g·W`. CPU only (the op has a CPU kernel); elsewhere the
/// plain matmul.
pub(crate) fn frozen_linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || !x.track_op() {
        return crate::ops::linear(x, w);
    }
    let y = crate::ops::linear(&x.detach(), w)?;
    x.apply_op2(&y, FrozenLinear { w: w.clone() })
}

/// The op attaching a product computed outside the graph to `x`, with the backward `g·W`.
struct FrozenLinear {
    w: Tensor,
}

impl candle_core::CustomOp2 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(
        &self,
        _x: &candle_core::CpuStorage,
        _lx: &candle_core::Layout,
        y: &candle_core::CpuStorage,
        ly: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        // The forward passes the product through, copied.
        let candle_core::CpuStorage::F32(v) = y else { candle_core::bail!("frozen-linear takes f32") };
        let (start, end) = ly
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("frozen-linear: product not contiguous".into()))?;
        Ok((candle_core::CpuStorage::F32(v[start..end].to_vec()), ly.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _y: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad_res.matmul(&self.w)?), None))
    }
}
