//! Building blocks shared by the model families: linear layers, RMSNorm, RoPE tables, attention masks, GQA attention,
//! FFN activations, the FFN tap reduction and the stable next-token NLL.

use std::sync::{Arc, Mutex};

use candle_core::{D, DType, Device, Result, Storage, Tensor};
use lsn_core::positions;
use lsn_core::{Activation, AttentionKind, ModelConfig, TapReducer, TapStats};

/// Rows up to which a product on the CPU is computed as `(w @ xᵀ)ᵀ` rather than `x @ wᵀ`: for a few rows (a cached
/// decode step) the gemm crate packs the transposed weight before multiplying, and that packing costs more than the
/// product (the profile of greedy decoding: 41% of the time in `gemm_common`'s packing wrapper, 26% in the
/// micro-kernels). Measured on the 2-core CI machine, ms at 4 / 16 rows: the [262144, 640] head 40.2 → 22.3 /
/// 58.8 → 27.0, [640, 2048] 0.73 → 0.31 / 0.53 → 0.27, [2048, 640] 0.29 → 0.31 / 0.75 → 0.41; at 128 rows the
/// forms tie.
const FEW_ROWS: usize = 16;

/// `x @ wᵀ` for a 2-D `x` `[n, in]` and a HF weight `w` `[out, in]`, in `x`'s dtype (f32): a bf16 weight is
/// widened for the product (exactly, so it multiplies as the f32 tensor of its rounded values would).
pub(crate) fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let w = widen(w, x.dtype())?;
    if x.device().is_cpu() && x.rank() == 2 && x.dim(0)? <= FEW_ROWS {
        w.matmul(&x.t()?)?.t()?.contiguous()
    } else {
        x.matmul(&w.t()?)
    }
}

/// `w` in `dtype` (a cheap handle when it already is).
pub(crate) fn widen(w: &Tensor, dtype: DType) -> Result<Tensor> {
    if w.dtype() == dtype { Ok(w.clone()) } else { w.to_dtype(dtype) }
}

/// RMSNorm over the last axis, `x / sqrt(mean(x²) + eps) · alpha`, computed in f32.
/// Gemma's `(1 + w)` is folded into `alpha` at load time.
pub(crate) fn rms_norm(x: &Tensor, alpha: &Tensor, eps: f64) -> Result<Tensor> {
    candle_nn::ops::rms_norm(x, alpha, eps as f32)
}

/// The FFN activation `act_fn`. GELU-tanh on the CPU follows PyTorch's kernel (`lsn_core::activation`), so
/// saturated activations are exactly 0 as in HF transformers; other devices use Candle's kernel.
pub(crate) fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    match act {
        Activation::Silu => x.silu(),
        Activation::GeluTanh if x.device().is_cpu() && x.dtype() == DType::F32 => x.apply_op1(TorchGeluTanh),
        Activation::GeluTanh => x.gelu(),
        Activation::Gelu => x.gelu_erf(),
    }
}

/// lsn-core's PyTorch-order GELU-tanh as a Candle CPU op, in parallel over chunks, with its derivative as the
/// backward (checked against finite differences in the tests).
struct TorchGeluTanh;

impl candle_core::CustomOp1 for TorchGeluTanh {
    fn name(&self) -> &'static str {
        "gelu-tanh-pytorch"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let candle_core::CpuStorage::F32(v) = storage else { candle_core::bail!("gelu-tanh-pytorch takes f32") };
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("gelu-tanh-pytorch input must be contiguous".into()))?;
        let mut out = v[start..end].to_vec();
        out.par_chunks_mut(1 << 14).for_each(lsn_core::activation::gelu_tanh_in_place);
        Ok((candle_core::CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(crate::grad_ops::gelu_tanh_backward(arg, grad_res)?))
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
        let (cos, sin) = positions::rope_tables(inv_freq, seq_len);
        Self::from_tables(cos, sin, &[seq_len, inv_freq.len()], q_scale, device)
    }

    /// From tables `[.., head_dim / 2]`: `[t, half]`, or `[b, t, half]` with a position per row.
    pub(crate) fn from_tables(
        cos: Vec<f32>,
        sin: Vec<f32>,
        dims: &[usize],
        q_scale: f64,
        device: &Device,
    ) -> Result<Self> {
        let s = q_scale as f32;
        let (cos_q, sin_q): (Vec<f32>, Vec<f32>) = cos.iter().zip(&sin).map(|(c, n)| (c * s, n * s)).unzip();
        let t = |v: Vec<f32>| Tensor::from_vec(v, dims, device);
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

    /// [`Rope::keys`], differentiable, for training (whole-pass tables only).
    pub(crate) fn keys_grad(&self, x: &Tensor) -> Result<Tensor> {
        crate::grad_ops::rope_fused(x, &self.cos, &self.sin)
    }

    /// [`Rope::queries`], differentiable, for training (whole-pass tables only).
    pub(crate) fn queries_grad(&self, x: &Tensor) -> Result<Tensor> {
        crate::grad_ops::rope_fused(x, &self.cos_q, &self.sin_q)
    }
}

/// lsn-core's additive causal mask `[seq_len, seq_len]` on `device`.
pub(crate) fn causal_mask(seq_len: usize, window: Option<usize>, device: &Device) -> Result<Tensor> {
    Tensor::from_vec(positions::causal_mask(seq_len, window), (seq_len, seq_len), device)
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
        let global = positions::layer_positions(cfg, AttentionKind::Global).inv_freqs;
        let sliding = cfg.layer_kinds.contains(&AttentionKind::Sliding).then(|| {
            let p = positions::layer_positions(cfg, AttentionKind::Sliding);
            p.window.map(|w| (p.inv_freqs, w))
        });
        Self { global, sliding: sliding.flatten(), q_scale: cfg.attn_scale, last: Mutex::new(None) }
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

/// The RoPE table and mask of each attention kind for one pass.
#[derive(Debug)]
pub(crate) struct Positions {
    global: (Rope, Tensor),
    sliding: Option<(Rope, Tensor)>,
}

impl Positions {
    /// The tables and masks of a cached step (one position per row and token, masks `[b, 1, 1, t, s]`).
    pub(crate) fn of_step(step: &lsn_core::Step<'_>, q_scale: f64, device: &Device) -> Result<Self> {
        let (rows, len, total) = (step.rows, step.len, step.past + step.len);
        let build = |p: &lsn_core::StepPositions| -> Result<(Rope, Tensor)> {
            let half = p.cos.len() / (rows * len).max(1);
            let rope = Rope::from_tables(p.cos.clone(), p.sin.clone(), &[rows, len, half], q_scale, device)?;
            Ok((rope, Tensor::from_slice(&p.mask, (rows, 1, 1, len, total), device)?))
        };
        let global = build(step.of(AttentionKind::Global))?;
        let sliding = step.positions.iter().find(|p| p.kind == AttentionKind::Sliding).map(build).transpose()?;
        Ok(Self { global, sliding })
    }

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
/// `q` `[b, t, heads, d]` (RoPE and the score scale already applied), `k`/`v` `[b, kv_heads, s, d]` (contiguous; `s`
/// ≥ `t` with a cache); `mask` additive, broadcastable to `[b, kv_heads, group, t, s]` (`[t, t]` for a whole pass,
/// `[b, 1, 1, t, s]` for a cached step).
/// Query head `h` uses KV head `h / (heads / kv_heads)`, as HF's `repeat_kv`. The KV heads are never copied: each
/// KV head's query group is stacked along the sequence axis so one batched matmul serves the whole group.
/// The scores are soft-capped by `cap` where given, before the mask. Returns `[b·t, heads·d]`. `grad` uses a
/// differentiable softmax (training).
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    cap: Option<f64>,
    grad: bool,
) -> Result<Tensor> {
    let (b, t, heads, d) = q.dims4()?;
    let (_, kv_heads, s, _) = k.dims4()?;
    let group = heads / kv_heads;
    let q = q.transpose(1, 2)?.contiguous()?.reshape((b, kv_heads, group * t, d))?;
    let scores = softcap(q.matmul(&k.t()?)?, cap)?.reshape((b, kv_heads, group, t, s))?.broadcast_add(mask)?;
    let probs =
        if grad { crate::grad_ops::softmax_fused(&scores)? } else { candle_nn::ops::softmax_last_dim(&scores)? };
    let probs = probs.reshape((b, kv_heads, group * t, s))?;
    probs.matmul(v)?.reshape((b, heads, t, d))?.transpose(1, 2)?.contiguous()?.reshape((b * t, heads * d))
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

/// Soft-capping `cap · tanh(x / cap)` (final logits, and Gemma 2's attention scores).
pub(crate) fn softcap(x: Tensor, cap: Option<f64>) -> Result<Tensor> {
    match cap {
        Some(c) => (x / c)?.tanh()? * c,
        None => Ok(x),
    }
}

/// `−log softmax(logits)[target]` per row of `logits` `[n, vocab]`, computed stably as
/// `log Σ exp(x − max) − (x[target] − max)`; the exponentials are summed in f64, since an f32 sum over a 262144-entry
/// vocabulary biases the NLL by about 1e-5. `targets` `[n]` u32; returns f32 `[n]`. On the CPU in f32 one pass
/// over the logits (`lsn_core::head::nll_of_logits`): the tensor form below made four logit-sized temporaries
/// (two of them f64) and called libm's `exp` per logit — 27% of NLL scoring's samples in page faults of those
/// buffers and 7% in `exp` (perf, score bench).
pub(crate) fn nll_rows(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if logits.device().is_cpu() && logits.dtype() == DType::F32 && targets.dtype() == DType::U32 {
        return logits.contiguous()?.apply_op2_no_bwd(&targets.contiguous()?, &HostNll);
    }
    nll_rows_tensor(logits, targets)
}

/// [`nll_rows`] as tensor ops, for any device.
fn nll_rows_tensor(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let shifted = logits.broadcast_sub(&logits.max_keepdim(D::Minus1)?)?;
    let log_sum = shifted.to_dtype(DType::F64)?.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let picked = shifted.gather(&targets.unsqueeze(1)?, D::Minus1)?.to_dtype(DType::F64)?;
    (log_sum - picked)?.squeeze(1)?.to_dtype(DType::F32)
}

/// [`nll_rows`] on the CPU: `logits` `[n, vocab]` f32 and `targets` `[n]` u32 → `[n]` f32.
struct HostNll;

impl candle_core::CustomOp2 for HostNll {
    fn name(&self) -> &'static str {
        "nll-rows"
    }

    fn cpu_fwd(
        &self,
        s1: &candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let logits = crate::grad_ops::f32s(s1, l1, "nll-rows")?;
        let candle_core::CpuStorage::U32(t) = s2 else { candle_core::bail!("nll-rows takes u32 targets") };
        let (start, end) = l2
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("nll-rows: targets not contiguous".into()))?;
        let vocab = l1.dims().last().copied().unwrap_or(0);
        let nll = lsn_core::head::nll_of_logits(logits, vocab, &t[start..end])
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let n = nll.len();
        Ok((candle_core::CpuStorage::F32(nll), candle_core::Shape::from(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nll_is_stable_for_large_negative_logits() {
        let logits = Tensor::new(&[[-100.0f32, -101.0, -300.0], [1e4, 0.0, -1e4]], &Device::Cpu).unwrap();
        let t = Tensor::new(&[1u32, 0], &Device::Cpu).unwrap();
        let nll = nll_rows(&logits, &t).unwrap().to_vec1::<f32>().unwrap();
        let want0 = 1.0 + (1.0f64 + (-1.0f64).exp()).ln();
        assert!((nll[0] as f64 - want0).abs() < 1e-5, "{nll:?}");
        assert!(nll[1].abs() < 1e-6, "{nll:?}");
        // The host op and the tensor form (what other devices run) agree; an out-of-vocabulary target is an error.
        let wide = Tensor::arange(0f32, 3000.0, &Device::Cpu).unwrap().affine(0.37, -500.0).unwrap().sin().unwrap();
        let wide = (wide * 40.0).unwrap().reshape((3, 1000)).unwrap();
        let t = Tensor::new(&[7u32, 500, 999], &Device::Cpu).unwrap();
        let host = nll_rows(&wide, &t).unwrap().to_vec1::<f32>().unwrap();
        let tensor = nll_rows_tensor(&wide, &t).unwrap().to_vec1::<f32>().unwrap();
        for (h, w) in host.iter().zip(&tensor) {
            assert!((h - w).abs() <= 1e-6 * w.abs().max(1.0), "{host:?} vs {tensor:?}");
        }
        assert!(nll_rows(&wide, &Tensor::new(&[0u32, 1, 1000], &Device::Cpu).unwrap()).is_err());
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

    #[test]
    fn gelu_backward_matches_finite_differences() {
        fn gelu64(x: f64) -> f64 {
            0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
        }
        let xs = [-7.0f32, -3.0, -1.3, -0.4, 0.0, 0.25, 0.8, 1.7, 3.2, 6.0];
        let x = candle_core::Var::new(&xs[..], &Device::Cpu).unwrap();
        let y = activate(x.as_tensor(), Activation::GeluTanh).unwrap().sum_all().unwrap();
        let g = y.backward().unwrap().get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        for (&xi, &gi) in xs.iter().zip(&g) {
            let h = 1e-4;
            let fd = (gelu64(f64::from(xi) + h) - gelu64(f64::from(xi) - h)) / (2.0 * h);
            assert!((f64::from(gi) - fd).abs() < 1e-5, "x {xi}: backward {gi}, finite difference {fd}");
        }
    }

    #[test]
    fn differentiable_forms_match_the_fused_kernels() {
        let dev = Device::Cpu;
        let x = Tensor::arange(0u32, 2 * 3 * 2 * 8, &dev).unwrap().to_dtype(DType::F32).unwrap();
        let x = ((x * 0.37).unwrap().sin().unwrap() * 3.0).unwrap().reshape((2, 3, 2, 8)).unwrap();
        let alpha = Tensor::new(&[0.5f32, 1.0, 1.5, 2.0, -1.0, 0.1, 0.7, 1.2], &dev).unwrap();
        let diff = |a: &Tensor, b: &Tensor| {
            (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
        };
        let fused = rms_norm(&x, &alpha, 1e-6).unwrap();
        assert!(diff(&fused, &crate::grad_ops::rms_norm(&x, &alpha, 1e-6).unwrap()) < 1e-5);
        let s = x.reshape((6, 16)).unwrap();
        assert!(
            diff(&candle_nn::ops::softmax_last_dim(&s).unwrap(), &crate::grad_ops::softmax_last_dim(&s).unwrap())
                < 1e-6
        );
        let rope = Rope::new(&[1.0, 0.5, 0.1, 0.01], 3, 0.25, &dev).unwrap();
        assert!(diff(&rope.keys(&x).unwrap(), &rope.keys_grad(&x).unwrap()) < 1e-5);
        assert!(diff(&rope.queries(&x).unwrap(), &rope.queries_grad(&x).unwrap()) < 1e-5);
    }
}
