//! Cached decoding, written once for every backend: the `Decoder` trait, lsn-core's `CachedDecoder` over any
//! [`Engine`] (ragged prefill, one token per live row per step, rows retired when they finish), and the greedy loop.
//!
//! The bookkeeping lives here, not in the engines: each cache slot's position (`None` for a padding slot), from which
//! every step's RoPE tables and attention masks are computed by one rule. Rows are right-padded in the prefill; a real
//! token attends the real slots at positions `p ≤ q` (and `q − window < p` on sliding layers); a padding slot is seen
//! by nobody but itself. So padding changes nothing, and sliding layers stay exact past their window.

use crate::engine::{Engine, KvCache, Step, StepPositions};
use crate::positions::layer_positions;

use crate::{AttentionKind, Dense, Edits, Error, Intervention, Result, TokenBatch};

/// KV-cached generation over a loaded model.
pub trait Decoder {
    /// Starts new sequences from `batch`'s rows (ragged: right-padded, lengths as given) and returns the logits at
    /// each row's last real token, `[rows, vocab]`. Every row is live afterwards.
    fn prefill(&mut self, batch: &TokenBatch) -> Result<Dense>;
    /// Appends one token to each live row (in [`Decoder::live`] order) and returns their next-token logits
    /// `[live rows, vocab]`.
    fn step(&mut self, next: &[u32]) -> Result<Dense>;
    /// The prefill rows still live, in order.
    fn live(&self) -> &[usize];
    /// Stops rows (prefill indices): later steps neither feed nor compute them.
    fn retire(&mut self, rows: &[usize]) -> Result<()>;
    /// Forgets everything; the next call must be `prefill`.
    fn reset(&mut self);
}

/// The per-kind RoPE frequencies and windows of a model.
struct Kinds(Vec<(AttentionKind, Vec<f32>, Option<usize>)>);

/// lsn-core's decoder over an engine.
pub struct CachedDecoder<'m, E: Engine + ?Sized> {
    engine: &'m mut E,
    edits: Option<Edits>,
    kinds: Kinds,
    cache: Option<KvCache>,
    /// Prefill row index of each live row.
    live: Vec<usize>,
    /// Per live row, the position of each cache slot (`None`: padding).
    slots: Vec<Vec<Option<u32>>>,
}

impl<'m, E: Engine + ?Sized> CachedDecoder<'m, E> {
    pub fn new(engine: &'m mut E, intervention: Option<&Intervention>) -> Result<Self> {
        let cfg = engine.config();
        let edits = intervention.map(|iv| Edits::new(iv, cfg)).transpose()?;
        let mut kinds = vec![AttentionKind::Global];
        if cfg.layer_kinds.contains(&AttentionKind::Sliding) {
            kinds.push(AttentionKind::Sliding);
        }
        let kinds = Kinds(
            kinds
                .into_iter()
                .map(|k| {
                    let p = layer_positions(cfg, k);
                    (k, p.inv_freqs, p.window)
                })
                .collect(),
        );
        Ok(Self { engine, edits, kinds, cache: None, live: Vec::new(), slots: Vec::new() })
    }

    /// Runs `ids` `[rows, len]` (positions `pos`, `None` for padding) after the cached slots and returns the final
    /// hidden state `[rows, hidden]` of the token at `last[r]` of each row.
    fn advance(&mut self, len: usize, ids: &[u32], pos: &[Option<u32>], last: &[usize]) -> Result<Vec<f32>> {
        let rows = self.live.len();
        let past = self.slots.first().map_or(0, Vec::len);
        for (r, row) in self.slots.iter_mut().enumerate() {
            row.extend_from_slice(&pos[r * len..(r + 1) * len]);
        }
        let total = past + len;
        let positions: Vec<StepPositions> = self
            .kinds
            .0
            .iter()
            .map(|(kind, inv, window)| {
                // Padding slots are seen by nobody: any angle will do for them.
                let (cos, sin) = crate::positions::rope_at(inv, pos.iter().map(|p| p.unwrap_or(0)));
                let mut mask = vec![f32::NEG_INFINITY; rows * len * total];
                for (r, row) in self.slots.iter().enumerate() {
                    for i in 0..len {
                        let m = &mut mask[(r * len + i) * total..][..total];
                        m[past + i] = 0.0;
                        let Some(q) = row[past + i] else { continue };
                        for (j, slot) in row.iter().enumerate() {
                            if let Some(p) = *slot
                                && p <= q
                                && window.is_none_or(|w| p as usize + w > q as usize)
                            {
                                m[j] = 0.0;
                            }
                        }
                    }
                }
                StepPositions { kind: *kind, cos, sin, mask }
            })
            .collect();
        let out: Vec<u32> = last.iter().enumerate().map(|(r, &i)| (r * len + i) as u32).collect();
        let cache = match &mut self.cache {
            Some(c) => c,
            None => self.cache.insert(self.engine.new_cache()?),
        };
        let step = Step { rows, len, past, ids, positions: &positions, edits: self.edits.as_ref(), out: &out };
        self.engine.step(cache, &step)
    }

    fn logits(&mut self, hidden: &[f32]) -> Result<Dense> {
        let (d, vocab) = (self.engine.config().hidden_size, self.engine.config().vocab_size);
        let rows = hidden.len() / d.max(1);
        let mut data = Vec::with_capacity(rows * vocab);
        for part in hidden.chunks(crate::head::head_chunk(vocab) * d) {
            data.extend(self.engine.head_logits(part)?);
        }
        Dense::new(vec![rows, vocab], data)
    }

    /// A failed step leaves the cache in an unknown state: forget it.
    fn guard<T>(&mut self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            self.reset();
        }
        r
    }
}

impl<E: Engine + ?Sized> Decoder for CachedDecoder<'_, E> {
    fn prefill(&mut self, batch: &TokenBatch) -> Result<Dense> {
        batch.validate()?;
        batch.check_vocab(self.engine.config().vocab_size)?;
        self.reset();
        self.live = (0..batch.rows).collect();
        self.slots = vec![Vec::new(); batch.rows];
        let len = batch.seq_len;
        let pos: Vec<Option<u32>> =
            (0..batch.rows).flat_map(|r| (0..len).map(move |t| (t < batch.lengths[r]).then_some(t as u32))).collect();
        let last: Vec<usize> = batch.lengths.iter().map(|&l| l - 1).collect();
        let r = self.advance(len, &batch.ids, &pos, &last);
        let hidden = self.guard(r)?;
        let r = self.logits(&hidden);
        self.guard(r)
    }

    fn step(&mut self, next: &[u32]) -> Result<Dense> {
        if self.cache.is_none() || self.live.is_empty() {
            return Err(Error::InvalidBatch("no live sequence to extend: call prefill first".into()));
        }
        if next.len() != self.live.len() {
            return Err(Error::InvalidBatch(format!(
                "{} tokens for {} live rows: give one token per live row",
                next.len(),
                self.live.len()
            )));
        }
        let vocab = self.engine.config().vocab_size;
        if let Some(id) = next.iter().find(|&&i| i as usize >= vocab) {
            return Err(Error::InvalidBatch(format!("token id {id} is outside the model's vocabulary of {vocab}")));
        }
        let pos: Vec<Option<u32>> =
            self.slots.iter().map(|row| Some(row.iter().flatten().max().map_or(0, |&p| p + 1))).collect();
        let last = vec![0; self.live.len()];
        let r = self.advance(1, next, &pos, &last);
        let hidden = self.guard(r)?;
        let r = self.logits(&hidden);
        self.guard(r)
    }

    fn live(&self) -> &[usize] {
        &self.live
    }

    fn retire(&mut self, rows: &[usize]) -> Result<()> {
        let keep: Vec<usize> = (0..self.live.len()).filter(|&i| !rows.contains(&self.live[i])).collect();
        if keep.len() == self.live.len() {
            return Ok(());
        }
        if let Some(cache) = &mut self.cache
            && !keep.is_empty()
        {
            let r = self.engine.keep_rows(cache, &keep);
            self.guard(r)?;
        }
        self.live = keep.iter().map(|&i| self.live[i]).collect();
        self.slots = keep.iter().map(|&i| std::mem::take(&mut self.slots[i])).collect();
        if self.live.is_empty() {
            self.reset();
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.cache = None;
        self.live.clear();
        self.slots.clear();
    }
}

/// How to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greedy {
    /// At most this many new tokens per row (≥ 1).
    pub max_new_tokens: usize,
    /// A row stops after producing one of these (kept in its output).
    pub eos: Vec<u32>,
    /// Padding id of the prefill.
    pub pad: u32,
}

/// One row's continuation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The new token ids, the stopping EOS included.
    pub ids: Vec<u32>,
    /// Whether the row stopped at an EOS (else at `max_new_tokens`).
    pub eos: bool,
}

/// The index of the largest value (the first of ties, as torch's argmax); NaN never wins.
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] || v[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

/// Greedy decoding of `prompts` (one batch, ragged) with `decoder`: each step feeds every live row its argmax token;
/// a row stops at an EOS or after `max_new_tokens`.
pub fn greedy(decoder: &mut dyn Decoder, prompts: &[Vec<u32>], opts: &Greedy) -> Result<Vec<Generated>> {
    if opts.max_new_tokens == 0 {
        return Err(Error::InvalidBatch("max_new_tokens is 0: ask for at least one new token".into()));
    }
    if let Some(i) = prompts.iter().position(Vec::is_empty) {
        return Err(Error::InvalidBatch(format!("prompt {i} is empty: a prompt needs at least one token")));
    }
    let batch = TokenBatch::padded(prompts, opts.pad)?;
    let mut out: Vec<Generated> = vec![Generated { ids: Vec::new(), eos: false }; prompts.len()];
    let mut logits = decoder.prefill(&batch)?;
    loop {
        let vocab = *logits.shape.last().unwrap_or(&1);
        let live = decoder.live().to_vec();
        let mut next = Vec::with_capacity(live.len());
        let mut done = Vec::new();
        for (i, &row) in live.iter().enumerate() {
            let id = argmax(&logits.data[i * vocab..(i + 1) * vocab]);
            let g = &mut out[row];
            g.ids.push(id);
            g.eos = opts.eos.contains(&id);
            if g.eos || g.ids.len() >= opts.max_new_tokens {
                done.push(row);
            } else {
                next.push(id);
            }
        }
        decoder.retire(&done)?;
        if next.is_empty() {
            break;
        }
        logits = decoder.step(&next)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5]), 1);
    }
}
