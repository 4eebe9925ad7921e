//! The language-forcing table of `--study arithmetics`: per steering operation and target language, the share of
//! continuations in the target against the random control, judged as one family (Holm) with the run's margin.

use std::path::Path;

use lsn_eval::forcing::ForcingCell;
use lsn_eval::verdict::{Class, classify};
use serde_json::{Value, json};

use super::table::{Cell, Table};
use crate::cmd::reproduce::plan::Plan;

/// The table, and its cells for results.json; `None` when the run has no forcing stage.
pub fn forcing_table(root: &Path, plan: &Plan) -> Option<(Table, Value)> {
    let stages: Vec<&str> = plan.stages.iter().filter_map(|s| s.key.strip_prefix("forcing/")).collect();
    if stages.is_empty() {
        return None;
    }
    let mut cells: Vec<(String, ForcingCell)> = Vec::new();
    let mut missing = Vec::new();
    let mut settings = Value::Null;
    for s in &stages {
        let file = root.join(format!("forcing/{}.json", s.replace('/', "-")));
        let doc: Option<Value> = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok());
        match doc.and_then(|d| Some((serde_json::from_value::<Vec<ForcingCell>>(d["cells"].clone()).ok()?, d))) {
            Some((cs, d)) => {
                settings = d["settings"].clone();
                let op = s.split('/').next().unwrap_or(s).to_string();
                cells.extend(cs.into_iter().map(|c| (op.clone(), c)));
            }
            None => missing.push(s.to_string()),
        }
    }
    let margin = plan.request.margin;
    // A neuron operation on an empty set steers nothing: it cannot test the claim, and is left out of the family.
    let testable: Vec<usize> =
        (0..cells.len()).filter(|&i| cells[i].1.vs_control.is_some() && !untestable(&cells[i])).collect();
    let deltas: Vec<_> = testable.iter().filter_map(|&i| cells[i].1.vs_control).collect();
    let judged = classify(&deltas, margin);
    let class_of = |i: usize| testable.iter().position(|&t| t == i).map(|k| judged[k]);
    let mut rows = Vec::new();
    let mut out = Vec::new();
    let iv = |i: &lsn_eval::Interval| format!("{:.1} [{:.1}, {:.1}]", i.mean, i.lo, i.hi);
    for (i, (op, c)) in cells.iter().enumerate() {
        let j = class_of(i);
        let verdict = match j {
            _ if untestable(&cells[i]) => "cannot test (no neuron of the target)".to_string(),
            Some(j) => j.class.label(margin),
            None => "–".into(),
        };
        let marked = j.is_some_and(|j| matches!(j.class, Class::Higher | Class::Lower));
        rows.push(vec![
            Cell::plain(c.steer.clone()),
            Cell::plain(c.target.code()),
            Cell::plain(if c.neurons == 0 && op == "diffmean" { "vector".into() } else { c.neurons.to_string() }),
            Cell::plain(iv(&c.share)),
            Cell::plain(format!("{:.1}", c.plain_share.mean)),
            Cell::plain(c.control_share.as_ref().map_or("–".into(), |s| format!("{:.1}", s.mean))),
            Cell {
                text: c
                    .vs_control
                    .as_ref()
                    .map_or("–".into(), |d| format!("{:+.1} [{:+.1}, {:+.1}]", d.delta, d.lo, d.hi)),
                marked,
            },
            Cell::plain(verdict.clone()),
            Cell::plain(
                c.nll_vs_plain
                    .as_ref()
                    .map_or("–".into(), |d| format!("{:+.2} [{:+.2}, {:+.2}]", d.delta, d.lo, d.hi)),
            ),
        ]);
        out.push(json!({"operation": op, "cell": c, "verdict": verdict, "p_holm": j.map(|j| j.p_holm)}));
    }
    let forcing: Vec<String> = cells
        .iter()
        .enumerate()
        .filter(|&(i, _)| class_of(i).is_some_and(|j| j.class == Class::Higher))
        .map(|(_, (op, c))| format!("{op}→{}", c.target.code()))
        .collect();
    let summary = format!(
        "{} of {} tested cells force the target language beyond the random control after correction{}",
        forcing.len(),
        testable.len(),
        if forcing.is_empty() { String::new() } else { format!(" ({})", forcing.join(", ")) }
    );
    let note = format!(
        "Greedy continuations of English FLORES-200 devtest prompts (the last {} sentences; {} new tokens), steered \
         towards each target (Language Arithmetics' operations on the target's {} neurons, its code's α = 1; \
         `fill-mean` is the paper's μ fill; `scale` multiplies by 2; `diffmean` is CLaS-Bench's difference of mean \
         layer outputs, α = 1 moving English's mean onto the target's, at 5/8 of the depth). In target: the share \
         lingua names the target (95% bootstrap interval over prompts). Control: the same operation on random neurons \
         with each layer's count (a random direction of the same norm for diffmean); steered − control is paired over \
         prompts, classed with Holm–Bonferroni over the table's cells and margin ±{margin} points. ΔNLL: the \
         continuation's NLL per token under the unsteered model, minus the unsteered continuation's — the fluency \
         cost (it also counts the switch of language as surprise).{}",
        settings["prompts"].as_u64().unwrap_or(0),
        settings["max_new_tokens"].as_u64().unwrap_or(0),
        crate::cmd::reproduce::plan::FORCING_METHOD,
        if missing.is_empty() { String::new() } else { format!(" Not run yet: {}.", missing.join(", ")) }
    );
    let table = Table {
        id: "forcing".into(),
        title: "Language forcing: steering the target's neurons, or a difference-of-means vector".into(),
        header: [
            "steering",
            "target",
            "neurons",
            "in target %",
            "unsteered %",
            "random control %",
            "steered − control",
            "verdict",
            "ΔNLL/token vs unsteered",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        reference_rows: vec![],
        note,
        verdict: Some(summary),
        verdict_class: None,
    };
    Some((table, json!({"cells": out, "missing": missing, "settings": settings})))
}

fn untestable((op, c): &(String, ForcingCell)) -> bool {
    op != "diffmean" && c.neurons == 0
}
