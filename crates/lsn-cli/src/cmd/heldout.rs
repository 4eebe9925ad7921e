//! Held-out rows: the text of a language that its capture did not see, for perplexity and PPXC.
//!
//! The split is deterministic. The language is packed again exactly as its capture packed it (the same sources, seed
//! and row length, recorded in the statistics' provenance), but without the token budget. The capture used the
//! first `rows` rows; their digest must equal the recorded one (so the text and tokenizer are the ones the capture
//! saw). The row right after them is skipped, since a document can straddle that boundary; the held-out rows are
//! the ones after it. A capture that used all of a language's text leaves none: capture with `--leave-rows` (or a
//! smaller `--max-tokens`).

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use lsn_capture::StatsFile;
use lsn_core::Lang;
use lsn_data::{PackOptions, Source, Tokenizer, pack_language, rows_digest};

/// A language's held-out rows.
#[derive(Debug, Clone)]
pub struct HeldOut {
    pub rows: Vec<Vec<u32>>,
    /// Index of the first held-out row in the unbudgeted packing.
    pub first: usize,
}

/// The sources a capture recorded, as `pack_language` takes them.
fn sources(data: &serde_json::Value, stats: &Path) -> Result<Vec<Source>> {
    let list = data["sources"].as_array().with_context(|| format!("{} records no data sources", stats.display()))?;
    list.iter()
        .map(|s| match s["name"].as_str() {
            Some("FLORES-200 devtest") => Ok(Source::Flores),
            Some("TICO-19 test") => Ok(Source::Tico),
            Some(_) => match s["path"].as_str() {
                Some(p) => Ok(Source::Text(p.into())),
                None => bail!("{}: a data source without a path", stats.display()),
            },
            None => bail!("{}: a data source without a name", stats.display()),
        })
        .collect()
}

/// The language of `stats_path` packed again as its capture packed it, without the token budget, checked to begin
/// with the rows the capture used: (all rows, how many the capture used).
fn repack(stats_path: &Path, data_dir: Option<&Path>, tok: &Tokenizer) -> Result<(lsn_data::Packed, usize)> {
    let f = StatsFile::read(stats_path)?;
    let meta = &f.meta;
    let lang = Lang::parse(&meta.lang)?;
    let data = &meta.provenance.data;
    ensure!(
        tok.digest() == meta.provenance.tokenizer_sha256,
        "{} was captured with another tokenizer: its rows must be cut with the capture's",
        stats_path.display()
    );
    let seed = data["seed"].as_u64().with_context(|| format!("{} records no seed", stats_path.display()))?;
    let opts = PackOptions { row_len: meta.row_len, max_tokens: None, seed, leave_rows: 0 };
    let all = pack_language(tok, data_dir, lang, &sources(data, stats_path)?, &opts)?;
    let captured = meta.rows as usize;
    ensure!(
        captured <= all.rows,
        "{lang}: the capture used {captured} rows but its text now gives {}: the data changed since the capture",
        all.rows
    );
    ensure!(
        Some(rows_digest(&all.ids[..captured * meta.row_len], meta.row_len).as_str()) == data["ids_sha256"].as_str(),
        "{lang}: the rows packed now differ from those the capture used (recorded in {}): the text files changed",
        stats_path.display()
    );
    Ok((all, captured))
}

/// Up to `want` of the rows the capture of `stats_path` used, from its first: the text its statistics (and the
/// neurons selected from them) describe.
pub fn captured(stats_path: &Path, data_dir: Option<&Path>, tok: &Tokenizer, want: usize) -> Result<Vec<Vec<u32>>> {
    let (all, captured) = repack(stats_path, data_dir, tok)?;
    Ok((0..captured.min(want)).map(|r| all.row(r).to_vec()).collect())
}

/// The text `lsn train --task lm` trains on: the rows the capture used and, with `extra` > 0, the last `extra` rows
/// of the language's text, a skipped row away from whatever precedes them. The held-out rows lie between the two, so
/// `lsn ppl --heldout` scores text no training saw (it checks that against the adapter's `text` record).
#[derive(Debug, Clone)]
pub struct TrainingRows {
    pub rows: Vec<Vec<u32>>,
    /// Rows the capture used (the first rows of `rows`), and the index of the first extra row in the unbudgeted
    /// packing (`None`: no extra rows).
    pub captured: usize,
    pub tail_first: Option<usize>,
    /// Rows the language's whole text gives.
    pub total: usize,
}

impl TrainingRows {
    /// The record an adapter keeps of its text, which [`check_unseen`] reads.
    pub fn record(&self, lang: &str) -> serde_json::Value {
        serde_json::json!({"lang": lang, "captured_rows": self.captured, "tail_first": self.tail_first,
            "rows_total": self.total})
    }
}

/// The rows of [`TrainingRows`]: refused when the extra rows would leave no held-out row.
pub fn training_rows(
    stats_path: &Path,
    data_dir: Option<&Path>,
    tok: &Tokenizer,
    extra: usize,
) -> Result<TrainingRows> {
    let (all, captured) = repack(stats_path, data_dir, tok)?;
    let mut rows: Vec<Vec<u32>> = (0..captured).map(|r| all.row(r).to_vec()).collect();
    let mut tail_first = None;
    if extra > 0 {
        // captured rows, a skipped row, at least one held-out row, a skipped row, then the extra rows.
        let room = all.rows.saturating_sub(captured + 3);
        ensure!(
            extra <= room,
            "{}: --extra-rows {extra} leaves no held-out row: its text gives {} rows, the capture used {captured}, so \
             at most {room} extra rows fit (ask for fewer)",
            all.lang,
            all.rows
        );
        let first = all.rows - extra;
        rows.extend((first..all.rows).map(|r| all.row(r).to_vec()));
        tail_first = Some(first);
    }
    Ok(TrainingRows { rows, captured, tail_first, total: all.rows })
}

/// Fails when `held` (held-out rows of `lang` from the capture whose statistics have digest `stats_sha256`) overlaps
/// the text an adapter trained on, or comes within a row of it; `text` is the adapter's record ([`TrainingRows::record`])
/// and the digest of the statistics it trained from.
pub fn check_unseen(
    lang: &str,
    stats_sha256: &str,
    held: &HeldOut,
    text: &serde_json::Value,
    trained_from: &str,
) -> Result<()> {
    if text["lang"].as_str() != Some(lang) || trained_from != stats_sha256 {
        return Ok(());
    }
    if let Some(tail) = text["tail_first"].as_u64() {
        let end = held.first + held.rows.len();
        ensure!(
            (end as u64) < tail,
            "{lang}: held-out rows {}..{end} reach the rows {tail}.. the adapter trained on (--extra-rows): score fewer \
             rows (--rows {}) or train with fewer extra rows",
            held.first,
            (tail as usize).saturating_sub(held.first + 1).max(1)
        );
    }
    Ok(())
}

/// Up to `want` held-out rows of the language whose statistics are `stats_path`.
pub fn heldout(stats_path: &Path, data_dir: Option<&Path>, tok: &Tokenizer, want: usize) -> Result<HeldOut> {
    let (all, captured) = repack(stats_path, data_dir, tok)?;
    let lang = &all.lang;
    let first = captured + 1;
    let available = all.rows.saturating_sub(first);
    ensure!(
        available > 0,
        "{lang}: the capture used {captured} of the {} rows its text gives, so no held-out row is left: capture \
         {lang} with --leave-rows {} (or a smaller --max-tokens) to keep text for perplexity",
        all.rows,
        want + 1
    );
    let rows = (first..first + available.min(want)).map(|r| all.row(r).to_vec()).collect();
    Ok(HeldOut { rows, first })
}

/// Up to `want` held-out rows of each of `langs` from capture run `run` (RUN/stats/LANG.safetensors), saying so when a
/// language has fewer.
pub fn heldout_of_run(
    run: &Path,
    langs: &[String],
    data_dir: Option<&Path>,
    tok: &Tokenizer,
    want: usize,
) -> Result<Vec<HeldOut>> {
    let mut out = Vec::with_capacity(langs.len());
    for l in langs {
        let stats = run.join("stats").join(format!("{l}.safetensors"));
        ensure!(
            stats.is_file(),
            "no statistics for {l} at {}: capture {l} into {} first",
            stats.display(),
            run.display()
        );
        let h = heldout(&stats, data_dir, tok, want)?;
        if h.rows.len() < want {
            eprintln!("note: {l}: only {} held-out rows exist (asked for {want})", h.rows.len());
        }
        out.push(h);
    }
    Ok(out)
}
