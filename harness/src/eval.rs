//! Task-evaluation cases against HF transformers (`fixtures/golden/<model>.eval.json`, made by
//! `xtask/fixtures/golden_eval.py`), run through lsn-eval exactly as `lsn eval` runs them:
//! (A prefix of each language's goldens: [`XNLI_ROWS`] pairs, [`XQUAD_QUESTIONS`] questions.)
//! - `xnli/<m>`: lm-eval's items built by our tokenizer equal the golden's ids; every continuation's summed
//!   log-likelihood within [`LOGIT_TOL`] of HF's, with and without the golden's intervention (batches of 8, padded,
//!   sorted by length); the first language's predictions with batch 1 equal those with batch 8;
//! - `xquad/<m>`: the paper's prompt through our tokenizer equals the golden's ids; greedy answers (batches of 4)
//!   equal HF `generate`'s with and without the intervention, a first difference at a near-tie excepted;
//! - `xnli-head/<m>`: a head made of the LM head's rows for three tokens reads the hidden state at the last real
//!   token: its logits (batch 8, padded) within [`LOGIT_TOL`] of the model's own last-position logits of those tokens.
//!
//! Each backend's predicted labels and answers also go to the cross-backend table.

use lsn_core::{Backend, Greedy, Intervention, LoadOptions, Model, ModelFiles, NeuronId, Outputs, Request, TokenBatch};
use lsn_data::{NliExample, NliLabel, Tokenizer, xquad_prompt};
use lsn_eval::xnli::{ClassifierHead, XnliWords, score_head, score_zero_shot, zero_shot_item};
use serde::Deserialize;

use crate::generate::NEAR_TIE;
use crate::golden::{self, GoldenModel, LOGIT_TOL};
use crate::report::{Check, PairRow};
use crate::suite::Env;

/// The fetched models whose task goldens the suite checks; it also checks every tiny golden model's ([`covers`]).
/// smollm2-135m's goldens are kept, and `cargo xtask fixtures eval` still makes them, for checking by hand: its
/// family is covered by tiny-llama and tiny-llama32.
pub const FETCHED_MODELS: &[&str] = &["gemma-3-270m"];

/// Whether the suite checks the task goldens of `m`: the default model, and the tiny model of every family (byte
/// tokenizers, so each prompt is its UTF-8 bytes: long inputs through sliding windows, soft-caps, biases and q/k
/// norms).
pub fn covers(m: &GoldenModel) -> bool {
    matches!(m.source, golden::Source::Tiny(_)) || FETCHED_MODELS.contains(&m.name)
}

/// XNLI pairs (the first, by file row) and XQuAD questions per language the suite checks of the goldens' 12 and 4.
pub const XNLI_ROWS: usize = 6;
pub const XQUAD_QUESTIONS: usize = 2;

#[derive(Deserialize)]
struct Golden {
    model: String,
    weights_sha256: String,
    bos: Option<u32>,
    eos: Vec<u32>,
    max_new_tokens: usize,
    intervention: Vec<(u32, u32, f32)>,
    xnli: Vec<XnliRow>,
    xquad: Vec<XquadRow>,
}

#[derive(Deserialize)]
struct XnliRow {
    lang: String,
    row: usize,
    premise: String,
    hypothesis: String,
    label: String,
    ids: [Vec<u32>; 3],
    continuation: [usize; 3],
    loglik: [f64; 3],
    loglik_intervened: [f64; 3],
}

#[derive(Deserialize)]
struct XquadRow {
    lang: String,
    context: String,
    question: String,
    prompt: Vec<u32>,
    generated: Vec<u32>,
    margins: Vec<f64>,
    generated_intervened: Vec<u32>,
    margins_intervened: Vec<f64>,
}

/// One backend's predictions, for the cross-backend table.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub backend: String,
    pub model: String,
    /// XNLI labels without and with the intervention.
    pub labels: [Vec<usize>; 2],
    /// XQuAD answers without and with the intervention.
    pub answers: [Vec<Vec<u32>>; 2],
}

fn read(env: &Env, name: &str) -> Result<Golden, String> {
    let path = env.root.join("fixtures/golden").join(format!("{name}.eval.json"));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e} (run `cargo xtask fixtures eval`)", path.display()))?;
    let mut g: Golden = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if g.model != name {
        return Err(format!("{} holds the goldens of {}", path.display(), g.model));
    }
    // The suite checks a prefix of each language's goldens: these are its most expensive cases (~400 s per backend
    // with all 12 pairs and 4 questions per language on this machine).
    g.xnli.retain(|r| r.row < XNLI_ROWS);
    let mut kept: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    g.xquad.retain(|q| {
        let n = kept.entry(q.lang.clone()).or_default();
        *n += 1;
        *n <= XQUAD_QUESTIONS
    });
    Ok(g)
}

fn err(e: impl ToString) -> String {
    e.to_string()
}

/// What the XNLI case measured.
struct XnliOutcome {
    worst: f64,
    worst_intervened: f64,
    id_mismatches: usize,
    batch_changes: usize,
    labels: [Vec<usize>; 2],
    accuracy: f64,
}

fn measure_xnli(model: &mut dyn Model, tok: &Tokenizer, g: &Golden, iv: &Intervention) -> Result<XnliOutcome, String> {
    let pad = model.config().pad_token_id.unwrap_or(0);
    let mut items = Vec::new();
    let mut id_mismatches = 0;
    for r in &g.xnli {
        let ex = NliExample {
            row: r.row,
            premise: r.premise.clone(),
            hypothesis: r.hypothesis.clone(),
            label: NliLabel::parse(&r.label).ok_or("bad label in golden")?,
            genre: String::new(),
        };
        let item = zero_shot_item(tok, g.bos, &XnliWords::of(&r.lang).map_err(err)?, &ex).map_err(err)?;
        if item.ids != r.ids || item.continuation != r.continuation {
            id_mismatches += 1;
        }
        items.push(item);
    }
    let plain = score_zero_shot(model, &items, 8, pad, None, |_| {}).map_err(err)?;
    let intervened = score_zero_shot(model, &items, 8, pad, Some(iv), |_| {}).map_err(err)?;
    let first = g.xnli.iter().take_while(|r| r.lang == g.xnli[0].lang).count();
    let single = score_zero_shot(model, &items[..first], 1, pad, None, |_| {}).map_err(err)?;
    let worst_of = |preds: &[lsn_eval::xnli::NliPrediction], gold: &dyn Fn(&XnliRow) -> [f64; 3]| {
        preds
            .iter()
            .zip(&g.xnli)
            .flat_map(|(p, r)| (0..3).map(move |k| (p.scores[k] - gold(r)[k]).abs()))
            .fold(0f64, f64::max)
    };
    let correct = plain
        .iter()
        .zip(&g.xnli)
        .filter(|(p, r)| NliLabel::from_index(p.pred).map(NliLabel::name) == Some(&r.label))
        .count();
    Ok(XnliOutcome {
        worst: worst_of(&plain, &|r| r.loglik),
        worst_intervened: worst_of(&intervened, &|r| r.loglik_intervened),
        id_mismatches,
        batch_changes: single.iter().zip(&plain).filter(|(a, b)| a.pred != b.pred).count(),
        labels: [plain.iter().map(|p| p.pred).collect(), intervened.iter().map(|p| p.pred).collect()],
        accuracy: 100.0 * correct as f64 / g.xnli.len() as f64,
    })
}

/// What the XQuAD case measured.
struct XquadOutcome {
    prompt_mismatches: usize,
    real: usize,
    near: usize,
    answers: [Vec<Vec<u32>>; 2],
}

fn measure_xquad(
    model: &mut dyn Model,
    tok: &Tokenizer,
    g: &Golden,
    iv: &Intervention,
) -> Result<XquadOutcome, String> {
    let pad = model.config().pad_token_id.unwrap_or(0);
    let mut prompt_mismatches = 0;
    for q in &g.xquad {
        prompt_mismatches += usize::from(tok.encode(&xquad_prompt(&q.context, &q.question)).map_err(err)? != q.prompt);
    }
    let prompts: Vec<Vec<u32>> = g.xquad.iter().map(|q| q.prompt.clone()).collect();
    let opts = Greedy { max_new_tokens: g.max_new_tokens, eos: g.eos.clone(), pad };
    let (mut real, mut near) = (0, 0);
    let mut answers: [Vec<Vec<u32>>; 2] = Default::default();
    for (k, iv) in [None, Some(iv)].into_iter().enumerate() {
        let got = lsn_eval::xquad::generate(model, &prompts, 4, &opts, iv, |_| {}).map_err(err)?;
        for (q, ours) in g.xquad.iter().zip(&got) {
            let (want, margins) =
                if k == 0 { (&q.generated, &q.margins) } else { (&q.generated_intervened, &q.margins_intervened) };
            match ours.ids.iter().zip(want).position(|(a, b)| a != b) {
                Some(i) if margins.get(i).is_some_and(|&m| m < NEAR_TIE) => near += 1,
                Some(_) => real += 1,
                None if ours.ids.len() != want.len() => real += 1,
                None => {}
            }
        }
        answers[k] = got.into_iter().map(|g| g.ids).collect();
    }
    Ok(XquadOutcome { prompt_mismatches, real, near, answers })
}

/// A head of the LM head's rows for three tokens, on the golden XNLI premises: worst |Δ| between its logits (batch
/// 8, padded) and the model's own last-position logits of those tokens (one sequence at a time). Where the model
/// soft-caps its logits, the head's are capped the same way before the comparison.
fn measure_head(model: &mut dyn Model, dir: &std::path::Path, g: &Golden) -> Result<(f64, usize), String> {
    let cfg = model.config().clone();
    let cap = |s: f64| cfg.final_logit_softcap.map_or(s, |c| c * (s / c).tanh());
    let ckpt = lsn_weights::open_checkpoint(dir).map_err(err)?;
    let name =
        if ckpt.location.contains_key("lm_head.weight") { "lm_head.weight" } else { "model.embed_tokens.weight" };
    let (_, w) = lsn_weights::TensorReader::open(&ckpt).map_err(err)?.read_f32(name).map_err(err)?;
    let h = cfg.hidden_size;
    let tokens = [100usize, 1000, 5000].map(|t| t % cfg.vocab_size);
    let weight: Vec<f32> = tokens.iter().flat_map(|&t| w[t * h..(t + 1) * h].iter().copied()).collect();
    drop(w);
    let head = ClassifierHead::new(h, weight, None).map_err(err)?;
    let inputs: Vec<Vec<u32>> =
        g.xnli.iter().map(|r| r.ids[0][..r.ids[0].len() - r.continuation[0]].to_vec()).collect();
    let pad = cfg.pad_token_id.unwrap_or(0);
    let preds = score_head(model, &head, &inputs, 8, pad, None, |_| {}).map_err(err)?;
    let (mut worst, mut wrong) = (0f64, 0);
    for (p, ids) in preds.iter().zip(&inputs) {
        let b = TokenBatch::single(ids).map_err(err)?;
        let last = model.run(&Request::new(&b, Outputs::LAST_LOGITS)).map_err(err)?.last_logits.ok_or("no logits")?;
        let want: Vec<f64> = tokens.iter().map(|&t| f64::from(last.data[t])).collect();
        let got = p.scores.map(cap);
        worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(worst, f64::max);
        wrong += usize::from(
            lsn_eval::xnli::NliPrediction::from_scores([want[0], want[1], want[2]]).pred
                != lsn_eval::xnli::NliPrediction::from_scores(got).pred,
        );
    }
    Ok((worst, wrong))
}

/// The three cases of model `name` on `backend`, and its predictions for the cross-backend table.
pub fn checks(backend: &dyn Backend, env: &Env, m: &GoldenModel) -> (Vec<Check>, Option<Predictions>) {
    let name = m.name;
    let b = backend.name();
    let (xnli_case, xquad_case, head_case) =
        (format!("xnli/{name}"), format!("xquad/{name}"), format!("xnli-head/{name}"));
    let loaded = (|| -> Result<(Golden, Tokenizer, std::path::PathBuf, Box<dyn Model>), String> {
        let g = read(env, name)?;
        let dir = golden::model_dir(env, m)?;
        if golden::sha256(&dir.join("model.safetensors"))? != g.weights_sha256 {
            return Err(format!(
                "the weights in {} differ from the goldens': run `cargo xtask fixtures eval`",
                dir.display()
            ));
        }
        let tok = Tokenizer::from_file(&dir.join("tokenizer.json")).map_err(err)?;
        let model = backend
            .load(&ModelFiles::new(&dir), &LoadOptions { device: env.device, ..LoadOptions::default() })
            .map_err(err)?;
        Ok((g, tok, dir, model))
    })();
    let (g, tok, dir, mut model) = match loaded {
        Ok(x) => x,
        Err(e) => {
            return ([&xnli_case, &xquad_case, &head_case].map(|c| Check::failed(c, b, e.clone())).to_vec(), None);
        }
    };
    let iv = Intervention {
        set: g.intervention.iter().map(|&(l, j, v)| (NeuronId::new(l, j), v)).collect(),
        ..Intervention::default()
    };
    let mut v = Vec::new();
    let mut labels = None;
    v.push(match measure_xnli(model.as_mut(), &tok, &g, &iv) {
        Ok(o) => {
            labels = Some(o.labels.clone());
            Check::measured(
                &xnli_case,
                b,
                "max abs Δlog-likelihood",
                o.worst.max(o.worst_intervened),
                LOGIT_TOL,
                format!(
                    "{} pairs × 3 continuations (no intervention {}, {} neurons zeroed {}); {} items tokenized unlike lm-eval; \
                     batch 1 vs 8: {} predictions differ; accuracy {:.1}%",
                    g.xnli.len(),
                    crate::report::fmt_num(o.worst),
                    g.intervention.len(),
                    crate::report::fmt_num(o.worst_intervened),
                    o.id_mismatches,
                    o.batch_changes,
                    o.accuracy
                ),
            )
            .fail_if(o.id_mismatches > 0 || o.batch_changes > 0)
        }
        Err(e) => Check::failed(&xnli_case, b, e),
    });
    let mut answers = None;
    v.push(match measure_xquad(model.as_mut(), &tok, &g, &iv) {
        Ok(o) => {
            answers = Some(o.answers.clone());
            Check::measured(
                &xquad_case,
                b,
                "answers differing",
                o.real as f64,
                0.0,
                format!(
                    "{} questions × (no intervention, {} neurons zeroed), {} new tokens; {} differ first at a near-tie; \
                     {} prompts tokenized unlike the golden",
                    g.xquad.len(),
                    g.intervention.len(),
                    g.max_new_tokens,
                    o.near,
                    o.prompt_mismatches
                ),
            )
            .fail_if(o.prompt_mismatches > 0)
        }
        Err(e) => Check::failed(&xquad_case, b, e),
    });
    v.push(match measure_head(model.as_mut(), &dir, &g) {
        Ok((worst, wrong)) => Check::measured(
            &head_case,
            b,
            "max abs Δhead logit",
            worst,
            LOGIT_TOL,
            format!("{} inputs; {wrong} predictions differ from the LM's own logits", g.xnli.len()),
        )
        .fail_if(wrong > 0),
        Err(e) => Check::failed(&head_case, b, e),
    });
    let preds = labels.zip(answers).map(|(labels, answers)| Predictions {
        backend: b.to_owned(),
        model: name.to_owned(),
        labels,
        answers,
    });
    (v, preds)
}

/// Cross-backend rows: XNLI labels and XQuAD answers differing between two backends, with and without the
/// intervention.
pub fn pair_rows(all: &[Predictions]) -> Vec<PairRow> {
    let mut rows = Vec::new();
    for (i, a) in all.iter().enumerate() {
        for b in all[i + 1..].iter().filter(|b| b.model == a.model && b.backend != a.backend) {
            for (k, what) in ["no intervention", "intervention"].iter().enumerate() {
                let labels = a.labels[k].iter().zip(&b.labels[k]).filter(|(x, y)| x != y).count();
                let answers = a.answers[k].iter().zip(&b.answers[k]).filter(|(x, y)| x != y).count();
                let row = |w: String, value: usize, note: String| PairRow {
                    a: a.backend.clone(),
                    b: b.backend.clone(),
                    what: w,
                    value: value as f64,
                    note,
                };
                rows.push(row(
                    format!("xnli/{}: labels differing ({what})", a.model),
                    labels,
                    format!("{} pairs", a.labels[k].len()),
                ));
                rows.push(row(
                    format!("xquad/{}: answers differing ({what})", a.model),
                    answers,
                    format!("{} questions", a.answers[k].len()),
                ));
            }
        }
    }
    rows
}
