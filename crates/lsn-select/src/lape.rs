//! LAPE — language activation probability entropy (Tang et al. 2024) — with the two reference presets:
//!
//! * `mondal` (Mondal et al.'s `lang_neurons.py`): `P = p / (Σp + 1e-10)`, `H = −Σ P·ln(P + 1e-10)`; thresholds by
//!   `torch.quantile` (linear interpolation) of all K·L·I probabilities; `m = round(0.01·L·I)` (the f64 product in
//!   that order); **every** neuron with `H ≤` the m-th smallest entropy is selected (ties at the cut included, so
//!   possibly more than m; if fewer than m neurons pass the filter the cut is +∞ and every neuron is a candidate).
//! * `tang` (RUCAIBox `identify.py`): `P = p / Σp` (0 where Σp = 0), `H = −Σ_{P>0} P·ln P`; thresholds by
//!   `torch.kthvalue` with `k = round(N·0.95)`; `m = round(L·I·0.05)`; exactly the m lowest entropies, ties at the
//!   cut broken by (layer, index) (torch's `topk` leaves them unspecified).
//!
//! In both, `H = +∞` where no language's `p` exceeds the filter threshold, and each selected neuron is assigned to
//! every language whose `p` exceeds the activation bar (the same rule at `bar_rate`). Arithmetic is f32 in the
//! reference's order; logarithms are correctly rounded (computed in f64), so results do not depend on the libm.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::rank::{kth_smallest, round_len_rate, round_rate_layers_width};
use crate::selection::{LapeScore, Selection, neuron};
use crate::{CountTable, Error, Result};
use lsn_core::taps::quantile_linear_f32;

/// Which reference implementation to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LapePreset {
    /// Mondal et al. 2025, `lang_neurons.py`: top 1%, `torch.quantile` thresholds, ties at the cut kept.
    Mondal,
    /// Tang et al. 2024, RUCAIBox `identify.py`: top 5%, `torch.kthvalue` thresholds, exactly m.
    Tang,
}

impl LapePreset {
    /// The preset's published parameters.
    pub fn params(self) -> LapeParams {
        LapeParams::new(self)
    }

    /// The method name in results and file names: `lape-mondal` or `lape-tang`.
    pub fn method(self) -> &'static str {
        match self {
            LapePreset::Mondal => "lape-mondal",
            LapePreset::Tang => "lape-tang",
        }
    }
}

/// LAPE parameters; [`LapeParams::new`] gives the preset's published values, each field can be overridden.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LapeParams {
    /// The reference implementation (formulas, threshold rule, tie rule).
    pub preset: LapePreset,
    /// m = round(top_rate · L · I).
    pub top_rate: f64,
    /// Candidates need some language's p above this quantile of all p.
    pub filter_rate: f64,
    /// A candidate belongs to the languages whose p is above this quantile of all p.
    pub bar_rate: f64,
}

impl LapeParams {
    /// The published values: top_rate 0.01 (`mondal`) or 0.05 (`tang`); filter and bar rates 0.95.
    pub fn new(preset: LapePreset) -> Self {
        let top_rate = match preset {
            LapePreset::Mondal => 0.01,
            LapePreset::Tang => 0.05,
        };
        Self { preset, top_rate, filter_rate: 0.95, bar_rate: 0.95 }
    }

    /// m, the number of lowest-entropy neurons to take, in the reference's arithmetic.
    fn m(&self, layers: usize, intermediate: usize) -> usize {
        match self.preset {
            LapePreset::Mondal => round_rate_layers_width(self.top_rate, layers, intermediate),
            LapePreset::Tang => round_len_rate(layers * intermediate, self.top_rate),
        }
    }
}

fn ln(x: f32) -> f32 {
    (f64::from(x)).ln() as f32
}

/// The entropy of one neuron's probabilities across languages, by the preset's formula. A zero entropy is −0.0,
/// bit for bit what torch's `-sum(...)` gives (the file shows `-0.0`).
fn entropy(preset: LapePreset, p: impl Iterator<Item = f32> + Clone) -> f32 {
    let sum = p.clone().fold(0f32, |a, x| a + x);
    let s = match preset {
        LapePreset::Mondal => {
            let eps = 1e-10f32;
            p.map(|x| x / (sum + eps)).fold(0f32, |a, q| a + q * ln(q + eps))
        }
        LapePreset::Tang => p
            .map(|x| {
                let q = x / sum;
                if q.is_nan() { 0.0 } else { q }
            })
            .fold(0f32, |a, q| a + q * if q > 0.0 { ln(q) } else { 0.0 }),
    };
    -s
}

/// The threshold at `rate` of all probabilities, by the preset's rule.
fn threshold(preset: LapePreset, all: &[f32], sorted: &[f32], rate: f64) -> Result<f32> {
    match preset {
        LapePreset::Mondal => Ok(quantile_linear_f32(sorted, rate as f32)),
        LapePreset::Tang => {
            let k = round_len_rate(all.len(), rate);
            kth_smallest(all, k).ok_or_else(|| {
                Error::Invalid(format!(
                    "rate {rate} of {} probabilities gives kthvalue position {k}, outside 1..={0}: raise the rate",
                    all.len()
                ))
            })
        }
    }
}

/// LAPE selection over the languages of `table` (at least two): candidates by entropy, each assigned to every
/// language whose activation probability exceeds the activation bar (so a neuron can belong to several languages,
/// or to none).
pub fn lape(table: &CountTable, params: &LapeParams) -> Result<Selection> {
    table.validate(2)?;
    for (name, r) in [("top_rate", params.top_rate), ("filter_rate", params.filter_rate), ("bar_rate", params.bar_rate)]
    {
        if !(0.0..=1.0).contains(&r) {
            return Err(Error::Invalid(format!("LAPE {name} {r} is outside [0, 1]: give a fraction, e.g. 0.95")));
        }
    }
    let preset = params.preset;
    let p = table.probs();
    let n = table.plane();
    let all: Vec<f32> = p.iter().flatten().copied().collect();
    let mut sorted = all.clone();
    sorted.sort_unstable_by(f32::total_cmp);
    let filter = threshold(preset, &all, &sorted, params.filter_rate)?;
    let bar = threshold(preset, &all, &sorted, params.bar_rate)?;

    let h: Vec<f32> = (0..n)
        .map(|j| {
            if p.iter().any(|pk| pk[j] > filter) {
                entropy(preset, p.iter().map(move |pk| pk[j]))
            } else {
                f32::INFINITY
            }
        })
        .collect();
    let m = params.m(table.layers, table.intermediate).min(n);
    let (chosen, cutoff): (Vec<usize>, Option<f32>) = if m == 0 {
        (Vec::new(), None)
    } else {
        match preset {
            LapePreset::Mondal => {
                let cut = kth_smallest(&h, m).expect("1 ≤ m ≤ n");
                ((0..n).filter(|&j| h[j] <= cut).collect(), Some(cut))
            }
            LapePreset::Tang => {
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_unstable_by(|&a, &b| h[a].total_cmp(&h[b]).then(a.cmp(&b)));
                order.truncate(m);
                order.sort_unstable();
                let cut = order.iter().map(|&j| h[j]).fold(f32::NEG_INFINITY, f32::max);
                (order, Some(cut))
            }
        }
    };
    let langs = table.lang_names();
    let mut sets: Vec<(String, Vec<lsn_core::NeuronId>)> = langs.iter().map(|l| (l.clone(), Vec::new())).collect();
    let mut scores = Vec::with_capacity(chosen.len());
    for &j in &chosen {
        let id = neuron(j, table.intermediate);
        let mut assigned = Vec::new();
        for (k, pk) in p.iter().enumerate() {
            if pk[j] > bar {
                sets[k].1.push(id);
                assigned.push(langs[k].clone());
            }
        }
        scores.push(LapeScore {
            neuron: id,
            entropy: h[j],
            probs: p.iter().map(|pk| pk[j]).collect(),
            langs: assigned,
        });
    }
    let rule = match preset {
        LapePreset::Mondal => "torch.quantile (linear) of all K·L·I probabilities; every neuron with H <= cutoff",
        LapePreset::Tang => "torch.kthvalue(round(K·L·I·rate)); exactly m, ties by (layer, index)",
    };
    let mut sel = Selection::build(
        preset.method(),
        json!({"preset": preset, "top_rate": params.top_rate, "filter_rate": params.filter_rate,
               "bar_rate": params.bar_rate, "rule": rule}),
        (table.layers, table.intermediate),
        langs,
        m,
        chosen.len(),
        sets,
    );
    let passed = h.iter().filter(|x| x.is_finite()).count();
    if passed < m {
        sel.warnings.push(format!(
            "only {passed} neurons pass the activation filter (some language's probability > {filter}) but m = {m}: \
             {} of the {} candidates have no language above the filter (entropy inf); they are not \
             language-specific — capture more text, or lower --top-rate",
            chosen.len() - passed.min(chosen.len()),
            chosen.len()
        ));
    }
    sel.thresholds.filter = Some(filter);
    sel.thresholds.activation_bar = Some(bar);
    sel.thresholds.entropy_cutoff = cutoff;
    sel.lape_scores = Some(scores);
    Ok(sel)
}

#[cfg(test)]
mod tests {
    use lsn_core::NeuronId;

    use super::*;
    use crate::LangCounts;

    fn table(counts: [&[u64]; 2], n: u64) -> CountTable {
        CountTable {
            layers: 1,
            intermediate: counts[0].len(),
            langs: vec![
                LangCounts { lang: "a".into(), n_tokens: n, counts: counts[0].to_vec() },
                LangCounts { lang: "b".into(), n_tokens: n, counts: counts[1].to_vec() },
            ],
        }
    }

    fn ids(v: &[(u32, u32)]) -> Vec<NeuronId> {
        v.iter().map(|&(l, i)| NeuronId::new(l, i)).collect()
    }

    #[test]
    fn entropy_by_hand() {
        // P = (0.2, 0.8): H = −(0.2 ln 0.2 + 0.8 ln 0.8) = 0.500402…; P = (.5, .5): ln 2; 0·ln 0 = 0 in both
        // presets (mondal: 0·ln(0 + 1e-10) = 0); all-zero p: tang's 0/0 = NaN is set to 0, mondal's 0/1e-10 = 0.
        let h = -(0.2f64 * 0.2f64.ln() + 0.8 * 0.8f64.ln());
        for preset in [LapePreset::Mondal, LapePreset::Tang] {
            assert!((f64::from(entropy(preset, [0.2f32, 0.8].into_iter())) - h).abs() < 1e-6);
            assert!((entropy(preset, [0.4f32, 0.4].into_iter()) - 2f32.ln()).abs() < 1e-6);
            assert_eq!(entropy(preset, [0.7f32, 0.0].into_iter()), 0.0);
            assert_eq!(entropy(preset, [0.0f32, 0.0].into_iter()), 0.0);
        }
        // mondal's epsilons: P = 1/(1 + 1e-10) rounds to 1 in f32, ln(1 + 1e-10) = 0 in f32: H = 0 exactly.
        assert_eq!(entropy(LapePreset::Mondal, [1.0f32, 0.0].into_iter()), 0.0);
        // Three languages, p = (.1, .1, .2): P = (.25, .25, .5), H = 1.5 ln 2 = 1.0397208.
        let h3 = entropy(LapePreset::Tang, [0.1f32, 0.1, 0.2].into_iter());
        assert!((h3 - 1.5 * 2f32.ln()).abs() < 1e-6, "{h3}");
    }

    #[test]
    fn tang_by_hand() {
        // p: n0 = (1, 0), n1 = (.5, .5), n2 = (0, 0), n3 = (.2, .8). All 8 p sorted: 0 0 0 .2 .5 .5 .8 1.
        // filter/bar at rate 0.5: k = round(8·0.5) = 4 → 0.2. n2 has no p > 0.2 → H = ∞.
        // H: n0 0, n1 ln 2, n3 0.5004. m = round(4·0.5) = 2 → n0, n3. Assignment p > 0.2: n0 → a, n3 → b.
        let t = table([&[10, 5, 0, 2], &[0, 5, 0, 8]], 10);
        let p = LapeParams { preset: LapePreset::Tang, top_rate: 0.5, filter_rate: 0.5, bar_rate: 0.5 };
        let s = lape(&t, &p).unwrap();
        assert_eq!((s.m, s.candidates), (2, 2));
        assert_eq!(s.thresholds.filter, Some(0.2));
        assert_eq!(s.neurons["a"], ids(&[(0, 0)]));
        assert_eq!(s.neurons["b"], ids(&[(0, 3)]));
        let scores = s.lape_scores.unwrap();
        assert_eq!(scores[1].langs, vec!["b".to_owned()]);
        assert!((scores[1].entropy - 0.500402).abs() < 1e-5);
    }

    #[test]
    fn mondal_by_hand_with_interpolated_threshold() {
        // Same table; torch.quantile at 0.5 of the 8 sorted p: rank 3.5 → lerp(0.2, 0.5, 0.5) = 0.35.
        let t = table([&[10, 5, 0, 2], &[0, 5, 0, 8]], 10);
        let p = LapeParams { preset: LapePreset::Mondal, top_rate: 0.5, filter_rate: 0.5, bar_rate: 0.5 };
        let s = lape(&t, &p).unwrap();
        assert_eq!(s.thresholds.filter, Some(0.35));
        assert_eq!(s.neurons["a"], ids(&[(0, 0)]));
        assert_eq!(s.neurons["b"], ids(&[(0, 3)]));
    }

    #[test]
    fn ties_at_the_cut_mondal_keeps_all_tang_takes_m() {
        // n0 = (1, 0) has H 0; n1 = n2 = (.5, .5) tie at ln 2; n3 silent. m = round(4·0.5) = 2.
        // Sorted p: 0 0 0 .5 .5 .5 .5 1; at rate 0.3 the filter is lerp(0, .5, .1) = .05 (mondal) or the
        // round(2.4) = 2nd smallest, 0 (tang): n0, n1, n2 pass, n3 does not.
        let t = table([&[10, 5, 5, 0], &[0, 5, 5, 0]], 10);
        let mk = |preset| LapeParams { preset, top_rate: 0.5, filter_rate: 0.3, bar_rate: 0.3 };
        let m = lape(&t, &mk(LapePreset::Mondal)).unwrap();
        assert_eq!((m.m, m.candidates), (2, 3), "mondal keeps both tied neurons");
        let tg = lape(&t, &mk(LapePreset::Tang)).unwrap();
        assert_eq!((tg.m, tg.candidates), (2, 2));
        let cands: Vec<NeuronId> = tg.lape_scores.unwrap().iter().map(|s| s.neuron).collect();
        assert_eq!(cands, ids(&[(0, 0), (0, 1)]), "tang breaks the tie by index");
    }

    #[test]
    fn too_few_pass_the_filter() {
        // Only n0 = (1, 0) has a p above the filter (rate 0.9: lerp(.5, 1, .3) = .65 / the 7th smallest, .5).
        // m = round(4·0.75) = 3. mondal: the 3rd smallest H is ∞, so H ≤ ∞ takes all 4 neurons (as the reference);
        // tang: n0, then ∞-entropy neurons by index, n1 and n2. Only n0 is above the bar in any language.
        let t = table([&[10, 5, 5, 0], &[0, 5, 5, 0]], 10);
        let mk = |preset| LapeParams { preset, top_rate: 0.75, filter_rate: 0.9, bar_rate: 0.9 };
        let m = lape(&t, &mk(LapePreset::Mondal)).unwrap();
        assert_eq!((m.m, m.candidates, m.thresholds.entropy_cutoff), (3, 4, Some(f32::INFINITY)));
        assert!(m.warnings[0].contains("but m = 3"), "{:?}", m.warnings);
        assert_eq!((m.neurons["a"].clone(), m.counts["b"]), (ids(&[(0, 0)]), 0));
        let tg = lape(&t, &mk(LapePreset::Tang)).unwrap();
        assert_eq!((tg.m, tg.candidates, tg.thresholds.entropy_cutoff), (3, 3, Some(f32::INFINITY)));
        let cands: Vec<NeuronId> = tg.lape_scores.unwrap().iter().map(|s| s.neuron).collect();
        assert_eq!(cands, ids(&[(0, 0), (0, 1), (0, 2)]));
    }

    #[test]
    fn bad_tables_are_clear_errors() {
        let err = |t: &CountTable| lape(t, &LapeParams::new(LapePreset::Tang)).unwrap_err().to_string();
        let one = CountTable {
            layers: 1,
            intermediate: 2,
            langs: vec![LangCounts { lang: "a".into(), n_tokens: 4, counts: vec![1, 2] }],
        };
        assert!(err(&one).contains("at least 2"), "{}", err(&one));
        let mut t = table([&[1, 2], &[3, 4]], 10);
        t.langs[1].counts.pop();
        assert!(err(&t).contains("another model"), "{}", err(&t));
        let mut t = table([&[1, 2], &[3, 40]], 10);
        assert!(err(&t).contains("corrupt"), "{}", err(&t));
        t.langs[1].lang = "a".into();
        assert!(err(&t).contains("twice"), "{}", err(&t));
        let mut t = table([&[0, 0], &[0, 0]], 10);
        t.langs[0].n_tokens = 0;
        assert!(err(&t).contains("0 tokens") && err(&t).contains("capture"), "{}", err(&t));
        let t = CountTable { layers: 0, ..table([&[], &[]], 10) };
        assert!(err(&t).contains("no FFN neurons"), "{}", err(&t));
        let t = table([&[1, 2], &[3, 4]], 10);
        let p = LapeParams { top_rate: 1.5, ..LapePreset::Mondal.params() };
        assert!(lape(&t, &p).unwrap_err().to_string().contains("top_rate 1.5 is outside [0, 1]"));
        let p = LapeParams { filter_rate: 0.0, ..LapePreset::Tang.params() };
        assert!(lape(&t, &p).unwrap_err().to_string().contains("kthvalue position 0"));
    }
}
