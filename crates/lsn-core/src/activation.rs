//! FFN activations as PyTorch's CPU kernels compute them, for backends whose own kernels differ near zero.
//!
//! The tap statistics are sensitive to activations a hair away from zero: a neuron that is off for most tokens has
//! its p90 threshold in the cluster of saturated values, so whether those values are exactly 0 or −1.5e-7 decides
//! hundreds of threshold counts. PyTorch (the reference, HF transformers) returns exactly 0 there; a correctly
//! rounded `tanh` does not. So the rule is written down once, here.

/// √(2/π) as PyTorch's kernel forms it (`M_SQRT2 · M_2_SQRTPI · 0.5`, rounded to f32).
pub const GELU_BETA: f32 = 0.797_884_6;
pub const GELU_KAPPA: f32 = 0.044_715;
/// Above this |argument| PyTorch's vectorised `tanh` (SLEEF `tanhf`, u10) returns exactly ±1 (SLEEF writes
/// 8.664339742f, the same f32).
pub const TANH_SATURATION: f32 = 8.664_34;

/// GELU with the tanh approximation (`gelu_pytorch_tanh`), in PyTorch's CPU kernel order:
/// `0.5 · x · (1 + tanh(β · (x + κ · x³)))`, with `tanh` saturating to ±1 beyond |8.664339742| as PyTorch's does.
/// Inside that range `f32::tanh` is correctly rounded where PyTorch's is within 1 ulp, so about 0.2% of values
/// differ by an ulp of `tanh` (≤ 5e-7 absolute, never at zero).
pub fn gelu_tanh(x: f32) -> f32 {
    let inner = GELU_BETA * (x + GELU_KAPPA * (x * x * x));
    let t = if inner.abs() > TANH_SATURATION { inner.signum() } else { inner.tanh() };
    0.5 * x * (1.0 + t)
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
}
