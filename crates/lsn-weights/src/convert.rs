//! `lsn convert`: a GGUF file → a HF checkpoint directory (`config.json`, f32 `model.safetensors`, `tokenizer.json`).

mod config;
mod tensors;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use lsn_core::{ModelConfig, expected_tensors};

use crate::atomic::Staging;
use crate::st_write::{Pending, write_f32_safetensors};
use crate::tokenizer::{check_tokenizer_json, tokenizer_from_gguf};
use crate::{Error, Gguf, Result};

pub use config::config_from_gguf;

/// Options of [`convert_gguf`].
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// A `tokenizer.json` to copy in (checked against the GGUF's vocabulary). Without one, a tokenizer is built from
    /// the GGUF, which works for byte-level BPE vocabularies only.
    pub tokenizer_json: Option<PathBuf>,
    /// Replace a non-empty existing output directory.
    pub overwrite: bool,
}

/// Where the written `tokenizer.json` came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerSource {
    /// Copied from the given file; `differing_tokens` were spelled differently from the GGUF (e.g. `▁` vs space).
    Copied { from: PathBuf, differing_tokens: usize },
    /// Built from the GGUF vocabulary and merges.
    BuiltFromGguf,
}

/// What [`convert_gguf`] wrote.
#[derive(Debug, Clone)]
pub struct ConvertReport {
    pub out_dir: PathBuf,
    pub config: ModelConfig,
    /// Number of tensors written to `model.safetensors`.
    pub n_tensors: usize,
    /// How many GGUF tensors each element type had (e.g. "Q4_K" → 27).
    pub source_dtypes: BTreeMap<String, usize>,
    pub safetensors_bytes: u64,
    pub tokenizer: TokenizerSource,
}

fn unconvertible(g: &Gguf, reason: String) -> Error {
    Error::Unconvertible { path: g.path().to_owned(), reason }
}

/// Converts the GGUF file `gguf` into a HF checkpoint directory `out_dir`, dequantizing every tensor to f32 and
/// undoing llama.cpp's layout changes (Gemma norm `+1`, Llama Q/K row permutation). The directory appears only once
/// complete; a non-empty `out_dir` is refused unless `opts.overwrite`.
pub fn convert_gguf(gguf: &Path, out_dir: &Path, opts: &ConvertOptions) -> Result<ConvertReport> {
    let g = Gguf::open(gguf)?;
    let cfg = config_from_gguf(&g)?;

    // Map every GGUF tensor to its HF name; refuse unknown tensors rather than drop weights silently.
    let mut by_hf: HashMap<String, (String, tensors::Fix)> = HashMap::new();
    let mut source_dtypes = BTreeMap::new();
    for t in g.tensors() {
        let (hf, fix) = tensors::hf_name(&cfg, &t.name).ok_or_else(|| {
            unconvertible(
                &g,
                format!("tensor {} has no HF counterpart lsn knows (a newer or different model?)", t.name),
            )
        })?;
        *source_dtypes.entry(t.dtype.name().to_owned()).or_insert(0) += 1;
        by_hf.insert(hf, (t.name.clone(), fix));
    }
    let specs = expected_tensors(&cfg);
    let mut pending = Vec::with_capacity(specs.len());
    for spec in &specs {
        let (name, fix) = by_hf.remove(&spec.name).ok_or_else(|| {
            unconvertible(&g, format!("it lacks the tensor for {} that its metadata implies", spec.name))
        })?;
        let t = g.tensor(&name).expect("name came from the file's tensor list");
        if t.shape != spec.shape {
            return Err(unconvertible(
                &g,
                format!(
                    "tensor {name} has shape {:?}, but the metadata implies {:?} for {}",
                    t.shape, spec.shape, spec.name
                ),
            ));
        }
        // A vector (a norm, a bias) is one column of rows.
        let cols = if spec.shape.len() > 1 { spec.shape[spec.shape.len() - 1] } else { 1 };
        let g = &g;
        pending.push(Pending {
            name: spec.name.clone(),
            shape: spec.shape.clone(),
            fill: Box::new(move || Ok(tensors::apply(fix, g.tensor_f32(&name)?, cols))),
        });
    }
    if let Some(extra) = by_hf.keys().next() {
        return Err(unconvertible(&g, format!("it has a tensor for {extra}, which its metadata does not account for")));
    }

    // Prepare the tokenizer before writing anything large, so a tokenizer problem fails fast.
    let (tok_text, tokenizer) = match &opts.tokenizer_json {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            let differing_tokens = check_tokenizer_json(&g, &text, cfg.vocab_size)?;
            (text, TokenizerSource::Copied { from: p.clone(), differing_tokens })
        }
        None => {
            let v = tokenizer_from_gguf(&g)?;
            (v.to_string(), TokenizerSource::BuiltFromGguf)
        }
    };

    let staging = Staging::new(out_dir, opts.overwrite)?;
    let dir = staging.path();
    let n_tensors = pending.len();
    tracing::info!(gguf = %gguf.display(), tensors = n_tensors, "dequantizing to f32");
    let safetensors_bytes = write_f32_safetensors(&dir.join("model.safetensors"), pending)?;
    let cfg_text = crate::hf_config::config_json(&cfg);
    std::fs::write(dir.join("config.json"), cfg_text).map_err(|e| Error::io(dir.join("config.json"), e))?;
    std::fs::write(dir.join("tokenizer.json"), tok_text).map_err(|e| Error::io(dir.join("tokenizer.json"), e))?;
    staging.commit()?;
    Ok(ConvertReport {
        out_dir: out_dir.to_owned(),
        config: cfg,
        n_tensors,
        source_dtypes,
        safetensors_bytes,
        tokenizer,
    })
}
