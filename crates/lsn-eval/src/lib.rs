//! Evaluation written once for every backend: perplexity, XNLI (lm-eval zero-shot and the paper's head) and XQuAD
//! (the paper's prompt, greedy generation, three metrics), per-example results and bootstrap intervals.

pub mod batching;
pub mod bootstrap;
mod error;
mod perplexity;
pub mod qa_metrics;
pub mod results;
pub mod xnli;
pub mod xquad;

pub use bootstrap::{
    DEFAULT_RESAMPLES, DEFAULT_SEED, Delta, Interval, bootstrap_mean, paired_bootstrap, runs_bootstrap,
};
pub use error::{Error, Result};
pub use perplexity::{NllSum, perplexity};
pub use results::{Compared, EvalResults, ExampleResult, LangResult, compare, compare_markdown, compare_runs};
