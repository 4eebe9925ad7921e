//! All or nothing: a command stages every output file under `DIR/.lsn-staging/`, then [`RunDir::commit`] moves them
//! into place together with their records in `run.json`. A journal written before the first move makes the commit
//! complete on the next open if the process dies halfway; a process that dies before it leaves only staged files,
//! which the next open removes. Readers never see some of a command's outputs without the others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result, RunDir, StageRecord};

/// Where outputs wait for their commit, inside the directory.
pub const STAGING_DIR: &str = ".lsn-staging";
/// The commit's journal: the files and records being moved into place.
pub const JOURNAL_FILE: &str = ".lsn-commit.json";
/// Testing hook: an output staged with [`RunDir::stage_bytes`] whose relative path equals this variable's value fails
/// as a full disk would, so tests can check that a late write failure leaves no output.
pub const FAIL_WRITE_ENV: &str = "LSN_FAIL_WRITE";

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    files: Vec<String>,
    records: BTreeMap<String, StageRecord>,
}

/// Every regular file under `dir`, as paths relative to it with `/` separators, sorted.
fn files_under(dir: &Path) -> Result<Vec<String>> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        for e in entries {
            let e = e.map_err(|e| Error::io(dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            if e.file_type().map_err(|err| Error::io(e.path(), err))?.is_dir() {
                walk(&e.path(), &r, out)?;
            } else {
                out.push(r);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if dir.is_dir() {
        walk(dir, "", &mut out)?;
    }
    out.sort();
    Ok(out)
}

/// The files staged in `run` now.
pub(crate) fn staged_files(run: &RunDir) -> Result<Vec<String>> {
    files_under(&run.root().join(STAGING_DIR))
}

impl RunDir {
    /// The staging path of the output `rel` (a path relative to the directory, `/`-separated); its parent
    /// directories are created. Write the file there by any means, then [`RunDir::commit`].
    pub fn staged(&self, rel: &str) -> Result<PathBuf> {
        let path = self.root().join(STAGING_DIR).join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        Ok(path)
    }

    /// The staging directory itself (created), for writers that put several files into one directory.
    pub fn staging_dir(&self) -> Result<PathBuf> {
        let dir = self.root().join(STAGING_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(dir)
    }

    /// The output a staged path becomes on commit, relative to the directory (`/`-separated) — what a record lists
    /// and what a message names (with [`RunDir::path`]).
    pub fn unstaged(&self, staged: &Path) -> String {
        let staging = self.root().join(STAGING_DIR);
        staged.strip_prefix(&staging).unwrap_or(staged).to_string_lossy().replace('\\', "/")
    }

    /// Stages the output `rel` with these bytes.
    pub fn stage_bytes(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        let path = self.staged(rel)?;
        if std::env::var(FAIL_WRITE_ENV).is_ok_and(|v| v == rel) {
            let err = std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!("no space left on device (simulated by {FAIL_WRITE_ENV})"),
            );
            return Err(Error::io(&path, err));
        }
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))
    }

    /// Moves every staged output into place and records `records` in `run.json`, as one step: either all of it
    /// happens (now, or on the next open if this process dies halfway) or none. Returns the files moved.
    pub fn commit(&mut self, records: Vec<(String, StageRecord)>) -> Result<Vec<String>> {
        let staging = self.root().join(STAGING_DIR);
        let files = files_under(&staging)?;
        let journal = Journal { files: files.clone(), records: records.into_iter().collect() };
        let path = self.root().join(JOURNAL_FILE);
        let bytes = serde_json::to_vec_pretty(&journal).map_err(|e| Error::io(&path, std::io::Error::other(e)))?;
        lsn_core::write_atomic(&path, &bytes).map_err(|e| Error::io(&path, e))?;
        self.roll_forward(journal)?;
        Ok(files)
    }

    /// Completes a commit from its journal: the staged files still there are moved, the records written, then the
    /// journal and the staging directory removed.
    fn roll_forward(&mut self, journal: Journal) -> Result<()> {
        let staging = self.root().join(STAGING_DIR);
        for rel in &journal.files {
            let (from, to) = (staging.join(rel), self.root().join(rel));
            if !from.exists() {
                continue; // moved before the process died
            }
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            std::fs::rename(&from, &to).map_err(|e| Error::io(&to, e))?;
        }
        for (key, record) in journal.records {
            self.manifest.stages.insert(key, record);
        }
        self.write_manifest()?;
        let path = self.root().join(JOURNAL_FILE);
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        let _ = std::fs::remove_dir_all(&staging);
        Ok(())
    }

    /// On open, with the lock held: finishes a commit a dead process began, or removes what a dead process staged
    /// without committing. Says which it did.
    pub(crate) fn recover(&mut self) -> Result<Option<&'static str>> {
        let path = self.root().join(JOURNAL_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let journal: Journal = serde_json::from_slice(&bytes).map_err(|e| Error::Manifest {
                    path: path.clone(),
                    reason: format!("an unfinished commit's journal cannot be read ({e})"),
                })?;
                self.roll_forward(journal)?;
                Ok(Some("finished the commit a killed process had begun"))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let staging = self.root().join(STAGING_DIR);
                if staging.exists() {
                    std::fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
                    return Ok(Some("removed the outputs a killed process had staged but not committed"));
                }
                Ok(None)
            }
            Err(e) => Err(Error::io(&path, e)),
        }
    }
}

/// The settings that differ between two stage configurations, as `path: old → new` (at most `max`), for messages.
pub fn config_difference(old: &serde_json::Value, new: &serde_json::Value, max: usize) -> String {
    fn walk(a: &serde_json::Value, b: &serde_json::Value, at: &str, out: &mut Vec<String>) {
        use serde_json::Value::Object;
        match (a, b) {
            (Object(x), Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let null = serde_json::Value::Null;
                    let p = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                    walk(x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), &p, out);
                }
            }
            // Numbers read back from run.json may differ from the ones computed now in the last bit of the parse.
            (serde_json::Value::Number(x), serde_json::Value::Number(y))
                if x.as_f64().zip(y.as_f64()).is_some_and(|(x, y)| (x - y).abs() <= 1e-12 * x.abs().max(y.abs())) => {}
            _ if a != b => {
                let show = |v: &serde_json::Value| {
                    // A setting held in f32 (a learning rate) reads as it was given: 0.0001, not 9.99999974e-5.
                    let s = match v.as_f64() {
                        Some(x) if v.is_f64() && f64::from(x as f32) == x => format!("{}", x as f32),
                        _ => v.to_string(),
                    };
                    if s.chars().count() > 40 { format!("{}…", s.chars().take(39).collect::<String>()) } else { s }
                };
                out.push(format!("{at}: {} → {}", show(a), show(b)));
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(old, new, "", &mut out);
    let n = out.len();
    if n > max {
        out.truncate(max);
        out.push(format!("{} more", n - max));
    }
    if out.is_empty() { "nothing".into() } else { out.join("; ") }
}
