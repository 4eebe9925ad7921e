//! Finding the offline data directory (`--data-dir`, else `LSN_DATA_DIR`) and the cache directory (`LSN_HOME`).

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Environment variable naming the data directory.
pub const DATA_DIR_ENV: &str = "LSN_DATA_DIR";

pub use lsn_core::cache_home;

/// The file `lsn fetch-model` writes last into a fetched model's directory: its presence means complete.
pub const FETCH_MARKER: &str = "lsn-fetch.json";

/// Where fetched model `name` lives under the cache `home`, as a HF checkpoint directory.
pub fn model_dir(home: &Path, name: &str) -> PathBuf {
    home.join("models").join(name)
}

/// The data directory: `explicit` if given, else `$LSN_DATA_DIR`. It must exist and hold at least one of `corpus/`,
/// `xnli/`, `xquad/` (each reader then says what it misses).
pub fn resolve_data_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    let dir = match explicit {
        Some(d) => d.to_owned(),
        None => match std::env::var_os(DATA_DIR_ENV) {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => return Err(Error::NoDataDir(String::new())),
        },
    };
    if !["corpus", "xnli", "xquad"].iter().any(|d| dir.join(d).is_dir()) {
        return Err(Error::NoDataDir(format!(" ({} has no corpus/, xnli/ or xquad/ folder)", dir.display())));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_dir_must_hold_data() {
        let t = tempfile::tempdir().unwrap();
        let e = resolve_data_dir(Some(t.path())).unwrap_err().to_string();
        assert!(e.contains("no corpus/, xnli/ or xquad/ folder") && e.contains("--data-dir"), "{e}");
        std::fs::create_dir(t.path().join("xnli")).unwrap();
        assert_eq!(resolve_data_dir(Some(t.path())).unwrap(), t.path());
    }
}
