//! Verdicts a statistician would sign, written once: every difference of a table in exactly one class (higher, lower,
//! equivalent within ±δ, inconclusive) after a Holm–Bonferroni correction over the table's cells, the table's verdict
//! on the paper's claim, the checks that say a table cannot test it, and its minimum detectable effect.
//!
//! The rules:
//! - *higher* / *lower*: the Holm-adjusted bootstrap p-value of the cell is at most 5% (family-wise over the cells of
//!   one table), and Δ is above / below 0;
//! - *equivalent within ±δ*: not a difference, and the 90% interval lies inside [−δ, +δ] — two one-sided tests at 5%
//!   (TOST) — the interval never narrower than Δ ± 100·(1 − 0.05^(1/n)), what n examples can resolve (an interval of
//!   [0, 0] from 20 unchanged examples shows nothing). δ is fixed before the run;
//! - *inconclusive*: neither.
//!
//! A table is *consistent with the paper* when every cell is equivalent or lower (an intersection–union test: each
//! cell's test at 5% is already a 5% test of "all of them", no correction needed); it *contradicts* the paper when a
//! cell is higher after correction; otherwise it is *inconclusive*; it *cannot test* the claim when the model under
//! test did not learn the task, since then no intervention or fine-tune could have shown an effect.

use serde::{Deserialize, Serialize};

use crate::bootstrap::Delta;

/// The family-wise error rate of a table's differences, and each equivalence test's level.
pub const ALPHA: f64 = 0.05;
/// δ, the equivalence margin in points of accuracy or F1, unless the run states another.
pub const DEFAULT_MARGIN: f64 = 2.0;
/// δ of the language-forcing tables, in points of the share of continuations in the target language, unless the run
/// states another: a steering operation within ±10 points of its control forces no language that matters. It is
/// wider than [`DEFAULT_MARGIN`] because a share is judged over tens of prompts, not hundreds of examples, and no
/// interval is taken narrower than [`resolution`] (≈ 5.8 points at 50 prompts), so ±2 could never show equivalence.
pub const FORCING_MARGIN: f64 = 10.0;
/// XNLI's chance accuracy (three balanced labels), in percent.
pub const XNLI_CHANCE: f64 = 100.0 / 3.0;

/// The class of one difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Higher,
    Lower,
    Equivalent,
    Inconclusive,
}

impl Class {
    /// Short, for a table cell.
    pub fn label(self, margin: f64) -> String {
        match self {
            Class::Higher => "higher".into(),
            Class::Lower => "lower".into(),
            Class::Equivalent => format!("≡ ±{margin}"),
            Class::Inconclusive => "inconclusive".into(),
        }
    }

    /// Equivalent or different: a cell that says something.
    pub fn conclusive(self) -> bool {
        self != Class::Inconclusive
    }
}

/// One difference judged within its table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Judged {
    pub class: Class,
    /// The Holm-adjusted p-value of "no difference" over the table's cells.
    pub p_holm: f64,
}

/// Holm–Bonferroni adjusted p-values, in the input's order: the i-th smallest p becomes
/// max over j ≤ i of min(1, (m − j + 1)·p₍ⱼ₎). A cell is a difference at family-wise level α when its adjusted p ≤ α.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]).then(i.cmp(&j)));
    let mut adjusted = vec![1.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// The finest resolution `n` examples allow a difference of scores on a 0–100 scale: 100·(1 − 0.05^(1/n)), the most
/// a difference could be (at 95%, one-sided) when not one of the n examples changed — the rule of three, ≈ 300/n. A
/// percentile bootstrap of data that never differ gives the interval [0, 0], which would claim equivalence from 20
/// unchanged examples; no interval is taken to be narrower than this around Δ.
pub fn resolution(n: usize) -> f64 {
    if n == 0 { f64::INFINITY } else { 100.0 * (1.0 - 0.05f64.powf(1.0 / n as f64)) }
}

/// Whether the 90% interval of `d`, widened to at least Δ ± [`resolution`], lies inside [−margin, +margin].
pub fn within_margin(d: &Delta, margin: f64) -> bool {
    let r = resolution(d.n);
    -margin <= d.lo90.min(d.delta - r) && d.hi90.max(d.delta + r) <= margin
}

/// Whether the 90% interval of `d` lies inside [−margin, +margin], for a continuous score (a mean NLL per token),
/// whose bootstrap interval is not the coarse one of 0/100 example scores and needs no [`resolution`] floor.
pub fn within_margin_continuous(d: &Delta, margin: f64) -> bool {
    -margin <= d.lo90 && d.hi90 <= margin
}

/// The classes of one table's differences (the family the correction runs over).
pub fn classify(deltas: &[Delta], margin: f64) -> Vec<Judged> {
    classify_by(deltas, |_, d| within_margin(d, margin))
}

/// [`classify`] over the cells that can test (`Some`), as one family; `None` for the others, in the input's order.
pub fn classify_tested(deltas: &[Option<Delta>], margin: f64) -> Vec<Option<Judged>> {
    let tested: Vec<Delta> = deltas.iter().flatten().copied().collect();
    let mut judged = classify(&tested, margin).into_iter();
    deltas.iter().map(|d| d.and_then(|_| judged.next())).collect()
}

/// [`classify`] with each difference's own equivalence test (`equivalent(i, d)`), for a family that mixes scores of
/// different units (accuracy points and NLL per token): Holm's correction runs over all of them.
pub fn classify_by(deltas: &[Delta], equivalent: impl Fn(usize, &Delta) -> bool) -> Vec<Judged> {
    let adjusted = holm(&deltas.iter().map(|d| d.p).collect::<Vec<_>>());
    deltas
        .iter()
        .zip(adjusted)
        .enumerate()
        .map(|(i, (d, p_holm))| {
            let class = if p_holm <= ALPHA && d.delta > 0.0 {
                Class::Higher
            } else if p_holm <= ALPHA && d.delta < 0.0 {
                Class::Lower
            } else if equivalent(i, d) {
                Class::Equivalent
            } else {
                Class::Inconclusive
            };
            Judged { class, p_holm }
        })
        .collect()
}

/// A table's verdict on the paper's claim (that the neurons do not help).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableVerdict {
    /// Every cell equivalent within ±δ or lower.
    Consistent,
    /// A cell higher after correction.
    Contradicts,
    /// Neither.
    Inconclusive,
    /// The model under test did not learn the task (or no cell could be tested).
    CannotTest,
}

impl TableVerdict {
    pub fn label(self) -> &'static str {
        match self {
            TableVerdict::Consistent => "consistent with the paper",
            TableVerdict::Contradicts => "contradicts the paper",
            TableVerdict::Inconclusive => "inconclusive",
            TableVerdict::CannotTest => "cannot test",
        }
    }
}

/// The verdict of a table from the classes of its testable cells (none: cannot test).
pub fn table_verdict(classes: &[Class]) -> TableVerdict {
    if classes.is_empty() {
        TableVerdict::CannotTest
    } else if classes.contains(&Class::Higher) {
        TableVerdict::Contradicts
    } else if classes.iter().all(|c| matches!(c, Class::Equivalent | Class::Lower)) {
        TableVerdict::Consistent
    } else {
        TableVerdict::Inconclusive
    }
}

/// Why the model under test cannot show an effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum Untestable {
    /// XNLI: its accuracy interval includes chance.
    AtChance { mean: f64, lo: f64, hi: f64 },
    /// XQuAD: not one exact match.
    NoExactMatch,
    /// XQuAD: most answers ran to the token limit without ending (percent that ended).
    AnswersDoNotEnd { ended: f64 },
    /// The model under test could not be scored (its runs hold different examples, or lack the metric).
    Unscored { why: String },
    /// A comparison of two trainings with one training seed per side: its interval covers the examples, not the
    /// training noise.
    OneTrainingSeed,
}

impl std::fmt::Display for Untestable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Untestable::AtChance { mean, lo, hi } => write!(
                f,
                "accuracy {mean:.2} [{lo:.2}, {hi:.2}] includes chance ({XNLI_CHANCE:.2}): the model did not learn the task"
            ),
            Untestable::NoExactMatch => write!(f, "exact match 0: the model answers no question exactly"),
            Untestable::AnswersDoNotEnd { ended } => {
                write!(f, "only {ended:.0}% of answers end before the token limit: the model does not answer")
            }
            Untestable::Unscored { why } => write!(f, "score could not be computed ({why})"),
            Untestable::OneTrainingSeed => write!(
                f,
                "one training seed per fine-tune: two fine-tunes of one seed each differ by their training draw as much \
                 as by their neurons, and the interval covers only the examples (rerun with --seeds 3 or more)"
            ),
        }
    }
}

/// XNLI's check of the model under test, from its accuracy (mean over runs with an interval over runs and examples).
pub fn xnli_check(accuracy: &Delta) -> Option<Untestable> {
    (accuracy.lo <= XNLI_CHANCE && XNLI_CHANCE <= accuracy.hi).then_some(Untestable::AtChance {
        mean: accuracy.delta,
        lo: accuracy.lo,
        hi: accuracy.hi,
    })
}

/// XQuAD's check of the model under test, from its mean exact match (the paper's metric, percent) and the percent of
/// its answers that ended (EOS) before the token limit: at least half must.
pub fn xquad_check(exact_match: f64, ended: f64) -> Option<Untestable> {
    if exact_match <= 0.0 {
        Some(Untestable::NoExactMatch)
    } else if ended < 50.0 {
        Some(Untestable::AnswersDoNotEnd { ended })
    } else {
        None
    }
}

/// The half-width of a typical (median) cell's 95% interval. `None` without cells.
pub fn typical_half_width(deltas: &[Delta]) -> Option<f64> {
    let mut h: Vec<f64> = deltas.iter().map(|d| (d.hi - d.lo) / 2.0).collect();
    if h.is_empty() {
        return None;
    }
    h.sort_by(f64::total_cmp);
    let k = h.len();
    Some(if k % 2 == 1 { h[k / 2] } else { (h[k / 2 - 1] + h[k / 2]) / 2.0 })
}

/// The standard normal quantile (Acklam's rational approximation, relative error below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// The minimum detectable effect of a table's `m` tested cells: the true difference a typical cell (median standard
/// error, read off its 95% interval as half-width / 1.96) would call a difference with 80% power after Holm's
/// correction at its first step, α / m two-sided: (z₁₋α/(2m) + z₀.₈)·SE. A smaller true effect is likely to come out
/// inconclusive or equivalent. `None` without cells.
pub fn detectable_effect(deltas: &[Delta]) -> Option<f64> {
    let se = typical_half_width(deltas)? / normal_quantile(0.975);
    let m = deltas.len() as f64;
    Some((normal_quantile(1.0 - ALPHA / (2.0 * m)) + normal_quantile(0.8)) * se)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::paired_bootstrap;

    /// A difference with its intervals and p given.
    fn d(delta: f64, lo: f64, hi: f64, lo90: f64, hi90: f64, p: f64) -> Delta {
        Delta {
            delta,
            lo,
            hi,
            n: 500,
            resamples: 2000,
            seed: 0,
            excludes_zero: lo > 0.0 || hi < 0.0,
            lo90,
            hi90,
            p,
            runs: 1,
        }
    }

    #[test]
    fn a_mixed_family_is_corrected_together_and_each_cell_held_to_its_own_margin() {
        // An NLL difference of 0.004 nats on 16 rows: inside ±0.02 by its own interval, which the 0–100 scale's
        // resolution floor (≈ 17 points at n = 16) would never allow; an accuracy cell beside it keeps the floor.
        let nll = Delta { n: 16, ..d(0.004, -0.01, 0.018, -0.008, 0.015, 0.6) };
        let acc = d(0.5, -1.0, 2.0, -0.8, 1.7, 0.5);
        let hit = d(5.0, 3.0, 7.0, 3.3, 6.7, 0.02);
        let j = classify_by(&[nll, acc, hit], |i, d| {
            if i == 0 { within_margin_continuous(d, 0.02) } else { within_margin(d, 2.0) }
        });
        assert_eq!(
            j.iter().map(|j| j.class).collect::<Vec<_>>(),
            [Class::Equivalent, Class::Equivalent, Class::Inconclusive]
        );
        // Holm over all three: 0.02 × 3 = 0.06 > 0.05, so the large cell is not a difference in this family.
        assert!((j[2].p_holm - 0.06).abs() < 1e-12);
        assert!(!within_margin(&nll, 0.02) && !within_margin_continuous(&Delta { hi90: 0.03, ..nll }, 0.02));
        assert_eq!(classify(&[acc, hit], 2.0)[1].class, Class::Higher, "alone with one other cell, p_Holm 0.04");
    }

    #[test]
    fn each_of_the_four_classes() {
        let cells = [
            d(3.0, 1.5, 4.5, 1.8, 4.2, 0.001),      // higher
            d(-3.0, -4.5, -1.5, -4.2, -1.8, 0.001), // lower
            d(0.2, -0.9, 1.3, -0.7, 1.1, 0.7),      // equivalent within ±2
            d(0.5, -2.5, 3.5, -2.0, 3.0, 0.6),      // inconclusive: the 90% interval leaves ±2
        ];
        let j = classify(&cells, 2.0);
        let classes: Vec<Class> = j.iter().map(|j| j.class).collect();
        assert_eq!(classes, [Class::Higher, Class::Lower, Class::Equivalent, Class::Inconclusive]);
        // With a wider margin the last one is equivalent; with a narrower one the third is not.
        assert_eq!(classify(&cells, 3.5)[3].class, Class::Equivalent);
        assert_eq!(classify(&cells, 1.0)[2].class, Class::Inconclusive);
        assert!(Class::Equivalent.conclusive() && !Class::Inconclusive.conclusive());
    }

    #[test]
    fn few_unchanged_examples_do_not_show_equivalence() {
        // 20 examples, not one changed: the bootstrap interval is [0, 0], but 20 examples cannot rule out a 14-point
        // difference (rule of three); 600 can rule out 0.5.
        let mut none = d(0.0, 0.0, 0.0, 0.0, 0.0, 1.0);
        none.n = 20;
        assert!((resolution(20) - 13.91).abs() < 0.01 && (resolution(600) - 0.498).abs() < 0.001);
        assert_eq!(classify(&[none], 2.0)[0].class, Class::Inconclusive);
        none.n = 600;
        assert_eq!(classify(&[none], 2.0)[0].class, Class::Equivalent);
        // Near the margin the floor counts too: Δ 1.8 with a tight interval is not inside ±2 at 600 examples.
        let mut near = d(1.8, 1.0, 1.95, 1.2, 1.9, 0.2);
        near.n = 600;
        assert_eq!(classify(&[near], 2.0)[0].class, Class::Inconclusive);
        // 50 forcing prompts, none in the target with or without steering: ±2 points cannot show it, the forcing
        // margin can (the floor at 50 is ≈ 5.8 points).
        none.n = 50;
        assert!((resolution(50) - 5.815).abs() < 0.001);
        assert_eq!(classify(&[none], DEFAULT_MARGIN)[0].class, Class::Inconclusive);
        assert_eq!(classify(&[none], FORCING_MARGIN)[0].class, Class::Equivalent);
        // Cells that cannot test stay out of the family and keep their places.
        let j = classify_tested(&[None, Some(none), None], FORCING_MARGIN);
        assert!(j[0].is_none() && j[2].is_none() && j[1].unwrap().class == Class::Equivalent);
    }

    #[test]
    fn holm_corrects_for_the_cells_of_a_table() {
        // Raw p 0.01, 0.02, 0.03, 0.5: adjusted 0.04, 0.06, 0.06, 0.5 — one difference survives of the three a
        // cell-by-cell 5% rule would call.
        let adj = holm(&[0.02, 0.5, 0.01, 0.03]);
        let want = [0.06, 0.5, 0.04, 0.06];
        for (a, w) in adj.iter().zip(want) {
            assert!((a - w).abs() < 1e-12, "{adj:?}");
        }
        // One cell alone is its own family: uncorrected.
        assert_eq!(holm(&[0.03]), vec![0.03]);
        let cells = [d(2.5, 0.2, 4.8, 0.5, 4.5, 0.03), d(2.5, 0.2, 4.8, 0.5, 4.5, 0.03)];
        assert!(classify(&cells[..1], 2.0)[0].class == Class::Higher);
        assert!(
            classify(&cells, 2.0).iter().all(|j| j.class == Class::Inconclusive && (j.p_holm - 0.06).abs() < 1e-12)
        );
    }

    #[test]
    fn a_table_verdict_from_its_cells() {
        use Class::*;
        assert_eq!(table_verdict(&[Equivalent, Lower, Equivalent]), TableVerdict::Consistent);
        assert_eq!(table_verdict(&[Equivalent, Higher, Lower]), TableVerdict::Contradicts);
        assert_eq!(table_verdict(&[Equivalent, Inconclusive, Lower]), TableVerdict::Inconclusive);
        assert_eq!(table_verdict(&[Higher, Inconclusive]), TableVerdict::Contradicts);
        assert_eq!(table_verdict(&[]), TableVerdict::CannotTest);
    }

    #[test]
    fn a_model_that_did_not_learn_cannot_test() {
        // 32.0 [25.5, 38.5] on 200 pairs: chance is inside.
        let at_chance = d(32.0, 25.5, 38.5, 26.5, 37.5, 1.0);
        let e = xnli_check(&at_chance).unwrap();
        assert!(e.to_string().contains("includes chance (33.33)"), "{e}");
        assert!(xnli_check(&d(45.0, 41.0, 49.0, 41.5, 48.5, 0.001)).is_none());
        // Below chance with an interval that excludes it is a model that learned something (the wrong way round).
        assert!(xnli_check(&d(25.0, 21.0, 29.0, 22.0, 28.0, 0.001)).is_none());
        assert_eq!(xquad_check(0.0, 100.0), Some(Untestable::NoExactMatch));
        assert_eq!(xquad_check(12.0, 30.0), Some(Untestable::AnswersDoNotEnd { ended: 30.0 }));
        assert!(xquad_check(12.0, 80.0).is_none());
        assert!(Untestable::AnswersDoNotEnd { ended: 30.0 }.to_string().contains("only 30% of answers end"));
    }

    #[test]
    fn the_minimum_detectable_effect_is_a_typical_half_width() {
        let cells =
            [d(0.0, -1.0, 1.0, 0.0, 0.0, 1.0), d(0.0, -3.0, 3.0, 0.0, 0.0, 1.0), d(0.0, -2.0, 2.0, 0.0, 0.0, 1.0)];
        assert_eq!(typical_half_width(&cells), Some(2.0));
        assert_eq!(typical_half_width(&cells[..2]), Some(2.0));
        assert_eq!(typical_half_width(&[]), None);
        // One cell of half-width 1.96 (SE 1): (1.96 + 0.84)·1 = 2.80; 21 cells: Holm's first step at 0.05/21.
        let one = [d(0.0, -1.96, 1.96, 0.0, 0.0, 1.0)];
        assert!((detectable_effect(&one).unwrap() - 2.8016).abs() < 1e-3);
        let many = vec![one[0]; 21];
        assert!((detectable_effect(&many).unwrap() - (3.0381 + 0.8416)).abs() < 1e-3);
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-6 && (normal_quantile(0.001) + 3.090_232).abs() < 1e-6);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Equivalence is never claimed when the 90% interval is wider than the margin allows.
        #[test]
        fn no_equivalence_with_an_interval_wider_than_the_margin(
            flips in proptest::collection::vec(-1i8..=1, 5..200),
            margin in 0.1f64..10.0,
            seed in 0u64..100,
        ) {
            let a = vec![0.0; flips.len()];
            let b: Vec<f64> = flips.iter().map(|&f| 100.0 * f64::from(f)).collect();
            let delta = paired_bootstrap(&a, &b, 300, seed).unwrap();
            let j = classify(&[delta], margin)[0];
            if (delta.hi90 - delta.lo90) / 2.0 > margin {
                proptest::prop_assert_ne!(j.class, Class::Equivalent);
            }
            if j.class == Class::Equivalent {
                proptest::prop_assert!(-margin <= delta.lo90 && delta.hi90 <= margin);
            }
        }

        /// Holm never calls more cells different than the uncorrected 5% rule does.
        #[test]
        fn holm_marks_no_more_than_the_uncorrected_rule(p in proptest::collection::vec(0.0f64..1.0, 1..40)) {
            let adj = holm(&p);
            for (raw, a) in p.iter().zip(&adj) {
                proptest::prop_assert!(*a >= *raw && *a <= 1.0);
            }
            let corrected = adj.iter().filter(|&&a| a <= ALPHA).count();
            let uncorrected = p.iter().filter(|&&x| x <= ALPHA).count();
            proptest::prop_assert!(corrected <= uncorrected);
        }
    }
}
