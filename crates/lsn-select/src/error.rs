//! The error type of `lsn-select`.

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Inputs selection cannot work with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The count table is inconsistent (the message says what and how to fix it).
    #[error("invalid selection input: {0}")]
    Invalid(String),
}
