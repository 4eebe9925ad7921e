//! The run directory: where every stage of one study run writes (`stats/`, `neurons/`, later adapters and results).
//!
//! [`RunDir::open`] is the first thing a stage does, before any compute: it checks that the directory exists or can
//! be created, is writable and has room ([`prepare_dir`], [`check_space`]); takes the directory's exclusive lock (a
//! second process is refused at once, naming the holder; a lock left by a killed process is taken over); removes
//! temporary files that killed processes left; and reads the manifest `run.json`, which binds the run to one model
//! by content ([`lsn_core::ModelIdentity`]: config, tokenizer and weights) and records every stage output with the
//! hash of its configuration.
//!
//! Every other command that writes a directory (`train`, `eval`, `merge-adapter`: their `--out`) declares it as an
//! [`Output`] and opens it the same way ([`RunDir::open_output`]): the same lock and manifest, one setting per output
//! ([`RunDir::claim`]), and outputs staged and committed all at once ([`RunDir::commit`], `commit.rs`). A running study
//! (`lsn reproduce`) keeps every other process's command out of its tree (`study.rs`), and inputs made by another
//! stage are checked against the model that reads them ([`check_made_with`]).

mod commit;
mod error;
mod lock;
mod manifest;
mod preflight;
mod study;

use std::path::{Path, PathBuf};

use lsn_core::ModelIdentity;

pub use commit::{FAIL_WRITE_ENV, JOURNAL_FILE, STAGING_DIR, config_difference};
pub use error::{Error, Result};
pub use lock::{Holder, LOCK_FILE, Lock};
pub use manifest::{MANIFEST_FILE, MANIFEST_FORMAT, Manifest, RunModel, StageRecord};
pub use preflight::{OutDir, check_space, prepare_dir, prepare_file};
pub use study::{STUDY_LOCK_PREFIX, check_no_foreign_study};

/// Checks that the input `file`, made with the model `made_with` (named `made_with_name`), belongs to the model this
/// command uses (`using`, named `using_name`); `hint` says what to do instead. Every stage that reads another
/// stage's file (an adapter, a neuron file) checks it here.
pub fn check_made_with(
    file: &Path,
    made_with_name: &str,
    made_with: &ModelIdentity,
    using_name: &str,
    using: &ModelIdentity,
    hint: &str,
) -> Result<()> {
    if made_with.same_model(using) {
        return Ok(());
    }
    Err(Error::ForeignInput {
        file: file.to_owned(),
        made_with: made_with_name.to_owned(),
        using: using_name.to_owned(),
        diff: made_with.difference(using),
        hint: hint.to_owned(),
    })
}

/// What a command that writes one output directory (`--out`) declares: every such command opens it with
/// [`RunDir::open_output`], claims it for its settings with [`RunDir::claim`], stages its files and commits them.
#[derive(Debug, Clone)]
pub struct Output<'a> {
    /// The command, e.g. `train`: its record's key in `run.json`.
    pub command: &'a str,
    /// The flag that named the directory, for messages.
    pub flag: &'a str,
    /// The files that make its result (relative paths): a directory holding any of them without a record of this
    /// command (another tool's, or an older lsn's) is refused rather than overwritten.
    pub results: &'a [&'a str],
    /// About how many bytes it will write.
    pub need_bytes: u64,
}

/// How a stage opens its run directory.
#[derive(Debug, Clone)]
pub struct OpenOptions<'a> {
    /// The flag that named the directory (`--run`), for messages.
    pub flag: &'a str,
    /// Create the directory if it is missing (stages that start a run); otherwise a missing one is an error.
    pub create: bool,
    /// Sub-directories the stage writes into, created (and checked writable) now.
    pub subdirs: &'a [&'a str],
    /// About how many bytes the stage will write.
    pub need_bytes: u64,
}

/// An open, locked run directory.
#[derive(Debug)]
pub struct RunDir {
    root: PathBuf,
    /// The flag that named the directory, for messages.
    flag: String,
    lock: Lock,
    manifest: Manifest,
    /// Directories this open created, each `(dir, topmost created ancestor)`: removed again if the stage fails before
    /// it writes anything, so a failed first command leaves no empty run behind.
    created: Vec<(PathBuf, PathBuf)>,
    /// Whether this process wrote `run.json`.
    wrote: bool,
}

impl RunDir {
    /// Opens (and locks) the run directory `root`; see the module docs for the checks.
    pub fn open(root: &Path, opts: &OpenOptions) -> Result<RunDir> {
        check_no_foreign_study(root, opts.flag)?;
        let mut created = Vec::new();
        let top = prepare_dir(root, opts.flag, opts.create).map_err(|e| match e {
            Error::NotFound { path, flag, .. } => Error::NotFound {
                path,
                flag,
                hint: "no run there yet: run `lsn capture` with this --run first, or check the path".into(),
            },
            e => e,
        })?;
        created.extend(top.map(|t| (root.to_owned(), t)));
        let lock = Lock::acquire(root, opts.flag)?;
        let mut run = RunDir {
            root: root.to_owned(),
            flag: opts.flag.to_owned(),
            lock,
            manifest: Manifest::default(),
            created,
            wrote: false,
        };
        for sub in opts.subdirs {
            let d = root.join(sub);
            let top = prepare_dir(&d, opts.flag, true)?;
            run.created.extend(top.map(|t| (d, t)));
        }
        check_space(root, opts.flag, opts.need_bytes)?;
        run.manifest = Manifest::read(root)?;
        if let Some(what) = run.recover()? {
            tracing::info!("{}: {what}", root.display());
        }
        let cleaned = run.remove_stale_temporaries(opts.subdirs);
        if cleaned > 0 {
            tracing::info!("removed {cleaned} temporary file(s) left in {} by killed processes", root.display());
        }
        Ok(run)
    }

    /// Opens (creating it if needed) and locks the output directory of the command `out` declares, refusing one
    /// that holds its result files without a record of it.
    pub fn open_output(dir: &Path, out: &Output) -> Result<RunDir> {
        let opts = OpenOptions { flag: out.flag, create: true, subdirs: &[], need_bytes: out.need_bytes };
        let run = RunDir::open(dir, &opts)?;
        if run.manifest.stages.contains_key(out.command) {
            return Ok(run);
        }
        let found: Vec<String> = out.results.iter().filter(|f| dir.join(f).exists()).map(|f| f.to_string()).collect();
        if !found.is_empty() {
            return Err(Error::Unrecorded {
                path: dir.to_owned(),
                files: found.join(", "),
                command: out.command.to_owned(),
                flag: out.flag.to_owned(),
            });
        }
        Ok(run)
    }

    /// Claims output `key` for a result of the model `identity` (named `name`) made with `config` (every setting
    /// that changes the result): refuses a directory that holds another model's results, or this key made with
    /// other settings (naming what differs). Returns the record of an earlier run with the same settings, if any
    /// (the caller may reuse or resume it). Nothing is written until [`RunDir::commit`].
    pub fn claim(
        &mut self,
        key: &str,
        name: &str,
        identity: &ModelIdentity,
        config: &serde_json::Value,
    ) -> Result<Option<StageRecord>> {
        self.check_model(name, identity)?;
        let Some(old) = self.manifest.stages.get(key) else { return Ok(None) };
        let new = StageRecord::new(config.clone(), vec![], "");
        if old.config_sha256 != new.config_sha256 {
            return Err(Error::OtherSettings {
                path: self.root.clone(),
                key: key.to_owned(),
                diff: config_difference(&old.config, config, 4),
            });
        }
        Ok(Some(old.clone()))
    }

    /// Binds the model (if the run has none yet) and commits the staged outputs with the record of `key`.
    pub fn commit_output(
        &mut self,
        key: &str,
        name: &str,
        identity: &ModelIdentity,
        config: serde_json::Value,
    ) -> Result<Vec<String>> {
        self.check_model(name, identity)?;
        if self.manifest.model.as_ref().is_none_or(|m| !m.identity.same_model(identity)) {
            self.manifest.model = Some(RunModel { name: name.to_owned(), identity: identity.clone() });
        }
        let staged = commit::staged_files(self)?;
        self.commit(vec![(key.to_owned(), StageRecord::new(config, staged, "complete"))])
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The lock record this process took over from a dead process, if it did.
    pub fn took_over(&self) -> Option<&Holder> {
        self.lock.took_over.as_ref()
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The model this run's results belong to, once a stage has bound one.
    pub fn model(&self) -> Option<&RunModel> {
        self.manifest.model.as_ref()
    }

    /// Checks, without binding anything, that `identity` may join this run: the run holds no results yet, or its
    /// results are of this model.
    pub fn check_model(&self, name: &str, identity: &ModelIdentity) -> Result<()> {
        match &self.manifest.model {
            Some(m) if !m.identity.same_model(identity) && !self.manifest.stages.is_empty() => {
                Err(Error::ModelMismatch {
                    path: self.root.clone(),
                    had: m.name.clone(),
                    want: name.to_owned(),
                    diff: m.identity.difference(identity),
                    flag: self.flag.as_str().into(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Binds the run to the model `identity` (named `name`) after [`RunDir::check_model`]: another model's results
    /// never join a run directory; a run that records no stage output yet is re-bound.
    pub fn bind_model(&mut self, name: &str, identity: &ModelIdentity) -> Result<()> {
        self.check_model(name, identity)?;
        match &self.manifest.model {
            Some(m) if m.identity.same_model(identity) => return Ok(()),
            Some(m) => {
                tracing::info!("{} held no results of {} yet: it now belongs to {name}", self.root.display(), m.name)
            }
            None => {}
        }
        self.manifest.model = Some(RunModel { name: name.to_owned(), identity: identity.clone() });
        self.write_manifest()
    }

    fn write_manifest(&mut self) -> Result<()> {
        self.manifest.write(&self.root)?;
        self.wrote = true;
        Ok(())
    }

    /// Checks that statistics or other inputs made with `identity` (as recorded in the file `what`) belong to this
    /// run's model; the first input binds a run that has none yet.
    pub fn check_input(&mut self, what: &Path, name: &str, identity: &ModelIdentity) -> Result<()> {
        self.bind_model(name, identity).map_err(|e| match e {
            Error::ModelMismatch { path, had, diff, .. } => {
                Error::InputMismatch { file: what.to_owned(), model: had, manifest: path.join(MANIFEST_FILE), diff }
            }
            e => e,
        })
    }

    /// The record of stage output `key`, if any.
    pub fn stage(&self, key: &str) -> Option<&StageRecord> {
        self.manifest.stages.get(key)
    }

    /// Records (or replaces) stage output `key` in `run.json`.
    pub fn record(&mut self, key: &str, record: StageRecord) -> Result<()> {
        self.manifest.stages.insert(key.to_owned(), record);
        self.write_manifest()
    }

    /// Removes the temporaries of atomic writes (`.NAME.PID.tmp`) that killed stages left where run-directory stages
    /// write: the manifest's at the root, and any under the sub-directories this stage writes. Only holders of the
    /// lock write there, so with the lock held each one belongs to a process that died mid-write. The rest of the
    /// directory is left alone: other commands write beside a run while a stage holds its lock (`lsn reproduce`'s
    /// state files, evaluations and fine-tunes, from other shards), and their temporaries are live.
    fn remove_stale_temporaries(&self, subdirs: &[&str]) -> usize {
        // `.PREFIX….tmp` files in `dir` and, `depth` levels down, in its sub-directories.
        fn walk(dir: &Path, depth: usize, prefix: &str, n: &mut usize) {
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                match e.file_type() {
                    Ok(t) if t.is_dir() && depth > 0 => walk(&e.path(), depth - 1, prefix, n),
                    Ok(t)
                        if t.is_file()
                            && name.starts_with(prefix)
                            && name.ends_with(".tmp")
                            && std::fs::remove_file(e.path()).is_ok() =>
                    {
                        tracing::debug!("removed stale temporary {}", e.path().display());
                        *n += 1;
                    }
                    _ => {}
                }
            }
        }
        let mut n = 0;
        walk(&self.root, 0, &format!(".{MANIFEST_FILE}."), &mut n);
        for sub in subdirs {
            walk(&self.root.join(sub), 3, ".", &mut n);
        }
        n
    }
}

impl Drop for RunDir {
    /// A stage that failed before writing anything leaves no directory it created behind.
    fn drop(&mut self) {
        // What a failed command staged is not an output; a commit in progress (journal present) is kept for the
        // next open to finish.
        if !self.root.join(JOURNAL_FILE).exists() {
            let _ = std::fs::remove_dir_all(self.root.join(STAGING_DIR));
        }
        if self.wrote {
            return;
        }
        for (dir, top) in self.created.iter().rev() {
            if dir == &self.root {
                let only_lock = std::fs::read_dir(dir)
                    .map(|mut d| d.all(|e| e.is_ok_and(|e| e.file_name() == LOCK_FILE)))
                    .unwrap_or(false);
                if !only_lock {
                    continue;
                }
                let _ = std::fs::remove_file(dir.join(LOCK_FILE));
            }
            preflight::remove_empty_chain(dir, top);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn id(w: &str) -> ModelIdentity {
        ModelIdentity::new("c".into(), "t".into(), BTreeMap::from([("model.safetensors".into(), w.into())]))
    }

    fn opts() -> OpenOptions<'static> {
        OpenOptions { flag: "--run", create: true, subdirs: &["stats"], need_bytes: 0 }
    }

    #[test]
    fn binds_one_model_and_refuses_another() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("run");
        {
            let mut r = RunDir::open(&root, &opts()).unwrap();
            assert!(root.join("stats").is_dir());
            r.bind_model("base", &id("aaaa")).unwrap();
            r.record("capture/en", StageRecord::new(serde_json::json!({"seed": 1}), vec![], "complete")).unwrap();
        }
        let mut r = RunDir::open(&root, &opts()).unwrap();
        assert_eq!(r.model().unwrap().name, "base");
        assert!(RunDir::open(&root, &opts()).unwrap_err().to_string().contains("in use by pid"));
        assert_eq!(r.stage("capture/en").unwrap().state, "complete");
        r.bind_model("base again", &id("aaaa")).unwrap();
        let e = r.bind_model("fine-tune", &id("bbbb")).unwrap_err().to_string();
        assert!(e.contains("holds results of model base") && e.contains("fine-tune") && e.contains("weights"), "{e}");
        let e = r.check_input(Path::new("stats/fr.safetensors"), "x", &id("bbbb")).unwrap_err().to_string();
        assert!(e.contains("stats/fr.safetensors was made with another model") && e.contains("run.json"), "{e}");
    }

    #[test]
    fn a_failed_first_stage_leaves_nothing_and_an_unused_binding_is_replaced() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("a/run");
        drop(RunDir::open(&root, &opts()).unwrap());
        assert!(!t.path().join("a").exists(), "an unused new run directory is removed");
        {
            let mut r = RunDir::open(&root, &opts()).unwrap();
            r.bind_model("wrong tokenizer", &id("aaaa")).unwrap();
        }
        let mut r = RunDir::open(&root, &opts()).unwrap();
        r.bind_model("right one", &id("bbbb")).unwrap();
        assert_eq!(r.model().unwrap().name, "right one");
    }

    #[test]
    fn stale_temporaries_are_removed_and_missing_runs_named() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("run");
        std::fs::create_dir_all(root.join("stats")).unwrap();
        std::fs::write(root.join("stats/.en.safetensors.4242.tmp"), "half").unwrap();
        std::fs::write(root.join("stats/en.partial.safetensors"), "checkpoint").unwrap();
        std::fs::write(root.join(".run.json.4242.tmp"), "half").unwrap();
        // Other commands' files beside the run (a reproduce shard's state, an evaluation) are being written now.
        std::fs::create_dir_all(root.join("eval/xnli")).unwrap();
        std::fs::write(root.join("eval/xnli/.results.json.4243.tmp"), "live").unwrap();
        std::fs::write(root.join(".reproduce.shard-1-of-3.json.4243.tmp"), "live").unwrap();
        drop(RunDir::open(&root, &opts()).unwrap());
        assert!(!root.join("stats/.en.safetensors.4242.tmp").exists());
        assert!(!root.join(".run.json.4242.tmp").exists());
        assert!(root.join("eval/xnli/.results.json.4243.tmp").exists(), "another command's temporary was removed");
        assert!(root.join(".reproduce.shard-1-of-3.json.4243.tmp").exists(), "another command's temporary was removed");
        assert!(root.join("stats/en.partial.safetensors").exists(), "checkpoints are kept for resuming");
        let o = OpenOptions { create: false, ..opts() };
        let e = RunDir::open(&t.path().join("nope"), &o).unwrap_err().to_string();
        assert!(e.contains("does not exist") && e.contains("lsn capture"), "{e}");
        std::fs::write(root.join(MANIFEST_FILE), "{").unwrap();
        let e = RunDir::open(&root, &opts()).unwrap_err().to_string();
        assert!(e.contains("run.json is damaged"), "{e}");
    }

    const TRAIN: Output<'static> =
        Output { command: "train", flag: "--out", results: &["adapter.safetensors", "train.json"], need_bytes: 0 };

    #[test]
    fn an_output_is_claimed_for_one_setting_and_committed_all_or_nothing() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("adapter");
        let cfg = |lr: f64| serde_json::json!({"spec": {"lr": lr, "rank": 8}});
        {
            let mut out = RunDir::open_output(&dir, &TRAIN).unwrap();
            assert!(out.claim("train", "base", &id("aaaa"), &cfg(1e-3)).unwrap().is_none());
            // A second command on the same directory is refused while the first holds it.
            assert!(RunDir::open_output(&dir, &TRAIN).unwrap_err().to_string().contains("in use by pid"));
            out.stage_bytes("adapter.safetensors", b"weights").unwrap();
            out.stage_bytes("nested/train.json", b"{}").unwrap();
            assert!(!dir.join("adapter.safetensors").exists(), "nothing is in place before the commit");
            let moved = out.commit_output("train", "base", &id("aaaa"), cfg(1e-3)).unwrap();
            assert_eq!(moved, ["adapter.safetensors", "nested/train.json"]);
        }
        assert_eq!(std::fs::read(dir.join("adapter.safetensors")).unwrap(), b"weights");
        assert!(!dir.join(STAGING_DIR).exists() && !dir.join(JOURNAL_FILE).exists());
        let mut out = RunDir::open_output(&dir, &TRAIN).unwrap();
        let same = out.claim("train", "base", &id("aaaa"), &cfg(1e-3)).unwrap().unwrap();
        assert_eq!((same.state.as_str(), same.outputs.len()), ("complete", 2));
        let e = out.claim("train", "base", &id("aaaa"), &cfg(2e-3)).unwrap_err().to_string();
        assert!(e.contains("other settings (spec.lr: 0.001 → 0.002)") && e.contains("delete"), "{e}");
        let e = out.claim("train", "other", &id("bbbb"), &cfg(1e-3)).unwrap_err().to_string();
        assert!(e.contains("holds results of model base") && e.contains("weights"), "{e}");
        // A failed command's staged files are removed with it.
        out.stage_bytes("adapter.safetensors", b"half").unwrap();
        drop(out);
        assert!(!dir.join(STAGING_DIR).exists());
        assert_eq!(std::fs::read(dir.join("adapter.safetensors")).unwrap(), b"weights");
        // Result files that no record accounts for (another tool's) are not overwritten.
        let foreign = t.path().join("foreign");
        std::fs::create_dir_all(&foreign).unwrap();
        std::fs::write(foreign.join("train.json"), "{}").unwrap();
        let e = RunDir::open_output(&foreign, &TRAIN).unwrap_err().to_string();
        assert!(e.contains("already holds train.json, which no `lsn train` recorded"), "{e}");
    }

    #[test]
    fn a_commit_cut_short_is_finished_on_the_next_open_and_staging_alone_rolled_back() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("out");
        // A process killed after its journal, with one of two files moved.
        std::fs::create_dir_all(dir.join(STAGING_DIR)).unwrap();
        std::fs::write(dir.join(STAGING_DIR).join("train.json"), "new").unwrap();
        std::fs::write(dir.join("adapter.safetensors"), "moved").unwrap();
        let rec = StageRecord::new(serde_json::json!({"a": 1}), vec!["adapter.safetensors".into()], "complete");
        let journal = serde_json::json!({"files": ["adapter.safetensors", "train.json"], "records": {"train": rec}});
        std::fs::write(dir.join(JOURNAL_FILE), journal.to_string()).unwrap();
        let out = RunDir::open_output(&dir, &TRAIN).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("train.json")).unwrap(), "new");
        assert_eq!(out.stage("train").unwrap().state, "complete");
        assert!(!dir.join(JOURNAL_FILE).exists() && !dir.join(STAGING_DIR).exists());
        drop(out);
        // A process killed while staging, before its journal: nothing of it is kept.
        std::fs::create_dir_all(dir.join(STAGING_DIR)).unwrap();
        std::fs::write(dir.join(STAGING_DIR).join("train.json"), "half").unwrap();
        drop(RunDir::open_output(&dir, &TRAIN).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("train.json")).unwrap(), "new");
        assert!(!dir.join(STAGING_DIR).exists());
    }

    #[test]
    fn settings_differences_are_named() {
        let a = serde_json::json!({"spec": {"lr": 1, "batch": 8}, "data": {"split": "dev"}, "x": [1]});
        let b = serde_json::json!({"spec": {"lr": 2, "batch": 8}, "data": {"split": "test"}, "x": [1]});
        assert_eq!(config_difference(&a, &b, 4), r#"data.split: "dev" → "test"; spec.lr: 1 → 2"#);
        assert_eq!(config_difference(&a, &b, 1), r#"data.split: "dev" → "test"; 1 more"#);
        assert_eq!(config_difference(&a, &a, 4), "nothing");
        let f32_lr = |x: f32| serde_json::json!({"lr": f64::from(x)});
        assert_eq!(config_difference(&f32_lr(1e-4), &f32_lr(2e-4), 4), "lr: 0.0001 → 0.0002");
        let parsed = |x: f64| serde_json::json!({"beta2": x});
        assert_eq!(config_difference(&parsed(0.9990000128746032), &parsed(0.9990000128746033), 4), "nothing");
        let m = id("aaaa");
        assert!(check_made_with(Path::new("a"), "m1", &m, "m1", &m, "").is_ok());
        let e = check_made_with(Path::new("A"), "m1", &m, "m2", &id("bbbb"), "train it on m2").unwrap_err();
        let e = e.to_string();
        assert!(e.contains("A was made with model m1, not with m2") && e.contains("train it on m2"), "{e}");
    }
}
