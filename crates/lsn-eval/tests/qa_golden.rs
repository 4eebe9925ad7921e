//! The SQuAD and MLQA metrics against the scripts themselves: `fixtures/golden/qa_metrics.json` holds EM/F1 that
//! MLQA's evaluation script (as lm-evaluation-harness ships it) computed for fixed cases — SQuAD's documented example
//! and cases with non-ASCII punctuation, Devanagari, Vietnamese and CJK (made by `cargo xtask fixtures qa`).

use lsn_eval::qa_metrics::{EmF1, mlqa_scores, squad_scores};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    pred: String,
    golds: Vec<String>,
    lang: String,
    squad: EmF1,
    mlqa: EmF1,
}

#[derive(Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

#[test]
fn squad_and_mlqa_agree_with_the_official_scripts() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/golden/qa_metrics.json");
    let g: Golden = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(g.cases.len() >= 21, "SQuAD's example plus at least 20 cases of ours");
    let close = |a: EmF1, b: EmF1| a.em == b.em && (a.f1 - b.f1).abs() < 1e-9;
    let mut bad = Vec::new();
    for c in &g.cases {
        let golds: Vec<&str> = c.golds.iter().map(String::as_str).collect();
        let (squad, mlqa) = (squad_scores(&c.pred, &golds), mlqa_scores(&c.pred, &golds, &c.lang));
        if !close(squad, c.squad) || !close(mlqa, c.mlqa) {
            bad.push(format!(
                "{:?} vs {:?} ({}): squad {squad:?} want {:?}; mlqa {mlqa:?} want {:?}",
                c.pred, c.golds, c.lang, c.squad, c.mlqa
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
