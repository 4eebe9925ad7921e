//! Writing an f32 (or bf16) safetensors file tensor by tensor, so only one tensor is in memory at a time.
//!
//! Layout: u64 little-endian header length, a JSON header (padded with spaces to a multiple of 8 bytes) mapping each
//! name to dtype, shape and `[begin, end)` byte offsets, then the data in header order. Same input ⇒ same bytes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use lsn_core::WeightDType;
use serde_json::{Value, json};

use crate::{Error, Result};

/// A tensor to be written: its name, shape, and a function producing its values when its turn comes.
pub(crate) struct Pending<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub fill: Box<dyn FnMut() -> Result<Vec<f32>> + 'a>,
}

/// Writes `tensors` (in the given order) as F32 to `path`, with `{"format": "pt"}` metadata. Returns bytes written.
pub(crate) fn write_f32_safetensors(path: &Path, tensors: Vec<Pending<'_>>) -> Result<u64> {
    write_safetensors(path, tensors, &std::collections::BTreeMap::new(), WeightDType::F32)
}

/// [`write_f32_safetensors`] with `metadata` added to the header's `__metadata__` (beside `format: pt`).
pub(crate) fn write_f32_safetensors_with(
    path: &Path,
    tensors: Vec<Pending<'_>>,
    metadata: &std::collections::BTreeMap<String, String>,
) -> Result<u64> {
    write_safetensors(path, tensors, metadata, WeightDType::F32)
}

/// Writes `tensors` as `dtype` (bf16 values are the f32 ones rounded to nearest, ties to even).
pub(crate) fn write_safetensors(
    path: &Path,
    tensors: Vec<Pending<'_>>,
    metadata: &std::collections::BTreeMap<String, String>,
    dtype: WeightDType,
) -> Result<u64> {
    let mut header = serde_json::Map::new();
    let mut meta = serde_json::Map::new();
    meta.insert("format".into(), json!("pt"));
    for (k, v) in metadata {
        meta.insert(k.clone(), json!(v));
    }
    header.insert("__metadata__".into(), Value::Object(meta));
    let mut offset = 0usize;
    for t in &tensors {
        let bytes = t.shape.iter().product::<usize>() * dtype.size();
        let name = match dtype {
            WeightDType::F32 => "F32",
            WeightDType::Bf16 => "BF16",
        };
        header
            .insert(t.name.clone(), json!({"dtype": name, "shape": t.shape, "data_offsets": [offset, offset + bytes]}));
        offset += bytes;
    }
    let mut text = serde_json::to_string(&Value::Object(header))
        .map_err(|e| Error::Safetensors { path: path.to_owned(), reason: format!("cannot encode header: {e}") })?;
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let io = |e| Error::io(path, e);
    w.write_all(&(text.len() as u64).to_le_bytes()).map_err(io)?;
    w.write_all(text.as_bytes()).map_err(io)?;
    for mut t in tensors {
        let values = (t.fill)()?;
        let n: usize = t.shape.iter().product();
        if values.len() != n {
            return Err(Error::BadTensorData {
                tensor: t.name,
                reason: format!("produced {} values for shape {:?} ({n} expected)", values.len(), t.shape),
            });
        }
        for chunk in values.chunks(1 << 18) {
            let mut buf = Vec::with_capacity(chunk.len() * dtype.size());
            match dtype {
                WeightDType::F32 => chunk.iter().for_each(|v| buf.extend_from_slice(&v.to_le_bytes())),
                WeightDType::Bf16 => {
                    chunk.iter().for_each(|&v| buf.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes()))
                }
            }
            w.write_all(&buf).map_err(io)?;
        }
    }
    let file = w.into_inner().map_err(|e| Error::io(path, e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(8 + text.len() as u64 + offset as u64)
}

/// Tensor name → shape of a safetensors file, ordered by name (for tests and reports).
#[cfg(test)]
pub(crate) fn shapes(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<usize>> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    st.tensors().into_iter().map(|(n, v)| (n, v.shape().to_vec())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_file_reads_back_with_the_safetensors_crate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let a = vec![1.0f32, -2.0, 3.5, 0.0, 5.0, 6.0];
        let tensors = vec![
            Pending { name: "z.weight".into(), shape: vec![2, 3], fill: Box::new(|| Ok(a.clone())) },
            Pending { name: "a.weight".into(), shape: vec![1], fill: Box::new(|| Ok(vec![7.0])) },
        ];
        let n = write_f32_safetensors(&path, tensors).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, n);
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let z = st.tensor("z.weight").unwrap();
        let back: Vec<f32> = z.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(back, a);
        assert_eq!(shapes(&bytes)["a.weight"], vec![1]);
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
    }

    #[test]
    fn wrong_value_count_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let tensors = vec![Pending { name: "x".into(), shape: vec![3], fill: Box::new(|| Ok(vec![1.0])) }];
        let e = write_f32_safetensors(&dir.path().join("m.safetensors"), tensors).unwrap_err().to_string();
        assert!(e.contains("produced 1 values"), "{e}");
    }
}
