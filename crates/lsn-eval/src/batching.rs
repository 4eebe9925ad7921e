//! Batches sorted by length: examples are grouped longest first, so a batch pads little. Which examples share a
//! batch never changes a per-example result (padding is masked everywhere); the conformance suite and the tests check
//! that batch sizes 1 and 8 give the same predictions.

/// Indices `0..lengths.len()` in batches of at most `batch` (≥ 1), longest first; equal lengths keep index order.
pub fn by_length(lengths: &[usize], batch: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
    order.chunks(batch.max(1)).map(<[usize]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_first_in_chunks() {
        assert_eq!(by_length(&[3, 9, 3, 5], 2), vec![vec![1, 3], vec![0, 2]]);
        assert_eq!(by_length(&[1, 2], 0), vec![vec![1], vec![0]]);
        assert!(by_length(&[], 4).is_empty());
    }
}
