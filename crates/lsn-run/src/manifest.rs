//! `RUN/run.json`: what a run directory holds — the one model whose results it keeps (by content identity) and a
//! record per stage output (its configuration and that configuration's hash), so that no stage mixes inputs of
//! different models or configurations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lsn_core::ModelIdentity;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The manifest's file name inside a run directory.
pub const MANIFEST_FILE: &str = "run.json";
/// Version of the manifest layout.
pub const MANIFEST_FORMAT: u32 = 1;

/// The model of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunModel {
    /// The model as the user first named it (registry name or directory).
    pub name: String,
    #[serde(flatten)]
    pub identity: ModelIdentity,
}

/// One stage output's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// sha256 of `config` (serialised as JSON).
    pub config_sha256: String,
    /// What the stage was asked to do: every setting that changes its result.
    pub config: serde_json::Value,
    /// The files it wrote, relative to the run directory.
    pub outputs: Vec<String>,
    /// `complete`, or a stage-specific partial state (e.g. `pass 1 of shard 0/4`).
    pub state: String,
}

impl StageRecord {
    /// A record of `config` (its hash computed here).
    pub fn new(config: serde_json::Value, outputs: Vec<String>, state: impl Into<String>) -> StageRecord {
        let config_sha256 = lsn_core::sha256_hex(config.to_string().as_bytes());
        StageRecord { config_sha256, config, outputs, state: state.into() }
    }
}

/// The content of `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<RunModel>,
    /// Stage records by key, e.g. `capture/en`, `select/set1/lape-mondal`.
    #[serde(default)]
    pub stages: BTreeMap<String, StageRecord>,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest { format: MANIFEST_FORMAT, model: None, stages: BTreeMap::new() }
    }
}

impl Manifest {
    /// Reads `dir/run.json`; an absent file is an empty manifest.
    pub(crate) fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let bad = |reason: String| Error::Manifest { path: path.clone(), reason };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::default()),
            Err(e) => return Err(bad(e.to_string())),
        };
        let m: Manifest = serde_json::from_str(&text).map_err(|e| bad(format!("not a run manifest: {e}")))?;
        if m.format != MANIFEST_FORMAT {
            return Err(bad(format!("format {} but this lsn reads format {MANIFEST_FORMAT}", m.format)));
        }
        Ok(m)
    }

    pub(crate) fn write(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Manifest { path: path.clone(), reason: e.to_string() })?;
        lsn_core::write_atomic(&path, &bytes).map_err(|e| Error::io(&path, e))?;
        Ok(path)
    }
}
