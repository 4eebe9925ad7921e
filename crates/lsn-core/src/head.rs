//! The LM head's outputs assembled chunk by chunk, the same way on every backend, so memory stays bounded whatever
//! the vocabulary: logits `[rows, seq, vocab]`, and the next-token NLL `[rows, seq − 1]` (0 where the next token is
//! padding). A backend supplies only the computation of one chunk.

use crate::{Dense, Result, TokenBatch};

/// How many logits one head chunk may hold (f32 elements).
pub const HEAD_CHUNK_ELEMS: usize = 1 << 25;

/// Positions per LM-head chunk for a vocabulary of `vocab`.
pub fn head_chunk(vocab: usize) -> usize {
    (HEAD_CHUNK_ELEMS / vocab.max(1)).max(1)
}

/// Logits of every position: `chunk(start, len)` returns the `[len, vocab]` logits of flat positions
/// `start..start + len` (row-major over `rows × seq`).
pub fn chunked_logits(
    rows: usize,
    seq: usize,
    vocab: usize,
    mut chunk: impl FnMut(usize, usize) -> Result<Vec<f32>>,
) -> Result<Dense> {
    let n = rows * seq;
    let mut data = Vec::with_capacity(n * vocab);
    let step = head_chunk(vocab);
    let mut start = 0;
    while start < n {
        let len = step.min(n - start);
        data.extend_from_slice(&chunk(start, len)?);
        start += len;
    }
    Dense::new(vec![rows, seq, vocab], data)
}

/// The next-token NLL of `batch`: `chunk(positions, targets)` returns `−log p(target | position)` for each flat
/// position `r·seq + t` whose next token is real and, with `from`, `t ≥ from[r]` (others stay 0), in order.
pub fn chunked_nll(
    batch: &TokenBatch,
    vocab: usize,
    from: Option<&[usize]>,
    mut chunk: impl FnMut(&[u32], &[u32]) -> Result<Vec<f32>>,
) -> Result<Dense> {
    let width = batch.seq_len.saturating_sub(1);
    let mut targets = batch.next_token_targets();
    if let Some(from) = from {
        let seq = batch.seq_len;
        targets.retain(|t| (t.0 as usize % seq) >= from[t.0 as usize / seq]);
    }
    let mut nll = vec![0f32; batch.rows * width];
    for part in targets.chunks(head_chunk(vocab)) {
        let at: Vec<u32> = part.iter().map(|t| t.0).collect();
        let target: Vec<u32> = part.iter().map(|t| t.1).collect();
        let values = chunk(&at, &target)?;
        for (t, v) in part.iter().zip(values) {
            nll[t.2] = v;
        }
    }
    Dense::new(vec![batch.rows, width], nll)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_come_back_in_position_order_across_chunks() {
        let vocab = HEAD_CHUNK_ELEMS / 3; // 3 positions per chunk
        let d = chunked_logits(2, 4, vocab, |start, len| {
            Ok((start..start + len).flat_map(|p| vec![p as f32; vocab]).collect())
        })
        .unwrap();
        assert_eq!(d.shape, vec![2, 4, vocab]);
        assert!((0..8).all(|p| d.data[p * vocab] == p as f32 && d.data[(p + 1) * vocab - 1] == p as f32));
    }

    #[test]
    fn nll_fills_real_targets_and_leaves_padding_zero() {
        let b = TokenBatch::padded(&[vec![5, 6, 7], vec![8]], 0).unwrap();
        let f = |at: &[u32], target: &[u32]| Ok(at.iter().zip(target).map(|(&a, &t)| (a * 100 + t) as f32).collect());
        let d = chunked_nll(&b, 10, None, f).unwrap();
        assert_eq!(d.shape, vec![2, 2]);
        assert_eq!(d.data, vec![6.0, 107.0, 0.0, 0.0]);
        // From position 1 of row 0 on: position 0's NLL is not computed.
        let d = chunked_nll(&b, 10, Some(&[1, 0]), f).unwrap();
        assert_eq!(d.data, vec![0.0, 107.0, 0.0, 0.0]);
    }
}
