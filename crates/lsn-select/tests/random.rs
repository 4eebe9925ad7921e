//! The random control is a fixed function of its seed: a snapshot of the whole `neurons/random.json` content for
//! one seed (any change in the RNG, the sampling or the format shows here), and different seeds differ.

use lsn_select::random;

#[test]
fn seed_42_snapshot() {
    let sel = random(2, 64, 10, 42).unwrap();
    insta::assert_json_snapshot!("random_2x64_seed42", sel);
}

#[test]
fn seeds_differ_and_sets_are_sorted_distinct_per_layer() {
    let sets: Vec<_> = (0..8u64).map(|s| random(4, 100, 10, s).unwrap().neurons["random"].clone()).collect();
    for (i, a) in sets.iter().enumerate() {
        assert_eq!(a.len(), 40);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "seed {i}: sorted and distinct");
        assert!((0..4).all(|l| a.iter().filter(|n| n.layer == l).count() == 10), "seed {i}: 10 per layer");
        for b in &sets[i + 1..] {
            assert_ne!(a, b, "two seeds gave the same set");
        }
    }
    // Every neuron of a layer can be drawn: all 3 of 3.
    assert_eq!(random(1, 3, 3, 9).unwrap().neurons["random"].len(), 3);
}
