//! File-system helpers: hashing, atomic writes.

use std::path::Path;

use anyhow::{Context, Result};

/// [`lsn_data::sha256_file`], with an error that says which file could not be hashed.
pub fn sha256_file(path: &Path) -> Result<String> {
    lsn_data::sha256_file(path).with_context(|| format!("cannot hash {}", path.display()))
}

/// [`lsn_core::write_atomic`], with an error that names the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    lsn_core::write_atomic(path, bytes)
        .with_context(|| format!("cannot write {} (is its directory writable?)", path.display()))
}
