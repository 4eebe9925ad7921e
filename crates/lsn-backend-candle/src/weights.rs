//! Loading a validated checkpoint's tensors into Candle tensors, read straight into the buffers the tensors own.

use candle_core::{Device, Tensor};
use lsn_core::WeightDType;
use lsn_weights::{Checkpoint, TensorReader};

use crate::error::{Context, Result};

/// The tensors of one checkpoint, read on demand by HF name.
pub(crate) struct Weights {
    reader: TensorReader,
    device: Device,
    dtype: WeightDType,
}

impl Weights {
    pub(crate) fn open(ckpt: &Checkpoint, device: &Device, dtype: WeightDType) -> Result<Self> {
        Ok(Self { reader: TensorReader::open(ckpt)?, device: device.clone(), dtype })
    }

    /// A weight matrix (embeddings, projections, LM head) in the load's dtype. On the CPU the vector read becomes
    /// the tensor's storage without a copy.
    pub(crate) fn matrix(&self, name: &str) -> Result<Tensor> {
        match self.dtype {
            WeightDType::F32 => self.f32(name),
            WeightDType::Bf16 => {
                let (shape, values) = self.reader.read::<half::bf16>(name)?;
                Tensor::from_vec(values, shape, &self.device).during(|| format!("loading tensor {name}"))
            }
        }
    }

    /// Tensor `name` as f32 on the model's device (bf16/f16 checkpoints are widened).
    fn f32(&self, name: &str) -> Result<Tensor> {
        let (shape, values) = self.reader.read::<f32>(name)?;
        Tensor::from_vec(values, shape, &self.device).during(|| format!("loading tensor {name}"))
    }

    /// An RMSNorm weight (always f32) as the multiplier the norm applies: `w`, or `1 + w` for Gemma's offset norms.
    pub(crate) fn norm(&self, name: &str, plus_one: bool) -> Result<Tensor> {
        let w = self.f32(name)?;
        if plus_one { (w + 1.0).during(|| format!("offsetting norm {name}")) } else { Ok(w) }
    }
}
