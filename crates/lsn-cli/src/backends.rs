//! The backends compiled into this binary, chosen by name with `--backend`.

use anyhow::{Result, bail};
use lsn_core::Backend;

/// Names of the backends this build includes.
pub fn available() -> Vec<&'static str> {
    [cfg!(feature = "candle").then_some("candle")].into_iter().flatten().collect()
}

/// The backend called `name`.
pub fn by_name(name: &str) -> Result<Box<dyn Backend>> {
    match name {
        #[cfg(feature = "candle")]
        "candle" => Ok(Box::new(lsn_backend_candle::CandleBackend)),
        other => bail!("backend {other:?} is not part of this build (available: {})", available().join(", ")),
    }
}
