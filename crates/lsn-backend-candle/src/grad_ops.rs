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

/// `x·Wᵀ + (x·Aᵀ)·Bᵀ` for a frozen weight `w` `[out, in]` and adapter factors `a` `[r, in]`, `b` `[out, r]` (scale
/// and mask already in `b`), differentiable in all three but `w`: the graph holds the sum alone, not the base
/// product, the low-rank product and the sum (two output-sized tensors fewer per adapted linear). Backward, with
/// `g` the output's gradient: `∂x = g·W + (g·B)·A`, `∂A = (g·B)ᵀ·x`, `∂B = gᵀ·(x·Aᵀ)`. CPU only; elsewhere the
/// composition.
pub(crate) fn lora_linear(x: &Tensor, w: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    use crate::ops::linear;
    if !x.device().is_cpu() || x.dtype() != DType::F32 || !(x.track_op() || a.track_op() || b.track_op()) {
        return frozen_linear(x, w)? + linear(&linear(x, a)?, b)?;
    }
    let xd = x.detach();
    let y = (linear(&xd, w)? + linear(&linear(&xd, &a.detach())?, &b.detach())?)?;
    x.apply_op3(a, b, LoraLinear { y: Mutex::new(Some(y.contiguous()?)), w: w.clone() })
}

/// The op of [`lora_linear`]: passes the sum computed outside the graph through once.
struct LoraLinear {
    y: Mutex<Option<Tensor>>,
    w: Tensor,
}

impl candle_core::CustomOp3 for LoraLinear {
    fn name(&self) -> &'static str {
        "lora-linear"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        take_host(&self.y, "lora-linear")
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n_in, n_out) = (x.dim(D::Minus1)?, g.dim(D::Minus1)?);
        let (x2, g2) = (x.reshape(((), n_in))?, g.contiguous()?.reshape(((), n_out))?);
        let gb = g2.matmul(b)?; // [n, r]
        let dx = if x.track_op() {
            let w = crate::ops::widen(&self.w, g.dtype())?;
            Some((g2.matmul(&w)? + gb.matmul(a)?)?.reshape(x.shape())?)
        } else {
            None
        };
        let da = a.track_op().then(|| gb.t()?.matmul(&x2)).transpose()?;
        let db = b.track_op().then(|| g2.t()?.matmul(&crate::ops::linear(&x2, a)?)).transpose()?;
        Ok((dx, da, db))
    }
}

/// The host f32 values of the tensor in `slot`, taken out of it (an attached op's forward).
fn take_host(slot: &Mutex<Option<Tensor>>, name: &str) -> Result<(CpuStorage, Shape)> {
    let y = slot
        .lock()
        .map_err(|_| candle_core::Error::Msg(format!("{name}: poisoned")))?
        .take()
        .ok_or_else(|| candle_core::Error::Msg(format!("{name}: the value was already used")))?;
    let (storage, layout) = y.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { candle_core::bail!("{name}: value not in host memory") };
    Ok((CpuStorage::F32(f32s(cpu, layout, name)?.to_vec()), layout.shape().clone()))
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
/// `[vocab, hidden]` gradient per chunk. Here the product is computed outside the graph and [`attach`]ed to `x`.
/// CPU only; elsewhere the plain matmul.
pub(crate) fn frozen_linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !attachable(x) {
        return crate::ops::linear(x, w);
    }
    let y = crate::ops::linear(&x.detach(), w)?;
    let w = w.clone();
    attach(x, y, "frozen-linear", move |_, g| g.matmul(&crate::ops::widen(&w, g.dtype())?))
}

/// Rotate-half RoPE of `x` `[b, t, heads, d]` (tables `[t, d/2]`) by Candle's fused kernel, differentiable: the
/// backward rotates the gradient back (the same kernel with `−sin`). The composition [`rope`] held seven
/// `x`-sized temporaries per call in a training graph; this holds the output alone. CPU f32; elsewhere [`rope`].
pub(crate) fn rope_fused(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if !attachable(x) || x.dtype() != DType::F32 {
        return rope(x, cos, sin);
    }
    let y = candle_nn::rotary_emb::rope_thd(&x.detach().contiguous()?, cos, sin)?;
    let (cos, back) = (cos.clone(), sin.neg()?);
    attach(x, y, "rope-train", move |_, g| candle_nn::rotary_emb::rope_thd(&g.contiguous()?, &cos, &back))
}

/// Softmax over the last axis by Candle's fused kernel, differentiable: `∂x = y·(g − Σ y·g)`. CPU f32; elsewhere
/// [`softmax_last_dim`].
pub(crate) fn softmax_fused(x: &Tensor) -> Result<Tensor> {
    if !attachable(x) || x.dtype() != DType::F32 {
        return softmax_last_dim(x);
    }
    let y = candle_nn::ops::softmax_last_dim(&x.detach())?;
    attach(x, y, "softmax-train", |y, g| {
        let gy = (g * y)?;
        gy.broadcast_sub(&y.broadcast_mul(&gy.sum_keepdim(D::Minus1)?)?)
    })
}

/// Rows `t` `[n, w]` placed at rows `idx` (u32 `[n]`, distinct) of a zero `[len, w]`, differentiable in `t` (the
/// backward gathers the gradient's rows `idx`); the graph holds no zero tensor or gradient for it.
pub(crate) fn scatter_rows(t: &Tensor, idx: &Tensor, len: usize) -> Result<Tensor> {
    let place = |t: &Tensor| Tensor::zeros((len, t.dim(1)?), t.dtype(), t.device())?.index_add(idx, t, 0);
    if !attachable(t) || t.dtype() != DType::F32 {
        return place(t);
    }
    let y = place(&t.detach())?;
    let idx = idx.clone();
    attach(t, y, "scatter-rows", move |_, g| g.contiguous()?.index_select(&idx, 0))
}

/// Whether [`attach`] applies: `x` is on the CPU and part of a graph.
fn attachable(x: &Tensor) -> bool {
    x.device().is_cpu() && x.track_op()
}

/// The backward of an [`Attached`] value: `(output, output's gradient) → input's gradient`.
type Backward = Box<dyn Fn(&Tensor, &Tensor) -> Result<Tensor> + Send + Sync>;

/// `y` (f32, host, computed outside the graph from `x`, e.g. by a fused kernel that records no backward) as a
/// differentiable function of `x` whose backward is `bwd(y, ∂y) = ∂x`. The op passes `y` through once and drops
/// it, so the graph holds the op's output alone.
fn attach(
    x: &Tensor,
    y: Tensor,
    name: &'static str,
    bwd: impl Fn(&Tensor, &Tensor) -> Result<Tensor> + Send + Sync + 'static,
) -> Result<Tensor> {
    x.apply_op1(Attached { name, y: Mutex::new(Some(y.contiguous()?)), bwd: Box::new(bwd) })
}

struct Attached {
    name: &'static str,
    y: Mutex<Option<Tensor>>,
    bwd: Backward,
}

impl candle_core::CustomOp1 for Attached {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(&self, _x: &CpuStorage, _lx: &Layout) -> Result<(CpuStorage, Shape)> {
        take_host(&self.y, self.name)
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some((self.bwd)(res, grad_res)?))
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

    /// The gradient of `(f(x) · w).sum()` at `x`.
    fn grad_of(x: &Var, y: &Tensor, w: &Tensor) -> Tensor {
        y.mul(w).unwrap().sum_all().unwrap().backward().unwrap().get(x.as_tensor()).unwrap().clone()
    }

    #[test]
    fn fused_rope_softmax_and_scatter_match_their_compositions_forward_and_backward() {
        let (b, t, h, d) = (2, 5, 3, 8);
        let x = Var::from_tensor(&wavy(b * t * h * d, 0.29, &[b, t, h, d])).unwrap();
        let (cos, sin) = (wavy(t * d / 2, 0.7, &[t, d / 2]), wavy(t * d / 2, 0.41, &[t, d / 2]));
        let w = wavy(b * t * h * d, 0.13, &[b, t, h, d]);
        let (fused, composed) =
            (rope_fused(x.as_tensor(), &cos, &sin).unwrap(), rope(x.as_tensor(), &cos, &sin).unwrap());
        assert!(max_diff(&fused, &composed) < 1e-5);
        assert!(max_diff(&grad_of(&x, &fused, &w), &grad_of(&x, &composed, &w)) < 1e-5);

        let s = Var::from_tensor(&wavy(4 * 7, 0.53, &[4, 7])).unwrap();
        let ws = wavy(4 * 7, 0.31, &[4, 7]);
        let (fused, composed) = (softmax_fused(s.as_tensor()).unwrap(), softmax_last_dim(s.as_tensor()).unwrap());
        assert!(max_diff(&fused, &composed) < 1e-6);
        assert!(max_diff(&grad_of(&s, &fused, &ws), &grad_of(&s, &composed, &ws)) < 1e-6);

        let r = Var::from_tensor(&wavy(3 * 4, 0.9, &[3, 4])).unwrap();
        let idx = Tensor::new(&[4u32, 0, 2], &Device::Cpu).unwrap();
        let y = scatter_rows(r.as_tensor(), &idx, 6).unwrap();
        let plain = Tensor::zeros((6, 4), DType::F32, &Device::Cpu).unwrap().index_add(&idx, r.as_tensor(), 0).unwrap();
        assert_eq!(max_diff(&y, &plain), 0.0);
        let wr = wavy(6 * 4, 0.17, &[6, 4]);
        assert_eq!(max_diff(&grad_of(&r, &y, &wr), &wr.index_select(&idx, 0).unwrap()), 0.0);
    }

    #[test]
    fn lora_linear_matches_the_composition_forward_and_backward() {
        let x = Var::from_tensor(&wavy(5 * 6, 0.3, &[5, 6])).unwrap();
        let a = Var::from_tensor(&wavy(2 * 6, 0.7, &[2, 6])).unwrap();
        let b = Var::from_tensor(&wavy(4 * 2, 0.2, &[4, 2])).unwrap();
        let w = wavy(4 * 6, 0.5, &[4, 6]);
        let gy = wavy(5 * 4, 0.9, &[5, 4]);
        let lin = crate::ops::linear;
        let fused = lora_linear(x.as_tensor(), &w, a.as_tensor(), b.as_tensor()).unwrap();
        let composed = (lin(x.as_tensor(), &w).unwrap()
            + lin(&lin(x.as_tensor(), a.as_tensor()).unwrap(), b.as_tensor()).unwrap())
        .unwrap();
        assert!(max_diff(&fused, &composed) < 1e-5);
        let grads = |y: &Tensor| y.mul(&gy).unwrap().sum_all().unwrap().backward().unwrap();
        let (gf, gc) = (grads(&fused), grads(&composed));
        for v in [&x, &a, &b] {
            let (f, c) = (gf.get(v.as_tensor()).unwrap(), gc.get(v.as_tensor()).unwrap());
            assert!(max_diff(f, c) < 1e-5, "{f} {c}");
        }
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
