//! The export directory of one checkpoint: `<cache>/<key>/` holding `weights.bin`, `manifest.json` and the graphs,
//! where `key` hashes the checkpoint's content (config and every weight shard) with the exporter version. A directory
//! is built under a temporary name and renamed into place, so a half-written export is never used; graphs are
//! written on first use, each atomically.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use lsn_core::{ModelConfig, expected_tensors, is_norm};
use lsn_weights::{Checkpoint, TensorReader};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::export::{self, BodySpec, EXPORTER_VERSION, Manifest, WEIGHTS_FILE};

/// Each tensor starts at a multiple of this in `weights.bin`, so ONNX Runtime can map it instead of copying.
const ALIGN: u64 = 4096;

/// Serialises exports within the process (tests load the same model from several threads).
static EXPORTING: Mutex<()> = Mutex::new(());

/// The default cache of exports: `$LSN_HOME/onnx` (else `~/.cache/lsn/onnx`).
pub fn default_cache() -> PathBuf {
    lsn_core::cache_home().join("onnx")
}

/// One checkpoint's export.
#[derive(Debug, Clone)]
pub(crate) struct ExportDir {
    pub(crate) dir: PathBuf,
    cfg: ModelConfig,
    manifest: Manifest,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), err: source }
}

/// The content key of `ckpt`: sha256 over the exporter version, `config.json` and every shard's sha256. Shard hashes
/// are remembered (lsn-core's `sha256_file_memo`) in the cache directory's `hashes/`, beside this export cache
/// (`<home>/onnx`), where the CLI remembers them too: an unchanged checkpoint is hashed once.
fn content_key(ckpt: &Checkpoint, cache: &Path) -> Result<String> {
    let memo = lsn_core::hash_memo_dir(cache.parent().unwrap_or(cache));
    let mut files = vec![ckpt.dir.join("config.json")];
    files.extend(ckpt.shards.iter().cloned());
    let mut h = Sha256::new();
    h.update(format!("lsn-onnx-export v{EXPORTER_VERSION}\n"));
    for f in &files {
        let digest = lsn_core::sha256_file_memo(f, &memo)?;
        h.update(f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        h.update(digest);
    }
    Ok(hex::encode(h.finalize())[..24].to_owned())
}

/// Writes every tensor of `ckpt` as f32 into `path`, 4 KiB-aligned; Gemma's norm weights become `1 + w`.
fn write_weights(ckpt: &Checkpoint, path: &Path) -> Result<Manifest> {
    let reader = TensorReader::open(ckpt)?;
    let file = std::fs::File::create(path).map_err(io(path))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 22, file);
    let mut manifest = Manifest::default();
    let mut offset = 0u64;
    for spec in expected_tensors(&ckpt.config) {
        let (shape, mut values) = reader.read_f32(&spec.name)?;
        if ckpt.config.family.spec().norm_plus_one && is_norm(&spec.name) {
            values.iter_mut().for_each(|v| *v += 1.0);
        }
        let pad = offset.next_multiple_of(ALIGN) - offset;
        out.write_all(&vec![0u8; pad as usize]).map_err(io(path))?;
        offset += pad;
        manifest.tensors.insert(spec.name.clone(), (shape, offset));
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        out.write_all(&bytes).map_err(io(path))?;
        offset += bytes.len() as u64;
    }
    out.into_inner()
        .map_err(|e| Error::Io { path: path.to_owned(), err: e.into_error() })?
        .sync_all()
        .map_err(io(path))?;
    Ok(manifest)
}

/// Checks that an export holds every tensor of `cfg` with its shape, inside `weights.bin`.
fn check_export(dir: &Path, cfg: &ModelConfig, manifest: &Manifest) -> Result<()> {
    let weights = dir.join(WEIGHTS_FILE);
    let len = std::fs::metadata(&weights).map_err(io(&weights))?.len();
    let damaged =
        |what: String| Error::Export(format!("{} is damaged ({what}); delete it to export again", dir.display()));
    for spec in expected_tensors(cfg) {
        match manifest.tensors.get(&spec.name) {
            None => return Err(damaged(format!("manifest.json lacks {}", spec.name))),
            Some((shape, _)) if *shape != spec.shape => {
                return Err(damaged(format!("{} has shape {shape:?}, not {:?}", spec.name, spec.shape)));
            }
            Some((shape, offset)) if offset + 4 * shape.iter().product::<usize>() as u64 > len => {
                return Err(damaged(format!("{} lies beyond the end of {WEIGHTS_FILE} ({len} bytes)", spec.name)));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

impl ExportDir {
    /// The export of `ckpt` under `cache`, written now unless it exists.
    pub(crate) fn ensure(ckpt: &Checkpoint, cache: &Path) -> Result<Self> {
        let key = content_key(ckpt, cache)?;
        let dir = cache.join(&key);
        let manifest_path = dir.join("manifest.json");
        let _guard = EXPORTING.lock().unwrap_or_else(|p| p.into_inner());
        if !manifest_path.is_file() {
            tracing::info!(dir = %dir.display(), "exporting {} to ONNX (once per checkpoint)", ckpt.dir.display());
            let tmp = cache.join(format!(".{key}.{}.tmp", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
            let built = (|| -> Result<()> {
                let manifest = write_weights(ckpt, &tmp.join(WEIGHTS_FILE))?;
                let text = serde_json::json!({
                    "exporter_version": EXPORTER_VERSION,
                    "checkpoint": ckpt.dir,
                    "config": ckpt.config,
                    "tensors": manifest.tensors,
                });
                let p = tmp.join("manifest.json");
                lsn_core::write_atomic(&p, text.to_string().as_bytes()).map_err(io(&p))?;
                match std::fs::rename(&tmp, &dir) {
                    Ok(()) => Ok(()),
                    // Another process finished the same export first: theirs is as good as ours.
                    Err(_) if manifest_path.is_file() => Ok(()),
                    Err(e) => Err(Error::Io { path: dir.clone(), err: e }),
                }
            })();
            let _ = std::fs::remove_dir_all(&tmp);
            built?;
        }
        let text = std::fs::read_to_string(&manifest_path).map_err(io(&manifest_path))?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::Export(format!("{} is not valid JSON ({e}); delete {}", manifest_path.display(), dir.display()))
        })?;
        let tensors: HashMap<String, (Vec<usize>, u64)> =
            serde_json::from_value(value["tensors"].clone()).map_err(|e| {
                Error::Export(format!(
                    "{} has no tensor table ({e}); delete {}",
                    manifest_path.display(),
                    dir.display()
                ))
            })?;
        let manifest = Manifest { tensors: tensors.into_iter().collect() };
        check_export(&dir, &ckpt.config, &manifest)?;
        Ok(Self { dir, cfg: ckpt.config.clone(), manifest })
    }

    /// `(name, shape, byte offset in weights.bin)` of every tensor of the export.
    pub(crate) fn tensors(&self) -> impl Iterator<Item = (&str, &[usize], u64)> {
        self.manifest.tensors.iter().map(|(name, (shape, offset))| (name.as_str(), shape.as_slice(), *offset))
    }

    fn graph(
        &self,
        name: &str,
        build: impl FnOnce() -> std::result::Result<Vec<u8>, protobuf::Error>,
    ) -> Result<PathBuf> {
        let path = self.dir.join(name);
        // Threads of one process share the temporary name `write_atomic` uses.
        let _guard = EXPORTING.lock().unwrap_or_else(|p| p.into_inner());
        if !path.is_file() {
            let bytes = build().map_err(|e| Error::Export(format!("serialising {name}: {e}")))?;
            lsn_core::write_atomic(&path, &bytes).map_err(io(&path))?;
        }
        Ok(path)
    }

    /// The body graph `spec`, written on first use.
    pub(crate) fn body(&self, spec: &BodySpec) -> Result<PathBuf> {
        self.graph(&spec.file_name(), || export::body(&self.cfg, &self.manifest, spec))
    }

    /// The head graph (logits, or the next-token NLL).
    pub(crate) fn head(&self, nll: bool) -> Result<PathBuf> {
        let name = if nll { "head-nll.onnx" } else { "head-logits.onnx" };
        self.graph(name, || export::head_graph(&self.cfg, &self.manifest, nll))
    }
}
