//! `lsn reproduce`: the whole study in one run directory — the stages of [`plan`] run in order as `lsn` command
//! lines, each skipped when its outputs exist with the same configuration hash, then `lsn report`.

pub mod plan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::{assets, fsutil};
use plan::{Plan, Request, Scale, Sizes};

/// Runs the whole study: capture (the paper's language sets 1 and 6) → selection (LAPE mondal, ActProb-90p, random)
/// → PPXC (set 1's LAPE neurons and the random control) → English fine-tuning (FTL null, en, target, en+target and
/// the matched random control, XNLI and XQuAD) → evaluation of every fine-tune on XNLI (vi, hi, ur) and XQuAD (vi,
/// hi, zh) → test-time interventions on the FTL-null fine-tunes (the paper's columns μ, P75, P90, P95, 0, P5, P10) →
/// the base model's zero-shot baseline → `lsn report` (report.md, report.html, results.json, plots).
///
/// Every stage is an `lsn` command line (see them with --plan) run in this process, or with --processes each in its
/// own. A stage is skipped when its outputs exist with the same configuration hash (its command line, the hashes of
/// the stages it reads, the model's and the data's content); a changed setting reruns only the stages it reaches.
/// A killed run resumes where it stopped: rerun the same command. A second run on the same --out is refused.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// smoke (every stage on tiny slices, minutes), default (every table at reduced sizes, within the hour on 2
    /// CPU cores), full (the paper's sizes where our data allows, hours on a CPU), paper (the paper's training
    /// recipe at full sizes: for a GPU and the paper's models).
    #[arg(long, value_enum, default_value = "default")]
    pub scale: Scale,
    /// candle, tch or ort. ort cannot train: with ort, capture, selection, PPXC and the base model's baseline run on
    /// ort and the fine-tunes (and their evaluations) on candle.
    #[arg(long, default_value = "candle")]
    pub backend: String,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Weights held in f32 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Where the statistics are read: act (act_fn(gate_proj(x))) or gate_pre (the paper's code).
    #[arg(long, default_value = "act", value_parser = ["act", "gate_pre"])]
    pub tap_point: String,
    /// A fetched model's name (fetched here if needed) or a HF checkpoint directory.
    #[arg(long, default_value = "gemma-3-270m")]
    pub model: String,
    /// Data directory holding corpus/, xnli/, xquad/ [default: $LSN_DATA_DIR].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The run directory: every output of the study, the report included.
    #[arg(long, default_value = "runs/reproduce")]
    pub out: PathBuf,
    /// Seed of the capture's document shuffle and the random controls; fine-tunes use 42 + this seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run every stage as its own `lsn` process (what a cluster does) instead of in this one.
    #[arg(long)]
    pub processes: bool,
    /// Print the stages' command lines and exit.
    #[arg(long)]
    pub plan: bool,
    #[command(flatten)]
    pub cache: assets::HomeArg,
}

/// The state file's name inside the run directory.
pub const STATE_FILE: &str = "reproduce.json";
/// The lock `lsn reproduce` holds on its run directory (its stages take the run directory's own lock).
const LOCK_FILE: &str = ".reproduce.lock";

/// What `reproduce.json` remembers of a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageState {
    /// The configuration hash the stage ran (or is running) with.
    pub sha256: String,
    /// `running` (started; a rerun resumes it) or `complete`.
    pub state: String,
    /// Wall time of the run that completed it.
    #[serde(default)]
    pub seconds: Option<f64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    stages: BTreeMap<String, StageState>,
}

impl State {
    fn read(root: &Path) -> Result<State> {
        let path = root.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| {
                format!("{} is not lsn reproduce's state file: remove it to start the run afresh", path.display())
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn write(&self, root: &Path) -> Result<()> {
        fsutil::write_atomic(&root.join(STATE_FILE), serde_json::to_string_pretty(self)?.as_bytes())
    }
}

/// sha256 over the files under `dir` (their relative paths and contents), the data identity of a stage.
fn tree_sha256(dir: &Path, memo: &Path) -> Result<String> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries {
            let p = e?.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut lines = String::new();
    for f in &files {
        let rel = f.strip_prefix(dir).unwrap_or(f).display().to_string();
        lines += &format!("{rel}\t{}\n", lsn_core::sha256_file_memo(f, memo)?);
    }
    Ok(lsn_core::sha256_hex(lines.as_bytes()))
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 { format!("{}h{:02}m", s / 3600, s % 3600 / 60) } else { format!("{}m{:02}s", s / 60, s % 60) }
}

/// Runs one stage's `lsn` command line: in this process, or as a child `lsn` process.
fn run_stage(argv: &[String], processes: bool) -> Result<()> {
    if processes {
        let exe = std::env::current_exe().context("finding the lsn executable")?;
        let status = std::process::Command::new(&exe)
            .args(argv)
            .status()
            .with_context(|| format!("starting {}", exe.display()))?;
        ensure!(status.success(), "`lsn {}` failed ({status})", argv.join(" "));
        Ok(())
    } else {
        crate::run_argv(argv).with_context(|| format!("`lsn {}`", argv.join(" ")))
    }
}

pub fn run(args: Args) -> Result<()> {
    let available = crate::backends::available();
    ensure!(
        available.contains(&args.backend.as_str()),
        "--backend {}: not part of this build (available: {}){}",
        args.backend,
        available.join(", "),
        if args.backend == "all" { "; running every backend in one run is not supported yet" } else { "" }
    );
    let task_backend = if args.backend == "ort" { "candle" } else { args.backend.as_str() };
    ensure!(
        available.contains(&task_backend),
        "--backend ort trains and evaluates the fine-tunes on candle, which this build lacks"
    );
    let home = args.cache.home();
    let sizes = Sizes::of(args.scale);
    let request = Request {
        scale: args.scale,
        backend: args.backend.clone(),
        task_backend: task_backend.into(),
        device: args.device.clone(),
        dtype: args.dtype.clone(),
        tap_point: args.tap_point.clone(),
        seed: args.seed,
        model: args.model.clone(),
        sizes,
    };
    let plan = Plan::new(request.clone());
    plan.check()?;
    if args.plan {
        for s in &plan.stages {
            println!("{:<40} lsn {}", s.key, s.argv.join(" "));
        }
        return Ok(());
    }
    let data_dir = lsn_data::resolve_data_dir(args.data_dir.as_deref())?;
    let data_dir = std::fs::canonicalize(&data_dir).with_context(|| format!("{}", data_dir.display()))?;
    lsn_run::prepare_dir(&args.out, "--out", true)?;
    let root = std::fs::canonicalize(&args.out).with_context(|| format!("{}", args.out.display()))?;
    let lock = lsn_run::Lock::acquire_file(&root, LOCK_FILE, "--out")?;
    if let Some(h) = &lock.took_over {
        eprintln!(
            "note: took over the lock of {}: pid {} (`{}`) is no longer running",
            root.display(),
            h.pid,
            h.command
        );
    }
    let t0 = Instant::now();

    // Set-up: the model (fetched when named and missing), its identity, the data's.
    let mut extra = vec!["--data-dir".to_string(), data_dir.display().to_string()];
    if let Some(h) = &args.cache.home {
        extra.extend(["--home".to_string(), h.display().to_string()]);
    }
    let as_path = Path::new(&args.model);
    if !as_path.is_dir() && assets::model(&args.model).is_ok() {
        let mut a = vec!["fetch-model".to_string(), args.model.clone()];
        a.extend(extra.iter().skip(2).cloned());
        run_stage(&a, false)?;
    }
    let model_dir = assets::resolve_model(&home, &args.model)?;
    let tok = lsn_data::Tokenizer::from_file(&lsn_core::ModelFiles::new(&model_dir).tokenizer())?;
    let identity = assets::identity(&home, &lsn_weights::open_checkpoint(&model_dir)?, &tok)?;
    let memo = assets::hash_memo(&home);
    let mut data = BTreeMap::new();
    for kind in ["corpus", "xnli", "xquad"] {
        let dir = data_dir.join(kind);
        ensure!(
            dir.is_dir(),
            "{} has no {kind}/ folder, which the study reads: point --data-dir (or LSN_DATA_DIR) at a complete data \
             directory",
            data_dir.display()
        );
        data.insert(kind.to_string(), tree_sha256(&dir, &memo)?);
    }
    let config = serde_json::json!({
        "lsn_version": env!("CARGO_PKG_VERSION"), "request": request, "model_dir": model_dir, "identity": identity,
        "data_dir": data_dir, "data_sha256": data, "backends_built": available,
        "training_seed": 42 + args.seed,
    });
    fsutil::write_atomic(&root.join("config.json"), serde_json::to_string_pretty(&config)?.as_bytes())?;
    fsutil::write_atomic(&root.join("plan.json"), serde_json::to_string_pretty(&plan)?.as_bytes())?;

    let mut state = State::read(&root)?;
    let mut hashes: BTreeMap<&str, String> = BTreeMap::new();
    let total_est: f64 = plan.stages.iter().map(|s| s.estimate_s).sum();
    let (mut est_run, mut secs_run, mut est_left) = (0.0, 0.0, total_est);
    let n = plan.stages.len();
    for (i, stage) in plan.stages.iter().enumerate() {
        let doc = serde_json::json!({
            "argv": stage.argv, "model": identity,
            "deps": stage.deps.iter().map(|d| hashes.get(d.as_str()).cloned()).collect::<Vec<_>>(),
            "data": stage.data.iter().map(|d| data.get(d).cloned()).collect::<Vec<_>>(),
        });
        let sha = lsn_core::sha256_hex(doc.to_string().as_bytes());
        hashes.insert(&stage.key, sha.clone());
        est_left -= stage.estimate_s;
        let outputs_exist = stage.outputs.iter().all(|o| root.join(o).exists());
        let prior = state.stages.get(&stage.key).cloned();
        if let Some(p) = &prior
            && p.sha256 == sha
            && p.state == "complete"
            && outputs_exist
        {
            eprintln!("[{}/{n}] {} · done before, skipped", i + 1, stage.key);
            continue;
        }
        // A stage whose configuration changed (or that has no record) starts from empty outputs; one that was
        // killed with the same configuration resumes from what it left.
        if prior.as_ref().is_none_or(|p| p.sha256 != sha) {
            for o in &stage.outputs {
                let p = root.join(o);
                if p.is_dir() {
                    std::fs::remove_dir_all(&p).with_context(|| format!("removing the stale {}", p.display()))?;
                } else if p.exists() {
                    std::fs::remove_file(&p).with_context(|| format!("removing the stale {}", p.display()))?;
                }
            }
        }
        let pace = if est_run > 0.0 { secs_run / est_run } else { 1.0 };
        eprintln!(
            "[{}/{n}] {} · run so far {} · this stage ~{} · whole run ~{} left",
            i + 1,
            stage.key,
            fmt_secs(t0.elapsed().as_secs_f64()),
            fmt_secs(stage.estimate_s * pace),
            fmt_secs((stage.estimate_s + est_left) * pace)
        );
        state
            .stages
            .insert(stage.key.clone(), StageState { sha256: sha.clone(), state: "running".into(), seconds: None });
        state.write(&root)?;
        let mut argv = plan::resolve(&stage.argv, &root);
        if argv[0] != "select" {
            argv.extend(extra.iter().cloned());
        }
        let ts = Instant::now();
        run_stage(&argv, args.processes).with_context(|| format!("stage {} failed; rerun to resume it", stage.key))?;
        let secs = ts.elapsed().as_secs_f64();
        (est_run, secs_run) = (est_run + stage.estimate_s, secs_run + secs);
        state
            .stages
            .insert(stage.key.clone(), StageState { sha256: sha, state: "complete".into(), seconds: Some(secs) });
        state.write(&root)?;
    }
    // Stages of an earlier plan that this one no longer has are forgotten (their outputs stay).
    state.stages.retain(|k, _| plan.stage(k).is_some());
    state.write(&root)?;
    let report = vec!["report".to_string(), "--run".to_string(), root.display().to_string()];
    run_stage(&report, args.processes)?;
    eprintln!(
        "reproduce: {} stages in {} → {}",
        n,
        fmt_secs(t0.elapsed().as_secs_f64()),
        root.join("report.md").display()
    );
    drop(lock);
    if root.join("report.md").is_file() {
        Ok(())
    } else {
        bail!("the report stage wrote no {}", root.join("report.md").display())
    }
}
