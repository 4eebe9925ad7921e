//! Running the suite: every golden model and the capture slice on every backend, then the cross-backend
//! comparisons of the slice's statistics and neuron sets.

use std::path::{Path, PathBuf};

use lsn_core::{ActivationStats, Backend, Device, WeightDType};
use lsn_select::Selection;

use crate::report::{Check, Outcome, PairRow, Report};
use crate::{compare, dtype, eval, generate, golden, lora, slice};

/// Largest per-neuron |Δ count_pos| and |Δ count_above| between backends on the slice (1024 tokens per language):
/// activations within float noise of zero (or of a threshold) may fall on either side on different backends. The
/// worst measured between candle and tch on CPU is 1; `cargo xtask conformance` prints it on every run.
pub const COUNT_TOL: f64 = 2.0;
/// Largest |Δ| of the batch-averaged quantiles between backends (activations are O(0.1–10); f32 matmuls in another
/// order differ by ~1e-6 relative).
pub const QUANTILE_TOL: f64 = 1e-4;

/// What the suite runs on: the checkout (for `fixtures/`), the model cache, the data dir and a scratch folder.
#[derive(Debug)]
pub struct Env {
    pub root: PathBuf,
    pub home: PathBuf,
    /// The data dir, or why there is none.
    pub data_dir: Result<PathBuf, String>,
    pub device: Device,
    scratch: tempfile::TempDir,
}

impl Env {
    /// The checkout this crate was built from, `LSN_HOME`'s model cache and `LSN_DATA_DIR`'s data dir.
    pub fn from_env(device: Device) -> std::io::Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).to_owned();
        Ok(Self {
            root,
            home: lsn_data::cache_home(),
            data_dir: lsn_data::resolve_data_dir(None).map_err(|e| e.to_string()),
            device,
            scratch: tempfile::tempdir()?,
        })
    }

    /// A folder removed when the suite ends.
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }
}

/// One backend's capture of the slice and the neuron sets selected from it.
struct SliceRun {
    backend: String,
    stats: Vec<(String, ActivationStats)>,
    sets: Vec<Selection>,
    /// PPXC of one cell (see [`slice::ppxc_cell`]).
    ppxc: Result<f64, String>,
}

/// Runs the suite on `backends`; `on_check` sees each check as it completes (progress output).
pub fn run_suite(backends: &[Box<dyn Backend>], env: &Env, on_check: &mut dyn FnMut(&Check)) -> Report {
    let mut report = Report { backends: backends.iter().map(|b| b.name().to_owned()).collect(), ..Report::default() };
    let mut push = |report: &mut Report, c: Check| {
        on_check(&c);
        report.checks.push(c);
    };
    let slice_name = slice::name();
    // Packed once, on first use (a suite whose backends cannot capture never tokenizes the slice).
    let mut loaded: Option<Result<slice::Slice, String>> = None;
    let mut runs: Vec<SliceRun> = Vec::new();
    let mut continuations: Vec<generate::Continuations> = Vec::new();
    let mut predictions: Vec<eval::Predictions> = Vec::new();
    let mut bf16_logits: Vec<dtype::Bf16Logits> = Vec::new();
    // The slice is captured with bf16 weights once, on the first backend that holds them.
    let mut bf16_slice_done = false;
    for backend in backends {
        let b = backend.name();
        let caps = backend.capabilities();
        if !caps.devices.contains(&env.device) {
            let reason = format!("{b} cannot run on {:?} in this build (it offers {:?})", env.device, caps.devices);
            for m in golden::MODELS {
                let kinds = [
                    "logits",
                    "nll",
                    "taps",
                    "taps-gate_pre",
                    "intervene",
                    "greedy",
                    "decode",
                    "logits-bf16",
                    "nll-bf16",
                ];
                for kind in kinds {
                    push(&mut report, Check::skipped(&format!("{kind}/{}", m.name), b, reason.clone()));
                }
                if eval::covers(m) {
                    for kind in ["xnli", "xquad", "xnli-head"] {
                        push(&mut report, Check::skipped(&format!("{kind}/{}", m.name), b, reason.clone()));
                    }
                }
                if generate::steers(m) {
                    for kind in ["layer-sums", "steer", "steer-greedy"] {
                        push(&mut report, Check::skipped(&format!("{kind}/{}", m.name), b, reason.clone()));
                    }
                }
            }
            for m in lora::models() {
                for t in lora::TASKS {
                    for kind in lora::KINDS {
                        push(&mut report, Check::skipped(&format!("{kind}-{t}/{m}"), b, reason.clone()));
                    }
                }
            }
            push(&mut report, Check::skipped(&format!("capture/{slice_name}"), b, reason));
            continue;
        }
        for m in golden::MODELS {
            for c in golden::checks(backend.as_ref(), env, m) {
                push(&mut report, c);
            }
            let (checks, logits) = dtype::checks(backend.as_ref(), env, m);
            for c in checks {
                push(&mut report, c);
            }
            bf16_logits.extend(logits);
            let (checks, cont) = generate::checks(backend.as_ref(), env, m);
            for c in checks {
                push(&mut report, c);
            }
            continuations.extend(cont);
            if generate::steers(m) {
                let (checks, cont) = generate::steer_checks(backend.as_ref(), env, m);
                for c in checks {
                    push(&mut report, c);
                }
                continuations.extend(cont);
            }
            if eval::covers(m) {
                let (checks, preds) = eval::checks(backend.as_ref(), env, m);
                for c in checks {
                    push(&mut report, c);
                }
                predictions.extend(preds);
            }
        }
        for c in lora::checks(backend.as_ref(), env) {
            push(&mut report, c);
        }
        let case = format!("capture/{slice_name}");
        let captured = loaded.get_or_insert_with(|| slice::load(env)).as_ref().map_err(Clone::clone).and_then(|s| {
            let dir = env.scratch().join(format!("slice-{b}"));
            let stats = slice::capture_all(backend.as_ref(), env, s, &dir, WeightDType::F32)?;
            let sets = slice::select_all(&stats)?;
            let bf16 = (!bf16_slice_done && caps.dtypes.contains(&WeightDType::Bf16)).then(|| {
                slice::capture_all(backend.as_ref(), env, s, &dir.join("bf16"), WeightDType::Bf16)
                    .and_then(|stats| slice::select_all(&stats))
            });
            let ppxc = slice::ppxc_cell(backend.as_ref(), env, s, &sets[0]);
            Ok((SliceRun { backend: b.to_owned(), stats, sets, ppxc }, bf16))
        });
        match captured {
            Ok((run, bf16)) => {
                bf16_slice_done |= bf16.is_some();
                match bf16 {
                    Some(Ok(bf16_sets)) => report.pairs.extend(dtype::set_rows(b, &run.sets, &bf16_sets)),
                    Some(Err(e)) => push(&mut report, Check::failed(&format!("capture-bf16/{slice_name}"), b, e)),
                    None => {}
                }
                runs.push(run)
            }
            Err(e) => push(&mut report, Check::failed(&case, b, e)),
        }
    }
    // Cross-backend: every pair is compared once; the case table holds each backend against the first one that
    // captured the slice, the pairwise table every pair.
    if let Some(reference) = runs.first() {
        for c in reference_checks(reference, &slice_name) {
            push(&mut report, c);
        }
    }
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            let diff = PairDiff::of(a, b);
            if i == 0 {
                for c in against_reference(&diff, a, b, &slice_name) {
                    push(&mut report, c);
                }
            }
            report.pairs.extend(diff.rows(a, b));
        }
    }
    for c in dtype::agreement(&bf16_logits) {
        push(&mut report, c);
    }
    report.pairs.extend(continuation_rows(&continuations));
    report.pairs.extend(eval::pair_rows(&predictions));
    report
}

/// Greedy continuations compared between backends, per model: how many of them differ at all.
fn continuation_rows(all: &[generate::Continuations]) -> Vec<PairRow> {
    let mut rows = Vec::new();
    for (i, a) in all.iter().enumerate() {
        for b in all[i + 1..].iter().filter(|b| b.model == a.model && b.backend != a.backend) {
            let differ = a.ids.iter().zip(&b.ids).filter(|(x, y)| x != y).count();
            let tokens: usize = a.ids.iter().map(Vec::len).sum();
            rows.push(PairRow {
                a: a.backend.clone(),
                b: b.backend.clone(),
                what: format!("greedy/{}: continuations differing", a.model),
                value: differ as f64,
                note: format!("{} continuations, {tokens} tokens", a.ids.len()),
            });
        }
    }
    rows
}

fn case_names(slice_name: &str, sets: &[Selection]) -> (String, String, String, Vec<String>) {
    (
        format!("capture-count_pos/{slice_name}"),
        format!("capture-quantiles/{slice_name}"),
        format!("capture-count_above/{slice_name}"),
        sets.iter().map(|s| format!("neurons-{}/{slice_name}", s.method)).collect(),
    )
}

/// The reference backend's rows: it defines the slice's statistics and sets for the others.
fn reference_checks(r: &SliceRun, slice_name: &str) -> Vec<Check> {
    let (count, quant, above, sets) = case_names(slice_name, &r.sets);
    let mut v: Vec<Check> = [count, quant, above, format!("ppxc/{slice_name}")]
        .into_iter()
        .chain(sets)
        .map(|case| Check { outcome: Outcome::Reference, ..Check::skipped(&case, &r.backend, String::new()) })
        .collect();
    let sizes: Vec<String> = r.sets.iter().map(|s| format!("{} m = {}", s.method, s.m)).collect();
    if let Some(c) = v.first_mut() {
        c.note = format!("reference of the cross-backend cases; {}", sizes.join(", "));
    }
    v
}

/// How two backends' slice runs differ: every statistic and every method's neuron sets.
struct PairDiff {
    stats: Result<Vec<compare::StatDiff>, String>,
    sets: Vec<Result<compare::SetDiff, String>>,
}

impl PairDiff {
    fn of(a: &SliceRun, b: &SliceRun) -> Self {
        Self {
            stats: compare::stats(&a.stats, &b.stats),
            sets: a.sets.iter().zip(&b.sets).map(|(x, y)| compare::selections(x, y)).collect(),
        }
    }

    /// The pairwise table's rows.
    fn rows(&self, a: &SliceRun, b: &SliceRun) -> Vec<PairRow> {
        let row = |what: String, value: f64, note: String| PairRow {
            a: a.backend.clone(),
            b: b.backend.clone(),
            what,
            value,
            note,
        };
        let mut rows = Vec::new();
        match &self.stats {
            Ok(diffs) => rows.extend(
                diffs.iter().map(|d| row(d.what.to_owned(), d.max_abs, format!("{} value(s) differ", d.differing))),
            ),
            Err(e) => rows.push(row("statistics".into(), f64::NAN, e.clone())),
        }
        if let (Ok(x), Ok(y)) = (&a.ppxc, &b.ppxc) {
            rows.push(row(slice::PPXC_CELL.into(), (x - y).abs(), format!("{x:.4} vs {y:.4}")));
        }
        for (set, x) in self.sets.iter().zip(&a.sets) {
            match set {
                Ok(d) => rows.push(row(
                    format!("neurons {}: size of A △ B", d.method),
                    d.symmetric_difference as f64,
                    d.note.clone(),
                )),
                Err(e) => rows.push(row(format!("neurons {}", x.method), f64::NAN, e.clone())),
            }
        }
        rows
    }
}

/// Backend `run`'s rows of the cross-backend cases, from its differences with the reference.
fn against_reference(diff: &PairDiff, reference: &SliceRun, run: &SliceRun, slice_name: &str) -> Vec<Check> {
    let (count, quant, above, set_cases) = case_names(slice_name, &run.sets);
    let b = run.backend.as_str();
    let mut v = Vec::new();
    let ppxc = format!("ppxc/{slice_name}");
    v.push(match (&reference.ppxc, &run.ppxc) {
        (Ok(x), Ok(y)) => Check::measured(
            &ppxc,
            b,
            "relative ΔPPXC",
            (x - y).abs() / x.abs().max(1.0),
            slice::PPXC_TOL,
            format!("{}: {y:.4} (reference {x:.4})", slice::PPXC_CELL),
        ),
        (Err(e), _) => Check::failed(&ppxc, b, format!("the reference could not compute it: {e}")),
        (_, Err(e)) => Check::failed(&ppxc, b, e.clone()),
    });
    match &diff.stats {
        Err(e) => v.push(Check::failed(&count, b, e.clone())),
        Ok(diffs) => {
            let cases = [
                (&count, "count_pos", "max abs Δcount", COUNT_TOL),
                (&quant, "quantile_mean", "max abs Δquantile", QUANTILE_TOL),
                (&above, "count_above", "max abs Δcount", COUNT_TOL),
            ];
            for (case, stat, measure, tol) in cases {
                let d = diffs.iter().find(|d| d.what.starts_with(stat));
                let note = d.map_or(String::new(), |d| format!("{} value(s) differ from the reference", d.differing));
                v.push(Check::measured(case, b, measure, d.map_or(0.0, |d| d.max_abs), tol, note));
            }
        }
    }
    for (case, set) in set_cases.iter().zip(&diff.sets) {
        match set {
            Err(e) => v.push(Check::failed(case, b, e.clone())),
            Ok(d) => {
                v.push(Check::measured(case, b, "neurons in A △ B", d.symmetric_difference as f64, 0.0, d.note.clone()))
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use lsn_core::{Capabilities, LoadOptions, Model, ModelFiles};

    use super::*;

    /// A backend whose capabilities offer no device this suite runs on.
    struct Nowhere;

    impl Backend for Nowhere {
        fn name(&self) -> &'static str {
            "nowhere"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities {
                devices: vec![Device::Cuda(7)],
                dtypes: vec![lsn_core::WeightDType::F32],
                train: false,
                adapters: false,
            }
        }
        fn load(&self, _: &ModelFiles, _: &LoadOptions) -> lsn_core::Result<Box<dyn Model>> {
            panic!("the suite must not load a model on a backend that cannot run on its device")
        }
    }

    #[test]
    fn capabilities_turn_into_recorded_skips() {
        let env = Env::from_env(Device::Cpu).unwrap();
        let report = run_suite(&[Box::new(Nowhere) as Box<dyn Backend>], &env, &mut |_| {});
        let (pass, fail, skip) = report.counts();
        assert_eq!((pass, fail), (0, 0));
        let lora = crate::lora::models().count() * crate::lora::TASKS.len() * crate::lora::KINDS.len();
        assert_eq!(
            skip,
            golden::MODELS.len() * 9
                + golden::MODELS.iter().filter(|m| crate::eval::covers(m)).count() * 3
                + golden::MODELS.iter().filter(|m| generate::steers(m)).count() * 3
                + lora
                + 1
        );
        assert!(
            report.checks.iter().all(|c| matches!(&c.outcome, Outcome::Skip(r) if r.contains("cannot run on Cpu")))
        );
        assert!(report.pairs.is_empty());
    }
}
