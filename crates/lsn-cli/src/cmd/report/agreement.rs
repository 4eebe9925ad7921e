//! `--backend all`: how far the other backends agree with the study's backend — the neuron sets of every set,
//! method and language, and the base model's predictions example by example.

use std::collections::BTreeMap;
use std::path::Path;

use lsn_eval::{EvalResults, LangResult};
use serde_json::{Value, json};

use super::study::metric;
use super::table::{Cell, Table};
use super::{pct, read_json, task_name};
use crate::cmd::reproduce::plan::{FTL_METHOD, INTERVENTION_METHOD, Plan};

/// `--backend all`: how far the other backends agree with the study's backend on the neuron sets and the base
/// model's predictions.
pub(super) fn agreement_table(
    root: &Path,
    plan: &Plan,
    results: &BTreeMap<String, EvalResults>,
) -> Option<(Table, Value)> {
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
        verdict_class: None,
    };
    Some((table, json!(doc)))
}
