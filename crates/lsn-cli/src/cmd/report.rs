//! `lsn report`: the study's report from a `lsn reproduce` run directory — the paper's tables with our numbers, each
//! difference with its paired 95% bootstrap interval, the paper's own numbers beside them, a verdict per table, and
//! the plots; as report.md, a self-contained report.html and results.json.

mod agreement;
mod forcing;
mod paper;
mod ppxc;
mod study;
mod subnetwork;
mod summary;
pub mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lsn_eval::EvalResults;
use serde_json::{Value, json};

use crate::cmd::reproduce::plan::{EvalRole, FILLS, FTL_METHOD, INTERVENTION_METHOD, Plan, set_of};
use crate::fsutil;
use crate::plot::charts::{self, ScoreSeries};
use agreement::agreement_table;
use ppxc::ppxc_table;
use study::{Study, metric};
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
    /// Report on the first N evaluated examples (file order) of every language of every evaluation, to see how a
    /// table's verdict depends on its size: what evaluations of N examples would have shown (for XQuAD, N kept
    /// after dropping long prompts, where `lsn eval --limit N` drops them from the first N). Written into the run
    /// directory's `report-limit-N/`, beside the full report.
    #[arg(long, value_parser = crate::cmd::at_least_one)]
    pub limit: Option<usize>,
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
            let mut r = if e.task == crate::cmd::reproduce::plan::PPL_TASK {
                subnetwork::ppl_results(&read_json(&p, "a `lsn ppl --json` document")?, args.resamples, args.seed)
                    .with_context(|| format!("reading {}", p.display()))?
            } else {
                read_json::<EvalResults>(&p, "a results.json written by `lsn eval`")?
            };
            if let Some(n) = args.limit {
                for l in &mut r.languages {
                    l.examples.truncate(n);
                    l.summarize(r.resamples, r.seed);
                }
            }
            results.insert(e.stage.clone(), r);
        } else {
            missing.push(e.stage.clone());
        }
    }
    let trains: BTreeMap<String, Value> = plan
        .trains
        .iter()
        .filter_map(|t| Some((t.stage.clone(), read_json(&root.join(&t.dir).join("train.json"), "a train.json").ok()?)))
        .collect();
    let mut study = Study::new(&plan, trains, results, args.resamples, args.seed);
    // Where this report goes: the run directory, or report-limit-N/ for a report on the first N examples.
    let dest = match args.limit {
        Some(n) => root.join(format!("report-limit-{n}")),
        None => root.clone(),
    };
    let plots = dest.join("plots");
    std::fs::create_dir_all(&plots).with_context(|| format!("creating {}", plots.display()))?;

    let mut tables = Vec::new();
    let mut figures: Vec<(String, PathBuf)> = Vec::new();
    let mondal = plan.request.study.runs(crate::cmd::reproduce::plan::Study::Mondal);
    for task in ["xnli", "xquad"].into_iter().filter(|_| mondal) {
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
            let langs = crate::cmd::reproduce::plan::task_langs(task);
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
            let Some(doc) = study.trains.get(&t.stage) else { continue };
            let pts: Vec<(u64, f64)> = doc["log"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| Some((l["step"].as_u64()?, l["loss"].as_f64()?)))
                .collect();
            let mut name = match &t.set {
                Some(s) if t.ftl == "en" => format!("en ({s})"),
                _ => t.ftl.clone(),
            };
            if plan.request.sizes.seeds > 1 {
                name += &format!(" #{}", t.seed_index);
            }
            curves.push((name, pts));
        }
        let title = format!("{} fine-tuning loss by FTL", task_name(task));
        match charts::losses(&title, &curves, &plots.join(format!("{task}-loss"))) {
            Ok(f) => figures.push((title, f.svg)),
            Err(e) => tracing::warn!("no chart of {title}: {e:#}"),
        }
    }
    if mondal {
        tables.push(study.baseline_table());
    }
    let mut forcing_summary = Value::Null;
    if let Some((t, versus, d)) = forcing::forcing_table(root, &plan) {
        tables.push(t);
        tables.extend(versus);
        forcing_summary = d;
    }
    let mut subnetwork_summary = Value::Null;
    if let Some((t, d)) =
        subnetwork::subnetwork_table(&plan, &study.results, &study.trains, (args.resamples, args.seed))
    {
        tables.push(t);
        subnetwork_summary = d;
    }
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
        verdict_class: None,
    });

    // The report ends with the claims side by side.
    if plan.request.study == crate::cmd::reproduce::plan::Study::All {
        tables.push(summary::summary_table(&study.verdicts, &study.deltas, &forcing_summary, &subnetwork_summary));
    }

    // Training summary (deterministic: steps and losses, not speed).
    let mut training = serde_json::Map::new();
    for t in &plan.trains {
        if let Some(doc) = study.trains.get(&t.stage) {
            training.insert(
                t.stage.clone(),
                json!({"ftl": t.ftl, "set": t.set, "seed_index": t.seed_index, "steps": doc["steps"], "log": doc["log"],
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
        "format": 1, "config": config,
        "plan": {"scale": plan.request.scale, "study": plan.request.study, "sizes": plan.request.sizes},
        "verdict_rules": {"margin": plan.request.margin, "alpha": lsn_eval::verdict::ALPHA,
            "correction": "holm-bonferroni over the tested cells of each table, on two-sided bootstrap p-values",
            "equivalence": "tost: the 90% interval inside [-margin, +margin]",
            "cannot_test": "xnli: FTL null's accuracy interval includes chance (100/3); xquad: FTL null's exact match \
                is 0 or fewer than half of its answers end before the token limit; fine-tuning tables: one training seed",
            "seeds": plan.request.sizes.seeds},
        "verdicts": study.verdicts,
        "tables": tables, "deltas": study.deltas, "evaluations": evals, "selections": selections,
        "ppxc": ppxc_summary, "forcing": forcing_summary, "subnetwork": subnetwork_summary, "training": training, "backend_agreement": agreement, "missing_stages": missing,
    });
    fsutil::write_atomic(&dest.join("results.json"), serde_json::to_string_pretty(&doc)?.as_bytes())?;

    // report.md and report.html.
    let req = &plan.request;
    let timing: Value = read_json(&root.join(crate::cmd::reproduce::STATE_FILE), "a state file").unwrap_or(Value::Null);
    let seconds: f64 =
        timing["stages"].as_object().into_iter().flatten().filter_map(|(_, s)| s["seconds"].as_f64()).sum();
    let head = format!(
        "# Language-specific neurons: the study on {} ({:?} scale)\n\nStudies: {}. Reproduces the tables of \
         *Language-specific Neurons Do Not Facilitate Cross-Lingual Transfer* (Mondal et al., 2025) with `lsn \
         reproduce`: backend {} \
         (fine-tunes on {}), device {}, weights {}, statistics at `{}`, seed {} (training seeds {}). Verdicts: \
         equivalence margin δ = ±{} points, fixed before the run; Holm–Bonferroni over each table's cells. Sizes: capture {} \
         per language in rows of {}; fine-tuning preset `{}` on {} English XNLI {} pairs and {} English XQuAD \
         questions (epochs: {}){}; evaluation on {} XNLI {} pairs and {} XQuAD eval questions per language (XQuAD at \
         most {} new tokens). Stages' compute time: {:.0} s.{}{}{}\n",
        req.model,
        req.scale,
        match req.study {
            crate::cmd::reproduce::plan::Study::Mondal => "mondal (the paper's tables)",
            crate::cmd::reproduce::plan::Study::Arithmetics =>
                "arithmetics (language forcing; the paper's tables are not part of this run)",
            crate::cmd::reproduce::plan::Study::Subnetwork =>
                "subnetwork (target-language subnetwork training; the paper's tables are not part of this run)",
            crate::cmd::reproduce::plan::Study::All =>
                "all (the paper's tables, language forcing and subnetwork training; the claims side by side at the end)",
        },
        req.backend,
        req.task_backend,
        req.device,
        req.dtype,
        req.tap_point,
        req.seed,
        (0..req.sizes.seeds as u64).map(|k| (42 + req.seed + k).to_string()).collect::<Vec<_>>().join(", "),
        req.margin,
        req.sizes
            .capture_tokens
            .map_or(format!("all the text but its last {} rows", req.sizes.capture_leave_rows()), |t| format!(
                "{t} tokens"
            )),
        req.sizes.row_len,
        req.sizes.preset,
        req.sizes
            .xnli_train
            .map_or(if req.sizes.xnli_train_split == "test" { "all 5010" } else { "all 2490" }.into(), |n| n
                .to_string()),
        req.sizes.xnli_train_split,
        req.sizes.xquad_train.map_or("all 952".into(), |n| n.to_string()),
        req.sizes.xquad_epochs.map_or("preset's".into(), |n| n.to_string()),
        if req.sizes.all_ftls { ", every FTL" } else { ", FTL null only (the model under intervention)" },
        req.sizes
            .xnli_eval
            .map_or(if req.sizes.xnli_eval_split == "dev" { "all 2490" } else { "all 5010" }.into(), |n| n.to_string()),
        req.sizes.xnli_eval_split,
        req.sizes.xquad_eval.map_or("all 238".into(), |n| n.to_string()),
        req.sizes.max_new_tokens,
        seconds,
        if req.scale == crate::cmd::reproduce::plan::Scale::Smoke {
            "\n\n**Smoke scale:** every stage ran on a few examples to check the pipeline; the numbers below, their \
             intervals and the verdicts mean nothing (a handful of examples gives intervals that exclude 0 by chance)."
        } else {
            ""
        },
        args.limit.map_or(String::new(), |n| format!(
            "\n\n**Limited:** every evaluation cut to its first {n} examples per language (`lsn report --limit {n}`): \
             what a run of that size would have shown."
        )),
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
        let rel = match (svg.strip_prefix(&dest), svg.strip_prefix(root)) {
            (Ok(r), _) => r.display().to_string(),
            (_, Ok(r)) => format!("../{}", r.display()),
            _ => svg.display().to_string(),
        };
        md += &format!("- [{title}]({rel})\n");
    }
    fsutil::write_atomic(&dest.join("report.md"), md.as_bytes())?;

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
    fsutil::write_atomic(&dest.join("report.html"), html.as_bytes())?;
    println!("{}", tables.first().map(Table::markdown).unwrap_or_default());
    println!(
        "report: {} · {} · {}",
        dest.join("report.md").display(),
        dest.join("report.html").display(),
        dest.join("results.json").display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use lsn_eval::{EvalResults, ExampleResult, LangResult};
    use serde_json::{Value, json};

    use crate::cmd::reproduce::plan::{EvalRole, Plan, Request, Scale, Sizes};

    const N: usize = 600;

    /// Synthetic per-example scores of one evaluation of a two-seed study: XNLI fine-tunes at 70% (the seeds differ
    /// on a few examples), every FTL and intervention equal to its seed's null except ActProb-90p's P5 on vi (+10
    /// points); XQuAD fine-tunes that never match exactly.
    fn example(e: &EvalRole, lang: &str, i: usize) -> (BTreeMap<String, f64>, Value) {
        if e.task == "xquad" {
            let m = BTreeMap::from([
                ("paper_em".into(), 0.0),
                ("paper_f1".into(), if i.is_multiple_of(2) { 40.0 } else { 20.0 }),
            ]);
            return (m, json!({"stopped_at_eos": true}));
        }
        let mut right = i % 10 < 7;
        if e.seed_index == 1 && i < 10 {
            right = !right;
        }
        if e.fill.as_deref() == Some("p5") && e.method.as_deref() == Some("act-prob-90p") && lang == "vi" && i % 10 >= 7
        {
            right = i < 200;
        }
        (BTreeMap::from([("accuracy".into(), if right { 100.0 } else { 0.0 })]), json!({"pred": "x"}))
    }

    #[test]
    fn verdicts_over_seeds_say_which_tables_contradict_agree_or_cannot_test() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let plan = Plan::new(Request {
            scale: Scale::Smoke,
            study: crate::cmd::reproduce::plan::Study::Mondal,
            backend: "tch".into(),
            task_backend: "tch".into(),
            device: "cpu".into(),
            dtype: "f32".into(),
            tap_point: "act".into(),
            seed: 0,
            model: "m".into(),
            sizes: Sizes { seeds: 2, ..Sizes::of(Scale::Smoke) },
            compare_backends: vec![],
            margin: 2.0,
            forcing_margin: 10.0,
        });
        std::fs::write(root.join("plan.json"), serde_json::to_vec(&plan).unwrap()).unwrap();
        std::fs::write(root.join("config.json"), b"{}").unwrap();
        for e in &plan.evals {
            let languages = e
                .langs
                .iter()
                .map(|lang| {
                    let examples = (0..N)
                        .map(|i| {
                            let (metrics, detail) = example(e, lang, i);
                            ExampleResult { key: i.to_string(), metrics, detail }
                        })
                        .collect();
                    let mut l = LangResult {
                        lang: lang.clone(),
                        data_file: "d".into(),
                        data_sha256: "s".into(),
                        dropped: vec![],
                        scores: BTreeMap::new(),
                        examples,
                    };
                    l.summarize(200, 1);
                    l
                })
                .collect();
            let r = EvalResults {
                task: e.task.clone(),
                protocol: "p".into(),
                split: "test".into(),
                config: Value::Null,
                resamples: 200,
                seed: 1,
                languages,
            };
            let p = root.join(&e.results);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, serde_json::to_vec(&r).unwrap()).unwrap();
        }
        super::run(super::Args { run: root.to_path_buf(), resamples: 2000, seed: 3, limit: None }).unwrap();
        let doc: Value = serde_json::from_slice(&std::fs::read(root.join("results.json")).unwrap()).unwrap();
        let verdict = |id: &str| -> Value {
            doc["verdicts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["table"] == id)
                .cloned()
                .unwrap_or_else(|| panic!("{id}"))
        };
        // ActProb-90p's P5 raises vi by 10 points on both seeds: after Holm over 21 cells, still higher.
        let v = verdict("xnli-intervention-act-prob-90p");
        assert_eq!(v["verdict"], "contradicts", "{v}");
        assert!(v["higher"] == 1 && v["equivalent"] == 20 && v["seeds"] == 2 && v["tested"] == 21, "{v}");
        // Every other intervention, and every FTL, equals null on each seed: equivalent within ±2.
        assert_eq!(verdict("xnli-intervention-lape-mondal")["verdict"], "consistent");
        let ftl = verdict("xnli-ftl");
        assert!(ftl["verdict"] == "consistent" && ftl["equivalent"] == 9 && ftl["cells"] == 12, "{ftl}");
        // XQuAD's null never matches exactly: no table of it can test the claim, and it says why.
        for id in ["xquad-intervention-act-prob-90p", "xquad-ftl"] {
            let v = verdict(id);
            assert!(v["verdict"] == "cannot_test" && v["tested"] == 0, "{v}");
            assert!(v["cannot_test"][0].as_str().unwrap().contains("exact match 0"), "{v}");
        }
        let cell = doc["deltas"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["table"] == "xnli-intervention-act-prob-90p" && d["column"] == "P5" && d["lang"] == "vi")
            .unwrap();
        assert!(cell["class"] == "higher" && cell["runs"] == 2 && cell["p_holm"].as_f64().unwrap() <= 0.05, "{cell}");
        // +10 on seed 0; +9.5 on seed 1, whose null already had three of those examples right.
        assert!((cell["delta"].as_f64().unwrap() - 9.75).abs() < 1e-9, "{cell}");
        let md = std::fs::read_to_string(root.join("report.md")).unwrap();
        assert!(md.contains("**contradicts the paper** — act-prob-90p intervention raises the score"), "{md}");
        assert!(md.contains("(seeds: 70.00 · ") && md.contains("training seeds 42, 43"), "{md}");
        // --limit: the same report on the first 100 examples of every evaluation, beside the full one.
        let full = std::fs::read(root.join("results.json")).unwrap();
        super::run(super::Args { run: root.to_path_buf(), resamples: 2000, seed: 3, limit: Some(100) }).unwrap();
        assert_eq!(std::fs::read(root.join("results.json")).unwrap(), full, "the full report is left as it was");
        let small: Value =
            serde_json::from_slice(&std::fs::read(root.join("report-limit-100/results.json")).unwrap()).unwrap();
        let v = small["verdicts"].as_array().unwrap().iter().find(|v| v["table"] == "xnli-ftl").unwrap();
        assert!(v["examples"] == "100" && v["verdict"] != "consistent", "100 examples cannot show ±2: {v}");
        let md = std::fs::read_to_string(root.join("report-limit-100/report.md")).unwrap();
        assert!(md.contains("**Limited:** every evaluation cut to its first 100 examples"), "{md}");
    }
}
