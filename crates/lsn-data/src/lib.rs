//! Data for lsn: the offline data directory, per-language corpora, tokenization, packing into token rows, and the
//! XNLI and XQuAD readers (with the paper's XQuAD split and prompt).

mod corpus;
mod data_dir;
mod error;
pub mod fetch;
mod pack;
mod tokenizer;
mod xnli;
mod xquad;

pub use corpus::{Corpus, read_sentences};
pub use data_dir::{DATA_DIR_ENV, FETCH_MARKER, cache_home, model_dir, resolve_data_dir};
pub use error::{Error, Result};
pub use lsn_core::sha256_file;
pub use pack::{PackOptions, Packed, Source, SourceInfo, default_sources, pack_language, rows_digest};
pub use tokenizer::Tokenizer;
pub use xnli::{NliExample, NliLabel, NliSplit, XNLI_LANGS, read_xnli, xnli_path};
pub use xquad::{QaExample, QaSplit, read_xquad, xquad_path, xquad_prompt};
