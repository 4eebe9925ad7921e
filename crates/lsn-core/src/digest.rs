//! sha256 of files, streamed: how downloads, checkpoints, exports and goldens are identified.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hex sha256 of the file at `path`.
pub fn sha256_file(path: &Path) -> Result<String> {
    let io = |source| Error::Io { path: path.to_owned(), err: source };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The directory of remembered file hashes in the cache directory `home`: one for every user of
/// [`sha256_file_memo`] (the CLI's model identities, the ort export cache), so a checkpoint is hashed once.
pub fn hash_memo_dir(home: &Path) -> std::path::PathBuf {
    home.join("hashes")
}

/// [`sha256_file`], remembered under `memo_dir` by the file's absolute path, size and modification time, so an
/// unchanged multi-gigabyte checkpoint is hashed once. A lost or unreadable memo only costs a re-hash; a file changed
/// in place gets a new size or mtime and is hashed again.
pub fn sha256_file_memo(path: &Path, memo_dir: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Io { path: path.to_owned(), err: source })?;
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    let stat = format!("{}\n{}\n{}", abs.display(), meta.len(), mtime.map_or(0, |d| d.as_nanos()));
    let memo = memo_dir.join(sha256_hex(stat.as_bytes()));
    if let Ok(d) = std::fs::read_to_string(&memo)
        && d.len() == 64
        && d.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Ok(d);
    }
    let d = sha256_file(path)?;
    let _ = crate::write_atomic(&memo, d.as_bytes());
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_is_used_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (p, memo) = (dir.path().join("x"), dir.path().join("memo"));
        std::fs::write(&p, b"abc").unwrap();
        let d = sha256_file_memo(&p, &memo).unwrap();
        assert_eq!(d, sha256_file(&p).unwrap());
        assert_eq!(std::fs::read_dir(&memo).unwrap().count(), 1);
        std::fs::write(&p, b"abcd").unwrap();
        assert_eq!(sha256_file_memo(&p, &memo).unwrap(), sha256_file(&p).unwrap(), "a changed file is re-hashed");
    }

    #[test]
    fn hashes_the_file_and_names_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let e = sha256_file(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }
}
