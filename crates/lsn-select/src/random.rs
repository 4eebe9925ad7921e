//! The random control: `per_layer` distinct neurons in every layer, from a seeded ChaCha8 stream with our own
//! sampling (rand's samplers may change between versions; this must not).

use lsn_core::SeededRng;
use serde_json::json;

use crate::selection::Selection;
use crate::{Error, Result};

/// Neurons per layer of the paper's random control.
pub const RANDOM_PER_LAYER: usize = 10;

/// `per_layer` distinct random neurons per layer (a partial Fisher–Yates shuffle of each layer's indices, layer
/// after layer from one stream), under the language key `random`.
pub fn random(layers: usize, intermediate: usize, per_layer: usize, seed: u64) -> Result<Selection> {
    if per_layer > intermediate {
        return Err(Error::Invalid(format!(
            "{per_layer} random neurons per layer asked for but a layer has only {intermediate}: ask for at most that many"
        )));
    }
    let set = random_per_layer(&vec![per_layer; layers], intermediate, seed)?;
    let n = set.len();
    Ok(Selection::build(
        "random",
        json!({"per_layer": per_layer, "seed": seed, "rng": "ChaCha8, partial Fisher-Yates per layer"}),
        (layers, intermediate),
        vec!["random".into()],
        n,
        n,
        vec![("random".into(), set)],
    ))
}

/// `counts[l]` distinct random neurons in each layer `l` (a partial Fisher–Yates shuffle of each layer's indices,
/// layer after layer from one ChaCha8 stream seeded with `seed`), in (layer, index) order: a random control with the
/// size and per-layer distribution of a given set (its `Selection::per_layer`).
pub fn random_per_layer(counts: &[usize], intermediate: usize, seed: u64) -> Result<Vec<lsn_core::NeuronId>> {
    if let Some(&c) = counts.iter().find(|&&c| c > intermediate) {
        return Err(Error::Invalid(format!(
            "{c} random neurons in one layer asked for but a layer has only {intermediate}: ask for at most that many"
        )));
    }
    let mut rng = SeededRng::new(seed);
    let mut set = Vec::with_capacity(counts.iter().sum());
    let mut idx: Vec<u32> = Vec::with_capacity(intermediate);
    for (l, &count) in counts.iter().enumerate() {
        idx.clear();
        idx.extend(0..intermediate as u32);
        for i in 0..count {
            let j = i + rng.below((intermediate - i) as u64) as usize;
            idx.swap(i, j);
        }
        let mut chosen = idx[..count].to_vec();
        chosen.sort_unstable();
        set.extend(chosen.into_iter().map(|j| lsn_core::NeuronId::new(l as u32, j)));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_per_layer_profile_is_matched_exactly() {
        let counts = [0, 3, 7, 1];
        let set = random_per_layer(&counts, 20, 5).unwrap();
        for (l, &c) in counts.iter().enumerate() {
            let mut idx: Vec<u32> = set.iter().filter(|n| n.layer as usize == l).map(|n| n.index).collect();
            assert_eq!(idx.len(), c);
            idx.dedup();
            assert_eq!(idx.len(), c, "distinct within a layer");
        }
        assert_eq!(set, random_per_layer(&counts, 20, 5).unwrap());
        assert_ne!(set, random_per_layer(&counts, 20, 6).unwrap());
        assert!(random_per_layer(&[21], 20, 0).is_err());
    }

    #[test]
    fn seeded_distinct_and_sorted() {
        let a = random(3, 50, 10, 42).unwrap();
        assert_eq!(a, random(3, 50, 10, 42).unwrap());
        assert_ne!(a.neurons, random(3, 50, 10, 43).unwrap().neurons);
        let set = &a.neurons["random"];
        assert_eq!(set.len(), 30);
        assert!(set.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
        assert_eq!(a.per_layer["random"], vec![10, 10, 10]);
        assert_eq!(random(2, 5, 5, 1).unwrap().counts["random"], 10);
        assert!(random(2, 5, 6, 1).unwrap_err().to_string().contains("only 5"));
    }
}
