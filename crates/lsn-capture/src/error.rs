//! The error type of `lsn-capture`.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors capturing, reading or merging statistics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] lsn_core::Error),
    /// The capture request itself is inconsistent.
    #[error("invalid capture request: {0}")]
    Invalid(String),
    /// A statistics file is unreadable, corrupt or of another format.
    #[error("statistics file {path} is unusable: {reason}")]
    BadFile { path: PathBuf, reason: String },
    /// Files that cannot be merged.
    #[error("cannot merge statistics: {0}")]
    Merge(String),
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), err: source }
    }
}
