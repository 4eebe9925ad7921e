//! The run directory's exclusive lock: an OS file lock (`flock`) on `RUN/.lsn.lock`, which the kernel releases when
//! its process dies, plus the holder's pid and command written inside — so a second process is told who holds it,
//! and a lock left by a killed process is taken over (and said so).

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The lock file's name inside a run directory.
pub const LOCK_FILE: &str = ".lsn.lock";

/// Who holds (or held) a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// The command line, as the holder was started.
    pub command: String,
    /// Seconds since the Unix epoch when it took the lock.
    pub since: u64,
}

impl Holder {
    /// How long ago it took the lock, for people (`42 s`, `3 min`, `2 h`).
    pub fn age(&self) -> String {
        age(self.since)
    }

    /// A holder whose record cannot be read (written by an older lsn, or mid-write).
    fn unknown() -> Holder {
        Holder { pid: 0, command: "another lsn command".into(), since: now() }
    }

    fn me() -> Holder {
        let mut command: String = std::env::args().collect::<Vec<_>>().join(" ");
        if command.len() > 300 {
            let cut = (0..=300).rev().find(|&i| command.is_char_boundary(i)).unwrap_or(0);
            command.truncate(cut);
            command.push('…');
        }
        Holder { pid: std::process::id(), command, since: now() }
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn age(since: u64) -> String {
    let s = now().saturating_sub(since);
    if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min", s / 60)
    } else {
        format!("{} h", s / 3600)
    }
}

/// A held lock; released (and its holder record cleared) on drop.
#[derive(Debug)]
pub struct Lock {
    file: std::fs::File,
    path: PathBuf,
    /// The holder of a lock this process took over from a dead process.
    pub took_over: Option<Holder>,
}

impl Lock {
    /// Takes the lock of the run directory `dir` (which exists), or fails at once naming the live holder.
    pub fn acquire(dir: &Path, flag: &str) -> Result<Lock> {
        Lock::acquire_file(dir, LOCK_FILE, flag)
    }

    /// Takes the lock held in the file `name` inside `dir` (which exists): a command that holds a directory's
    /// lock while the stages it runs take [`LOCK_FILE`] (`lsn reproduce`) locks another file of the same directory.
    pub fn acquire_file(dir: &Path, name: &str, flag: &str) -> Result<Lock> {
        let path = dir.join(name);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let previous = read_holder(&mut file);
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let h = previous.unwrap_or_else(Holder::unknown);
                return Err(Error::Locked {
                    path: dir.to_owned(),
                    pid: h.pid,
                    command: h.command,
                    age: age(h.since),
                    flag: flag.to_owned(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        // Locked now: whatever record is inside was left by a process that died holding the lock.
        let took_over = read_holder(&mut file).filter(|h| h.pid != std::process::id());
        if let Some(h) = &took_over {
            tracing::info!("took over the lock of {}: pid {} is no longer running", dir.display(), h.pid);
        }
        let me = serde_json::to_vec(&Holder::me()).unwrap_or_default();
        (|| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(&me)?;
            file.sync_data()
        })()
        .map_err(|e| Error::io(&path, e))?;
        crate::study::note_taken(dir, name);
        Ok(Lock { file, path, took_over })
    }

    /// Who holds the lock in the file `name` of `dir` now, if anyone: `None` when no process holds it (or the file
    /// does not exist). It takes and at once drops the OS lock to find out, leaving the record inside untouched.
    pub fn probe(dir: &Path, name: &str) -> Result<Option<Holder>> {
        let path = dir.join(name);
        let mut file = match std::fs::OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                Ok(None)
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(Some(read_holder(&mut file).unwrap_or_else(Holder::unknown))),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_holder(file: &mut std::fs::File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

impl Drop for Lock {
    fn drop(&mut self) {
        // An empty record says "released cleanly"; the OS lock goes with the file handle.
        if let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) {
            crate::study::note_released(dir, &name.to_string_lossy());
        }
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_stale_record_taken_over() {
        let t = tempfile::tempdir().unwrap();
        let a = Lock::acquire(t.path(), "--run").unwrap();
        assert!(a.took_over.is_none());
        // flock locks belong to open file descriptions: a second open in the same process conflicts like another
        // process would.
        let e = Lock::acquire(t.path(), "--run").unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())) && e.contains("in use"), "{e}");
        drop(a);
        assert_eq!(std::fs::read(t.path().join(LOCK_FILE)).unwrap().len(), 0, "a clean release clears the record");
        // A record left by a killed process (no OS lock held any more).
        let dead = Holder { pid: 999_999_999, command: "lsn capture --lang en".into(), since: 1 };
        std::fs::write(t.path().join(LOCK_FILE), serde_json::to_vec(&dead).unwrap()).unwrap();
        let b = Lock::acquire(t.path(), "--run").unwrap();
        assert_eq!(b.took_over, Some(dead));
        // A probe finds the live holder, leaves its record, and finds no one once it is gone.
        let held = Lock::probe(t.path(), LOCK_FILE).unwrap().expect("held");
        assert_eq!(held.pid, std::process::id());
        assert!(Lock::acquire(t.path(), "--run").is_err(), "the probe left the lock with its holder");
        drop(b);
        assert_eq!(Lock::probe(t.path(), LOCK_FILE).unwrap(), None);
        assert_eq!(Lock::probe(t.path(), "no-such.lock").unwrap(), None);
    }
}
