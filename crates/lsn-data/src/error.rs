//! The error type of `lsn-data`.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors finding, reading or tokenizing data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] lsn_core::Error),
    /// No data directory was given or found.
    #[error(
        "no data directory: pass --data-dir DIR or set LSN_DATA_DIR (a directory holding corpus/, xnli/, xquad/){0}"
    )]
    NoDataDir(String),
    /// A corpus file for a language does not exist.
    #[error(
        "no {corpus} text for language {lang} in {dir}: expected a file {pattern}; choose another language or corpus"
    )]
    MissingCorpus { corpus: &'static str, lang: String, dir: PathBuf, pattern: String },
    /// A corpus file exists but holds no text.
    #[error("{path} holds no sentences: the file is empty; restore it or choose another language")]
    EmptyCorpus { path: PathBuf },
    /// A user's text file (one document per line) does not exist, or is not a regular file.
    #[error("text file {path} {problem}: give a plain-text file with one document per line (--text LANG=FILE)")]
    MissingText { path: PathBuf, problem: &'static str },
    /// A user's text file is not UTF-8.
    #[error(
        "text file {path} is not UTF-8 text (line {line} holds invalid bytes): convert it to UTF-8, e.g. with iconv"
    )]
    NotUtf8 { path: PathBuf, line: usize },
    /// A user's text file holds only empty lines.
    #[error("{path} holds no text: every line is empty; give a plain-text file with one document per line")]
    EmptyText { path: PathBuf },
    /// The sources of a language give fewer tokens than one row.
    #[error(
        "too little text for language {lang}: its sources give {available} tokens, fewer than one row of {row_len}; \
         pass a smaller --row-len or add more text"
    )]
    TooLittleText { lang: String, available: u64, row_len: usize },
    /// Packing options that cannot work (row length 0, a budget under one row, no sources).
    #[error("cannot pack {lang}: {reason}")]
    BadPackOptions { lang: String, reason: String },
    /// The tokenizer file is missing or unreadable.
    #[error("cannot load tokenizer {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    /// Tokenizer and model do not belong together.
    #[error("tokenizer/model mismatch: {0}")]
    TokenizerMismatch(String),
    /// A task file (XQuAD, XNLI) is missing, malformed, or has a row that does not hold together.
    #[error("{path}: {problem}")]
    BadTaskFile { path: PathBuf, problem: String },
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    /// A download failed (no network, a moved URL, a server error).
    #[error(
        "cannot download {name} from {url}: {reason}; without network, point --data-dir or LSN_DATA_DIR at a data \
         directory (corpus/, xnli/, xquad/) instead"
    )]
    Download { name: String, url: String, reason: String },
    /// A downloaded file is not the one pinned.
    #[error(
        "{name} from {url} has sha256 {got}, not the pinned {want}: the file changed upstream or the transfer was \
         corrupted; it was not used (fetch again, or give --sources with a mirror you trust)"
    )]
    Checksum { name: String, url: String, want: String, got: String },
    /// A downloaded archive does not hold what the conversion expects.
    #[error("cannot convert {name}: {reason}")]
    Convert { name: String, reason: String },
}
