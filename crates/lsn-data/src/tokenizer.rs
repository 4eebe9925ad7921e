//! Tokenization with a HF `tokenizer.json`, checked against the model it is used with.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// A HF fast tokenizer.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    digest: String,
    /// Cached: `tokenizers` recounts the added tokens on every call (thousands for Gemma 3).
    vocab_size: usize,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("vocab_size", &self.vocab_size()).finish()
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::Tokenizer {
                path: path.to_owned(),
                reason: "file not found (a HF checkpoint dir needs tokenizer.json)".into(),
            });
        }
        let bytes =
            std::fs::read(path).map_err(|e| Error::Tokenizer { path: path.to_owned(), reason: e.to_string() })?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| Error::Tokenizer {
            path: path.to_owned(),
            reason: format!("{e} (corrupt tokenizer.json?)"),
        })?;
        let digest = hex::encode(Sha256::digest(&bytes));
        let vocab_size = inner.get_vocab_size(true);
        Ok(Self { inner, digest, vocab_size })
    }

    /// sha256 (lowercase hex) of the `tokenizer.json` bytes: records which tokenizer made a set of ids.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Number of ids the tokenizer can produce (including added tokens).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Fails when the tokenizer cannot belong to a model with `model_vocab` embeddings: its base vocabulary is
    /// larger than the model's, or less than half of it (a tokenizer of another model family). Added special tokens
    /// beyond the model's vocabulary (Gemma 3's image token) are allowed; ids actually produced are checked per batch.
    pub fn check_model_vocab(&self, model_vocab: usize) -> Result<()> {
        let base = self.inner.get_vocab_size(false);
        if base > model_vocab || base * 2 < model_vocab {
            return Err(Error::TokenizerMismatch(format!(
                "the tokenizer has {base} tokens but the model's vocabulary has {model_vocab} entries: \
                 use the tokenizer.json that belongs to the model"
            )));
        }
        Ok(())
    }

    /// Token ids of `text`, with the special tokens the tokenizer's post-processor adds (e.g. BOS).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::Tokenizer { path: Default::default(), reason: e.to_string() })?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of `text` alone, without special tokens (for pieces that are joined later, as lm-eval encodes a
    /// context and a continuation).
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer { path: Default::default(), reason: e.to_string() })?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of a token id as the vocabulary holds it (special tokens included), e.g. `<eos>`.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Token ids of each text (as [`Tokenizer::encode`]), in input order. Texts are encoded in parallel; the result
    /// does not depend on the number of threads.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encs = self
            .inner
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Tokenizer { path: Default::default(), reason: e.to_string() })?;
        Ok(encs.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// The text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| Error::Tokenizer { path: Default::default(), reason: e.to_string() })
    }

    /// The id of a token string, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORDLEVEL: &str = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
        "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
        "model":{"type":"WordLevel","vocab":{"<unk>":0,"hello":1,"world":2},"unk_token":"<unk>"}}"#;

    #[test]
    fn encodes_and_checks_model_vocab() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("tokenizer.json");
        std::fs::write(&p, WORDLEVEL).unwrap();
        let tok = Tokenizer::from_file(&p).unwrap();
        assert_eq!(tok.encode("hello world again").unwrap(), vec![1, 2, 0]);
        assert_eq!(tok.encode_batch(&["world", "hello hello"]).unwrap(), vec![vec![2], vec![1, 1]]);
        // sha256 of the file bytes, as `sha256sum tokenizer.json` prints it.
        assert_eq!(tok.digest(), hex::encode(Sha256::digest(WORDLEVEL.as_bytes())));
        assert_eq!(tok.digest().len(), 64);
        assert_eq!(tok.token_id("world"), Some(2));
        tok.check_model_vocab(3).unwrap();
        tok.check_model_vocab(6).unwrap();
        for wrong in [2, 7] {
            let e = tok.check_model_vocab(wrong).unwrap_err().to_string();
            assert!(e.contains("tokenizer/model mismatch") && e.contains("has 3 tokens"), "{e}");
        }
    }

    #[test]
    fn missing_or_corrupt_file_is_a_clear_error() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("tokenizer.json");
        assert!(Tokenizer::from_file(&p).unwrap_err().to_string().contains("file not found"));
        std::fs::write(&p, &WORDLEVEL[..40]).unwrap();
        assert!(Tokenizer::from_file(&p).unwrap_err().to_string().contains("corrupt tokenizer.json"));
    }
}
