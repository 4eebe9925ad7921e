//! The fetched models' `tokenizer.json` against HF transformers: the golden texts (`fixtures/golden/<model>.json`)
//! must encode to the ids transformers produced. Models come from the cache `cargo xtask test` fills.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    tokenizer_sha256: Option<String>,
    sequences: Vec<Sequence>,
}

#[derive(Deserialize)]
struct Sequence {
    lang: Option<String>,
    text: Option<String>,
    ids: Vec<u32>,
}

fn golden(name: &str) -> Golden {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/golden").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn model_dir(name: &str) -> PathBuf {
    let dir = lsn_data::model_dir(&lsn_data::cache_home(), name);
    assert!(
        dir.join(lsn_data::FETCH_MARKER).is_file(),
        "{name} is not in the model cache: run `cargo xtask test` (it fetches the models) or `lsn fetch-model {name}`"
    );
    dir
}

fn check(name: &str) {
    let g = golden(name);
    let path = model_dir(name).join("tokenizer.json");
    let digest = lsn_data::sha256_file(&path).unwrap();
    assert_eq!(Some(digest), g.tokenizer_sha256, "{name}: tokenizer.json differs from the goldens'");
    let tok = lsn_data::Tokenizer::from_file(&path).unwrap();
    let mut checked = 0;
    for seq in g.sequences.iter().filter(|s| s.text.is_some()) {
        let ids = tok.encode(seq.text.as_deref().unwrap()).unwrap();
        assert_eq!(
            ids,
            seq.ids,
            "{name} [{}]: token ids differ from transformers'",
            seq.lang.as_deref().unwrap_or("?")
        );
        checked += 1;
    }
    assert!(checked >= 5, "{name}: goldens hold only {checked} texts");
}

#[test]
fn gemma_3_270m_tokenizes_like_transformers() {
    check("gemma-3-270m");
}

#[test]
fn smollm2_135m_tokenizes_like_transformers() {
    check("smollm2-135m");
}
