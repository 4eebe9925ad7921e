//! `Selection`: the result of one method, and the `neurons/<method>.json` file. Per language the sorted
//! `[layer, index]` pairs, their count and per-layer histogram; the thresholds used; and per-neuron scores.

use std::collections::BTreeMap;

use lsn_core::NeuronId;
use serde::{Deserialize, Serialize};

use crate::serde_fmt::{float, opt_float, pair, pairs_by_lang};

/// The thresholds a method used (left out of the file where the method has none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// LAPE: a neuron is a candidate only if some language's activation probability exceeds this.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub filter: Option<f32>,
    /// LAPE: a candidate belongs to every language whose activation probability exceeds this.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub activation_bar: Option<f32>,
    /// LAPE: the m-th smallest entropy; `"inf"` when fewer than m neurons pass the filter (then `mondal` keeps
    /// every neuron as a candidate, as the reference does). Absent when m = 0.
    #[serde(skip_serializing_if = "Option::is_none", default, with = "opt_float")]
    pub entropy_cutoff: Option<f32>,
    /// ActProb-90p: per language, the score of the m-th selected neuron (the lowest selected score).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub score_cutoff: BTreeMap<String, f32>,
}

/// One LAPE candidate (a neuron among the m lowest entropies, before assignment to languages).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LapeScore {
    /// The neuron, written `[layer, index]`.
    #[serde(with = "pair")]
    pub neuron: NeuronId,
    /// LAPE entropy; `+∞` (written `"inf"`) where no language's probability passed the filter.
    #[serde(with = "float")]
    pub entropy: f32,
    /// Activation probability per language, in [`Selection::languages`] order.
    pub probs: Vec<f32>,
    /// The languages the neuron was assigned to (probability above the activation bar), in input order.
    pub langs: Vec<String>,
}

/// One ActProb-90p selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActProbScore {
    /// The neuron, written `[layer, index]`.
    #[serde(with = "pair")]
    pub neuron: NeuronId,
    /// Fraction of the language's pass-2 tokens on which the activation exceeded the language's mean p90.
    pub score: f32,
}

/// The neurons one method selected: the content of `neurons/<method>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// `lape-mondal`, `lape-tang`, `act-prob-90p` or `random`.
    pub method: String,
    /// The method's parameters (rates, preset rules; seed and per-layer count for `random`).
    pub params: serde_json::Value,
    /// Layers of the model.
    pub layers: usize,
    /// FFN neurons per layer.
    pub intermediate: usize,
    /// The languages compared, in input order (`["random"]` for the random control).
    pub languages: Vec<String>,
    /// The target size: LAPE candidates, ActProb-90p neurons per language, random neurons in all.
    pub m: usize,
    /// Neurons selected before assignment to languages (LAPE `mondal` keeps every tie at the cut, so ≥ m).
    pub candidates: usize,
    /// The thresholds used.
    pub thresholds: Thresholds,
    /// Per language, the neurons in (layer, index) order, written `[[layer, index], …]`.
    #[serde(with = "pairs_by_lang")]
    pub neurons: BTreeMap<String, Vec<NeuronId>>,
    /// Per language, the number of neurons.
    pub counts: BTreeMap<String, usize>,
    /// Per language, the number of neurons in each layer (length `layers`).
    pub per_layer: BTreeMap<String, Vec<usize>>,
    /// LAPE: every candidate, in (layer, index) order, with its entropy, probabilities and languages.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lape_scores: Option<Vec<LapeScore>>,
    /// ActProb-90p: per language, each selected neuron's score, in (layer, index) order.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub act_prob_scores: Option<BTreeMap<String, Vec<ActProbScore>>>,
    /// Why this selection may not mean what its method intends (too few neurons passed LAPE's filter; the cut was
    /// decided by the (layer, index) tie-break; too few capture batches). Empty for a sound selection.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub warnings: Vec<String>,
    /// The model and statistics the selection was made from (recorded by `lsn select`), so that an intervention
    /// can refuse a neuron file of another model or statistics of another tap point.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source: Option<SelectionSource>,
}

/// What a selection was computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectionSource {
    /// The model as the user named it.
    pub model: String,
    pub config_sha256: String,
    pub tokenizer_sha256: String,
    pub weights_sha256: String,
    /// The statistics' tap point (`act` or `gate_pre`).
    pub stats_on: String,
}

impl SelectionSource {
    /// The identity of the model the selection was made on (shard hashes are not recorded).
    pub fn identity(&self) -> lsn_core::ModelIdentity {
        lsn_core::ModelIdentity::recorded(&self.config_sha256, &self.tokenizer_sha256, &self.weights_sha256)
    }
}

/// The neuron at position `flat` of a `[layers, intermediate]` array.
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
            neurons.insert(lang, set);
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
            warnings: Vec::new(),
            source: None,
        }
    }

    /// The neurons of `lang` in (layer, index) order, if it is one of the languages.
    pub fn of(&self, lang: &str) -> Option<&[NeuronId]> {
        self.neurons.get(lang).map(Vec::as_slice)
    }

    /// The matched random control of `lang`'s set: as many random neurons in every layer as the set has
    /// ([`crate::random_per_layer`] with `seed`).
    pub fn random_like(&self, lang: &str, seed: u64) -> crate::Result<Vec<NeuronId>> {
        let size = self.of(lang).map_or(0, <[NeuronId]>::len);
        let counts = self.per_layer.get(lang).filter(|c| c.iter().sum::<usize>() == size).ok_or_else(|| {
            crate::Error::Invalid(format!("no per-layer counts of {lang}'s set: select the neurons again"))
        })?;
        crate::random_per_layer(counts, self.intermediate, seed)
    }
}
