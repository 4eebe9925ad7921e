//! ActProb-90p (Mondal et al.): per language independently, the m = round(0.00125·L·I) neurons most often
//! activated above that language's mean p90 — score = count_above_p90 / tokens — exactly m, ties at the cut broken
//! by (layer, index).

use std::collections::BTreeMap;

use serde_json::json;

use crate::rank::round_rate_layers_width;
use crate::selection::{ActProbScore, Selection, neuron};
use crate::{CountTable, Error, Result};

/// The paper's fraction of all neurons selected per language.
pub const ACT_PROB_RATE: f64 = 0.00125;

/// ActProb-90p over `table` (counts = pass-2 counts above each language's mean p90, n_tokens = pass-2 tokens):
/// per language, score = count / n_tokens (f32) and the m = round(rate·L·I) highest scores, exactly m, ties at the
/// cut by (layer, index). Languages are independent; one is enough.
pub fn act_prob(table: &CountTable, rate: f64) -> Result<Selection> {
    table.validate(1)?;
    if !(0.0..=1.0).contains(&rate) {
        return Err(Error::Invalid(format!(
            "ActProb rate {rate} is outside [0, 1]: give the fraction of all neurons to select, e.g. {ACT_PROB_RATE}"
        )));
    }
    let n = table.plane();
    let m = round_rate_layers_width(rate, table.layers, table.intermediate).min(n);
    let p = table.probs();
    let mut sets = Vec::new();
    let mut scores = BTreeMap::new();
    let mut cutoffs = BTreeMap::new();
    let mut warnings = Vec::new();
    for (lang, pk) in table.lang_names().into_iter().zip(&p) {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_unstable_by(|&a, &b| pk[b].total_cmp(&pk[a]).then(a.cmp(&b)));
        // Neurons tied with the m-th score on both sides of the cut: the (layer, index) tie-break chose among them.
        if let Some(&last) = order[..m].last() {
            let cut = pk[last];
            let inside = order[..m].iter().filter(|&&j| pk[j] == cut).count();
            let outside = order[m..].iter().filter(|&&j| pk[j] == cut).count();
            if outside > 0 && inside * 10 >= m {
                warnings.push(format!(
                    "{lang}: {inside} of the {m} selected neurons tie with {outside} unselected ones at the cut score \
                     {cut}, so the (layer, index) tie-break chose them: the scores do not separate these neurons \
                     (too few capture batches or tokens?)"
                ));
            }
        }
        order.truncate(m);
        if let Some(&last) = order.last() {
            cutoffs.insert(lang.clone(), pk[last]);
        }
        order.sort_unstable();
        scores.insert(
            lang.clone(),
            order.iter().map(|&j| ActProbScore { neuron: neuron(j, table.intermediate), score: pk[j] }).collect(),
        );
        sets.push((lang, order.into_iter().map(|j| neuron(j, table.intermediate)).collect()));
    }
    let mut sel = Selection::build(
        "act-prob-90p",
        json!({"rate": rate, "statistic": "count(a > mean p90) / tokens", "rule": "exactly m per language, ties by (layer, index)"}),
        (table.layers, table.intermediate),
        table.lang_names(),
        m,
        m,
        sets,
    );
    sel.thresholds.score_cutoff = cutoffs;
    sel.warnings = warnings;
    sel.act_prob_scores = Some(scores);
    Ok(sel)
}

#[cfg(test)]
mod tests {
    use lsn_core::NeuronId;

    use super::*;
    use crate::LangCounts;

    #[test]
    fn exactly_m_with_ties_by_index() {
        // 2 layers × 4; scores of one language: 0.5 at (0,1), (1,0), (1,3); 0.9 at (0,2). m = round(0.3·2·4) = 2:
        // (0,2) and then the first of the three tied at 0.5 in (layer, index) order, (0,1). The cut is 0.5.
        let t = CountTable {
            layers: 2,
            intermediate: 4,
            langs: vec![LangCounts { lang: "x".into(), n_tokens: 10, counts: vec![0, 5, 9, 1, 5, 0, 0, 5] }],
        };
        let s = act_prob(&t, 0.3).unwrap();
        assert_eq!(s.m, 2);
        assert_eq!(s.neurons["x"], vec![NeuronId::new(0, 1), NeuronId::new(0, 2)]);
        assert_eq!(s.thresholds.score_cutoff["x"], 0.5);
        let scores = &s.act_prob_scores.as_ref().unwrap()["x"];
        assert_eq!(scores.iter().map(|x| x.score).collect::<Vec<_>>(), vec![0.5, 0.9]);
        assert!(s.warnings[0].contains("1 of the 2 selected neurons tie with 2 unselected"), "{:?}", s.warnings);
        // m = round(0.5·2·4) = 4: (0,2) and all three ties; nothing tied is left out.
        let s = act_prob(&t, 0.5).unwrap();
        assert_eq!(s.of("x").unwrap().len(), 4);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        assert_eq!(act_prob(&t, 0.00125).unwrap().m, 0); // round(0.01) = 0
        assert!(act_prob(&t, 1.5).unwrap_err().to_string().contains("outside [0, 1]"));
    }
}
