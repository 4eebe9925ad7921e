//! The error type of `lsn-lora`: what was wrong with a spec, an adapter file or a training run, and what to do.

use std::path::PathBuf;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A spec, an FTL or a training set that cannot be used; the message says what is wrong and what to do.
    #[error("{0}")]
    Invalid(String),
    /// An adapter directory that is not a LoRA adapter lsn can load.
    #[error("adapter {path}: {reason}")]
    Adapter { path: PathBuf, reason: String },
    /// A checkpoint of another training run (different spec, data or model) is in the output directory.
    #[error(
        "{path} holds a training checkpoint of another run ({reason}); choose another --out or delete the directory"
    )]
    ForeignCheckpoint { path: PathBuf, reason: String },
    /// The loss became NaN or infinite.
    #[error("the loss is not finite at step {step}: lower the learning rate")]
    Diverged { step: u64 },
    #[error(transparent)]
    Core(#[from] lsn_core::Error),
    #[error(transparent)]
    Select(#[from] lsn_select::Error),
    #[error(transparent)]
    Weights(#[from] lsn_weights::Error),
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        Error::Io { path: path.into(), err }
    }
}
