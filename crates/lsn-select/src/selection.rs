//! `Selection`: the result of one method — the `neurons/<method>.json` file. Per language, the sorted
//! `[layer, index]` pairs, their count and per-layer histogram; the thresholds used; and per-neuron scores.

use std::collections::BTreeMap;

use lsn_core::NeuronId;
use serde::{Deserialize, Serialize};

/// The thresholds a method used (absent where the method has none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// LAPE: a neuron is a candidate only if some language's activation probability exceeds this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<f32>,
    /// LAPE: a candidate belongs to every language whose activation probability exceeds this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation_bar: Option<f32>,
    /// LAPE: the m-th smallest entropy (null when fewer than m neurons pass the filter: infinite).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entropy_cutoff: Option<f32>,
    /// ActProb-90p: per language, the score of the m-th selected neuron.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub score_cutoff: BTreeMap<String, f32>,
}

/// One LAPE candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LapeScore {
    /// `[layer, index]`
    pub neuron: [u32; 2],
    /// LAPE entropy (null = infinite: no language passed the filter).
    pub entropy: Option<f32>,
    /// Activation probability per language, in `languages` order.
    pub probs: Vec<f32>,
    /// The languages the neuron was assigned to.
    pub langs: Vec<String>,
}

/// One ActProb-90p selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActProbScore {
    /// `[layer, index]`
    pub neuron: [u32; 2],
    /// Fraction of the language's tokens with activation above its mean p90.
    pub score: f32,
}

/// The neurons one method selected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// `lape-mondal`, `lape-tang`, `act-prob-90p` or `random`.
    pub method: String,
    /// The method's parameters (rates, preset rules, seed).
    pub params: serde_json::Value,
    pub layers: usize,
    pub intermediate: usize,
    /// The languages compared, in input order (`random` for the random control).
    pub languages: Vec<String>,
    /// The target size: LAPE candidates, ActProb-90p neurons per language, random neurons in all.
    pub m: usize,
    /// Neurons selected before assignment to languages (LAPE `mondal` keeps every tie at the cut, so ≥ m).
    pub candidates: usize,
    pub thresholds: Thresholds,
    /// Per language, sorted `[layer, index]` pairs.
    pub neurons: BTreeMap<String, Vec<[u32; 2]>>,
    /// Per language, the number of neurons.
    pub counts: BTreeMap<String, usize>,
    /// Per language, neurons per layer.
    pub per_layer: BTreeMap<String, Vec<usize>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lape_scores: Option<Vec<LapeScore>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub act_prob_scores: Option<BTreeMap<String, Vec<ActProbScore>>>,
}

pub(crate) fn pair(n: NeuronId) -> [u32; 2] {
    [n.layer, n.index]
}

pub(crate) fn neuron(flat: usize, intermediate: usize) -> NeuronId {
    NeuronId::new((flat / intermediate) as u32, (flat % intermediate) as u32)
}

impl Selection {
    /// A selection over a `(layers, intermediate)` model with per-language sets `sets` (sorted here); counts and
    /// per-layer histograms derived.
    pub(crate) fn build(
        method: &str,
        params: serde_json::Value,
        (layers, intermediate): (usize, usize),
        languages: Vec<String>,
        m: usize,
        candidates: usize,
        sets: Vec<(String, Vec<NeuronId>)>,
    ) -> Selection {
        let mut neurons = BTreeMap::new();
        let mut counts = BTreeMap::new();
        let mut per_layer = BTreeMap::new();
        for (lang, mut set) in sets {
            set.sort_unstable();
            set.dedup();
            let mut hist = vec![0usize; layers];
            set.iter().for_each(|n| hist[n.layer as usize] += 1);
            counts.insert(lang.clone(), set.len());
            per_layer.insert(lang.clone(), hist);
            neurons.insert(lang, set.into_iter().map(pair).collect());
        }
        Selection {
            method: method.to_owned(),
            params,
            layers,
            intermediate,
            languages,
            m,
            candidates,
            thresholds: Thresholds::default(),
            neurons,
            counts,
            per_layer,
            lape_scores: None,
            act_prob_scores: None,
        }
    }

    /// The neurons of `lang`, if it is one of the languages.
    pub fn of(&self, lang: &str) -> Option<Vec<NeuronId>> {
        self.neurons.get(lang).map(|v| v.iter().map(|&[l, i]| NeuronId::new(l, i)).collect())
    }
}
