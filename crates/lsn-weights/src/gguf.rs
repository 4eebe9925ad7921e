//! Opening a GGUF file: candle's parser reads the header, metadata and tensor table; tensor bytes are read from a
//! memory map after checking that every tensor lies inside the file.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{Content, Value};

use crate::dequant::{GgufDType, dequantize};
use crate::{Error, Result};

/// One tensor of a GGUF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensor {
    pub name: String,
    pub dtype: GgufDType,
    /// Row-major shape, outermost first (GGUF lists dims fastest-first: `ne = [in, out]` is shape `[out, in]`).
    pub shape: Vec<usize>,
    /// Absolute byte offset of the data in the file.
    pub start: usize,
    pub n_bytes: usize,
}

impl GgufTensor {
    pub fn n_elems(&self) -> usize {
        self.shape.iter().product()
    }
}

/// An open GGUF file.
#[derive(Debug)]
pub struct Gguf {
    path: PathBuf,
    map: memmap2::Mmap,
    metadata: HashMap<String, Value>,
    tensors: BTreeMap<String, GgufTensor>,
}

fn our_dtype(name: &str, d: GgmlDType) -> Result<GgufDType> {
    Ok(match d {
        GgmlDType::F32 => GgufDType::F32,
        GgmlDType::F16 => GgufDType::F16,
        GgmlDType::BF16 => GgufDType::BF16,
        GgmlDType::Q4_0 => GgufDType::Q4_0,
        GgmlDType::Q4_1 => GgufDType::Q4_1,
        GgmlDType::Q5_0 => GgufDType::Q5_0,
        GgmlDType::Q5_1 => GgufDType::Q5_1,
        GgmlDType::Q8_0 => GgufDType::Q8_0,
        GgmlDType::Q4K => GgufDType::Q4K,
        GgmlDType::Q5K => GgufDType::Q5K,
        GgmlDType::Q6K => GgufDType::Q6K,
        other => {
            return Err(Error::UnsupportedQuant { tensor: name.to_owned(), dtype: format!("{other:?}") });
        }
    })
}

impl Gguf {
    /// Opens and validates `path`: the header must parse and every tensor must lie inside the file.
    pub fn open(path: &Path) -> Result<Gguf> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let content = Content::read(&mut BufReader::new(&file)).map_err(|e| {
            // Candle attaches a backtrace when RUST_BACKTRACE is set; the user needs only the message.
            let reason = match e {
                candle_core::Error::WithBacktrace { inner, .. } => inner.to_string(),
                e => e.to_string(),
            };
            if reason.contains("failed to fill whole buffer") || reason.contains("remaining") {
                Error::GgufTruncated { path: path.to_owned(), reason: format!("header cut short ({reason})") }
            } else if reason.contains("unknown dtype") {
                Error::Gguf {
                    path: path.to_owned(),
                    reason: format!(
                        "{reason}: a tensor uses a quantization type lsn cannot read (supported: F32, F16, BF16, \
                         Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K); use a file quantized with one of these"
                    ),
                }
            } else {
                Error::Gguf { path: path.to_owned(), reason: format!("{reason} (is this a GGUF file?)") }
            }
        })?;
        let mut tensors = BTreeMap::new();
        for (name, info) in &content.tensor_infos {
            let dtype = our_dtype(name, info.ggml_dtype)?;
            let shape = info.shape.dims().to_vec();
            let n: usize = shape.iter().product();
            let n_bytes = dtype.bytes_for(n).ok_or_else(|| Error::BadTensorData {
                tensor: name.clone(),
                reason: format!("{n} elements are not whole {} blocks (the file is corrupt)", dtype.name()),
            })?;
            let start = content.tensor_data_offset.checked_add(info.offset);
            let end = start.and_then(|s| s.checked_add(n_bytes as u64));
            match (start, end) {
                (Some(s), Some(e)) if e <= file_len => {
                    let start = usize::try_from(s).map_err(|_| Error::GgufTruncated {
                        path: path.to_owned(),
                        reason: format!("tensor {name} starts at byte {s}, beyond this platform's address space"),
                    })?;
                    tensors.insert(name.clone(), GgufTensor { name: name.clone(), dtype, shape, start, n_bytes });
                }
                _ => {
                    return Err(Error::GgufTruncated {
                        path: path.to_owned(),
                        reason: format!(
                            "tensor {name} needs bytes {}..{} but the file has only {file_len}",
                            start.unwrap_or(u64::MAX),
                            end.unwrap_or(u64::MAX)
                        ),
                    });
                }
            }
        }
        // SAFETY: read-only map; every slice we take was bounds-checked against the length above. A file truncated
        // by another process while mapped would fault, which is the documented hazard of memory maps.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Ok(Gguf { path: path.to_owned(), map, metadata: content.metadata, tensors })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All tensors, ordered by name.
    pub fn tensors(&self) -> impl Iterator<Item = &GgufTensor> {
        self.tensors.values()
    }

    pub fn tensor(&self, name: &str) -> Option<&GgufTensor> {
        self.tensors.get(name)
    }

    /// The raw (quantized) bytes of a tensor.
    pub fn raw(&self, t: &GgufTensor) -> &[u8] {
        &self.map[t.start..t.start + t.n_bytes]
    }

    /// A tensor dequantized to f32, row-major in [`GgufTensor::shape`].
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::Gguf { path: self.path.clone(), reason: format!("has no tensor {name}") })?;
        dequantize(name, t.dtype, self.raw(t), t.n_elems())
    }

    fn meta_err(&self, key: &str, problem: impl Into<String>) -> Error {
        Error::GgufMetadata { path: self.path.clone(), key: key.to_owned(), problem: problem.into() }
    }

    fn typed<'a, T>(&'a self, key: &str, want: &str, f: impl Fn(&'a Value) -> Option<T>) -> Result<Option<T>> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(v) => f(v).map(Some).ok_or_else(|| {
                self.meta_err(
                    key,
                    format!("should be {want} but holds {:?} (the file is not what lsn expects)", v.value_type()),
                )
            }),
        }
    }

    fn required<T>(&self, key: &str, v: Result<Option<T>>) -> Result<T> {
        v?.ok_or_else(|| self.meta_err(key, "is missing (the file lacks metadata this model type needs)"))
    }

    /// An unsigned integer (any integer width), or `None` when absent.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        self.typed(key, "a non-negative integer", |v| match v {
            Value::U8(x) => Some(*x as u64),
            Value::U16(x) => Some(*x as u64),
            Value::U32(x) => Some(*x as u64),
            Value::U64(x) => Some(*x),
            Value::I8(x) => u64::try_from(*x).ok(),
            Value::I16(x) => u64::try_from(*x).ok(),
            Value::I32(x) => u64::try_from(*x).ok(),
            Value::I64(x) => u64::try_from(*x).ok(),
            _ => None,
        })
    }

    pub fn u64(&self, key: &str) -> Result<u64> {
        self.required(key, self.opt_u64(key))
    }

    /// A count or size, as `usize`.
    pub fn usize(&self, key: &str) -> Result<usize> {
        let v = self.u64(key)?;
        usize::try_from(v).map_err(|_| self.meta_err(key, format!("value {v} is too large")))
    }

    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        self.opt_u64(key)?
            .map(|v| usize::try_from(v).map_err(|_| self.meta_err(key, format!("value {v} is too large"))))
            .transpose()
    }

    /// A float. f32 values are widened through their shortest decimal form, so 1e-6 stored as f32 reads as 1e-6.
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        self.typed(key, "a float", |v| match v {
            Value::F32(x) => x.to_string().parse().ok(),
            Value::F64(x) => Some(*x),
            _ => None,
        })
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "a bool", |v| match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        })
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.typed(key, "a string", |v| match v {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        })
    }

    pub fn str(&self, key: &str) -> Result<&str> {
        self.required(key, self.opt_str(key))
    }

    /// An array of strings, or `None` when absent.
    pub fn opt_strings(&self, key: &str) -> Result<Option<Vec<&str>>> {
        self.typed(key, "an array of strings", |v| match v {
            Value::Array(a) => a
                .iter()
                .map(|x| match x {
                    Value::String(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect(),
            _ => None,
        })
    }

    pub fn strings(&self, key: &str) -> Result<Vec<&str>> {
        self.required(key, self.opt_strings(key))
    }

    /// An array of integers (any width), or `None` when absent.
    pub fn opt_i64s(&self, key: &str) -> Result<Option<Vec<i64>>> {
        self.typed(key, "an array of integers", |v| match v {
            Value::Array(a) => a
                .iter()
                .map(|x| match x {
                    Value::I32(i) => Some(*i as i64),
                    Value::U32(i) => Some(*i as i64),
                    Value::I8(i) => Some(*i as i64),
                    Value::U8(i) => Some(*i as i64),
                    Value::I64(i) => Some(*i),
                    _ => None,
                })
                .collect(),
            _ => None,
        })
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.str("general.architecture")
    }
}
