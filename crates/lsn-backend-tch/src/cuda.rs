//! libtorch's CUDA half, loaded when CUDA is first asked about: `libtorch_cuda.so` registers the CUDA kernels and
//! hooks with libtorch when it is loaded, and nothing in tch calls into it, so the linker's `--as-needed` drops it
//! from every binary. Loading it at run time keeps one `lsn` binary for the CPU (where the CUDA libraries of the
//! torch wheel are absent and the load fails harmlessly) and the GPU (where `cargo xtask gpu-check` installs them
//! beside libtorch, which finds them through its own rpath).
//!
//! It must be loaded before libtorch is first asked about CUDA: libtorch settles its CUDA hooks once per process.

use std::sync::OnceLock;

/// The library, by the name libtorch's `lib/` holds it under (found through the binary's rpath to that folder).
const LIBRARY: &str = "libtorch_cuda.so";

/// Loads [`LIBRARY`] once per process and keeps it loaded; the loader's error when it could not be loaded (the
/// linked libtorch is a CPU build, or the CUDA libraries it needs are not installed).
pub(crate) fn load() -> Result<(), &'static str> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
            // SAFETY: loading libtorch_cuda runs its static initialisers, which register CUDA kernels and hooks with
            // the libtorch this binary already links (the same `lib/` folder, so the same build); it is never
            // unloaded, so no symbol it registered can dangle.
            match unsafe { Library::open(Some(LIBRARY), RTLD_NOW | RTLD_GLOBAL) } {
                Ok(lib) => {
                    std::mem::forget(lib);
                    Ok(())
                }
                // libloading says only "dlopen failed"; the loader's own words are its source.
                Err(e) => Err(std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string())),
            }
        })
        .as_ref()
        .map(|_| ())
        .map_err(String::as_str)
}

/// How many CUDA devices libtorch sees, after [`load`]; why there are none when it could not be loaded.
pub(crate) fn device_count() -> Result<usize, &'static str> {
    load()?;
    Ok(if tch::Cuda::is_available() { tch::Cuda::device_count().max(0) as usize } else { 0 })
}

#[cfg(test)]
mod tests {
    /// On a machine without the torch wheel's CUDA libraries (CI), loading fails with the loader's own reason, which
    /// names the library; where they are installed it loads. Either way a second call gives the same answer.
    #[test]
    fn loading_libtorch_cuda_gives_a_reason_or_succeeds_and_is_settled_once() {
        let first = super::load();
        if let Err(why) = first {
            assert!(why.contains(".so"), "the loader's reason names no library: {why}");
        }
        assert_eq!(super::load(), first);
        assert!(super::device_count().is_ok() == first.is_ok());
    }
}
