//! Property: splitting a language's batches into shards in any way and merging the shards in any order gives
//! exactly the one-pass statistics (merging is associative and commutative).

use lsn_core::{ActivationStats, QUANTILES, TapStats};
use proptest::prelude::*;

const L: usize = 2;
const I: usize = 3;

fn batch() -> impl Strategy<Value = TapStats> {
    let plane = L * I;
    (1u64..600, proptest::collection::vec(-1e4f64..1e4, plane * 2), proptest::collection::vec(-50f32..50.0, plane * 7))
        .prop_flat_map(move |(n, sums, q)| {
            (
                Just(n),
                Just(sums),
                Just(q),
                proptest::collection::vec(0..=n, plane),
                proptest::collection::vec(0..=n, plane * 7),
            )
        })
        .prop_map(move |(n, sums, q, cp, ca)| TapStats {
            layers: L,
            intermediate: I,
            n_tokens: n,
            count_pos: Some(cp),
            sum: Some(sums[..plane].to_vec()),
            sum_sq: Some(sums[plane..].iter().map(|x| x.abs() * 10.0).collect()),
            quantiles: Some(q),
            count_above: Some(ca),
        })
}

proptest! {
    #[test]
    fn any_sharding_merges_to_the_one_pass_result(
        batches in proptest::collection::vec(batch(), 1..12),
        assign in proptest::collection::vec(0usize..4, 12),
        order in Just(()).prop_perturb(|_, mut rng| { let mut o: Vec<usize> = (0..4).collect(); for i in (1..4).rev() { o.swap(i, rng.random_range(0..=i)); } o }),
    ) {
        assert_eq!(QUANTILES.len(), 7);
        let mut whole = ActivationStats::new(L, I);
        batches.iter().for_each(|b| whole.add_pass1(b).unwrap());
        let mut shards = vec![ActivationStats::new(L, I); 4];
        for (b, s) in batches.iter().zip(&assign) {
            shards[*s].add_pass1(b).unwrap();
        }
        // Merge in a random order, as a left fold ((a+b)+c)+d …
        let mut left = shards[order[0]].clone();
        for &i in &order[1..] { left.merge(&shards[i]).unwrap(); }
        prop_assert_eq!(&left, &whole);
        // … and as a right fold a+(b+(c+d)).
        let mut right = shards[order[3]].clone();
        for &i in order[..3].iter().rev() { let mut s = shards[i].clone(); s.merge(&right).unwrap(); right = s; }
        prop_assert_eq!(&right, &whole);

        // Pass 2 against the whole pass 1: shards of pass 2 merge to the one-pass pass 2.
        let mut p2 = whole.clone();
        batches.iter().for_each(|b| p2.add_pass2(b).unwrap());
        let mut parts = vec![whole.clone(); 4];
        for (b, s) in batches.iter().zip(&assign) { parts[*s].add_pass2(b).unwrap(); }
        let with: Vec<ActivationStats> = parts.into_iter().filter(|p| p.pass2.is_some()).collect();
        let mut acc = with[0].clone();
        for p in &with[1..] { acc.merge(p).unwrap(); }
        prop_assert_eq!(acc, p2);
    }
}
