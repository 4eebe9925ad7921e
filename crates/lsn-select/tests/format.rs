//! The `neurons/<method>.json` format on a tiny LAPE case (snapshot), and that it reads back to the same value.

use lsn_select::{CountTable, LangCounts, LapeParams, LapePreset, Selection, act_prob, lape, random};

/// Two layers × 3 neurons, languages `en` and `hi`. Probabilities (en, hi): (0,0) (.9, .1), (0,1) (0, 0),
/// (0,2) (.5, .5), (1,0) (.1, .8), (1,1) (.3, .3), (1,2) (.6, 0).
fn tiny() -> CountTable {
    CountTable {
        layers: 2,
        intermediate: 3,
        langs: vec![
            LangCounts { lang: "en".into(), n_tokens: 10, counts: vec![9, 0, 5, 1, 3, 6] },
            LangCounts { lang: "hi".into(), n_tokens: 10, counts: vec![1, 0, 5, 8, 3, 0] },
        ],
    }
}

#[test]
fn lape_file_format() {
    // Sorted p: 0 0 0 .1 .1 .3 .3 .5 .5 .6 .8 .9; filter = bar = quantile 0.5 (rank 5.5, between .3 and .3) = .3.
    // (0,1) and (1,1) have no p > .3: entropy ∞. H: (1,2) 0, (0,0) 0.325, (1,0) 0.349, (0,2) ln 2.
    // m = round(0.5·2·3) = 3 → (1,2) → en, (0,0) → en, (1,0) → hi.
    let p = LapeParams { top_rate: 0.5, filter_rate: 0.5, bar_rate: 0.5, ..LapePreset::Mondal.params() };
    let sel = lape(&tiny(), &p).unwrap();
    insta::assert_json_snapshot!("lape_mondal_tiny", sel);
    let back: Selection = serde_json::from_str(&serde_json::to_string(&sel).unwrap()).unwrap();
    assert_eq!(back, sel);
}

#[test]
fn infinite_entropy_is_written_as_inf() {
    // Every neuron is a candidate (top_rate 1), two of them with infinite entropy.
    let p = LapeParams { top_rate: 1.0, filter_rate: 0.5, bar_rate: 0.5, ..LapePreset::Tang.params() };
    let sel = lape(&tiny(), &p).unwrap();
    let json = serde_json::to_value(&sel).unwrap();
    assert_eq!(json["thresholds"]["entropy_cutoff"], "inf");
    let scores = json["lape_scores"].as_array().unwrap();
    assert_eq!(scores.len(), 6);
    assert_eq!(scores[1]["neuron"], serde_json::json!([0, 1]));
    assert_eq!(scores[1]["entropy"], "inf");
    let back: Selection = serde_json::from_value(json).unwrap();
    assert_eq!(back, sel);
    assert!(back.lape_scores.unwrap()[1].entropy.is_infinite());
}

#[test]
fn act_prob_and_random_round_trip() {
    for sel in [act_prob(&tiny(), 0.5).unwrap(), random(2, 3, 2, 7).unwrap()] {
        let text = serde_json::to_string_pretty(&sel).unwrap();
        assert_eq!(serde_json::from_str::<Selection>(&text).unwrap(), sel, "{text}");
    }
    let bad = r#"{"neuron": [0, 1], "entropy": "infinity", "probs": [], "langs": []}"#;
    let e = serde_json::from_str::<lsn_select::LapeScore>(bad).unwrap_err().to_string();
    assert!(e.contains("\"inf\""), "{e}");
}
