//! The Candle backend of lsn: loads a HF checkpoint directory into f32 Candle tensors and runs Gemma 3 and
//! Llama-family forward passes with FFN taps (CPU; CUDA with the `cuda` feature).
//!
//! Only this crate sees Candle: models cross the boundary as `Box<dyn lsn_core::Model>`, results as plain data.

mod decoder;
mod error;
mod grad_ops;
mod lora;
mod model;
mod ops;
mod weights;

use lsn_core::{Backend, Capabilities, Device, LoadOptions, Model, ModelFiles, Result, WeightDType};

#[cfg(feature = "cuda")]
use crate::error::Context;

/// The backend's name, as `Backend::name` reports it and errors cite it.
pub const NAME: &str = "candle";

/// The Candle backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct CandleBackend;

impl CandleBackend {
    pub fn new() -> Self {
        Self
    }
}

fn candle_device(device: Device) -> Result<candle_core::Device> {
    match device {
        Device::Cpu => Ok(candle_core::Device::Cpu),
        #[cfg(feature = "cuda")]
        Device::Cuda(ordinal) => {
            // f32 products accumulate in f32 (no TF32), as on the CPU and in the goldens: candle's default, set here
            // so a change of default cannot move the conformance deviations.
            candle_core::cuda::set_gemm_reduced_precision_f32(false);
            Ok(candle_core::Device::new_cuda(ordinal).during(|| format!("opening CUDA device {ordinal}"))?)
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(ordinal) => Err(lsn_core::Error::Unsupported {
            backend: NAME,
            capability: format!(
                "CUDA device {ordinal}: this build has no CUDA support (build with feature candle-cuda and nvcc, as \
                 `cargo xtask gpu-check` does, or use the CPU)"
            ),
        }),
    }
}

impl Backend for CandleBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        let mut devices = vec![Device::Cpu];
        if cfg!(feature = "cuda") {
            devices.push(Device::Cuda(0));
        }
        Capabilities { devices, dtypes: WeightDType::ALL.to_vec(), train: true, adapters: true }
    }

    fn load(&self, files: &ModelFiles, opts: &LoadOptions) -> Result<Box<dyn Model>> {
        let device = candle_device(opts.device)?;
        if device.is_cpu() {
            let ok = lsn_core::alloc::keep_freed_buffers();
            tracing::debug!(ok, "malloc: buffers ≤ 32 MiB from the heap, heap not trimmed");
        }
        let ckpt = lsn_weights::open_checkpoint(files.dir())?;
        tracing::info!(dir = %ckpt.dir.display(), family = ?ckpt.config.family, layers = ckpt.config.num_layers, "loading model (candle)");
        let weights = weights::Weights::open(&ckpt, &device, opts.dtype)?;
        let model = model::CandleModel::load(&weights, &ckpt.config, &device)?;
        Ok(Box::new(model))
    }
}
