//! Loading a validated checkpoint's tensors into libtorch tensors, read straight into each tensor's own memory.

use lsn_core::WeightDType;
use lsn_weights::{Checkpoint, TensorReader, WeightElem};
use tch::{Device, Kind, Tensor};

use crate::error::{Context, Result};

/// The tensors of one checkpoint, read on demand by HF name.
pub(crate) struct Weights {
    reader: TensorReader,
    device: Device,
    dtype: WeightDType,
}

impl Weights {
    pub(crate) fn open(ckpt: &Checkpoint, device: Device, dtype: WeightDType) -> Result<Self> {
        Ok(Self { reader: TensorReader::open(ckpt)?, device, dtype })
    }

    /// A weight matrix (embeddings, projections, LM head) in the load's dtype.
    pub(crate) fn matrix(&self, name: &str) -> Result<Tensor> {
        match self.dtype {
            WeightDType::F32 => self.read::<f32>(name, Kind::Float),
            WeightDType::Bf16 => self.read::<half::bf16>(name, Kind::BFloat16),
        }
    }

    /// Tensor `name` as `kind` (whose element type is `T`) on the model's device. The values are read into a new
    /// host tensor's memory, so loading holds no second copy of the weights.
    fn read<T: WeightElem>(&self, name: &str, kind: Kind) -> Result<Tensor> {
        let shape = self.reader.shape(name)?;
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let t = Tensor::f_empty(&dims, (kind, Device::Cpu)).during(|| format!("allocating tensor {name}"))?;
        let n: usize = shape.iter().product();
        if n > 0 {
            assert_eq!(
                t.kind().elt_size_in_bytes(),
                std::mem::size_of::<T>(),
                "{kind:?} holds {}",
                std::any::type_name::<T>()
            );
            // SAFETY: `t` is a new contiguous CPU tensor of `n` elements of `T`'s size and layout (f32, or bf16 as
            // `half::bf16`, a transparent u16) that nothing else refers to; the slice lives only for the read.
            let dst = unsafe { std::slice::from_raw_parts_mut(t.data_ptr().cast::<T>(), n) };
            self.reader.read_into(name, dst)?;
        }
        if self.device == Device::Cpu { Ok(t) } else { t.f_to_device(self.device).during(|| format!("moving {name}")) }
    }

    /// An RMSNorm weight (always f32) as the multiplier the norm applies: `w`, or `1 + w` for Gemma's offset norms.
    pub(crate) fn norm(&self, name: &str, plus_one: bool) -> Result<Tensor> {
        let w = self.read::<f32>(name, Kind::Float)?;
        if plus_one { w.f_add_scalar(1.0).during(|| format!("offsetting norm {name}")) } else { Ok(w) }
    }
}
