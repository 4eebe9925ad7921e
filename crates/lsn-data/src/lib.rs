//! Data for lsn: the offline data directory, per-language corpora, and tokenization.

mod corpus;
mod data_dir;
mod error;
mod tokenizer;

pub use corpus::{Corpus, read_sentences};
pub use data_dir::{DATA_DIR_ENV, cache_home, resolve_data_dir};
pub use error::{Error, Result};
pub use tokenizer::Tokenizer;
