//! Loading a validated checkpoint's tensors into f32 Candle tensors through memory-mapped safetensors.

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use lsn_weights::Checkpoint;

use crate::error::{Context, Result};

/// The tensors of one checkpoint, read on demand by HF name.
pub(crate) struct Weights {
    files: MmapedSafetensors,
    device: Device,
}

impl Weights {
    pub(crate) fn open(ckpt: &Checkpoint, device: &Device) -> Result<Self> {
        // SAFETY: the files are mapped read-only and every tensor is copied out (`load`) before the map is dropped
        // at the end of model loading; `open_checkpoint` has already validated the headers and shapes.
        let files = unsafe { MmapedSafetensors::multi(&ckpt.shards) }
            .during(|| format!("memory-mapping the safetensors of {}", ckpt.dir.display()))?;
        Ok(Self { files, device: device.clone() })
    }

    /// Tensor `name` as f32 on the model's device (bf16/f16 checkpoints are widened).
    pub(crate) fn get(&self, name: &str) -> Result<Tensor> {
        self.files
            .load(name, &self.device)
            .and_then(|t| t.to_dtype(DType::F32))
            .during(|| format!("loading tensor {name}"))
    }

    /// An RMSNorm weight as the multiplier the norm applies: `w`, or `1 + w` for Gemma's offset norms.
    pub(crate) fn norm(&self, name: &str, plus_one: bool) -> Result<Tensor> {
        let w = self.get(name)?;
        if plus_one { (w + 1.0).during(|| format!("offsetting norm {name}")) } else { Ok(w) }
    }
}
