//! The input of selection: per language, how many of its tokens activated each neuron (`count_pos` for LAPE, the
//! pass-2 count above p90 for ActProb-90p), and over how many tokens.

use crate::{Error, Result};

/// One language's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LangCounts {
    /// The language's label (unique within a table), used as its key in the results.
    pub lang: String,
    /// Tokens the counts are over (> 0).
    pub n_tokens: u64,
    /// Per neuron, how many of the tokens counted (≤ `n_tokens`); flat `[layers × intermediate]`, row-major by
    /// layer.
    pub counts: Vec<u64>,
}

/// Counts of every language over one model's FFN neurons, in the order the results list them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountTable {
    /// Layers of the model.
    pub layers: usize,
    /// FFN neurons per layer.
    pub intermediate: usize,
    /// One entry per language.
    pub langs: Vec<LangCounts>,
}

impl CountTable {
    /// Checks shapes, token counts and labels, and that there are `min_langs` languages at least.
    pub fn validate(&self, min_langs: usize) -> Result<()> {
        let plane = self.layers * self.intermediate;
        if plane == 0 {
            return Err(Error::Invalid("the model has no FFN neurons (0 layers or 0 intermediate)".into()));
        }
        if self.langs.len() < min_langs {
            return Err(Error::Invalid(format!(
                "{} language(s) given but this method compares at least {min_langs}: capture more languages",
                self.langs.len()
            )));
        }
        for (i, l) in self.langs.iter().enumerate() {
            if self.langs[..i].iter().any(|o| o.lang == l.lang) {
                return Err(Error::Invalid(format!("language {} is given twice: list each language once", l.lang)));
            }
            if l.counts.len() != plane {
                return Err(Error::Invalid(format!(
                    "language {} has {} counts but the model has {} × {} = {plane} neurons: statistics of another model?",
                    l.lang,
                    l.counts.len(),
                    self.layers,
                    self.intermediate
                )));
            }
            if l.n_tokens == 0 {
                return Err(Error::Invalid(format!(
                    "language {} has statistics over 0 tokens: capture it again",
                    l.lang
                )));
            }
            if let Some(c) = l.counts.iter().find(|&&c| c > l.n_tokens) {
                return Err(Error::Invalid(format!(
                    "language {} counts {c} activations for one neuron but only {} tokens: corrupt statistics",
                    l.lang, l.n_tokens
                )));
            }
        }
        Ok(())
    }

    /// `p[k][n] = counts / n_tokens` in f32, as `over_zero / n` in torch.
    pub(crate) fn probs(&self) -> Vec<Vec<f32>> {
        self.langs.iter().map(|l| l.counts.iter().map(|&c| c as f32 / l.n_tokens as f32).collect()).collect()
    }

    pub(crate) fn plane(&self) -> usize {
        self.layers * self.intermediate
    }

    pub(crate) fn lang_names(&self) -> Vec<String> {
        self.langs.iter().map(|l| l.lang.clone()).collect()
    }
}
