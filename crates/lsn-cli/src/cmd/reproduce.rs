//! `lsn reproduce`: the whole study in one run directory — the stages of [`plan`] run in order as `lsn` command
//! lines, each skipped when its outputs exist with the same configuration hash, then `lsn report`.

pub mod plan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::{assets, fsutil};
use plan::{Plan, Request, Scale, Sizes, Study};

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
    /// smoke (every stage on tiny slices, minutes), default (the intervention tables at sizes chosen to be
    /// conclusive within the hour on 2 CPU cores; of the fine-tunes FTL null only, since an FTL comparison needs
    /// several training seeds; with --study all also forcing at 50 prompts and subnetwork training of vi with 2
    /// seeds, 100 minutes of stages measured on 2 cores), full (the paper's sizes where our data allows, hours on a
    /// CPU), paper (the paper's training recipe at full sizes: for a GPU and the paper's models).
    #[arg(long, value_enum, default_value = "default")]
    pub scale: Scale,
    /// Which claims to test, over one capture and one set of neurons: mondal (the paper's intervention and
    /// fine-tuning tables, PPXC), arithmetics (language forcing: Language Arithmetics' neuron steering and
    /// CLaS-Bench's difference of means, each against a random control, with fluency), subnetwork (target-language
    /// subnetwork training, arXiv 2510.13580: the target's LAPE neurons, random neurons of the same per-layer count and
    /// a q,v LoRA of the same parameter count, each trained on the target's text over several seeds, scored on
    /// held-out perplexity and XNLI/XQuAD zero-shot against the base model), all (every study, one report ending in a
    /// side-by-side summary of the claims).
    #[arg(long, value_enum, default_value = "mondal")]
    pub study: Study,
    /// auto, candle, tch, ort or all. auto: the study on the training backend — tch when built in, else candle (on
    /// the 2-core CPU this was measured on, tch trained the default fine-tunes 2.3-2.4x and evaluated them 1.5-2x
    /// faster than candle). ort cannot train: with ort, capture, selection, PPXC and the base model's baseline run
    /// on ort and the fine-tunes (and their evaluations) on the training backend. all: the study on the training
    /// backend, and capture, selection and the baseline again on every other backend built in, with a table of how
    /// far the backends agree (neuron sets, predictions).
    #[arg(long, default_value = "auto")]
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
    /// Data directory holding corpus/, xnli/, xquad/ [default: $LSN_DATA_DIR, else the data `lsn fetch-data`
    /// put in the cache, fetched now if it is not there].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The run directory: every output of the study, the report included.
    #[arg(long, default_value = "runs/reproduce")]
    pub out: PathBuf,
    /// Seed of the capture's document shuffle and the random controls; fine-tunes use 42 + this seed (+ k for the
    /// k-th of --seeds).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train every fine-tune this many times, with seeds 42 + --seed + k, and evaluate each (interventions
    /// included) [default: the scale's]. The fine-tuning tables then compare over seeds (resampling the runs and the
    /// examples), and the intervention tables average each seed's paired difference; with one seed the fine-tuning
    /// tables cannot test the paper's claim, since one run per side measures training noise.
    #[arg(long, value_parser = crate::cmd::at_least_one)]
    pub seeds: Option<usize>,
    /// The equivalence margin δ of the report's verdicts, in points of accuracy or F1, fixed here before the run: a
    /// difference whose 90% interval lies inside [−δ, +δ] is called equivalent (two one-sided tests at 5%).
    #[arg(long, default_value_t = lsn_eval::verdict::DEFAULT_MARGIN, value_parser = crate::cmd::positive_margin)]
    pub margin: f64,
    /// The equivalence margin of the language-forcing tables (`--study arithmetics|all`), in points of the share of
    /// continuations in the target language, fixed here before the run: a steering operation whose difference from
    /// its control (or from another operation) has a 90% interval inside it forces no language that matters.
    #[arg(long, default_value_t = lsn_eval::verdict::FORCING_MARGIN, value_parser = crate::cmd::positive_margin)]
    pub forcing_margin: f64,
    /// Run every stage as its own `lsn` process (what a cluster does) instead of in this one.
    #[arg(long)]
    pub processes: bool,
    /// This process's share of the stages, i/N (0-based), for N machines or cluster tasks sharing --out: each runs
    /// its share (stages that open the run directory itself — gathering the captures, selection, PPXC — on shard 0),
    /// waiting for the stages it reads that other shards run. Afterwards the same command without --shard finds
    /// every stage done and writes the report.
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
    /// Print the stages' command lines and exit.
    #[arg(long)]
    pub plan: bool,
    #[command(flatten)]
    pub cache: assets::HomeArg,
}

/// The state file's name inside the run directory (a shard's: `reproduce.shard-I-of-N.json`).
pub const STATE_FILE: &str = "reproduce.json";
/// The lock `lsn reproduce` holds on its run directory (its stages take the run directory's own lock); a shard's is
/// `.reproduce.shard-I-of-N.lock`.
const LOCK_FILE: &str = ".reproduce.lock";
/// How often a shard looks whether the stages it waits for are done.
const POLL: std::time::Duration = std::time::Duration::from_millis(500);

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("--shard {s:?}: give i/N with 0 <= i < N, e.g. 0/4");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if n == 0 || i >= n { Err(bad()) } else { Ok((i, n)) }
}

/// The state and lock file names of a shard (or of the unsharded run).
fn shard_files(shard: Option<(usize, usize)>) -> (String, String) {
    match shard {
        None => (STATE_FILE.into(), LOCK_FILE.into()),
        Some((i, n)) => (format!("reproduce.shard-{i}-of-{n}.json"), format!(".reproduce.shard-{i}-of-{n}.lock")),
    }
}

/// Which shard runs each stage: stages that open the run directory on shard 0; the others round-robin within their
/// level of the dependency graph (a stage's level is one more than its deepest dependency's), so every level's work
/// is spread over all shards.
fn assign(plan: &Plan, n: usize) -> Vec<usize> {
    let mut level: BTreeMap<&str, usize> = BTreeMap::new();
    let mut next_in_level: BTreeMap<usize, usize> = BTreeMap::new();
    let mut owner = Vec::with_capacity(plan.stages.len());
    for st in &plan.stages {
        let l = st.deps.iter().map(|d| level.get(d.as_str()).map_or(0, |x| x + 1)).max().unwrap_or(0);
        level.insert(&st.key, l);
        if st.exclusive {
            owner.push(0);
        } else {
            let k = next_in_level.entry(l).or_insert(0);
            owner.push(*k % n);
            *k += 1;
        }
    }
    owner
}

/// Fails when the shard that owns `dep` (which a stage of this shard waits for) cannot finish it any more: its
/// state file records the stage failed, or running while no process holds that shard's lock (it was killed). A shard
/// not started yet is waited for (an array job's tasks start when the cluster gets to them).
fn owner_alive(root: &Path, plan: &Plan, owner: &[usize], dep: &str, n_shards: usize) -> Result<()> {
    let Some(k) = plan.stages.iter().position(|s| s.key == dep).map(|i| owner[i]) else { return Ok(()) };
    let (state_name, lock_name) = shard_files(Some((k, n_shards)));
    let theirs = State::read(&root.join(state_name))?;
    match theirs.stages.get(dep).map(|s| s.state.as_str()) {
        Some("failed") => {
            bail!("stage {dep} failed on shard {k}/{n_shards}: see that shard's output, rerun it, then this shard")
        }
        Some("running") if lsn_run::Lock::probe(root, &lock_name)?.is_none() => bail!(
            "shard {k}/{n_shards} stopped while running {dep} (no process holds its lock): rerun that shard, then \
             this one"
        ),
        _ => Ok(()),
    }
}

/// What `reproduce.json` remembers of a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageState {
    /// The configuration hash the stage ran (or is running) with.
    pub sha256: String,
    /// `running` (started; a rerun resumes it), `failed` (a rerun resumes it too) or `complete`.
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
    fn read(path: &Path) -> Result<State> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| {
                format!("{} is not lsn reproduce's state file: remove it to start the run afresh", path.display())
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Every state file of the run directory (the unsharded run's and each shard's) in one: a stage is complete if
    /// any of them records it complete with its hash.
    fn read_all(root: &Path) -> Result<State> {
        let mut all = State::read(&root.join(STATE_FILE))?;
        let mut shards: Vec<PathBuf> = std::fs::read_dir(root)
            .with_context(|| format!("reading {}", root.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("reproduce.shard-") && n.ends_with(".json"))
            })
            .collect();
        shards.sort();
        for p in shards {
            for (k, v) in State::read(&p)?.stages {
                let keep = all.stages.get(&k).is_some_and(|old| old.state == "complete" && v.state != "complete");
                if !keep {
                    all.stages.insert(k, v);
                }
            }
        }
        Ok(all)
    }

    fn complete(&self, key: &str, sha: &str) -> bool {
        self.stages.get(key).is_some_and(|s| s.sha256 == sha && s.state == "complete")
    }

    fn write(&self, path: &Path) -> Result<()> {
        fsutil::write_atomic(path, serde_json::to_string_pretty(self)?.as_bytes())
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

/// The data directory: --data-dir, else LSN_DATA_DIR, else the cache's fetched data (fetched now if missing).
fn data_dir(args: &Args, home: &Path) -> Result<PathBuf> {
    let given = args
        .data_dir
        .clone()
        .or_else(|| std::env::var_os(lsn_data::DATA_DIR_ENV).filter(|v| !v.is_empty()).map(PathBuf::from));
    if given.is_some() {
        return Ok(lsn_data::resolve_data_dir(given.as_deref())?);
    }
    let fetched = lsn_data::fetch::fetched_data_dir(home);
    if !fetched.join(lsn_data::FETCH_MARKER).is_file() {
        eprintln!(
            "no data directory given (--data-dir or LSN_DATA_DIR): fetching XNLI, XQuAD, FLORES-200 and TICO-19 from \
             their official sources into {}",
            fetched.display()
        );
        let mut a = vec!["fetch-data".to_string()];
        if let Some(h) = &args.cache.home {
            a.extend(["--home".to_string(), h.display().to_string()]);
        }
        run_stage(&a, false).context(
            "no data directory was given and fetching one failed: pass --data-dir DIR or set LSN_DATA_DIR to a \
             directory holding corpus/, xnli/ and xquad/",
        )?;
    }
    Ok(fetched)
}

pub fn run(args: Args) -> Result<()> {
    let available = crate::backends::available();
    // The backend the fine-tunes (and their evaluations) run on, whichever --backend: the preferred of those whose
    // capabilities say they train.
    let trainer = crate::backends::trainers(&args.cache.home()).first().copied();
    let no_trainer = || {
        anyhow::anyhow!(
            "--backend {}: the fine-tunes need a backend that trains, and this build has none",
            args.backend
        )
    };
    // --backend all: the study on the trainer, and capture, selection and the baseline again on every other backend
    // built in.
    let (backend, compare_backends) = match args.backend.as_str() {
        "all" => {
            let main = trainer.ok_or_else(no_trainer)?;
            let others: Vec<String> = available.iter().filter(|b| **b != main).map(|b| b.to_string()).collect();
            ensure!(!others.is_empty(), "--backend all needs two backends; this build has only {main}");
            (main.to_string(), others)
        }
        "auto" => (trainer.ok_or_else(no_trainer)?.to_string(), Vec::new()),
        b => (b.to_string(), Vec::new()),
    };
    ensure!(
        available.contains(&backend.as_str()),
        "--backend {}: not part of this build (available: {}, auto or all)",
        args.backend,
        available.join(", "),
    );
    // Checked now, not when the first stage that loads the model parses them.
    args.device.parse::<lsn_core::Device>().map_err(|e| anyhow::anyhow!("--device: {e}"))?;
    crate::backends::parse_dtype(&args.dtype).map_err(|e| anyhow::anyhow!("--dtype: {e}"))?;
    let task_backend = if backend == "ort" { trainer.ok_or_else(no_trainer)? } else { backend.as_str() };
    let home = args.cache.home();
    let mut sizes = Sizes::of(args.scale);
    if let Some(n) = args.seeds {
        sizes.seeds = n;
        sizes.subnetwork_seeds = n;
    }
    let request = Request {
        scale: args.scale,
        study: args.study,
        backend: backend.clone(),
        task_backend: task_backend.into(),
        device: args.device.clone(),
        dtype: args.dtype.clone(),
        tap_point: args.tap_point.clone(),
        seed: args.seed,
        model: args.model.clone(),
        sizes,
        compare_backends,
        margin: args.margin,
        forcing_margin: args.forcing_margin,
    };
    let plan = Plan::new(request.clone());
    plan.check()?;
    if args.plan {
        for s in &plan.stages {
            println!("{:<40} lsn {}", s.key, s.argv.join(" "));
        }
        return Ok(());
    }
    let data_dir = data_dir(&args, &home)?;
    let data_dir = std::fs::canonicalize(&data_dir).with_context(|| format!("{}", data_dir.display()))?;
    let t0 = Instant::now();
    // Set-up: the model (fetched when named and missing), its identity, the data's — before --out is made or locked,
    // so that a missing model or incomplete data leaves nothing behind.
    let home_args: Vec<String> =
        args.cache.home.iter().flat_map(|h| ["--home".to_string(), h.display().to_string()]).collect();
    // What every stage that reads data (and so loads the model or the cache) is given besides its plan line.
    let mut extra = vec!["--data-dir".to_string(), data_dir.display().to_string()];
    extra.extend(home_args.iter().cloned());
    if !Path::new(&args.model).is_dir() && assets::model(&args.model).is_ok() {
        let a: Vec<String> = ["fetch-model".to_string(), args.model.clone()].into_iter().chain(home_args).collect();
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
    // δ is fixed before the run: a run directory keeps the margins it started with.
    if let Ok(bytes) = std::fs::read(args.out.join("plan.json"))
        && let Ok(before) = serde_json::from_slice::<Plan>(&bytes)
    {
        for (flag, now, then) in [
            ("--margin", request.margin, before.request.margin),
            ("--forcing-margin", request.forcing_margin, before.request.forcing_margin),
        ] {
            ensure!(
                now == then,
                "{flag} {now}: {} was started with an equivalence margin of {then}, fixed before its results were \
                 seen; rerun with {flag} {then} (or give a new --out)",
                args.out.display(),
            );
        }
    }
    // Not inside another process's study (a second run of this one is refused by the lock below, naming it).
    let parent = args.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    lsn_run::check_no_foreign_study(parent, "--out")?;
    lsn_run::prepare_dir(&args.out, "--out", true)?;
    let root = std::fs::canonicalize(&args.out).with_context(|| format!("{}", args.out.display()))?;
    let (state_name, lock_name) = shard_files(args.shard);
    let lock = lsn_run::Lock::acquire_file(&root, &lock_name, "--out")?;
    if let Some(h) = &lock.took_over {
        crate::cmd::warn_took_over(&root, h);
    }
    // An unsharded run never runs beside shards of the same directory: it takes (and keeps) their locks too.
    let mut shard_locks = Vec::new();
    if args.shard.is_none() {
        for e in std::fs::read_dir(&root).with_context(|| format!("reading {}", root.display()))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".reproduce.shard-") && name.ends_with(".lock") {
                shard_locks.push(lsn_run::Lock::acquire_file(&root, &name, "--out")?);
            }
        }
    }

    let config = serde_json::json!({
        "lsn_version": env!("CARGO_PKG_VERSION"), "request": request, "model_dir": model_dir, "identity": identity,
        "data_dir": data_dir, "data_sha256": data, "backends_built": available,
        "training_seeds": (0..request.sizes.seeds as u64).map(|k| 42 + args.seed + k).collect::<Vec<_>>(),
    });
    fsutil::write_atomic(&root.join("config.json"), serde_json::to_string_pretty(&config)?.as_bytes())?;
    fsutil::write_atomic(&root.join("plan.json"), serde_json::to_string_pretty(&plan)?.as_bytes())?;

    // This process records into its own state file; what every process of the run has done is read from all.
    let state_path = root.join(&state_name);
    let mut state = State::read(&state_path)?;
    let (me, owner) = match args.shard {
        Some((i, n)) => (i, assign(&plan, n)),
        None => (0, vec![0; plan.stages.len()]),
    };
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
        let mut all = State::read_all(&root)?;
        if all.complete(&stage.key, &sha) && outputs_exist {
            eprintln!("[{}/{n}] {} · done before, skipped", i + 1, stage.key);
            continue;
        }
        if owner[i] != me {
            continue;
        }
        // A shard waits for what it reads from the other shards (said when the wait starts, then every ten minutes).
        let mut said: Option<Instant> = None;
        loop {
            let missing = stage.deps.iter().find(|d| !all.complete(d, hashes.get(d.as_str()).map_or("", |h| h)));
            let Some(first) = missing else { break };
            ensure!(args.shard.is_some(), "stage {} needs {first}, which is not complete: rerun to resume", stage.key);
            if let Some((_, n_shards)) = args.shard {
                owner_alive(&root, &plan, &owner, first, n_shards)?;
            }
            if said.is_none_or(|t| t.elapsed().as_secs() >= 600) {
                eprintln!("[{}/{n}] {} · waiting for {first} (another shard's)", i + 1, stage.key);
                said = Some(Instant::now());
            }
            std::thread::sleep(POLL);
            all = State::read_all(&root)?;
        }
        let prior = all.stages.get(&stage.key).cloned();
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
        state.write(&state_path)?;
        let mut argv = plan::resolve(&stage.argv, &root);
        if !stage.data.is_empty() {
            argv.extend(extra.iter().cloned());
        }
        let ts = Instant::now();
        if let Err(e) = run_stage(&argv, args.processes) {
            // Recorded, so that shards waiting for this stage stop with an error instead of waiting for ever.
            state.stages.insert(stage.key.clone(), StageState { sha256: sha, state: "failed".into(), seconds: None });
            state.write(&state_path)?;
            return Err(e.context(format!("stage {} failed; rerun to resume it", stage.key)));
        }
        let secs = ts.elapsed().as_secs_f64();
        (est_run, secs_run) = (est_run + stage.estimate_s, secs_run + secs);
        state
            .stages
            .insert(stage.key.clone(), StageState { sha256: sha, state: "complete".into(), seconds: Some(secs) });
        state.write(&state_path)?;
    }
    // Stages of an earlier plan that this one no longer has are forgotten (their outputs stay).
    state.stages.retain(|k, _| plan.stage(k).is_some());
    state.write(&state_path)?;
    if let Some((i, n_shards)) = args.shard {
        eprintln!(
            "reproduce: shard {i}/{n_shards} done in {}; once every shard is done, the same command without --shard \
             writes the report",
            fmt_secs(t0.elapsed().as_secs_f64())
        );
        return Ok(());
    }
    let report = vec!["report".to_string(), "--run".to_string(), root.display().to_string()];
    run_stage(&report, args.processes)?;
    eprintln!(
        "reproduce: {} stages in {} → {}",
        n,
        fmt_secs(t0.elapsed().as_secs_f64()),
        root.join("report.md").display()
    );
    drop((lock, shard_locks));
    if root.join("report.md").is_file() {
        Ok(())
    } else {
        bail!("the report stage wrote no {}", root.join("report.md").display())
    }
}
