//! The error type of `lsn-eval`.

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors preparing or running an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] lsn_core::Error),
    #[error(transparent)]
    Data(#[from] lsn_data::Error),
    /// A classification head that cannot be used with this model.
    #[error("classification head: {0}")]
    BadHead(String),
    /// A task asked of a language it has no template or data for.
    #[error("{0}")]
    Unsupported(String),
    /// Two result files that cannot be compared.
    #[error("cannot compare: {0}")]
    Incomparable(String),
}
