//! An export's `weights.bin` mapped once per model and handed to every CPU session as shared initializers: ONNX
//! Runtime then packs each GEMM weight once for all of the model's sessions and copies no weight into any of them.
//!
//! Why (heaptrack, `lsn capture` on Gemma-3-270M, three body sessions): each session packed its own 391 MB of GEMM
//! weights although all were given one prepacked-weights container — ORT caches a packed weight in the container only
//! when the initializer is a shared one (`AddInitializer`); a weight the session loads itself is packed per session.
//! Each session also mapped the embedding on its own, so the rows a pass touched were resident once per session.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::Arc;

use memmap2::Mmap;
use ort::AsPointer;
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::value::DynValue;

use crate::cache::ExportDir;
use crate::error::{Context, Error, Result};
use crate::export::WEIGHTS_FILE;

/// Every tensor of one export, each an ORT tensor viewing the one read-only mapping of `weights.bin`.
pub(crate) struct SharedWeights {
    /// `(name, tensor)`; declared before `map`, so the views drop before the mapping they point into.
    values: Vec<(String, Arc<DynValue>)>,
    map: Mmap,
}

impl SharedWeights {
    /// Maps `weights.bin` of `export` and wraps each tensor of its manifest (`ExportDir::ensure` has checked that each
    /// lies inside the file).
    pub(crate) fn map(export: &ExportDir) -> Result<Self> {
        let path = export.dir.join(WEIGHTS_FILE);
        let file = std::fs::File::open(&path).map_err(|err| Error::Io { path: path.clone(), err })?;
        // SAFETY: the export directory is written once under a temporary name and renamed into place; nothing writes
        // to `weights.bin` afterwards (a changed checkpoint gets a new directory), so the mapping does not change.
        let map = unsafe { Mmap::map(&file) }.map_err(|err| Error::Io { path: path.clone(), err })?;
        let info = MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Arena, MemoryType::Default)
            .during(|| "describing CPU memory".into())?;
        // Kept by each value as `from_ptr` asks; it never frees the data, which the value does not own.
        let allocator = Allocator::default();
        let api = ort::api();
        let mut values = Vec::new();
        for (name, shape, offset) in export.tensors() {
            let len = 4 * shape.iter().product::<usize>();
            let bytes = map.get(offset as usize..offset as usize + len).ok_or_else(|| {
                Error::Export(format!(
                    "{name} lies beyond the end of {}; delete {}",
                    path.display(),
                    export.dir.display()
                ))
            })?;
            let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
            let mut ptr = std::ptr::null_mut();
            // SAFETY: `bytes` is `len` bytes of the mapping, 4 KiB-aligned (the export aligns every tensor), which
            // outlives the value (field order above); ORT only reads initializers, so the read-only mapping is never
            // written through the `*mut` it asks for; `dims` is live for the call.
            unsafe {
                ort::Error::result_from_status((api.CreateTensorWithDataAsOrtValue)(
                    info.ptr(),
                    bytes.as_ptr().cast_mut().cast::<c_void>(),
                    len,
                    dims.as_ptr(),
                    dims.len(),
                    ort::sys::ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
                    &mut ptr,
                ))
            }
            .during(|| format!("wrapping weight {name}"))?;
            let ptr = NonNull::new(ptr).ok_or_else(|| Error::Export(format!("ORT gave no tensor for {name}")))?;
            // SAFETY: `ptr` is a tensor value just created, owned by nothing else; the value releases it on drop.
            let value = unsafe { DynValue::from_ptr(ptr, Some(&allocator)) };
            values.push((name.to_owned(), Arc::new(value)));
        }
        Ok(Self { values, map })
    }

    /// `(name, tensor)` of every weight, to add to a session (a name its graph does not use is ignored).
    pub(crate) fn values(&self) -> &[(String, Arc<DynValue>)] {
        &self.values
    }

    /// Drops the mapping's pages from this process's resident set. A new session reads every weight once to pack
    /// it; afterwards only the embedding's gathered rows are read again, from the page cache.
    pub(crate) fn release_pages(&self) {
        // SAFETY: a read-only mapping of a file: dropped pages are read back from the file on the next access, so no
        // data is lost and no reference into the mapping sees a change.
        if let Err(e) = unsafe { self.map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) } {
            tracing::debug!("madvise(DONTNEED) on the ONNX weights failed: {e}");
        }
    }
}
