//! `lsn fetch-data`: XNLI, XQuAD, FLORES-200 and TICO-19 from their official sources, checked and converted into a
//! data directory.

use std::path::PathBuf;

use anyhow::{Context, Result};
use lsn_data::fetch::{self, DataSource};

use crate::assets;

/// Downloads the study's data from the official sources — XNLI-1.0 (zip), XQuAD (its repository at a fixed
/// commit), FLORES-200 (tarball), TICO-19 (test-set zip) — checks each file's sha256 against the pinned one (TICO-19
/// publishes none: its first download's is recorded and held to), and converts them into the data-directory layout
/// (corpus/, xnli/, xquad/) that every command reads. Downloads are kept in the cache (a rerun downloads nothing it
/// has); the data directory is built aside and renamed into place, so it is complete or absent.
///
/// Licences: XNLI CC BY-NC 4.0 (research only), XQuAD and FLORES-200 CC BY-SA 4.0, TICO-19 CC0.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The data directory to write [default: the cache's data/, which `lsn reproduce` uses when no data directory
    /// is given].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A JSON list of sources to use instead of the official ones (a mirror): [{"name", "url", "sha256" (or null),
    /// "kind": "xnli-zip" | "xquad-json" (with "lang") | "flores-tar-gz" | "tico-zip"}].
    #[arg(long)]
    pub sources: Option<PathBuf>,
    #[command(flatten)]
    pub cache: assets::HomeArg,
}

pub fn run(args: Args) -> Result<()> {
    let home = args.cache.home();
    let out = args.out.clone().unwrap_or_else(|| fetch::fetched_data_dir(&home));
    let sources: Vec<DataSource> = match &args.sources {
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("reading --sources {}", p.display()))?;
            serde_json::from_slice(&bytes).with_context(|| {
                format!("--sources {} is not a JSON list of sources (name, url, sha256, kind)", p.display())
            })?
        }
        None => fetch::official_sources(),
    };
    anyhow::ensure!(!sources.is_empty(), "--sources names no source");
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        lsn_run::prepare_dir(parent, "--out", true)?;
    }
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{msg:>14} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("static template"),
    );
    let records = fetch::fetch_all(&home, &sources, &out, &mut |name, got, total| {
        bar.set_message(name.to_owned());
        bar.set_length(total.unwrap_or(got));
        bar.set_position(got);
    })?;
    bar.finish_and_clear();
    for r in &records {
        println!(
            "{:<12} {} files · sha256 {} ({})",
            r.name,
            r.files.len(),
            &r.sha256[..16],
            if r.pinned { "as pinned" } else { "recorded: no published checksum" }
        );
    }
    println!("data directory: {} (use it with --data-dir or LSN_DATA_DIR)", out.display());
    Ok(())
}
