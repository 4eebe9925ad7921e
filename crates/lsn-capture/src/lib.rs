//! Capture: drives a `Model` over packed token rows and accumulates each language's FFN statistics (DESIGN §4) —
//! streamed batch by batch (never holding all activations), exactly mergeable across shards, and resumable.

mod error;
mod file;
mod merge;
mod meta;
mod run;

pub use error::{Error, Result};
pub use file::{StatsFile, final_path, partial_path, shard_path};
pub use merge::{MergeReport, merge_files, merge_language, shard_files};
pub use meta::{Coverage, FORMAT, Provenance, Shard, StatsMeta};
pub use run::{CaptureSpec, NoProgress, Outcome, Progress, capture};
