//! Language forcing, written once for every backend: greedy continuations of prompts with and without a steering
//! intervention, the language of each (lingua, [`crate::LanguageId`]), and its fluency — the mean next-token NLL of
//! the continuation given its prompt under the model *without* the intervention (exp of it is the continuation's
//! perplexity). Each cell compares the steered share in the target language with a random-neuron control of the same
//! size per layer, paired over prompts, with bootstrap intervals.

use lsn_core::{Greedy, Intervention, Lang, Model, Outputs, Request, TokenBatch};
use serde::{Deserialize, Serialize};

use crate::bootstrap::{DEFAULT_RESAMPLES, DEFAULT_SEED, Delta, Interval, bootstrap_mean, paired_bootstrap};
use crate::{Error, LanguageId, Result};

/// One continuation, judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judged {
    pub ids: Vec<u32>,
    pub text: String,
    /// lingua's language of the text; `None` when it cannot tell (empty or no letters).
    pub detected: Option<Lang>,
    pub stopped_at_eos: bool,
    /// Mean next-token NLL of the continuation under the unsteered model (`None` for an empty continuation).
    pub nll: Option<f64>,
}

/// Greedy continuations of `prompts` under `iv`, `batch` prompts per decoder.
pub fn continuations(
    model: &mut dyn Model,
    iv: Option<&Intervention>,
    prompts: &[Vec<u32>],
    opts: &Greedy,
    batch: usize,
    mut progress: impl FnMut(usize),
) -> Result<Vec<(Vec<u32>, bool)>> {
    let mut out = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(batch.max(1)) {
        let mut dec = model.decoder(iv)?;
        for g in lsn_core::greedy(dec.as_mut(), chunk, opts)? {
            out.push((g.ids, g.eos));
        }
        progress(chunk.len());
    }
    Ok(out)
}

/// The mean NLL per token of each continuation given its prompt, under `model` with no intervention (`None` for an
/// empty continuation). The EOS a continuation stopped at is scored too, as it was generated.
pub fn continuation_nll(
    model: &mut dyn Model,
    prompts: &[Vec<u32>],
    conts: &[Vec<u32>],
    batch: usize,
    pad: u32,
) -> Result<Vec<Option<f64>>> {
    if prompts.len() != conts.len() {
        return Err(Error::Unsupported(format!("{} prompts for {} continuations", prompts.len(), conts.len())));
    }
    let mut out = vec![None; prompts.len()];
    let scored: Vec<usize> = (0..prompts.len()).filter(|&i| !conts[i].is_empty() && !prompts[i].is_empty()).collect();
    for chunk in scored.chunks(batch.max(1)) {
        let rows: Vec<Vec<u32>> = chunk.iter().map(|&i| [&prompts[i][..], &conts[i][..]].concat()).collect();
        let tb = TokenBatch::padded(&rows, pad)?;
        // Position p − 1 predicts the first new token, p the prompt's length.
        let from: Vec<usize> = chunk.iter().map(|&i| prompts[i].len() - 1).collect();
        let nll = model.run(&Request::new(&tb, Outputs { nll: true, ..Outputs::NONE }).nll_from(&from))?;
        let nll = nll.nll.ok_or_else(|| Error::Unsupported("the model returned no NLL".into()))?;
        let width = tb.seq_len - 1;
        for (r, &i) in chunk.iter().enumerate() {
            let (p, k) = (prompts[i].len(), conts[i].len());
            let row = &nll.data[r * width..(r + 1) * width];
            let sum: f64 = row[p - 1..p - 1 + k].iter().map(|&x| f64::from(x)).sum();
            out[i] = Some(sum / k as f64);
        }
    }
    Ok(out)
}

/// Judges continuations: their text (`decode`) and language.
pub fn judge(
    id: &LanguageId,
    conts: Vec<(Vec<u32>, bool)>,
    nll: Vec<Option<f64>>,
    mut decode: impl FnMut(&[u32]) -> Result<String>,
) -> Result<Vec<Judged>> {
    conts
        .into_iter()
        .zip(nll)
        .map(|((ids, eos), nll)| {
            let text = decode(&ids)?;
            let detected = id.detect(&text);
            Ok(Judged { ids, text, detected, stopped_at_eos: eos, nll })
        })
        .collect()
}

/// One (steering, target language) cell of the language-forcing table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForcingCell {
    pub target: Lang,
    /// The operation, in words ("add α = 1", "arithmetic α = 1 (en off)").
    pub steer: String,
    /// Share of continuations lingua names the target, in percent, over prompts.
    pub share: Interval,
    /// The same share without any intervention (the prompts' own language pull).
    pub plain_share: Interval,
    /// The random-neuron control's share (same operation, same neurons per layer), when run.
    pub control_share: Option<Interval>,
    /// `share − control_share`, paired over prompts.
    pub vs_control: Option<Delta>,
    /// Mean NLL per continuation token under the unsteered model, over the prompts whose continuation is not empty.
    pub nll: Option<Interval>,
    /// `nll − nll of the unsteered continuation`, paired over prompts with both non-empty.
    pub nll_vs_plain: Option<Delta>,
    /// Prompts whose steered continuation was empty (nothing to judge: counted as not in the target).
    pub empty: usize,
    /// Target-language neurons the operation edits (0 for a steering vector, which edits none).
    #[serde(default)]
    pub neurons: usize,
}

fn in_target(v: &[Judged], target: Lang) -> Vec<f64> {
    v.iter().map(|j| if j.detected == Some(target) { 100.0 } else { 0.0 }).collect()
}

/// The cell of `target` from the plain, steered and control continuations of the same prompts.
pub fn cell(
    target: Lang,
    steer: &str,
    plain: &[Judged],
    steered: &[Judged],
    control: Option<&[Judged]>,
) -> Result<ForcingCell> {
    let n = plain.len();
    if n == 0 || steered.len() != n || control.is_some_and(|c| c.len() != n) {
        return Err(Error::Unsupported(format!(
            "a forcing cell needs the same prompts in every run ({n} plain, {} steered)",
            steered.len()
        )));
    }
    let (r, seed) = (DEFAULT_RESAMPLES, DEFAULT_SEED);
    let share_of = |v: &[Judged]| bootstrap_mean(&in_target(v, target), r, seed).expect("non-empty");
    let nll_pairs: Vec<(f64, f64)> =
        plain.iter().zip(steered).filter_map(|(p, s)| Some((p.nll?, s.nll?))).collect::<Vec<_>>();
    let steered_nll: Vec<f64> = steered.iter().filter_map(|s| s.nll).collect();
    Ok(ForcingCell {
        target,
        steer: steer.to_owned(),
        share: share_of(steered),
        plain_share: share_of(plain),
        control_share: control.map(share_of),
        vs_control: control.and_then(|c| paired_bootstrap(&in_target(c, target), &in_target(steered, target), r, seed)),
        nll: bootstrap_mean(&steered_nll, r, seed),
        nll_vs_plain: paired_bootstrap(
            &nll_pairs.iter().map(|p| p.0).collect::<Vec<_>>(),
            &nll_pairs.iter().map(|p| p.1).collect::<Vec<_>>(),
            r,
            seed,
        ),
        empty: steered.iter().filter(|s| s.ids.is_empty()).count(),
        neurons: 0,
    })
}

/// `b`'s share in `target` minus `a`'s, paired over the same prompts (two steering operations run on them), in
/// points; `None` when they were not run on the same number of prompts.
pub fn versus(target: Lang, a: &[Judged], b: &[Judged]) -> Option<Delta> {
    paired_bootstrap(&in_target(a, target), &in_target(b, target), DEFAULT_RESAMPLES, DEFAULT_SEED)
}

/// The language-forcing table as markdown: per cell the steered share with its interval, the plain and control
/// shares, the difference from the control (a difference only where its interval excludes 0) and the fluency cost.
pub fn markdown(cells: &[ForcingCell]) -> String {
    let iv = |i: &Interval| format!("{:.1} [{:.1}, {:.1}]", i.mean, i.lo, i.hi);
    let dv = |d: &Delta| format!("{:+.1} [{:+.1}, {:+.1}]", d.delta, d.lo, d.hi);
    let dn = |d: &Delta| format!("{:+.3} [{:+.3}, {:+.3}]", d.delta, d.lo, d.hi);
    let mut s = String::from(
        "| steering | target | in target % | no steering % | random control % | steered − control | NLL/token | \
         Δ NLL vs unsteered |\n|---|---|---|---|---|---|---|---|\n",
    );
    for c in cells {
        s.push_str(&format!(
            "| {} | {} | {} | {:.1} | {} | {} | {} | {} |\n",
            c.steer,
            c.target.code(),
            iv(&c.share),
            c.plain_share.mean,
            c.control_share.as_ref().map_or("—".into(), |i| format!("{:.1}", i.mean)),
            c.vs_control.as_ref().map_or("—".into(), dv),
            c.nll.as_ref().map_or("—".into(), |i| format!("{:.3}", i.mean)),
            c.nll_vs_plain.as_ref().map_or("—".into(), dn),
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(lang: Option<&str>, nll: Option<f64>) -> Judged {
        Judged {
            ids: if nll.is_some() { vec![1] } else { Vec::new() },
            text: String::new(),
            detected: lang.map(|l| Lang::parse(l).unwrap()),
            stopped_at_eos: false,
            nll,
        }
    }

    #[test]
    fn a_cell_counts_shares_and_pairs_prompts() {
        let vi = Lang::parse("vi").unwrap();
        let plain = vec![j(Some("en"), Some(1.0)), j(Some("en"), Some(2.0)), j(Some("en"), Some(1.0)), j(None, None)];
        let steered = vec![j(Some("vi"), Some(3.0)), j(Some("vi"), Some(2.5)), j(Some("en"), Some(1.0)), j(None, None)];
        let control = vec![j(Some("en"), Some(1.0)), j(Some("vi"), Some(2.0)), j(Some("en"), Some(1.0)), j(None, None)];
        let c = cell(vi, "add α = 1", &plain, &steered, Some(&control)).unwrap();
        assert_eq!((c.share.mean, c.plain_share.mean), (50.0, 0.0));
        assert_eq!(c.control_share.unwrap().mean, 25.0);
        assert_eq!(c.vs_control.unwrap().delta, 25.0);
        // NLL over the three non-empty continuations; paired where both are non-empty.
        assert!((c.nll.unwrap().mean - 6.5 / 3.0).abs() < 1e-12);
        assert!((c.nll_vs_plain.unwrap().delta - 2.5 / 3.0).abs() < 1e-12);
        assert_eq!(c.empty, 1);
        let md = markdown(&[c]);
        assert!(md.contains("| add α = 1 | vi | 50.0 ["), "{md}");
        assert!(cell(vi, "x", &plain, &steered[..2], None).is_err());
        // Two operations on the same prompts: the second's share minus the first's, prompt by prompt.
        let d = versus(vi, &control, &steered).unwrap();
        assert_eq!((d.delta, d.n), (25.0, 4));
        assert_eq!(versus(vi, &steered, &control).unwrap().delta, -25.0);
        assert!(versus(vi, &steered, &control[..3]).is_none());
    }
}
