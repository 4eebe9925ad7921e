//! FFN activations as PyTorch's CPU kernels compute them, for backends whose own kernels differ near zero.
//!
//! The tap statistics are sensitive to activations a hair away from zero: a neuron that is off for most tokens has
//! its p90 threshold in the cluster of saturated values, so whether those values are exactly 0 or −1.5e-7 decides
//! hundreds of threshold counts. PyTorch (the reference, HF transformers) returns exactly 0 there; a correctly
//! rounded `tanh` does not. So the rule is written down once, here.
//!
//! `tanh` is evaluated in f64 and rounded to f32 once ([`tanh`]): it equals `(f64::tanh(y) as f32)` on every f32
//! in the unsaturated range (checked exhaustively when it was written), and, with no call into libm, the slice
//! kernels ([`gelu_tanh_in_place`], [`gelu_tanh_grad_mul`]) vectorise (AVX-512 or AVX2 chosen at run time; the
//! same operations in the same order on every path, so the same bits).

/// √(2/π) as PyTorch's kernel forms it (`M_SQRT2 · M_2_SQRTPI · 0.5`, rounded to f32).
pub const GELU_BETA: f32 = 0.797_884_6;
pub const GELU_KAPPA: f32 = 0.044_715;
/// Above this |argument| PyTorch's vectorised `tanh` (SLEEF `tanhf`, u10) returns exactly ±1 (SLEEF writes
/// 8.664339742f, the same f32).
pub const TANH_SATURATION: f32 = 8.664_34;

use crate::simd::{exp_parts, multiversion};

/// `tanh(y)` evaluated in f64 and rounded once, saturating to exactly ±1 beyond |[`TANH_SATURATION`]| as
/// PyTorch's does. Inside the range it equals `f64::tanh(y) as f32` for every f32 `y`: `tanh a = e / (e + 2)` with
/// `e = expm1(2a) = 2^k·expm1(r) + (2^k − 1)` ([`exp_parts`]). No branch and no
/// libm call, so a loop over it vectorises. NaN gives NaN.
#[inline(always)]
pub fn tanh(y: f32) -> f32 {
    let wide = f64::from(y).abs();
    let a = wide.min(f64::from(TANH_SATURATION));
    let (scale, expm1_r) = exp_parts(2.0 * a);
    let e = scale * expm1_r + (scale - 1.0);
    let t = if wide > f64::from(TANH_SATURATION) { 1.0 } else { e / (e + 2.0) };
    let t = if wide.is_nan() { wide } else { t };
    (t as f32).copysign(y)
}

/// GELU with the tanh approximation (`gelu_pytorch_tanh`), in PyTorch's CPU kernel order:
/// `0.5 · x · (1 + tanh(β · (x + κ · x³)))`, with [`tanh`] (saturating beyond |8.664339742| as PyTorch's does).
/// PyTorch's own `tanh` is within 1 ulp, so on a grid of 1.36e8 f32 in [−6, 6] this differs from
/// `torch.nn.functional.gelu(x, approximate="tanh")` (2.15, CPU) on 0.021% of values, by ≤ 2.4e-7, never at zero
/// (glibc 2.36's `tanhf`, used before, differed on 0.50%).
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    let inner = GELU_BETA * (x + GELU_KAPPA * (x * x * x));
    0.5 * x * (1.0 + tanh(inner))
}

/// d/dx of [`gelu_tanh`] times `g`: `g · (0.5·(1 + t) + 0.5·x·(1 − t²)·β·(1 + 3κ·x²))`, `t = tanh(β(x + κx³))`,
/// in f32 in this order of operations.
#[inline(always)]
pub fn gelu_tanh_grad(x: f32, g: f32) -> f32 {
    let x2 = x * x;
    let t = tanh(GELU_BETA * (x * x2 * GELU_KAPPA + x));
    g * (0.5 * (t + 1.0) + (x * 0.5) * (1.0 - t * t) * (GELU_BETA * (x2 * (3.0 * GELU_KAPPA) + 1.0)))
}

multiversion! {
    /// [`gelu_tanh`] of every value, in place.
    pub fn gelu_tanh_in_place(v: &mut [f32]) {
        for x in v {
            *x = gelu_tanh(*x);
        }
    }
}

multiversion! {
    /// `out[i] = ` [`gelu_tanh_grad`]`(x[i], g[i])`; the three slices have one length (the shortest is used).
    pub fn gelu_tanh_grad_mul(x: &[f32], g: &[f32], out: &mut [f32]) {
        for ((o, &x), &g) in out.iter_mut().zip(x).zip(g) {
            *o = gelu_tanh_grad(x, g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturates_to_exact_zero_like_pytorch() {
        // PyTorch 2.15 CPU: gelu(x, approximate="tanh") is exactly 0 for x ≤ −5.0613837 (measured on a 2M-point grid).
        assert_eq!(gelu_tanh(-5.07), 0.0);
        assert_eq!(gelu_tanh(-30.0), 0.0);
        // A correctly rounded tanh alone would leave −1.5e-7 here.
        let naive = 0.5 * -5.07f32 * (1.0 + (GELU_BETA * (-5.07f32 + GELU_KAPPA * -5.07f32 * -5.07 * -5.07)).tanh());
        assert!(naive < 0.0, "{naive}");
    }

    #[test]
    fn matches_the_formula_away_from_saturation() {
        for x in [-3.0f32, -0.5, 0.0, 0.1, 1.0, 2.5, 7.0] {
            let want = 0.5
                * f64::from(x)
                * (1.0 + (0.797_884_560_802_865_4 * (f64::from(x) + 0.044715 * f64::from(x).powi(3))).tanh());
            assert!((f64::from(gelu_tanh(x)) - want).abs() <= 1e-6 * want.abs().max(1.0), "{x}");
        }
        assert_eq!(gelu_tanh(30.0), 30.0);
    }

    /// f32 values spread over every binade of the unsaturated range, both signs, plus the edges.
    fn spread() -> Vec<f32> {
        let top = TANH_SATURATION.to_bits();
        let mut v: Vec<f32> = (0..=top).step_by(997).map(f32::from_bits).flat_map(|x| [x, -x]).collect();
        v.extend([TANH_SATURATION, -TANH_SATURATION, f32::from_bits(top + 1), 0.0, -0.0, f32::MIN_POSITIVE]);
        v
    }

    #[test]
    fn tanh_is_f64_tanh_rounded_once() {
        for y in spread() {
            let want = if y.abs() > TANH_SATURATION { y.signum() } else { f64::from(y).tanh() as f32 };
            assert_eq!(tanh(y).to_bits(), want.to_bits(), "tanh({y:e})");
        }
        for (y, want) in [(8.7f32, 1.0f32), (-100.0, -1.0), (f32::INFINITY, 1.0), (f32::NEG_INFINITY, -1.0)] {
            assert_eq!(tanh(y), want);
        }
        assert!(tanh(f32::NAN).is_nan());
        assert!(gelu_tanh(f32::NAN).is_nan());
    }

    #[test]
    fn slice_kernels_give_the_scalar_bits() {
        // The dispatched kernel (AVX-512 or AVX2 where the CPU has it) against the scalar function built for the
        // baseline: the same operations, so the same bits.
        let xs = spread();
        let mut v = xs.clone();
        gelu_tanh_in_place(&mut v);
        for (x, y) in xs.iter().zip(&v) {
            assert_eq!(y.to_bits(), gelu_tanh(*x).to_bits(), "gelu_tanh({x:e})");
        }
        let g: Vec<f32> = (0..xs.len()).map(|i| (i % 7) as f32 * 0.25 - 0.75).collect();
        let mut out = vec![0f32; xs.len()];
        gelu_tanh_grad_mul(&xs, &g, &mut out);
        for ((x, g), o) in xs.iter().zip(&g).zip(&out) {
            assert_eq!(o.to_bits(), gelu_tanh_grad(*x, *g).to_bits(), "gelu_tanh_grad({x:e}, {g})");
        }
    }

    #[test]
    fn grad_is_the_derivative() {
        for x in [-4.0f64, -1.5, -0.3, 0.0, 0.2, 1.0, 3.0] {
            let f = |x: f64| 0.5 * x * (1.0 + (0.797_884_560_802_865_4 * (x + 0.044715 * x.powi(3))).tanh());
            let h = 1e-5;
            let want = (f(x + h) - f(x - h)) / (2.0 * h);
            let got = f64::from(gelu_tanh_grad(x as f32, 2.0)) / 2.0;
            assert!((got - want).abs() < 1e-5, "x={x}: {got} vs {want}");
        }
    }

    fn f32s(hex: &str) -> Vec<f32> {
        hex::decode(hex).unwrap().chunks(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    }

    #[test]
    fn against_pytorchs_kernel_on_a_grid() {
        // fixtures/golden/gelu_tanh.json: torch.nn.functional.gelu(x, approximate="tanh"), CPU, on 8192 f32
        // (xtask/fixtures/golden_gelu.py). PyTorch's SLEEF tanh is within 1 ulp, so a few values differ: measured 7
        // of these 8192 (with glibc 2.36's tanhf, used before: 312); on 1.36e8 values in [-6, 6], 0.021% (0.50%).
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/golden/gelu_tanh.json");
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let (xs, want) = (f32s(doc["x_f32le_hex"].as_str().unwrap()), f32s(doc["y_f32le_hex"].as_str().unwrap()));
        assert_eq!(xs.len(), 8192);
        assert_eq!(want.len(), xs.len());
        let mut got = xs.clone();
        gelu_tanh_in_place(&mut got);
        let mut differing = 0;
        for ((x, g), w) in xs.iter().zip(&got).zip(&want) {
            assert_eq!(*g == 0.0, *w == 0.0, "exact zero at x = {x:e}: ours {g:e}, PyTorch {w:e}");
            if g.to_bits() != w.to_bits() {
                differing += 1;
                assert!((g - w).abs() <= 2.4e-7, "x = {x:e}: ours {g:e}, PyTorch {w:e}");
            }
        }
        assert!(differing <= 16, "{differing} of {} values differ from PyTorch's (at most 16 expected)", xs.len());
    }
}
