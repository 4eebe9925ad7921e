//! `CachedDecoder`: cached decoding through the exported graph with past key/values (`BodySpec::cache`): a prompt
//! is fed once, then each new token costs one position, not the whole prefix. For generation (e.g. XQuAD answers).

use lsn_core::{Dense, Device, ModelConfig};
use ort::session::Session;
use ort::session::builder::PrepackedWeights;
use ort::value::DynValue;

use crate::cache::ExportDir;
use crate::error::{Context, Error, Result};
use crate::export::{BodySpec, Head};
use crate::model::{extract, tensor};
use crate::runtime;

/// A model with a key/value cache per layer. Rows advance together: every call appends the same number of tokens to
/// every row.
pub struct CachedDecoder {
    cfg: ModelConfig,
    session: Session,
    rows: usize,
    /// Positions held in the cache.
    len: usize,
    /// Per layer, the cached keys and values `[rows, kv_heads, len, head_dim]`; empty before the first call.
    past: Vec<(DynValue, DynValue)>,
}

impl std::fmt::Debug for CachedDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedDecoder").field("rows", &self.rows).field("len", &self.len).finish()
    }
}

impl CachedDecoder {
    pub(crate) fn new(cfg: ModelConfig, export: ExportDir, device: Device) -> Result<Self> {
        let spec = BodySpec { cache: true, ..BodySpec::plain(Head::Logits) };
        let session = runtime::session(&export.body(&spec)?, device, &PrepackedWeights::new())?;
        Ok(Self { cfg, session, rows: 0, len: 0, past: Vec::new() })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Positions held in the cache.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets the cache; the next call starts new sequences (and may change the number of rows).
    pub fn reset(&mut self) {
        self.rows = 0;
        self.len = 0;
        self.past.clear();
    }

    /// Appends `ids` (`rows` equal-length rows, row-major) to the cached sequences and returns their logits
    /// `[rows, new tokens, vocab]`. After an error the cache is empty.
    pub fn feed(&mut self, rows: usize, ids: &[u32]) -> lsn_core::Result<Dense> {
        let bad = |m: String| lsn_core::Error::InvalidBatch(m);
        if rows == 0 || ids.is_empty() || !ids.len().is_multiple_of(rows) {
            return Err(bad(format!("{} token ids do not split into {rows} non-empty equal rows", ids.len())));
        }
        if self.len > 0 && rows != self.rows {
            return Err(bad(format!("the cache holds {} rows, not {rows}: call reset() to start over", self.rows)));
        }
        if let Some(id) = ids.iter().find(|&&i| i as usize >= self.cfg.vocab_size) {
            return Err(bad(format!("token id {id} is outside the model's vocabulary of {}", self.cfg.vocab_size)));
        }
        let t = ids.len() / rows;
        // A failed step has consumed the cache: start over rather than continue from a wrong state.
        self.step(rows, t, ids).inspect_err(|_| self.reset()).map_err(Into::into)
    }

    fn step(&mut self, rows: usize, t: usize, ids: &[u32]) -> Result<Dense> {
        let (layers, kv, d) = (self.cfg.num_layers, self.cfg.num_kv_heads, self.cfg.head_dim);
        if self.past.is_empty() {
            for _ in 0..layers {
                self.past.push((
                    tensor::<f32>(&[rows, kv, 0, d], Vec::new())?,
                    tensor::<f32>(&[rows, kv, 0, d], Vec::new())?,
                ));
            }
        }
        let mut inputs: Vec<(String, DynValue)> = Vec::with_capacity(1 + 2 * layers);
        inputs.push(("input_ids".into(), tensor(&[rows, t], ids.iter().map(|&i| i64::from(i)).collect())?));
        for (l, (k, v)) in std::mem::take(&mut self.past).into_iter().enumerate() {
            inputs.push((format!("past_key_{l}"), k));
            inputs.push((format!("past_value_{l}"), v));
        }
        let len = self.len;
        let mut out =
            self.session.run(inputs).during(|| format!("cached step of {rows} rows × {t} tokens after {len}"))?;
        let logits = extract::<f32>(&out, "logits")?;
        for l in 0..layers {
            let mut take = |name: String| out.remove(&name).ok_or_else(|| Error::Export(format!("no output {name}")));
            let k = take(format!("present_key_{l}"))?;
            let v = take(format!("present_value_{l}"))?;
            self.past.push((k, v));
        }
        self.rows = rows;
        self.len += t;
        Ok(Dense::new(vec![rows, t, self.cfg.vocab_size], logits)?)
    }
}
