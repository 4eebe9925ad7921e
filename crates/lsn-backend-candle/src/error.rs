//! The error type of the Candle backend, converted to `lsn_core::Error::Backend` at the crate boundary.

/// Result with the backend's [`Error`].
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Failures inside the Candle backend. No Candle type leaves the crate: everything becomes text in
/// `lsn_core::Error::Backend`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A Candle operation failed; `during` says what the backend was doing.
    #[error("{during}: {source}")]
    Candle {
        during: String,
        #[source]
        source: candle_core::Error,
    },
    #[error(transparent)]
    Weights(#[from] lsn_weights::Error),
}

impl From<Error> for lsn_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Weights(e) => e.into(),
            e => lsn_core::Error::Backend { backend: crate::NAME, message: e.to_string() },
        }
    }
}

/// Attaches "what we were doing" to a Candle result.
pub(crate) trait Context<T> {
    fn during(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for candle_core::Result<T> {
    fn during(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Candle { during: what(), source })
    }
}
