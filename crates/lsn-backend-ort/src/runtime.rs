//! The process's one ONNX Runtime environment (ort allows one per process; tests run as threads of one process), its
//! one CPU memory arena shared by every CPU session, and sessions built on it: CPU EP with one intra-op thread per
//! core, or the CUDA EP with feature `cuda`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use lsn_core::Device;
use ort::AsPointer;
use ort::environment::Environment;
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, PrepackedWeights};
use ort::value::DynValue;

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
            .and_then(|env| {
                register_cpu_arena(&env).map_err(|e| format!("registering the shared CPU memory arena: {e}"))?;
                Ok(env)
            })
    });
    env.as_ref().map_err(|e| Error::Runtime { during: "starting ONNX Runtime".into(), message: e.clone() })
}

/// Registers one arena allocator for CPU memory with the environment; CPU sessions take it (`with_env_allocators`)
/// instead of each keeping its own.
///
/// Why (measured, Gemma-3-270M, 4 × 512 tokens): with no arena every tensor comes from glibc's malloc, whose dynamic
/// mmap threshold soon serves the 4–16 MB activations from its heaps, and those heaps keep what a pass freed (a bare
/// ORT process holding two body sessions: 1.4 GB kept after the runs, peak RSS 3.0 GB; forcing mmap returned it at
/// 3.3× the time per pass, from page faults). One arena per session keeps one high-water mark per session; one for
/// all sessions keeps one. The capture bench (shared weights, runs of ≤ 512 positions): peak RSS 1693 MiB with
/// malloc, 1355 MiB with this arena, at the same tokens/s. It grows by exactly what is asked (`arena_extend_strategy`
/// 1), so its high-water mark is the largest run's working set.
fn register_cpu_arena(env: &Environment) -> ort::Result<()> {
    let info = MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Arena, MemoryType::Default)?;
    let api = ort::api();
    let keys = [c"arena_extend_strategy".as_ptr()];
    let values = [1_usize];
    let mut cfg = std::ptr::null_mut();
    // SAFETY: `keys` and `values` are arrays of the length passed, the keys NUL-terminated strings that outlive the
    // call; `cfg` receives a new arena config on success.
    unsafe { ort::Error::result_from_status((api.CreateArenaCfgV2)(keys.as_ptr(), values.as_ptr(), 1, &mut cfg)) }?;
    // SAFETY: `env` and `info` are live objects of this API; `cfg` was just created and is released right after (the
    // allocator copies what it needs from it).
    let registered = unsafe {
        ort::Error::result_from_status((api.CreateAndRegisterAllocator)(env.ptr().cast_mut(), info.ptr(), cfg))
    };
    // SAFETY: `cfg` came from CreateArenaCfgV2 and is released once.
    unsafe { (api.ReleaseArenaCfg)(cfg) };
    registered
}

/// Intra-op threads: one per available core.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A session over the graph at `path` on `device` whose initializers named in `shared` are those values (the graph's
/// own external data is then not loaded for them); ORT packs each shared GEMM weight once into `prepacked`, for all
/// the model's sessions.
pub(crate) fn session(
    path: &Path,
    device: Device,
    prepacked: &PrepackedWeights,
    shared: &[(String, Arc<DynValue>)],
) -> Result<Session> {
    let what = || format!("loading {} into ONNX Runtime", path.display());
    let env = environment()?;
    let mut builder = Session::builder(env)
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
    for (name, value) in shared {
        builder = builder.with_initializer(name, Arc::clone(value)).during(what)?;
    }
    let mut builder = match device {
        // The environment's one CPU arena, and no memory pattern: with a pattern, each session kept its own ~1 GB
        // block of activation buffers across runs (lsn capture, Gemma-3-270M, two body sessions: peak RSS 4.2 GB).
        Device::Cpu => builder
            .with_memory_pattern(false)
            .during(what)?
            .with_env_allocators()
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
                "this build of the ort backend has no CUDA support (build with feature ort-cuda and point \
                 ORT_DYLIB_PATH at onnxruntime-gpu==1.31.1's library, as `cargo xtask gpu-check` does; use the CPU \
                 otherwise)"
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
