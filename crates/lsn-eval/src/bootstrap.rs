//! Confidence intervals, written once: the 95% percentile bootstrap of a mean of per-example scores, and the paired
//! bootstrap of the difference between two runs on the same examples. Seeded; the same seed gives the same interval.

use lsn_core::SeededRng;
use serde::{Deserialize, Serialize};

/// Resamples used unless a caller asks for others.
pub const DEFAULT_RESAMPLES: usize = 2000;
/// The seed used unless a caller asks for another.
pub const DEFAULT_SEED: u64 = 42;

/// A mean with its 95% percentile-bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
    pub resamples: usize,
    pub seed: u64,
}

/// A paired difference `b − a` with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub delta: f64,
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
    pub resamples: usize,
    pub seed: u64,
    /// Whether the interval excludes 0: only then is the difference called one.
    pub excludes_zero: bool,
}

/// torch.quantile's linear rule on sorted values.
fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The means of `resamples` resamples (with replacement, `n` draws each) of `values`.
fn resampled_means(values: &[f64], resamples: usize, seed: u64) -> Vec<f64> {
    let n = values.len();
    let mut rng = SeededRng::new(seed);
    let mut means: Vec<f64> =
        (0..resamples).map(|_| (0..n).map(|_| values[rng.below(n as u64) as usize]).sum::<f64>() / n as f64).collect();
    means.sort_by(f64::total_cmp);
    means
}

/// The mean of `values` and its 95% percentile-bootstrap interval (2.5th and 97.5th percentiles of the resampled
/// means). `None` for no values.
pub fn bootstrap_mean(values: &[f64], resamples: usize, seed: u64) -> Option<Interval> {
    if values.is_empty() || resamples == 0 {
        return None;
    }
    let means = resampled_means(values, resamples, seed);
    Some(Interval {
        mean: values.iter().sum::<f64>() / values.len() as f64,
        lo: quantile_sorted(&means, 0.025),
        hi: quantile_sorted(&means, 0.975),
        n: values.len(),
        resamples,
        seed,
    })
}

/// The mean difference `b[i] − a[i]` over the same examples and its 95% paired-bootstrap interval (the examples are
/// resampled together, so what both runs share cancels). `None` when the lengths differ or are 0.
pub fn paired_bootstrap(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> Option<Delta> {
    if a.len() != b.len() {
        return None;
    }
    let diffs: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
    let i = bootstrap_mean(&diffs, resamples, seed)?;
    Some(Delta { delta: i.mean, lo: i.lo, hi: i.hi, n: i.n, resamples, seed, excludes_zero: i.lo > 0.0 || i.hi < 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_of_an_accuracy_has_the_textbook_width() {
        // 5010 examples at 75%: the normal approximation gives ±1.96·sqrt(.75·.25/5010) = ±1.2 points.
        let v: Vec<f64> = (0..5010).map(|i| if i % 4 == 0 { 0.0 } else { 100.0 }).collect();
        let i = bootstrap_mean(&v, 2000, 7).unwrap();
        assert!((i.mean - 100.0 * 3757.0 / 5010.0).abs() < 1e-9, "{i:?}");
        let half = (i.hi - i.lo) / 2.0;
        assert!((half - 1.2).abs() < 0.1, "{i:?}");
        assert_eq!(bootstrap_mean(&v, 2000, 7), Some(i), "seeded");
        assert_ne!(bootstrap_mean(&v, 2000, 8).unwrap().lo, i.lo);
        assert!(bootstrap_mean(&[], 10, 0).is_none());
    }

    #[test]
    fn pairing_cancels_what_both_runs_share() {
        // b is a with 30 of 1000 examples flipped from wrong to right: +3 points, and pairing sees it.
        let a: Vec<f64> = (0..1000).map(|i| if i % 2 == 0 { 100.0 } else { 0.0 }).collect();
        let mut b = a.clone();
        for i in (1..60).step_by(2) {
            b[i] = 100.0;
        }
        let d = paired_bootstrap(&a, &b, 2000, 1).unwrap();
        assert!((d.delta - 3.0).abs() < 1e-9 && d.excludes_zero && d.lo > 0.0, "{d:?}");
        // Unpaired, the two intervals overlap: the difference would not be seen.
        let (ia, ib) = (bootstrap_mean(&a, 2000, 1).unwrap(), bootstrap_mean(&b, 2000, 1).unwrap());
        assert!(ia.hi > ib.lo);
        let same = paired_bootstrap(&a, &a, 500, 1).unwrap();
        assert!(!same.excludes_zero && same.delta == 0.0);
        assert!(paired_bootstrap(&a, &b[1..], 10, 1).is_none());
    }
}
