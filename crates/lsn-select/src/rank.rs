//! Sizes and order statistics as the reference code computes them: Python's `round` (half to even) of an f64
//! product written in the reference's own order, and `torch.kthvalue` (1-based k-th smallest).
//! `torch.quantile` is [`crate::quantile_linear_f32`].

/// Python's `round(x)` for a non-negative f64: halves go to the even neighbour (`round(2.5) == 2`).
pub fn round_half_even(x: f64) -> usize {
    x.round_ties_even().max(0.0) as usize
}

/// Python's `round(rate * L * I)`, as Mondal et al.'s code writes m: the f64 product `(rate · L) · I`, left to
/// right. It is not always `(L · I) · rate`: for L = 7, I = 150, rate 0.01 it is 10.500000000000002 → 11, not 10.
pub fn round_rate_layers_width(rate: f64, layers: usize, intermediate: usize) -> usize {
    round_half_even(rate * layers as f64 * intermediate as f64)
}

/// Python's `round(len * rate)`, as Tang et al.'s code writes m and the kthvalue position.
pub fn round_len_rate(len: usize, rate: f64) -> usize {
    round_half_even(len as f64 * rate)
}

/// `torch.kthvalue(values, k)`: the k-th smallest value, 1-based. `None` when `k` is 0 or exceeds the length.
pub fn kth_smallest(values: &[f32], k: usize) -> Option<f32> {
    if k == 0 || k > values.len() {
        return None;
    }
    let mut v = values.to_vec();
    let (_, kth, _) = v.select_nth_unstable_by(k - 1, f32::total_cmp);
    Some(*kth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_rounding() {
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(3.5), 4);
        // The kthvalue position round(N·0.95) at an exact half: N = 30 → 28.5 → 28 (half-up would say 29);
        // N = 50 → 47.5 → 48; N = 3150 → 2992.5 → 2992.
        assert_eq!(round_len_rate(30, 0.95), 28);
        assert_eq!(round_len_rate(50, 0.95), 48);
        assert_eq!(round_len_rate(3150, 0.95), 2992);
        assert_eq!(round_len_rate(40, 0.95), 38);
        // Paper sizes: 0.01·18·2048 = 368.64 → 369 (Gemma-3-270M); 0.01·32·14336 = 4587.52 → 4588 and
        // 0.00125·32·14336 = 573.44 → 573 (Llama-3.1-8B); 0.00125·40·14336 = 716.8 → 717 (Mistral-Nemo).
        assert_eq!(round_rate_layers_width(0.01, 18, 2048), 369);
        assert_eq!(round_rate_layers_width(0.01, 32, 14336), 4588);
        assert_eq!(round_rate_layers_width(0.00125, 32, 14336), 573);
        assert_eq!(round_rate_layers_width(0.00125, 40, 14336), 717);
        // The product order matters at halves: (0.01·7)·150 = 10.500000000000002 → 11, (7·150)·0.01 = 10.5 → 10.
        assert_eq!(round_rate_layers_width(0.01, 7, 150), 11);
        assert_eq!(round_len_rate(7 * 150, 0.01), 10);
    }

    #[test]
    fn kthvalue_is_one_based() {
        let v = [5.0f32, 1.0, 4.0, 1.0, 3.0];
        assert_eq!(kth_smallest(&v, 1), Some(1.0));
        assert_eq!(kth_smallest(&v, 2), Some(1.0));
        assert_eq!(kth_smallest(&v, 3), Some(3.0));
        assert_eq!(kth_smallest(&v, 5), Some(5.0));
        assert_eq!(kth_smallest(&v, 0), None);
        assert_eq!(kth_smallest(&v, 6), None);
    }
}
