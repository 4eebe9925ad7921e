//! The backend boundary: `Backend` loads a HF checkpoint directory into a `Model`; `Model::forward` runs one batch.
//!
//! Both traits are object-safe and exchange plain data only, so one suite can run against `&dyn Backend`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Dense, Intervention, ModelConfig, Result, TokenBatch};

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Device {
    #[default]
    Cpu,
    Cuda(usize),
}

/// A HF checkpoint directory: `config.json`, `model.safetensors` (or shards + index), `tokenizer.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    pub dir: PathBuf,
}

impl ModelFiles {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn tokenizer(&self) -> PathBuf {
        self.dir.join("tokenizer.json")
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// How to load a model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    pub device: Device,
}

/// What a backend can do; the harness turns missing capabilities into recorded skips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Devices this build can run on.
    pub devices: Vec<Device>,
    /// Whether `forward` can return per-neuron FFN statistics.
    pub taps: bool,
    /// Whether `forward_intervened` is available (test-time overwrites of chosen neurons).
    pub intervene: bool,
    /// Whether the backend can take gradient steps (masked LoRA training); inference-only backends say no.
    pub train: bool,
}

/// Which per-neuron FFN statistics of `a = act_fn(gate_proj(x))` to reduce over the batch's real tokens.
///
/// The reductions themselves are defined once in [`crate::taps::TapReducer`]; a backend may run that host reducer on
/// the activations or compute the same numbers on its device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Taps {
    /// `count_pos[l, j]` = number of tokens with `a[l, j] > 0`.
    pub count_pos: bool,
    /// `sum[l, j]` = Σ a and `sum_sq[l, j]` = Σ a², accumulated in f64.
    pub moments: bool,
    /// The batch's quantiles of `a[l, j]` over its tokens at [`crate::taps::QUANTILES`] (torch.quantile's linear rule).
    pub quantiles: bool,
    /// Thresholds `[n_thresholds, layers × intermediate]`: `count_above[s, l, j]` = #tokens with `a[l, j] > thr[s, l, j]`.
    pub above: Option<Arc<Vec<f32>>>,
}

impl Taps {
    pub const NONE: Taps = Taps { count_pos: false, moments: false, quantiles: false, above: None };
    pub const COUNT_POS: Taps = Taps { count_pos: true, moments: false, quantiles: false, above: None };

    /// Pass 1 of capture: positive counts, moments and per-batch quantiles.
    pub fn pass1() -> Taps {
        Taps { count_pos: true, moments: true, quantiles: true, above: None }
    }

    /// Pass 2 of capture: counts above per-neuron thresholds `[n, layers × intermediate]`.
    pub fn pass2(thresholds: Arc<Vec<f32>>) -> Taps {
        Taps { above: Some(thresholds), ..Taps::NONE }
    }

    /// How many threshold planes `above` holds for a model of `plane = layers × intermediate` neurons; fails when its
    /// length is not a whole number of planes.
    pub fn n_thresholds(&self, plane: usize) -> Result<usize> {
        match &self.above {
            Some(t) if plane == 0 || !t.len().is_multiple_of(plane) => Err(crate::Error::InvalidBatch(format!(
                "tap thresholds hold {} values, not a multiple of layers × intermediate = {plane}",
                t.len()
            ))),
            Some(t) => Ok(t.len() / plane),
            None => Ok(0),
        }
    }

    pub fn any(&self) -> bool {
        self.count_pos || self.moments || self.quantiles || self.above.is_some()
    }
}

/// Per-neuron statistics of one batch, flat `[layers × intermediate]`, row-major by layer; statistics with several
/// rows (quantiles, thresholds) are `[rows, layers × intermediate]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TapStats {
    pub layers: usize,
    pub intermediate: usize,
    /// Number of real tokens the statistics cover.
    pub n_tokens: u64,
    /// Present when `Taps::count_pos` was asked for.
    pub count_pos: Option<Vec<u64>>,
    /// Σ a, present with `Taps::moments`.
    pub sum: Option<Vec<f64>>,
    /// Σ a², present with `Taps::moments`.
    pub sum_sq: Option<Vec<f64>>,
    /// `[QUANTILES.len(), layers × intermediate]`, present with `Taps::quantiles`.
    pub quantiles: Option<Vec<f32>>,
    /// `[n_thresholds, layers × intermediate]`, present with `Taps::above`.
    pub count_above: Option<Vec<u64>>,
}

/// What `forward` should return besides the taps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Nothing: the LM head is skipped (capture).
    Nothing,
    /// Logits `[rows, seq_len, vocab]`.
    Logits,
    /// Per-token negative log-likelihood of the next token, `[rows, seq_len - 1]`:
    /// `nll[r, t] = −log p(ids[r, t+1] | ids[r, ..=t])`, 0 where `t + 1` is padding. Computed on the device.
    Nll,
}

/// The result of one forward pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ForwardOut {
    pub logits: Option<Dense>,
    pub nll: Option<Dense>,
    pub taps: Option<TapStats>,
}

/// A framework that can load models.
pub trait Backend: Send + Sync {
    /// Short name: `candle`, `tch`, `ort`.
    fn name(&self) -> &'static str;
    fn capabilities(&self) -> Capabilities;
    /// Loads a HF checkpoint directory. The config is validated against the weights' shapes.
    fn load(&self, files: &ModelFiles, opts: &LoadOptions) -> Result<Box<dyn Model>>;
}

/// A loaded model.
pub trait Model: Send {
    fn config(&self) -> &ModelConfig;
    /// One forward pass over `batch`, reducing the requested `taps` over its real tokens.
    fn forward(&mut self, batch: &TokenBatch, taps: &Taps, want: Want) -> Result<ForwardOut>;
    /// `forward` with `intervention` applied at every position (the taps see the overwritten activations). Backends
    /// without test-time interventions (see `Capabilities::intervene`) return `Error::Unsupported`.
    fn forward_intervened(
        &mut self,
        batch: &TokenBatch,
        taps: &Taps,
        intervention: &Intervention,
        want: Want,
    ) -> Result<ForwardOut>;
}
