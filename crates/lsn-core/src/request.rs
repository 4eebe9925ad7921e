//! One forward pass as plain data: the `Request` (a batch, the FFN taps to reduce, an optional intervention, the
//! outputs wanted) and its `ForwardOut`. Every backend answers the same request through `Model::run`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Dense, Intervention, Result, TokenBatch};

/// Which FFN value the taps read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TapPoint {
    /// `a = act_fn(gate_proj(x))`, the neuron's activation: what the methods mean (the default).
    #[default]
    Act,
    /// `gate_proj(x)` before the activation, as the paper's code hooked it. Counts of `> 0` are the same at both
    /// points (SiLU and GELU keep the sign); values, quantiles and thresholds are not.
    GatePre,
}

impl TapPoint {
    pub const ALL: [TapPoint; 2] = [TapPoint::Act, TapPoint::GatePre];

    /// The name used on the command line and in statistics metadata.
    pub fn name(self) -> &'static str {
        match self {
            TapPoint::Act => "act",
            TapPoint::GatePre => "gate_pre",
        }
    }

    pub fn parse(s: &str) -> Option<TapPoint> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }
}

impl std::fmt::Display for TapPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which per-neuron FFN statistics to reduce over the batch's real tokens, and at which point of the FFN
/// (`TapPoint`: the activation `act_fn(gate_proj(x))`, or `gate_proj(x)` before it).
///
/// The reductions themselves are defined once in [`crate::taps::TapReducer`]; a backend may run that host reducer on
/// the values or compute the same numbers on its device. With an intervention, `Act` taps see the overwritten
/// activations; `GatePre` taps read `gate_proj(x)`, which an intervention does not touch.
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
    /// Where the statistics are read.
    pub point: TapPoint,
}

/// No taps, as a `'static` value for requests that reduce nothing.
pub static NO_TAPS: Taps = Taps::NONE;

impl Taps {
    pub const NONE: Taps =
        Taps { count_pos: false, moments: false, quantiles: false, above: None, point: TapPoint::Act };
    pub const COUNT_POS: Taps = Taps { count_pos: true, ..Taps::NONE };

    /// Pass 1 of capture: positive counts, moments and per-batch quantiles.
    pub fn pass1() -> Taps {
        Taps { count_pos: true, moments: true, quantiles: true, ..Taps::NONE }
    }

    /// Pass 2 of capture: counts above per-neuron thresholds `[n, layers × intermediate]`.
    pub fn pass2(thresholds: Arc<Vec<f32>>) -> Taps {
        Taps { above: Some(thresholds), ..Taps::NONE }
    }

    /// The same statistics read at `point`.
    pub fn at(mut self, point: TapPoint) -> Taps {
        self.point = point;
        self
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

/// Where the final hidden state is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenAt {
    /// At each row's last real token: `[rows, hidden]` (padding cannot move it).
    LastReal,
    /// At every position: `[rows, seq_len, hidden]`.
    All,
}

/// What a forward pass returns besides the taps; any combination. With nothing asked for, the LM head and the final
/// norm are skipped (capture).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outputs {
    /// Logits of every position, `[rows, seq_len, vocab]`.
    pub logits: bool,
    /// Logits at each row's last real token, `[rows, vocab]` (what generation and scoring of a prompt need).
    pub last_logits: bool,
    /// Per-token negative log-likelihood of the next token, `[rows, seq_len − 1]`:
    /// `nll[r, t] = −log p(ids[r, t+1] | ids[r, ..=t])`, 0 where `t + 1` is padding.
    pub nll: bool,
    /// The final-normed hidden state (the LM head's input).
    pub hidden: Option<HiddenAt>,
    /// Per layer, the sum over the batch's real tokens of the layer's output — the residual stream the next layer
    /// reads, any steering vector included — in f64, `[layers, hidden]`: what difference-of-means steering vectors
    /// are made of.
    pub layer_sums: bool,
}

impl Outputs {
    pub const NONE: Outputs =
        Outputs { logits: false, last_logits: false, nll: false, hidden: None, layer_sums: false };
    pub const LAYER_SUMS: Outputs = Outputs { layer_sums: true, ..Outputs::NONE };
    pub const LOGITS: Outputs = Outputs { logits: true, ..Outputs::NONE };
    pub const LAST_LOGITS: Outputs = Outputs { last_logits: true, ..Outputs::NONE };
    pub const NLL: Outputs = Outputs { nll: true, ..Outputs::NONE };

    pub const fn hidden(at: HiddenAt) -> Outputs {
        Outputs { hidden: Some(at), ..Outputs::NONE }
    }

    /// Whether anything past the last layer's FFN (the final norm, the head) is needed.
    pub fn needs_hidden(&self) -> bool {
        self.logits || self.last_logits || self.nll || self.hidden.is_some()
    }
}

/// One forward pass.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub batch: &'a TokenBatch,
    /// Which FFN statistics to reduce (capture); [`NO_TAPS`] for none.
    pub taps: &'a Taps,
    /// Neurons overwritten at every position, before the taps and the down projection.
    pub intervention: Option<&'a Intervention>,
    pub outputs: Outputs,
    /// With `Outputs::nll`: per row, the first position whose next-token NLL is wanted; earlier positions are left
    /// 0 and cost no LM-head work (scoring a continuation needs only its own tokens). `None`: every position.
    pub nll_from: Option<&'a [usize]>,
}

impl<'a> Request<'a> {
    /// `outputs` of `batch`, with no taps and no intervention.
    pub fn new(batch: &'a TokenBatch, outputs: Outputs) -> Self {
        Self { batch, taps: &NO_TAPS, intervention: None, outputs, nll_from: None }
    }

    /// Computes the next-token NLL of row `r` only from position `from[r]` on (see [`Request::nll_from`]).
    pub fn nll_from(mut self, from: &'a [usize]) -> Self {
        self.nll_from = Some(from);
        self
    }

    pub fn taps(mut self, taps: &'a Taps) -> Self {
        self.taps = taps;
        self
    }

    pub fn intervene(mut self, intervention: Option<&'a Intervention>) -> Self {
        self.intervention = intervention;
        self
    }
}

/// The result of one forward pass: exactly what the request asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ForwardOut {
    pub logits: Option<Dense>,
    pub last_logits: Option<Dense>,
    pub nll: Option<Dense>,
    pub hidden: Option<Dense>,
    pub taps: Option<TapStats>,
    /// `[layers, hidden]` (f64), with `Outputs::layer_sums`.
    pub layer_sums: Option<Vec<f64>>,
}
