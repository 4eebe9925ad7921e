//! The libtorch backend of lsn (through `tch`): loads a HF checkpoint directory into f32 libtorch tensors and runs
//! Gemma 3 and Llama-family forward passes with the FFN tap statistics reduced on the device (CPU; CUDA when the
//! linked libtorch's CUDA library loads and sees a GPU).
//!
//! Only this crate links tch: models cross the boundary as `Box<dyn lsn_core::Model>`, results as plain data.

mod cuda;
mod decoder;
mod error;
mod lora;
mod model;
mod ops;
mod taps;
mod weights;

use lsn_core::{Backend, Capabilities, Device, LoadOptions, Model, ModelFiles, Result, WeightDType};

/// The backend's name, as `Backend::name` reports it and errors cite it.
pub const NAME: &str = "tch";

/// The libtorch backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct TchBackend;

impl TchBackend {
    pub fn new() -> Self {
        Self
    }
}

fn tch_device(device: Device) -> Result<tch::Device> {
    match device {
        Device::Cpu => Ok(tch::Device::Cpu),
        Device::Cuda(ordinal) => match cuda::device_count() {
            Ok(n) if ordinal < n => Ok(tch::Device::Cuda(ordinal)),
            Ok(n) => Err(lsn_core::Error::Unsupported {
                backend: NAME,
                capability: format!(
                    "CUDA device {ordinal}: libtorch sees {n} CUDA device(s) (a GPU and its driver are needed; use \
                     the CPU otherwise)"
                ),
            }),
            Err(why) => Err(lsn_core::Error::Unsupported {
                backend: NAME,
                capability: format!(
                    "CUDA device {ordinal}: libtorch's CUDA library could not be loaded ({why}); install torch==2.13.0 \
                     with its CUDA libraries where LIBTORCH points (`cargo xtask gpu-check` does) and rebuild, or use \
                     the CPU"
                ),
            }),
        },
    }
}

impl Backend for TchBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        let mut devices = vec![Device::Cpu];
        devices.extend((0..cuda::device_count().unwrap_or(0)).map(Device::Cuda));
        Capabilities { devices, dtypes: WeightDType::ALL.to_vec(), train: true, adapters: true }
    }

    fn load(&self, files: &ModelFiles, opts: &LoadOptions) -> Result<Box<dyn Model>> {
        let device = tch_device(opts.device)?;
        if device == tch::Device::Cpu {
            let ok = lsn_core::alloc::keep_freed_buffers();
            tracing::debug!(ok, "malloc: buffers ≤ 32 MiB from the heap, heap not trimmed");
        }
        let ckpt = lsn_weights::open_checkpoint(files.dir())?;
        tracing::info!(dir = %ckpt.dir.display(), family = ?ckpt.config.family, layers = ckpt.config.num_layers, "loading model (tch)");
        let weights = weights::Weights::open(&ckpt, device, opts.dtype)?;
        let model = model::TchModel::load(&weights, &ckpt.config, device)?;
        Ok(Box::new(model))
    }
}
