//! The `ModelConfig` a GGUF file describes, read from its `{arch}.*` and `tokenizer.ggml.*` metadata.

use lsn_core::{AttentionKind, Family, ModelConfig, RopeScaling};

use crate::{Error, Gguf, Result};

fn unconvertible(g: &Gguf, reason: String) -> Error {
    Error::Unconvertible { path: g.path().to_owned(), reason }
}

fn rope_scaling(g: &Gguf, arch: &str) -> Result<Option<RopeScaling>> {
    let key = format!("{arch}.rope.scaling.type");
    match g.opt_str(&key)? {
        None | Some("none") => Ok(None),
        Some("linear") => {
            let factor = g.opt_f64(&format!("{arch}.rope.scaling.factor"))?.unwrap_or(1.0);
            Ok((factor != 1.0).then_some(RopeScaling::Linear { factor }))
        }
        Some(other) => Err(unconvertible(g, format!("RoPE scaling {other:?} is not supported (none, linear)"))),
    }
}

/// Builds the model configuration from GGUF metadata (the architectures of `FamilySpec::gguf_arch`).
pub fn config_from_gguf(g: &Gguf) -> Result<ModelConfig> {
    let arch = g.architecture()?.to_owned();
    let Some(family) = Family::from_gguf_arch(&arch) else {
        let mut known: Vec<&str> = lsn_core::family::FAMILIES.iter().filter_map(|s| s.gguf_arch).collect();
        known.sort_unstable();
        return Err(unconvertible(
            g,
            format!("architecture {arch:?} is not supported ({}); use a HF checkpoint instead", known.join(", ")),
        ));
    };
    let spec = family.spec();
    if g.tensor("rope_freqs.weight").is_some() {
        return Err(unconvertible(
            g,
            "it stores Llama 3.1-style RoPE frequency factors (rope_freqs.weight), whose rope_scaling parameters \
             GGUF does not record; use the model's HF checkpoint instead"
                .into(),
        ));
    }
    let k = |s: &str| format!("{arch}.{s}");
    let embd = g.tensor("token_embd.weight").ok_or_else(|| unconvertible(g, "it has no token_embd.weight".into()))?;
    let vocab_size = embd.shape[0];
    if let Some(v) = g.opt_usize(&k("vocab_size"))?.filter(|v| *v != vocab_size) {
        return Err(unconvertible(g, format!("{arch}.vocab_size is {v} but token_embd.weight has {vocab_size} rows")));
    }
    let hidden_size = g.usize(&k("embedding_length"))?;
    let num_layers = g.usize(&k("block_count"))?;
    let num_heads = g.usize(&k("attention.head_count"))?;
    let num_kv_heads = g.opt_usize(&k("attention.head_count_kv"))?.unwrap_or(num_heads);
    let head_dim = match g.opt_usize(&k("attention.key_length"))? {
        Some(d) => d,
        None if num_heads > 0 => hidden_size / num_heads,
        None => {
            return Err(unconvertible(g, format!("{arch}.attention.head_count is 0")));
        }
    };
    if let Some(v) = g.opt_usize(&k("attention.value_length"))?.filter(|v| *v != head_dim) {
        return Err(unconvertible(g, format!("value_length {v} differs from key_length {head_dim}")));
    }
    let rope_theta = g.opt_f64(&k("rope.freq_base"))?.unwrap_or(spec.default_rope_theta);
    let sliding_window = g.opt_usize(&k("attention.sliding_window"))?;
    let layer_kinds = match spec.global_every {
        // llama.cpp's pattern key, else the family's (Gemma 3: every sixth layer global).
        Some(every) => {
            let pattern = g.opt_usize(&k("attention.sliding_window_pattern"))?.unwrap_or(every).max(1);
            (0..num_layers)
                .map(|i| if (i + 1) % pattern == 0 { AttentionKind::Global } else { AttentionKind::Sliding })
                .collect()
        }
        None => {
            let kind = if sliding_window.is_some() { AttentionKind::Sliding } else { AttentionKind::Global };
            vec![kind; num_layers]
        }
    };
    let rope_local_theta = match spec.local_rope_theta {
        Some(default) => g.opt_f64(&k("rope.freq_base_swa"))?.unwrap_or(default),
        None => rope_theta,
    };
    let activation = spec.default_activation;
    // GGUF does not record query_pre_attn_scalar: llama.cpp takes head_dim, except for the family's 27B.
    let wide = spec.query_pre_attn_scalar && spec.gguf_wide_scalar_layers == Some(num_layers);
    let scalar = if wide { hidden_size / num_heads } else { head_dim };
    let attn_scale = 1.0 / (scalar as f64).sqrt();
    let id = |key: &str| -> Result<Option<u32>> {
        g.opt_u64(key)?
            .map(|v| u32::try_from(v).map_err(|_| unconvertible(g, format!("{key} = {v} is too large"))))
            .transpose()
    };
    let cfg = ModelConfig {
        family,
        vocab_size,
        hidden_size,
        intermediate_size: g.usize(&k("feed_forward_length"))?,
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        rms_norm_eps: g.opt_f64(&k("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-6),
        rope_theta,
        rope_local_theta,
        rope_scaling: rope_scaling(g, &arch)?,
        sliding_window,
        layer_kinds,
        activation,
        tie_word_embeddings: g.tensor("output.weight").is_none(),
        attn_scale,
        attn_logit_softcap: g.opt_f64(&k("attn_logit_softcapping"))?,
        final_logit_softcap: g.opt_f64(&k("final_logit_softcapping"))?,
        bos_token_id: id("tokenizer.ggml.bos_token_id")?,
        eos_token_ids: id("tokenizer.ggml.eos_token_id")?.into_iter().collect(),
        pad_token_id: id("tokenizer.ggml.padding_token_id")?,
        max_position_embeddings: g.opt_usize(&k("context_length"))?.unwrap_or(8192),
    };
    // The HF round trip validates the values (heads divide, head_dim even, …) with lsn-core's own checks.
    let again = cfg.to_hf().resolve()?;
    if again != cfg {
        return Err(unconvertible(
            g,
            format!("its configuration does not survive the config.json round trip: {cfg:?}"),
        ));
    }
    Ok(cfg)
}
