//! The PPXC table: the relative perplexity change when a language's neurons are zeroed, with the random control.

use serde_json::{Value, json};

use super::table::{Cell, Table};

/// PPXC of set 1's LAPE neurons (and the random control): relative perplexity change (%).
pub(super) fn ppxc_table(doc: &Value) -> Option<(Table, Value)> {
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
        verdict_class: None,
    };
    Some((table, summary))
}
