//! The backends compiled into this binary, chosen by name with `--backend`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use lsn_core::{Backend, Device, LoadOptions, Model, ModelFiles, WeightDType};

/// What a command needs of its backend beyond a forward pass.
#[derive(Debug, Clone, Copy)]
pub enum Need {
    /// Gradients (`lsn train`).
    Train,
    /// An unmerged LoRA adapter (`--adapter`).
    Adapters,
}

/// Where a model runs: `--backend` and `--device`, shared by every command that loads one.
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArgs {
    /// The framework that runs the model: candle, tch (libtorch) or ort (ONNX Runtime, through lsn's own ONNX
    /// export, cached under the cache directory's onnx/), as built in.
    #[arg(long, default_value = "candle")]
    pub backend: String,
    /// cpu, cuda or cuda:N. CUDA needs a GPU and the backend's CUDA build: tch with torch's CUDA libraries installed
    /// beside its libtorch, ort and candle built with features ort-cuda / candle-cuda (`cargo xtask gpu-check` sets
    /// all three up and checks them on the card). Untested on a GPU so far: see the README, "On a GPU".
    #[arg(long, default_value = "cpu", value_parser = str::parse::<Device>)]
    pub device: Device,
    /// What the weight matrices are held in: f32, or bf16 (half the memory: an 8B model in 16 GB). Activations and
    /// every statistic stay f32; bf16 rounds the weights once at load, identically on every backend (candle and
    /// tch; ort holds f32 only).
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    pub dtype: WeightDType,
}

impl BackendArgs {
    /// Fails, before any model is loaded, when the chosen backend cannot do what `need` names (as its
    /// [`lsn_core::Capabilities`] say).
    pub fn require(&self, home: &Path, need: Need) -> Result<()> {
        let backend = by_name(&self.backend, home)?;
        let caps = backend.capabilities();
        match need {
            Need::Train if !caps.train => bail!(
                "{} does not support training: train on {} (then `lsn merge-adapter` to run the result here)",
                backend.name(),
                trainers(home).join(" or ")
            ),
            Need::Adapters if !caps.adapters => bail!(
                "{} does not apply unmerged LoRA adapters: merge the adapter into the weights with `lsn \
                 merge-adapter` and load the merged model, or use {}",
                backend.name(),
                able(home, |c| c.adapters).join(" or ")
            ),
            _ => Ok(()),
        }
    }

    /// Loads the checkpoint in `files` on the chosen backend and device.
    pub fn load(&self, home: &Path, files: &ModelFiles) -> Result<(Box<dyn Backend>, Box<dyn Model>)> {
        let backend = by_name(&self.backend, home)?;
        let model =
            backend.load(files, &LoadOptions { device: self.device, dtype: self.dtype }).with_context(|| {
                format!("loading {} on {} ({:?}, {})", files.dir().display(), backend.name(), self.device, self.dtype)
            })?;
        Ok((backend, model))
    }
}

pub(crate) fn parse_dtype(s: &str) -> Result<WeightDType, String> {
    s.parse()
}

/// Names of the backends this build includes.
pub fn available() -> Vec<&'static str> {
    [
        cfg!(feature = "candle").then_some("candle"),
        cfg!(feature = "tch").then_some("tch"),
        cfg!(feature = "ort").then_some("ort"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The backends of this build that train (their capabilities say so), the preferred first: tch, the faster trainer
/// on the CPU this was measured on (README, "Performance").
pub fn trainers(home: &Path) -> Vec<&'static str> {
    let mut t = able(home, |c| c.train);
    t.sort_by_key(|b| *b != "tch");
    t
}

/// The backends of this build whose capabilities pass `can`.
fn able(home: &Path, can: impl Fn(&lsn_core::Capabilities) -> bool) -> Vec<&'static str> {
    available().into_iter().filter(|b| by_name(b, home).is_ok_and(|be| can(&be.capabilities()))).collect()
}

/// The backend called `name`; ort keeps its ONNX exports under `home`/onnx.
#[cfg_attr(not(feature = "ort"), allow(unused_variables))]
pub fn by_name(name: &str, home: &Path) -> Result<Box<dyn Backend>> {
    match name {
        #[cfg(feature = "candle")]
        "candle" => Ok(Box::new(lsn_backend_candle::CandleBackend)),
        #[cfg(feature = "tch")]
        "tch" => Ok(Box::new(lsn_backend_tch::TchBackend)),
        #[cfg(feature = "ort")]
        "ort" => Ok(Box::new(lsn_backend_ort::OrtBackend::with_cache(home.join("onnx")))),
        other => bail!("backend {other:?} is not part of this build (available: {})", available().join(", ")),
    }
}
