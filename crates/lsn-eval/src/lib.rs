//! Evaluation written once for every backend: perplexity over token sequences.

mod perplexity;

pub use perplexity::{NllSum, perplexity};
