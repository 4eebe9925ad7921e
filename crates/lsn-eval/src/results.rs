//! The results of one evaluation as plain data (what `results.json` holds): per language, every example's
//! prediction, gold and per-example scores, and each score's mean with its bootstrap interval; the markdown table;
//! and the paired comparison of two results over the same examples.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bootstrap::{Delta, Interval, bootstrap_mean, paired_runs_bootstrap, runs_bootstrap, runs_mean};
use crate::verdict::{Class, Untestable, classify};
use crate::{Error, Result};

/// One example: a key that is the same for the same example in another run (XNLI: its row; XQuAD: its question
/// id), its per-example scores (0–100), and what was predicted against what was gold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleResult {
    pub key: String,
    pub metrics: BTreeMap<String, f64>,
    pub detail: serde_json::Value,
}

/// One language's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LangResult {
    pub lang: String,
    /// The data file read and its sha256.
    pub data_file: String,
    pub data_sha256: String,
    /// Examples the task dropped before evaluation (XQuAD: prompts of ≥ 511 tokens), by key.
    pub dropped: Vec<String>,
    /// Each metric's mean over the examples with its 95% bootstrap interval.
    pub scores: BTreeMap<String, Interval>,
    pub examples: Vec<ExampleResult>,
}

impl LangResult {
    /// The share (percent) of examples predicted as each label, for a classification task whose examples' `detail`
    /// holds a string `pred` (XNLI); `None` when any example lacks one. A fine-tune that transfers badly often
    /// predicts one label for most of a language, which the accuracy alone does not show.
    pub fn prediction_shares(&self) -> Option<BTreeMap<String, f64>> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for e in &self.examples {
            *counts.entry(e.detail.get("pred")?.as_str()?.to_string()).or_default() += 1;
        }
        let n = self.examples.len().max(1) as f64;
        Some(counts.into_iter().map(|(k, c)| (k, 100.0 * c as f64 / n)).collect())
    }

    /// Fills `scores` from the examples.
    pub fn summarize(&mut self, resamples: usize, seed: u64) {
        self.scores.clear();
        let names: Vec<String> = self.examples.first().map(|e| e.metrics.keys().cloned().collect()).unwrap_or_default();
        for m in names {
            let v: Vec<f64> = self.examples.iter().map(|e| e.metrics.get(&m).copied().unwrap_or(f64::NAN)).collect();
            if let Some(i) = bootstrap_mean(&v, resamples, seed) {
                self.scores.insert(m, i);
            }
        }
    }
}

/// A whole evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResults {
    pub task: String,
    pub protocol: String,
    pub split: String,
    /// Everything that determines the numbers: model identity, backend, batch, limit, intervention, versions.
    pub config: serde_json::Value,
    pub resamples: usize,
    pub seed: u64,
    pub languages: Vec<LangResult>,
}

/// Formats a score and its interval: `41.2 [38.1, 44.0]`.
pub fn fmt_interval(i: &Interval) -> String {
    format!("{:.2} [{:.2}, {:.2}]", i.mean, i.lo, i.hi)
}

impl EvalResults {
    /// The metric names in a stable order (those of the first language).
    pub fn metric_names(&self) -> Vec<String> {
        self.languages.first().map(|l| l.scores.keys().cloned().collect()).unwrap_or_default()
    }

    /// One row per language, one column per metric: mean and 95% interval.
    pub fn markdown(&self, title: &str) -> String {
        let metrics = self.metric_names();
        // Classification: each language's prediction shares, a column after the scores when every language has them.
        let shares: Option<Vec<BTreeMap<String, f64>>> =
            if self.task == "xnli" { self.languages.iter().map(LangResult::prediction_shares).collect() } else { None };
        let mut s = format!("## {title}\n\n| lang | n | dropped |");
        for m in &metrics {
            s += &format!(" {m} |");
        }
        if shares.is_some() {
            s += " predicted (% of examples) |";
        }
        s += "\n|---|---:|---:|";
        s += &"---|".repeat(metrics.len() + usize::from(shares.is_some()));
        s += "\n";
        for (i, l) in self.languages.iter().enumerate() {
            s += &format!("| {} | {} | {} |", l.lang, l.examples.len(), l.dropped.len());
            for m in &metrics {
                s += &format!(" {} |", l.scores.get(m).map(fmt_interval).unwrap_or_default());
            }
            if let Some(p) = shares.as_ref().map(|all| &all[i]) {
                let cells: Vec<String> = p.iter().map(|(k, v)| format!("{k} {v:.0}")).collect();
                s += &format!(" {} |", cells.join(" · "));
            }
            s += "\n";
        }
        s += &format!(
            "\nScores in percent; brackets: 95% percentile bootstrap interval ({} resamples, seed {}).\n",
            self.resamples, self.seed
        );
        s
    }
}

/// One metric of one language in two runs, with the paired difference `b − a`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compared {
    pub lang: String,
    pub metric: String,
    pub a: f64,
    pub b: f64,
    pub delta: Delta,
}

/// The paired comparison of two results of the same task over the same examples: for every language and metric
/// both hold, the mean difference `b − a` with its 95% paired-bootstrap interval.
pub fn compare(a: &EvalResults, b: &EvalResults, resamples: usize, seed: u64) -> Result<Vec<Compared>> {
    compare_runs(std::slice::from_ref(a), std::slice::from_ref(b), resamples, seed)
}

/// [`compare`] with several runs per side (e.g. one fine-tune per training seed), all of one task over the same
/// examples: for every language and metric every run holds, the difference of the sides' mean scores with the
/// interval of [`runs_bootstrap`] (runs and examples resampled), which covers training variance; one run per side is
/// [`compare`].
pub fn compare_runs(a: &[EvalResults], b: &[EvalResults], resamples: usize, seed: u64) -> Result<Vec<Compared>> {
    compare_sides(a, b, resamples, seed, false, |_, _| true)
}

/// [`compare_runs`] of runs paired by position — run `i` of `b` is run `i` of `a` changed in one thing (an
/// intervention on the fine-tune of training seed `i`) — by the mean of each pair's difference, with the interval of
/// [`paired_runs_bootstrap`] (pairs and examples resampled): the training variance both share cancels.
pub fn compare_paired_runs(a: &[EvalResults], b: &[EvalResults], resamples: usize, seed: u64) -> Result<Vec<Compared>> {
    compare_sides(a, b, resamples, seed, true, |_, _| true)
}

/// One language's one metric of [`compare_runs`] (`paired`: of [`compare_paired_runs`]), without resampling the
/// others: what a report cell needs.
pub fn compare_metric(
    a: &[EvalResults],
    b: &[EvalResults],
    lang: &str,
    metric: &str,
    paired: bool,
    (resamples, seed): (usize, u64),
) -> Result<Compared> {
    let mut one = compare_sides(a, b, resamples, seed, paired, |l, m| l == lang && m == metric)?;
    one.pop().ok_or_else(|| Error::Incomparable(format!("{lang}: no {metric} in every run")))
}

/// Fails when the runs evaluated different models (the base model each records: config, tokenizer and weights; an
/// adapter or intervention on the same base is what a comparison is for). Runs that record no model identity (an
/// older lsn's) pass.
pub fn check_same_model(runs: &[&EvalResults]) -> Result<()> {
    let id = |r: &EvalResults| serde_json::from_value::<lsn_core::ModelIdentity>(r.config["identity"].clone()).ok();
    let known: Vec<(&EvalResults, lsn_core::ModelIdentity)> =
        runs.iter().filter_map(|r| id(r).map(|i| (*r, i))).collect();
    let Some((first, base)) = known.first() else { return Ok(()) };
    match known.iter().find(|(_, i)| !i.same_model(base)) {
        Some((r, other)) => Err(Error::Incomparable(format!(
            "the runs evaluated different models ({} and {}, differing in {}): to compare two models on the same \
             examples on purpose, pass --across-models",
            first.config["model"].as_str().unwrap_or("?"),
            r.config["model"].as_str().unwrap_or("?"),
            base.difference(other)
        ))),
        None => Ok(()),
    }
}

fn compare_sides(
    a: &[EvalResults],
    b: &[EvalResults],
    resamples: usize,
    seed: u64,
    paired: bool,
    keep: impl Fn(&str, &str) -> bool,
) -> Result<Vec<Compared>> {
    let (Some(first), false) = (a.first(), b.is_empty()) else {
        return Err(Error::Incomparable("each side needs at least one run".into()));
    };
    if paired && a.len() != b.len() {
        return Err(Error::Incomparable(format!(
            "paired runs need as many runs on each side ({} and {}): run i of B pairs with run i of A",
            a.len(),
            b.len()
        )));
    }
    if let Some(other) = a.iter().chain(b).find(|r| r.task != first.task) {
        return Err(Error::Incomparable(format!("one is {}, another {}", first.task, other.task)));
    }
    if let Some(other) = a.iter().chain(b).find(|r| r.split != first.split) {
        return Err(Error::Incomparable(format!(
            "one evaluated the {} split, another the {} split: examples pair by key (XNLI: row number), so runs of \
             different splits would pair unrelated examples; compare runs of one split",
            first.split, other.split
        )));
    }
    let mut out = Vec::new();
    for la in first.languages.iter().filter(|la| la.scores.keys().any(|m| keep(&la.lang, m))) {
        let in_every: Option<Vec<&LangResult>> =
            a.iter().chain(b).map(|r| r.languages.iter().find(|l| l.lang == la.lang)).collect();
        let Some(langs) = in_every else { continue };
        if let Some(l) = langs.iter().find(|l| l.data_sha256 != la.data_sha256) {
            return Err(Error::Incomparable(format!(
                "{}: the runs read different data ({} with sha256 {} and {} with sha256 {}): the same split in \
                 another version; evaluate both on the same data files",
                la.lang,
                la.data_file,
                lsn_core::identity::short(&la.data_sha256),
                l.data_file,
                lsn_core::identity::short(&l.data_sha256)
            )));
        }
        let mut sorted_a: Vec<&str> = la.examples.iter().map(|e| e.key.as_str()).collect();
        sorted_a.sort_unstable();
        let mut by_key = Vec::with_capacity(langs.len());
        for l in &langs {
            let keyed: BTreeMap<&str, &ExampleResult> = l.examples.iter().map(|e| (e.key.as_str(), e)).collect();
            if sorted_a != keyed.keys().copied().collect::<Vec<_>>() {
                return Err(Error::Incomparable(format!(
                    "{}: the runs hold different examples ({} and {}); compare runs over the same examples (same \
                     split, --limit and dropped prompts)",
                    la.lang,
                    la.examples.len(),
                    l.examples.len()
                )));
            }
            by_key.push(keyed);
        }
        for metric in la.scores.keys().filter(|m| keep(&la.lang, m) && langs.iter().all(|l| l.scores.contains_key(*m)))
        {
            // Every run's scores in the first run's example order.
            let scores: Vec<Vec<f64>> = by_key
                .iter()
                .map(|keyed| {
                    la.examples
                        .iter()
                        .map(|e| keyed[e.key.as_str()].metrics.get(metric).copied().unwrap_or(f64::NAN))
                        .collect()
                })
                .collect();
            let (sa, sb) = scores.split_at(a.len());
            let delta = if paired {
                paired_runs_bootstrap(sa, sb, resamples, seed)
            } else {
                runs_bootstrap(sa, sb, resamples, seed)
            }
            .ok_or_else(|| Error::Incomparable(format!("{}: no examples", la.lang)))?;
            let side_mean =
                |ls: &[&LangResult]| ls.iter().map(|l| l.scores[metric].mean).sum::<f64>() / ls.len() as f64;
            out.push(Compared {
                lang: la.lang.clone(),
                metric: metric.clone(),
                a: side_mean(&langs[..a.len()]),
                b: side_mean(&langs[a.len()..]),
                delta,
            });
        }
    }
    if out.is_empty() {
        return Err(Error::Incomparable("the runs share no language and metric".into()));
    }
    Ok(out)
}

/// The mean of `metric` on `lang` over several runs of the same examples (one per training seed), with intervals
/// that resample the runs and the examples (a [`Delta`] from 0): how well a fine-tune does, training noise included.
pub fn runs_score(runs: &[EvalResults], lang: &str, metric: &str, resamples: usize, seed: u64) -> Result<Delta> {
    let langs: Vec<&LangResult> = runs.iter().filter_map(|r| r.languages.iter().find(|l| l.lang == lang)).collect();
    let Some(first) = langs.first().filter(|_| langs.len() == runs.len()) else {
        return Err(Error::Incomparable(format!("{lang}: not in every run")));
    };
    let mut scores = Vec::with_capacity(langs.len());
    for l in &langs {
        let keyed: BTreeMap<&str, &ExampleResult> = l.examples.iter().map(|e| (e.key.as_str(), e)).collect();
        let v: Option<Vec<f64>> = first
            .examples
            .iter()
            .map(|e| keyed.get(e.key.as_str()).and_then(|x| x.metrics.get(metric)).copied())
            .collect();
        match v {
            Some(v) if keyed.len() == first.examples.len() => scores.push(v),
            _ => return Err(Error::Incomparable(format!("{lang}: the runs hold different examples or lack {metric}"))),
        }
    }
    runs_mean(&scores, resamples, seed).ok_or_else(|| Error::Incomparable(format!("{lang}: no examples")))
}

/// Why the runs of a model under test (one per training seed, all of one task) cannot show an effect on `lang`: XNLI
/// accuracy whose interval over runs and examples includes chance, or XQuAD without an exact match or with answers
/// that do not end ([`crate::verdict::xnli_check`], [`crate::verdict::xquad_check`]). `None` for another task, or
/// when it can.
pub fn untestable(runs: &[EvalResults], lang: &str, resamples: usize, seed: u64) -> Option<Untestable> {
    match runs.first()?.task.as_str() {
        "xnli" => match runs_score(runs, lang, "accuracy", resamples, seed) {
            Ok(acc) => crate::verdict::xnli_check(&acc),
            Err(e) => Some(Untestable::Unscored { why: e.to_string() }),
        },
        "xquad" => {
            let langs: Vec<&LangResult> =
                runs.iter().filter_map(|r| r.languages.iter().find(|l| l.lang == lang)).collect();
            let em = langs.iter().filter_map(|l| l.scores.get("paper_em").map(|i| i.mean)).sum::<f64>()
                / langs.len().max(1) as f64;
            let (ended, all) = langs.iter().flat_map(|l| &l.examples).fold((0usize, 0usize), |(e, n), x| {
                (
                    e + usize::from(x.detail.get("stopped_at_eos").and_then(serde_json::Value::as_bool) == Some(true)),
                    n + 1,
                )
            });
            crate::verdict::xquad_check(em, 100.0 * ended as f64 / all.max(1) as f64)
        }
        _ => None,
    }
}

/// The comparison as a markdown table, each row classed by [`classify`] over all rows (Holm's correction over
/// them; equivalence within ±`margin` by the 90% interval).
pub fn compare_markdown(rows: &[Compared], a: &str, b: &str, margin: f64) -> String {
    let judged = classify(&rows.iter().map(|r| r.delta).collect::<Vec<_>>(), margin);
    let mut s = String::from(
        "| lang | metric | A | B | Δ = B − A [95% CI] | 90% CI | p (Holm) | class |\n|---|---|---:|---:|---|---|---:|---|\n",
    );
    for (r, j) in rows.iter().zip(&judged) {
        s += &format!(
            "| {} | {} | {:.2} | {:.2} | {:+.2} [{:+.2}, {:+.2}] | [{:+.2}, {:+.2}] | {:.3} | {} |\n",
            r.lang,
            r.metric,
            r.a,
            r.b,
            r.delta.delta,
            r.delta.lo,
            r.delta.hi,
            r.delta.lo90,
            r.delta.hi90,
            j.p_holm,
            j.class.label(margin)
        );
    }
    let runs = rows.first().map_or(1, |r| r.delta.runs);
    s += &format!(
        "\nA = {a}\nB = {b}\n{}; classes: higher / lower when the Holm-adjusted bootstrap p-value over these {} rows \
         is at most 0.05, ≡ ±{margin} (equivalent) when the 90% interval, taken no narrower than Δ ± 100·(1 − \
         0.05^(1/n)) (what n examples resolve), lies inside [−{margin}, +{margin}] (TOST at 5%), inconclusive \
         otherwise.{}\n",
        if runs > 1 { "Bootstrap over the runs and the examples" } else { "Paired bootstrap over the same examples" },
        rows.len(),
        if runs == 1 {
            " One run per side: the interval covers the examples, not training noise — to compare two trainings, \
             give each side one results.json per training seed."
        } else {
            ""
        }
    );
    s
}

/// The class of each row of a comparison (see [`compare_markdown`]).
pub fn compare_classes(rows: &[Compared], margin: f64) -> Vec<Class> {
    classify(&rows.iter().map(|r| r.delta).collect::<Vec<_>>(), margin).into_iter().map(|j| j.class).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(values: &[f64], keys_rev: bool) -> EvalResults {
        let mut examples: Vec<ExampleResult> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| ExampleResult {
                key: i.to_string(),
                metrics: BTreeMap::from([("accuracy".to_string(), v)]),
                detail: serde_json::Value::Null,
            })
            .collect();
        if keys_rev {
            examples.reverse();
        }
        let mut l = LangResult {
            lang: "vi".into(),
            data_file: "x".into(),
            data_sha256: "y".into(),
            dropped: vec![],
            scores: BTreeMap::new(),
            examples,
        };
        l.summarize(500, 3);
        EvalResults {
            task: "xnli".into(),
            protocol: "zero_shot".into(),
            split: "test".into(),
            config: serde_json::Value::Null,
            resamples: 500,
            seed: 3,
            languages: vec![l],
        }
    }

    #[test]
    fn xnli_tables_show_the_prediction_shares() {
        let mut r = run(&[100.0, 0.0, 0.0, 100.0], false);
        for (e, p) in r.languages[0].examples.iter_mut().zip(["neutral", "neutral", "entailment", "neutral"]) {
            e.detail = serde_json::json!({"gold": "neutral", "pred": p});
        }
        let shares = r.languages[0].prediction_shares().unwrap();
        assert_eq!(shares, BTreeMap::from([("entailment".to_string(), 25.0), ("neutral".to_string(), 75.0)]));
        let md = r.markdown("t");
        assert!(md.contains("| predicted (% of examples) |"), "{md}");
        assert!(md.contains("| entailment 25 · neutral 75 |"), "{md}");
        // An example without a string prediction (or another task) leaves the column out.
        r.languages[0].examples[0].detail = serde_json::Value::Null;
        assert!(r.languages[0].prediction_shares().is_none());
        assert!(!r.markdown("t").contains("predicted"));
    }

    #[test]
    fn compares_by_example_key() {
        let a: Vec<f64> = (0..400).map(|i| if i % 2 == 0 { 100.0 } else { 0.0 }).collect();
        let mut b = a.clone();
        for x in b.iter_mut().skip(1).step_by(2).take(40) {
            *x = 100.0;
        }
        // B's examples are stored in another order: pairing goes by key, not position.
        let rows = compare(&run(&a, false), &run(&b, true), 1000, 1).unwrap();
        assert_eq!(rows.len(), 1);
        assert!((rows[0].delta.delta - 10.0).abs() < 1e-9 && rows[0].delta.excludes_zero, "{:?}", rows[0]);
        let one = compare_metric(&[run(&a, false)], &[run(&b, true)], "vi", "accuracy", false, (1000, 1)).unwrap();
        assert_eq!(one, rows[0], "one metric alone is the same comparison");
        assert!(compare_metric(&[run(&a, false)], &[run(&b, true)], "hi", "accuracy", false, (10, 1)).is_err());
        let md = compare_markdown(&rows, "a.json", "b.json", 2.0);
        assert!(md.contains("| vi | accuracy | 50.00 | 60.00 | +10.00 ["), "{md}");
        let e = compare(&run(&a, false), &run(&b[..300], false), 100, 1).unwrap_err().to_string();
        assert!(e.contains("different examples (400 and 300)"), "{e}");
        let md = run(&a, false).markdown("XNLI");
        assert!(md.contains("| vi | 400 | 0 | 50.00 ["), "{md}");
    }

    #[test]
    fn runs_of_other_splits_data_or_models_are_not_compared() {
        let a = run(&[100.0, 0.0, 100.0], false);
        let mut dev = a.clone();
        dev.split = "dev".into();
        let e = compare(&a, &dev, 100, 1).unwrap_err().to_string();
        assert!(e.contains("the test split, another the dev split"), "{e}");
        let mut edited = a.clone();
        edited.languages[0].data_sha256 = "z".into();
        let e = compare(&a, &edited, 100, 1).unwrap_err().to_string();
        assert!(e.contains("vi: the runs read different data"), "{e}");
        let with = |w: &str| {
            let mut r = a.clone();
            r.config = serde_json::json!({"model": w, "identity": {"config_sha256": "c", "tokenizer_sha256": "t",
                "weights_sha256": w}});
            r
        };
        assert!(check_same_model(&[&with("m1"), &with("m1"), &a]).is_ok(), "no identity recorded: not judged");
        let e = check_same_model(&[&with("m1"), &with("m2")]).unwrap_err().to_string();
        assert!(
            e.contains("different models (m1 and m2, differing in weights m1 vs m2)") && e.contains("--across-models"),
            "{e}"
        );
    }
}
