//! The input of selection: per language, how many of its tokens activated each neuron (`count_pos` for LAPE, the
//! pass-2 count above p90 for ActProb-90p), and over how many tokens.

use lsn_core::ActivationStats;
use lsn_core::taps::quantile_index;

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
    /// LAPE's input: each language's pass-1 positive counts (`count_pos` over its pass-1 tokens).
    pub fn positive_counts(langs: &[(&str, &ActivationStats)]) -> Result<Self> {
        Self::from_stats(langs, |_, s| Ok((s.pass1.n_tokens, s.pass1.count_pos.clone())))
    }

    /// ActProb-90p's input: each language's pass-2 counts above its own mean p90. Fails when a language has no
    /// pass 2.
    pub fn above_p90(langs: &[(&str, &ActivationStats)]) -> Result<Self> {
        let q = quantile_index(0.90).expect("p90 is a capture quantile");
        Self::from_stats(langs, |lang, s| {
            let p2 = s.pass2.as_ref().ok_or_else(|| {
                Error::Invalid(format!("statistics of {lang} have no pass 2: finish `lsn capture` (and `lsn merge`)"))
            })?;
            let plane = s.layers * s.intermediate;
            Ok((p2.n_tokens, p2.count_above[q * plane..(q + 1) * plane].to_vec()))
        })
    }

    fn from_stats(
        langs: &[(&str, &ActivationStats)],
        counts: impl Fn(&str, &ActivationStats) -> Result<(u64, Vec<u64>)>,
    ) -> Result<Self> {
        let Some((_, first)) = langs.first() else {
            return Err(Error::Invalid("no language given".into()));
        };
        let langs = langs
            .iter()
            .map(|(lang, s)| {
                counts(lang, s).map(|(n_tokens, counts)| LangCounts { lang: (*lang).to_owned(), n_tokens, counts })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CountTable { layers: first.layers, intermediate: first.intermediate, langs })
    }

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
