//! Running commands, and project-local Python virtualenvs that are (re)installed only when what they should hold
//! changes: the stamp file records the install that completed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};

/// Runs `cmd`, echoing it; a non-zero exit is an error.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {cmd:?}");
    let status = cmd.status().with_context(|| format!("cannot start {cmd:?}"))?;
    ensure!(status.success(), "{cmd:?} failed ({status})");
    Ok(())
}

/// The virtualenv `venv` with `pip install <pip_args>` done, unless `venv/<stamp_name>` already holds `stamp`.
/// Returns its python.
pub fn ensure_venv(venv: &Path, python: &str, pip_args: &[&str], stamp_name: &str, stamp: &str) -> Result<PathBuf> {
    let py = venv.join("bin/python");
    let stamp_path = venv.join(stamp_name);
    if py.is_file() && std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp) {
        return Ok(py);
    }
    if !py.is_file() {
        run(Command::new(python).args(["-m", "venv"]).arg(venv))
            .context("creating the virtualenv (needs Python 3 with the venv module)")?;
    }
    run(Command::new(&py).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args(pip_args))
        .context("installing from PyPI (needs access to the PyPI registry)")?;
    std::fs::write(&stamp_path, stamp).with_context(|| format!("writing {}", stamp_path.display()))?;
    Ok(py)
}
