//! XQuAD answer metrics, pure: the paper's token-id EM/F1, the official SQuAD v1.1 EM/F1, and MLQA's
//! language-aware EM/F1. Every score is per example, in [0, 100].
//!
//! `squad` follows the SQuAD v1.1 evaluation script: lowercase, drop ASCII punctuation, drop the words a/an/the,
//! collapse whitespace, split on whitespace; EM and F1 are the maximum over the gold answers. Like that script, F1 is 0
//! when no token is shared, even when both sides normalise to nothing (EM is then 100).
//! `mlqa` follows the MLQA evaluation script: punctuation is every Unicode `P*` character (plus ASCII punctuation),
//! articles per language (en a/an/the; es un una unos unas el la los las; vi của là cái chiếc những; de ein eine
//! einen einem eines einer der die das den dem des; ar the prefix ال; none for hi and zh), and zh is segmented mixed:
//! each CJK character (U+4E00–U+9FA5) and each punctuation character its own token, other text split on whitespace.
//! Languages MLQA does not cover are split on whitespace with no articles removed ([`MlqaRules::of`] says which).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// EM and F1 of one prediction, each in [0, 100].
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct EmF1 {
    pub em: f64,
    pub f1: f64,
}

/// F1 of two bags of tokens (0 when they share none), in [0, 1].
fn bag_f1<T: Eq + Hash>(pred: &[T], gold: &[T]) -> f64 {
    let mut counts: HashMap<&T, usize> = HashMap::new();
    for t in gold {
        *counts.entry(t).or_default() += 1;
    }
    let mut same = 0usize;
    for t in pred {
        if let Some(c) = counts.get_mut(t)
            && *c > 0
        {
            *c -= 1;
            same += 1;
        }
    }
    if same == 0 {
        return 0.0;
    }
    let p = same as f64 / pred.len() as f64;
    let r = same as f64 / gold.len() as f64;
    2.0 * p * r / (p + r)
}

/// The paper's metric, on token ids: EM when the id lists are identical, F1 on the bag of ids. `pred` is what was
/// generated (EOS included when generation stopped there); `gold` the ids of `" " + answer.trim()` followed by EOS.
pub fn paper_scores(pred: &[u32], gold: &[u32]) -> EmF1 {
    EmF1 { em: if pred == gold { 100.0 } else { 0.0 }, f1: 100.0 * bag_f1(pred, gold) }
}

/// Python's `str.split()`: runs of Unicode whitespace (and the ASCII separators U+001C–U+001F, which Python counts).
fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)).filter(|t| !t.is_empty())
}

fn max_over<F: Fn(&str) -> EmF1>(golds: &[&str], score: F) -> EmF1 {
    golds.iter().map(|g| score(g)).fold(EmF1::default(), |a, b| EmF1 { em: a.em.max(b.em), f1: a.f1.max(b.f1) })
}

fn em_f1(pred: &str, gold: &str) -> EmF1 {
    let p: Vec<&str> = py_split(pred).collect();
    let g: Vec<&str> = py_split(gold).collect();
    EmF1 { em: if pred == gold { 100.0 } else { 0.0 }, f1: 100.0 * bag_f1(&p, &g) }
}

static EN_ARTICLES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b(a|an|the)\b").expect("valid regex"));
static ES_ARTICLES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(un|una|unos|unas|el|la|los|las)\b").expect("valid regex"));
static VI_ARTICLES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(của|là|cái|chiếc|những)\b").expect("valid regex"));
static DE_ARTICLES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b").expect("valid regex")
});
static PUNCT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\p{P}").expect("valid regex"));

/// SQuAD v1.1's answer normalisation.
pub fn squad_normalize(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punct: String = lower.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    let no_articles = EN_ARTICLES.replace_all(&no_punct, " ");
    py_split(&no_articles).collect::<Vec<_>>().join(" ")
}

/// SQuAD v1.1 EM and F1 of `pred` against the gold answers (the best over them).
pub fn squad_scores(pred: &str, golds: &[&str]) -> EmF1 {
    let p = squad_normalize(pred);
    max_over(golds, |g| em_f1(&p, &squad_normalize(g)))
}

/// How MLQA normalises a language's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MlqaRules {
    /// One of MLQA's languages (en es hi vi de ar zh): its own articles and segmentation.
    Mlqa,
    /// Not an MLQA language: whitespace tokens, no articles removed.
    WhitespaceOnly,
}

impl MlqaRules {
    pub fn of(lang: &str) -> MlqaRules {
        if ["en", "es", "hi", "vi", "de", "ar", "zh"].contains(&lang) {
            MlqaRules::Mlqa
        } else {
            MlqaRules::WhitespaceOnly
        }
    }
}

fn is_mlqa_punct(c: char) -> bool {
    c.is_ascii_punctuation() || PUNCT.is_match(c.encode_utf8(&mut [0; 4]))
}

/// MLQA's mixed segmentation (zh): each CJK character and each punctuation character alone, other runs split on
/// whitespace.
fn mixed_segmentation(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut run = String::new();
    for c in text.chars() {
        if ('\u{4e00}'..='\u{9fa5}').contains(&c) || is_mlqa_punct(c) {
            out.extend(py_split(&run).map(str::to_owned));
            run.clear();
            out.push(c.to_string());
        } else {
            run.push(c);
        }
    }
    out.extend(py_split(&run).map(str::to_owned));
    out
}

/// MLQA's answer normalisation for `lang` (ISO 639-1).
pub fn mlqa_normalize(s: &str, lang: &str) -> String {
    let lower = s.to_lowercase();
    let no_punct: String = lower.chars().filter(|&c| !is_mlqa_punct(c)).collect();
    let no_articles = match lang {
        "en" => EN_ARTICLES.replace_all(&no_punct, " ").into_owned(),
        "es" => ES_ARTICLES.replace_all(&no_punct, " ").into_owned(),
        "vi" => VI_ARTICLES.replace_all(&no_punct, " ").into_owned(),
        "de" => DE_ARTICLES.replace_all(&no_punct, " ").into_owned(),
        // MLQA's pattern `\sال^|ال`: its first branch can never match, so every ال becomes a space.
        "ar" => no_punct.replace("ال", " "),
        _ => no_punct,
    };
    let tokens: Vec<String> = if lang == "zh" {
        mixed_segmentation(&no_articles)
    } else {
        py_split(&no_articles).map(str::to_owned).collect()
    };
    tokens.into_iter().filter(|t| py_split(t).next().is_some()).collect::<Vec<_>>().join(" ")
}

/// MLQA EM and F1 of `pred` against the gold answers in `lang` (the best over them).
pub fn mlqa_scores(pred: &str, golds: &[&str], lang: &str) -> EmF1 {
    let p = mlqa_normalize(pred, lang);
    max_over(golds, |g| em_f1(&p, &mlqa_normalize(g, lang)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn squad_matches_the_official_examples() {
        // The example of the SQuAD metric's documentation (HF `evaluate`): an exact answer scores 100/100.
        assert_eq!(squad_scores("1976", &["1976"]), EmF1 { em: 100.0, f1: 100.0 });
        assert_eq!(squad_normalize("The  Quick, brown FOX!"), "quick brown fox");
        assert_eq!(squad_scores("a Denver Broncos", &["Denver Broncos", "Broncos"]).em, 100.0);
        // Like the v1.1 script: both normalise to nothing → EM 100, F1 0.
        assert_eq!(squad_scores("the", &["a"]), EmF1 { em: 100.0, f1: 0.0 });
        // ASCII punctuation only: the ideographic full stop stays.
        assert_eq!(squad_normalize("北京。"), "北京。");
    }

    #[test]
    fn mlqa_is_language_aware() {
        assert_eq!(mlqa_normalize("北京。", "zh"), "北 京");
        assert_eq!(mlqa_normalize("Năm 1976, của nó", "vi"), "năm 1976 nó");
        assert_eq!(mlqa_normalize("los Angeles «x»", "es"), "angeles x");
        assert_eq!(mlqa_normalize("नई दिल्ली।", "hi"), "नई दिल्ली");
        assert!((mlqa_scores("位于北京", &["北京"], "zh").f1 - 100.0 * 2.0 * 0.5 / 1.5).abs() < 1e-9);
        assert_eq!(MlqaRules::of("th"), MlqaRules::WhitespaceOnly);
    }

    #[test]
    fn paper_metric_is_on_ids() {
        assert_eq!(paper_scores(&[5, 6, 1], &[5, 6, 1]), EmF1 { em: 100.0, f1: 100.0 });
        let s = paper_scores(&[5, 7, 7, 1], &[5, 6, 1]);
        assert_eq!(s.em, 0.0);
        assert!((s.f1 - 100.0 * 2.0 * 0.5 * (2.0 / 3.0) / (0.5 + 2.0 / 3.0)).abs() < 1e-9);
        assert_eq!(paper_scores(&[9], &[5, 1]).f1, 0.0);
    }

    fn answer() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[a-zA-Z0-9 ,.!?«»。、，北京的ệđảâ\u{0964}नई-]{0,24}").expect("valid regex")
    }

    proptest! {
        #[test]
        fn metric_invariants(pred in answer(), gold in answer(), lang in prop::sample::select(vec!["en", "es", "vi", "hi", "zh", "de", "ar", "ru"])) {
            for (norm, s, s_gold) in [
                (squad_normalize(&gold), squad_scores(&pred, &[&gold]), squad_scores(&gold, &[&gold])),
                (mlqa_normalize(&gold, lang), mlqa_scores(&pred, &[&gold], lang), mlqa_scores(&gold, &[&gold], lang)),
            ] {
                prop_assert!((0.0..=100.0).contains(&s.f1) && (s.em == 0.0 || s.em == 100.0));
                if !norm.is_empty() {
                    prop_assert!(s.em <= s.f1, "{s:?}");
                    prop_assert_eq!(s_gold, EmF1 { em: 100.0, f1: 100.0 });
                }
            }
            let sq = squad_normalize(&pred);
            prop_assert_eq!(squad_normalize(&sq), sq.clone());
            let ml = mlqa_normalize(&pred, lang);
            prop_assert_eq!(mlqa_normalize(&ml, lang), ml.clone());
        }

        #[test]
        fn paper_invariants(pred in prop::collection::vec(0u32..6, 0..8), gold in prop::collection::vec(0u32..6, 1..8)) {
            let s = paper_scores(&pred, &gold);
            prop_assert!((0.0..=100.0).contains(&s.f1) && s.em <= s.f1);
            prop_assert_eq!(paper_scores(&gold, &gold), EmF1 { em: 100.0, f1: 100.0 });
        }
    }
}
