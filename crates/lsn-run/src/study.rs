//! Studies: a command that runs many stages in one directory (`lsn reproduce`) holds a study lock there for its whole
//! life, and every other command that writes into that directory, or anywhere below it, is refused — unless its
//! process takes part in the study (the study's own stages, run in its process or as its child processes, or a
//! shard of it).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::{Error, Lock, Result};

/// Lock files whose name starts with this (`.reproduce.lock`, `.reproduce.shard-0-of-4.lock`) mark a running study.
pub const STUDY_LOCK_PREFIX: &str = ".reproduce";

/// The study locks this process holds: `(directory, as canonicalized, file name)`.
static HELD: Mutex<Vec<(PathBuf, String)>> = Mutex::new(Vec::new());

fn is_study_lock(name: &str) -> bool {
    name.starts_with(STUDY_LOCK_PREFIX) && name.ends_with(".lock")
}

/// `path` made absolute with its existing part canonicalized (symbolic links resolved), so that two spellings of one
/// directory compare equal.
pub(crate) fn canonical(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_owned())
    };
    for anc in abs.ancestors() {
        if let Ok(c) = anc.canonicalize() {
            let rest = abs.strip_prefix(anc).unwrap_or(Path::new(""));
            return if rest.as_os_str().is_empty() { c } else { c.join(rest) };
        }
    }
    abs
}

/// Records a lock this process took (a study lock is remembered; others are ignored).
pub(crate) fn note_taken(dir: &Path, name: &str) {
    if is_study_lock(name) {
        HELD.lock().unwrap_or_else(|e| e.into_inner()).push((canonical(dir), name.to_owned()));
    }
}

/// Forgets a lock this process released.
pub(crate) fn note_released(dir: &Path, name: &str) {
    if is_study_lock(name) {
        let dir = canonical(dir);
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = held.iter().position(|(d, n)| d == &dir && n == name) {
            held.remove(k);
        }
    }
}

/// Whether the process `pid`, holding a study lock, is this process or the one that started it (`lsn reproduce
/// --processes` runs each stage as a child process).
fn is_member(pid: u32) -> bool {
    #[cfg(unix)]
    let parent = std::os::unix::process::parent_id();
    #[cfg(not(unix))]
    let parent = u32::MAX;
    pid == std::process::id() || pid == parent
}

/// Fails when a study of another process runs in `dir` or one of its ancestors and this process takes no part in it
/// (holds none of that directory's study locks); `flag` named `dir`, for the message.
pub fn check_no_foreign_study(dir: &Path, flag: &str) -> Result<()> {
    let target = canonical(dir);
    let held = HELD.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for anc in target.ancestors() {
        if held.iter().any(|(d, _)| d == anc) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(anc) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !is_study_lock(&name) {
                continue;
            }
            if let Some(h) = Lock::probe(anc, &name)?.filter(|h| !is_member(h.pid)) {
                return Err(Error::InStudy {
                    path: dir.to_owned(),
                    study: anc.to_owned(),
                    holder: format!("pid {} (`{}`, for {})", h.pid, h.command, h.age()),
                    flag: flag.to_owned(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_study_of_another_process_guards_its_tree_and_its_members_pass() {
        let t = tempfile::tempdir().unwrap();
        let study = t.path().join("study");
        std::fs::create_dir_all(study.join("train/a")).unwrap();
        assert!(check_no_foreign_study(&study.join("train/a"), "--out").is_ok(), "no study yet");
        // Another process's study: a live OS lock whose record names another pid. This process plays the other one
        // by holding the lock through a file handle it does not register.
        let f =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(study.join(".reproduce.lock"));
        let f = f.unwrap();
        f.try_lock().unwrap();
        std::fs::write(study.join(".reproduce.lock"), r#"{"pid":1,"command":"lsn reproduce --out study","since":0}"#)
            .unwrap();
        for d in [study.clone(), study.join("train/a"), study.join("not/yet/made")] {
            let e = check_no_foreign_study(&d, "--out").unwrap_err().to_string();
            assert!(e.contains("pid 1") && e.contains("lsn reproduce --out study") && e.contains("--out"), "{e}");
        }
        assert!(check_no_foreign_study(t.path(), "--out").is_ok(), "a study does not guard what is above it");
        drop(f);
        // A member: this process holds a study lock of the directory (a shard's), so the stages it runs pass.
        let other = Lock::acquire_file(&study, ".reproduce.shard-1-of-2.lock", "--out").unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(study.join(".reproduce.lock")).unwrap();
        f.try_lock().unwrap();
        assert!(check_no_foreign_study(&study.join("train/a"), "--out").is_ok());
        drop(other);
        assert!(check_no_foreign_study(&study.join("train/a"), "--out").is_err(), "released: no longer a member");
    }
}
