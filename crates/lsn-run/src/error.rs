//! The error type of `lsn-run`: every variant names the path, the flag that chose it, and what to do.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors opening, locking or recording in a run directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another live process holds the run directory's lock.
    #[error(
        "run directory {path} is in use by pid {pid} (`{command}`, running for {age}): wait for it to finish, or give \
         this command another {flag}"
    )]
    Locked { path: PathBuf, pid: u32, command: String, age: String, flag: String },
    /// A study (`lsn reproduce`) of another process runs in the directory or above it.
    #[error(
        "{path} (from {flag}) lies in the tree of {study}, where {holder} is running a study: a command of your own \
         would mix its files into the study's; wait for it to finish, or give another {flag}"
    )]
    InStudy { path: PathBuf, study: PathBuf, holder: String, flag: String },
    /// A path that must be a directory has a regular file on the way.
    #[error("{path} (from {flag}) cannot be a directory: {blocker} is a file; choose another {flag}")]
    UnderFile { path: PathBuf, blocker: PathBuf, flag: String },
    /// A directory that should already exist does not.
    #[error("{path} (from {flag}) does not exist: {hint}")]
    NotFound { path: PathBuf, flag: String, hint: String },
    /// A directory could not be created.
    #[error("cannot create {path} (from {flag}): {err}; check the permissions of its parent, or choose another {flag}")]
    Create { path: PathBuf, flag: String, err: std::io::Error },
    /// A directory exists but files cannot be written into it.
    #[error("cannot write into {path} (from {flag}): {err}; fix its permissions, or choose another {flag}")]
    NotWritable { path: PathBuf, flag: String, err: std::io::Error },
    /// A file path names a directory.
    #[error("{path} (from {flag}) is a directory: give the path of a file to write")]
    IsADirectory { path: PathBuf, flag: String },
    /// Too little free space for what the command will write.
    #[error(
        "{path} (from {flag}) has {free_mib} MiB free but this command writes about {need_mib} MiB: free some space, \
         or choose another {flag}"
    )]
    NoSpace { path: PathBuf, flag: String, free_mib: u64, need_mib: u64 },
    /// `run.json` cannot be read or parsed.
    #[error(
        "{path} is damaged ({reason}): restore it, or delete it (the statistics files carry their own provenance, \
         and the next stage writes a new one)"
    )]
    Manifest { path: PathBuf, reason: String },
    /// The run directory holds results of another model.
    #[error(
        "{path} holds results of model {had} and this command uses {want}, whose files differ ({diff}): a directory \
         holds one model's results; give another {flag} for this model"
    )]
    ModelMismatch { path: PathBuf, had: String, want: String, diff: String, flag: Box<str> },
    /// An input file (statistics, shards) was made with another model than the run's.
    #[error(
        "{file} was made with another model than the one this run holds ({model}, recorded in {manifest}): they \
         differ in {diff}; a run directory holds one model's results: remove the file, or capture it again with the \
         run's model"
    )]
    InputMismatch { file: PathBuf, model: String, manifest: PathBuf, diff: String },
    /// An output directory holds this command's result files, but no record of who made them.
    #[error(
        "{path} (from {flag}) already holds {files}, which no `lsn {command}` recorded there (another tool's, or an \
         older lsn's): give an empty or new {flag}, or delete those files to replace them"
    )]
    Unrecorded { path: PathBuf, files: String, command: String, flag: String },
    /// An output directory holds this result made with other settings.
    #[error(
        "{path} already holds `{key}` made with other settings ({diff}): give another directory for these settings, \
         or delete {path} to replace it"
    )]
    OtherSettings { path: PathBuf, key: String, diff: String },
    /// An input (adapter, neuron file, statistics) was made with another model than the one this command uses.
    #[error("{file} was made with model {made_with}, not with {using}: they differ in {diff}; {hint}")]
    ForeignInput { file: PathBuf, made_with: String, using: String, diff: String, hint: String },
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        Error::Io { path: path.into(), err }
    }
}
