//! Property tests of the selection invariants (DESIGN §4) on random count tables.

use std::collections::BTreeMap;

use lsn_core::NeuronId;
use lsn_select::{CountTable, LangCounts, LapeParams, LapePreset, act_prob, lape};
use proptest::prelude::*;

fn tables() -> impl Strategy<Value = CountTable> {
    (1usize..4, 1usize..24, 2usize..6).prop_flat_map(|(layers, intermediate, k)| {
        let plane = layers * intermediate;
        proptest::collection::vec(
            (1u64..300).prop_flat_map(move |n| (Just(n), proptest::collection::vec(0..=n, plane))),
            k,
        )
        .prop_map(move |langs| CountTable {
            layers,
            intermediate,
            langs: langs
                .into_iter()
                .enumerate()
                .map(|(i, (n_tokens, counts))| LangCounts { lang: format!("l{i}"), n_tokens, counts })
                .collect(),
        })
    })
}

fn params(preset: LapePreset, top: f64) -> LapeParams {
    LapeParams { top_rate: top, ..LapeParams::new(preset) }
}

fn p(t: &CountTable, k: usize, j: usize) -> f32 {
    t.langs[k].counts[j] as f32 / t.langs[k].n_tokens as f32
}

proptest! {
    #[test]
    fn lape_invariants(t in tables(), top in 0.0f64..0.6, mondal in any::<bool>()) {
        let preset = if mondal { LapePreset::Mondal } else { LapePreset::Tang };
        let s = lape(&t, &params(preset, top)).unwrap();
        let k = t.langs.len();
        let plane = t.layers * t.intermediate;
        // m as each reference writes it: round(top_rate * L * I) (mondal), round(len * top_rate) (tang).
        let m = if mondal { top * t.layers as f64 * t.intermediate as f64 } else { plane as f64 * top };
        prop_assert_eq!(s.m, m.round_ties_even() as usize);
        if mondal { prop_assert!(s.candidates >= s.m) } else { prop_assert_eq!(s.candidates, s.m) }
        let bar = s.thresholds.activation_bar.unwrap();
        let scores = s.lape_scores.as_ref().unwrap();
        prop_assert_eq!(scores.len(), s.candidates);
        prop_assert!(scores.windows(2).all(|w| w[0].neuron < w[1].neuron), "candidates sorted and unique");
        for sc in scores {
            let h = sc.entropy;
            if h.is_finite() {
                prop_assert!((-1e-6..=(k as f32).ln() + 1e-5).contains(&h), "entropy {} outside [0, ln {}]", h, k);
            } else {
                prop_assert!(h == f32::INFINITY && sc.langs.is_empty(), "∞ entropy only where no p passes");
            }
        }
        for (ki, l) in t.langs.iter().enumerate() {
            let set = &s.neurons[&l.lang];
            prop_assert!(set.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
            prop_assert_eq!(set.len(), s.counts[&l.lang]);
            prop_assert_eq!(s.per_layer[&l.lang].iter().sum::<usize>(), set.len());
            for n in set {
                let j = n.flat(t.intermediate);
                // Assigned only where the language's p is above the bar; so a neuron with p ≤ bar in every
                // language is in no set.
                prop_assert!(p(&t, ki, j) > bar);
            }
        }
    }

    #[test]
    fn renaming_languages_renames_the_result(t in tables(), mondal in any::<bool>()) {
        let preset = if mondal { LapePreset::Mondal } else { LapePreset::Tang };
        let a = lape(&t, &params(preset, 0.2)).unwrap();
        let mut r = t.clone();
        r.langs.iter_mut().for_each(|l| l.lang = format!("x-{}", l.lang));
        let b = lape(&r, &params(preset, 0.2)).unwrap();
        let renamed: BTreeMap<String, Vec<NeuronId>> =
            a.neurons.iter().map(|(k, v)| (format!("x-{k}"), v.clone())).collect();
        prop_assert_eq!(renamed, b.neurons);
        prop_assert_eq!(a.thresholds, b.thresholds);
        prop_assert_eq!((a.m, a.candidates), (b.m, b.candidates));
        let mut a_scores = a.lape_scores.unwrap();
        a_scores.iter_mut().for_each(|s| s.langs.iter_mut().for_each(|l| *l = format!("x-{l}")));
        prop_assert_eq!(a_scores, b.lape_scores.unwrap());
    }

    /// Reordering languages permutes the per-language results. Thresholds do not depend on the order at all; the
    /// entropy is a sum over languages in input order (as in the reference), so only its last bit may move, and the
    /// sets are compared exactly except for neurons within 1e-6 of the entropy cut-off.
    #[test]
    fn reordering_languages_permutes_the_result(t in tables(), mondal in any::<bool>(), rot in 1usize..5) {
        let preset = if mondal { LapePreset::Mondal } else { LapePreset::Tang };
        let a = lape(&t, &params(preset, 0.2)).unwrap();
        let mut r = t.clone();
        let n = r.langs.len();
        r.langs.rotate_left(rot % n);
        let b = lape(&r, &params(preset, 0.2)).unwrap();
        prop_assert_eq!(a.thresholds.filter, b.thresholds.filter);
        prop_assert_eq!(a.thresholds.activation_bar, b.thresholds.activation_bar);
        prop_assert_eq!(a.m, b.m);
        let near_cut = |s: &lsn_select::Selection| -> Vec<NeuronId> {
            let cut = s.thresholds.entropy_cutoff.unwrap_or(f32::INFINITY);
            s.lape_scores.as_ref().unwrap().iter()
                .filter(|x| x.entropy.is_finite() && (x.entropy - cut).abs() <= 1e-6)
                .map(|x| x.neuron).collect()
        };
        let fuzzy: Vec<NeuronId> = near_cut(&a).into_iter().chain(near_cut(&b)).collect();
        for l in &t.langs {
            let strip = |v: &Vec<NeuronId>| v.iter().filter(|x| !fuzzy.contains(x)).copied().collect::<Vec<_>>();
            prop_assert_eq!(strip(&a.neurons[&l.lang]), strip(&b.neurons[&l.lang]), "language {}", l.lang);
        }
        let ap = act_prob(&t, 0.1).unwrap();
        let bp = act_prob(&r, 0.1).unwrap();
        prop_assert_eq!(ap.neurons, bp.neurons);
    }

    #[test]
    fn act_prob_takes_exactly_m_of_the_highest(t in tables(), rate in 0.0f64..0.5) {
        let s = act_prob(&t, rate).unwrap();
        let plane = t.layers * t.intermediate;
        let m = (rate * t.layers as f64 * t.intermediate as f64).round_ties_even() as usize;
        for (ki, l) in t.langs.iter().enumerate() {
            let set = &s.neurons[&l.lang];
            prop_assert_eq!(set.len(), m);
            prop_assert!(set.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
            let chosen: Vec<usize> = set.iter().map(|n| n.flat(t.intermediate)).collect();
            let min_in = chosen.iter().map(|&j| p(&t, ki, j)).fold(f32::INFINITY, f32::min);
            let last_tied = chosen.iter().copied().filter(|&j| p(&t, ki, j) == min_in).max();
            for j in (0..plane).filter(|j| !chosen.contains(j)) {
                prop_assert!(p(&t, ki, j) <= min_in, "a better neuron was left out");
                if p(&t, ki, j) == min_in {
                    prop_assert!(Some(j) > last_tied, "ties at the cut go by (layer, index)");
                }
            }
        }
    }
}
