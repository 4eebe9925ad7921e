//! `lsn compare`: the paired difference between two evaluations (or two sets of runs, one per training seed) over
//! the same examples, with its bootstrap intervals and its class (higher, lower, equivalent within ±δ, inconclusive).

use std::path::PathBuf;

use anyhow::{Context, Result};
use lsn_eval::{EvalResults, check_same_model, compare_classes, compare_markdown, compare_paired_runs, compare_runs};

/// Compares two `lsn eval` results of the same task, split and data files over the same examples (runs that differ
/// in any of these are refused, naming the difference, as are runs of different base models unless
/// --across-models): for every language and metric both
/// hold, Δ = B − A with its 95% and 90% paired-bootstrap intervals (examples are resampled together, so what both runs
/// share cancels) and a class: higher / lower when the bootstrap p-value, Holm-corrected over every row printed, is at
/// most 0.05; equivalent within ±δ (--margin) when the 90% interval lies inside [−δ, +δ] (two one-sided tests at 5%);
/// inconclusive otherwise. Fix δ before you look at the numbers.
///
/// To compare fine-tunes (FTL null against en, say), give each side one results.json per training seed, separated by
/// commas: A and B are then the means over their runs, and the interval resamples the runs as well as the examples,
/// so it covers training variance — which one run per side does not (two fine-tunes that differ in anything follow
/// different trajectories; at small scale that alone moves accuracy by several points). With --paired, run i of B
/// is run i of A changed in one thing (an intervention on the fine-tune of seed i): Δ is the mean of the pairs'
/// differences, and the interval resamples the pairs and the examples.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// results.json of run A (e.g. no intervention), or A's runs (one per seed) separated by commas.
    #[arg(value_delimiter = ',', num_args = 1, required = true)]
    pub a: Vec<PathBuf>,
    /// results.json of run B (e.g. with an intervention), or B's runs separated by commas.
    #[arg(value_delimiter = ',', num_args = 1, required = true)]
    pub b: Vec<PathBuf>,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = lsn_eval::DEFAULT_RESAMPLES, value_parser = crate::cmd::at_least_one)]
    pub resamples: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = lsn_eval::DEFAULT_SEED)]
    pub seed: u64,
    /// The equivalence margin δ, in points (percent) of the metric.
    #[arg(long, default_value_t = lsn_eval::verdict::DEFAULT_MARGIN, value_parser = crate::cmd::positive_margin)]
    pub margin: f64,
    /// Pair run i of B with run i of A (same training seed) instead of treating the sides' runs as independent.
    #[arg(long)]
    pub paired: bool,
    /// Compare runs of different base models (config, tokenizer or weights differ) over the same examples; without
    /// it they are refused, since a mix-up of files is the likelier cause.
    #[arg(long)]
    pub across_models: bool,
    /// Also write the comparison as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// A side's name in the table: its file, or how many runs and the first.
fn side_name(runs: &[PathBuf]) -> String {
    match runs {
        [one] => one.display().to_string(),
        [first, ..] => format!("{} runs ({}, …)", runs.len(), first.display()),
        [] => String::new(),
    }
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
    let a: Vec<EvalResults> = args.a.iter().map(read).collect::<Result<_>>()?;
    let b: Vec<EvalResults> = args.b.iter().map(read).collect::<Result<_>>()?;
    if !args.across_models {
        check_same_model(&a.iter().chain(&b).collect::<Vec<_>>())?;
    }
    let rows = if args.paired {
        compare_paired_runs(&a, &b, args.resamples, args.seed)?
    } else {
        compare_runs(&a, &b, args.resamples, args.seed)?
    };
    println!("{}", compare_markdown(&rows, &side_name(&args.a), &side_name(&args.b), args.margin));
    if let Some(path) = &args.json {
        let doc = serde_json::json!({"a": args.a, "b": args.b, "resamples": args.resamples, "seed": args.seed,
            "margin": args.margin, "paired": args.paired, "correction": "holm", "rows": rows,
            "classes": compare_classes(&rows, args.margin)});
        crate::fsutil::write_atomic(path, serde_json::to_string_pretty(&doc)?.as_bytes())?;
    }
    Ok(())
}
