//! File-system helpers: hashing, atomic writes.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// [`lsn_core::write_atomic`], with an error that names the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    lsn_core::write_atomic(path, bytes)
        .with_context(|| format!("cannot write {} (is its directory writable?)", path.display()))
}
