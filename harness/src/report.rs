//! What the suite found: one `Check` per case × backend, one `PairRow` per statistic × backend pair, and the two
//! tables `cargo xtask conformance` prints.

use std::fmt::Write as _;

use serde::Serialize;

/// A case's verdict on one backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail(String),
    /// The backend cannot run the case (from its capabilities) or an input is absent; the reason says which.
    Skip(String),
    /// The backend whose results the other backends are compared with in a cross-backend case.
    Reference,
}

/// One case on one backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub case: String,
    pub backend: String,
    pub outcome: Outcome,
    /// The largest deviation the comparison saw, and what it measures.
    pub worst: Option<f64>,
    pub measure: String,
    pub tolerance: Option<f64>,
    /// Anything the reader should know (e.g. neurons within ε of a cut).
    pub note: String,
}

impl Check {
    /// A measured comparison: passes when `worst ≤ tolerance`.
    pub fn measured(case: &str, backend: &str, measure: &str, worst: f64, tolerance: f64, note: String) -> Self {
        let outcome = if worst <= tolerance {
            Outcome::Pass
        } else {
            Outcome::Fail(format!("{measure} = {worst:.3e} > {tolerance:.1e}"))
        };
        Self {
            case: case.into(),
            backend: backend.into(),
            outcome,
            worst: Some(worst),
            measure: measure.into(),
            tolerance: Some(tolerance),
            note,
        }
    }

    /// Fails a passing check when a second measure (described in its note) is over its own tolerance.
    pub fn fail_if(mut self, over: bool) -> Self {
        if over && self.outcome == Outcome::Pass {
            self.outcome = Outcome::Fail(format!("over tolerance: {}", self.note));
        }
        self
    }

    /// A case that could not run or compare.
    pub fn failed(case: &str, backend: &str, reason: String) -> Self {
        Self::plain(case, backend, Outcome::Fail(reason))
    }

    pub fn skipped(case: &str, backend: &str, reason: String) -> Self {
        Self::plain(case, backend, Outcome::Skip(reason))
    }

    fn plain(case: &str, backend: &str, outcome: Outcome) -> Self {
        Self {
            case: case.into(),
            backend: backend.into(),
            outcome,
            worst: None,
            measure: String::new(),
            tolerance: None,
            note: String::new(),
        }
    }
}

/// One statistic compared between two backends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairRow {
    pub a: String,
    pub b: String,
    pub what: String,
    pub value: f64,
    pub note: String,
}

/// Everything one run of the suite found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub backends: Vec<String>,
    pub checks: Vec<Check>,
    pub pairs: Vec<PairRow>,
}

impl Report {
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |f: fn(&Outcome) -> bool| self.checks.iter().filter(|c| f(&c.outcome)).count();
        (n(|o| matches!(o, Outcome::Pass)), n(|o| matches!(o, Outcome::Fail(_))), n(|o| matches!(o, Outcome::Skip(_))))
    }

    /// The case × backend table (markdown): verdict and worst deviation per cell, then the failures and skips.
    pub fn case_table(&self) -> String {
        let mut cases: Vec<&str> = Vec::new();
        for c in &self.checks {
            if !cases.contains(&c.case.as_str()) {
                cases.push(&c.case);
            }
        }
        let mut s = String::from("| case | measure | tolerance |");
        for b in &self.backends {
            let _ = write!(s, " {b} |");
        }
        s.push_str("\n|---|---|---|");
        s.push_str(&"---|".repeat(self.backends.len()));
        s.push('\n');
        for case in cases {
            let of_case = || self.checks.iter().filter(|c| c.case == case);
            let first = of_case()
                .find(|c| !c.measure.is_empty())
                .or_else(|| of_case().next())
                .expect("case came from the checks");
            let tol = first.tolerance.map_or("—".into(), fmt_num);
            let _ = write!(s, "| {case} | {} | {tol} |", if first.measure.is_empty() { "—" } else { &first.measure });
            for b in &self.backends {
                let cell = match self.checks.iter().find(|c| c.case == case && &c.backend == b) {
                    None => "—".to_owned(),
                    Some(c) => {
                        let verdict = match &c.outcome {
                            Outcome::Pass => "pass",
                            Outcome::Fail(_) => "**FAIL**",
                            Outcome::Skip(_) => "skip",
                            Outcome::Reference => "ref",
                        };
                        match c.worst {
                            Some(w) => format!("{verdict} {}", fmt_num(w)),
                            None => verdict.to_owned(),
                        }
                    }
                };
                let _ = write!(s, " {cell} |");
            }
            s.push('\n');
        }
        for c in &self.checks {
            match &c.outcome {
                Outcome::Fail(r) => {
                    let _ = writeln!(s, "\nFAIL {} on {}: {r}", c.case, c.backend);
                }
                Outcome::Skip(r) => {
                    let _ = writeln!(s, "\nskip {} on {}: {r}", c.case, c.backend);
                }
                Outcome::Pass | Outcome::Reference => {}
            }
            if !c.note.is_empty() {
                let _ = writeln!(s, "\nnote {} on {}: {}", c.case, c.backend, c.note);
            }
        }
        s
    }

    /// The pairwise table (markdown): per backend pair and statistic, the largest difference.
    pub fn pair_table(&self) -> String {
        let mut s = String::from("| backends | statistic | max difference | note |\n|---|---|---|---|\n");
        for p in &self.pairs {
            let _ = writeln!(s, "| {} vs {} | {} | {} | {} |", p.a, p.b, p.what, fmt_num(p.value), p.note);
        }
        s
    }
}

/// Numbers as the tables print them: integers plainly, others in scientific notation.
pub fn fmt_num(x: f64) -> String {
    if x == x.trunc() && x.abs() < 1e9 { format!("{x:.0}") } else { format!("{x:.2e}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_show_verdicts_deviations_and_reasons() {
        let r = Report {
            backends: vec!["candle".into(), "tch".into()],
            checks: vec![
                Check::measured("logits/tiny", "candle", "max abs Δlogit", 2e-5, 1e-3, String::new()),
                Check::measured("logits/tiny", "tch", "max abs Δlogit", 5e-3, 1e-3, String::new()),
                Check::skipped("train/tiny", "tch", "backend does not train".into()),
            ],
            pairs: vec![PairRow {
                a: "candle".into(),
                b: "tch".into(),
                what: "count_pos".into(),
                value: 0.0,
                note: String::new(),
            }],
        };
        assert_eq!(r.counts(), (1, 1, 1));
        let t = r.case_table();
        assert!(t.contains("| logits/tiny | max abs Δlogit | 1.00e-3 | pass 2.00e-5 | **FAIL** 5.00e-3 |"), "{t}");
        assert!(t.contains("| train/tiny | — | — | — | skip |"), "{t}");
        assert!(t.contains("skip train/tiny on tch: backend does not train"), "{t}");
        assert!(r.pair_table().contains("| candle vs tch | count_pos | 0 |"));
    }
}
