//! XNLI, both protocols, written once for every backend.
//!
//! - Zero-shot (lm-evaluation-harness's `xnli` task): context `"{premise}, {QW}?"`, continuations
//!   `" {E}, {hypothesis}"`, `" {N}, {hypothesis}"`, `" {C}, {hypothesis}"` in label order, each scored by its summed
//!   log-likelihood; the prediction is the argmax. Token boundary as lm-eval's HF model draws it: the continuation's
//!   tokens are `encode(context + continuation)[len(encode(context)):]` (a merge across the boundary counts to the
//!   continuation), no special tokens inside, one BOS in front when the model has one.
//! - Head (the paper's): input `premise + " " + EOS text + " " + hypothesis` with the tokenizer's special tokens,
//!   and `Linear(hidden, 3)` on the final (normed) hidden state at the last real token. The paper's code read the last
//!   *padded* position; the last real token is what padding cannot move.

use lsn_core::{Dense, HiddenAt, Intervention, Model, Outputs, Request, TokenBatch};
use lsn_data::{NliExample, Tokenizer};
use serde::{Deserialize, Serialize};

use crate::batching::by_length;
use crate::{Error, Result};

/// lm-evaluation-harness's per-language words: the question word and the three label words in label order
/// (entailment, neutral, contradiction), from its `xnli/utils.py`.
const WORDS: &[(&str, &str, [&str; 3])] = &[
    ("ar", "صحيح", ["نعم", "لذا", "رقم"]),
    ("bg", "правилно", ["да", "така", "не"]),
    ("de", "richtig", ["Ja", "Auch", "Nein"]),
    ("el", "σωστός", ["Ναί", "Έτσι", "όχι"]),
    ("en", "right", ["Yes", "Also", "No"]),
    ("es", "correcto", ["Sí", "Asi que", "No"]),
    ("fr", "correct", ["Oui", "Aussi", "Non"]),
    ("hi", "सही", ["हाँ", "इसलिए", "नहीं"]),
    ("ru", "правильно", ["Да", "Так", "Нет"]),
    ("sw", "sahihi", ["Ndiyo", "Hivyo", "Hapana"]),
    ("th", "ถูกต้อง", ["ใช่", "ดังนั้น", "ไม่"]),
    ("tr", "doğru", ["Evet", "Böylece", "Hayır"]),
    ("ur", "صحیح", ["جی ہاں", "اس لئے", "نہیں"]),
    ("vi", "đúng", ["Vâng", "Vì vậy", "Không"]),
    ("zh", "正确", ["是的", "所以", "不是的"]),
];

/// The zero-shot template of a language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XnliWords {
    pub question: &'static str,
    pub labels: [&'static str; 3],
}

impl XnliWords {
    pub fn of(lang: &str) -> Result<XnliWords> {
        WORDS.iter().find(|w| w.0 == lang).map(|w| XnliWords { question: w.1, labels: w.2 }).ok_or_else(|| {
            Error::Unsupported(format!(
                "lm-evaluation-harness has no XNLI template for {lang}: use one of {}",
                WORDS.iter().map(|w| w.0).collect::<Vec<_>>().join(" ")
            ))
        })
    }

    /// The context and the three continuations of `ex`.
    pub fn texts(&self, ex: &NliExample) -> (String, [String; 3]) {
        let ctx = format!("{}, {}?", ex.premise, self.question);
        (ctx, self.labels.map(|l| format!(" {l}, {}", ex.hypothesis)))
    }
}

/// One zero-shot example, tokenized: three full sequences and how many of their last tokens are the continuation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZeroShotItem {
    pub ids: [Vec<u32>; 3],
    pub continuation: [usize; 3],
}

/// Tokenizes `ex` as lm-eval does (see the module docs); `bos` is put in front when given.
pub fn zero_shot_item(tok: &Tokenizer, bos: Option<u32>, words: &XnliWords, ex: &NliExample) -> Result<ZeroShotItem> {
    let (ctx, conts) = words.texts(ex);
    let ctx_ids = tok.encode_plain(&ctx)?;
    let mut ids: [Vec<u32>; 3] = Default::default();
    let mut continuation = [0; 3];
    for (k, cont) in conts.iter().enumerate() {
        let whole = tok.encode_plain(&format!("{ctx}{cont}"))?;
        let n = whole.len().saturating_sub(ctx_ids.len());
        if n == 0 {
            return Err(Error::Unsupported(format!("row {}: continuation {k} has no token of its own", ex.row)));
        }
        ids[k] = bos.into_iter().chain(whole).collect();
        continuation[k] = n;
    }
    Ok(ZeroShotItem { ids, continuation })
}

/// The head protocol's input: `premise + " " + eos_text + " " + hypothesis`, with the tokenizer's special tokens.
pub fn head_input(tok: &Tokenizer, eos_text: &str, ex: &NliExample) -> Result<Vec<u32>> {
    Ok(tok.encode(&format!("{} {eos_text} {}", ex.premise, ex.hypothesis))?)
}

/// One example's three class scores (summed log-likelihoods, or head logits) and the predicted class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NliPrediction {
    pub scores: [f64; 3],
    pub pred: usize,
}

impl NliPrediction {
    /// The first class of highest score (NaN never wins).
    pub fn from_scores(scores: [f64; 3]) -> Self {
        let mut pred = 0;
        for k in 1..3 {
            if scores[k] > scores[pred] || scores[pred].is_nan() {
                pred = k;
            }
        }
        Self { scores, pred }
    }
}

fn missing(model: &dyn Model, what: &str) -> Error {
    lsn_core::Error::Backend {
        backend: model.backend(),
        message: format!("a forward pass asked for {what} returned none"),
    }
    .into()
}

/// Scores every item's three continuations, `batch` sequences per forward pass (sorted by length), with
/// `intervention` at every position; `progress(examples done)` after each batch in which examples completed.
pub fn score_zero_shot(
    model: &mut dyn Model,
    items: &[ZeroShotItem],
    batch: usize,
    pad: u32,
    intervention: Option<&Intervention>,
    mut progress: impl FnMut(usize),
) -> Result<Vec<NliPrediction>> {
    let seqs: Vec<(usize, usize)> = (0..items.len()).flat_map(|i| (0..3).map(move |k| (i, k))).collect();
    let lengths: Vec<usize> = seqs.iter().map(|&(i, k)| items[i].ids[k].len()).collect();
    let mut ll = vec![[f64::NAN; 3]; items.len()];
    let mut left = vec![3u8; items.len()];
    for group in by_length(&lengths, batch) {
        let rows: Vec<Vec<u32>> = group.iter().map(|&s| items[seqs[s].0].ids[seqs[s].1].clone()).collect();
        let tb = TokenBatch::padded(&rows, pad)?;
        // Only the continuation's tokens are scored: the LM head runs on nothing before them.
        let from: Vec<usize> = group
            .iter()
            .enumerate()
            .map(|(r, &s)| (tb.lengths[r] - 1).saturating_sub(items[seqs[s].0].continuation[seqs[s].1]))
            .collect();
        let out = model.run(&Request::new(&tb, Outputs::NLL).intervene(intervention).nll_from(&from))?;
        let nll = out.nll.ok_or_else(|| missing(model, "the NLL"))?;
        let width = tb.seq_len - 1;
        let mut done = 0;
        for (r, &s) in group.iter().enumerate() {
            let (i, k) = seqs[s];
            let (len, n) = (tb.lengths[r], items[i].continuation[k]);
            let row = &nll.data[r * width..r * width + len - 1];
            ll[i][k] = -row[len - 1 - n..].iter().map(|&x| x as f64).sum::<f64>();
            left[i] -= 1;
            done += usize::from(left[i] == 0);
        }
        if done > 0 {
            progress(done);
        }
    }
    Ok(ll.into_iter().map(NliPrediction::from_scores).collect())
}

/// `Linear(hidden, 3)`: `logits = W·h + b`, W `[3, hidden]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierHead {
    pub hidden: usize,
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
}

impl ClassifierHead {
    pub fn new(hidden: usize, weight: Vec<f32>, bias: Option<Vec<f32>>) -> Result<Self> {
        if weight.len() != 3 * hidden || bias.as_ref().is_some_and(|b| b.len() != 3) {
            return Err(Error::BadHead(format!(
                "a head for hidden size {hidden} needs a weight of 3 × {hidden} and a bias of 3 (got {} and {:?})",
                weight.len(),
                bias.as_ref().map(Vec::len)
            )));
        }
        Ok(Self { hidden, weight, bias })
    }

    /// Reads a head from safetensors bytes: one f32 tensor `[3, hidden]` whose name ends in `weight` (PEFT saves a
    /// sequence-classification head as `…score.weight`), and optionally one `[3]` whose name ends in `bias`.
    pub fn from_safetensors(bytes: &[u8], hidden: usize) -> Result<Self> {
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| Error::BadHead(format!("not a safetensors file ({e})")))?;
        let f32s = |name: &str| -> Result<Vec<f32>> {
            let t = st.tensor(name).map_err(|e| Error::BadHead(format!("{name}: {e}")))?;
            if t.dtype() != safetensors::Dtype::F32 {
                return Err(Error::BadHead(format!("{name} is {:?}; save the head in f32", t.dtype())));
            }
            Ok(t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
        };
        let find = |suffix: &str, shape: &[usize]| -> Vec<String> {
            let mut v: Vec<String> = st
                .tensors()
                .into_iter()
                .filter(|(n, t)| n.ends_with(suffix) && t.shape() == shape)
                .map(|(n, _)| n)
                .collect();
            v.sort();
            v
        };
        let weights = find("weight", &[3, hidden]);
        let [w] = weights.as_slice() else {
            return Err(Error::BadHead(format!(
                "expected exactly one tensor named …weight of shape [3, {hidden}], found {} ({})",
                weights.len(),
                st.names().join(", ")
            )));
        };
        let biases = find("bias", &[3]);
        let bias = match biases.as_slice() {
            [] => None,
            [b] => Some(f32s(b)?),
            more => return Err(Error::BadHead(format!("several [3] bias tensors: {}", more.join(", ")))),
        };
        Self::new(hidden, f32s(w)?, bias)
    }

    pub fn logits(&self, h: &[f32]) -> [f64; 3] {
        std::array::from_fn(|k| {
            let w = &self.weight[k * self.hidden..(k + 1) * self.hidden];
            let dot: f64 = w.iter().zip(h).map(|(&a, &b)| a as f64 * b as f64).sum();
            dot + self.bias.as_ref().map_or(0.0, |b| b[k] as f64)
        })
    }
}

/// Classifies every input with `head` on the final hidden state at its last real token, `batch` inputs per forward
/// pass (sorted by length); `progress(examples done)` after each batch.
pub fn score_head(
    model: &mut dyn Model,
    head: &ClassifierHead,
    inputs: &[Vec<u32>],
    batch: usize,
    pad: u32,
    intervention: Option<&Intervention>,
    mut progress: impl FnMut(usize),
) -> Result<Vec<NliPrediction>> {
    if head.hidden != model.config().hidden_size {
        return Err(Error::BadHead(format!(
            "the head reads a hidden state of {} values, the model's is {}",
            head.hidden,
            model.config().hidden_size
        )));
    }
    let lengths: Vec<usize> = inputs.iter().map(Vec::len).collect();
    let mut out = vec![None; inputs.len()];
    for group in by_length(&lengths, batch) {
        let rows: Vec<Vec<u32>> = group.iter().map(|&i| inputs[i].clone()).collect();
        let tb = TokenBatch::padded(&rows, pad)?;
        let res = model.run(&Request::new(&tb, Outputs::hidden(HiddenAt::LastReal)).intervene(intervention))?;
        let hidden: Dense = res.hidden.ok_or_else(|| missing(model, "the hidden state"))?;
        for (r, &i) in group.iter().enumerate() {
            let h = &hidden.data[r * head.hidden..(r + 1) * head.hidden];
            out[i] = Some(NliPrediction::from_scores(head.logits(h)));
        }
        progress(group.len());
    }
    Ok(out.into_iter().map(|p| p.expect("every input is in one batch")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_lm_evals() {
        let ex = NliExample {
            row: 0,
            premise: "P".into(),
            hypothesis: "H".into(),
            label: lsn_data::NliLabel::Neutral,
            genre: String::new(),
        };
        let (ctx, conts) = XnliWords::of("en").unwrap().texts(&ex);
        assert_eq!(ctx, "P, right?");
        assert_eq!(conts, [" Yes, H", " Also, H", " No, H"].map(String::from));
        let (ctx, conts) = XnliWords::of("ur").unwrap().texts(&ex);
        assert_eq!((ctx.as_str(), conts[0].as_str()), ("P, صحیح?", " جی ہاں, H"));
        assert!(XnliWords::of("ja").unwrap_err().to_string().contains("no XNLI template for ja"));
    }

    #[test]
    fn argmax_takes_the_first_best() {
        assert_eq!(NliPrediction::from_scores([-3.0, -1.0, -1.0]).pred, 1);
        assert_eq!(NliPrediction::from_scores([f64::NAN, -5.0, -6.0]).pred, 1);
    }

    #[test]
    fn a_head_from_safetensors() {
        let w: Vec<f32> = (0..6).map(|x| x as f32).collect();
        let bytes: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
        let b: Vec<u8> = [0.5f32, 0.0, -0.5].iter().flat_map(|x| x.to_le_bytes()).collect();
        let views = vec![
            (
                "base_model.model.score.weight",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3, 2], &bytes).unwrap(),
            ),
            (
                "base_model.model.score.bias",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3], &b).unwrap(),
            ),
        ];
        let file = safetensors::serialize(views, None).unwrap();
        let head = ClassifierHead::from_safetensors(&file, 2).unwrap();
        assert_eq!(head.logits(&[1.0, 2.0]), [2.5, 8.0, 13.5]);
        let e = ClassifierHead::from_safetensors(&file, 4).unwrap_err().to_string();
        assert!(e.contains("exactly one tensor named …weight of shape [3, 4]"), "{e}");
        assert!(ClassifierHead::from_safetensors(b"junk", 2).unwrap_err().to_string().contains("not a safetensors"));
    }
}
