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
}

/// Merges every `<lang>.shard-*-of-*.safetensors` in `dir` into `<lang>.safetensors`: the pass-2 shards if there
/// are any (they each carry the merged pass 1), else the pass-1 shards. Shard files are kept, so merging again is
/// idempotent.
pub fn merge_language(dir: &Path, lang: &str) -> Result<MergeReport> {
    let prefix = format!("{lang}.shard-");
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with(&prefix) && name.ends_with(".safetensors") && !name.ends_with(".partial.safetensors")
        })
        .collect();
    shards.sort();
    if shards.is_empty() {
        return Err(Error::Merge(format!(
            "no shard files {lang}.shard-I-of-N.safetensors in {}: run `lsn capture --shard I/N` first",
            dir.display()
        )));
    }
    let files = shards.iter().map(|p| StatsFile::read(p)).collect::<Result<Vec<_>>>()?;
    let with_pass2: Vec<StatsFile> = files.iter().filter(|f| !f.meta.pass2.is_empty()).cloned().collect();
    let (pass, chosen) = if with_pass2.is_empty() { (1, files) } else { (2, with_pass2) };
    let merged = merge_files(&chosen)?;
    let complete = if pass == 1 { merged.meta.pass1_complete() } else { merged.meta.pass2_complete() };
    let out = final_path(dir, lang);
    merged.write(&out)?;
    Ok(MergeReport { out, shards, pass, complete })
}
