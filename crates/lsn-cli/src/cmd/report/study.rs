//! The report's tables built from the evaluations of a run: the paper's intervention tables, its fine-tuning (FTL)
//! table and the base model's baseline, each difference with its paired bootstrap interval and a verdict.

use std::collections::BTreeMap;

use lsn_eval::verdict::{self, Class, Judged, TableVerdict, Untestable};
use lsn_eval::{Compared, Delta, EvalResults, LangResult, compare_metric};
use serde_json::{Value, json};

use super::paper;
use super::table::{Cell, Table};
use super::{column_name, pct, signed, task_name};
use crate::cmd::reproduce::plan::{EvalRole, FTL_METHOD, INTERVENTION_METHOD, Plan, XNLI_LANGS, XQUAD_LANGS, set_of};

/// Everything the tables are built from.
pub(super) struct Study<'a> {
    pub(super) plan: &'a Plan,
    /// Each fine-tune's train.json by its stage key (those that have run).
    pub(super) trains: BTreeMap<String, Value>,
    pub(super) results: BTreeMap<String, EvalResults>,
    pub(super) resamples: usize,
    pub(super) seed: u64,
    /// Every difference shown: table, row, column, both sides' scores, Δ with its 95% and 90% intervals, the raw and
    /// Holm-adjusted p-values and its class.
    pub(super) deltas: Vec<Value>,
    /// Every judged table's verdict, with its margin, correction, seeds, examples and counts of classes.
    pub(super) verdicts: Vec<Value>,
    /// The differences of the table being built, classified when it is finished, and how many of its cells have
    /// no difference yet (a side not evaluated, or not comparable).
    pending: Vec<Pending>,
    absent: usize,
}

/// A difference waiting for its table's correction, and where its cell is.
struct Pending {
    row: usize,
    col: usize,
    lang: String,
    column: String,
    c: Compared,
}

/// A task's headline metric(s): XNLI accuracy; XQuAD the paper's token-id F1 (and EM beside it).
pub(super) fn metric(task: &str) -> &'static str {
    if task == "xnli" { "accuracy" } else { "paper_f1" }
}

/// `+1.50 [−1.00, +4.00]`.
fn delta_text(d: &Delta) -> String {
    format!("{} [{}, {}]", signed(d.delta), signed(d.lo), signed(d.hi))
}

/// The sizes of a set of cells: `200` or `20–23`.
fn span(mut v: Vec<usize>) -> String {
    v.sort_unstable();
    match (v.first(), v.last()) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}–{b}"),
        _ => "0".into(),
    }
}

impl<'a> Study<'a> {
    pub(super) fn new(
        plan: &'a Plan,
        trains: BTreeMap<String, Value>,
        results: BTreeMap<String, EvalResults>,
        resamples: usize,
        seed: u64,
    ) -> Study<'a> {
        Study {
            plan,
            trains,
            results,
            resamples,
            seed,
            deltas: Vec::new(),
            verdicts: Vec::new(),
            pending: Vec::new(),
            absent: 0,
        }
    }

    pub(super) fn role(&self, f: impl Fn(&EvalRole) -> bool) -> Option<&EvalRole> {
        self.plan.evals.iter().find(|e| f(e))
    }

    pub(super) fn lang<'r>(&'r self, role: Option<&EvalRole>, lang: &str) -> Option<(&'r EvalResults, &'r LangResult)> {
        let res = self.results.get(&role?.stage)?;
        Some((res, res.languages.iter().find(|l| l.lang == lang)?))
    }

    /// The evaluations that hold `lang` among the roles `f` picks, one per training seed in seed order (those that
    /// have run).
    fn runs(&self, lang: &str, f: impl Fn(&EvalRole) -> bool) -> Vec<(usize, EvalResults)> {
        let mut v: Vec<(usize, EvalResults)> = self
            .plan
            .evals
            .iter()
            .filter(|e| f(e) && e.langs.iter().any(|l| l == lang))
            .filter_map(|e| {
                let r = self.results.get(&e.stage)?;
                r.languages.iter().any(|l| l.lang == lang).then(|| (e.seed_index, r.clone()))
            })
            .collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// The FTL-null fine-tunes of `task` evaluated on `lang`, by seed.
    fn null_runs(&self, task: &str, lang: &str) -> Vec<(usize, EvalResults)> {
        self.runs(lang, |e| e.task == task && e.kind == "ftl" && e.ftl.as_deref() == Some("null"))
    }

    /// The score of `lang` over runs (one per seed): the mean, and each seed's when there are several.
    fn score_text(&self, task: &str, runs: &[(usize, EvalResults)], lang: &str) -> String {
        let per_run: Vec<(Option<f64>, Option<f64>)> = runs
            .iter()
            .filter_map(|(_, r)| r.languages.iter().find(|l| l.lang == lang))
            .map(|l| {
                let m = |k: &str| l.scores.get(k).map(|i| i.mean);
                if task == "xnli" { (m("accuracy"), None) } else { (m("paper_f1"), m("paper_em")) }
            })
            .collect();
        let mean = |v: Vec<Option<f64>>| -> Option<f64> {
            let v: Option<Vec<f64>> = v.into_iter().collect();
            v.filter(|v| !v.is_empty()).map(|v| v.iter().sum::<f64>() / v.len() as f64)
        };
        let main = mean(per_run.iter().map(|p| p.0).collect());
        let second = mean(per_run.iter().map(|p| p.1).collect());
        let mut text = match (task, main, second) {
            ("xnli", Some(a), _) => pct(a),
            (_, Some(f), Some(e)) => format!("{} / {}", pct(f), pct(e)),
            _ => return "–".into(),
        };
        if per_run.len() > 1 {
            let each: Vec<String> = per_run.iter().filter_map(|p| p.0.map(pct)).collect();
            text += &format!(" (seeds: {})", each.join(" · "));
        }
        text
    }

    /// The Δ (b − a) of the task's headline metric on `lang` over the runs of both sides, as the cell at (row, col)
    /// of the table being built: paired per seed (an intervention against its own fine-tune) or independent runs
    /// (two fine-tunes). The cell's class is set when the table is finished.
    fn delta_cell(
        &mut self,
        at: (usize, usize),
        column: &str,
        a: &[(usize, EvalResults)],
        b: &[(usize, EvalResults)],
        lang: &str,
        paired: bool,
    ) -> Cell {
        let (a, b): (Vec<EvalResults>, Vec<EvalResults>) = if paired {
            // Only the seeds both sides have, in the same order.
            a.iter()
                .filter_map(|(k, ra)| b.iter().find(|(kb, _)| kb == k).map(|(_, rb)| (ra.clone(), rb.clone())))
                .unzip()
        } else {
            (a.iter().map(|r| r.1.clone()).collect(), b.iter().map(|r| r.1.clone()).collect())
        };
        if a.is_empty() || b.is_empty() {
            self.absent += 1;
            return Cell::plain("–");
        }
        let c = match compare_metric(&a, &b, lang, metric(&a[0].task), paired, (self.resamples, self.seed)) {
            Ok(c) => c,
            Err(e) => {
                self.absent += 1;
                return Cell::plain(format!("not comparable: {e}"));
            }
        };
        let text = delta_text(&c.delta);
        self.pending.push(Pending { row: at.0, col: at.1, lang: lang.into(), column: column.into(), c });
        Cell::plain(text)
    }

    /// Why `lang` cannot test the claim on `task`: its FTL-null fine-tune did not learn the task.
    fn untestable(&self, task: &str, lang: &str) -> Option<Untestable> {
        let runs: Vec<EvalResults> = self.null_runs(task, lang).into_iter().map(|r| r.1).collect();
        if runs.is_empty() {
            return None;
        }
        lsn_eval::untestable(&runs, lang, self.resamples, self.seed)
    }

    /// Classifies the differences of the finished `table`, marks and labels its cells, records them for
    /// results.json, and writes its verdict. Two families, each corrected on its own (Holm): the cells of the
    /// paper's claim, and the random-neuron controls, which do not enter the verdict. A cell cannot test when its
    /// language's FTL-null fine-tune did not learn the task, or — `trainings`: the table compares two trainings —
    /// when a side has one training seed. `what` names the intervention or fine-tune.
    fn finish(&mut self, table: &mut Table, task: &str, what: &str, trainings: bool) {
        let margin = self.plan.request.margin;
        let pending = std::mem::take(&mut self.pending);
        let absent = std::mem::take(&mut self.absent);
        let not_run = trainings && pending.is_empty() && !self.plan.request.sizes.all_ftls;
        let mut by_lang: BTreeMap<String, Option<Untestable>> = BTreeMap::new();
        for p in &pending {
            if !by_lang.contains_key(&p.lang) {
                let u = self.untestable(task, &p.lang);
                by_lang.insert(p.lang.clone(), u);
            }
        }
        let why: Vec<Option<Untestable>> = pending
            .iter()
            .map(|p| {
                by_lang[&p.lang]
                    .clone()
                    .or_else(|| (trainings && p.c.delta.runs < 2).then_some(Untestable::OneTrainingSeed))
            })
            .collect();
        let control = |p: &Pending| p.column.starts_with("random");
        let mut judged: Vec<Option<Judged>> = vec![None; pending.len()];
        for family in [false, true] {
            let idx: Vec<usize> =
                (0..pending.len()).filter(|&i| why[i].is_none() && control(&pending[i]) == family).collect();
            let j = verdict::classify(&idx.iter().map(|&i| pending[i].c.delta).collect::<Vec<_>>(), margin);
            for (&i, j) in idx.iter().zip(j) {
                judged[i] = Some(j);
            }
        }
        let mut classes = Vec::new();
        let mut controls = Vec::new();
        let mut higher = Vec::new();
        let mut identical = 0;
        for (k, p) in pending.iter().enumerate() {
            let d = &p.c.delta;
            let j = judged[k];
            let cell = &mut table.rows[p.row][p.col];
            match j {
                Some(j) => {
                    cell.text = format!("{} {}", delta_text(d), j.class.label(margin));
                    cell.marked = matches!(j.class, Class::Higher | Class::Lower);
                    if control(p) {
                        controls.push(j.class);
                    } else {
                        classes.push(j.class);
                        if j.class == Class::Higher {
                            higher.push(format!("{} {} {} (p_Holm {:.3})", p.lang, p.column, delta_text(d), j.p_holm));
                        }
                    }
                }
                None => cell.text = format!("{} cannot test", delta_text(d)),
            }
            if d.delta == 0.0 && d.lo == 0.0 && d.hi == 0.0 {
                identical += 1;
            }
            self.deltas.push(json!({"table": table.id, "row": p.lang, "column": p.column, "lang": p.lang,
                "metric": p.c.metric, "a": p.c.a, "b": p.c.b, "delta": d.delta, "lo": d.lo, "hi": d.hi,
                "lo90": d.lo90, "hi90": d.hi90, "p": d.p, "p_holm": j.map(|j| j.p_holm), "class": j.map_or(json!("cannot_test"), |j| json!(j.class)),
                "control": control(p), "cannot_test": why[k].as_ref().map(ToString::to_string),
                "excludes_zero": d.excludes_zero, "n": d.n, "runs": d.runs}));
        }
        let count = |c: Class| classes.iter().filter(|x| **x == c).count();
        let (h, l, e, i) =
            (count(Class::Higher), count(Class::Lower), count(Class::Equivalent), count(Class::Inconclusive));
        let k = classes.len();
        let tested: Vec<Delta> = (0..pending.len())
            .filter(|&i| judged[i].is_some() && !control(&pending[i]))
            .map(|i| pending[i].c.delta)
            .collect();
        let half = verdict::typical_half_width(&tested);
        let detectable = verdict::detectable_effect(&tested);
        let seeds = tested
            .iter()
            .map(|d| d.runs)
            .min()
            .unwrap_or_else(|| pending.iter().map(|p| p.c.delta.runs).max().unwrap_or(0));
        let tested_langs: Vec<&str> = by_lang.iter().filter(|(_, u)| u.is_none()).map(|(l, _)| l.as_str()).collect();
        let mut reasons: Vec<String> =
            by_lang.iter().filter_map(|(lang, u)| u.as_ref().map(|u| format!("{lang}: FTL null's {u}"))).collect();
        if why.contains(&Some(Untestable::OneTrainingSeed)) {
            reasons.push(Untestable::OneTrainingSeed.to_string());
        }
        let mut v = if k == 0 { TableVerdict::CannotTest } else { verdict::table_verdict(&classes) };
        // Cells not evaluated yet: the table cannot agree with the paper until they are (a higher cell stands).
        if absent > 0 && k > 0 && v != TableVerdict::Contradicts {
            v = TableVerdict::Inconclusive;
        }
        let scope = if k > 0 && tested_langs.len() < by_lang.len() {
            format!(" (on {}; the other languages cannot test)", tested_langs.join(", "))
        } else {
            String::new()
        };
        let headline = match v {
            _ if not_run => "not run at this scale: of the fine-tunes, only FTL null (the model the intervention tables \
                 test) is trained, since an FTL comparison needs several training seeds per FTL and this scale's budget \
                 holds none (run --scale full --seeds 3)"
                .to_string(),
            _ if pending.is_empty() => "not yet: nothing has been evaluated".to_string(),
            TableVerdict::Consistent => format!(
                "no {what} raises the score{scope}: each of the {k} tested cells is equivalent within ±{margin} or lower"
            ),
            TableVerdict::Contradicts => {
                format!("{what} raises the score after correction in {h} of {k} cells{scope}: {}", higher.join("; "))
            }
            TableVerdict::Inconclusive if absent > 0 && i == 0 => {
                format!("incomplete: {absent} cells have not been evaluated yet, and no tested cell is higher{scope}")
            }
            TableVerdict::Inconclusive => format!(
                "no cell is higher after correction{scope}, but {i} of {k} are neither equivalent within ±{margin} nor \
                 lower: the data cannot tell"
            ),
            TableVerdict::CannotTest => format!("no cell can test the claim — {}", reasons.join("; ")),
        };
        let examples = span(pending.iter().map(|p| p.c.delta.n).collect());
        let mut text = format!("**{}** — {headline}.", v.label());
        if k > 0 {
            text += &format!(
                " Cells: {h} higher, {l} lower, {e} equivalent within ±{margin}, {i} inconclusive ({} of {k} \
                 conclusive).",
                h + l + e
            );
            if !reasons.is_empty() {
                text += &format!(" Cannot test — {}.", reasons.join("; "));
            }
        }
        if absent > 0 && !not_run {
            text += &format!(" {absent} cells have not been evaluated (–).");
        }
        if !controls.is_empty() {
            let c = |x: Class| controls.iter().filter(|y| **y == x).count();
            text += &format!(
                " Control (random neurons; its own Holm family, not part of the verdict): {} higher, {} lower, {} \
                 equivalent, {} inconclusive.",
                c(Class::Higher),
                c(Class::Lower),
                c(Class::Equivalent),
                c(Class::Inconclusive)
            );
        }
        if !not_run && !pending.is_empty() {
            text += &format!(
                " Rules: δ = ±{margin} points, fixed before the run; a difference when its two-sided bootstrap p-value, \
                 Holm–Bonferroni-adjusted over the {k} tested cells of the claim, is ≤ 0.05; equivalent when the 90% \
                 interval lies inside [−δ, +δ] (TOST at 5%), taken no narrower than Δ ± {:.2}, what {examples} examples \
                 resolve (rule of three); {seeds} training seed{}{}; {examples} examples per language{}{}.",
                verdict::resolution(pending.iter().map(|p| p.c.delta.n).min().unwrap_or(0)),
                if seeds == 1 { "" } else { "s" },
                if seeds == 2 { " (two seeds: the interval sees about half the training variance)" } else { "" },
                half.map_or(String::new(), |m| format!("; a typical cell's 95% half-width ±{m:.2} points")),
                detectable.map_or(String::new(), |m| format!(
                    ", so an effect of about ±{m:.2} points is found with 80% power after the correction (minimum \
                     detectable effect)"
                )),
            );
        }
        // The bootstrap's smallest p-value is 2 / (resamples + 1): below Holm's smallest threshold α / m, or no cell
        // could be called a difference whatever the data.
        if k > 0 && 2.0 / (self.resamples + 1) as f64 > verdict::ALPHA / k as f64 {
            text += &format!(
                " With {} bootstrap resamples the smallest p-value is {:.4}, above Holm's first threshold {:.4}: no \
                 cell can be called a difference — rerun `lsn report --resamples {}` or more.",
                self.resamples,
                2.0 / (self.resamples + 1) as f64,
                verdict::ALPHA / k as f64,
                (2.0 * k as f64 / verdict::ALPHA).ceil() as usize * 2
            );
        }
        if identical > 0 {
            text += &format!(
                " {identical} of {} cells are exactly 0 on every example: the two models made the same predictions.",
                pending.len()
            );
        }
        self.verdicts.push(json!({"table": table.id, "verdict": v, "margin": margin, "alpha": verdict::ALPHA,
            "correction": "holm-bonferroni", "equivalence": "tost-90", "seeds": seeds, "examples": examples,
            "cells": pending.len() + absent, "evaluated": pending.len(), "tested": k, "higher": h, "lower": l,
            "equivalent": e, "inconclusive": i, "conclusive": h + l + e, "tested_languages": tested_langs,
            "half_width_95": half, "minimum_detectable_effect": detectable, "cannot_test": reasons,
            "identical_cells": identical, "not_run": not_run, "task": task}));
        table.verdict = Some(text);
        table.verdict_class = Some(v);
    }

    /// How many gate_proj rows the fine-tune of `ftl` evaluated on `lang` trained (from its train.json).
    fn gate_neurons(&self, task: &str, ftl: &str, lang: &str) -> Option<u64> {
        let t = self
            .plan
            .trains
            .iter()
            .find(|t| t.task == task && t.ftl == ftl && (ftl != "en" || t.set.as_deref() == Some(set_of(lang))))?;
        self.trains.get(&t.stage)?["gate_neurons"].as_u64()
    }

    /// The intervention table of `task` for `method`'s neurons (FTL null fine-tune).
    pub(super) fn intervention_table(&mut self, task: &str, method: &str) -> Option<Table> {
        let fills: Vec<String> = self
            .plan
            .evals
            .iter()
            .filter(|e| e.task == task && e.kind == "intervention" && e.method.as_deref() == Some(method))
            .filter_map(|e| e.fill.clone())
            .fold(Vec::new(), |mut v, f| {
                if !v.contains(&f) {
                    v.push(f);
                }
                v
            });
        if fills.is_empty() {
            return None;
        }
        let id = format!("{task}-intervention-{method}");
        let langs: &[&str] = if task == "xnli" { &XNLI_LANGS } else { &XQUAD_LANGS };
        let mut header = vec!["model, language".to_string(), "No Int".to_string()];
        header.extend(fills.iter().map(|f| column_name(f)));
        let model = self.plan.request.model.clone();
        let mut rows = Vec::new();
        let mut reference_rows = Vec::new();
        for &lang in langs {
            let base = self.null_runs(task, lang);
            let mut ours = vec![Cell::plain(format!("{lang}, {model} (ours)"))];
            ours.push(Cell::plain(self.score_text(task, &base, lang)));
            let mut delta = vec![
                Cell::plain(format!("Δ vs No Int [95% CI]{}", if task == "xquad" { ", F1" } else { "" })),
                Cell::plain("–"),
            ];
            for fill in &fills {
                let runs = self.runs(lang, |e| {
                    e.task == task
                        && e.kind == "intervention"
                        && e.method.as_deref() == Some(method)
                        && e.fill.as_deref() == Some(fill.as_str())
                });
                ours.push(Cell::plain(if runs.is_empty() { "–".into() } else { self.score_text(task, &runs, lang) }));
                let at = (rows.len() + 1, delta.len());
                let cell = self.delta_cell(at, &column_name(fill), &base, &runs, lang, true);
                delta.push(cell);
            }
            rows.push(ours);
            rows.push(delta);
            // The paper's rows (its intervention tables are of ActProb-90p neurons; of LAPE it gives μ for XNLI).
            let paper_cols = |vals: &dyn Fn(usize) -> String| -> Vec<Cell> {
                std::iter::once(vals(0))
                    .chain(fills.iter().map(|f| paper::column(f).map_or("".into(), vals)))
                    .map(Cell::plain)
                    .collect()
            };
            if method == INTERVENTION_METHOD {
                if task == "xnli" {
                    for (m, l, v) in paper::XNLI_INTERVENTION.iter().filter(|r| r.1 == lang) {
                        let mut row = vec![Cell::plain(format!("{l}, {m} (paper)"))];
                        row.extend(paper_cols(&|c| pct(v[c])));
                        reference_rows.push(rows.len());
                        rows.push(row);
                    }
                } else {
                    for (m, l, v) in paper::XQUAD_INTERVENTION.iter().filter(|r| r.1 == lang) {
                        let mut row = vec![Cell::plain(format!("{l}, {m} (paper)"))];
                        row.extend(paper_cols(&|c| {
                            v[c].map_or("–".into(), |(f, e)| format!("{} / {}", pct(f), pct(e)))
                        }));
                        reference_rows.push(rows.len());
                        rows.push(row);
                    }
                }
            } else if task == "xnli"
                && let Some((_, mu)) = paper::XNLI_LAPE_MEAN.iter().find(|r| r.0 == lang)
            {
                let base = paper::XNLI_FTL.iter().find(|r| r.0 == lang).map(|r| r.1[0]);
                let mut row = vec![
                    Cell::plain(format!("{lang}, Llama-3.1-8B (paper)")),
                    Cell::plain(base.map_or("".into(), pct)),
                ];
                row.extend(fills.iter().map(|f| Cell::plain(if f == "mean" { pct(*mu) } else { String::new() })));
                reference_rows.push(rows.len());
                rows.push(row);
            }
        }
        let title = format!(
            "{} {}, {} neurons, FTL null (fine-tuned on English), interventions on each language's own set",
            task_name(task),
            if task == "xnli" { "accuracy (%)" } else { "F1 / EM (%, paper metric)" },
            method
        );
        let note = format!(
            "Each fill overwrites the evaluated language's own {method} neurons (vi{} from set 1, {} from set 6) at every \
             position with that language's per-neuron statistic from its capture. Δ: the intervention against the same \
             fine-tune without it, paired over the same examples (with several training seeds: each seed's paired Δ, \
             averaged, the interval resampling seeds and examples), {}-fold bootstrap; each cell's class after the \
             table's correction (see the verdict), bold and * for higher or lower. Grey rows: the paper's numbers for \
             its models (DESIGN §11), not ours.",
            if task == "xquad" { ", zh" } else { "" },
            if task == "xquad" { "hi" } else { "hi, ur" },
            self.resamples
        );
        let mut table = Table { id, title, header, rows, reference_rows, note, verdict: None, verdict_class: None };
        self.finish(&mut table, task, &format!("{method} intervention"), false);
        Some(table)
    }

    /// The fine-tuning table of `task`: FTL null, en, target, en+target, random, no intervention.
    pub(super) fn ftl_table(&mut self, task: &str) -> Table {
        let id = format!("{task}-ftl");
        let langs: &[&str] = if task == "xnli" { &XNLI_LANGS } else { &XQUAD_LANGS };
        let header: Vec<String> =
            ["language", "null", "en", "target", "en+target", "random:target"].iter().map(|s| s.to_string()).collect();
        let mut rows = Vec::new();
        let mut reference_rows = Vec::new();
        for &lang in langs {
            let ftls =
                ["null".to_string(), "en".into(), lang.to_string(), format!("en+{lang}"), format!("random:{lang}")];
            let found: Vec<Vec<(usize, EvalResults)>> = ftls
                .iter()
                .map(|f| self.runs(lang, |e| e.task == task && e.kind == "ftl" && e.ftl.as_deref() == Some(f.as_str())))
                .collect();
            let mut ours = vec![Cell::plain(format!("{lang} (ours)"))];
            let mut delta = vec![Cell::plain(format!(
                "Δ vs null [95% CI over seeds and examples]{}",
                if task == "xquad" { ", F1" } else { "" }
            ))];
            for (k, runs) in found.iter().enumerate() {
                let mut text = if runs.is_empty() { "–".into() } else { self.score_text(task, runs, lang) };
                if k > 0 && self.gate_neurons(task, &ftls[k], lang) == Some(0) {
                    text += " (empty set: trained as null)";
                }
                ours.push(Cell::plain(text));
                if k == 0 {
                    delta.push(Cell::plain("–"));
                    continue;
                }
                let at = (rows.len() + 1, delta.len());
                let cell = self.delta_cell(at, &header[k + 1], &found[0], runs, lang, false);
                delta.push(cell);
            }
            rows.push(ours);
            rows.push(delta);
            if task == "xnli"
                && let Some((_, v)) = paper::XNLI_FTL.iter().find(|r| r.0 == lang)
            {
                let mut row = vec![Cell::plain(format!("{lang}, Llama-3.1-8B (paper)"))];
                row.extend(v.iter().map(|x| Cell::plain(pct(*x))));
                row.push(Cell::plain(""));
                reference_rows.push(rows.len());
                rows.push(row);
            }
        }
        let mut table = Table {
            id,
            title: format!(
                "{} {} of English fine-tunes by FTL (LAPE neurons, masked LoRA on gate_proj), no intervention",
                task_name(task),
                if task == "xnli" { "accuracy (%)" } else { "F1 / EM (%, paper metric)" }
            ),
            header,
            rows,
            reference_rows,
            note: format!(
                "FTL null: attention LoRA only; en / target / en+target: the masked LoRA also trains those languages' \
                 {FTL_METHOD} neurons' rows of gate_proj (the set of the evaluated language: vi{} from set 1, {} from \
                 set 6); random:target: as many random neurons per layer as the target's set (a control the paper did \
                 not run; its cells are classified but do not enter the verdict). Every FTL is trained with the same \
                 training seeds as null; Δ compares the FTL's runs with null's, resampling the runs of each side and the \
                 examples. Grey: the paper's Llama-3.1-8B numbers.",
                if task == "xquad" { ", zh" } else { "" },
                if task == "xquad" { "hi" } else { "hi, ur" }
            ),
            verdict: None,
            verdict_class: None,
        };
        self.finish(&mut table, task, "FTL", true);
        table
    }

    /// The base model run zero-shot: the sanity baseline.
    pub(super) fn baseline_table(&self) -> Table {
        let mut rows = Vec::new();
        for task in ["xnli", "xquad"] {
            let role = self.role(|e| e.task == task && e.kind == "baseline").cloned();
            let langs: &[&str] = if task == "xnli" { &XNLI_LANGS } else { &XQUAD_LANGS };
            for &lang in langs {
                let Some((_, l)) = self.lang(role.as_ref(), lang) else {
                    rows.push(vec![Cell::plain(task), Cell::plain(lang), Cell::plain("–"), Cell::plain("–")]);
                    continue;
                };
                let iv = |k: &str| {
                    l.scores.get(k).map_or("–".into(), |i| format!("{} [{}, {}]", pct(i.mean), pct(i.lo), pct(i.hi)))
                };
                let (main, second) = if task == "xnli" {
                    (format!("accuracy {}", iv("accuracy")), String::new())
                } else {
                    (format!("F1 {} · EM {}", iv("paper_f1"), iv("paper_em")), format!("MLQA F1 {}", iv("mlqa_f1")))
                };
                let main = format!("{main} (n = {})", l.examples.len());
                rows.push(vec![Cell::plain(task), Cell::plain(lang), Cell::plain(main), Cell::plain(second)]);
            }
        }
        Table {
            id: "baseline".into(),
            title: "The base model, zero-shot (sanity baseline, not a table of the paper)".into(),
            header: vec!["task".into(), "language".into(), "score [95% CI]".into(), "".into()],
            rows,
            reference_rows: vec![],
            note:
                "XNLI: lm-evaluation-harness's zero-shot protocol (chance 33.3%); XQuAD: the paper's prompt, greedy. \
                   The paper evaluates fine-tuned models only; a base model this small runs XQuAD's prompt to the \
                   token limit without stopping, so interventions on it would measure noise."
                    .into(),
            verdict: None,
            verdict_class: None,
        }
    }
}
