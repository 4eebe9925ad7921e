//! `lsn merge`: combines the shard files of sharded captures into one statistics file per language.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result};
use lsn_run::{OpenOptions, StageRecord};

/// Merge the shards written by `lsn capture --shard i/N` into RUN/stats/<lang>.safetensors (or, with --from, gather
/// the statistics of other runs into RUN).
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
    /// Comma-separated languages [default: every language with shard files, or with --from every language there].
    #[arg(long)]
    pub lang: Option<String>,
    /// Gather instead: copy the complete statistics of these run directories into RUN (e.g. one capture run per
    /// language, captured on different machines at once). Each file must be complete and of RUN's model; a language
    /// RUN already holds with other bytes is refused. Repeatable.
    #[arg(long = "from", value_name = "RUN")]
    pub from: Vec<PathBuf>,
}

/// `--from`: copies every complete statistics file of the given runs into `run`'s stats/.
fn gather(run: &mut lsn_run::RunDir, args: &Args) -> Result<()> {
    let wanted: Option<Vec<String>> = match &args.lang {
        Some(l) => Some(crate::cmd::parse_langs(l, "--lang")?.iter().map(|l| l.code().to_owned()).collect()),
        None => None,
    };
    let dest = run.path("stats");
    for source in &args.from {
        let dir = source.join("stats");
        let entries = std::fs::read_dir(&dir)
            .with_context(|| format!("--from {}: no stats/ folder there (capture into it first)", source.display()))?;
        let mut langs: Vec<String> = entries
            .filter_map(|e| {
                let name = e.ok()?.file_name().to_str()?.to_owned();
                let lang = name.strip_suffix(".safetensors")?;
                (!lang.contains('.')).then(|| lang.to_owned())
            })
            .filter(|l| wanted.as_ref().is_none_or(|w| w.contains(l)))
            .collect();
        langs.sort();
        anyhow::ensure!(
            !langs.is_empty(),
            "--from {}: no complete statistics file in {}",
            source.display(),
            dir.display()
        );
        for lang in langs {
            let from = lsn_capture::final_path(&dir, &lang);
            let bytes = std::fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
            let file = lsn_capture::StatsFile::from_bytes(&bytes, &from)?;
            anyhow::ensure!(
                file.meta.pass2_complete(),
                "{}: the capture of {lang} is not complete: rerun its `lsn capture` to finish it, then gather again",
                from.display()
            );
            run.check_input(&from, &file.meta.provenance.model, &file.meta.provenance.identity())?;
            let to = lsn_capture::final_path(&dest, &lang);
            match std::fs::read(&to) {
                Ok(b) if b == bytes => {
                    println!("{lang}: {} already holds these statistics", to.display());
                    continue;
                }
                Ok(_) => anyhow::bail!(
                    "{} already holds other statistics of {lang} than {}: remove it to take these",
                    to.display(),
                    from.display()
                ),
                Err(_) => {}
            }
            let meta = std::fs::read(from.with_extension("json"))
                .with_context(|| format!("reading {}", from.with_extension("json").display()))?;
            crate::fsutil::write_atomic(&to.with_extension("json"), &meta)?;
            crate::fsutil::write_atomic(&to, &bytes)?;
            let rel = |p: &std::path::Path| p.strip_prefix(run.root()).unwrap_or(p).display().to_string();
            let config =
                serde_json::json!({"from": from.display().to_string(), "sha256": lsn_core::sha256_hex(&bytes)});
            let outputs = vec![rel(&to), rel(&to.with_extension("json"))];
            run.record(&format!("capture/{lang}"), StageRecord::new(config, outputs, "complete"))?;
            println!("{lang}: {} → {}", from.display(), to.display());
        }
    }
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    let opts = OpenOptions { flag: "--run", create: !args.from.is_empty(), subdirs: &["stats"], need_bytes: 64 << 20 };
    let mut run = crate::cmd::open_run(&args.run, &opts)?;
    if !args.from.is_empty() {
        return gather(&mut run, &args);
    }
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
