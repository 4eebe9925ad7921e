//! Confidence intervals, written once: the percentile bootstrap of a mean of per-example scores, and of the difference
//! between runs over the same examples — one run per side (paired), several independent runs (training seeds) per
//! side, or several paired runs (one intervention per training seed). Every difference carries its 95% and 90%
//! intervals and a two-sided bootstrap p-value, which `verdict` turns into classes. Seeded; the same seed gives the
//! same interval, and the examples' order does not matter (they are put in a canonical order before resampling).

use std::cmp::Ordering;

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

/// A difference `b − a` with its 95% and 90% intervals and its bootstrap p-value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub delta: f64,
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
    pub resamples: usize,
    pub seed: u64,
    /// Whether the 95% interval excludes 0 (uncorrected: a table corrects for its number of cells, see `verdict`).
    pub excludes_zero: bool,
    /// The 90% interval: inside [−δ, +δ] it shows equivalence within ±δ by two one-sided tests at 5% (TOST).
    #[serde(default = "nan")]
    pub lo90: f64,
    #[serde(default = "nan")]
    pub hi90: f64,
    /// Two-sided bootstrap p-value of "no difference": 2·min(draws ≤ 0, draws ≥ 0), each count + 1 over
    /// resamples + 1, at most 1.
    #[serde(default = "one")]
    pub p: f64,
    /// Training runs per side (1: the interval covers the examples only, not training noise).
    #[serde(default = "one_run")]
    pub runs: usize,
}

fn one() -> f64 {
    1.0
}

/// A 90% interval that was never computed (a `Delta` written before it existed): never inside any margin.
fn nan() -> f64 {
    f64::NAN
}

fn one_run() -> usize {
    1
}

/// torch.quantile's linear rule on sorted values.
fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The examples' indices in a canonical order: by their values in every run, lexicographically. Resampling indices
/// of this order makes an interval a function of the examples as a set, whatever order a file lists them in.
fn canonical_order(runs: &[&[Vec<f64>]], n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&i, &j| {
        runs.iter()
            .flat_map(|side| side.iter())
            .map(|r| r[i].total_cmp(&r[j]))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    });
    idx
}

/// `Σ_side sign · mean over the side's runs of the mean over the examples` for the whole data (first) and its sorted
/// bootstrap draws (second): each draw resamples each side's runs independently (with replacement; a side of one
/// run keeps it) and, shared by every run of every side, the examples. All runs hold the same `n` examples in the
/// same order; both are computed over the canonical order, so neither depends on it.
fn estimate_and_draws(sides: &[(f64, &[Vec<f64>])], n: usize, resamples: usize, seed: u64) -> (f64, Vec<f64>) {
    let order = canonical_order(&sides.iter().map(|s| s.1).collect::<Vec<_>>(), n);
    let stat = |picks: &[Vec<usize>], examples: &[usize]| -> f64 {
        sides
            .iter()
            .zip(picks)
            .map(|((sign, runs), pick)| {
                sign * pick.iter().map(|&r| examples.iter().map(|&i| runs[r][i]).sum::<f64>()).sum::<f64>()
                    / (pick.len() * n) as f64
            })
            .sum()
    };
    let all: Vec<Vec<usize>> = sides.iter().map(|(_, runs)| (0..runs.len()).collect()).collect();
    let estimate = stat(&all, &order);
    let mut rng = SeededRng::new(seed);
    let mut examples = vec![0usize; n];
    let mut out: Vec<f64> = (0..resamples)
        .map(|_| {
            let picks: Vec<Vec<usize>> = sides
                .iter()
                .map(|(_, runs)| match runs.len() {
                    1 => vec![0],
                    k => (0..k).map(|_| rng.below(k as u64) as usize).collect(),
                })
                .collect();
            for e in examples.iter_mut() {
                *e = order[rng.below(n as u64) as usize];
            }
            stat(&picks, &examples)
        })
        .collect();
    out.sort_by(f64::total_cmp);
    (estimate, out)
}

/// The difference `delta` with the intervals and p-value of its sorted bootstrap draws.
fn delta_of(delta: f64, draws: &[f64], n: usize, seed: u64, runs: usize) -> Delta {
    let b = draws.len();
    if !delta.is_finite() || draws.iter().any(|d| !d.is_finite()) {
        // A score that is not a number (a missing metric): no interval, no evidence either way.
        let nan = f64::NAN;
        return Delta {
            delta,
            lo: nan,
            hi: nan,
            n,
            resamples: b,
            seed,
            excludes_zero: false,
            lo90: nan,
            hi90: nan,
            p: 1.0,
            runs,
        };
    }
    let below = draws.iter().filter(|&&d| d <= 0.0).count();
    let above = draws.iter().filter(|&&d| d >= 0.0).count();
    let p = (2.0 * (below.min(above) + 1) as f64 / (b + 1) as f64).min(1.0);
    let (lo, hi) = (quantile_sorted(draws, 0.025), quantile_sorted(draws, 0.975));
    Delta {
        delta,
        lo,
        hi,
        n,
        resamples: b,
        seed,
        excludes_zero: lo > 0.0 || hi < 0.0,
        lo90: quantile_sorted(draws, 0.05),
        hi90: quantile_sorted(draws, 0.95),
        p,
        runs,
    }
}

/// The mean of `values` and its 95% percentile-bootstrap interval (2.5th and 97.5th percentiles of the resampled
/// means). `None` for no values.
pub fn bootstrap_mean(values: &[f64], resamples: usize, seed: u64) -> Option<Interval> {
    let d = runs_mean(&[values.to_vec()], resamples, seed)?;
    Some(Interval { mean: d.delta, lo: d.lo, hi: d.hi, n: d.n, resamples, seed })
}

/// The mean score of several runs (training seeds) over the same examples, with intervals that resample the runs and
/// the examples; as a [`Delta`] from 0. `None` without runs or examples, or when the runs' lengths differ.
pub fn runs_mean(runs: &[Vec<f64>], resamples: usize, seed: u64) -> Option<Delta> {
    let n = runs.first()?.len();
    if n == 0 || resamples == 0 || runs.iter().any(|r| r.len() != n) {
        return None;
    }
    let (mean, draws) = estimate_and_draws(&[(1.0, runs)], n, resamples, seed);
    Some(delta_of(mean, &draws, n, seed, runs.len()))
}

/// The mean difference `b[i] − a[i]` over the same examples and its paired-bootstrap intervals (the examples are
/// resampled together, so what both runs share cancels). `None` when the lengths differ or are 0.
pub fn paired_bootstrap(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> Option<Delta> {
    if a.len() != b.len() {
        return None;
    }
    let diffs: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
    runs_mean(&[diffs], resamples, seed)
}

/// The mean over runs of each run's paired difference `b[r][i] − a[r][i]` — run `r` of each side shares a training
/// seed (an intervention on fine-tune `r` against fine-tune `r` without it) — with intervals that resample the runs
/// (as pairs) and the examples. With one run it is [`paired_bootstrap`]. `None` when the sides differ in runs or
/// any run's length differs or is 0.
pub fn paired_runs_bootstrap(a: &[Vec<f64>], b: &[Vec<f64>], resamples: usize, seed: u64) -> Option<Delta> {
    if a.len() != b.len() || a.iter().chain(b).any(|r| r.len() != a[0].len()) {
        return None;
    }
    let diffs: Vec<Vec<f64>> = a.iter().zip(b).map(|(x, y)| x.iter().zip(y).map(|(p, q)| q - p).collect()).collect();
    runs_mean(&diffs, resamples, seed)
}

/// The difference between the mean score of the runs `b` and of the runs `a` — each run one training seed's
/// per-example scores over the same examples — with intervals that resample each side's runs and, together for
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
    let (delta, draws) = estimate_and_draws(&[(-1.0, a), (1.0, b)], n, resamples, seed);
    Some(delta_of(delta, &draws, n, seed, a.len().min(b.len())))
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

    #[test]
    fn the_90_interval_and_the_p_value_follow_the_draws() {
        let a: Vec<f64> = (0..1000).map(|i| if i % 2 == 0 { 100.0 } else { 0.0 }).collect();
        let b = flipped(&a, 0, 60);
        let d = paired_bootstrap(&a, &b, 2000, 5).unwrap();
        assert!(d.lo < d.lo90 && d.lo90 < d.delta && d.delta < d.hi90 && d.hi90 < d.hi, "{d:?}");
        // +3 points on 1000 examples, every flip one way: no draw reaches 0, so p is the smallest it can be.
        assert!((d.p - 2.0 / 2001.0).abs() < 1e-12 && d.runs == 1, "{d:?}");
        // Identical runs: every draw is 0, p = 1, both intervals [0, 0].
        let same = paired_bootstrap(&a, &a, 500, 5).unwrap();
        assert!(same.p == 1.0 && same.lo90 == 0.0 && same.hi90 == 0.0 && !same.excludes_zero, "{same:?}");
        // A noisy difference around 0 has a large p.
        let mut c = flipped(&a, 0, 20);
        for x in c.iter_mut().step_by(2).take(10) {
            *x = 0.0;
        }
        let noisy = paired_bootstrap(&a, &c, 2000, 5).unwrap();
        assert!(noisy.delta == 0.0 && noisy.p > 0.5, "{noisy:?}");
        // A missing score (NaN) is no evidence: p = 1 and no interval, so no class but inconclusive.
        let mut missing = b.clone();
        missing[3] = f64::NAN;
        let m = paired_bootstrap(&a, &missing, 200, 5).unwrap();
        assert!(m.p == 1.0 && m.lo.is_nan() && m.lo90.is_nan() && !m.excludes_zero, "{m:?}");
    }

    #[test]
    fn paired_runs_average_each_seeds_own_difference() {
        let base: Vec<f64> = (0..1000).map(|i| if i % 2 == 0 { 100.0 } else { 0.0 }).collect();
        // Three fine-tunes that scatter (+0, +6, +12 points) and an intervention that adds +2 on each: the paired
        // difference per seed is +2 whatever the scatter, and so is their mean.
        let a = vec![base.clone(), flipped(&base, 0, 120), flipped(&base, 200, 440)];
        let b: Vec<Vec<f64>> = a.iter().map(|r| flipped(r, 900, 940)).collect();
        let d = paired_runs_bootstrap(&a, &b, 2000, 9).unwrap();
        assert!((d.delta - 2.0).abs() < 1e-9 && d.excludes_zero && d.runs == 3, "{d:?}");
        // Unpaired, the seeds' scatter swamps it.
        let u = runs_bootstrap(&a, &b, 2000, 9).unwrap();
        assert!(!u.excludes_zero && u.hi - u.lo > d.hi - d.lo, "{u:?}");
        // One run each is the paired bootstrap; mismatched sides are refused.
        assert_eq!(paired_runs_bootstrap(&a[..1], &b[..1], 500, 9), paired_bootstrap(&a[0], &b[0], 500, 9));
        assert!(paired_runs_bootstrap(&a, &b[..2], 10, 9).is_none());
        let m = runs_mean(&a, 2000, 9).unwrap();
        assert!((m.delta - 56.0).abs() < 1e-9 && m.lo < 56.0 && m.hi > 56.0, "{m:?}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// The intervals, and so the classes, are those of the examples as a set: any order of the same examples gives
        /// the same bits.
        #[test]
        fn the_order_of_the_examples_does_not_matter(
            rows in proptest::collection::vec((0u8..2, 0u8..2, 0u8..2, 0u8..2), 2..80),
            rot in 0usize..1000,
            seed in 0u64..1000,
        ) {
            let runs = |k: usize, rows: &[(u8, u8, u8, u8)]| -> Vec<f64> {
                rows.iter().map(|r| 100.0 * f64::from([r.0, r.1, r.2, r.3][k])).collect()
            };
            let mut shuffled = rows.clone();
            shuffled.rotate_left(rot % rows.len());
            shuffled.reverse();
            let (a, b) = (vec![runs(0, &rows), runs(1, &rows)], vec![runs(2, &rows), runs(3, &rows)]);
            let (sa, sb) = (vec![runs(0, &shuffled), runs(1, &shuffled)], vec![runs(2, &shuffled), runs(3, &shuffled)]);
            proptest::prop_assert_eq!(paired_bootstrap(&a[0], &b[0], 200, seed), paired_bootstrap(&sa[0], &sb[0], 200, seed));
            proptest::prop_assert_eq!(runs_bootstrap(&a, &b, 200, seed), runs_bootstrap(&sa, &sb, 200, seed));
            proptest::prop_assert_eq!(paired_runs_bootstrap(&a, &b, 200, seed), paired_runs_bootstrap(&sa, &sb, 200, seed));
        }
    }
}
