//! `lsn merge`: combines the shard files of sharded captures into one statistics file per language.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result};
use lsn_run::{OpenOptions, StageRecord};

/// Merge the shards written by `lsn capture --shard i/N` into RUN/stats/<lang>.safetensors.
///
/// Merging is exact (integer counts and fixed-point sums), so the merged file is byte-identical to an unsharded
/// capture once every shard is in. Run it twice: after every shard's pass 1 (pass 2 needs the language's merged
/// thresholds), and after every shard's pass 2. Shard files are kept, so merging again is harmless. Shards of another
/// model than the run's, of another --shard split, or with impossible values are refused by name.
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
    let opts = OpenOptions { flag: "--run", create: false, subdirs: &["stats"], need_bytes: 64 << 20 };
    let mut run = crate::cmd::open_run(&args.run, &opts)?;
    let dir = run.path("stats");
    let langs: Vec<String> = match &args.lang {
        Some(l) => crate::cmd::parse_langs(l, "--lang")?.iter().map(|l| l.code().to_owned()).collect(),
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
        // Every shard must be of the run's model before anything is written; a run without one is bound to the
        // shards' model.
        let model = run.model().map(|m| m.identity.clone());
        let r = lsn_capture::merge_language(&dir, &lang, model.as_ref())?;
        run.check_input(&r.out, &r.provenance.model, &r.provenance.identity())?;
        let missing = match r.missing.len() {
            0 => String::new(),
            n if n <= 6 => format!("; still needed: {}", r.missing.join(", ")),
            n => format!("; {n} shards still needed, e.g. {} … {}", r.missing[..3].join(", "), r.missing[n - 1]),
        };
        let state = match (r.pass, r.complete) {
            (1, true) => "pass 1 complete; now run pass 2 (the same `lsn capture --shard` commands again)".to_owned(),
            (1, false) => format!("pass 1 incomplete{missing}"),
            (_, true) => "complete".to_owned(),
            (_, false) => format!("pass 2 incomplete{missing}"),
        };
        let rel = |p: &std::path::Path| p.strip_prefix(run.root()).unwrap_or(p).display().to_string();
        let config = serde_json::json!({"merged": r.shards.iter().map(|p| rel(p)).collect::<Vec<_>>()});
        let short = if r.complete && r.pass == 2 { "complete".to_owned() } else { format!("merged pass {}", r.pass) };
        run.record(&format!("capture/{lang}"), StageRecord::new(config, vec![rel(&r.out)], short))?;
        println!("{lang}: merged {} shard files → {}: {state}", r.shards.len(), r.out.display());
    }
    Ok(())
}
