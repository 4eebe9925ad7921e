//! The language-forcing tables of `--study arithmetics`: per steering operation and target language, the share of
//! continuations in the target against the random control, and the difference-of-means vector against each neuron
//! operation, each table judged as one family (Holm) with the run's forcing margin.

use std::collections::BTreeMap;
use std::path::Path;

use lsn_eval::forcing::{ForcingCell, Judged, versus};
use lsn_eval::verdict::{Class, classify_tested};
use serde_json::{Value, json};

use super::table::{Cell, Table};
use crate::cmd::reproduce::plan::Plan;

/// The steering vector's operation, compared with every neuron operation on the same prompts.
const DIFFMEAN: &str = "diffmean";

/// The table, the table of the difference-of-means vector against the neuron operations (when both ran), and their
/// cells for results.json; `None` when the run has no forcing stage.
pub fn forcing_table(root: &Path, plan: &Plan) -> Option<(Table, Option<Table>, Value)> {
    let stages: Vec<&str> = plan.stages.iter().filter_map(|s| s.key.strip_prefix("forcing/")).collect();
    if stages.is_empty() {
        return None;
    }
    let mut cells: Vec<(String, ForcingCell)> = Vec::new();
    let mut missing = Vec::new();
    let mut settings = Value::Null;
    // Each (operation, target)'s steered continuations, with the prompts they continue.
    let mut runs: BTreeMap<(String, String), (Vec<Judged>, Value)> = BTreeMap::new();
    for s in &stages {
        let file = root.join(format!("forcing/{}.json", s.replace('/', "-")));
        let doc: Option<Value> = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok());
        match doc.and_then(|d| Some((serde_json::from_value::<Vec<ForcingCell>>(d["cells"].clone()).ok()?, d))) {
            Some((cs, d)) => {
                settings = d["settings"].clone();
                let op = s.split('/').next().unwrap_or(s).to_string();
                for (target, run) in d["runs"].as_object().into_iter().flatten() {
                    if let Ok(steered) = serde_json::from_value::<Vec<Judged>>(run["steered"].clone()) {
                        runs.insert((op.clone(), target.clone()), (steered, d["prompts"].clone()));
                    }
                }
                cells.extend(cs.into_iter().map(|c| (op.clone(), c)));
            }
            None => missing.push(s.to_string()),
        }
    }
    let margin = plan.request.forcing_margin;
    // A neuron operation on an empty set steers nothing: it cannot test the claim, and is left out of the family.
    let judged =
        classify_tested(&cells.iter().map(|c| c.1.vs_control.filter(|_| !untestable(c))).collect::<Vec<_>>(), margin);
    let mut rows = Vec::new();
    let mut out = Vec::new();
    let iv = |i: &lsn_eval::Interval| format!("{:.1} [{:.1}, {:.1}]", i.mean, i.lo, i.hi);
    for (i, (op, c)) in cells.iter().enumerate() {
        let j = judged[i];
        let verdict = match j {
            _ if untestable(&cells[i]) => "cannot test (no neuron of the target)".to_string(),
            Some(j) => j.class.label(margin),
            None => "–".into(),
        };
        let marked = j.is_some_and(|j| matches!(j.class, Class::Higher | Class::Lower));
        rows.push(vec![
            Cell::plain(c.steer.clone()),
            Cell::plain(c.target.code()),
            Cell::plain(if c.neurons == 0 && op == DIFFMEAN { "vector".into() } else { c.neurons.to_string() }),
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
        .filter(|&(i, _)| judged[i].is_some_and(|j| j.class == Class::Higher))
        .map(|(_, (op, c))| format!("{op}→{}", c.target.code()))
        .collect();
    let summary = format!(
        "{} of {} tested cells force the target language beyond the random control after correction{}",
        forcing.len(),
        judged.iter().flatten().count(),
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
    let versus = diffmean_table(&cells, &|i| judged[i].map(|j| j.class), &runs, margin);
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
    let (versus_table, versus_doc) = versus.map_or((None, Value::Null), |(t, d)| (Some(t), d));
    Some((table, versus_table, json!({"cells": out, "missing": missing, "settings": settings, "diffmean": versus_doc})))
}

/// CLaS-Bench's claim tested head to head: per target, the difference-of-means vector's share in the target minus
/// each neuron operation's, paired over the same prompts, one Holm family with the run's forcing margin. A
/// comparison where neither side forces the target beyond its own random control (`class_of` a forcing cell), or the
/// neuron side has no neuron, cannot test the claim. `None` when the run has no diffmean cell.
fn diffmean_table(
    cells: &[(String, ForcingCell)],
    class_of: &dyn Fn(usize) -> Option<Class>,
    runs: &BTreeMap<(String, String), (Vec<Judged>, Value)>,
    margin: f64,
) -> Option<(Table, Value)> {
    struct Comparison {
        target: String,
        op: String,
        shares: (f64, f64),
        delta: Option<lsn_eval::Delta>,
        cannot: Option<&'static str>,
    }
    let forces = |i: usize| class_of(i) == Some(Class::Higher);
    let mut comps = Vec::new();
    for (d, (_, dc)) in cells.iter().enumerate().filter(|(_, (op, _))| op == DIFFMEAN) {
        let target = dc.target.code().to_string();
        for (n, (op, nc)) in cells.iter().enumerate().filter(|(_, (op, c))| op != DIFFMEAN && c.target == dc.target) {
            let run = |op: &str| runs.get(&(op.to_string(), target.clone()));
            let delta = match (run(DIFFMEAN), run(op)) {
                (Some((dv, dp)), Some((nv, np))) if dp == np => versus(dc.target, nv, dv),
                _ => None,
            };
            let cannot = if untestable(&cells[n]) {
                Some("cannot test (no neuron of the target)")
            } else if !forces(d) && !forces(n) {
                Some("cannot test (neither forces beyond its random control)")
            } else if delta.is_none() {
                Some("cannot test (not run on the same prompts)")
            } else {
                None
            };
            comps.push(Comparison {
                target: target.clone(),
                op: op.clone(),
                shares: (dc.share.mean, nc.share.mean),
                delta,
                cannot,
            });
        }
    }
    if comps.is_empty() {
        return None;
    }
    let all =
        classify_tested(&comps.iter().map(|c| c.delta.filter(|_| c.cannot.is_none())).collect::<Vec<_>>(), margin);
    let judged: Vec<_> = all.iter().flatten().collect();
    let label = |c: Class| match c {
        Class::Higher => "diffmean higher".to_string(),
        Class::Lower => "neurons higher".to_string(),
        c => c.label(margin),
    };
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for (c, &j) in comps.iter().zip(&all) {
        let verdict = c.cannot.map_or_else(|| j.map_or("–".into(), |j| label(j.class)), String::from);
        let interval =
            c.delta.as_ref().map_or("–".into(), |d| format!("{:+.1} [{:+.1}, {:+.1}]", d.delta, d.lo, d.hi));
        rows.push(vec![
            Cell::plain(c.target.clone()),
            Cell::plain(c.op.clone()),
            Cell::plain(format!("{:.1}", c.shares.0)),
            Cell::plain(format!("{:.1}", c.shares.1)),
            Cell { text: interval, marked: j.is_some_and(|j| matches!(j.class, Class::Higher | Class::Lower)) },
            Cell::plain(verdict.clone()),
        ]);
        out.push(json!({"target": c.target, "operation": c.op, "delta": c.delta, "verdict": verdict,
            "p_holm": j.map(|j| j.p_holm)}));
    }
    let count = |k: Class| judged.iter().filter(|j| j.class == k).count();
    let names = |k: Class| {
        let v: Vec<String> = (0..comps.len())
            .filter(|&i| all[i].is_some_and(|j| j.class == k))
            .map(|i| format!("{}→{}", comps[i].op, comps[i].target))
            .collect();
        v.join(", ")
    };
    let (h, e, l, n) = (count(Class::Higher), count(Class::Equivalent), count(Class::Lower), judged.len());
    let claim = if n == 0 {
        "cannot test: no comparison where either side forces the target".to_string()
    } else if l > 0 {
        format!("contradicted: the neurons force more after correction ({})", names(Class::Lower))
    } else if h + e == n {
        format!("supported: diffmean higher in {h} and equivalent within ±{margin} in {e} of {n} tested comparisons")
    } else {
        format!("inconclusive: diffmean higher in {h}, equivalent in {e}, neither shown in {} of {n}", n - h - e)
    };
    let table = Table {
        id: "forcing-diffmean".into(),
        title: "Language forcing: the difference-of-means vector against the neurons, on the same prompts".into(),
        header: [
            "target",
            "neuron operation",
            "diffmean in target %",
            "neurons in target %",
            "diffmean − neurons",
            "verdict",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        reference_rows: vec![],
        note: format!(
            "CLaS-Bench's claim that a difference-of-means vector steers the language at least as well as language \
             neurons: per target, its share of continuations in the target minus each neuron operation's, paired over \
             the same prompts, Holm–Bonferroni over the tested comparisons, margin ±{margin} points. A comparison \
             where neither side forces the target beyond its own random control, or the neuron side steers no \
             neuron, cannot test the claim."
        ),
        verdict: Some(claim.clone()),
        verdict_class: None,
    };
    Some((table, json!({"comparisons": out, "claim": claim})))
}

fn untestable((op, c): &(String, ForcingCell)) -> bool {
    op != DIFFMEAN && c.neurons == 0
}

#[cfg(test)]
mod tests {
    use lsn_core::Lang;
    use lsn_eval::forcing::cell;

    use super::*;

    /// `n` continuations, the first `k` in `lang` and the rest in English.
    fn judged(n: usize, k: usize, lang: &str) -> Vec<Judged> {
        (0..n)
            .map(|i| Judged {
                ids: vec![1],
                text: String::new(),
                detected: Some(Lang::parse(if i < k { lang } else { "en" }).unwrap()),
                stopped_at_eos: false,
                nll: Some(1.0),
            })
            .collect()
    }

    #[test]
    fn diffmean_is_compared_with_each_neuron_operation_on_the_same_prompts() {
        let vi = Lang::parse("vi").unwrap();
        let (n, plain) = (60, judged(60, 0, "vi"));
        let mut runs = BTreeMap::new();
        let mut cells = Vec::new();
        // diffmean forces every prompt, add a third of them, scale none, and fill-mean steers no neuron.
        for (op, k, neurons) in [("diffmean", 60, 0), ("add", 20, 5), ("scale", 0, 5), ("fill-mean", 0, 0)] {
            let steered = judged(n, k, "vi");
            let mut c = cell(vi, op, &plain, &steered, Some(&plain)).unwrap();
            c.neurons = neurons;
            runs.insert((op.to_string(), "vi".to_string()), (steered, json!(["same prompts"])));
            cells.push((op.to_string(), c));
        }
        // diffmean and add force beyond their controls, scale does not.
        let class_of = |i: usize| Some(if i < 2 { Class::Higher } else { Class::Inconclusive });
        let (t, doc) = diffmean_table(&cells, &class_of, &runs, 2.0).unwrap();
        let verdicts: Vec<&str> = t.rows.iter().map(|r| r[5].text.as_str()).collect();
        assert_eq!(
            verdicts,
            ["diffmean higher", "diffmean higher", "cannot test (no neuron of the target)"],
            "{:?}",
            t.rows
        );
        assert!(t.rows[0][4].text.starts_with("+66.7 [+5") && t.rows[0][4].marked, "{:?}", t.rows[0]);
        assert_eq!(doc["comparisons"][1]["delta"]["delta"], 100.0);
        assert_eq!(
            t.verdict.as_deref(),
            Some("supported: diffmean higher in 2 and equivalent within ±2 in 0 of 2 tested comparisons")
        );
        // Scale forcing nothing and diffmean not forcing either: nothing to test.
        let none = |_: usize| Some(Class::Inconclusive);
        let (t, _) = diffmean_table(&cells, &none, &runs, 2.0).unwrap();
        assert!(t.rows[..2].iter().all(|r| r[5].text == "cannot test (neither forces beyond its random control)"));
        assert!(t.verdict.unwrap().starts_with("cannot test"));
        // Other prompts: no paired difference.
        runs.get_mut(&("add".to_string(), "vi".to_string())).unwrap().1 = json!(["other prompts"]);
        let (t, _) = diffmean_table(&cells, &class_of, &runs, 2.0).unwrap();
        assert_eq!(t.rows[0][5].text, "cannot test (not run on the same prompts)");
        // The neurons forcing more contradicts the claim.
        let mut swapped = cells.clone();
        swapped[0].1.share.mean = 0.0;
        let mut flipped = runs.clone();
        flipped.insert(("diffmean".into(), "vi".into()), (judged(n, 0, "vi"), json!(["same prompts"])));
        flipped.insert(("add".into(), "vi".into()), (judged(n, 60, "vi"), json!(["same prompts"])));
        let (t, _) = diffmean_table(&swapped, &class_of, &flipped, 2.0).unwrap();
        assert!(t.verdict.unwrap().starts_with("contradicted: the neurons force more after correction (add→vi"));
    }
}
