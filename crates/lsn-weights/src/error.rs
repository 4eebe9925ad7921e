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
    #[error(
        "cannot read safetensors file {path}: {reason} (the file may be incomplete or corrupt: write it again with the \
         command that made it — `lsn fetch-model` or `lsn convert` for a model, `lsn train` for an adapter or its \
         checkpoint, `lsn merge-adapter` for a merged model)"
    )]
    Safetensors { path: PathBuf, reason: String },
    /// A GGUF file is unreadable or not what was expected.
    #[error("GGUF file {path}: {reason}")]
    Gguf { path: PathBuf, reason: String },
    /// A GGUF file ends before the data its header promises.
    #[error("GGUF file {path} is truncated or corrupt: {reason}; download it again (and check its sha256)")]
    GgufTruncated { path: PathBuf, reason: String },
    /// A GGUF metadata key is absent or holds a value of the wrong type.
    #[error("GGUF file {path}: metadata key {key:?} {problem}")]
    GgufMetadata { path: PathBuf, key: String, problem: String },
    /// A quantization type lsn cannot dequantize.
    #[error(
        "tensor {tensor}: GGUF type {dtype} is not supported (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K); re-quantize the model with one of these"
    )]
    UnsupportedQuant { tensor: String, dtype: String },
    /// Raw tensor bytes do not fit the tensor's type and shape.
    #[error("tensor {tensor}: {reason}")]
    BadTensorData { tensor: String, reason: String },
    /// The GGUF describes a model lsn cannot convert.
    #[error("cannot convert GGUF {path}: {reason}")]
    Unconvertible { path: PathBuf, reason: String },
    /// A tokenizer could not be built from the GGUF or the given tokenizer.json does not fit it.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The output directory already holds files.
    #[error("output directory {path} exists and is not empty: choose another directory, or remove it")]
    OutputExists { path: PathBuf },
    /// The output directory's path names a file.
    #[error("output path {path} is a file: give the path of a directory")]
    OutputIsFile { path: PathBuf },
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), err: source }
    }
}

impl From<Error> for lsn_core::Error {
    /// Keeps core and I/O errors as they are; every other checkpoint error becomes `Checkpoint` with its message.
    fn from(e: Error) -> Self {
        match e {
            Error::Core(core) => core,
            Error::Io { path, err } => lsn_core::Error::Io { path, err },
            other => lsn_core::Error::Checkpoint(other.to_string()),
        }
    }
}
