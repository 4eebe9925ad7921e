//! Order statistics as the reference code computes them: Python's `round` (half to even) for sizes, and
//! `torch.kthvalue` (1-based k-th smallest). `torch.quantile`'s rule is `lsn_core::taps::quantile_linear_f32`.

/// Python's `round(x)` for a non-negative f64: halves go to the even neighbour (`round(2.5) == 2`).
pub fn round_half_even(x: f64) -> usize {
    x.round_ties_even().max(0.0) as usize
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
    fn python_rounding_and_kthvalue() {
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(3.5), 4);
        assert_eq!(round_half_even(368.64), 369); // 0.01 · 18 · 2048
        assert_eq!(round_half_even(4587.52), 4588); // 0.01 · 32 · 14336 (Llama-3.1-8B)
        assert_eq!(round_half_even(40.0 * 0.95), 38);
        let v = [5.0f32, 1.0, 4.0, 1.0, 3.0];
        assert_eq!(kth_smallest(&v, 1), Some(1.0));
        assert_eq!(kth_smallest(&v, 2), Some(1.0));
        assert_eq!(kth_smallest(&v, 3), Some(3.0));
        assert_eq!(kth_smallest(&v, 5), Some(5.0));
        assert_eq!(kth_smallest(&v, 0), None);
        assert_eq!(kth_smallest(&v, 6), None);
    }
}
