//! The process's one ONNX Runtime environment (ort allows one per process; tests run as threads of one process) and
//! sessions built on it: CPU EP with one intra-op thread per core, or the CUDA EP with feature `cuda`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lsn_core::Device;
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, PrepackedWeights};

use crate::error::{Context, Error, Result};

static ENV: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();

/// The libonnxruntime to load: `$ORT_DYLIB_PATH`, else the one `cargo xtask setup` installed when this was built.
pub(crate) fn dylib_path() -> std::result::Result<PathBuf, String> {
    let path = std::env::var_os("ORT_DYLIB_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| option_env!("LSN_ORT_DYLIB").map(PathBuf::from))
        .ok_or_else(|| {
            "no ONNX Runtime library: run `cargo xtask setup` (installs onnxruntime==1.31.1 into .venv) and rebuild, \
             or set ORT_DYLIB_PATH to a libonnxruntime.so of version 1.31"
                .to_owned()
        })?;
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "the ONNX Runtime library {} does not exist: run `cargo xtask setup`, or set ORT_DYLIB_PATH to a \
             libonnxruntime.so of version 1.31",
            path.display()
        ))
    }
}

/// The process-wide environment, created on first use.
pub(crate) fn environment() -> Result<&'static Environment> {
    let env = ENV.get_or_init(|| {
        let path = dylib_path()?;
        ort::init_from(&path)
            .map_err(|e| format!("loading ONNX Runtime from {}: {e}", path.display()))?
            .with_name("lsn")
            .build()
            .map_err(|e| format!("creating the ONNX Runtime environment: {e}"))
    });
    env.as_ref().map_err(|e| Error::Runtime { during: "starting ONNX Runtime".into(), message: e.clone() })
}

/// Intra-op threads: one per available core.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A session over the graph at `path` on `device`, sharing prepacked weights with the model's other sessions.
pub(crate) fn session(path: &Path, device: Device, prepacked: &PrepackedWeights) -> Result<Session> {
    let what = || format!("loading {} into ONNX Runtime", path.display());
    let env = environment()?;
    let builder = Session::builder(env)
        .during(what)?
        .with_optimization_level(GraphOptimizationLevel::All)
        .during(what)?
        .with_intra_threads(threads())
        .during(what)?
        .with_inter_threads(1)
        .during(what)?
        .with_parallel_execution(false)
        .during(what)?
        .with_prepacked_weights(prepacked)
        .during(what)?;
    let mut builder = match device {
        // No arena and no memory pattern on the CPU: with them, each session kept its own ~1 GB block of activation
        // buffers across runs (lsn capture, Gemma-3-270M, two body sessions: peak RSS 4.2 GB; without: 2.5 GB, at
        // the same tokens/s). An allocation per tensor costs little next to the GEMMs of a 512-token row.
        Device::Cpu => builder
            .with_memory_pattern(false)
            .during(what)?
            .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(false).build()])
            .during(what)?,
        Device::Cuda(ordinal) => cuda(builder, ordinal)?,
    };
    builder.commit_from_file(path).during(what)
}

#[cfg(feature = "cuda")]
fn cuda(
    builder: ort::session::builder::SessionBuilder,
    ordinal: usize,
) -> Result<ort::session::builder::SessionBuilder> {
    // TF32 matmuls (ORT's default on Ampere and later) move logits by ~6e-3 on the tiny models: keep f32, as the
    // other backends and the goldens do.
    let ep = ort::ep::CUDA::default().with_device_id(ordinal as i32).with_tf32(false).build().error_on_failure();
    builder.with_execution_providers([ep]).during(|| {
        format!(
            "enabling the CUDA execution provider on device {ordinal} (needs onnxruntime-gpu==1.31.1's library, its \
             CUDA/cuDNN libraries and a GPU)"
        )
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda(_: ort::session::builder::SessionBuilder, ordinal: usize) -> Result<ort::session::builder::SessionBuilder> {
    Err(unsupported_cuda(ordinal).into())
}

/// Why CUDA device `ordinal` cannot be used by this build.
pub(crate) fn unsupported_cuda(ordinal: usize) -> lsn_core::Error {
    lsn_core::Error::Unsupported {
        backend: crate::NAME,
        capability: format!(
            "CUDA device {ordinal}: {}",
            if cfg!(feature = "cuda") {
                "the CUDA execution provider is not available (install onnxruntime-gpu==1.31.1 with its CUDA and cuDNN \
                 libraries and point ORT_DYLIB_PATH at its libonnxruntime.so)"
            } else {
                "this build of the ort backend has no CUDA support (rebuild with feature `cuda` on a machine with \
                 onnxruntime-gpu==1.31.1; use the CPU otherwise)"
            }
        ),
    }
}

/// Whether the CUDA execution provider can run here (always false without feature `cuda`).
pub(crate) fn cuda_available() -> bool {
    #[cfg(feature = "cuda")]
    {
        use ort::ep::ExecutionProvider;
        environment().is_ok() && ort::ep::CUDA::is_available().unwrap_or(false)
    }
    #[cfg(not(feature = "cuda"))]
    false
}
