//! The error type of the ONNX Runtime backend, converted to `lsn_core::Error` at the crate boundary.

use std::path::PathBuf;

/// Result with the backend's [`Error`].
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Failures inside the ONNX Runtime backend. No ort type leaves the crate.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// ONNX Runtime failed; `during` says what the backend was doing.
    #[error("{during}: {message}")]
    Runtime { during: String, message: String },
    #[error("writing the ONNX export: {0}")]
    Export(String),
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    #[error(transparent)]
    Core(#[from] lsn_core::Error),
    #[error(transparent)]
    Weights(#[from] lsn_weights::Error),
}

impl From<Error> for lsn_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(e) => e,
            Error::Weights(e) => e.into(),
            e => lsn_core::Error::Backend { backend: crate::NAME, message: e.to_string() },
        }
    }
}

/// Attaches "what we were doing" to an ort result.
pub(crate) trait Context<T> {
    fn during(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn during(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Runtime { during: what(), message: e.to_string() })
    }
}
