//! The report's tables built from the evaluations of a run: the paper's intervention tables, its fine-tuning (FTL)
//! table and the base model's baseline, each difference with its paired bootstrap interval and a verdict.

use std::collections::BTreeMap;

use lsn_eval::{EvalResults, LangResult, compare};
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
    /// Every difference shown: (table, row, column, Δ, lo, hi, excludes 0).
    pub(super) deltas: Vec<Value>,
}

/// A task's headline metric(s): XNLI accuracy; XQuAD the paper's token-id F1 (and EM beside it).
pub(super) fn metric(task: &str) -> &'static str {
    if task == "xnli" { "accuracy" } else { "paper_f1" }
}

impl Study<'_> {
    pub(super) fn role(&self, f: impl Fn(&EvalRole) -> bool) -> Option<&EvalRole> {
        self.plan.evals.iter().find(|e| f(e))
    }

    pub(super) fn lang<'r>(&'r self, role: Option<&EvalRole>, lang: &str) -> Option<(&'r EvalResults, &'r LangResult)> {
        let res = self.results.get(&role?.stage)?;
        Some((res, res.languages.iter().find(|l| l.lang == lang)?))
    }

    /// `score` (or `F1 / EM` for XQuAD) of a language in an evaluation.
    fn score_text(&self, task: &str, l: &LangResult) -> String {
        let m = |k: &str| l.scores.get(k).map(|i| i.mean);
        if task == "xnli" {
            m("accuracy").map_or("–".into(), pct)
        } else {
            match (m("paper_f1"), m("paper_em")) {
                (Some(f), Some(e)) => format!("{} / {}", pct(f), pct(e)),
                _ => "–".into(),
            }
        }
    }

    /// The paired Δ (b − a) of the task's headline metric on `lang`, as a cell, recorded for results.json.
    fn delta_cell(&mut self, table: &str, row: &str, col: &str, a: &EvalResults, b: &EvalResults, lang: &str) -> Cell {
        let metric = metric(&a.task);
        let rows = match compare(a, b, self.resamples, self.seed) {
            Ok(r) => r,
            Err(e) => return Cell::plain(format!("not comparable: {e}")),
        };
        let Some(c) = rows.iter().find(|c| c.lang == lang && c.metric == metric) else { return Cell::plain("–") };
        let d = &c.delta;
        self.deltas.push(json!({"table": table, "row": row, "column": col, "lang": lang, "metric": metric,
            "a": c.a, "b": c.b, "delta": d.delta, "lo": d.lo, "hi": d.hi, "excludes_zero": d.excludes_zero,
            "n": d.n}));
        Cell { text: format!("{} [{}, {}]", signed(d.delta), signed(d.lo), signed(d.hi)), marked: d.excludes_zero }
    }

    /// Improvements and losses among the recorded deltas of `table`.
    fn tally(&self, table: &str) -> (Vec<String>, usize, usize) {
        let mine: Vec<&Value> = self.deltas.iter().filter(|d| d["table"] == table).collect();
        let up: Vec<String> = mine
            .iter()
            .filter(|d| d["excludes_zero"] == true && d["delta"].as_f64().unwrap_or(0.0) > 0.0)
            .map(|d| {
                format!(
                    "{} {} {} [{}, {}]",
                    d["lang"].as_str().unwrap_or(""),
                    d["column"].as_str().unwrap_or(""),
                    signed(d["delta"].as_f64().unwrap_or(0.0)),
                    signed(d["lo"].as_f64().unwrap_or(0.0)),
                    signed(d["hi"].as_f64().unwrap_or(0.0))
                )
            })
            .collect();
        let down =
            mine.iter().filter(|d| d["excludes_zero"] == true && d["delta"].as_f64().unwrap_or(0.0) < 0.0).count();
        (up, down, mine.len())
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
            let base_role =
                self.role(|e| e.task == task && e.kind == "ftl" && e.ftl.as_deref() == Some("null")).cloned();
            let base = self.lang(base_role.as_ref(), lang).map(|(r, l)| (r.clone(), l.clone()));
            let mut ours = vec![Cell::plain(format!("{lang}, {model} (ours)"))];
            ours.push(Cell::plain(base.as_ref().map_or("–".into(), |(_, l)| self.score_text(task, l))));
            let mut delta = vec![
                Cell::plain(format!("Δ vs No Int [95% paired CI]{}", if task == "xquad" { ", F1" } else { "" })),
                Cell::plain("–"),
            ];
            for fill in &fills {
                let role = self
                    .role(|e| {
                        e.task == task
                            && e.kind == "intervention"
                            && e.method.as_deref() == Some(method)
                            && e.fill.as_deref() == Some(fill.as_str())
                            && e.langs.iter().any(|l| l == lang)
                    })
                    .cloned();
                match (self.lang(role.as_ref(), lang).map(|(r, l)| (r.clone(), l.clone())), &base) {
                    (Some((res, l)), Some((base_res, _))) => {
                        ours.push(Cell::plain(self.score_text(task, &l)));
                        let cell = self.delta_cell(&id, lang, &column_name(fill), base_res, &res, lang);
                        delta.push(cell);
                    }
                    (Some((_, l)), None) => {
                        ours.push(Cell::plain(self.score_text(task, &l)));
                        delta.push(Cell::plain("–"));
                    }
                    _ => {
                        ours.push(Cell::plain("–"));
                        delta.push(Cell::plain("–"));
                    }
                }
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
        let (up, down, n) = self.tally(&id);
        let what = if task == "xnli" { "accuracy" } else { "F1 (the paper's token-id metric)" };
        let verdict = if n == 0 {
            "not yet: no intervention has been evaluated".to_string()
        } else if up.is_empty() {
            format!(
                "the paper's negative result holds here: no fill raises any language's {what} (no interval above 0); \
                 {down} of {n} cells lower it with an interval below 0."
            )
        } else {
            format!(
                "the paper's negative result does not hold for {} of {n} cells, where a fill raises {what} with an \
                 interval above 0: {}; {down} cells lower it.",
                up.len(),
                up.join("; ")
            )
        };
        let title = format!(
            "{} {}, {} neurons, FTL null (fine-tuned on English), interventions on each language's own set",
            task_name(task),
            if task == "xnli" { "accuracy (%)" } else { "F1 / EM (%, paper metric)" },
            method
        );
        let note = format!(
            "Each fill overwrites the evaluated language's own {method} neurons (vi{} from set 1, {} from set 6) at every \
             position with that language's per-neuron statistic from its capture. Δ: paired over the same examples, \
             2000-fold bootstrap; bold and * where the interval excludes 0. Grey rows: the paper's numbers for its \
             models (DESIGN §11), not ours.",
            if task == "xquad" { ", zh" } else { "" },
            if task == "xquad" { "hi" } else { "hi, ur" }
        );
        Some(Table { id, title, header, rows, reference_rows, note, verdict: Some(verdict) })
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
            let found: Vec<Option<(EvalResults, LangResult)>> = ftls
                .iter()
                .map(|f| {
                    let role = self
                        .role(|e| {
                            e.task == task
                                && e.kind == "ftl"
                                && e.ftl.as_deref() == Some(f.as_str())
                                && e.langs.iter().any(|l| l == lang)
                        })
                        .cloned();
                    self.lang(role.as_ref(), lang).map(|(r, l)| (r.clone(), l.clone()))
                })
                .collect();
            let mut ours = vec![Cell::plain(format!("{lang} (ours)"))];
            let mut delta =
                vec![Cell::plain(format!("Δ vs null [95% paired CI]{}", if task == "xquad" { ", F1" } else { "" }))];
            for (k, f) in found.iter().enumerate() {
                let mut text = f.as_ref().map_or("–".into(), |(_, l)| self.score_text(task, l));
                if k > 0 && self.gate_neurons(task, &ftls[k], lang) == Some(0) {
                    text += " (empty set: trained as null)";
                }
                ours.push(Cell::plain(text));
                if k == 0 {
                    delta.push(Cell::plain("–"));
                    continue;
                }
                delta.push(match (&found[0], f) {
                    (Some((a, _)), Some((b, _))) => self.delta_cell(&id, lang, &header[k + 1], a, b, lang),
                    _ => Cell::plain("–"),
                });
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
        let (up, down, n) = self.tally(&id);
        let verdict = if n == 0 {
            "not yet: no fine-tune has been evaluated".to_string()
        } else if up.is_empty() {
            format!(
                "the paper's negative result holds here: no FTL scores above null with an interval above 0 ({down} of \
                 {n} below)."
            )
        } else {
            format!(
                "{} of {n} FTL cells score above null with an interval above 0: {}. One training seed per FTL: the \
                 paired interval covers the evaluation examples, not training noise, so read these as differences \
                 between two trained models, not yet as effects of the neurons (compare over seeds: `lsn compare`).",
                up.len(),
                up.join("; ")
            )
        };
        Table {
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
                 not run). Every fine-tune starts from the same seed. Grey: the paper's Llama-3.1-8B numbers.",
                if task == "xquad" { ", zh" } else { "" },
                if task == "xquad" { "hi" } else { "hi, ur" }
            ),
            verdict: Some(verdict),
        }
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
        }
    }
}
