//! Reading a validated checkpoint's tensors as f32 host vectors, for backends that load weights from plain data
//! (libtorch, the ONNX exporter); bf16 and f16 checkpoints are widened.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::{Checkpoint, Error, Result};

/// The memory-mapped shards of one checkpoint.
pub struct TensorReader {
    maps: HashMap<PathBuf, Mmap>,
    location: HashMap<String, PathBuf>,
}

impl std::fmt::Debug for TensorReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorReader").field("shards", &self.maps.keys().collect::<Vec<_>>()).finish()
    }
}

impl TensorReader {
    pub fn open(ckpt: &Checkpoint) -> Result<Self> {
        let mut maps = HashMap::new();
        for shard in &ckpt.shards {
            let file = File::open(shard).map_err(|e| Error::io(shard, e))?;
            // SAFETY: read-only map; every tensor is copied out by `read_f32`, and a file changed underneath us
            // yields wrong values or a length error, not undefined behaviour in the code that copies from it.
            let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(shard, e))?;
            maps.insert(shard.clone(), mmap);
        }
        Ok(Self { maps, location: ckpt.location.clone() })
    }

    /// Tensor `name` as `(shape, f32 values)` in row-major order.
    pub fn read_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let bad = |reason: String| Error::BadTensorData { tensor: name.to_owned(), reason };
        let shard = self.location.get(name).ok_or_else(|| bad("not in the checkpoint".into()))?;
        let st = SafeTensors::deserialize(&self.maps[shard])
            .map_err(|e| Error::Safetensors { path: shard.clone(), reason: e.to_string() })?;
        let view = st.tensor(name).map_err(|e| bad(e.to_string()))?;
        let bytes = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::BF16 => bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            other => return Err(bad(format!("dtype {other:?} is not a float type (expected F32, BF16 or F16)"))),
        };
        Ok((view.shape().to_vec(), values))
    }

    /// Tensor `name`'s shape (from the header; no data read).
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let bad = |reason: String| Error::BadTensorData { tensor: name.to_owned(), reason };
        let shard = self.location.get(name).ok_or_else(|| bad("not in the checkpoint".into()))?;
        let st = SafeTensors::deserialize(&self.maps[shard])
            .map_err(|e| Error::Safetensors { path: shard.clone(), reason: e.to_string() })?;
        Ok(st.tensor(name).map_err(|e| bad(e.to_string()))?.shape().to_vec())
    }
}
