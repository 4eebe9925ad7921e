//! Reading a validated checkpoint's tensors into host buffers of the element type a backend keeps its weights in
//! (f32, or bf16 to halve the memory), converting from the stored F32/BF16/F16.
//!
//! Tensor data is read with positional reads, not through a memory map: pages of a mapped file count in the process's
//! resident set while they are touched, so copying a model out of a map holds the weights twice at the peak. A read
//! goes through the page cache, which the kernel can reclaim and which is not the process's memory. A backend that
//! lets its tensors be filled in place ([`TensorReader::read_into`]) therefore loads with no second copy at all.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};

use crate::{Checkpoint, Error, Result};

/// A float type weights can be held in.
pub trait WeightElem: Copy + Default + Send + 'static {
    fn from_f32(x: f32) -> Self;
    fn from_bf16(x: half::bf16) -> Self;
    fn from_f16(x: half::f16) -> Self;
}

impl WeightElem for f32 {
    fn from_f32(x: f32) -> Self {
        x
    }
    fn from_bf16(x: half::bf16) -> Self {
        x.to_f32()
    }
    fn from_f16(x: half::f16) -> Self {
        x.to_f32()
    }
}

impl WeightElem for half::bf16 {
    /// Round to nearest, ties to even (what torch's and numpy's f32 → bf16 casts do).
    fn from_f32(x: f32) -> Self {
        half::bf16::from_f32(x)
    }
    fn from_bf16(x: half::bf16) -> Self {
        x
    }
    fn from_f16(x: half::f16) -> Self {
        half::bf16::from_f32(x.to_f32())
    }
}

/// Where one tensor's bytes are.
#[derive(Debug, Clone)]
struct Entry {
    shard: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Byte offset of the data in the shard file.
    offset: u64,
    len: usize,
}

/// The shards of one checkpoint, open for positional reads.
pub struct TensorReader {
    files: Vec<(PathBuf, File)>,
    entries: HashMap<String, Entry>,
}

impl std::fmt::Debug for TensorReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorReader").field("shards", &self.files.iter().map(|f| &f.0).collect::<Vec<_>>()).finish()
    }
}

/// Bytes converted per chunk when the stored type differs from the wanted one.
const CHUNK_BYTES: usize = 1 << 20;

impl TensorReader {
    pub fn open(ckpt: &Checkpoint) -> Result<Self> {
        let mut files = Vec::new();
        let mut entries = HashMap::new();
        for (i, shard) in ckpt.shards.iter().enumerate() {
            let file = File::open(shard).map_err(|e| Error::io(shard, e))?;
            // SAFETY: read-only map, used only to parse the header here (the data pages are not touched: offsets are
            // taken from the views' addresses) and dropped at the end of this iteration.
            let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(shard, e))?;
            let st = SafeTensors::deserialize(&mmap)
                .map_err(|e| Error::Safetensors { path: shard.clone(), reason: e.to_string() })?;
            for (name, view) in st.tensors() {
                if ckpt.location.get(&name) != Some(shard) {
                    continue;
                }
                let offset = (view.data().as_ptr() as usize - mmap.as_ptr() as usize) as u64;
                let entry = Entry {
                    shard: i,
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    offset,
                    len: view.data().len(),
                };
                entries.insert(name, entry);
            }
            files.push((shard.clone(), file));
        }
        Ok(Self { files, entries })
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries
            .get(name)
            .ok_or_else(|| Error::BadTensorData { tensor: name.to_owned(), reason: "not in the checkpoint".into() })
    }

    /// Tensor `name` as `(shape, f32 values)` in row-major order.
    pub fn read_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        self.read(name)
    }

    /// Tensor `name` as `(shape, values)` in row-major order, converted to `T`.
    pub fn read<T: WeightElem>(&self, name: &str) -> Result<(Vec<usize>, Vec<T>)> {
        let shape = self.shape(name)?;
        let mut values = vec![T::default(); shape.iter().product()];
        self.read_into(name, &mut values)?;
        Ok((shape, values))
    }

    /// Fills `dst` (exactly the tensor's element count) with tensor `name` converted to `T`.
    pub fn read_into<T: WeightElem>(&self, name: &str, dst: &mut [T]) -> Result<()> {
        let e = self.entry(name)?;
        let bad = |reason: String| Error::BadTensorData { tensor: name.to_owned(), reason };
        let width = match e.dtype {
            Dtype::F32 => 4,
            Dtype::BF16 | Dtype::F16 => 2,
            other => return Err(bad(format!("dtype {other:?} is not a float type (expected F32, BF16 or F16)"))),
        };
        if e.len != dst.len() * width {
            return Err(bad(format!("{} bytes stored for {} elements of {:?}", e.len, dst.len(), e.dtype)));
        }
        if dst.is_empty() {
            return Ok(());
        }
        let (path, file) = &self.files[e.shard];
        let read = |buf: &mut [u8], at: u64| file.read_exact_at(buf, at).map_err(|err| Error::io(path, err));
        if e.dtype == Dtype::F32 && std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
            // Straight into the destination: f32 has no invalid bit patterns and the host is little-endian
            // (safetensors' byte order), which the assertion below checks at compile time.
            const { assert!(cfg!(target_endian = "little"), "lsn reads safetensors on little-endian hosts only") };
            // SAFETY: T is f32 (checked above), so `dst` is `dst.len() * 4` initialised, writable bytes.
            let bytes = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<u8>(), e.len) };
            return read(bytes, e.offset);
        }
        let mut buf = vec![0u8; CHUNK_BYTES.min(e.len)];
        let per_chunk = buf.len() / width;
        for (k, out) in dst.chunks_mut(per_chunk).enumerate() {
            let bytes = &mut buf[..out.len() * width];
            read(bytes, e.offset + (k * per_chunk * width) as u64)?;
            match e.dtype {
                Dtype::F32 => {
                    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                        *o = T::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                    }
                }
                Dtype::BF16 => {
                    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                        *o = T::from_bf16(half::bf16::from_le_bytes([b[0], b[1]]));
                    }
                }
                _ => {
                    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                        *o = T::from_f16(half::f16::from_le_bytes([b[0], b[1]]));
                    }
                }
            }
        }
        Ok(())
    }

    /// Tensor `name`'s shape (from the header; no data read).
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.entry(name)?.shape.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_f32_as_f32_and_rounds_to_bf16() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::tiny_configs().into_iter().next().unwrap().1;
        crate::write_random_model(&cfg, 3, dir.path()).unwrap();
        let ckpt = crate::open_checkpoint(dir.path()).unwrap();
        let r = TensorReader::open(&ckpt).unwrap();
        let name = "model.layers.0.mlp.gate_proj.weight";
        let (shape, f) = r.read_f32(name).unwrap();
        assert_eq!(shape, vec![cfg.intermediate_size, cfg.hidden_size]);
        let (_, b) = r.read::<half::bf16>(name).unwrap();
        assert!(f.iter().zip(&b).all(|(x, y)| *y == half::bf16::from_f32(*x)));
        let mut wrong = vec![0f32; f.len() - 1];
        assert!(matches!(r.read_into(name, &mut wrong), Err(Error::BadTensorData { .. })));
        assert!(r.read_f32("model.nonexistent").is_err());
    }
}
