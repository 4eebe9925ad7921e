//! What a statistics file records besides the numbers: provenance (model, tokenizer, data, backend), the batching,
//! and which batches of each pass it covers — enough to resume, to merge shards safely, and to refuse mixing runs.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Version of the statistics file layout (2: provenance carries the weights' sha256).
pub const FORMAT: u32 = 2;

/// Where the statistics come from. Two files merge (or a partial file resumes) only when these agree exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The model as the user named it (registry name or directory).
    pub model: String,
    /// sha256 of the model's `config.json`.
    pub config_sha256: String,
    /// sha256 of the `tokenizer.json` that made the token ids.
    pub tokenizer_sha256: String,
    /// The weights' identity: sha256 over every shard's sha256 (`lsn_core::ModelIdentity::weights_sha256`), so
    /// statistics of a base model and of its fine-tune (same config and tokenizer) never mix.
    pub weights_sha256: String,
    /// The backend that ran the forward passes.
    pub backend: String,
    /// What the backend held the weight matrices in (`lsn_core::WeightDType`): statistics of bf16-rounded weights
    /// never mix with f32 ones. Files written before the option existed are f32.
    #[serde(default)]
    pub weights_dtype: lsn_core::WeightDType,
    /// Where the statistics were read (`lsn_core::TapPoint`): "act" = `act_fn(gate_proj(x))`, "gate_pre" =
    /// `gate_proj(x)` before the activation (the paper's code). Files of different points never mix.
    pub stats_on: String,
    /// How the token rows were made: sources, seed, budget, and the sha256 of the packed ids.
    pub data: serde_json::Value,
}

impl Provenance {
    /// The identity of the model these statistics were captured with (shard hashes are not recorded per file).
    pub fn identity(&self) -> lsn_core::ModelIdentity {
        lsn_core::ModelIdentity::recorded(&self.config_sha256, &self.tokenizer_sha256, &self.weights_sha256)
    }
}

/// One shard `index` of `count`: the contiguous batch range `[index·B/count, (index+1)·B/count)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Parses `i/n` (0-based `i`).
    pub fn parse(s: &str) -> Result<Shard> {
        let bad = || Error::Invalid(format!("shard {s:?} is not of the form i/n with 0 ≤ i < n (e.g. 0/4)"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse::<u32>().map_err(|_| bad())?, n.trim().parse::<u32>().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// This shard's batches out of `total`.
    pub fn batches(self, total: u64) -> (u64, u64) {
        let (i, n) = (u64::from(self.index), u64::from(self.count));
        (i * total / n, (i + 1) * total / n)
    }
}

/// The rows `[r0, r1)` of batches `a..b` when `rows` rows are cut into batches of `batch_rows` (the last may be short).
pub(crate) fn batch_rows(batch_rows: usize, rows: u64, (a, b): (u64, u64)) -> (u64, u64) {
    let br = batch_rows as u64;
    ((a * br).min(rows), (b * br).min(rows))
}

/// A set of batch indices as sorted, disjoint, non-adjacent half-open ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage(pub Vec<[u64; 2]>);

impl Coverage {
    pub fn range(start: u64, end: u64) -> Self {
        Coverage(if start < end { vec![[start, end]] } else { Vec::new() })
    }

    /// Number of batches covered.
    pub fn len(&self) -> u64 {
        self.0.iter().map(|[a, b]| b - a).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `[0, total)` is covered.
    pub fn is_complete(&self, total: u64) -> bool {
        total == 0 && self.0.is_empty() || self.0 == [[0, total]]
    }

    /// The first batch at or after `start` that is not covered.
    pub fn next_missing(&self, start: u64) -> u64 {
        let mut at = start;
        for &[a, b] in &self.0 {
            if a <= at && at < b {
                at = b;
            }
        }
        at
    }

    /// The union with `other`; fails when they overlap (the same batches would be counted twice).
    pub fn union_disjoint(&self, other: &Coverage) -> Result<Coverage> {
        let mut all: Vec<[u64; 2]> = self.0.iter().chain(&other.0).copied().collect();
        all.sort_unstable();
        let mut out: Vec<[u64; 2]> = Vec::new();
        for [a, b] in all {
            match out.last_mut() {
                Some(last) if a < last[1] => {
                    return Err(Error::Merge(format!(
                        "batches {a}..{} are in two of the files (a shard given twice?)",
                        b.min(last[1])
                    )));
                }
                Some(last) if a == last[1] => last[1] = b,
                _ => out.push([a, b]),
            }
        }
        Ok(Coverage(out))
    }
}

/// The metadata of a statistics file (stored as JSON in the safetensors header and beside it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsMeta {
    pub format: u32,
    pub lang: String,
    pub layers: usize,
    pub intermediate: usize,
    pub provenance: Provenance,
    pub row_len: usize,
    pub rows: u64,
    pub batch_rows: usize,
    pub batches: u64,
    /// The quantile levels of pass 1, in tensor order.
    pub quantiles: Vec<f32>,
    pub fixed_frac_bits: i32,
    /// Batches whose pass-1 statistics are in the file.
    pub pass1: Coverage,
    /// Batches whose pass-2 counts are in the file.
    pub pass2: Coverage,
    /// Real tokens counted in pass 1 and in pass 2: written from the statistics by `StatsFile::write` (the stats
    /// themselves hold them in memory), read back into them by `StatsFile::read`.
    pub tokens_pass1: u64,
    pub tokens_pass2: u64,
}

impl StatsMeta {
    /// Whether `other` describes the same capture (model, tokenizer, data, batching), whatever it covers.
    pub fn same_capture(&self, other: &StatsMeta) -> bool {
        (self.format, &self.lang, self.layers, self.intermediate, &self.provenance)
            == (other.format, &other.lang, other.layers, other.intermediate, &other.provenance)
            && (self.row_len, self.rows, self.batch_rows, self.batches, &self.quantiles, self.fixed_frac_bits)
                == (other.row_len, other.rows, other.batch_rows, other.batches, &other.quantiles, other.fixed_frac_bits)
    }

    /// What differs from `other`, for error messages.
    pub fn difference(&self, other: &StatsMeta) -> String {
        let mut d = Vec::new();
        let p = (&self.provenance, &other.provenance);
        if self.lang != other.lang {
            d.push(format!("language {} vs {}", self.lang, other.lang));
        }
        if p.0.model != p.1.model || p.0.config_sha256 != p.1.config_sha256 {
            d.push(format!("model {} vs {}", p.0.model, p.1.model));
        }
        if p.0.weights_sha256 != p.1.weights_sha256 {
            d.push(format!(
                "weights {} vs {}",
                lsn_core::identity::short(&p.0.weights_sha256),
                lsn_core::identity::short(&p.1.weights_sha256)
            ));
        }
        if p.0.tokenizer_sha256 != p.1.tokenizer_sha256 {
            d.push("tokenizer".into());
        }
        if p.0.backend != p.1.backend {
            d.push(format!("backend {} vs {}", p.0.backend, p.1.backend));
        }
        if p.0.weights_dtype != p.1.weights_dtype {
            d.push(format!("weights dtype {} vs {}", p.0.weights_dtype, p.1.weights_dtype));
        }
        if p.0.data != p.1.data || self.rows != other.rows || self.row_len != other.row_len {
            d.push("data (corpus, seed, budget or row length)".into());
        }
        if self.batch_rows != other.batch_rows {
            d.push(format!("batch rows {} vs {}", self.batch_rows, other.batch_rows));
        }
        if d.is_empty() {
            d.push("format".into());
        }
        d.join(", ")
    }

    pub fn pass1_complete(&self) -> bool {
        self.pass1.is_complete(self.batches)
    }

    pub fn pass2_complete(&self) -> bool {
        self.pass2.is_complete(self.batches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_batches() {
        for total in [0u64, 1, 7, 10] {
            for n in 1..5u32 {
                let mut cov = Coverage::default();
                for i in 0..n {
                    let (a, b) = Shard { index: i, count: n }.batches(total);
                    cov = cov.union_disjoint(&Coverage::range(a, b)).unwrap();
                }
                assert!(cov.is_complete(total), "{total} {n} {cov:?}");
            }
        }
        assert_eq!(Shard::parse("1/3").unwrap(), Shard { index: 1, count: 3 });
        for bad in ["3/3", "1", "a/2", "0/0"] {
            assert!(Shard::parse(bad).unwrap_err().to_string().contains("i/n"), "{bad}");
        }
    }

    #[test]
    fn coverage_union_refuses_overlap() {
        let a = Coverage::range(0, 3);
        assert_eq!(a.union_disjoint(&Coverage::range(3, 5)).unwrap(), Coverage::range(0, 5));
        assert!(a.union_disjoint(&Coverage::range(2, 4)).unwrap_err().to_string().contains("two of the files"));
        assert_eq!(Coverage::range(0, 4).next_missing(0), 4);
        assert_eq!(Coverage::range(2, 4).next_missing(0), 0);
    }
}
