//! Confidence intervals, written once: the 95% percentile bootstrap of a mean of per-example scores, and the paired
//! bootstrap of the difference between two runs on the same examples, and its extension to several runs (training
//! seeds) per side. Seeded; the same seed gives the same interval.

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

/// The difference between the mean score of the runs `b` and of the runs `a` — each run one training seed's
/// per-example scores over the same examples — with a 95% interval that resamples each side's runs and, together for
/// every run, the examples. Unlike [`paired_bootstrap`] of one run against one, it covers training variance: two
/// fine-tunes that differ in anything start a different trajectory, and one seed per side measures that draw, not the
/// difference. With one run per side it is [`paired_bootstrap`]; with few runs it is optimistic (resampling k runs
/// sees (k − 1)/k of their variance). `None` when a side is empty or the runs' lengths differ or are 0.
pub fn runs_bootstrap(a: &[Vec<f64>], b: &[Vec<f64>], resamples: usize, seed: u64) -> Option<Delta> {
    let n = a.first()?.len();
    if b.is_empty() || n == 0 || resamples == 0 || a.iter().chain(b).any(|r| r.len() != n) {
        return None;
    }
    if let ([a], [b]) = (a, b) {
        return paired_bootstrap(a, b, resamples, seed);
    }
    let mean = |runs: &[Vec<f64>]| runs.iter().flatten().sum::<f64>() / (runs.len() * n) as f64;
    let delta = mean(b) - mean(a);
    let mut rng = SeededRng::new(seed);
    let mut examples = vec![0usize; n];
    let mut draws: Vec<f64> = (0..resamples)
        .map(|_| {
            let mut side = |runs: &[Vec<f64>]| -> Vec<usize> {
                (0..runs.len()).map(|_| rng.below(runs.len() as u64) as usize).collect()
            };
            let (ra, rb) = (side(a), side(b));
            for e in examples.iter_mut() {
                *e = rng.below(n as u64) as usize;
            }
            let resampled = |runs: &[Vec<f64>], chosen: &[usize]| {
                chosen.iter().map(|&r| examples.iter().map(|&i| runs[r][i]).sum::<f64>()).sum::<f64>()
                    / (chosen.len() * n) as f64
            };
            resampled(b, &rb) - resampled(a, &ra)
        })
        .collect();
    draws.sort_by(f64::total_cmp);
    let (lo, hi) = (quantile_sorted(&draws, 0.025), quantile_sorted(&draws, 0.975));
    Some(Delta { delta, lo, hi, n, resamples, seed, excludes_zero: lo > 0.0 || hi < 0.0 })
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

    /// `base` with the odd examples of `from..to` (scored 0 in `base`) flipped to 100: +1 point per 20 examples of a
    /// 1000-example run.
    fn flipped(base: &[f64], from: usize, to: usize) -> Vec<f64> {
        let mut r = base.to_vec();
        for i in (from..to).filter(|i| i % 2 == 1) {
            r[i] = 100.0;
        }
        r
    }

    #[test]
    fn several_runs_per_side_cover_training_variance() {
        let base: Vec<f64> = (0..1000).map(|i| if i % 2 == 0 { 100.0 } else { 0.0 }).collect();
        // One run per side: exactly the paired bootstrap.
        let (x, y) = (flipped(&base, 0, 60), flipped(&base, 100, 120));
        assert_eq!(
            runs_bootstrap(std::slice::from_ref(&x), std::slice::from_ref(&y), 500, 3),
            paired_bootstrap(&x, &y, 500, 3)
        );
        // Runs that scatter by seed (+6, +0, +12 points, different examples each) with the same mean on both sides:
        // run 0 against run 0 is a "difference" of −6; over the three runs there is none.
        let a = vec![flipped(&base, 0, 120), base.clone(), flipped(&base, 200, 440)];
        let b = vec![base.clone(), flipped(&base, 500, 620), flipped(&base, 600, 840)];
        let one = paired_bootstrap(&a[0], &b[0], 2000, 3).unwrap();
        assert!(one.excludes_zero && (one.delta + 6.0).abs() < 1e-9, "{one:?}");
        let all = runs_bootstrap(&a, &b, 2000, 3).unwrap();
        assert!(all.delta.abs() < 1e-9 && !all.excludes_zero && all.hi - all.lo > one.hi - one.lo, "{all:?}");
        // A shift every run of b shows (+15 points on top of the same scatter) is seen through the scatter.
        let shifted: Vec<Vec<f64>> = a.iter().map(|r| flipped(r, 700, 1000)).collect();
        let seen = runs_bootstrap(&a, &shifted, 2000, 3).unwrap();
        assert!((seen.delta - 15.0).abs() < 1e-9 && seen.excludes_zero, "{seen:?}");
        assert_eq!(runs_bootstrap(&a, &shifted, 2000, 3), Some(seen), "seeded");
        assert!(runs_bootstrap(&a, &[], 10, 3).is_none() && runs_bootstrap(&a, &[base[1..].to_vec()], 10, 3).is_none());
    }
}
