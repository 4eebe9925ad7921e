//! Merging statistics files of one language: shards of pass 1 add up; shards of pass 2 (all computed against the
//! same merged pass 1) add their counts. Exact, so any grouping and order of merges gives the same bytes.

use std::path::{Path, PathBuf};

use crate::file::{StatsFile, final_path};
use crate::{Error, Result};

/// Merges `files` (shards of one capture) into one.
pub fn merge_files(files: &[StatsFile]) -> Result<StatsFile> {
    let (first, rest) = files.split_first().ok_or_else(|| Error::Merge("no statistics files to merge".into()))?;
    let mut acc = first.clone();
    for f in rest {
        if !f.meta.same_capture(&acc.meta) {
            return Err(Error::Merge(format!(
                "shards of different captures (they differ in {}): merge only shards of one run",
                f.meta.difference(&acc.meta)
            )));
        }
        let (a2, f2) = (!acc.meta.pass2.is_empty(), !f.meta.pass2.is_empty());
        if a2 && f2 {
            if acc.stats.pass1 != f.stats.pass1 {
                return Err(Error::Merge(
                    "pass-2 shards were computed against different pass-1 statistics: rerun pass 2 of every shard \
                     against one merged pass 1"
                        .into(),
                ));
            }
            acc.meta.pass2 = acc.meta.pass2.union_disjoint(&f.meta.pass2)?;
        } else if !a2 && !f2 {
            acc.meta.pass1 = acc.meta.pass1.union_disjoint(&f.meta.pass1)?;
        } else {
            return Err(Error::Merge(
                "a pass-1 shard and a pass-2 shard cannot be merged together: merge the pass-1 shards first, \
                 then the pass-2 shards"
                    .into(),
            ));
        }
        acc.stats.merge(&f.stats)?;
    }
    Ok(acc)
}

/// What `merge_language` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeReport {
    pub out: PathBuf,
    pub shards: Vec<PathBuf>,
    /// Which pass the merged shards were of (1 or 2).
    pub pass: u8,
    pub complete: bool,
    /// Where the merged statistics come from (model, tokenizer, weights, data).
    pub provenance: crate::Provenance,
    /// The shards still needed for this pass, each with why: `en.shard-1-of-4.safetensors (absent)`, or `(no pass 2
    /// yet)` (empty when complete).
    pub missing: Vec<String>,
}

/// `(index, count)` of a shard file name `<lang>.shard-<i>-of-<n>.safetensors`.
fn shard_of(name: &str, lang: &str) -> Option<(u32, u32)> {
    let rest = name.strip_prefix(&format!("{lang}.shard-"))?.strip_suffix(".safetensors")?;
    let (i, n) = rest.split_once("-of-")?;
    Some((i.parse().ok()?, n.parse().ok()?))
}

/// The shard files `<lang>.shard-<i>-of-<n>.safetensors` in `dir` with their `(i, n)`, sorted by name.
pub fn shard_files(dir: &Path, lang: &str) -> Result<Vec<(PathBuf, (u32, u32))>> {
    let mut shards: Vec<(PathBuf, (u32, u32))> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let s = shard_of(p.file_name()?.to_str()?, lang)?;
            Some((p, s))
        })
        .collect();
    shards.sort();
    Ok(shards)
}

/// Merges every `<lang>.shard-*-of-*.safetensors` in `dir` into `<lang>.safetensors`: the pass-2 shards if there
/// are any (they each carry the merged pass 1), else the pass-1 shards. Shard files are kept, so merging again is
/// idempotent. Shards of different splits (`-of-2` beside `-of-4`) are refused by name; shards still missing are
/// named in the report. With `model`, every shard must have been captured with that model (the run's).
pub fn merge_language(dir: &Path, lang: &str, model: Option<&lsn_core::ModelIdentity>) -> Result<MergeReport> {
    let shards = shard_files(dir, lang)?;
    let Some(&(_, (_, count))) = shards.first() else {
        return Err(Error::Merge(format!(
            "no shard files {lang}.shard-I-of-N.safetensors in {}: run `lsn capture --shard I/N` first",
            dir.display()
        )));
    };
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if let Some((odd, (_, n))) = shards.iter().find(|(_, (_, n))| *n != count) {
        return Err(Error::Merge(format!(
            "{} is a shard of {n} but {} is a shard of {count}: the shards of one language must come from one \
             --shard I/N split; delete the files of the other split from {}",
            name(odd),
            name(&shards[0].0),
            dir.display()
        )));
    }
    let files = shards.iter().map(|(p, _)| StatsFile::read(p)).collect::<Result<Vec<_>>>()?;
    if let Some(want) = model {
        for ((path, _), f) in shards.iter().zip(&files) {
            let got = f.meta.provenance.identity();
            if !got.same_model(want) {
                return Err(Error::Merge(format!(
                    "{} was captured with another model than the run's (they differ in {}): remove it, or capture \
                     the shard again with the run's model",
                    path.display(),
                    want.difference(&got)
                )));
            }
        }
    }
    let with_pass2: Vec<usize> = (0..files.len()).filter(|&k| !files[k].meta.pass2.is_empty()).collect();
    let (pass, chosen): (u8, Vec<usize>) =
        if with_pass2.is_empty() { (1, (0..files.len()).collect()) } else { (2, with_pass2) };
    let picked: Vec<StatsFile> = chosen.iter().map(|&k| files[k].clone()).collect();
    let merged = merge_files(&picked).map_err(|e| match e {
        Error::Merge(m) => Error::Merge(format!(
            "{m} (files: {})",
            chosen.iter().map(|&k| name(&shards[k].0)).collect::<Vec<_>>().join(", ")
        )),
        e => e,
    })?;
    let complete = if pass == 1 { merged.meta.pass1_complete() } else { merged.meta.pass2_complete() };
    let present: Vec<u32> = chosen.iter().map(|&k| shards[k].1.0).collect();
    let exists: Vec<u32> = shards.iter().map(|(_, (i, _))| *i).collect();
    let missing = (0..count)
        .filter(|i| !present.contains(i))
        .map(|i| {
            let why = if exists.contains(&i) { "no pass 2 yet" } else { "absent" };
            format!("{lang}.shard-{i}-of-{count}.safetensors ({why})")
        })
        .collect();
    let out = final_path(dir, lang);
    // A complete result is never replaced by a different merge (stray shards of an abandoned attempt).
    if out.is_file() {
        let existing = StatsFile::read(&out)?;
        if existing.meta.pass2_complete() && existing.to_bytes()? != merged.to_bytes()? {
            return Err(Error::Merge(format!(
                "{} is already complete, and these shard files would replace it with other statistics: {}; they \
                 are left over from another attempt: delete them (or move the complete file away to merge them)",
                out.display(),
                chosen.iter().map(|&k| name(&shards[k].0)).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    merged.write(&out)?;
    let provenance = merged.meta.provenance.clone();
    Ok(MergeReport { out, shards: shards.into_iter().map(|(p, _)| p).collect(), pass, complete, provenance, missing })
}
