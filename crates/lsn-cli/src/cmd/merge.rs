//! `lsn merge`: combines the shard files of sharded captures into one statistics file per language.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result};
use lsn_core::Lang;

/// Merge the shards written by `lsn capture --shard i/N` into RUN/stats/<lang>.safetensors.
///
/// Merging is exact (integer counts and fixed-point sums), so the merged file is byte-identical to an unsharded
/// capture once every shard is in. Run it twice: after every shard's pass 1 (pass 2 needs the language's merged
/// thresholds), and after every shard's pass 2. Shard files are kept, so merging again is harmless.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run directory (the shards are in RUN/stats/).
    #[arg(long, default_value = "runs/default")]
    pub run: PathBuf,
    /// Comma-separated languages [default: every language with shard files].
    #[arg(long)]
    pub lang: Option<String>,
}

pub fn run(args: Args) -> Result<()> {
    let dir = args.run.join("stats");
    let langs: Vec<String> = match &args.lang {
        Some(l) => Lang::parse_list(l)?.iter().map(|l| l.code().to_owned()).collect(),
        None => {
            let entries = std::fs::read_dir(&dir)
                .with_context(|| format!("cannot read {} (run `lsn capture --shard i/N` first)", dir.display()))?;
            let found: BTreeSet<String> = entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.split_once(".shard-").map(|(l, _)| l.to_owned()))
                .collect();
            anyhow::ensure!(!found.is_empty(), "no shard files in {}: nothing to merge", dir.display());
            found.into_iter().collect()
        }
    };
    for lang in langs {
        let r = lsn_capture::merge_language(&dir, &lang)?;
        let state = match (r.pass, r.complete) {
            (1, true) => "pass 1 complete; now run pass 2 (the same `lsn capture --shard` commands again)",
            (1, false) => "pass 1 incomplete: some shards are missing",
            (_, true) => "complete",
            (_, false) => "pass 2 incomplete: some shards are missing",
        };
        println!("{lang}: merged {} shard files → {}: {state}", r.shards.len(), r.out.display());
    }
    Ok(())
}
