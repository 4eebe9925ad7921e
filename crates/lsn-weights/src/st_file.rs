//! Small whole-file safetensors I/O for adapters, heads and training state: read every tensor widened to f32, write
//! f32 tensors atomically (temp file, then rename) with string metadata.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::st_write::{Pending, write_f32_safetensors_with};
use crate::{Error, Result};

/// One f32 tensor: name, shape, values.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// Every tensor of the safetensors file at `path` as f32 (BF16 and F16 widened), in file order, and its metadata.
pub fn read_safetensors_f32(path: &Path) -> Result<(Vec<NamedTensor>, BTreeMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |reason: String| Error::Safetensors { path: path.to_owned(), reason };
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut named: Vec<_> = st.tensors();
    named.sort_by_key(|(_, v)| v.data().as_ptr() as usize);
    let mut out = Vec::with_capacity(named.len());
    for (name, view) in named {
        let b = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => b.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::BF16 => b.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::F16 => b.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            other => return Err(bad(format!("tensor {name} has dtype {other:?}; expected F32, BF16 or F16"))),
        };
        out.push((name, view.shape().to_vec(), values));
    }
    let metadata = meta.metadata().clone().unwrap_or_default().into_iter().collect();
    Ok((out, metadata))
}

/// Writes `tensors` as F32 to `path` atomically, with `metadata` (plus `format: pt`) in the header. Same input ⇒
/// same bytes.
pub fn write_safetensors_f32(path: &Path, tensors: &[NamedTensor], metadata: &BTreeMap<String, String>) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let pending = tensors
        .iter()
        .map(|(n, shape, v)| Pending { name: n.clone(), shape: shape.clone(), fill: Box::new(move || Ok(v.clone())) })
        .collect();
    let write = || -> Result<()> {
        write_f32_safetensors_with(&tmp, pending, metadata)?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_order_values_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.safetensors");
        let t = vec![("z".to_string(), vec![2, 1], vec![1.0f32, -2.5]), ("a".to_string(), vec![1], vec![3.0])];
        let meta = BTreeMap::from([("k".to_string(), "v".to_string())]);
        write_safetensors_f32(&p, &t, &meta).unwrap();
        let (back, m) = read_safetensors_f32(&p).unwrap();
        assert_eq!(back, t);
        assert_eq!(m.get("k").map(String::as_str), Some("v"));
        assert_eq!(m.get("format").map(String::as_str), Some("pt"));
        let bytes = std::fs::read(&p).unwrap();
        write_safetensors_f32(&p, &t, &meta).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), bytes);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
