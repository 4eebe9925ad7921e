//! A model's identity by content: `config.json`, `tokenizer.json` and every weight shard, each by sha256. Two
//! checkpoints with the same config and tokenizer but other weights (a base model and its fine-tune) differ here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a model is, by the bytes of its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// sha256 of `config.json`.
    pub config_sha256: String,
    /// sha256 of `tokenizer.json`.
    pub tokenizer_sha256: String,
    /// sha256 over the weight shards: `"lsn-weights v1\n"` then `"<file name> <sha256>\n"` per shard in name order.
    pub weights_sha256: String,
    /// Each shard's sha256 by file name (for people: `sha256sum model.safetensors` shows the same); absent from
    /// identities recorded without them.
    #[serde(default)]
    pub shards: BTreeMap<String, String>,
}

impl ModelIdentity {
    /// The identity of a checkpoint whose files have these hashes; `shards` maps file names to sha256s.
    pub fn new(config_sha256: String, tokenizer_sha256: String, shards: BTreeMap<String, String>) -> Self {
        let mut text = String::from("lsn-weights v1\n");
        for (name, sha) in &shards {
            text.push_str(&format!("{name} {sha}\n"));
        }
        let weights_sha256 = crate::digest::sha256_hex(text.as_bytes());
        ModelIdentity { config_sha256, tokenizer_sha256, weights_sha256, shards }
    }

    /// An identity as a file records it: the three digests, without the per-shard hashes.
    pub fn recorded(config_sha256: &str, tokenizer_sha256: &str, weights_sha256: &str) -> Self {
        ModelIdentity {
            config_sha256: config_sha256.to_owned(),
            tokenizer_sha256: tokenizer_sha256.to_owned(),
            weights_sha256: weights_sha256.to_owned(),
            shards: BTreeMap::new(),
        }
    }

    /// Whether both describe the same model (config, tokenizer and weights).
    pub fn same_model(&self, other: &ModelIdentity) -> bool {
        (&self.config_sha256, &self.tokenizer_sha256, &self.weights_sha256)
            == (&other.config_sha256, &other.tokenizer_sha256, &other.weights_sha256)
    }

    /// What differs from `other` ("weights", "config.json", "tokenizer.json"), for error messages.
    pub fn difference(&self, other: &ModelIdentity) -> String {
        let mut d = Vec::new();
        if self.weights_sha256 != other.weights_sha256 {
            d.push(format!("weights {} vs {}", short(&self.weights_sha256), short(&other.weights_sha256)));
        }
        if self.config_sha256 != other.config_sha256 {
            d.push(format!("config.json {} vs {}", short(&self.config_sha256), short(&other.config_sha256)));
        }
        if self.tokenizer_sha256 != other.tokenizer_sha256 {
            d.push(format!("tokenizer.json {} vs {}", short(&self.tokenizer_sha256), short(&other.tokenizer_sha256)));
        }
        if d.is_empty() { "nothing".into() } else { d.join(", ") }
    }
}

/// The first 12 hex digits of a sha256: enough to tell hashes apart in a message.
pub fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_decide_identity() {
        let shards = |s: &str| BTreeMap::from([("model.safetensors".to_owned(), s.to_owned())]);
        let a = ModelIdentity::new("c".into(), "t".into(), shards("aaaa"));
        let b = ModelIdentity::new("c".into(), "t".into(), shards("bbbb"));
        assert!(a.same_model(&a.clone()));
        assert!(!a.same_model(&b));
        assert!(a.difference(&b).starts_with("weights "), "{}", a.difference(&b));
        assert_eq!(a.weights_sha256.len(), 64);
    }
}
