//! The `config.json` text lsn writes for a `ModelConfig`.

use lsn_core::ModelConfig;

/// `cfg.to_hf()` as pretty JSON (integral fields that transformers types as integers are written as integers).
pub fn config_json(cfg: &ModelConfig) -> String {
    serde_json::to_string_pretty(&cfg.to_hf()).expect("plain data serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma_query_pre_attn_scalar_is_an_integer_and_resolves_back() {
        let (_, cfg) = crate::tiny_configs().into_iter().find(|(n, _)| *n == "tiny-gemma3").unwrap();
        let text = config_json(&cfg);
        assert!(
            text.contains("\"query_pre_attn_scalar\": 32\n") || text.contains("\"query_pre_attn_scalar\": 32,"),
            "{text}"
        );
        let back: lsn_core::HfConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back.resolve().unwrap(), cfg);
    }
}
