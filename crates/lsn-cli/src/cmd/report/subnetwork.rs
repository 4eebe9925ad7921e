//! The subnetwork-training table of `--study subnetwork` (arXiv 2510.13580's claim): per target language and score,
//! the base model and the three arms trained on the target's text — its LAPE neurons, random neurons of the same
//! per-layer count, a q,v LoRA of the same parameter count — with the differences the claim is about, judged as one
//! Holm family, each comparison of two trainings over their seeds.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use lsn_eval::verdict::{self, Class, Untestable};
use lsn_eval::{Compared, Delta, EvalResults, ExampleResult, LangResult, compare_metric, runs_score};
use serde_json::{Value, json};

use super::table::{Cell, Table};
use crate::cmd::reproduce::plan::{LM_KIND, PPL_TASK, Plan};

/// δ of a held-out NLL difference, in nats per token, fixed before any run: 0.02 nats is a 2% change of perplexity.
pub const NLL_MARGIN: f64 = 0.02;

/// `lsn ppl --json`'s document as an evaluation: one example per scored row (`row<index in the packed text>`),
/// metric `nll`, the row's mean NLL per token in nats.
pub fn ppl_results(doc: &Value, resamples: usize, seed: u64) -> Result<EvalResults> {
    let rows = doc["results"].as_array().context("a `lsn ppl --json` document has a results list")?;
    let mut languages = Vec::new();
    for r in rows {
        let lang = r["lang"].as_str().context("a perplexity result without its language")?;
        let nll = r["sequence_mean_nll"]
            .as_array()
            .context("a perplexity result without per-sequence NLL (written by an older lsn: rerun the stage)")?;
        let first = r["first_row"].as_u64().unwrap_or(0);
        let examples = nll
            .iter()
            .enumerate()
            .map(|(i, v)| {
                Ok(ExampleResult {
                    key: format!("row{}", first + i as u64),
                    metrics: [("nll".to_string(), v.as_f64().context("a non-numeric NLL")?)].into(),
                    detail: Value::Null,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut l = LangResult {
            lang: lang.into(),
            data_file: r["text"].as_str().unwrap_or_default().into(),
            data_sha256: String::new(),
            dropped: vec![],
            scores: BTreeMap::new(),
            examples,
        };
        l.summarize(resamples, seed);
        languages.push(l);
    }
    Ok(EvalResults {
        task: PPL_TASK.into(),
        protocol: "heldout".into(),
        split: "heldout".into(),
        config: json!({"model": doc["model"], "backend": doc["backend"], "adapter": doc["adapter"]}),
        resamples,
        seed,
        languages,
    })
}

/// The column titles of the plan's arms ([`crate::cmd::reproduce::plan::arms`]), in its order.
const ARM_TITLES: [&str; 3] = ["LAPE neurons", "random neurons", "q,v LoRA (same parameters)"];

/// The FTLs the plan gives `target`'s arms, in its order.
fn arm_ftls(target: &str) -> [String; 3] {
    crate::cmd::reproduce::plan::arms(target).map(|(_, ftl, _)| ftl)
}

/// A score's headline metric, its name in the table, and whether lower is better.
fn score_of(task: &str) -> (&'static str, &'static str, bool) {
    match task {
        PPL_TASK => ("nll", "held-out NLL/token", true),
        "xnli" => ("accuracy", "XNLI zero-shot acc.", false),
        _ => ("paper_f1", "XQuAD F1", false),
    }
}

/// One difference of the table, before the family's correction.
struct Pending {
    row: usize,
    col: usize,
    target: String,
    score: &'static str,
    versus: &'static str,
    lower_is_better: bool,
    c: Compared,
    /// Why the cell cannot test the claim, if it cannot.
    why: Option<String>,
}

/// The table and its cells for results.json; `None` when the run trains no subnetwork.
pub fn subnetwork_table(
    plan: &Plan,
    results: &BTreeMap<String, EvalResults>,
    trains: &BTreeMap<String, Value>,
    boot: (usize, u64),
) -> Option<(Table, Value)> {
    if !plan.evals.iter().any(|e| e.kind == LM_KIND) {
        return None;
    }
    let margin = plan.request.margin;
    // The runs of the roles `f` picks that hold `lang`, in seed order.
    let runs = |f: &dyn Fn(&crate::cmd::reproduce::plan::EvalRole) -> bool, lang: &str| -> Vec<EvalResults> {
        let mut v: Vec<(usize, &EvalResults)> = plan
            .evals
            .iter()
            .filter(|e| f(e) && e.langs.iter().any(|l| l == lang))
            .filter_map(|e| Some((e.seed_index, results.get(&e.stage)?)))
            .collect();
        v.sort_by_key(|(k, _)| *k);
        v.into_iter().map(|(_, r)| r.clone()).collect()
    };
    let mut rows: Vec<Vec<Cell>> = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut absent = 0;
    let mut params = Vec::new();
    for target in &plan.request.sizes.subnetwork_targets {
        let target = target.as_str();
        // The trained arms' parameters and neurons, from their train.json (first seed).
        let train_of = |ftl: &str| {
            plan.trains
                .iter()
                .find(|t| t.task == "lm" && t.ftl == ftl && t.seed_index == 0)
                .and_then(|t| trains.get(&t.stage))
        };
        let neurons = train_of(target).and_then(|d| d["gate_neurons"].as_u64());
        for ftl in arm_ftls(target) {
            if let Some(d) = train_of(&ftl) {
                params.push(json!({"target": target, "arm": ftl, "trainable_params": d["run"]["trainable_params"],
                    "rank": d["run"]["spec"]["rank"], "gate_neurons": d["gate_neurons"], "steps": d["steps"],
                    "examples": d["run"]["data"]["examples"]}));
            }
        }
        for task in [PPL_TASK, "xnli", "xquad"] {
            // A task that does not evaluate this target has no role at all.
            if !plan.evals.iter().any(|e| e.kind == LM_KIND && e.task == task && e.langs.iter().any(|l| l == target)) {
                continue;
            }
            let arm_runs: Vec<Vec<EvalResults>> = arm_ftls(target)
                .iter()
                .map(|ftl| runs(&|e| e.kind == LM_KIND && e.task == task && e.ftl.as_deref() == Some(ftl), target))
                .collect();
            let base = if task == PPL_TASK {
                runs(&|e| e.kind == LM_KIND && e.task == task && e.ftl.as_deref() == Some("base"), target)
            } else {
                runs(&|e| e.kind == "baseline" && e.task == task, target)
            };
            let (metric, name, lower) = score_of(task);
            let score = |r: &[EvalResults]| -> Cell {
                match runs_score(r, target, metric, boot.0, boot.1) {
                    Ok(d) if task == PPL_TASK => Cell::plain(format!("{:.3} [{:.3}, {:.3}]", d.delta, d.lo, d.hi)),
                    Ok(d) => Cell::plain(format!("{:.1} [{:.1}, {:.1}]", d.delta, d.lo, d.hi)),
                    Err(_) => Cell::plain("–"),
                }
            };
            let row = rows.len();
            let mut cells = vec![Cell::plain(target), Cell::plain(name), score(&base)];
            cells.extend(arm_runs.iter().map(|r| score(r)));
            let subnet = &arm_runs[0];
            for (col, versus, other) in
                [(6, "base", &base), (7, "random neurons", &arm_runs[1]), (8, "q,v LoRA", &arm_runs[2])]
            {
                cells.push(Cell::plain("–"));
                if subnet.is_empty() || other.is_empty() {
                    absent += 1;
                    continue;
                }
                let Ok(c) = compare_metric(other, subnet, target, metric, false, boot) else {
                    absent += 1;
                    continue;
                };
                let reason = if neurons == Some(0) {
                    Some(format!("no LAPE neuron of {target}: the subnetwork arm trained nothing"))
                } else if versus != "base" && c.delta.runs < 2 {
                    Some(Untestable::OneTrainingSeed.to_string())
                } else {
                    let why = |r: &[EvalResults]| lsn_eval::untestable(r, target, boot.0, boot.1);
                    match (why(subnet), why(other)) {
                        (Some(a), Some(_)) => Some(format!("neither side does the task ({a})")),
                        _ => None,
                    }
                };
                pending.push(Pending {
                    row,
                    col,
                    target: target.into(),
                    score: name,
                    versus,
                    lower_is_better: lower,
                    c,
                    why: reason,
                });
            }
            rows.push(cells);
        }
    }
    // One Holm family over every testable difference; equivalence in each score's own unit.
    let tested: Vec<usize> = (0..pending.len()).filter(|&i| pending[i].why.is_none()).collect();
    let deltas: Vec<Delta> = tested.iter().map(|&i| pending[i].c.delta).collect();
    let equivalent = |i: usize, d: &Delta| {
        if pending[i].lower_is_better {
            verdict::within_margin_continuous(d, NLL_MARGIN)
        } else {
            verdict::within_margin(d, margin)
        }
    };
    let judged = verdict::classify_by(&deltas, |k, d| equivalent(tested[k], d));
    let mut out = Vec::new();
    let mut tally: BTreeMap<&str, Vec<Outcome>> = BTreeMap::new();
    for (i, p) in pending.iter().enumerate() {
        let d = &p.c.delta;
        let j = tested.iter().position(|&t| t == i).map(|k| judged[k]);
        let unit_margin = if p.lower_is_better { NLL_MARGIN } else { margin };
        let outcome = match j.map(|j| j.class) {
            None => Outcome::CannotTest,
            Some(Class::Higher | Class::Lower) if equivalent(i, d) => Outcome::Negligible,
            Some(Class::Higher) if p.lower_is_better => Outcome::Worse,
            Some(Class::Lower) if p.lower_is_better => Outcome::Better,
            Some(Class::Higher) => Outcome::Better,
            Some(Class::Lower) => Outcome::Worse,
            Some(Class::Equivalent) => Outcome::Equivalent,
            Some(Class::Inconclusive) => Outcome::Inconclusive,
        };
        tally.entry(p.versus).or_default().push(outcome);
        let better = (d.delta < 0.0) == p.lower_is_better;
        let label = match outcome {
            Outcome::Equivalent => format!("≡ ±{unit_margin}"),
            Outcome::Negligible => format!("{}, within ±{unit_margin}", if better { "better" } else { "worse" }),
            o => o.label().into(),
        };
        let digits = if p.lower_is_better { 3 } else { 1 };
        rows[p.row][p.col] = Cell {
            text: format!("{:+.digits$} [{:+.digits$}, {:+.digits$}] {label}", d.delta, d.lo, d.hi, digits = digits),
            marked: matches!(outcome, Outcome::Better | Outcome::Worse),
        };
        out.push(json!({"target": p.target, "score": p.score, "versus": p.versus, "metric": p.c.metric,
            "subnetwork": p.c.b, "other": p.c.a, "delta": d.delta, "lo": d.lo, "hi": d.hi, "lo90": d.lo90,
            "hi90": d.hi90, "p": d.p, "p_holm": j.map(|j| j.p_holm), "outcome": outcome, "label": label,
            "runs": d.runs, "n": d.n, "cannot_test": p.why, "margin": unit_margin}));
    }
    let verdicts: BTreeMap<&str, &str> = tally.iter().map(|(k, t)| (*k, column_verdict(t))).collect();
    let claim = claim_verdict(&verdicts);
    let mut summary = format!("**{claim}** — ");
    summary += &tally
        .iter()
        .map(|(k, t)| {
            let n = |o: Outcome| t.iter().filter(|x| **x == o).count();
            format!(
                "vs {k}: {} ({} better, {} worse, {} within the margin, {} inconclusive, {} cannot test)",
                verdicts[k],
                n(Outcome::Better),
                n(Outcome::Worse),
                n(Outcome::Equivalent) + n(Outcome::Negligible),
                n(Outcome::Inconclusive),
                n(Outcome::CannotTest)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    if absent > 0 {
        summary += &format!(". {absent} comparisons have not been evaluated yet (–)");
    }
    summary += ".";
    let z = &plan.request.sizes;
    let note = format!(
        "Each arm is `lsn train --task lm` on the target's text (the rows its capture read plus {} more from the end of \
         its text, never the held-out rows), preset `subnetwork` (AdamW lr 1e-4, 1 epoch), {} training seeds: the \
         masked gate_proj LoRA (r 16) of the target's {} neurons (arXiv 2510.13580's claim), the same on random neurons \
         with each layer's count, and a q,v LoRA whose rank gives the same number of trainable parameters. Scores: \
         mean NLL per token over {} held-out rows of the target (lower is better), XNLI zero-shot accuracy and XQuAD \
         F1 on the base model's baseline examples; mean over seeds [95% interval over seeds and examples]. \
         Differences are the subnetwork arm minus the other, classed as one Holm–Bonferroni family over the tested \
         cells: better / worse after correction, ≡ when the 90% interval lies inside ±{margin} points (±{NLL_MARGIN} \
         nats for NLL, fixed before the run), inconclusive otherwise; a comparison of two trainings with one seed per \
         side, or where neither side does the task (XNLI at chance, XQuAD without an exact match), cannot test; a \
         difference whose 90% interval lies inside the margin is real but too small to matter (\"within ±δ\"). The \
         claim is supported when the subnetwork arm is better than both controls beyond the margin in some cell and \
         worse in none.{}",
        z.lm_extra_rows,
        z.subnetwork_seeds,
        crate::cmd::reproduce::plan::FTL_METHOD,
        z.heldout_rows,
        {
            let mut extra = String::new();
            for target in &z.subnetwork_targets {
                let of = |arm: &str| params.iter().find(|p| p["target"] == target.as_str() && p["arm"] == arm);
                let count = |arm: &str| of(arm).and_then(|p| p["trainable_params"].as_u64());
                if let (Some(a), Some(r), Some(q)) =
                    (count(target), count(&format!("random:{target}")), count(&format!("attention:{target}")))
                {
                    extra += &format!(
                        " Trainable parameters, {target}: LAPE {a}, random {r}, q,v LoRA {q} (rank {}).",
                        of(&format!("attention:{target}")).map_or(Value::Null, |p| p["rank"].clone())
                    );
                }
            }
            if z.subnetwork_seeds == 2 {
                extra += " Two seeds per arm: an interval over them sees about half the training variance.";
            }
            extra
        },
    );
    let mut header: Vec<String> = ["target", "score", "base model"].map(String::from).to_vec();
    header.extend(ARM_TITLES.map(String::from));
    header.extend(["LAPE − base", "LAPE − random", "LAPE − q,v LoRA"].map(String::from));
    let table = Table {
        id: "subnetwork".into(),
        title: "Target-language subnetwork training: the target's neurons against random neurons and an equal-budget \
                LoRA"
            .into(),
        header,
        rows,
        reference_rows: vec![],
        note,
        verdict: Some(summary),
        verdict_class: None,
    };
    Some((
        table,
        json!({"claim": claim, "by_comparison": verdicts, "cells": out, "arms": params,
        "nll_margin": NLL_MARGIN, "margin": margin}),
    ))
}

/// What one comparison shows, in the claim's direction (lower NLL, higher accuracy or F1 is better).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    /// A difference after the family's correction, beyond the margin.
    Better,
    Worse,
    /// A difference after the correction whose 90% interval lies inside the margin: real, too small to matter.
    Negligible,
    /// No difference, and the 90% interval inside the margin.
    Equivalent,
    Inconclusive,
    CannotTest,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Better => "better",
            Outcome::Worse => "worse",
            Outcome::Negligible => "within the margin",
            Outcome::Equivalent => "equivalent",
            Outcome::Inconclusive => "inconclusive",
            Outcome::CannotTest => "cannot test",
        }
    }
}

/// A comparison column's verdict from its cells' outcomes.
fn column_verdict(t: &[Outcome]) -> &'static str {
    let n = |o: Outcome| t.iter().filter(|x| **x == o).count();
    let (better, worse, unsure) = (n(Outcome::Better), n(Outcome::Worse), n(Outcome::Inconclusive));
    match () {
        _ if n(Outcome::CannotTest) == t.len() => "cannot test",
        _ if better > 0 && worse == 0 => "better",
        _ if better > 0 => "mixed",
        _ if unsure == 0 && worse > 0 => "worse",
        _ if unsure == 0 => "no difference beyond the margin",
        _ => "inconclusive",
    }
}

/// The claim (the target's neurons beat both controls): supported when both control columns are better; not
/// supported when either is worse or shows no difference beyond the margin.
fn claim_verdict(v: &BTreeMap<&str, &str>) -> &'static str {
    let controls = ["random neurons", "q,v LoRA"].map(|k| v.get(k).copied().unwrap_or("cannot test"));
    if controls.iter().all(|c| *c == "better") {
        "supported"
    } else if controls.iter().any(|c| matches!(*c, "worse" | "no difference beyond the margin")) {
        "not supported"
    } else if controls.iter().all(|c| *c == "cannot test") {
        "cannot test"
    } else {
        "inconclusive"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_and_claim_verdicts_follow_the_outcomes() {
        use Outcome::*;
        assert_eq!(column_verdict(&[Better, Better, Equivalent]), "better");
        assert_eq!(column_verdict(&[Better, Worse]), "mixed");
        assert_eq!(column_verdict(&[Worse, Equivalent, CannotTest]), "worse");
        // Real but negligible differences (inside the margin) are no support.
        assert_eq!(column_verdict(&[Negligible, Negligible, CannotTest]), "no difference beyond the margin");
        assert_eq!(column_verdict(&[Equivalent, Inconclusive]), "inconclusive");
        assert_eq!(column_verdict(&[CannotTest, CannotTest]), "cannot test");
        let v = |a, b| BTreeMap::from([("random neurons", a), ("q,v LoRA", b), ("base", "better")]);
        assert_eq!(claim_verdict(&v("better", "better")), "supported");
        assert_eq!(claim_verdict(&v("better", "worse")), "not supported");
        assert_eq!(claim_verdict(&v("no difference beyond the margin", "inconclusive")), "not supported");
        assert_eq!(claim_verdict(&v("better", "inconclusive")), "inconclusive");
        assert_eq!(claim_verdict(&v("cannot test", "cannot test")), "cannot test");
    }

    #[test]
    fn a_perplexity_document_becomes_one_example_per_row() {
        let doc = json!({"model": "m", "backend": "candle", "adapter": null, "results": [
            {"lang": "vi", "text": "held-out rows 9..12", "first_row": 9, "sequence_mean_nll": [2.0, 3.0, 4.0]}]});
        let r = ppl_results(&doc, 200, 1).unwrap();
        let l = &r.languages[0];
        assert_eq!(l.examples.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), ["row9", "row10", "row11"]);
        assert!((l.scores["nll"].mean - 3.0).abs() < 1e-12);
        let old = json!({"results": [{"lang": "vi", "mean_nll": 2.0}]});
        assert!(ppl_results(&old, 200, 1).unwrap_err().to_string().contains("older lsn"));
    }
}
