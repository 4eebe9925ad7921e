//! `cargo xtask setup`: the native runtimes (libtorch for tch, ONNX Runtime for ort) from pinned PyPI wheels in a
//! project-local virtualenv, plus stable paths to them that `.cargo/config.toml` and xtask hand to cargo.
//!
//! Registry-only and idempotent: a stamp records what was installed, so a second run costs a few file checks.

use anyhow::{Context, Result, ensure};
use std::path::{Path, PathBuf};

use crate::venv::ensure_venv;

/// The wheels, all installed with `--no-deps` (DESIGN §10). tch 0.26 needs exactly PyTorch 2.13.0; the PyPI wheel is a
/// CUDA build whose CPU library still needs the CUDA runtime and CUPTI sonames, hence the two small nvidia wheels.
pub const WHEELS: &[&str] =
    &["torch==2.13.0", "nvidia-cuda-runtime==13.0.96", "nvidia-cuda-cupti==13.0.85", "onnxruntime==1.31.1"];

/// The ONNX Runtime shared library inside the `onnxruntime` wheel (exports `OrtGetApiBase`; ort `api-31`).
const ORT_LIB: &str = "onnxruntime/capi/libonnxruntime.so.1.31.1";

/// The file in the virtualenv that records which wheels a completed setup installed.
const STAMP: &str = "lsn-setup.txt";

/// Where the runtimes live in a checkout: `.venv/` (ignored by git) with stable links under `.venv/lsn/`.
#[derive(Debug, Clone)]
pub struct Runtimes {
    venv: PathBuf,
}

impl Runtimes {
    pub fn at(root: &Path) -> Self {
        Self { venv: root.join(".venv") }
    }

    /// `LIBTORCH`: the torch package directory (`include/`, `lib/`), through a link that does not name the Python
    /// version, so `.cargo/config.toml` can point at it.
    pub fn libtorch(&self) -> PathBuf {
        self.links().join("libtorch")
    }

    /// `ORT_DYLIB_PATH`: the ONNX Runtime library, through a stable link.
    pub fn onnxruntime(&self) -> PathBuf {
        self.links().join("libonnxruntime.so")
    }

    fn links(&self) -> PathBuf {
        self.venv.join("lsn")
    }

    fn stamp(&self) -> PathBuf {
        self.venv.join(STAMP)
    }

    /// Whether a previous setup installed exactly [`WHEELS`] and its links still resolve.
    fn is_ready(&self) -> bool {
        std::fs::read_to_string(self.stamp()).ok().as_deref() == Some(WHEELS.join("\n").as_str())
            && self.libtorch().join("lib/libtorch_cpu.so").is_file()
            && self.onnxruntime().is_file()
    }
}

/// A virtualenv's site-packages (`lib/pythonX.Y/site-packages`).
pub fn site_packages(venv: &Path) -> Result<PathBuf> {
    let lib = venv.join("lib");
    let entries = std::fs::read_dir(&lib).with_context(|| format!("reading {}", lib.display()))?;
    for entry in entries {
        let sp = entry?.path().join("site-packages");
        if sp.is_dir() {
            return Ok(sp);
        }
    }
    anyhow::bail!(
        "{} holds no pythonX.Y/site-packages; delete {} and rerun this command",
        lib.display(),
        venv.display()
    )
}

/// (Re)links `link` → `target`.
fn relink(target: &Path, link: &Path) -> Result<()> {
    ensure!(target.exists(), "{} is missing after installing the wheels", target.display());
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(link).with_context(|| format!("removing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} → {}", link.display(), target.display()))
}

/// Installs the wheels into `root/.venv` unless a previous run already did.
pub fn install(root: &Path, python: &str) -> Result<Runtimes> {
    let rt = Runtimes::at(root);
    if rt.is_ready() {
        return Ok(rt);
    }
    eprintln!("setup: installing the native runtimes into {} ({})", rt.venv.display(), WHEELS.join(", "));
    let args: Vec<&str> = ["--no-deps"].into_iter().chain(WHEELS.iter().copied()).collect();
    ensure_venv(&rt.venv, python, &args, STAMP, &WHEELS.join("\n"))?;
    let sp = site_packages(&rt.venv)?;
    std::fs::create_dir_all(rt.links())?;
    relink(&sp.join("torch"), &rt.libtorch())?;
    relink(&sp.join(ORT_LIB), &rt.onnxruntime())?;
    ensure!(rt.is_ready(), "setup finished but {} is incomplete", rt.venv.display());
    eprintln!("setup: LIBTORCH={} ORT_DYLIB_PATH={}", rt.libtorch().display(), rt.onnxruntime().display());
    Ok(rt)
}
