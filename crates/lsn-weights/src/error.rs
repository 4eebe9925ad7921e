//! The error type of `lsn-weights`.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors reading, validating, converting or writing checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] lsn_core::Error),
    /// The checkpoint directory lacks a file it needs.
    #[error("{path} is missing: {hint}")]
    Missing { path: PathBuf, hint: String },
    /// A safetensors file is unreadable (truncated, corrupt header).
    #[error("cannot read safetensors file {path}: {reason} (the download may be incomplete or corrupt: fetch or convert it again)")]
    Safetensors { path: PathBuf, reason: String },
    /// A GGUF file is unreadable or not what was expected.
    #[error("GGUF file {path}: {reason}")]
    Gguf { path: PathBuf, reason: String },
    /// A quantization type lsn cannot dequantize.
    #[error("tensor {tensor}: GGUF type {dtype} is not supported (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K)")]
    UnsupportedQuant { tensor: String, dtype: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
