//! The error type of `lsn-core`: what was wrong with the input, and what to do about it.

use std::path::PathBuf;

/// Result with the core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors raised at the backend boundary and while reading model configs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `config.json` could not be read or parsed.
    #[error("cannot read model config {path}: {reason}")]
    ConfigRead { path: PathBuf, reason: String },
    /// `config.json` names a model family lsn does not implement.
    #[error(
        "unsupported model_type {model_type:?} in config.json: lsn implements {known}; convert or choose a model of \
         one of those"
    )]
    UnsupportedModelType { model_type: String, known: String },
    /// `config.json` parsed but its values are inconsistent or unsupported.
    #[error("invalid model config: {0}")]
    InvalidConfig(String),
    /// The weights do not match the config (missing tensor, wrong shape).
    #[error("weights do not match config.json: {0}")]
    WeightsMismatch(String),
    /// A language code lsn does not know.
    #[error("unknown language code {code:?}: use an ISO 639-1 code such as en, hi, zh (known: {known})")]
    UnknownLanguage { code: String, known: String },
    /// A checkpoint could not be read (the message says which file and why).
    #[error("{0}")]
    Checkpoint(String),
    /// The input batch is malformed (ids out of vocabulary, inconsistent shape).
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// An intervention names neurons the model does not have, or bad values.
    #[error("invalid intervention: {0}")]
    InvalidIntervention(String),
    /// A LoRA layout or adapter that cannot be used with this model.
    #[error("invalid LoRA adapter: {0}")]
    InvalidLora(String),
    /// The backend cannot do what was asked.
    #[error("backend {backend} does not support {capability}")]
    Unsupported { backend: &'static str, capability: String },
    /// A failure inside a backend's framework (message carried as text so no framework type crosses the boundary).
    #[error("{backend} backend: {message}")]
    Backend { backend: &'static str, message: String },
    /// Any I/O failure, with the path involved.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), err: source }
    }
}
