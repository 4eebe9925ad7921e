//! Perplexity: PPL = exp(mean next-token NLL) over all predicted tokens of a set of sequences.

use lsn_core::{Dense, Intervention, Model, Outputs, Request, Result, TokenBatch};
use serde::{Deserialize, Serialize};

/// Running sum of next-token NLL and the number of predicted tokens; mergeable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct NllSum {
    pub sum: f64,
    pub tokens: u64,
}

impl NllSum {
    /// Each row's sum of the per-token NLL `[rows, seq_len − 1]` over `batch`'s real targets.
    pub fn rows(nll: &Dense, batch: &TokenBatch) -> Vec<NllSum> {
        let width = batch.seq_len - 1;
        batch
            .lengths
            .iter()
            .enumerate()
            .map(|(r, &len)| NllSum {
                sum: nll.data[r * width..(r + 1) * width][..len - 1].iter().map(|&x| x as f64).sum::<f64>(),
                tokens: len as u64 - 1,
            })
            .collect()
    }

    pub fn merge(&mut self, other: NllSum) {
        self.sum += other.sum;
        self.tokens += other.tokens;
    }

    /// Mean NLL per predicted token (NaN when nothing was predicted).
    pub fn mean(&self) -> f64 {
        self.sum / self.tokens as f64
    }

    pub fn perplexity(&self) -> f64 {
        self.mean().exp()
    }
}

impl std::iter::Sum for NllSum {
    fn sum<I: Iterator<Item = NllSum>>(iter: I) -> NllSum {
        let mut total = NllSum::default();
        iter.for_each(|s| total.merge(s));
        total
    }
}

/// Next-token NLL summed over `seqs` (each needs ≥ 2 tokens), run `batch_size` sequences at a time, padded, with
/// `intervention` applied at every position. `progress` is called with the number of sequences done after each batch.
pub fn perplexity(
    model: &mut dyn Model,
    seqs: &[Vec<u32>],
    batch_size: usize,
    pad_id: u32,
    intervention: Option<&Intervention>,
    progress: impl FnMut(usize),
) -> Result<NllSum> {
    Ok(sequence_nll(model, seqs, batch_size, pad_id, intervention, progress)?.into_iter().sum())
}

/// [`perplexity`]'s sums, one per sequence of at least 2 tokens, in order: what an interval over sequences resamples.
pub fn sequence_nll(
    model: &mut dyn Model,
    seqs: &[Vec<u32>],
    batch_size: usize,
    pad_id: u32,
    intervention: Option<&Intervention>,
    mut progress: impl FnMut(usize),
) -> Result<Vec<NllSum>> {
    let mut total = Vec::with_capacity(seqs.len());
    let usable: Vec<&Vec<u32>> = seqs.iter().filter(|s| s.len() >= 2).collect();
    for chunk in usable.chunks(batch_size.max(1)) {
        let owned: Vec<Vec<u32>> = chunk.iter().map(|s| (*s).clone()).collect();
        let batch = TokenBatch::padded(&owned, pad_id)?;
        let out = model.run(&Request::new(&batch, Outputs::NLL).intervene(intervention))?;
        let nll = out.nll.ok_or_else(|| lsn_core::Error::Backend {
            backend: model.backend(),
            message: "a forward pass asked for the NLL returned none".into(),
        })?;
        total.extend(NllSum::rows(&nll, &batch));
        progress(chunk.len());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_only_real_targets() {
        let batch = TokenBatch::padded(&[vec![1, 2, 3], vec![4, 5]], 0).unwrap();
        // Row 0 predicts 2 targets, row 1 one; the padded target of row 1 holds garbage that must be ignored.
        let nll = Dense::new(vec![2, 2], vec![1.0, 2.0, 3.0, 100.0]).unwrap();
        let s: NllSum = NllSum::rows(&nll, &batch).into_iter().sum();
        assert_eq!(s, NllSum { sum: 6.0, tokens: 3 });
        assert!((s.perplexity() - 2f64.exp()).abs() < 1e-12);
        let mut m = NllSum::default();
        m.merge(s);
        m.merge(s);
        assert_eq!(m.mean(), 2.0);
    }
}
