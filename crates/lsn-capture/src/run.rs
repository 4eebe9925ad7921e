//! The capture driver: runs a `Model` over one language's packed rows in batches, pass 1 then pass 2 (DESIGN §4),
//! checkpointing every few batches so that a killed run resumes where it stopped and ends with the same bytes.
//!
//! Unsharded, one call does both passes and writes `<lang>.safetensors`. With `shard i/n`, a call does pass 1 of its
//! batch range (writing `<lang>.shard-i-of-n.safetensors`); once `merge` has combined every shard's pass 1 into
//! `<lang>.safetensors`, the same call does pass 2 of its range against those merged thresholds, and a second merge
//! completes the language. Pass 2 needs the thresholds of the *whole* language, hence the two rounds.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lsn_core::{ActivationStats, FIXED_FRAC_BITS, Model, Outputs, QUANTILES, Request, TapPoint, Taps, TokenBatch};

use crate::file::{StatsFile, final_path, partial_path, shard_path};
use crate::meta::{Coverage, FORMAT, Provenance, Shard, StatsMeta};
use crate::{Error, Result};

/// What to capture.
#[derive(Debug, Clone)]
pub struct CaptureSpec<'a> {
    /// Language code (file names and metadata).
    pub lang: String,
    /// Packed token rows, `rows × row_len`, row-major.
    pub ids: &'a [u32],
    pub row_len: usize,
    /// Rows per forward pass.
    pub batch_rows: usize,
    pub shard: Shard,
    /// Write a resumable checkpoint after this many batches.
    pub checkpoint_every: usize,
    pub provenance: Provenance,
}

impl CaptureSpec<'_> {
    /// Where the statistics are read, as `provenance.stats_on` names it.
    pub fn tap_point(&self) -> Result<TapPoint> {
        TapPoint::parse(&self.provenance.stats_on).ok_or_else(|| {
            Error::Invalid(format!(
                "statistics on {:?}: the tap point is \"act\" or \"gate_pre\"",
                self.provenance.stats_on
            ))
        })
    }
}

/// Progress reports (the CLI draws bars; tests ignore them).
pub trait Progress {
    /// A pass starts: `total` batches in this call's range, `done` of them already in a resumed checkpoint.
    fn start(&mut self, _pass: u8, _total: u64, _done: u64) {}
    /// One batch of `tokens` tokens finished.
    fn batch(&mut self, _tokens: u64) {}
    /// The pass finished.
    fn end(&mut self) {}
}

/// Reports nothing.
#[derive(Debug, Default)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// What a call achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The output already held what this call would compute; nothing ran.
    AlreadyDone(PathBuf),
    /// Both passes are complete in this file.
    Complete(PathBuf),
    /// This shard's pass 1 is done: merge all shards, then run the shard again for pass 2.
    ShardPass1(PathBuf),
    /// This shard's pass 2 is done: merge all shards to complete the language.
    ShardPass2(PathBuf),
}

impl Outcome {
    pub fn path(&self) -> &Path {
        match self {
            Outcome::AlreadyDone(p) | Outcome::Complete(p) | Outcome::ShardPass1(p) | Outcome::ShardPass2(p) => p,
        }
    }
}

struct Job<'s, 'a> {
    spec: &'s CaptureSpec<'a>,
    rows: u64,
    range: (u64, u64),
    partial: PathBuf,
}

impl Job<'_, '_> {
    fn batch(&self, b: u64) -> Result<TokenBatch> {
        let (r0, r1) = crate::meta::batch_rows(self.spec.batch_rows, self.rows, (b, b + 1));
        let (a, z) = (r0 as usize * self.spec.row_len, r1 as usize * self.spec.row_len);
        Ok(TokenBatch::full((r1 - r0) as usize, self.spec.row_len, self.spec.ids[a..z].to_vec())?)
    }

    /// Runs one pass over the batches of this job's range not yet in `file`, checkpointing as it goes.
    fn pass(&self, model: &mut dyn Model, file: &mut StatsFile, pass: u8, progress: &mut dyn Progress) -> Result<()> {
        let (start, end) = self.range;
        let covered = |f: &StatsFile| if pass == 1 { f.meta.pass1.clone() } else { f.meta.pass2.clone() };
        let mut next = covered(file).next_missing(start);
        let taps = if pass == 1 { Taps::pass1() } else { Taps::pass2(Arc::new(file.stats.quantile_means())) };
        let taps = taps.at(self.spec.tap_point()?);
        progress.start(pass, end - start, next - start);
        let mut since_checkpoint = 0;
        while next < end {
            let batch = self.batch(next)?;
            let out = model.run(&Request::new(&batch, Outputs::NONE).taps(&taps))?;
            let t = out.taps.ok_or_else(|| Error::Invalid("the backend returned no tap statistics".into()))?;
            if pass == 1 {
                file.stats.add_pass1(&t)?;
                file.meta.pass1 = file.meta.pass1.union_disjoint(&Coverage::range(next, next + 1))?;
            } else {
                file.stats.add_pass2(&t)?;
                file.meta.pass2 = file.meta.pass2.union_disjoint(&Coverage::range(next, next + 1))?;
            }
            next += 1;
            progress.batch(t.n_tokens);
            since_checkpoint += 1;
            if since_checkpoint >= self.spec.checkpoint_every && next < end {
                file.write(&self.partial)?;
                since_checkpoint = 0;
            }
        }
        progress.end();
        Ok(())
    }
}

/// Captures one language's statistics into `dir` (see the module docs for what one call does).
pub fn capture(model: &mut dyn Model, spec: &CaptureSpec, dir: &Path, progress: &mut dyn Progress) -> Result<Outcome> {
    let cfg = model.config();
    let (layers, intermediate) = (cfg.num_layers, cfg.intermediate_size);
    if spec.row_len == 0 || spec.batch_rows == 0 || spec.checkpoint_every == 0 {
        return Err(Error::Invalid("row length, batch rows and checkpoint interval must be at least 1".into()));
    }
    if spec.row_len > cfg.max_position_embeddings {
        return Err(Error::Invalid(format!(
            "rows of {} tokens are longer than the model's max_position_embeddings ({}): choose a smaller --row-len",
            spec.row_len, cfg.max_position_embeddings
        )));
    }
    if spec.ids.is_empty() || !spec.ids.len().is_multiple_of(spec.row_len) {
        return Err(Error::Invalid(format!(
            "{} token ids do not form whole rows of {} (language {})",
            spec.ids.len(),
            spec.row_len,
            spec.lang
        )));
    }
    let rows = (spec.ids.len() / spec.row_len) as u64;
    let batches = rows.div_ceil(spec.batch_rows as u64);
    let fresh_meta = StatsMeta {
        format: FORMAT,
        lang: spec.lang.clone(),
        layers,
        intermediate,
        provenance: spec.provenance.clone(),
        row_len: spec.row_len,
        rows,
        batch_rows: spec.batch_rows,
        batches,
        quantiles: QUANTILES.to_vec(),
        fixed_frac_bits: FIXED_FRAC_BITS,
        pass1: Coverage::default(),
        pass2: Coverage::default(),
        tokens_pass1: 0,
        tokens_pass2: 0,
    };
    let whole = spec.shard.count == 1;
    let out = if whole { final_path(dir, &spec.lang) } else { shard_path(dir, &spec.lang, spec.shard) };
    let range = spec.shard.batches(batches);
    let job = Job { spec, rows, range, partial: partial_path(&out) };
    let covers_all = |c: &Coverage| Coverage::range(range.0, range.1).0.iter().all(|&[a, b]| c.next_missing(a) >= b);

    // What this call should produce, and the statistics it starts from. A shard does pass 2 once the merged pass 1
    // of the whole language is there; an unsharded call does both passes from scratch.
    let fresh = || StatsFile { meta: fresh_meta.clone(), stats: ActivationStats::new(layers, intermediate) };
    let (target_pass2, base) = if whole {
        (true, fresh())
    } else {
        let merged = read_if_same(&final_path(dir, &spec.lang), &fresh_meta)?;
        // A language already complete needs no shard: running one would only make a shard that `merge` refuses.
        if merged.as_ref().is_some_and(|m| m.meta.pass2_complete()) {
            return Ok(Outcome::AlreadyDone(final_path(dir, &spec.lang)));
        }
        // Sibling shards of this split must be of the same capture, or `merge` would refuse them after the compute.
        for (path, (_, count)) in crate::merge::shard_files(dir, &spec.lang)? {
            if count == spec.shard.count && path != out {
                read_if_same(&path, &fresh_meta)?;
            }
        }
        match merged.filter(|f| f.meta.pass1_complete()) {
            Some(merged) => {
                let mut base = merged;
                base.meta.pass2 = Coverage::default();
                base.stats.pass2 = None;
                (true, base)
            }
            None => (false, fresh()),
        }
    };

    if let Some(existing) = read_if_same(&out, &fresh_meta)? {
        // A lost `.json` copy of the metadata is written again (the statistics file itself is the same bytes).
        if !out.with_extension("json").is_file() {
            existing.write(&out)?;
        }
        let done = if target_pass2 {
            (whole || existing.stats.pass1 == base.stats.pass1) && covers_all(&existing.meta.pass2)
        } else {
            covers_all(&existing.meta.pass1)
        };
        if done {
            crate::file::remove_checkpoint(&job.partial)?;
            return Ok(Outcome::AlreadyDone(out));
        }
    }

    // Resume from a checkpoint of the same capture and the same starting point.
    let mut file = match read_if_same(&job.partial, &fresh_meta) {
        Ok(Some(p)) if !target_pass2 || whole || p.stats.pass1 == base.stats.pass1 => {
            tracing::info!(
                "resuming {} from {} (pass 1: {} batches, pass 2: {} batches done)",
                spec.lang,
                job.partial.display(),
                p.meta.pass1.len(),
                p.meta.pass2.len()
            );
            p
        }
        Ok(_) => base,
        Err(e) => {
            let why = match StatsFile::read(&job.partial) {
                Ok(p) => format!("it is of another capture (differs in {})", p.meta.difference(&fresh_meta)),
                Err(_) => e.to_string(),
            };
            tracing::warn!("discarding the checkpoint {}: {why}; starting over", job.partial.display());
            base
        }
    };

    if whole || !target_pass2 {
        job.pass(model, &mut file, 1, progress)?;
    }
    if target_pass2 {
        job.pass(model, &mut file, 2, progress)?;
    }
    file.write(&out)?;
    crate::file::remove_checkpoint(&job.partial)?;
    Ok(match (whole, target_pass2) {
        (true, _) => Outcome::Complete(out),
        (false, false) => Outcome::ShardPass1(out),
        (false, true) => Outcome::ShardPass2(out),
    })
}

/// Reads `path` if it exists. A file of another capture is an error for outputs (results are never overwritten
/// silently); the caller decides for checkpoints.
fn read_if_same(path: &Path, meta: &StatsMeta) -> Result<Option<StatsFile>> {
    if !path.exists() {
        return Ok(None);
    }
    let f = StatsFile::read(path)?;
    if !f.meta.same_capture(meta) {
        return Err(Error::Invalid(format!(
            "{} holds statistics of a different capture (differs in {}): choose another output directory or \
             delete the file",
            path.display(),
            f.meta.difference(meta)
        )));
    }
    Ok(Some(f))
}
