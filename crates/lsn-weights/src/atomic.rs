//! Writing a directory atomically: fill a hidden sibling directory, then rename it into place.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A hidden sibling of the target directory that becomes the target on [`Staging::commit`] and is removed if dropped
/// before that, so a failure never leaves a complete-looking directory at the target.
#[derive(Debug)]
pub(crate) struct Staging {
    tmp: PathBuf,
    target: PathBuf,
    committed: bool,
}

fn sibling(target: &Path, tag: &str) -> Result<PathBuf> {
    let name = target.file_name().ok_or_else(|| {
        Error::io(target, std::io::Error::new(std::io::ErrorKind::InvalidInput, "output path has no directory name"))
    })?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let hidden = format!(".{}.lsn-{tag}-{}-{n}", name.to_string_lossy(), std::process::id());
    Ok(target.with_file_name(hidden))
}

fn is_empty_dir(p: &Path) -> Result<bool> {
    Ok(std::fs::read_dir(p).map_err(|e| Error::io(p, e))?.next().is_none())
}

impl Staging {
    /// Prepares to write `target`; refuses a non-empty existing directory unless `overwrite`.
    pub(crate) fn new(target: &Path, overwrite: bool) -> Result<Staging> {
        if target.exists() {
            if !target.is_dir() {
                return Err(Error::OutputIsFile { path: target.to_owned() });
            }
            if !overwrite && !is_empty_dir(target)? {
                return Err(Error::OutputExists { path: target.to_owned() });
            }
        }
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let tmp = sibling(target, "tmp")?;
        std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(Staging { tmp, target: target.to_owned(), committed: false })
    }

    /// Where to write the files.
    pub(crate) fn path(&self) -> &Path {
        &self.tmp
    }

    /// Moves the finished directory into place (replacing an existing one when allowed at creation).
    pub(crate) fn commit(mut self) -> Result<()> {
        let mut old = None;
        if self.target.exists() {
            if is_empty_dir(&self.target)? {
                std::fs::remove_dir(&self.target).map_err(|e| Error::io(&self.target, e))?;
            } else {
                let aside = sibling(&self.target, "old")?;
                std::fs::rename(&self.target, &aside).map_err(|e| Error::io(&self.target, e))?;
                old = Some(aside);
            }
        }
        if let Err(e) = std::fs::rename(&self.tmp, &self.target) {
            if let Some(aside) = &old {
                let _ = std::fs::rename(aside, &self.target);
            }
            return Err(Error::io(&self.target, e));
        }
        self.committed = true;
        if let Some(aside) = old {
            std::fs::remove_dir_all(&aside).map_err(|e| Error::io(&aside, e))?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_staging_leaves_nothing_and_commit_replaces_only_when_allowed() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("out");
        {
            let s = Staging::new(&target, false).unwrap();
            std::fs::write(s.path().join("config.json"), "{}").unwrap();
        }
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0, "temp dir not cleaned up");

        let s = Staging::new(&target, false).unwrap();
        std::fs::write(s.path().join("a"), "1").unwrap();
        s.commit().unwrap();
        assert_eq!(std::fs::read_to_string(target.join("a")).unwrap(), "1");

        let e = Staging::new(&target, false).unwrap_err().to_string();
        assert!(e.contains("not empty"), "{e}");

        let s = Staging::new(&target, true).unwrap();
        std::fs::write(s.path().join("b"), "2").unwrap();
        s.commit().unwrap();
        assert!(!target.join("a").exists() && target.join("b").exists());
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1, "old dir not cleaned up");
    }
}
