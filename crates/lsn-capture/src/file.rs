//! Statistics files: `ActivationStats` + `StatsMeta` as safetensors (the metadata as JSON under the header key
//! `lsn`), written atomically, with a readable `.json` copy of the metadata beside it.
//!
//! Tensors (row-major, little-endian): `count_pos` u64 `[L, I]`; the exact fixed-point sums `sum`, `sum_sq` i64
//! `[L, I, 2]` and `quantile_sum` i64 `[Q, L, I, 2]` (each pair is one i128, low word first, value = v / 2^32);
//! `count_above` u64 `[Q, L, I]` once pass 2 ran. Derived f32 tensors for convenience (recomputed from the exact
//! ones on every write, so they never disagree): `mean`, `std`, `act_prob` = count_pos / n `[L, I]`, `quantile_mean`
//! `[Q, L, I]` (pass 2's thresholds), and `act_prob_above` = count_above / n `[Q, L, I]`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lsn_core::{ActivationStats, Pass1, Pass2, QUANTILES};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::meta::{FORMAT, StatsMeta};
use crate::{Error, Result};

/// A statistics file's content.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsFile {
    pub meta: StatsMeta,
    pub stats: ActivationStats,
}

fn u64_bytes(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn i128_bytes(v: &[i128]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32_bytes(v: impl Iterator<Item = f32>) -> Vec<u8> {
    v.flat_map(|x| x.to_le_bytes()).collect()
}

/// [`lsn_core::write_atomic`] with the path in the error.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    lsn_core::write_atomic(path, bytes).map_err(|e| Error::io(path, e))
}

impl StatsFile {
    /// The metadata as written: token counts taken from the statistics.
    fn written_meta(&self) -> StatsMeta {
        let mut meta = self.meta.clone();
        meta.tokens_pass1 = self.stats.pass1.n_tokens;
        meta.tokens_pass2 = self.stats.pass2.as_ref().map_or(0, |p| p.n_tokens);
        meta
    }

    /// The safetensors bytes of this file (deterministic: the same statistics give the same bytes).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let s = &self.stats;
        let (l, i, q) = (s.layers, s.intermediate, QUANTILES.len());
        let p1 = &s.pass1;
        let n1 = p1.n_tokens.max(1) as f32;
        let mut t: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![
            ("count_pos", Dtype::U64, vec![l, i], u64_bytes(&p1.count_pos)),
            ("sum", Dtype::I64, vec![l, i, 2], i128_bytes(&p1.sum)),
            ("sum_sq", Dtype::I64, vec![l, i, 2], i128_bytes(&p1.sum_sq)),
            ("quantile_sum", Dtype::I64, vec![q, l, i, 2], i128_bytes(&p1.quantile_sum)),
            ("mean", Dtype::F32, vec![l, i], f32_bytes(s.mean().into_iter().map(|x| x as f32))),
            ("std", Dtype::F32, vec![l, i], f32_bytes(s.std().into_iter().map(|x| x as f32))),
            ("act_prob", Dtype::F32, vec![l, i], f32_bytes(p1.count_pos.iter().map(|&c| c as f32 / n1))),
            ("quantile_mean", Dtype::F32, vec![q, l, i], f32_bytes(s.quantile_means().into_iter())),
        ];
        if let Some(p2) = &s.pass2 {
            let n2 = p2.n_tokens.max(1) as f32;
            t.push(("count_above", Dtype::U64, vec![q, l, i], u64_bytes(&p2.count_above)));
            t.push((
                "act_prob_above",
                Dtype::F32,
                vec![q, l, i],
                f32_bytes(p2.count_above.iter().map(|&c| c as f32 / n2)),
            ));
        }
        let views = t
            .iter()
            .map(|(name, dt, shape, bytes)| {
                TensorView::new(*dt, shape.clone(), bytes)
                    .map(|v| (*name, v))
                    .map_err(|e| Error::Invalid(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let meta = serde_json::to_string(&self.written_meta()).map_err(|e| Error::Invalid(e.to_string()))?;
        safetensors::serialize(views, Some(HashMap::from([("lsn".to_owned(), meta)])))
            .map_err(|e| Error::Invalid(e.to_string()))
    }

    /// Writes the file atomically, then its `.json` metadata copy.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?)?;
        let json = serde_json::to_vec_pretty(&self.written_meta()).map_err(|e| Error::Invalid(e.to_string()))?;
        write_atomic(&path.with_extension("json"), &json)
    }

    /// Reads a statistics file, checking every tensor's shape against the metadata.
    pub fn read(path: &Path) -> Result<StatsFile> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        StatsFile::from_bytes(&bytes, path)
    }

    /// [`StatsFile::read`] of bytes already read from `path` (named in errors).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<StatsFile> {
        let bad = |reason: String| Error::BadFile { path: path.to_owned(), reason };
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("{e} (truncated or not a safetensors file; delete it and capture again)")))?;
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("lsn"))
            .ok_or_else(|| bad("no lsn metadata: not written by lsn capture".into()))?;
        let meta: StatsMeta = serde_json::from_str(json).map_err(|e| bad(format!("bad lsn metadata: {e}")))?;
        if meta.format != FORMAT {
            return Err(bad(format!("format {} but this lsn reads format {FORMAT}; capture again", meta.format)));
        }
        let _ = st.len();
        // `<lang>.safetensors`, `<lang>.shard-…`, `<lang>.partial…`: the name says which language the file is for.
        let named = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.split('.').next()).unwrap_or("");
        if named != meta.lang {
            return Err(bad(format!(
                "it holds statistics of language {:?}, not of {named:?} as its name says (a renamed or copied file?); \
                 delete it and capture {named} again",
                meta.lang
            )));
        }
        if meta.quantiles != QUANTILES {
            return Err(bad(format!(
                "its quantile levels {:?} are not {QUANTILES:?}: the file is damaged or was edited; delete it and \
                 capture again",
                meta.quantiles
            )));
        }
        let (l, i, q) = (meta.layers, meta.intermediate, QUANTILES.len());
        let get = |name: &str, dt: Dtype, shape: &[usize]| -> Result<Vec<u8>> {
            let v = st.tensor(name).map_err(|_| bad(format!("tensor {name} is missing")))?;
            if v.dtype() != dt || v.shape() != shape {
                return Err(bad(format!(
                    "tensor {name} is {:?} {:?}, expected {dt:?} {shape:?}",
                    v.dtype(),
                    v.shape()
                )));
            }
            Ok(v.data().to_vec())
        };
        let u64s =
            |b: Vec<u8>| b.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect::<Vec<_>>();
        let i128s =
            |b: Vec<u8>| b.chunks_exact(16).map(|c| i128::from_le_bytes(c.try_into().unwrap())).collect::<Vec<_>>();
        let pass1 = Pass1 {
            n_tokens: meta.tokens_pass1,
            n_batches: meta.pass1.len(),
            count_pos: u64s(get("count_pos", Dtype::U64, &[l, i])?),
            sum: i128s(get("sum", Dtype::I64, &[l, i, 2])?),
            sum_sq: i128s(get("sum_sq", Dtype::I64, &[l, i, 2])?),
            quantile_sum: i128s(get("quantile_sum", Dtype::I64, &[q, l, i, 2])?),
        };
        let pass2 = if meta.pass2.is_empty() {
            None
        } else {
            Some(Pass2 {
                n_tokens: meta.tokens_pass2,
                n_batches: meta.pass2.len(),
                count_above: u64s(get("count_above", Dtype::U64, &[q, l, i])?),
            })
        };
        let stats = ActivationStats { layers: l, intermediate: i, pass1, pass2 };
        let damaged =
            |what: String| bad(format!("{what}: the file is damaged or was edited; delete it and capture again"));
        stats.check_possible().map_err(damaged)?;
        let covered_tokens = |c: &crate::Coverage| -> u64 {
            let rows = |&[a, b]: &[u64; 2]| crate::meta::batch_rows(meta.batch_rows, meta.rows, (a, b));
            c.0.iter().map(rows).map(|(r0, r1)| r1.saturating_sub(r0) * meta.row_len as u64).sum()
        };
        if meta.pass1.0.iter().any(|&[a, b]| a >= b || b > meta.batches)
            || covered_tokens(&meta.pass1) != meta.tokens_pass1
        {
            return Err(damaged(format!(
                "pass 1 covers batches {:?} of {} but counts {} tokens",
                meta.pass1.0, meta.batches, meta.tokens_pass1
            )));
        }
        if covered_tokens(&meta.pass2) != meta.tokens_pass2 || meta.pass2.0.iter().any(|&[_, b]| b > meta.batches) {
            return Err(damaged(format!(
                "pass 2 covers batches {:?} of {} but counts {} tokens",
                meta.pass2.0, meta.batches, meta.tokens_pass2
            )));
        }
        Ok(StatsFile { meta, stats })
    }
}

/// `dir/<lang>.safetensors`: the language's complete (or merged) statistics.
pub fn final_path(dir: &Path, lang: &str) -> PathBuf {
    dir.join(format!("{lang}.safetensors"))
}

/// `dir/<lang>.shard-<i>-of-<n>.safetensors`.
pub fn shard_path(dir: &Path, lang: &str, shard: crate::Shard) -> PathBuf {
    dir.join(format!("{lang}.shard-{}-of-{}.safetensors", shard.index, shard.count))
}

/// The in-progress checkpoint beside an output file.
pub fn partial_path(out: &Path) -> PathBuf {
    out.with_extension("partial.safetensors")
}

/// Removes a checkpoint and its `.json` metadata copy (absent ones are fine).
pub(crate) fn remove_checkpoint(partial: &Path) -> Result<()> {
    for p in [partial.to_owned(), partial.with_extension("json")] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&p, e)),
        }
    }
    Ok(())
}
