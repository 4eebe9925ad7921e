//! LAPE — language activation probability entropy (Tang et al. 2024) — with the two reference presets:
//!
//! * `mondal` (Mondal et al.'s `lang_neurons.py`): `P = p / (Σp + 1e-10)`, `H = −Σ P·ln(P + 1e-10)`; thresholds by
//!   `torch.quantile` (linear interpolation) of all K·L·I probabilities; `m = round(0.01·L·I)`; **every** neuron
//!   with `H ≤` the m-th smallest entropy is selected (ties at the cut included, so possibly more than m).
//! * `tang` (RUCAIBox `identify.py`): `P = p / Σp` (0 where Σp = 0), `H = −Σ_{P>0} P·ln P`; thresholds by
//!   `torch.kthvalue` with `k = round(N·0.95)`; `m = round(0.05·L·I)`; exactly the m lowest entropies, ties at the
//!   cut broken by (layer, index).
//!
//! In both, `H = +∞` where no language's `p` exceeds the filter threshold, and each selected neuron is assigned to
//! every language whose `p` exceeds the activation bar (the same rule at `bar_rate`). Arithmetic is f32 in the
//! reference's order; logarithms are correctly rounded (computed in f64), so results do not depend on the libm.

use lsn_core::taps::quantile_linear_f32;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::rank::{kth_smallest, round_half_even};
use crate::selection::{LapeScore, Selection, neuron, pair};
use crate::{CountTable, Error, Result};

/// Which reference implementation to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LapePreset {
    Mondal,
    Tang,
}

/// LAPE parameters; [`LapeParams::new`] gives the preset's published values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LapeParams {
    pub preset: LapePreset,
    /// m = round(top_rate · L · I).
    pub top_rate: f64,
    /// Candidates need some language's p above this quantile of all p.
    pub filter_rate: f64,
    /// A candidate belongs to the languages whose p is above this quantile of all p.
    pub bar_rate: f64,
}

impl LapeParams {
    pub fn new(preset: LapePreset) -> Self {
        let top_rate = match preset {
            LapePreset::Mondal => 0.01,
            LapePreset::Tang => 0.05,
        };
        Self { preset, top_rate, filter_rate: 0.95, bar_rate: 0.95 }
    }

    fn method(&self) -> &'static str {
        match self.preset {
            LapePreset::Mondal => "lape-mondal",
            LapePreset::Tang => "lape-tang",
        }
    }
}

fn ln(x: f32) -> f32 {
    (f64::from(x)).ln() as f32
}

/// The entropy of one neuron's probabilities across languages, by the preset's formula.
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
            let k = round_half_even(all.len() as f64 * rate);
            kth_smallest(all, k)
                .ok_or_else(|| Error::Invalid(format!("rate {rate} gives k = {k}, outside 1..={}", all.len())))
        }
    }
}

/// LAPE selection over the languages of `table` (at least two).
pub fn lape(table: &CountTable, params: &LapeParams) -> Result<Selection> {
    table.validate(2)?;
    for (name, r) in [("top_rate", params.top_rate), ("filter_rate", params.filter_rate), ("bar_rate", params.bar_rate)]
    {
        if !(0.0..=1.0).contains(&r) {
            return Err(Error::Invalid(format!("{name} {r} is outside [0, 1]")));
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
    let m = round_half_even(n as f64 * params.top_rate).min(n);
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
            neuron: pair(id),
            entropy: h[j].is_finite().then_some(h[j]),
            probs: p.iter().map(|pk| pk[j]).collect(),
            langs: assigned,
        });
    }
    let rule = match preset {
        LapePreset::Mondal => "torch.quantile (linear) of all K·L·I probabilities; every neuron with H ≤ cutoff",
        LapePreset::Tang => "torch.kthvalue(round(K·L·I·rate)); exactly m, ties by (layer, index)",
    };
    let mut sel = Selection::build(
        params.method(),
        json!({"preset": preset, "top_rate": params.top_rate, "filter_rate": params.filter_rate,
               "bar_rate": params.bar_rate, "rule": rule}),
        (table.layers, table.intermediate),
        langs,
        m,
        chosen.len(),
        sets,
    );
    sel.thresholds.filter = Some(filter);
    sel.thresholds.activation_bar = Some(bar);
    sel.thresholds.entropy_cutoff = cutoff.filter(|c| c.is_finite());
    sel.lape_scores = Some(scores);
    Ok(sel)
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn entropy_by_hand() {
        // P = (0.2, 0.8): H = −(0.2 ln 0.2 + 0.8 ln 0.8) = 0.500402…; 0·ln 0 = 0 in both presets.
        let h = 0.2f64 * 0.2f64.ln() + 0.8 * 0.8f64.ln();
        for preset in [LapePreset::Mondal, LapePreset::Tang] {
            assert!((entropy(preset, [0.2f32, 0.8].into_iter()) as f64 + h).abs() < 1e-6);
            assert!((entropy(preset, [0.4f32, 0.4].into_iter()) - 2f32.ln()).abs() < 1e-6);
            assert_eq!(entropy(preset, [0.7f32, 0.0].into_iter()), 0.0);
        }
        assert_eq!(entropy(LapePreset::Tang, [0.0f32, 0.0].into_iter()), 0.0);
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
        assert_eq!(s.neurons["a"], vec![[0, 0]]);
        assert_eq!(s.neurons["b"], vec![[0, 3]]);
        let scores = s.lape_scores.unwrap();
        assert_eq!(scores[1].langs, vec!["b".to_owned()]);
        assert!((scores[1].entropy.unwrap() - 0.500402).abs() < 1e-5);
    }

    #[test]
    fn mondal_by_hand_with_interpolated_threshold() {
        // Same table; torch.quantile at 0.5 of the 8 sorted p: rank 3.5 → lerp(0.2, 0.5, 0.5) = 0.35.
        let t = table([&[10, 5, 0, 2], &[0, 5, 0, 8]], 10);
        let p = LapeParams { preset: LapePreset::Mondal, top_rate: 0.5, filter_rate: 0.5, bar_rate: 0.5 };
        let s = lape(&t, &p).unwrap();
        assert!((s.thresholds.filter.unwrap() - 0.35).abs() < 1e-7);
        assert_eq!(s.neurons["a"], vec![[0, 0]]);
        assert_eq!(s.neurons["b"], vec![[0, 3]]);
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
        let cands: Vec<[u32; 2]> = tg.lape_scores.unwrap().iter().map(|s| s.neuron).collect();
        assert_eq!(cands, vec![[0, 0], [0, 1]], "tang breaks the tie by index");
    }

    #[test]
    fn bad_tables_are_clear_errors() {
        let one = CountTable {
            layers: 1,
            intermediate: 2,
            langs: vec![LangCounts { lang: "a".into(), n_tokens: 4, counts: vec![1, 2] }],
        };
        let e = lape(&one, &LapeParams::new(LapePreset::Mondal)).unwrap_err().to_string();
        assert!(e.contains("at least 2"), "{e}");
        let mut t = table([&[1, 2], &[3, 4]], 10);
        t.langs[1].counts.pop();
        assert!(lape(&t, &LapeParams::new(LapePreset::Tang)).unwrap_err().to_string().contains("another model"));
        let mut t = table([&[1, 2], &[3, 40]], 10);
        assert!(lape(&t, &LapeParams::new(LapePreset::Tang)).unwrap_err().to_string().contains("corrupt"));
        t.langs[1].lang = "a".into();
        assert!(lape(&t, &LapeParams::new(LapePreset::Tang)).unwrap_err().to_string().contains("twice"));
    }
}
