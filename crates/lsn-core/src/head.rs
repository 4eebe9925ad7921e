//! The LM head's outputs assembled chunk by chunk, the same way on every backend, so memory stays bounded whatever
//! the vocabulary: logits `[rows, seq, vocab]`, and the next-token NLL `[rows, seq − 1]` (0 where the next token is
//! padding). A backend supplies only the computation of one chunk.

use rayon::prelude::*;

use crate::simd::{exp_parts, multiversion};
use crate::{Dense, Error, Result, TokenBatch};

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

/// `−log softmax(row)[target]` of each row of `logits [targets.len(), vocab]`, as a host backend computes a chunk's
/// NLL: the row's max `m` (f32), `Σ exp(x − m)` with `x − m` rounded to f32 and widened, summed in f64 (eight
/// partial sums, then pairwise), and `ln Σ − (x_target − m)` rounded to f32. One pass over the logits and no
/// temporaries. `exp` is lsn-core's f64 one (within ~2 ulp of f64, arguments below −708 taken as −708: their terms
/// are below 2⁻¹⁰²¹ of the sum, which is ≥ 1). A NaN logit gives NaN. Rows in parallel.
pub fn nll_of_logits(logits: &[f32], vocab: usize, targets: &[u32]) -> Result<Vec<f32>> {
    if vocab == 0 || logits.len() != targets.len() * vocab {
        return Err(Error::InvalidBatch(format!(
            "{} logits are not [{} targets, vocab {vocab}]",
            logits.len(),
            targets.len()
        )));
    }
    if let Some(&t) = targets.iter().find(|&&t| t as usize >= vocab) {
        return Err(Error::InvalidBatch(format!("target token {t} is outside the vocabulary of {vocab}")));
    }
    let mut out = vec![0f32; targets.len()];
    const ROWS: usize = 4;
    out.par_chunks_mut(ROWS)
        .zip(logits.par_chunks(ROWS * vocab).zip(targets.par_chunks(ROWS)))
        .for_each(|(o, (l, t))| nll_rows(l, vocab, t, o));
    Ok(out)
}

multiversion! {
    /// [`nll_of_logits`] of a few rows, no checks.
    fn nll_rows(logits: &[f32], vocab: usize, targets: &[u32], out: &mut [f32]) {
        for ((row, &t), o) in logits.chunks_exact(vocab).zip(targets).zip(out) {
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x));
            let term = |x: f32| {
                let d = f64::from(x - m);
                let (scale, em) = exp_parts(d.max(-708.0));
                if d.is_nan() { d } else { scale + scale * em }
            };
            let mut acc = [0f64; 8];
            let mut lanes = row.chunks_exact(8);
            for c in lanes.by_ref() {
                for (a, &x) in acc.iter_mut().zip(c) {
                    *a += term(x);
                }
            }
            for (a, &x) in acc.iter_mut().zip(lanes.remainder()) {
                *a += term(x);
            }
            let sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
            *o = (sum.ln() - f64::from(row[t as usize] - m)) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The NLL in plain f64 with libm's exp, for comparison.
    fn nll_f64(row: &[f32], t: usize) -> f64 {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let s: f64 = row.iter().map(|&x| f64::from(x - m).exp()).sum();
        s.ln() - f64::from(row[t] - m)
    }

    #[test]
    fn nll_of_logits_is_the_log_softmax() {
        let vocab = 1003; // not a multiple of the eight partial sums
        let rows = 9; // not a multiple of the four rows per work item
        let logits: Vec<f32> = (0..rows * vocab).map(|i| ((i * 7919 % 1009) as f32 - 504.0) / 17.0).collect();
        let targets: Vec<u32> = (0..rows as u32).map(|r| (r * 331) % vocab as u32).collect();
        let got = nll_of_logits(&logits, vocab, &targets).unwrap();
        for (r, (&g, &t)) in got.iter().zip(&targets).enumerate() {
            let want = nll_f64(&logits[r * vocab..(r + 1) * vocab], t as usize);
            assert!((f64::from(g) - want).abs() <= 1e-6 * want.abs().max(1.0), "row {r}: {g} vs {want}");
        }
        // Extreme rows: one dominant logit (NLL ≈ 0 for it, ≈ 1e4 for another), logits far below the max, NaN.
        let mut row = vec![-1e4f32; 16];
        row[3] = 1e4;
        let got = nll_of_logits(&[row.clone(), row.clone()].concat(), 16, &[3, 0]).unwrap();
        assert_eq!(got[0], 0.0);
        assert_eq!(got[1], 2e4);
        row[5] = f32::NAN;
        assert!(nll_of_logits(&row, 16, &[3]).unwrap()[0].is_nan());
    }

    #[test]
    fn nll_of_logits_refuses_bad_shapes_and_targets() {
        assert!(nll_of_logits(&[0.0; 10], 4, &[0, 1]).is_err());
        let e = nll_of_logits(&[0.0; 8], 4, &[0, 4]).unwrap_err().to_string();
        assert!(e.contains("target token 4") && e.contains("vocabulary of 4"), "{e}");
        assert!(nll_of_logits(&[], 0, &[]).is_err());
    }

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
