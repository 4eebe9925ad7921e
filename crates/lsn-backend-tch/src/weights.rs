//! Loading a validated checkpoint's tensors into f32 libtorch tensors on the model's device.

use lsn_weights::{Checkpoint, TensorReader};
use tch::{Device, Tensor};

use crate::error::{Context, Result};

/// The tensors of one checkpoint, read on demand by HF name.
pub(crate) struct Weights {
    reader: TensorReader,
    device: Device,
}

impl Weights {
    pub(crate) fn open(ckpt: &Checkpoint, device: Device) -> Result<Self> {
        Ok(Self { reader: TensorReader::open(ckpt)?, device })
    }

    /// Tensor `name` as f32 on the model's device.
    pub(crate) fn get(&self, name: &str) -> Result<Tensor> {
        let (shape, values) = self.reader.read_f32(name)?;
        let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        Tensor::f_from_slice(&values)
            .and_then(|t| t.f_reshape(&shape))
            .and_then(|t| t.f_to_device(self.device))
            .during(|| format!("loading tensor {name}"))
    }

    /// An RMSNorm weight as the multiplier the norm applies: `w`, or `1 + w` for Gemma's offset norms.
    pub(crate) fn norm(&self, name: &str, plus_one: bool) -> Result<Tensor> {
        let w = self.get(name)?;
        if plus_one { w.f_add_scalar(1.0).during(|| format!("offsetting norm {name}")) } else { Ok(w) }
    }
}
