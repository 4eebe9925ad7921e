//! Atomic file writes (every output of lsn appears complete or not at all) and the cache directory.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The cache directory for fetched models, data and exports: `$LSN_HOME`, else `$XDG_CACHE_HOME/lsn`, else
/// `~/.cache/lsn`.
pub fn cache_home() -> PathBuf {
    if let Some(h) = std::env::var_os("LSN_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("lsn")
}

/// Writes `bytes` to `path` through a temporary sibling, fsync and a rename, so no reader ever sees a partial file.
/// The file gets the process's usual permissions (not a temp file's private 0600). Creates the parent directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_whole_files_and_leaves_no_temp() {
        let t = std::env::temp_dir().join(format!("lsn-fs-test-{}", std::process::id()));
        let p = t.join("a/b.txt");
        super::write_atomic(&p, b"one").unwrap();
        super::write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(t.join("a")).unwrap().count(), 1);
        // A path below a regular file cannot be written.
        assert!(super::write_atomic(&p.join("c"), b"x").is_err());
        std::fs::remove_dir_all(&t).unwrap();
    }
}
