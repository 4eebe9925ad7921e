//! The error type of `lsn-select`.

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Inputs selection cannot work with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The count table or a parameter is unusable; the message says what is wrong and what to do.
    #[error("invalid selection input: {0}")]
    Invalid(String),
}
