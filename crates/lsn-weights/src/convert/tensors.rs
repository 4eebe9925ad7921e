//! GGUF tensor names → HF names, and the value transforms llama.cpp's converter applied that we undo.

use lsn_core::ModelConfig;

/// What to do to a GGUF tensor's values to get the HF tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fix {
    None,
    /// Gemma norm weights were stored as `1 + w`; HF stores `w`.
    SubtractOne,
    /// llama.cpp reordered each head's rows for interleaved RoPE; restore rotate-half order (`heads` heads).
    Unpermute {
        heads: usize,
    },
}

/// The HF name of a GGUF tensor and the fix it needs, or `None` for a name lsn does not know.
pub(crate) fn hf_name(cfg: &ModelConfig, gguf: &str) -> Option<(String, Fix)> {
    let spec = cfg.family.spec();
    let norm = if spec.norm_plus_one { Fix::SubtractOne } else { Fix::None };
    let qk = |heads| if spec.gguf_permuted_qk { Fix::Unpermute { heads } } else { Fix::None };
    match gguf {
        "token_embd.weight" => return Some(("model.embed_tokens.weight".into(), Fix::None)),
        "output_norm.weight" => return Some(("model.norm.weight".into(), norm)),
        "output.weight" => return Some(("lm_head.weight".into(), Fix::None)),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    if layer >= cfg.num_layers {
        return None;
    }
    let (kind, suffix) = part.rsplit_once('.')?;
    match suffix {
        "weight" => {}
        "bias" if spec.qkv_bias && matches!(kind, "attn_q" | "attn_k" | "attn_v") => {}
        _ => return None,
    }
    let (hf, fix) = match kind {
        "attn_norm" => ("input_layernorm", norm),
        "attn_q" => ("self_attn.q_proj", qk(cfg.num_heads)),
        "attn_k" => ("self_attn.k_proj", qk(cfg.num_kv_heads)),
        "attn_v" => ("self_attn.v_proj", Fix::None),
        "attn_output" => ("self_attn.o_proj", Fix::None),
        "attn_q_norm" if spec.qk_norm => ("self_attn.q_norm", norm),
        "attn_k_norm" if spec.qk_norm => ("self_attn.k_norm", norm),
        "post_attention_norm" if spec.sandwich_norms => ("post_attention_layernorm", norm),
        "ffn_norm" if spec.sandwich_norms => ("pre_feedforward_layernorm", norm),
        "post_ffw_norm" if spec.sandwich_norms => ("post_feedforward_layernorm", norm),
        "ffn_norm" => ("post_attention_layernorm", norm),
        "ffn_gate" => ("mlp.gate_proj", Fix::None),
        "ffn_up" => ("mlp.up_proj", Fix::None),
        "ffn_down" => ("mlp.down_proj", Fix::None),
        _ => return None,
    };
    Some((format!("model.layers.{layer}.{hf}.{suffix}"), fix))
}

/// Applies `fix` to row-major values with `cols` columns.
pub(crate) fn apply(fix: Fix, mut v: Vec<f32>, cols: usize) -> Vec<f32> {
    match fix {
        Fix::None => v,
        Fix::SubtractOne => {
            v.iter_mut().for_each(|x| *x -= 1.0);
            v
        }
        Fix::Unpermute { heads } => unpermute_rows(&v, heads, cols),
    }
}

/// llama.cpp stores row `h·d + 2i + p` what HF has at row `h·d + p·d/2 + i` (head `h`, pair `i`, half `p`).
pub(crate) fn unpermute_rows(v: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    let d = v.len() / cols / heads;
    let half = d / 2;
    let mut out = vec![0.0; v.len()];
    for h in 0..heads {
        for p in 0..2 {
            for i in 0..half {
                let (dst, src) = (h * d + p * half + i, h * d + 2 * i + p);
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&v[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_by_hand() {
        // One head of 4 rows with one column: GGUF order [r0, r2, r1, r3] of HF rows.
        assert_eq!(unpermute_rows(&[0.0, 2.0, 1.0, 3.0], 1, 1), vec![0.0, 1.0, 2.0, 3.0]);
        // Two heads of 4 rows, two columns.
        let gguf = [0., 0., 2., 2., 1., 1., 3., 3., 4., 4., 6., 6., 5., 5., 7., 7.];
        let want: Vec<f32> = (0..8).flat_map(|r| [r as f32; 2]).collect();
        assert_eq!(unpermute_rows(&gguf, 2, 2), want);
    }
}
