//! `ActivationStats`: one language's FFN statistics accumulated over batches — exactly mergeable across shards.
//!
//! Counts are u64. Sums of floats are kept in fixed point (i128 with [`FIXED_FRAC_BITS`] fractional bits): each
//! batch's f64 sum is rounded once to that grid, after which addition is exact, so any split of the batches into
//! shards merged in any order gives bit-identical statistics (f64 addition would not be associative).

use serde::{Deserialize, Serialize};

use crate::taps::QUANTILES;
use crate::{Error, Result, TapStats};

/// Fractional bits of the fixed-point sums: a resolution of 2⁻³² ≈ 2.3e-10, a range of ±2⁹⁵ ≈ 4e28.
pub const FIXED_FRAC_BITS: i32 = 32;

fn to_fixed(x: f64, what: &str) -> Result<i128> {
    let v = x * 2f64.powi(FIXED_FRAC_BITS);
    if !v.is_finite() || v.abs() >= 2f64.powi(126) {
        return Err(Error::InvalidBatch(format!(
            "non-finite or overflowing FFN {what} ({x}): the model produced inf/NaN activations; check the weights"
        )));
    }
    Ok(v.round() as i128)
}

/// The f64 value of a fixed-point sum.
pub fn from_fixed(v: i128) -> f64 {
    v as f64 / 2f64.powi(FIXED_FRAC_BITS)
}

/// Pass 1 (DESIGN §4): positive counts, moments and batch quantiles summed over batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pass1 {
    pub n_tokens: u64,
    pub n_batches: u64,
    /// `[L·I]`
    pub count_pos: Vec<u64>,
    /// `[L·I]`, fixed point
    pub sum: Vec<i128>,
    /// `[L·I]`, fixed point
    pub sum_sq: Vec<i128>,
    /// `[QUANTILES, L·I]`, fixed point: Σ over batches of the batch's quantile.
    pub quantile_sum: Vec<i128>,
}

/// Pass 2: counts above the language's pass-1 mean quantiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pass2 {
    pub n_tokens: u64,
    pub n_batches: u64,
    /// `[QUANTILES, L·I]`: #tokens with `a > mean_q`.
    pub count_above: Vec<u64>,
}

/// One language's statistics (or one shard's share of them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationStats {
    pub layers: usize,
    pub intermediate: usize,
    pub pass1: Pass1,
    /// Present once pass 2 ran (against the thresholds of the complete pass 1).
    pub pass2: Option<Pass2>,
}

fn add_u64(acc: &mut [u64], x: &[u64]) {
    acc.iter_mut().zip(x).for_each(|(a, b)| *a += b);
}

fn add_i128(acc: &mut [i128], x: &[i128]) {
    acc.iter_mut().zip(x).for_each(|(a, b)| *a += b);
}

impl ActivationStats {
    /// Empty statistics for `layers × intermediate` neurons.
    pub fn new(layers: usize, intermediate: usize) -> Self {
        let plane = layers * intermediate;
        let nq = QUANTILES.len();
        Self {
            layers,
            intermediate,
            pass1: Pass1 {
                n_tokens: 0,
                n_batches: 0,
                count_pos: vec![0; plane],
                sum: vec![0; plane],
                sum_sq: vec![0; plane],
                quantile_sum: vec![0; plane * nq],
            },
            pass2: None,
        }
    }

    fn plane(&self) -> usize {
        self.layers * self.intermediate
    }

    fn check_shape(&self, t: &TapStats) -> Result<()> {
        if (t.layers, t.intermediate) != (self.layers, self.intermediate) {
            return Err(Error::InvalidBatch(format!(
                "tap statistics of a {}×{} model added to statistics of a {}×{} model",
                t.layers, t.intermediate, self.layers, self.intermediate
            )));
        }
        Ok(())
    }

    /// Adds one batch's pass-1 taps (`Taps::pass1()`).
    pub fn add_pass1(&mut self, t: &TapStats) -> Result<()> {
        self.check_shape(t)?;
        let plane = self.plane();
        let missing = || Error::InvalidBatch("pass-1 taps lack count_pos, moments or quantiles".into());
        let (Some(cp), Some(s), Some(s2), Some(q)) = (&t.count_pos, &t.sum, &t.sum_sq, &t.quantiles) else {
            return Err(missing());
        };
        if cp.len() != plane || s.len() != plane || s2.len() != plane || q.len() != plane * QUANTILES.len() {
            return Err(missing());
        }
        let fx = |v: &[f64], what| v.iter().map(|&x| to_fixed(x, what)).collect::<Result<Vec<_>>>();
        let (s, s2) = (fx(s, "sum")?, fx(s2, "sum of squares")?);
        let q = q.iter().map(|&x| to_fixed(f64::from(x), "quantile")).collect::<Result<Vec<_>>>()?;
        let p = &mut self.pass1;
        p.n_tokens += t.n_tokens;
        p.n_batches += 1;
        add_u64(&mut p.count_pos, cp);
        add_i128(&mut p.sum, &s);
        add_i128(&mut p.sum_sq, &s2);
        add_i128(&mut p.quantile_sum, &q);
        Ok(())
    }

    /// Adds one batch's pass-2 taps (`Taps::pass2(self.thresholds())`).
    pub fn add_pass2(&mut self, t: &TapStats) -> Result<()> {
        self.check_shape(t)?;
        let n = self.plane() * QUANTILES.len();
        let Some(c) = t.count_above.as_ref().filter(|c| c.len() == n) else {
            return Err(Error::InvalidBatch(format!("pass-2 taps lack count_above [{n}]")));
        };
        let p = self.pass2.get_or_insert_with(|| Pass2 { n_tokens: 0, n_batches: 0, count_above: vec![0; n] });
        p.n_tokens += t.n_tokens;
        p.n_batches += 1;
        add_u64(&mut p.count_above, c);
        Ok(())
    }

    /// Merges another shard of the same language into this one. Pass-1 shards add up. Pass-2 shards were all
    /// computed against one complete pass 1, which must then be identical in both; their pass-2 counts add up.
    pub fn merge(&mut self, other: &ActivationStats) -> Result<()> {
        if (other.layers, other.intermediate) != (self.layers, self.intermediate) {
            return Err(Error::InvalidBatch(format!(
                "cannot merge statistics of a {}×{} model into a {}×{} model",
                other.layers, other.intermediate, self.layers, self.intermediate
            )));
        }
        match (&mut self.pass2, &other.pass2) {
            (None, None) => {
                let (p, o) = (&mut self.pass1, &other.pass1);
                p.n_tokens += o.n_tokens;
                p.n_batches += o.n_batches;
                add_u64(&mut p.count_pos, &o.count_pos);
                add_i128(&mut p.sum, &o.sum);
                add_i128(&mut p.sum_sq, &o.sum_sq);
                add_i128(&mut p.quantile_sum, &o.quantile_sum);
                Ok(())
            }
            (Some(p), Some(o)) if self.pass1 == other.pass1 => {
                p.n_tokens += o.n_tokens;
                p.n_batches += o.n_batches;
                add_u64(&mut p.count_above, &o.count_above);
                Ok(())
            }
            (Some(_), Some(_)) => Err(Error::InvalidBatch(
                "pass-2 shards were computed against different pass-1 statistics: rerun them against one merged pass 1"
                    .into(),
            )),
            _ => Err(Error::InvalidBatch(
                "cannot merge a pass-1-only shard with a shard that has pass 2: merge all pass-1 shards first, then \
                 run pass 2 on each shard against the merged result"
                    .into(),
            )),
        }
    }

    /// Finds values no capture can produce (a count above its token count, a negative sum of squares, batch
    /// quantile sums that decrease with the level): a damaged or hand-edited file. The message names the first one.
    pub fn check_possible(&self) -> std::result::Result<(), String> {
        let plane = self.plane();
        let p = &self.pass1;
        let lens = [p.count_pos.len(), p.sum.len(), p.sum_sq.len(), p.quantile_sum.len() / QUANTILES.len().max(1)];
        if lens.iter().any(|&l| l != plane) {
            return Err(format!("pass-1 arrays have lengths {lens:?}, expected {plane}"));
        }
        let at = |k: usize| format!("layer {}, neuron {}", k / self.intermediate.max(1), k % self.intermediate.max(1));
        if let Some(k) = p.count_pos.iter().position(|&c| c > p.n_tokens) {
            return Err(format!("count_pos {} > its {} tokens at {}", p.count_pos[k], p.n_tokens, at(k)));
        }
        if let Some(k) = p.sum_sq.iter().position(|&s| s < 0) {
            return Err(format!("negative sum of squares {} at {}", from_fixed(p.sum_sq[k]), at(k)));
        }
        for q in 1..QUANTILES.len() {
            let (lo, hi) = (&p.quantile_sum[(q - 1) * plane..q * plane], &p.quantile_sum[q * plane..(q + 1) * plane]);
            if let Some(k) = lo.iter().zip(hi).position(|(a, b)| a > b) {
                return Err(format!(
                    "the p{} sum {} exceeds the p{} sum {} at {}",
                    (QUANTILES[q - 1] * 100.0).round(),
                    from_fixed(lo[k]),
                    (QUANTILES[q] * 100.0).round(),
                    from_fixed(hi[k]),
                    at(k)
                ));
            }
        }
        if let Some(p2) = &self.pass2 {
            if p2.count_above.len() != plane * QUANTILES.len() {
                return Err(format!(
                    "count_above has {} values, expected {}",
                    p2.count_above.len(),
                    plane * QUANTILES.len()
                ));
            }
            if let Some(k) = p2.count_above.iter().position(|&c| c > p2.n_tokens) {
                return Err(format!(
                    "count_above {} > its {} tokens at {}",
                    p2.count_above[k],
                    p2.n_tokens,
                    at(k % plane)
                ));
            }
        }
        Ok(())
    }

    /// Per-neuron mean `Σa / n`.
    pub fn mean(&self) -> Vec<f64> {
        let n = self.pass1.n_tokens.max(1) as f64;
        self.pass1.sum.iter().map(|&s| from_fixed(s) / n).collect()
    }

    /// Per-neuron sample standard deviation (n − 1 denominator, as torch.std).
    pub fn std(&self) -> Vec<f64> {
        let n = self.pass1.n_tokens as f64;
        if n < 2.0 {
            return vec![0.0; self.plane()];
        }
        self.pass1
            .sum
            .iter()
            .zip(&self.pass1.sum_sq)
            .map(|(&s, &s2)| {
                let (s, s2) = (from_fixed(s), from_fixed(s2));
                ((s2 - s * s / n) / (n - 1.0)).max(0.0).sqrt()
            })
            .collect()
    }

    /// The batch quantiles averaged over batches, `[QUANTILES, L·I]` in f32: pass 2's thresholds.
    pub fn quantile_means(&self) -> Vec<f32> {
        let b = self.pass1.n_batches.max(1) as f64;
        self.pass1.quantile_sum.iter().map(|&q| (from_fixed(q) / b) as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seed: u64, n_tokens: u64) -> TapStats {
        let plane = 2 * 3;
        let f = |k: u64| ((seed * 7 + k * 13) % 17) as f64 / 3.0 - 2.0;
        TapStats {
            layers: 2,
            intermediate: 3,
            n_tokens,
            count_pos: Some((0..plane as u64).map(|k| (seed + k) % (n_tokens + 1)).collect()),
            sum: Some((0..plane as u64).map(f).collect()),
            sum_sq: Some((0..plane as u64).map(|k| f(k) * f(k) + 0.1).collect()),
            quantiles: Some((0..(plane * QUANTILES.len()) as u64).map(|k| f(k) as f32).collect()),
            count_above: Some((0..(plane * QUANTILES.len()) as u64).map(|k| (k + seed) % 5).collect()),
        }
    }

    #[test]
    fn shards_merge_exactly_into_the_one_pass_result() {
        let batches: Vec<TapStats> = (1..=5).map(|s| batch(s, 10 + s)).collect();
        let mut whole = ActivationStats::new(2, 3);
        batches.iter().for_each(|b| whole.add_pass1(b).unwrap());
        let (mut a, mut b) = (ActivationStats::new(2, 3), ActivationStats::new(2, 3));
        [0, 3].iter().for_each(|&i| a.add_pass1(&batches[i]).unwrap());
        [1, 2, 4].iter().for_each(|&i| b.add_pass1(&batches[i]).unwrap());
        b.merge(&a).unwrap();
        assert_eq!(b, whole);

        let mut p2 = whole.clone();
        batches.iter().for_each(|t| p2.add_pass2(t).unwrap());
        let (mut x, mut y) = (whole.clone(), whole.clone());
        x.add_pass2(&batches[0]).unwrap();
        batches[1..].iter().for_each(|t| y.add_pass2(t).unwrap());
        x.merge(&y).unwrap();
        assert_eq!(x, p2);
        // A pass-2 shard cannot be merged with a pass-1-only shard.
        assert!(whole.clone().merge(&p2).unwrap_err().to_string().contains("merge all pass-1 shards first"));
    }

    #[test]
    fn derived_values() {
        let mut s = ActivationStats::new(1, 1);
        let t = |sum: f64, sum_sq: f64, q: f32| TapStats {
            layers: 1,
            intermediate: 1,
            n_tokens: 2,
            count_pos: Some(vec![1]),
            sum: Some(vec![sum]),
            sum_sq: Some(vec![sum_sq]),
            quantiles: Some(vec![q; QUANTILES.len()]),
            count_above: None,
        };
        // tokens 1, 3 and 5, 7: mean 4, sample variance 20/3.
        s.add_pass1(&t(4.0, 10.0, 1.0)).unwrap();
        s.add_pass1(&t(12.0, 74.0, 2.0)).unwrap();
        assert_eq!(s.mean(), vec![4.0]);
        assert!((s.std()[0] - (20.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(s.quantile_means(), vec![1.5; QUANTILES.len()]);
        assert!(s.add_pass1(&t(f64::NAN, 1.0, 1.0)).unwrap_err().to_string().contains("inf/NaN"));
    }

    #[test]
    fn impossible_values_are_found() {
        let mut s = ActivationStats::new(2, 3);
        s.add_pass1(&batch(1, 11)).unwrap_or_else(|_| unreachable!());
        // The synthetic batch's quantiles are not monotone; make them so.
        let plane = 6;
        for k in 0..plane {
            for q in 0..QUANTILES.len() {
                s.pass1.quantile_sum[q * plane + k] = q as i128;
            }
        }
        s.check_possible().unwrap();
        let mut bad = s.clone();
        bad.pass1.count_pos[4] = 12;
        assert!(bad.check_possible().unwrap_err().contains("count_pos 12 > its 11 tokens at layer 1, neuron 1"));
        let mut bad = s.clone();
        bad.pass1.sum_sq[0] = -1;
        assert!(bad.check_possible().unwrap_err().contains("negative sum of squares"));
        let mut bad = s.clone();
        bad.pass1.quantile_sum[plane] = 100;
        assert!(bad.check_possible().unwrap_err().contains("the p10 sum"));
    }
}
