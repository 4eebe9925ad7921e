//! `lsn compare`: the paired difference between two evaluations over the same examples, with its bootstrap interval.

use std::path::PathBuf;

use anyhow::{Context, Result};
use lsn_eval::{EvalResults, compare, compare_markdown};

/// Compares two `lsn eval` results of the same task over the same examples: for every language and metric both
/// hold, Δ = B − A with its 95% paired-bootstrap interval (examples are resampled together, so what both runs share
/// cancels). A difference is called one only when its interval excludes 0.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// results.json of run A (e.g. no intervention).
    pub a: PathBuf,
    /// results.json of run B (e.g. with an intervention).
    pub b: PathBuf,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = lsn_eval::DEFAULT_RESAMPLES, value_parser = crate::cmd::at_least_one)]
    pub resamples: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = lsn_eval::DEFAULT_SEED)]
    pub seed: u64,
    /// Also write the comparison as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn read(path: &PathBuf) -> Result<EvalResults> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a results.json written by `lsn eval`", path.display()))
}

pub fn run(args: Args) -> Result<()> {
    if let Some(json) = &args.json {
        lsn_run::prepare_file(json, "--json")?;
    }
    let (a, b) = (read(&args.a)?, read(&args.b)?);
    let rows = compare(&a, &b, args.resamples, args.seed)?;
    println!("{}", compare_markdown(&rows, &args.a.display().to_string(), &args.b.display().to_string()));
    if let Some(path) = &args.json {
        let doc = serde_json::json!({"a": args.a, "b": args.b, "resamples": args.resamples, "seed": args.seed,
            "rows": rows});
        crate::fsutil::write_atomic(path, serde_json::to_string_pretty(&doc)?.as_bytes())?;
    }
    Ok(())
}
