//! The ONNX Runtime backend of lsn: our own ONNX exporter for the Gemma 3 and Llama families ([`export`]), and
//! inference through `ort` (CPU EP; CUDA EP with feature `cuda`).
//!
//! ONNX Runtime cannot hook intermediate tensors, so the graph itself reduces the FFN taps: the exporter writes, per
//! combination of requested statistics and head, a body graph whose outputs are exactly those. A checkpoint is
//! exported once into the cache (keyed by its content and [`EXPORTER_VERSION`]); graphs are written on first use.
//! Only this crate links ort: models cross the boundary as `Box<dyn lsn_core::Model>`, results as plain data.
//!
//! Counts, moments and threshold counts are reduced in the graph. Pass-1 quantiles are sorted on the host from the
//! activations the graph returns, by lsn-core's reducer: a sort in the graph (TopK, [`QuantilePass::InGraph`]) gives
//! the same bits but measured 2.5× slower (see [`QuantilePass`]).

mod cache;
mod error;
pub mod export;
mod model;
mod proto;
mod runtime;
mod weights;

use std::path::{Path, PathBuf};

use lsn_core::{Backend, Capabilities, Device, LoadOptions, Model, ModelFiles, Result, WeightDType};

pub use cache::default_cache;
pub use export::EXPORTER_VERSION;

/// The backend's name, as `Backend::name` reports it and errors cite it.
pub const NAME: &str = "ort";

/// Where pass 1's per-batch quantiles are computed. Both give the same bits (tested); the default is the faster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QuantilePass {
    /// Sorted in the graph (a TopK over the tokens per layer); only the two order statistics of each level come back.
    /// ONNX Runtime's CPU TopK is slow for this shape: 148 tokens/s for pass 1 against 367 on the host (capture bench,
    /// Gemma-3-270M, 4 × 512, 2 threads).
    InGraph,
    /// The graph also returns the real tokens' activations, and lsn-core's host reducer sorts them (in parallel
    /// blocks of neurons). The default.
    #[default]
    OnHost,
}

/// The ONNX Runtime backend; exports go to `cache`.
#[derive(Debug, Clone)]
pub struct OrtBackend {
    cache: PathBuf,
    quantiles: QuantilePass,
}

impl Default for OrtBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl OrtBackend {
    /// Exports under [`default_cache`].
    pub fn new() -> Self {
        Self::with_cache(default_cache())
    }

    /// Exports under `cache`.
    pub fn with_cache(cache: impl Into<PathBuf>) -> Self {
        Self { cache: cache.into(), quantiles: QuantilePass::default() }
    }

    /// Where pass-1 quantiles are computed (the bench compares both).
    pub fn with_quantile_pass(mut self, quantiles: QuantilePass) -> Self {
        self.quantiles = quantiles;
        self
    }
}

impl Backend for OrtBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        let mut devices = vec![Device::Cpu];
        if runtime::cuda_available() {
            devices.push(Device::Cuda(0));
        }
        Capabilities { devices, dtypes: vec![WeightDType::F32], train: false, adapters: false }
    }

    fn load(&self, files: &ModelFiles, opts: &LoadOptions) -> Result<Box<dyn Model>> {
        let (config, export) = self.export(files, opts)?;
        Ok(Box::new(model::OrtModel::new(config, export, opts.device, self.quantiles)?))
    }
}

impl OrtBackend {
    /// Validates the device, exports the checkpoint (once) and starts ONNX Runtime.
    fn export(&self, files: &ModelFiles, opts: &LoadOptions) -> Result<(lsn_core::ModelConfig, cache::ExportDir)> {
        if let Device::Cuda(n) = opts.device
            && !runtime::cuda_available()
        {
            return Err(runtime::unsupported_cuda(n));
        }
        if !self.capabilities().dtypes.contains(&opts.dtype) {
            return Err(lsn_core::Error::Unsupported {
                backend: NAME,
                capability: format!(
                    "{} weights: the exported graphs hold f32 weights (load with dtype f32, or use candle or tch for {})",
                    opts.dtype, opts.dtype
                ),
            });
        }
        let ckpt = lsn_weights::open_checkpoint(files.dir())?;
        tracing::info!(dir = %ckpt.dir.display(), family = ?ckpt.config.family, layers = ckpt.config.num_layers, "loading model (ort)");
        let export = cache::ExportDir::ensure(&ckpt, &self.cache)?;
        // Fail now, not at the first forward pass, when ONNX Runtime itself cannot start.
        runtime::environment()?;
        Ok((ckpt.config, export))
    }
}

/// The stand-alone export of the checkpoint in `files` under `cache`: returns the path of the whole-model graph
/// (`input_ids` `[batch, seq]` → `logits` `[batch, seq, vocab]`, rows right-padded), whose weights are the
/// external data file `weights.bin` beside it.
pub fn export_model(files: &ModelFiles, cache: &Path) -> Result<PathBuf> {
    let ckpt = lsn_weights::open_checkpoint(files.dir())?;
    let export = cache::ExportDir::ensure(&ckpt, cache)?;
    Ok(export.body(&export::BodySpec::plain(export::Head::Logits))?)
}
