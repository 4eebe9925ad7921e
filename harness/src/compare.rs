//! Comparing what two backends produced on the same slice: every capture statistic's largest difference, and the
//! neuron sets' symmetric differences (with how close the differing neurons sit to the method's cut).

use std::collections::BTreeSet;

use lsn_core::{ActivationStats, NeuronId};
use lsn_select::Selection;

/// The largest difference of one statistic over every language and neuron.
#[derive(Debug, Clone, PartialEq)]
pub struct StatDiff {
    pub what: &'static str,
    pub max_abs: f64,
    /// Neurons (over all languages) where the values differ at all.
    pub differing: usize,
}

fn diff_f64(what: &'static str, a: impl Iterator<Item = f64>, b: impl Iterator<Item = f64>) -> StatDiff {
    let mut d = StatDiff { what, max_abs: 0.0, differing: 0 };
    for (x, y) in a.zip(b) {
        let e = (x - y).abs();
        if e > 0.0 || x.is_nan() != y.is_nan() {
            d.differing += 1;
            d.max_abs = d.max_abs.max(if e.is_nan() { f64::INFINITY } else { e });
        }
    }
    d
}

/// Per statistic, the largest difference between `a` and `b` (the same languages, in the same order). Counts are
/// compared as counts; moments as per-token mean and standard deviation; quantiles as the batch-averaged values.
pub fn stats(a: &[(String, ActivationStats)], b: &[(String, ActivationStats)]) -> Result<Vec<StatDiff>, String> {
    if a.len() != b.len() || a.iter().zip(b).any(|(x, y)| x.0 != y.0) {
        return Err("the two captures cover different languages".into());
    }
    let mut out: Vec<StatDiff> = Vec::new();
    let mut add = |d: StatDiff| match out.iter_mut().find(|o| o.what == d.what) {
        Some(o) => {
            o.max_abs = o.max_abs.max(d.max_abs);
            o.differing += d.differing;
        }
        None => out.push(d),
    };
    for ((lang, x), (_, y)) in a.iter().zip(b) {
        if x.pass1.n_tokens != y.pass1.n_tokens || x.layers != y.layers || x.intermediate != y.intermediate {
            return Err(format!("{lang}: the captures differ in shape or token count"));
        }
        fn counts(v: &[u64]) -> impl Iterator<Item = f64> + '_ {
            v.iter().map(|&c| c as f64)
        }
        add(diff_f64("count_pos", counts(&x.pass1.count_pos), counts(&y.pass1.count_pos)));
        add(diff_f64("mean", x.mean().into_iter(), y.mean().into_iter()));
        add(diff_f64("std", x.std().into_iter(), y.std().into_iter()));
        let q = |s: &ActivationStats| s.quantile_means().into_iter().map(f64::from);
        add(diff_f64("quantile_mean (p5…p95)", q(x), q(y)));
        match (&x.pass2, &y.pass2) {
            (Some(p), Some(r)) => add(diff_f64("count_above (p5…p95)", counts(&p.count_above), counts(&r.count_above))),
            (None, None) => {}
            _ => return Err(format!("{lang}: only one capture has pass 2")),
        }
    }
    Ok(out)
}

/// How two selections of the same method differ.
#[derive(Debug, Clone, PartialEq)]
pub struct SetDiff {
    pub method: String,
    /// Σ over languages of |A △ B|.
    pub symmetric_difference: usize,
    /// Per differing language: `lang: +n/−m`, and for LAPE how far the differing neurons' entropies sit from the
    /// cut-off.
    pub note: String,
}

/// Compares two selections of one method, language by language.
pub fn selections(a: &Selection, b: &Selection) -> Result<SetDiff, String> {
    if a.method != b.method || a.languages != b.languages {
        return Err(format!(
            "cannot compare {} over {:?} with {} over {:?}",
            a.method, a.languages, b.method, b.languages
        ));
    }
    let mut total = 0;
    let mut notes = Vec::new();
    for lang in &a.languages {
        let set = |s: &Selection| s.of(lang).unwrap_or_default().iter().copied().collect::<BTreeSet<NeuronId>>();
        let (x, y) = (set(a), set(b));
        let only_a: Vec<NeuronId> = x.difference(&y).copied().collect();
        let only_b: Vec<NeuronId> = y.difference(&x).copied().collect();
        if only_a.is_empty() && only_b.is_empty() {
            continue;
        }
        total += only_a.len() + only_b.len();
        let mut note = format!("{lang}: {} only in the first, {} only in the second", only_a.len(), only_b.len());
        let differing: Vec<NeuronId> = only_a.iter().chain(&only_b).copied().collect();
        if let Some(gap) = cut_gap(a, b, lang, &differing) {
            note.push_str(&format!(" (their scores lie within {gap:.2e} of the cut)"));
        }
        notes.push(note);
    }
    Ok(SetDiff { method: a.method.clone(), symmetric_difference: total, note: notes.join("; ") })
}

/// How far the scores of `neurons` lie from the method's cut in `a`/`b`: LAPE entropy vs the entropy cut-off,
/// ActProb-90p score vs the language's score cut-off. `None` for methods without scores (random).
fn cut_gap(a: &Selection, b: &Selection, lang: &str, neurons: &[NeuronId]) -> Option<f32> {
    let mut gaps = Vec::new();
    for s in [a, b] {
        if let (Some(cut), Some(scores)) = (s.thresholds.entropy_cutoff, &s.lape_scores) {
            gaps.extend(scores.iter().filter(|x| neurons.contains(&x.neuron)).map(|x| (x.entropy - cut).abs()));
        }
        if let (Some(cut), Some(scores)) =
            (s.thresholds.score_cutoff.get(lang), s.act_prob_scores.as_ref().and_then(|m| m.get(lang)))
        {
            gaps.extend(scores.iter().filter(|x| neurons.contains(&x.neuron)).map(|x| (x.score - cut).abs()));
        }
    }
    gaps.into_iter().reduce(f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_counted_and_the_largest_kept() {
        let d = diff_f64("x", [1.0, 2.0, 3.0].into_iter(), [1.0, 2.5, 2.0].into_iter());
        assert_eq!(d, StatDiff { what: "x", max_abs: 1.0, differing: 2 });
        let nan = diff_f64("x", [f64::NAN].into_iter(), [0.0].into_iter());
        assert_eq!(nan.differing, 1);
        assert!(nan.max_abs.is_infinite());
    }

    #[test]
    fn identical_random_selections_do_not_differ_and_other_seeds_do() {
        let a = lsn_select::random(4, 32, 3, 1).unwrap();
        assert_eq!(selections(&a, &a.clone()).unwrap().symmetric_difference, 0);
        let b = lsn_select::random(4, 32, 3, 2).unwrap();
        let d = selections(&a, &b).unwrap();
        assert!(d.symmetric_difference > 0 && d.note.contains("only in the first"), "{d:?}");
    }
}
