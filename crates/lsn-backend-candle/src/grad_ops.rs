//! The differentiable forms of the decoder's fused Candle kernels, for training: Candle's fused RMSNorm, softmax and
//! RoPE kernels record no backward (a gradient would silently stop at them), so a training pass uses these instead —
//! on the CPU in f32, RMSNorm, the PyTorch-order GELU's derivative and the frozen linear are single-pass ops with
//! hand-written backwards (a profile of one XNLI step showed the compositions' temporaries and the graph's extra copies
//! costing a quarter of the time in page faults); elsewhere compositions of differentiable ops.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, D, DType, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

/// Rows handed to one rayon task by the row-wise kernels.
const ROWS_PER_TASK: usize = 32;

/// RMSNorm over the last axis, `x · rsqrt(mean(x²) + eps) · alpha`, differentiable in `x` (`alpha` is a frozen
/// weight and gets no gradient).
pub(crate) fn rms_norm(x: &Tensor, alpha: &Tensor, eps: f64) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 || alpha.dtype() != DType::F32 {
        return rms_norm_composed(x, alpha, eps);
    }
    let alpha = Arc::new(alpha.flatten_all()?.to_vec1::<f32>()?);
    x.contiguous()?.apply_op1(RmsNorm { alpha, eps: eps as f32 })
}

/// [`rms_norm`] from differentiable ops (every device and dtype).
pub(crate) fn rms_norm_composed(x: &Tensor, alpha: &Tensor, eps: f64) -> Result<Tensor> {
    let inv = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
    x.broadcast_mul(&inv)?.broadcast_mul(alpha)
}

/// The contiguous f32 values of a CPU storage.
pub(crate) fn f32s<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("{op} takes f32") };
    let (start, end) =
        l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg(format!("{op}: not contiguous")))?;
    Ok(&v[start..end])
}

/// `1 / sqrt(mean(x²) + eps)` of one row.
fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let ms = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
    1.0 / (ms + eps).sqrt()
}

/// RMSNorm with `alpha` `[d]` over rows of `d`; backward `∂x_j = r·α_j·g_j − x_j·r³·Σ_i x_i·α_i·g_i / d`.
struct RmsNorm {
    alpha: Arc<Vec<f32>>,
    eps: f32,
}

impl candle_core::CustomOp1 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm-train"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32s(s, l, "rms-norm-train")?;
        let (d, alpha) = (self.alpha.len(), &self.alpha);
        if d == 0 || x.len() % d != 0 {
            candle_core::bail!("rms-norm-train: {} values are not rows of {d}", x.len());
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(d * ROWS_PER_TASK).zip(x.par_chunks(d * ROWS_PER_TASK)).for_each(|(o, x)| {
            for (o, x) in o.chunks_mut(d).zip(x.chunks(d)) {
                let r = inv_rms(x, self.eps);
                for ((o, &x), &a) in o.iter_mut().zip(x).zip(alpha.iter()) {
                    *o = x * r * a;
                }
            }
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let op = RmsNormBwd { alpha: self.alpha.clone(), eps: self.eps };
        Ok(Some(arg.apply_op2_no_bwd(&grad_res.contiguous()?, &op)?))
    }
}

/// The gradient of [`RmsNorm`] with respect to `x`, from `x` and the output's gradient.
struct RmsNormBwd {
    alpha: Arc<Vec<f32>>,
    eps: f32,
}

impl candle_core::CustomOp2 for RmsNormBwd {
    fn name(&self) -> &'static str {
        "rms-norm-train-bwd"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, g) = (f32s(s1, l1, "rms-norm-train-bwd")?, f32s(s2, l2, "rms-norm-train-bwd")?);
        let (d, alpha) = (self.alpha.len(), &self.alpha);
        if x.len() != g.len() || d == 0 || x.len() % d != 0 {
            candle_core::bail!("rms-norm-train-bwd: {} values, {} gradients, rows of {d}", x.len(), g.len());
        }
        let mut out = vec![0f32; x.len()];
        let n = d * ROWS_PER_TASK;
        out.par_chunks_mut(n).zip(x.par_chunks(n).zip(g.par_chunks(n))).for_each(|(o, (x, g))| {
            for (o, (x, g)) in o.chunks_mut(d).zip(x.chunks(d).zip(g.chunks(d))) {
                let r = inv_rms(x, self.eps);
                let dot: f32 = x.iter().zip(g).zip(alpha.iter()).map(|((x, g), a)| x * g * a).sum();
                let k = r * r * r * dot / d as f32;
                for (((o, &x), &g), &a) in o.iter_mut().zip(x).zip(g).zip(alpha.iter()) {
                    *o = r * a * g - x * k;
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
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

/// `grad · GELU-tanh′(x)`: on the CPU in f32 one pass (`lsn_core::activation::gelu_tanh_grad_mul`), elsewhere
/// [`gelu_tanh_grad`]'s ops.
pub(crate) fn gelu_tanh_backward(x: &Tensor, grad: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 || grad.dtype() != DType::F32 {
        return grad.mul(&gelu_tanh_grad(x)?);
    }
    x.contiguous()?.apply_op2_no_bwd(&grad.contiguous()?, &GeluTanhBwd)
}

/// `grad · GELU-tanh′(x)` elementwise, from `x` and `grad`.
struct GeluTanhBwd;

impl candle_core::CustomOp2 for GeluTanhBwd {
    fn name(&self) -> &'static str {
        "gelu-tanh-bwd"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, g) = (f32s(s1, l1, "gelu-tanh-bwd")?, f32s(s2, l2, "gelu-tanh-bwd")?);
        if x.len() != g.len() {
            candle_core::bail!("gelu-tanh-bwd: {} values, {} gradients", x.len(), g.len());
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(1 << 14)
            .zip(x.par_chunks(1 << 14).zip(g.par_chunks(1 << 14)))
            .for_each(|(o, (x, g))| lsn_core::activation::gelu_tanh_grad_mul(x, g, o));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
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
/// `[vocab, hidden]` gradient per chunk. Here the product is computed outside the graph and handed to an op on `x`
/// that passes it through once (the graph keeps no second copy of it) and whose backward is `g·W`. CPU only (the op
/// has a CPU kernel); elsewhere the plain matmul.
pub(crate) fn frozen_linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || !x.track_op() {
        return crate::ops::linear(x, w);
    }
    let y = crate::ops::linear(&x.detach(), w)?;
    x.apply_op1(FrozenLinear { y: Mutex::new(Some(y)), w: w.clone() })
}

/// The op attaching a product computed outside the graph to `x`, with the backward `g·W`; the product is taken out
/// on the forward, so the graph holds only the op's output.
struct FrozenLinear {
    y: Mutex<Option<Tensor>>,
    w: Tensor,
}

impl candle_core::CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, _x: &CpuStorage, _lx: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = self
            .y
            .lock()
            .map_err(|_| candle_core::Error::Msg("frozen-linear: poisoned".into()))?
            .take()
            .ok_or_else(|| candle_core::Error::Msg("frozen-linear: the product was already used".into()))?;
        let (storage, layout) = y.storage_and_layout();
        let Storage::Cpu(cpu) = &*storage else { candle_core::bail!("frozen-linear: product not in host memory") };
        Ok((CpuStorage::F32(f32s(cpu, layout, "frozen-linear")?.to_vec()), layout.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.matmul(&crate::ops::widen(&self.w, grad_res.dtype())?)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    fn wavy(n: usize, f: f64, dims: &[usize]) -> Tensor {
        let x = Tensor::arange(0u32, n as u32, &Device::Cpu).unwrap().to_dtype(DType::F32).unwrap();
        ((x * f).unwrap().sin().unwrap() * 3.0).unwrap().reshape(dims).unwrap()
    }

    #[test]
    fn fused_rms_norm_matches_the_composition_forward_and_backward() {
        let x = Var::from_tensor(&wavy(3 * 4 * 8, 0.37, &[3, 4, 8])).unwrap();
        let alpha = Tensor::new(&[0.5f32, 1.0, 1.5, 2.0, -1.0, 0.1, 0.7, 1.2], &Device::Cpu).unwrap();
        let w = wavy(3 * 4 * 8, 0.11, &[3, 4, 8]);
        let fused = rms_norm(x.as_tensor(), &alpha, 1e-6).unwrap();
        let composed = rms_norm_composed(x.as_tensor(), &alpha, 1e-6).unwrap();
        assert!(max_diff(&fused, &composed) < 1e-5);
        let g =
            |y: &Tensor| y.mul(&w).unwrap().sum_all().unwrap().backward().unwrap().get(x.as_tensor()).unwrap().clone();
        let (gf, gc) = (g(&fused), g(&composed));
        assert!(max_diff(&gf, &gc) < 1e-5, "{gf} {gc}");
    }

    #[test]
    fn fused_gelu_derivative_matches_the_composition() {
        let x = wavy(4096, 0.013, &[4096]).affine(2.4, 0.0).unwrap(); // −7.2 … 7.2
        let g = wavy(4096, 0.07, &[4096]);
        let fused = gelu_tanh_backward(&x, &g).unwrap();
        let composed = g.mul(&gelu_tanh_grad(&x).unwrap()).unwrap();
        assert!(max_diff(&fused, &composed) < 1e-5);
    }

    #[test]
    fn frozen_linear_passes_the_product_through_and_back() {
        let x = Var::from_tensor(&wavy(5 * 6, 0.3, &[5, 6])).unwrap();
        let w = wavy(4 * 6, 0.5, &[4, 6]);
        let y = frozen_linear(x.as_tensor(), &w).unwrap();
        assert!(max_diff(&y, &crate::ops::linear(x.as_tensor(), &w).unwrap()) < 1e-6);
        let gy = wavy(5 * 4, 0.9, &[5, 4]);
        let gx = y.mul(&gy).unwrap().sum_all().unwrap().backward().unwrap().get(x.as_tensor()).unwrap().clone();
        assert!(max_diff(&gx, &gy.matmul(&w).unwrap()) < 1e-6);
    }
}
