//! The closing table of `--study all`: each claim beside what its paper reports and what this run measured, with the
//! intervals and the verdict of the table that tests it.

use serde_json::Value;

use super::table::{Cell, Table};

/// `+1.2 [−0.3, +2.7]` from a JSON object with `delta`, `lo`, `hi`.
fn interval(v: &Value, digits: usize) -> String {
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    format!("{:+.digits$} [{:+.digits$}, {:+.digits$}]", f("delta"), f("lo"), f("hi"), digits = digits)
}

/// The Mondal row: every judged table's verdict, and the largest tested difference of the claim's cells.
fn mondal(verdicts: &[Value], deltas: &[Value]) -> (String, String) {
    let judged: Vec<&Value> = verdicts.iter().filter(|v| v["not_run"].as_bool() != Some(true)).collect();
    if judged.is_empty() {
        return ("not run".into(), "–".into());
    }
    let ours: Vec<String> = judged
        .iter()
        .map(|v| {
            let table = v["table"].as_str().unwrap_or("?");
            let largest = deltas
                .iter()
                .filter(|d| d["table"] == v["table"] && d["control"] != true && d["p_holm"].is_number())
                .max_by(|a, b| {
                    a["delta"].as_f64().unwrap_or(f64::MIN).total_cmp(&b["delta"].as_f64().unwrap_or(f64::MIN))
                });
            format!(
                "{table}: {} ({} of {} tested cells conclusive{})",
                v["verdict"].as_str().unwrap_or("?").replace('_', " "),
                v["conclusive"].as_u64().unwrap_or(0),
                v["tested"].as_u64().unwrap_or(0),
                largest.map_or(String::new(), |d| format!("; largest Δ {}", interval(d, 2)))
            )
        })
        .collect();
    let has = |s: &str| judged.iter().any(|v| v["verdict"] == s);
    let verdict = if has("contradicts") {
        "contradicted: a neuron intervention or fine-tune raised a score after correction"
    } else if judged.iter().all(|v| v["verdict"] == "cannot_test") {
        "cannot test: the model under test did not learn the tasks"
    } else if judged.iter().all(|v| matches!(v["verdict"].as_str(), Some("consistent" | "cannot_test"))) {
        "consistent: every testable table is equivalent within the margin or lower"
    } else {
        "inconclusive: no table contradicts the claim, some cannot tell"
    };
    (ours.join("; "), verdict.into())
}

/// A forcing row: one operation's cells (share in the target, steered − control) and how many are higher.
fn forcing(doc: &Value, op: &str) -> (String, String) {
    let cells: Vec<&Value> = doc["cells"].as_array().into_iter().flatten().filter(|c| c["operation"] == op).collect();
    if cells.is_empty() {
        return ("not run".into(), "–".into());
    }
    let ours: Vec<String> = cells
        .iter()
        .map(|c| {
            let cell = &c["cell"];
            let share = &cell["share"];
            format!(
                "{} {:.0}% [{:.0}, {:.0}], vs random {}, ΔNLL {}",
                cell["target"].as_str().unwrap_or("?"),
                share["mean"].as_f64().unwrap_or(f64::NAN),
                share["lo"].as_f64().unwrap_or(f64::NAN),
                share["hi"].as_f64().unwrap_or(f64::NAN),
                if cell["vs_control"].is_object() { interval(&cell["vs_control"], 1) } else { "–".into() },
                if cell["nll_vs_plain"].is_object() { interval(&cell["nll_vs_plain"], 2) } else { "–".into() },
            )
        })
        .collect();
    let verdict_of = |c: &&Value| c["verdict"].as_str().unwrap_or("–").to_string();
    let higher: Vec<String> = cells
        .iter()
        .filter(|c| verdict_of(c) == "higher")
        .map(|c| c["cell"]["target"].as_str().unwrap_or("?").to_string())
        .collect();
    let testable = cells.iter().filter(|c| !verdict_of(c).starts_with("cannot test") && verdict_of(c) != "–").count();
    let verdict = match (higher.len(), testable) {
        (_, 0) => "cannot test".to_string(),
        (h, t) if h == t => format!("supported on every tested target ({})", higher.join(", ")),
        (0, _) => "not supported on any tested target".into(),
        (_, t) => format!("supported on {} of {t} tested targets ({})", higher.len(), higher.join(", ")),
    };
    (ours.join("; "), verdict)
}

/// The CLaS-Bench row: the vector's own cells, then each tested comparison with a neuron operation on the same
/// prompts; the verdict is the head-to-head table's.
fn diffmean(doc: &Value) -> (String, String) {
    let (mut ours, own) = forcing(doc, "diffmean");
    if own == "–" {
        return (ours, own);
    }
    let versus = &doc["diffmean"];
    let tested: Vec<String> = versus["comparisons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["delta"].is_object() && !c["verdict"].as_str().unwrap_or("").starts_with("cannot test"))
        .map(|c| {
            format!(
                "{} diffmean − {} {} {}",
                c["target"].as_str().unwrap_or("?"),
                c["operation"].as_str().unwrap_or("?"),
                interval(&c["delta"], 1),
                c["verdict"].as_str().unwrap_or("?")
            )
        })
        .collect();
    if !tested.is_empty() {
        ours = format!("{ours}; {}", tested.join("; "));
    }
    match versus["claim"].as_str() {
        Some(claim) => (ours, format!("{claim} (forcing on its own: {own})")),
        None => (ours, format!("{own}; not compared with the neurons (no neuron operation ran)")),
    }
}

/// The subnetwork row: each target's held-out NLL difference against each control, and the table's verdict.
fn subnetwork(doc: &Value) -> (String, String) {
    let Some(cells) = doc["cells"].as_array() else { return ("not run".into(), "–".into()) };
    let ours: Vec<String> = cells
        .iter()
        .filter(|c| c["versus"] != "base")
        .map(|c| {
            format!(
                "{} {} vs {}: {} {}",
                c["target"].as_str().unwrap_or("?"),
                c["score"].as_str().unwrap_or("?"),
                c["versus"].as_str().unwrap_or("?"),
                interval(c, if c["metric"] == "nll" { 3 } else { 1 }),
                c["label"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let by: Vec<String> = doc["by_comparison"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("vs {k}: {}", v.as_str().unwrap_or("?")))
        .collect();
    (ours.join("; "), format!("{} ({})", doc["claim"].as_str().unwrap_or("?"), by.join(", ")))
}

/// The summary table from the judged tables' verdicts and differences and the forcing and subnetwork sections.
pub fn summary_table(verdicts: &[Value], deltas: &[Value], forcing_doc: &Value, subnetwork_doc: &Value) -> Table {
    let mut rows = Vec::new();
    let mut row = |claim: &str, source: &str, reported: &str, (ours, verdict): (String, String)| {
        rows.push(vec![claim, source, reported, &ours, &verdict].into_iter().map(Cell::plain).collect::<Vec<_>>());
    };
    row(
        "Language-specific neurons do not facilitate cross-lingual transfer: overwriting them at test time, or \
         training them on English task data, does not raise XNLI/XQuAD scores in the target language",
        "Mondal et al. 2025",
        "no consistent gain, no intervals (Llama-3.1-8B XNLI vi: 80.61 without intervention, 76.54–81.03 under the \
         fills; FTL vi 80.07 vs null 80.61)",
        mondal(verdicts, deltas),
    );
    row(
        "Deactivating the source language's LAPE neurons and adding the target's mean activation forces the output \
         language (arithmetic α = 1)",
        "Language Arithmetics (Gurgurov et al. 2025)",
        "forcing succeeds, better for high-resource languages, additive better than replacement (Llama-3.1-8B, \
         Mistral-Nemo-12B, Aya-Expanse; the abstract states no rate)",
        forcing(forcing_doc, "arithmetic"),
    );
    row(
        "Adding α × the target's mean activation to its LAPE neurons forces the output language (add α = 1)",
        "Language Arithmetics (Gurgurov et al. 2025)",
        "as above",
        forcing(forcing_doc, "add"),
    );
    row(
        "A difference-of-means vector in the residual stream steers the language at least as well as the neurons",
        "CLaS-Bench (Gurgurov et al. 2026)",
        "DiffMean outperforms every other method, language neurons included (abstract; Llama-3.1-8B-Instruct, \
         Aya-Expanse-8B)",
        diffmean(forcing_doc),
    );
    row(
        "Training only the target language's LAPE neurons on its text beats random-subset training and LoRA of the \
         same budget",
        "Gurgurov et al., arXiv 2510.13580",
        "beats full, FFN-only, LoRA, IA3 and random-subset training while updating 0.2–1% of the parameters \
         (Llama-3.1-8B, Mistral-Nemo-12B, Aya-Expanse-8B; 12 languages; the abstract states no effect size)",
        subnetwork(subnetwork_doc),
    );
    Table {
        id: "summary".into(),
        title: "The claims side by side".into(),
        header: ["claim", "source", "its reported effect", "ours, with 95% intervals", "verdict"]
            .map(String::from)
            .to_vec(),
        rows,
        reference_rows: vec![],
        note: "Reported effects are from the papers' abstracts and, for Mondal et al., the authors' result files \
               (DESIGN §11); ours are this run's tables above, at this run's scale and model. A verdict holds for this \
               model only: the papers ran 8–12B models."
            .into(),
        verdict: None,
        verdict_class: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_claim_gets_its_verdict_from_its_table() {
        let verdicts = [
            json!({"table": "xnli-int", "verdict": "consistent", "conclusive": 7, "tested": 9}),
            json!({"table": "xnli-ftl", "verdict": "cannot_test", "conclusive": 0, "tested": 0}),
        ];
        let deltas =
            [json!({"table": "xnli-int", "control": false, "p_holm": 0.5, "delta": 1.0, "lo": -0.5, "hi": 2.5})];
        let forcing = json!({"cells": [
            {"operation": "arithmetic", "verdict": "higher", "cell": {"target": "vi", "share": {"mean": 100.0, "lo": 100.0, "hi": 100.0},
             "vs_control": {"delta": 100.0, "lo": 100.0, "hi": 100.0}, "nll_vs_plain": {"delta": 1.2, "lo": 1.0, "hi": 1.4}}},
            {"operation": "arithmetic", "verdict": "inconclusive", "cell": {"target": "hi", "share": {"mean": 0.0, "lo": 0.0, "hi": 0.0}}},
            {"operation": "diffmean", "verdict": "higher", "cell": {"target": "vi", "share": {"mean": 90.0, "lo": 80.0, "hi": 98.0}}}],
            "diffmean": {"claim": "supported: diffmean higher in 1 and equivalent within ±2 in 0 of 1 tested comparisons",
                "comparisons": [
                    {"target": "vi", "operation": "arithmetic", "verdict": "diffmean higher",
                     "delta": {"delta": 10.0, "lo": 2.0, "hi": 20.0}},
                    {"target": "vi", "operation": "scale", "verdict": "cannot test (no neuron of the target)", "delta": null}]}});
        let sub = json!({"claim": "not supported", "by_comparison": {"random neurons": "not better"}, "cells": [
            {"target": "vi", "score": "held-out NLL/token", "versus": "random neurons", "metric": "nll", "delta": 0.001,
             "lo": -0.002, "hi": 0.004, "label": "≡ ±0.02"}]});
        let t = summary_table(&verdicts, &deltas, &forcing, &sub);
        let text = |r: usize, c: usize| t.rows[r][c].text.clone();
        assert!(text(0, 4).starts_with("consistent"), "{}", text(0, 4));
        assert!(
            text(0, 3).contains("largest Δ +1.00 [-0.50, +2.50]") || text(0, 3).contains("largest Δ +1.00"),
            "{}",
            text(0, 3)
        );
        assert_eq!(text(1, 4), "supported on 1 of 2 tested targets (vi)");
        assert!(text(1, 3).contains("vi 100% [100, 100], vs random +100.0"), "{}", text(1, 3));
        assert_eq!(text(2, 3), "not run");
        assert!(
            text(3, 3).ends_with("; vi diffmean − arithmetic +10.0 [+2.0, +20.0] diffmean higher"),
            "{}",
            text(3, 3)
        );
        assert!(
            text(3, 4).starts_with("supported: diffmean higher in 1") && text(3, 4).contains("(forcing on its own:")
        );
        assert!(text(4, 4).starts_with("not supported (vs random neurons: not better)"), "{}", text(4, 4));
        assert!(text(4, 3).contains("vi held-out NLL/token vs random neurons: +0.001 [-0.002, +0.004] ≡ ±0.02"));
    }
}
