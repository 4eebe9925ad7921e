//! Checks made before any compute: an output directory exists (or can be created), is writable, and its file system
//! has room for what the command will write — so that a bad path fails in the first second, not after an hour.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The first existing ancestor of `path` (itself included) that is not a directory, if any.
fn file_in_the_way(path: &Path) -> Option<PathBuf> {
    for anc in path.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        match std::fs::metadata(anc) {
            Ok(m) if m.is_dir() => return None,
            Ok(_) => return Some(anc.to_owned()),
            Err(_) => {}
        }
    }
    None
}

/// Makes sure the directory `dir` exists (creating it and its parents when `create`) and that a file can be written
/// into it; `flag` names the option that chose it, for the message. Returns the topmost directory it created, if any.
pub fn prepare_dir(dir: &Path, flag: &str, create: bool) -> Result<Option<PathBuf>> {
    if let Some(blocker) = file_in_the_way(dir) {
        return Err(Error::UnderFile { path: dir.to_owned(), blocker, flag: flag.to_owned() });
    }
    let mut created = None;
    if !dir.is_dir() {
        created = dir.ancestors().take_while(|a| !a.as_os_str().is_empty() && !a.exists()).last().map(Path::to_owned);
        if !create {
            return Err(Error::NotFound {
                path: dir.to_owned(),
                flag: flag.to_owned(),
                hint: "check the path, or run the stage that writes it first".into(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|err| Error::Create {
            path: dir.to_owned(),
            flag: flag.to_owned(),
            err,
        })?;
    }
    let probe = dir.join(format!(".lsn-probe.{}.tmp", std::process::id()));
    std::fs::File::create(&probe).map_err(|err| Error::NotWritable {
        path: dir.to_owned(),
        flag: flag.to_owned(),
        err,
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(created)
}

/// Makes sure the directory that will hold the file `path` exists and is writable (see [`prepare_dir`]).
pub fn prepare_file(path: &Path, flag: &str) -> Result<()> {
    if path.is_dir() {
        return Err(Error::IsADirectory { path: path.to_owned(), flag: flag.to_owned() });
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    prepare_dir(parent, flag, true).map(drop)
}

/// An output directory made ready by [`OutDir::prepare`] ([`prepare_dir`] with `create`): the directories that call
/// created are removed again when the guard drops while they are still empty, so a command that fails before it
/// writes anything leaves no empty output behind. Hold it for the whole command.
#[derive(Debug)]
#[must_use = "dropping the guard at once removes the directory it created"]
pub struct OutDir {
    dir: PathBuf,
    top: Option<PathBuf>,
}

impl OutDir {
    pub fn prepare(dir: &Path, flag: &str) -> Result<OutDir> {
        let top = prepare_dir(dir, flag, true)?;
        Ok(OutDir { dir: dir.to_owned(), top })
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        if let Some(top) = &self.top {
            remove_empty_chain(&self.dir, top);
        }
    }
}

/// Removes `dir` and its ancestors up to `top` (included) while each is empty; stops at the first that is not.
pub(crate) fn remove_empty_chain(dir: &Path, top: &Path) {
    for d in dir.ancestors() {
        if std::fs::remove_dir(d).is_err() || d == top {
            break;
        }
    }
}

/// Fails when the file system of `dir` has less than `need_bytes` free.
pub fn check_space(dir: &Path, flag: &str, need_bytes: u64) -> Result<()> {
    let free = fs2::available_space(dir).map_err(|e| Error::io(dir, e))?;
    if free < need_bytes {
        const MIB: u64 = 1 << 20;
        return Err(Error::NoSpace {
            path: dir.to_owned(),
            flag: flag.to_owned(),
            free_mib: free / MIB,
            need_mib: need_bytes.div_ceil(MIB),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_in_the_way_is_named() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("file");
        std::fs::write(&f, "x").unwrap();
        let e = prepare_dir(&f.join("a/b"), "--run", true).unwrap_err().to_string();
        assert!(e.contains("file is a file") || e.contains(&format!("{} is a file", f.display())), "{e}");
        assert!(e.contains("--run"), "{e}");
        let e = prepare_dir(&t.path().join("missing"), "--run", false).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        let top = prepare_dir(&t.path().join("new/deep"), "--run", true).unwrap();
        assert_eq!(top, Some(t.path().join("new")));
        assert_eq!(prepare_dir(&t.path().join("new/deep"), "--run", true).unwrap(), None);
        assert_eq!(std::fs::read_dir(t.path().join("new/deep")).unwrap().count(), 0, "the probe is removed");
        let e = check_space(t.path(), "--run", u64::MAX).unwrap_err().to_string();
        assert!(e.contains("MiB free"), "{e}");
        let e = prepare_file(t.path(), "--json").unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
    }

    #[test]
    fn an_out_dir_left_empty_is_removed_and_one_written_into_is_kept() {
        let t = tempfile::tempdir().unwrap();
        drop(OutDir::prepare(&t.path().join("a/b/c"), "--out").unwrap());
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0, "every directory it created is gone");
        let kept = t.path().join("k/out");
        let guard = OutDir::prepare(&kept, "--out").unwrap();
        std::fs::write(kept.join("results.json"), "{}").unwrap();
        drop(guard);
        assert!(kept.join("results.json").is_file());
        // A directory that existed before is never removed, empty or not.
        let old = t.path().join("old");
        std::fs::create_dir(&old).unwrap();
        drop(OutDir::prepare(&old, "--out").unwrap());
        assert!(old.is_dir());
    }
}
