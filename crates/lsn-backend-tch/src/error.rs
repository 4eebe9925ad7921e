//! The error type of the libtorch backend, converted to `lsn_core::Error::Backend` at the crate boundary.

/// Result with the backend's [`Error`].
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Failures inside the libtorch backend. No tch type leaves the crate: everything becomes text in
/// `lsn_core::Error::Backend`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A libtorch operation failed; `during` says what the backend was doing.
    #[error("{during}: {source}")]
    Torch {
        during: String,
        #[source]
        source: tch::TchError,
    },
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

/// Attaches "what we were doing" to a tch result.
pub(crate) trait Context<T> {
    fn during(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, tch::TchError> {
    fn during(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Torch { during: what(), source })
    }
}
