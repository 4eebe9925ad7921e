//! Opening a HF checkpoint directory: resolve `config.json`, find the safetensors shards, check every tensor's shape.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use lsn_core::{ModelConfig, ModelIdentity, expected_tensors};
use safetensors::{Dtype, SafeTensors};

use crate::{Error, Result};

/// A validated HF checkpoint directory.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: ModelConfig,
    /// Safetensors files holding the weights (one, or the shards named by the index).
    pub shards: Vec<PathBuf>,
    /// Tensor name → shard holding it.
    pub location: HashMap<String, PathBuf>,
}

fn shard_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(Error::Missing {
            path: single,
            hint: "a HF checkpoint needs model.safetensors or model.safetensors.index.json with its shards; \
                   for a GGUF file run `lsn convert` first"
                .into(),
        });
    }
    let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Safetensors { path: index.clone(), reason: format!("index is not valid JSON: {e}") })?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::Safetensors { path: index.clone(), reason: "index has no weight_map".into() })?;
    let mut files: Vec<PathBuf> = map.values().filter_map(|f| f.as_str()).map(|f| dir.join(f)).collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// Tensors a checkpoint may hold beyond the config's list, which every reader ignores: precomputed RoPE buffers of
/// older exports, and a copy of the embeddings as `lm_head.weight` in a model with tied embeddings (HF ignores it too).
fn ignorable(name: &str, config: &ModelConfig) -> bool {
    name.ends_with("rotary_emb.inv_freq") || (name == "lm_head.weight" && config.tie_word_embeddings)
}

/// Reads `dir/config.json`, locates the weights and checks that the checkpoint matches the config exactly: every
/// tensor the config implies is present with the right shape and a float dtype (F32, F16, BF16), and no tensor is
/// left that the config does not account for (a layer beyond `num_hidden_layers`, say). Tensor data is not read
/// (safetensors headers only, through a memory map).
pub fn open_checkpoint(dir: &Path) -> Result<Checkpoint> {
    let cfg_path = dir.join("config.json");
    if !cfg_path.is_file() {
        return Err(Error::Missing {
            path: cfg_path,
            hint: "not a HF checkpoint directory (use `lsn fetch-model` or `lsn convert` to make one)".into(),
        });
    }
    let config = ModelConfig::from_file(&cfg_path)?;
    let shards = shard_files(dir)?;
    let mut found: HashMap<String, (Vec<usize>, Dtype, PathBuf)> = HashMap::new();
    for shard in &shards {
        let file = File::open(shard).map_err(|e| Error::io(shard, e))?;
        // SAFETY: the map is read-only and lives only within this loop iteration; a file changed underneath us
        // yields wrong shapes (reported), not undefined behaviour in our code paths that copy out of it.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(shard, e))?;
        let st = SafeTensors::deserialize(&mmap)
            .map_err(|e| Error::Safetensors { path: shard.clone(), reason: e.to_string() })?;
        for (name, view) in st.tensors() {
            found.insert(name, (view.shape().to_vec(), view.dtype(), shard.clone()));
        }
    }
    let mut location = HashMap::new();
    for spec in expected_tensors(&config) {
        match found.remove(&spec.name) {
            None => {
                return Err(lsn_core::Error::WeightsMismatch(format!(
                    "tensor {} is missing from {} (config.json describes a different model, or the checkpoint is incomplete)",
                    spec.name,
                    dir.display()
                ))
                .into());
            }
            Some((shape, _, _)) if shape != spec.shape => {
                return Err(lsn_core::Error::WeightsMismatch(format!(
                    "tensor {} has shape {:?} but config.json implies {:?} (hidden_size {}, intermediate_size {}, \
                     heads {}/{} × head_dim {}, vocab {}): fix config.json or use the weights it belongs to",
                    spec.name,
                    shape,
                    spec.shape,
                    config.hidden_size,
                    config.intermediate_size,
                    config.num_heads,
                    config.num_kv_heads,
                    config.head_dim,
                    config.vocab_size
                ))
                .into());
            }
            Some((_, dtype, shard)) if !matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) => {
                return Err(lsn_core::Error::WeightsMismatch(format!(
                    "tensor {} in {} has dtype {dtype:?}, not a float type (F32, F16 or BF16): lsn reads unquantized \
                     checkpoints; convert the model to f32/f16/bf16 safetensors (or from GGUF with `lsn convert`)",
                    spec.name,
                    shard.display()
                ))
                .into());
            }
            Some((_, _, shard)) => {
                location.insert(spec.name, shard);
            }
        }
    }
    let mut extra: Vec<&String> = found.keys().filter(|n| !ignorable(n, &config)).collect();
    extra.sort();
    if let Some(first) = extra.first() {
        return Err(lsn_core::Error::WeightsMismatch(format!(
            "{} tensor(s) in {} are not accounted for by config.json ({} layers, family {:?}), e.g. {first}{}: \
             config.json describes a different model than the weights; use the config.json that belongs to them",
            extra.len(),
            dir.display(),
            config.num_layers,
            config.family,
            if extra.len() > 1 { format!(", {}", extra[1]) } else { String::new() }
        ))
        .into());
    }
    Ok(Checkpoint { dir: dir.to_owned(), config, shards, location })
}

impl Checkpoint {
    /// The model's identity by content: sha256 of `config.json`, the given sha256 of its tokenizer (the loaded
    /// tokenizer already knows it), and of every weight shard (shard hashes remembered under `memo_dir` by path, size
    /// and mtime, so a large checkpoint is hashed once).
    pub fn identity(&self, tokenizer_sha256: &str, memo_dir: &Path) -> Result<ModelIdentity> {
        let config_sha256 = lsn_core::sha256_file(&self.dir.join("config.json"))?;
        let tokenizer_sha256 = tokenizer_sha256.to_owned();
        let mut shards = std::collections::BTreeMap::new();
        for s in &self.shards {
            let name = s.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            shards.insert(name, lsn_core::sha256_file_memo(s, memo_dir)?);
        }
        Ok(ModelIdentity::new(config_sha256, tokenizer_sha256, shards))
    }
}
