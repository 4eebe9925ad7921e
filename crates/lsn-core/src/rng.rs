//! The one seeded random-number source of lsn: ChaCha8 from a u64 seed, with our own unbiased bounded draws and
//! Fisher–Yates shuffle (rand's samplers may change between versions; these must give the same result everywhere).

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// A deterministic random stream.
#[derive(Debug, Clone)]
pub struct SeededRng(ChaCha8Rng);

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Uniform in `0..bound` (`bound > 0`): draws below `2⁶⁴ mod bound` are rejected, so the accepted range holds a
    /// whole number of copies of `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        let reject_below = bound.wrapping_neg() % bound;
        loop {
            let r = self.0.next_u64();
            if r >= reject_below {
                return r % bound;
            }
        }
    }

    /// Uniform in `(0, 1)`: the top 53 bits of a draw, offset by half a step (never 0 or 1).
    pub fn open01(&mut self) -> f64 {
        ((self.0.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// A standard normal draw (Box–Muller's cosine branch over two [`SeededRng::open01`] draws).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.open01(), self.open01());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Fisher–Yates: for `i` from the last index down to 1, swap item `i` with item `below(i + 1)`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_is_uniform_and_seeded() {
        let mut rng = SeededRng::new(0);
        let mut hits = [0u32; 6];
        for _ in 0..60_000 {
            hits[rng.below(6) as usize] += 1;
        }
        assert!(hits.iter().all(|&h| (9_500..10_500).contains(&h)), "{hits:?}");
        let draw = |s| {
            let mut v: Vec<u32> = (0..10).collect();
            SeededRng::new(s).shuffle(&mut v);
            v
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }
}
