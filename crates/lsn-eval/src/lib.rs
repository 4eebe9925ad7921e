//! Evaluation written once for every backend: perplexity, XNLI (lm-eval zero-shot and the paper's head) and XQuAD
//! (the paper's prompt, greedy generation, three metrics), per-example results, bootstrap intervals and the verdicts
//! drawn from them (classes per difference, Holm's correction, equivalence margins).

pub mod batching;
pub mod bootstrap;
mod error;
pub mod forcing;
pub mod langid;
mod perplexity;
pub mod qa_metrics;
pub mod results;
pub mod verdict;
pub mod xnli;
pub mod xquad;

pub use bootstrap::{
    DEFAULT_RESAMPLES, DEFAULT_SEED, Delta, Interval, bootstrap_mean, paired_bootstrap, paired_runs_bootstrap,
    runs_bootstrap, runs_mean,
};
pub use error::{Error, Result};
pub use langid::LanguageId;
pub use perplexity::{NllSum, perplexity, sequence_nll};
pub use results::{
    Compared, EvalResults, ExampleResult, LangResult, check_same_model, compare, compare_classes, compare_markdown,
    compare_metric, compare_paired_runs, compare_runs, runs_score, untestable,
};
