//! XQuAD as the paper ran it, written once for every backend: the paper's prompt, prompts of ≥ 511 tokens dropped
//! (and counted), greedy KV-cached generation (at most 100 new tokens, stop at EOS), and the three metrics of
//! [`crate::qa_metrics`] per example.

use lsn_core::{Generated, Greedy, Intervention, Model, greedy};
use lsn_data::{QaExample, Tokenizer, xquad_prompt};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::batching::by_length;
use crate::qa_metrics::{EmF1, mlqa_scores, paper_scores, squad_scores};

/// Prompts of this many tokens or more are dropped, as the paper's code did.
pub const MAX_PROMPT_TOKENS: usize = 511;
/// New tokens per answer, at most (the paper's).
pub const MAX_NEW_TOKENS: usize = 100;

/// One question, tokenized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QaItem {
    /// Index in the language's file.
    pub index: usize,
    pub id: String,
    /// The paper's prompt, with the tokenizer's special tokens (BOS).
    pub prompt: Vec<u32>,
    /// The paper's gold ids: `" " + first answer trimmed`, no special tokens, then EOS.
    pub gold_ids: Vec<u32>,
    pub golds: Vec<String>,
}

/// The examples that can be asked, and those dropped for their prompt's length (file indices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QaSet {
    pub items: Vec<QaItem>,
    pub dropped: Vec<usize>,
}

/// Tokenizes `examples` with the paper's prompt; `eos` ends the paper's gold ids.
pub fn prepare(tok: &Tokenizer, eos: u32, examples: &[QaExample]) -> Result<QaSet> {
    let mut set = QaSet { items: Vec::new(), dropped: Vec::new() };
    for ex in examples {
        let prompt = tok.encode(&xquad_prompt(&ex.context, &ex.question))?;
        if prompt.len() >= MAX_PROMPT_TOKENS {
            set.dropped.push(ex.index);
            continue;
        }
        let first = ex.answers.first().map_or("", |a| a.0.as_str());
        let mut gold_ids = tok.encode_plain(&format!(" {}", first.trim()))?;
        gold_ids.push(eos);
        set.items.push(QaItem {
            index: ex.index,
            id: ex.id.clone(),
            prompt,
            gold_ids,
            golds: ex.answers.iter().map(|a| a.0.clone()).collect(),
        });
    }
    Ok(set)
}

/// Greedy continuations of `prompts`, `batch` prompts per decoder (sorted by length), with `intervention` at every
/// position of every step; results in input order. `progress(prompts done)` after each batch.
pub fn generate(
    model: &mut dyn Model,
    prompts: &[Vec<u32>],
    batch: usize,
    opts: &Greedy,
    intervention: Option<&Intervention>,
    mut progress: impl FnMut(usize),
) -> Result<Vec<Generated>> {
    let lengths: Vec<usize> = prompts.iter().map(Vec::len).collect();
    let mut out = vec![None; prompts.len()];
    for group in by_length(&lengths, batch) {
        let rows: Vec<Vec<u32>> = group.iter().map(|&i| prompts[i].clone()).collect();
        let mut dec = model.decoder(intervention)?;
        for (&i, g) in group.iter().zip(greedy(dec.as_mut(), &rows, opts)?) {
            out[i] = Some(g);
        }
        progress(group.len());
    }
    Ok(out.into_iter().map(|g| g.expect("every prompt is in one batch")).collect())
}

/// One answer's scores under the three metrics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QaScores {
    pub paper: EmF1,
    pub squad: EmF1,
    pub mlqa: EmF1,
}

/// The text of an answer for the string metrics: the generated ids before EOS, decoded, trimmed.
pub fn answer_text(tok: &Tokenizer, g: &Generated) -> Result<String> {
    let ids = if g.eos { &g.ids[..g.ids.len() - 1] } else { &g.ids[..] };
    Ok(tok.decode(ids)?.trim().to_owned())
}

/// Scores an answer: `paper` on the generated ids (EOS included when generated), `squad` and `mlqa` on `text`.
pub fn score(item: &QaItem, g: &Generated, text: &str, lang: &str) -> QaScores {
    let golds: Vec<&str> = item.golds.iter().map(String::as_str).collect();
    QaScores {
        paper: paper_scores(&g.ids, &item.gold_ids),
        squad: squad_scores(text, &golds),
        mlqa: mlqa_scores(text, &golds, lang),
    }
}
