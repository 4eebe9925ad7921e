//! `TokenBatch`: token ids for one forward pass, right-padded rows with their valid lengths.

use crate::{Error, Result};

/// `rows × seq_len` token ids, row-major. Row `r` holds `lengths[r]` real tokens followed by padding;
/// padded positions produce no tap statistics and their logits are meaningless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    pub rows: usize,
    pub seq_len: usize,
    pub ids: Vec<u32>,
    pub lengths: Vec<usize>,
}

impl TokenBatch {
    /// A batch of equal-length rows (no padding), as capture uses.
    pub fn full(rows: usize, seq_len: usize, ids: Vec<u32>) -> Result<Self> {
        Self::new(rows, seq_len, ids, vec![seq_len; rows])
    }

    /// A batch of one sequence.
    pub fn single(ids: &[u32]) -> Result<Self> {
        Self::full(1, ids.len(), ids.to_vec())
    }

    /// Right-pads `seqs` with `pad` to the longest one.
    pub fn padded(seqs: &[Vec<u32>], pad: u32) -> Result<Self> {
        let seq_len = seqs.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(seqs.len() * seq_len);
        for s in seqs {
            ids.extend_from_slice(s);
            ids.extend(std::iter::repeat_n(pad, seq_len - s.len()));
        }
        Self::new(seqs.len(), seq_len, ids, seqs.iter().map(Vec::len).collect())
    }

    pub fn new(rows: usize, seq_len: usize, ids: Vec<u32>, lengths: Vec<usize>) -> Result<Self> {
        let batch = Self { rows, seq_len, ids, lengths };
        batch.validate()?;
        Ok(batch)
    }

    /// Checks that the public fields describe a well-formed batch (backends call this, since fields are public).
    pub fn validate(&self) -> Result<()> {
        let Self { rows, seq_len, ids, lengths } = self;
        let (rows, seq_len) = (*rows, *seq_len);
        if rows == 0 || seq_len == 0 {
            return Err(Error::InvalidBatch(format!("empty batch ({rows} rows × {seq_len} tokens)")));
        }
        if ids.len() != rows * seq_len {
            return Err(Error::InvalidBatch(format!("{} ids do not fill {rows} rows × {seq_len} tokens", ids.len())));
        }
        if lengths.len() != rows || lengths.iter().any(|&l| l == 0 || l > seq_len) {
            return Err(Error::InvalidBatch(format!(
                "row lengths {lengths:?} must be one per row, each in 1..={seq_len}"
            )));
        }
        Ok(())
    }

    /// Number of real (non-padding) tokens.
    pub fn n_tokens(&self) -> usize {
        self.lengths.iter().sum()
    }

    /// Whether position `t` of row `r` is a real token.
    pub fn is_valid(&self, r: usize, t: usize) -> bool {
        t < self.lengths[r]
    }

    /// Flat indices `r·seq_len + t` of the real (non-padding) positions, in order; `None` when every position is real.
    /// Tap statistics are reduced over exactly these.
    pub fn real_positions(&self) -> Option<Vec<u32>> {
        (self.n_tokens() < self.rows * self.seq_len).then(|| {
            (0..self.rows).flat_map(|r| (0..self.lengths[r]).map(move |t| (r * self.seq_len + t) as u32)).collect()
        })
    }

    /// The positions whose next token is real, as `(flat position r·seq_len + t, next token id, output slot
    /// r·(seq_len − 1) + t)`: what a next-token NLL is computed over.
    pub fn next_token_targets(&self) -> Vec<(u32, u32, usize)> {
        let (seq, width) = (self.seq_len, self.seq_len.saturating_sub(1));
        (0..self.rows)
            .flat_map(|r| {
                (0..self.lengths[r].saturating_sub(1))
                    .map(move |t| ((r * seq + t) as u32, self.ids[r * seq + t + 1], r * width + t))
            })
            .collect()
    }

    /// Fails when an id is outside the vocabulary (e.g. a tokenizer that does not belong to the model).
    pub fn check_vocab(&self, vocab_size: usize) -> Result<()> {
        match self.ids.iter().find(|&&id| id as usize >= vocab_size) {
            Some(id) => Err(Error::InvalidBatch(format!(
                "token id {id} is outside the model's vocabulary of {vocab_size}: the tokenizer does not belong to this model"
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_positions_and_next_token_targets() {
        // Rows of 3: [5, 6, 7] full, [8, 0, 0] with one real token.
        let b = TokenBatch::padded(&[vec![5, 6, 7], vec![8]], 0).unwrap();
        assert_eq!(b.real_positions(), Some(vec![0, 1, 2, 3]));
        assert_eq!(b.next_token_targets(), vec![(0, 6, 0), (1, 7, 1)]);
        assert_eq!(TokenBatch::single(&[1, 2]).unwrap().real_positions(), None);
    }

    #[test]
    fn padded_right_pads_and_records_lengths() {
        let b = TokenBatch::padded(&[vec![1, 2, 3], vec![4]], 0).unwrap();
        assert_eq!(b.ids, vec![1, 2, 3, 4, 0, 0]);
        assert_eq!(b.lengths, vec![3, 1]);
        assert_eq!(b.n_tokens(), 4);
        assert!(b.is_valid(1, 0) && !b.is_valid(1, 1));
    }

    #[test]
    fn rejects_inconsistent_shapes_and_vocab() {
        assert!(TokenBatch::full(2, 3, vec![0; 5]).is_err());
        assert!(TokenBatch::new(1, 3, vec![0; 3], vec![4]).is_err());
        assert!(TokenBatch::single(&[]).is_err());
        let b = TokenBatch::single(&[1, 9]).unwrap();
        assert!(b.check_vocab(10).is_ok());
        let e = b.check_vocab(9).unwrap_err().to_string();
        assert!(e.contains("token id 9"), "{e}");
    }
}
