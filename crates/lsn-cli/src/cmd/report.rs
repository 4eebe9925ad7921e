//! `lsn report`: the study's report from a `lsn reproduce` run directory — the paper's tables with our numbers, each
//! difference with its paired 95% bootstrap interval, the paper's own numbers beside them, a verdict per table, and
//! the plots; as report.md, a self-contained report.html and results.json.

mod paper;
pub mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lsn_eval::{EvalResults, LangResult, compare};
use serde_json::{Value, json};

use crate::cmd::reproduce::plan::{
    EvalRole, FILLS, FTL_METHOD, INTERVENTION_METHOD, Plan, XNLI_LANGS, XQUAD_LANGS, set_of,
};
use crate::fsutil;
use crate::plot::charts::{self, ScoreSeries};
use table::{Cell, Table};

/// Writes the report of a `lsn reproduce` run directory: report.md, report.html (one page: tables and plots
/// inline), results.json (every table's numbers, each evaluation's scores, the selections, PPXC and training
/// curves; nothing that depends on timing) and plots/. Stages that have not run yet show as "–"; rerun the report
/// after them.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run directory of `lsn reproduce --out`.
    #[arg(long)]
    pub run: PathBuf,
    /// Bootstrap resamples of the paired intervals.
    #[arg(long, default_value_t = lsn_eval::DEFAULT_RESAMPLES, value_parser = crate::cmd::at_least_one)]
    pub resamples: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = lsn_eval::DEFAULT_SEED)]
    pub seed: u64,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not {what}", path.display()))
}

/// The column names of the paper's intervention tables.
fn column_name(fill: &str) -> String {
    match fill {
        "mean" => "μ".into(),
        "zero" => "0".into(),
        f => f.to_uppercase(),
    }
}

/// XNLI or XQuAD.
fn task_name(task: &str) -> &'static str {
    if task == "xnli" { "XNLI" } else { "XQuAD" }
}

fn pct(x: f64) -> String {
    format!("{x:.2}")
}

fn signed(x: f64) -> String {
    format!("{}{:.2}", if x >= 0.0 { "+" } else { "−" }, x.abs())
}

/// Everything the tables are built from.
struct Study<'a> {
    root: &'a Path,
    plan: &'a Plan,
    results: BTreeMap<String, EvalResults>,
    resamples: usize,
    seed: u64,
    /// Every difference shown: (table, row, column, Δ, lo, hi, excludes 0).
    deltas: Vec<Value>,
}

/// A task's headline metric(s): XNLI accuracy; XQuAD the paper's token-id F1 (and EM beside it).
fn metric(task: &str) -> &'static str {
    if task == "xnli" { "accuracy" } else { "paper_f1" }
}

impl Study<'_> {
    fn role(&self, f: impl Fn(&EvalRole) -> bool) -> Option<&EvalRole> {
        self.plan.evals.iter().find(|e| f(e))
    }

    fn lang<'r>(&'r self, role: Option<&EvalRole>, lang: &str) -> Option<(&'r EvalResults, &'r LangResult)> {
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
        let doc: Value = read_json(&self.root.join(&t.dir).join("train.json"), "a train.json").ok()?;
        doc["gate_neurons"].as_u64()
    }

    /// The intervention table of `task` for `method`'s neurons (FTL null fine-tune).
    fn intervention_table(&mut self, task: &str, method: &str) -> Option<Table> {
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
            } else if task == "xnli" {
                if let Some((_, mu)) = paper::XNLI_LAPE_MEAN.iter().find(|r| r.0 == lang) {
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
    fn ftl_table(&mut self, task: &str) -> Table {
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
    fn baseline_table(&self) -> Table {
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

/// `--backend all`: how far the other backends agree with the study's backend on the neuron sets and the base
/// model's predictions.
fn agreement_table(root: &Path, plan: &Plan, results: &BTreeMap<String, EvalResults>) -> Option<(Table, Value)> {
    let others = &plan.request.compare_backends;
    if others.is_empty() {
        return None;
    }
    let main = &plan.request.backend;
    let mut rows = Vec::new();
    let mut doc = Vec::new();
    let mut all_agree = true;
    for b in others {
        for (set, _) in &plan.sets {
            for method in [FTL_METHOD, INTERVENTION_METHOD, "random"] {
                let read = |dir: &str| {
                    read_json::<lsn_select::Selection>(
                        &root.join(format!("{dir}neurons/{set}/{method}.json")),
                        "a neuron file",
                    )
                    .ok()
                };
                let (Some(a), Some(o)) = (read(""), read(&format!("backends/{b}/"))) else { continue };
                let mut cells = Vec::new();
                for lang in &a.languages {
                    let sa: std::collections::BTreeSet<_> = a.neurons.get(lang).into_iter().flatten().collect();
                    let so: std::collections::BTreeSet<_> = o.neurons.get(lang).into_iter().flatten().collect();
                    let differ = sa.symmetric_difference(&so).count();
                    all_agree &= differ == 0;
                    doc.push(json!({"backend": b, "set": set, "method": method, "lang": lang, "neurons": sa.len(),
                        "differ": differ}));
                    cells.push(if differ == 0 {
                        format!("{lang} ={}", sa.len())
                    } else {
                        format!("{lang} {differ} of {} differ", sa.len())
                    });
                }
                rows.push(vec![
                    Cell::plain(format!("{main} vs {b}")),
                    Cell::plain(format!("neurons {set} {method}")),
                    Cell::plain(cells.join(" · ")),
                ]);
            }
        }
        for task in ["xnli", "xquad"] {
            let get = |kind: &str| {
                plan.evals.iter().find(|e| e.task == task && e.kind == kind).and_then(|e| results.get(&e.stage))
            };
            let (Some(a), Some(o)) = (get("baseline"), get(&format!("baseline@{b}"))) else { continue };
            let field = if task == "xnli" { "pred" } else { "generated" };
            let m = metric(task);
            let mut cells = Vec::new();
            for la in &a.languages {
                let Some(lo) = o.languages.iter().find(|l| l.lang == la.lang) else { continue };
                let theirs: BTreeMap<&str, &Value> =
                    lo.examples.iter().map(|e| (e.key.as_str(), &e.detail[field])).collect();
                let same = la.examples.iter().filter(|e| theirs.get(e.key.as_str()) == Some(&&e.detail[field])).count();
                all_agree &= same == la.examples.len();
                let score = |l: &LangResult| l.scores.get(m).map_or(f64::NAN, |i| i.mean);
                doc.push(json!({"backend": b, "task": task, "lang": la.lang, "examples": la.examples.len(),
                    "same_prediction": same, "score": score(la), "score_other": score(lo)}));
                cells.push(format!(
                    "{} {}/{} same ({} {} vs {})",
                    la.lang,
                    same,
                    la.examples.len(),
                    m,
                    pct(score(la)),
                    pct(score(lo))
                ));
            }
            rows.push(vec![
                Cell::plain(format!("{main} vs {b}")),
                Cell::plain(format!("{} baseline predictions", task_name(task))),
                Cell::plain(cells.join(" · ")),
            ]);
        }
    }
    let table = Table {
        id: "backends".into(),
        title: "Agreement between backends (--backend all)".into(),
        header: vec!["backends".into(), "what".into(), "per language".into()],
        rows,
        reference_rows: vec![],
        note: format!(
            "Capture and selection ran again on every other backend into backends/<name>/, and the base model's \
             zero-shot baselines on the same examples; `=n`: the same n neurons. The study's other stages ran on {main}."
        ),
        verdict: Some(if all_agree {
            "every backend selected the same neurons and made the same predictions.".into()
        } else {
            "the backends differ somewhere (see the cells): float rounding can move a neuron across a selection cut \
             or flip a near-tied prediction; `lsn-conformance` measures each backend's deviations."
                .into()
        }),
    };
    Some((table, json!(doc)))
}

/// PPXC of set 1's LAPE neurons (and the random control): relative perplexity change (%).
fn ppxc_table(doc: &Value) -> Option<(Table, Value)> {
    let langs: Vec<String> = doc["languages"].as_array()?.iter().filter_map(|v| v.as_str().map(String::from)).collect();
    let k = langs.len();
    let flat = |v: &Value| -> Vec<f64> {
        v.as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r.as_array().cloned().unwrap_or_default())
            .filter_map(|x| x.as_f64())
            .collect()
    };
    let lape: Vec<f64> = flat(&doc["lape"]["relative"]).into_iter().map(|x| 100.0 * x).collect();
    let random: Vec<f64> = flat(&doc["random"]["relative"]).into_iter().map(|x| 100.0 * x).collect();
    if lape.len() != k * k {
        return None;
    }
    let mut header = vec!["neurons zeroed ↓ / PPL of →".to_string()];
    header.extend(langs.iter().cloned());
    let mut rows = Vec::new();
    for (name, m) in [("", &lape), ("random ", &random)] {
        if m.len() != k * k {
            continue;
        }
        for i in 0..k {
            let mut row = vec![Cell::plain(format!("{name}{}", langs[i]))];
            row.extend((0..k).map(|j| Cell::plain(format!("{:+.1}", m[i * k + j]))));
            rows.push(row);
        }
    }
    let diag = |m: &[f64]| (0..k).map(|i| m[i * k + i]).sum::<f64>() / k as f64;
    let off = |m: &[f64]| {
        (0..k)
            .flat_map(|i| (0..k).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * k + j])
            .sum::<f64>()
            / (k * (k - 1)).max(1) as f64
    };
    let verdict = format!(
        "zeroing a language's LAPE neurons raises its own perplexity by {:.1}% on average (the diagonal), others' by \
         {:.1}%{}.",
        diag(&lape),
        off(&lape),
        if random.len() == k * k {
            format!("; random neurons (same count per layer): {:.1}% and {:.1}%", diag(&random), off(&random))
        } else {
            String::new()
        }
    );
    let summary = json!({"languages": langs, "lape_relative_percent": lape, "random_relative_percent": random,
        "baseline_ppl": doc["baseline"]["ppl"], "diagonal_mean_percent": diag(&lape), "off_diagonal_mean_percent": off(&lape)});
    let table = Table {
        id: "ppxc".into(),
        title: "PPXC: perplexity change (%) when a language's set-1 LAPE neurons are zeroed".into(),
        header,
        rows,
        reference_rows: vec![],
        note: "Row i: the language whose neurons are zeroed at every position; column j: the language whose held-out \
               rows (not used by the capture) are scored; (PPL(j | i zeroed) − PPL(j)) / PPL(j)."
            .into(),
        verdict: Some(verdict),
    };
    Some((table, summary))
}

/// Reads the SVG at `path` for inlining in HTML (without its XML declaration).
fn inline_svg(path: &Path) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    Some(match s.find("<svg") {
        Some(i) => s[i..].to_string(),
        None => s,
    })
}

pub fn run(args: Args) -> Result<()> {
    let root = &args.run;
    let plan: Plan = read_json(&root.join("plan.json"), "the plan of a `lsn reproduce` run").with_context(|| {
        format!("{} is not a `lsn reproduce` run directory (run `lsn reproduce --out DIR` first)", root.display())
    })?;
    let config: Value = read_json(&root.join("config.json"), "a run configuration")?;
    let mut results = BTreeMap::new();
    let mut missing = Vec::new();
    for e in &plan.evals {
        let p = root.join(&e.results);
        if p.is_file() {
            results.insert(e.stage.clone(), read_json::<EvalResults>(&p, "a results.json written by `lsn eval`")?);
        } else {
            missing.push(e.stage.clone());
        }
    }
    let mut study =
        Study { root, plan: &plan, results, resamples: args.resamples, seed: args.seed, deltas: Vec::new() };
    let plots = root.join("plots");
    std::fs::create_dir_all(&plots).with_context(|| format!("creating {}", plots.display()))?;

    let mut tables = Vec::new();
    let mut figures: Vec<(String, PathBuf)> = Vec::new();
    for task in ["xnli", "xquad"] {
        for method in [INTERVENTION_METHOD, FTL_METHOD] {
            if let Some(t) = study.intervention_table(task, method) {
                tables.push(t);
            }
            // Score vs intervention, with the intervals.
            let fills: Vec<&str> = FILLS
                .iter()
                .copied()
                .filter(|f| {
                    plan.evals
                        .iter()
                        .any(|e| e.task == task && e.method.as_deref() == Some(method) && e.fill.as_deref() == Some(*f))
                })
                .collect();
            if fills.is_empty() {
                continue;
            }
            let mut columns = vec!["No Int".to_string()];
            columns.extend(fills.iter().map(|f| column_name(f)));
            let m = metric(task);
            let langs: &[&str] = if task == "xnli" { &XNLI_LANGS } else { &XQUAD_LANGS };
            let series: Vec<ScoreSeries> = langs
                .iter()
                .map(|&lang| {
                    let get = |role: Option<&EvalRole>| {
                        study.lang(role, lang).and_then(|(_, l)| l.scores.get(m)).map(|i| (i.mean, i.lo, i.hi))
                    };
                    let mut points =
                        vec![
                            get(study.role(|e| e.task == task && e.kind == "ftl" && e.ftl.as_deref() == Some("null"))),
                        ];
                    points.extend(fills.iter().map(|f| {
                        get(study.role(|e| {
                            e.task == task
                                && e.method.as_deref() == Some(method)
                                && e.fill.as_deref() == Some(*f)
                                && e.langs.iter().any(|l| l == lang)
                        }))
                    }));
                    ScoreSeries { name: lang.into(), points }
                })
                .collect();
            let title = format!(
                "{} {} under intervention ({method}, FTL null), 95% CI",
                task_name(task),
                if task == "xnli" { "accuracy" } else { "F1" }
            );
            let y = if task == "xnli" { "accuracy (%)" } else { "F1 (%, paper metric)" };
            match charts::scores(&title, y, &columns, &series, &plots.join(format!("{task}-intervention-{method}"))) {
                Ok(f) => figures.push((title, f.svg)),
                Err(e) => tracing::warn!("no chart of {title}: {e:#}"),
            }
        }
        tables.push(study.ftl_table(task));
        // Loss curves of the task's fine-tunes.
        let mut curves = Vec::new();
        for t in plan.trains.iter().filter(|t| t.task == task) {
            let Ok(doc) = read_json::<Value>(&root.join(&t.dir).join("train.json"), "a train.json") else { continue };
            let pts: Vec<(u64, f64)> = doc["log"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| Some((l["step"].as_u64()?, l["loss"].as_f64()?)))
                .collect();
            let name = match &t.set {
                Some(s) if t.ftl == "en" => format!("en ({s})"),
                _ => t.ftl.clone(),
            };
            curves.push((name, pts));
        }
        let title = format!("{} fine-tuning loss by FTL", task_name(task));
        match charts::losses(&title, &curves, &plots.join(format!("{task}-loss"))) {
            Ok(f) => figures.push((title, f.svg)),
            Err(e) => tracing::warn!("no chart of {title}: {e:#}"),
        }
    }
    tables.push(study.baseline_table());
    let mut ppxc_summary = Value::Null;
    if let Ok(doc) = read_json::<Value>(&root.join(format!("ppxc/set1/{FTL_METHOD}.json")), "a PPXC file") {
        if let Some((t, s)) = ppxc_table(&doc) {
            tables.push(t);
            ppxc_summary = s;
        }
        figures.push((
            "PPXC heatmap (LAPE, random control)".into(),
            root.join(format!("ppxc/set1/{FTL_METHOD}.heatmap.svg")),
        ));
    }
    let mut agreement = Value::Null;
    if let Some((t, d)) = agreement_table(root, &plan, &study.results) {
        tables.push(t);
        agreement = d;
    }
    // Neurons per set, method and language.
    let mut sel_rows = Vec::new();
    let mut selections = serde_json::Map::new();
    for (set, _) in &plan.sets {
        for method in [FTL_METHOD, INTERVENTION_METHOD, "random"] {
            let p = root.join(format!("neurons/{set}/{method}.json"));
            let Ok(sel) = read_json::<lsn_select::Selection>(&p, "a neuron file") else { continue };
            let counts: Vec<String> =
                sel.languages.iter().map(|l| format!("{l} {}", sel.counts.get(l).copied().unwrap_or(0))).collect();
            sel_rows.push(vec![Cell::plain(set.clone()), Cell::plain(method), Cell::plain(counts.join(" · "))]);
            selections.insert(format!("{set}/{method}"), json!({"counts": sel.counts, "per_layer": sel.per_layer}));
            let svg = root.join(format!("neurons/{set}/{method}.layers.svg"));
            if svg.is_file() && method != "random" {
                figures.push((format!("{method} neurons per layer, {set}"), svg));
            }
        }
    }
    tables.push(Table {
        id: "neurons".into(),
        title: "Selected neurons per language".into(),
        header: vec!["set".into(), "method".into(), "neurons per language".into()],
        rows: sel_rows,
        reference_rows: vec![],
        note: format!(
            "Sets as the paper's (set1: {}; set6: {}); the evaluated languages take their own set: vi, zh from set1, \
             hi, ur from set6 ({}).",
            plan.sets[0].1.join(" "),
            plan.sets[1].1.join(" "),
            ["vi", "zh", "hi", "ur"].iter().map(|l| format!("{l} → {}", set_of(l))).collect::<Vec<_>>().join(", ")
        ),
        verdict: None,
    });

    // Training summary (deterministic: steps and losses, not speed).
    let mut training = serde_json::Map::new();
    for t in &plan.trains {
        if let Ok(doc) = read_json::<Value>(&root.join(&t.dir).join("train.json"), "a train.json") {
            training.insert(
                t.stage.clone(),
                json!({"ftl": t.ftl, "set": t.set, "steps": doc["steps"], "log": doc["log"],
                    "examples": doc["run"]["data"]["examples"], "spec": doc["run"]["spec"]}),
            );
        }
    }
    let evals: BTreeMap<&String, Value> = study
        .results
        .iter()
        .map(|(k, r)| {
            let langs: BTreeMap<&String, Value> = r
                .languages
                .iter()
                .map(|l| (&l.lang, json!({"n": l.examples.len(), "dropped": l.dropped.len(), "scores": l.scores})))
                .collect();
            (k, json!({"task": r.task, "protocol": r.protocol, "split": r.split, "languages": langs}))
        })
        .collect();
    let doc = json!({
        "format": 1, "config": config, "plan": {"scale": plan.request.scale, "sizes": plan.request.sizes},
        "tables": tables, "deltas": study.deltas, "evaluations": evals, "selections": selections,
        "ppxc": ppxc_summary, "training": training, "backend_agreement": agreement, "missing_stages": missing,
    });
    fsutil::write_atomic(&root.join("results.json"), serde_json::to_string_pretty(&doc)?.as_bytes())?;

    // report.md and report.html.
    let req = &plan.request;
    let timing: Value = read_json(&root.join(crate::cmd::reproduce::STATE_FILE), "a state file").unwrap_or(Value::Null);
    let seconds: f64 =
        timing["stages"].as_object().into_iter().flatten().filter_map(|(_, s)| s["seconds"].as_f64()).sum();
    let head = format!(
        "# Language-specific neurons: the study on {} ({:?} scale)\n\nReproduces the tables of *Language-specific \
         Neurons Do Not Facilitate Cross-Lingual Transfer* (Mondal et al., 2025) with `lsn reproduce`: backend {} \
         (fine-tunes on {}), device {}, weights {}, statistics at `{}`, seed {} (fine-tunes {}). Sizes: capture {} \
         tokens per language in rows of {}; fine-tuning preset `{}` on {} English XNLI dev pairs and {} English XQuAD \
         questions (epochs: {}); evaluation on {} XNLI test pairs and {} XQuAD eval questions per language (XQuAD at \
         most {} new tokens). Stages' compute time: {:.0} s.{}{}\n",
        req.model,
        req.scale,
        req.backend,
        req.task_backend,
        req.device,
        req.dtype,
        req.tap_point,
        req.seed,
        42 + req.seed,
        req.sizes.capture_tokens.map_or("all".into(), |t| t.to_string()),
        req.sizes.row_len,
        req.sizes.preset,
        req.sizes.xnli_train.map_or("all 2490".into(), |n| n.to_string()),
        req.sizes.xquad_train.map_or("all 952".into(), |n| n.to_string()),
        req.sizes.xquad_epochs.map_or("preset's".into(), |n| n.to_string()),
        req.sizes.xnli_eval.map_or("all 5010".into(), |n| n.to_string()),
        req.sizes.xquad_eval.map_or("all 238".into(), |n| n.to_string()),
        req.sizes.max_new_tokens,
        seconds,
        if req.scale == crate::cmd::reproduce::plan::Scale::Smoke {
            "\n\n**Smoke scale:** every stage ran on a few examples to check the pipeline; the numbers below, their \
             intervals and the verdicts mean nothing (a handful of examples gives intervals that exclude 0 by chance)."
        } else {
            ""
        },
        if missing.is_empty() {
            String::new()
        } else {
            format!(
                "\n\n**Incomplete:** {} evaluations have not run yet ({}); their cells show –.",
                missing.len(),
                missing.join(", ")
            )
        }
    );
    let mut md = head.clone();
    for t in &tables {
        md += "\n";
        md += &t.markdown();
    }
    md += "\n## Figures\n\n";
    for (title, svg) in &figures {
        let rel = svg.strip_prefix(root).unwrap_or(svg).display().to_string();
        md += &format!("- [{title}]({rel})\n");
    }
    fsutil::write_atomic(&root.join("report.md"), md.as_bytes())?;

    let mut html = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>lsn report</title><style>\
         body{font-family:sans-serif;max-width:1200px;margin:2em auto;line-height:1.4}\
         table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}\
         td:first-child,th:first-child{text-align:left}tr.ref td{color:#777}td.sig{font-weight:bold;background:#fff3c4}\
         .note{color:#444;font-size:90%}.verdict{background:#eef6ee;padding:4px}figure{margin:1em 0}\
         </style></head><body>\n",
    );
    for para in head.split("\n\n") {
        let p = para.trim();
        if let Some(h) = p.strip_prefix("# ") {
            html += &format!("<h1>{}</h1>\n", table::html_text(h));
        } else if !p.is_empty() {
            html += &format!("<p>{}</p>\n", table::html_text(p));
        }
    }
    for t in &tables {
        html += &t.html();
    }
    html += "<h2>Figures</h2>\n";
    for (title, svg) in &figures {
        if let Some(s) = inline_svg(svg) {
            html += &format!("<figure>{s}<figcaption>{}</figcaption></figure>\n", table::html_text(title));
        }
    }
    html += "</body></html>\n";
    fsutil::write_atomic(&root.join("report.html"), html.as_bytes())?;
    println!("{}", tables.first().map(Table::markdown).unwrap_or_default());
    println!(
        "report: {} · {} · {}",
        root.join("report.md").display(),
        root.join("report.html").display(),
        root.join("results.json").display()
    );
    Ok(())
}
