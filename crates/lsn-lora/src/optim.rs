//! The optimizer of every backend's training, on host values: AdamW as PyTorch computes it (decoupled weight decay,
//! bias-corrected moments, ε outside the square root), the linear schedule with warm-up of HF's
//! `get_linear_schedule_with_warmup`, and gradient clipping by global norm as `torch.nn.utils.clip_grad_norm_`.

use serde::{Deserialize, Serialize};

/// AdamW's constants.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamW {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl AdamW {
    /// The paper's: β (0.95, 0.999), ε 1e-8, weight decay 0.1.
    pub const PAPER: AdamW = AdamW { beta1: 0.95, beta2: 0.999, eps: 1e-8, weight_decay: 0.1 };
}

/// AdamW's state for one parameter tensor: first and second moments.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Moments {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

impl Moments {
    pub fn zeros(n: usize) -> Self {
        Self { m: vec![0.0; n], v: vec![0.0; n] }
    }
}

impl AdamW {
    /// One update of `p` with gradient `g` at learning rate `lr`, the `step`-th update (1-based), in PyTorch's order:
    /// `p ← p·(1 − lr·wd)`; `m ← β₁m + (1 − β₁)g`; `v ← β₂v + (1 − β₂)g²`;
    /// `p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)`.
    /// A parameter whose gradient and value are 0 (a masked row) stays exactly 0.
    pub fn update(&self, p: &mut [f32], g: &[f32], state: &mut Moments, lr: f32, step: u64) {
        let t = step as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2_sqrt = (1.0 - self.beta2.powi(t)).sqrt();
        let step_size = lr / bc1;
        let decay = 1.0 - lr * self.weight_decay;
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(&mut state.m).zip(&mut state.v) {
            *p *= decay;
            *m = self.beta1 * *m + (1.0 - self.beta1) * g;
            *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
            *p -= step_size * *m / (v.sqrt() / bc2_sqrt + self.eps);
        }
    }
}

/// The learning-rate factor at optimizer step `step` (0-based, before the update) of `total`: linear warm-up over
/// `warmup` steps from 0, then linear decay to 0 at `total` (HF's `get_linear_schedule_with_warmup`).
pub fn linear_schedule(step: u64, warmup: u64, total: u64) -> f32 {
    if step < warmup {
        step as f32 / warmup.max(1) as f32
    } else {
        (total.saturating_sub(step) as f32 / total.saturating_sub(warmup).max(1) as f32).max(0.0)
    }
}

/// Warm-up steps for a fraction of `total` (the paper's 1%): `⌊frac · total⌋`, at least 1 when `frac > 0`.
pub fn warmup_steps(frac: f64, total: u64) -> u64 {
    if frac <= 0.0 { 0 } else { ((frac * total as f64).floor() as u64).max(1) }
}

/// Scales `grads` in place so their global L2 norm is at most `max_norm` (as `clip_grad_norm_`: factor
/// `max_norm / (norm + 1e-6)` when that is below 1). Returns the norm before clipping (summed in f64).
pub fn clip_global_norm(grads: &mut [Vec<f32>], max_norm: f32) -> f32 {
    let norm = grads.iter().flatten().map(|&g| f64::from(g) * f64::from(g)).sum::<f64>().sqrt() as f32;
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        grads.iter_mut().flatten().for_each(|g| *g *= coef);
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adamw_matches_pytorch_on_a_worked_example() {
        // torch.optim.AdamW([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1), p = [1, -2],
        // two steps with grads [0.5, -1] then [0.1, 0.2], computed by hand from PyTorch's formula.
        let opt = AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1 };
        let mut p = vec![1.0f32, -2.0];
        let mut s = Moments::zeros(2);
        opt.update(&mut p, &[0.5, -1.0], &mut s, 0.1, 1);
        // step 1: p·0.99, then m̂/√v̂ = sign(g): p = 0.99 − 0.1 = 0.89; −1.98 + 0.1 = −1.88.
        assert!((p[0] - 0.89).abs() < 1e-6 && (p[1] + 1.88).abs() < 1e-6, "{p:?}");
        opt.update(&mut p, &[0.1, 0.2], &mut s, 0.1, 2);
        let want = |p0: f64, g1: f64, g2: f64| {
            let p = p0 * 0.99;
            let m = 0.9 * (0.1 * g1) + 0.1 * g2;
            let v = 0.999 * (0.001 * g1 * g1) + 0.001 * g2 * g2;
            let (bc1, bc2) = (1.0 - 0.81, 1.0 - 0.999f64.powi(2));
            p - 0.1 / bc1 * m / (v.sqrt() / bc2.sqrt() + 1e-8)
        };
        assert!((f64::from(p[0]) - want(0.89, 0.5, 0.1)).abs() < 1e-6, "{p:?}");
        assert!((f64::from(p[1]) - want(-1.88, -1.0, 0.2)).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn a_zero_parameter_with_zero_gradient_stays_zero() {
        let mut p = vec![0.0f32; 3];
        let mut s = Moments::zeros(3);
        for step in 1..=5 {
            AdamW::PAPER.update(&mut p, &[0.0; 3], &mut s, 1e-3, step);
        }
        assert!(p.iter().all(|&x| x.to_bits() == 0));
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert_eq!(linear_schedule(0, 2, 10), 0.0);
        assert_eq!(linear_schedule(1, 2, 10), 0.5);
        assert_eq!(linear_schedule(2, 2, 10), 1.0);
        assert_eq!(linear_schedule(6, 2, 10), 0.5);
        assert_eq!(linear_schedule(10, 2, 10), 0.0);
        assert_eq!(linear_schedule(0, 0, 4), 1.0);
        assert_eq!(warmup_steps(0.01, 150), 1);
        assert_eq!(warmup_steps(0.01, 1250), 12);
        assert_eq!(warmup_steps(0.0, 1250), 0);
    }

    #[test]
    fn clipping_scales_to_the_max_norm_only_above_it() {
        let mut g = vec![vec![3.0f32], vec![4.0]];
        assert_eq!(clip_global_norm(&mut g, 10.0), 5.0);
        assert_eq!(g, vec![vec![3.0], vec![4.0]]);
        assert_eq!(clip_global_norm(&mut g, 1.0), 5.0);
        let n = (g[0][0].powi(2) + g[1][0].powi(2)).sqrt();
        assert!((n - 1.0).abs() < 1e-5, "{g:?}");
    }
}
