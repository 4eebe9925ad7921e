//! `Engine`: the part of a model a backend implements — the decoder body with one FFN hook (intervention, then taps),
//! one LM-head chunk, and one key/value-cached step. Everything above it is written once here: request validation,
//! the head dispatch (full logits, last-position logits, next-token NLL, hidden states, chunk by chunk so memory
//! stays bounded) and, in [`crate::decode`], cached decoding. Every `Engine` is a [`Model`].

use std::any::Any;

use crate::head;
use crate::{
    Adapter, AttentionKind, Dense, Edits, Error, ForwardOut, Gradient, HiddenAt, Intervention, Model, ModelConfig,
    Request, Result, TapStats, Taps, TokenBatch, TrainBatch,
};

/// One pass of the decoder body over a validated batch.
#[derive(Debug, Clone, Copy)]
pub struct BodyPass<'a> {
    pub batch: &'a TokenBatch,
    /// Reduced over the batch's real tokens at `taps.point`; [`crate::NO_TAPS`] for none.
    pub taps: &'a Taps,
    /// Applied at every position of every layer: to `act_fn(gate_proj(x))` before the taps and the down projection,
    /// and to each layer's output.
    pub edits: Option<&'a Edits>,
    /// Whether the final-normed hidden states are needed; without them the body may stop after the last tap.
    pub hidden: bool,
    /// Whether to sum each layer's output over the real tokens ([`crate::Outputs::layer_sums`]).
    pub layer_sums: bool,
}

/// What the body returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BodyOut {
    /// Present exactly when `pass.taps.any()`.
    pub taps: Option<TapStats>,
    /// The final-normed hidden states `[rows · seq_len, hidden]`, present exactly when `pass.hidden`.
    pub hidden: Option<Vec<f32>>,
    /// `[layers × hidden]`, present exactly when `pass.layer_sums`.
    pub layer_sums: Option<Vec<f64>>,
}

/// The RoPE tables and attention mask of one attention kind for a cached step, computed by lsn-core
/// ([`crate::decode`]) from each slot's position, so engines apply them and decide nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPositions {
    pub kind: AttentionKind,
    /// `[rows · len, head_dim / 2]`: cos and sin of position × frequency of each new token.
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
    /// Additive `[rows, len, past + len]`: 0 where new token `i` may attend slot `j`, −∞ elsewhere.
    pub mask: Vec<f32>,
}

/// One cached step: `len` new tokens per row appended after `past` cached slots.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub rows: usize,
    pub len: usize,
    pub past: usize,
    /// `[rows, len]`.
    pub ids: &'a [u32],
    /// One entry per attention kind the model has (global first).
    pub positions: &'a [StepPositions],
    pub edits: Option<&'a Edits>,
    /// Flat indices `r · len + i` of the new tokens whose final-normed hidden state to return, in order.
    pub out: &'a [u32],
}

impl Step<'_> {
    /// The tables and mask of a layer of this kind.
    pub fn of(&self, kind: AttentionKind) -> &StepPositions {
        self.positions.iter().find(|p| p.kind == kind).unwrap_or(&self.positions[0])
    }
}

/// An engine's key/value cache, opaque above the engine (each engine downcasts its own).
pub type KvCache = Box<dyn Any + Send>;

/// What a backend implements. Inputs arrive validated; outputs are plain host data.
pub trait Engine: Send {
    fn config(&self) -> &ModelConfig;
    /// The backend's name, as errors cite it.
    fn backend(&self) -> &'static str;
    /// The decoder body: embeddings, every layer (the FFN hook edits, then taps; the layer's output its vector added), the
    /// final norm.
    fn body(&mut self, pass: &BodyPass<'_>) -> Result<BodyOut>;
    /// One LM-head chunk: the (soft-capped) logits `[n, vocab]` of hidden rows `[n, hidden]`.
    fn head_logits(&mut self, hidden: &[f32]) -> Result<Vec<f32>>;
    /// One LM-head chunk: `−log softmax(logits(hidden[i]))[targets[i]]` for each of the `n` hidden rows, with the
    /// log-sum-exp in f64 (an f32 sum over a 262144-entry vocabulary biases it by about 1e-5).
    fn head_nll(&mut self, hidden: &[f32], targets: &[u32]) -> Result<Vec<f32>>;
    /// An empty key/value cache.
    fn new_cache(&mut self) -> Result<KvCache>;
    /// Appends `step`'s tokens to `cache` (keys and values of every layer) and returns the final-normed hidden states
    /// `[step.out.len(), hidden]` of the new tokens `step.out` names.
    fn step(&mut self, cache: &mut KvCache, step: &Step<'_>) -> Result<Vec<f32>>;
    /// Keeps only rows `rows` (in that order) of `cache`: finished sequences stop costing compute.
    fn keep_rows(&mut self, cache: &mut KvCache, rows: &[usize]) -> Result<()>;
    /// Applies a validated `adapter` in every later body pass and cached step; `None` removes it.
    fn set_adapter(&mut self, adapter: Option<&Adapter>) -> Result<()> {
        let _ = adapter;
        Err(Error::Unsupported {
            backend: self.backend(),
            capability: "unmerged LoRA adapters (merge the adapter into the weights with `lsn merge-adapter` and \
                         load the merged model)"
                .into(),
        })
    }
    /// Loss and gradient of a validated batch under a validated adapter, every adapted linear computing
    /// `x·Wᵀ + (α/r)·(x·Aᵀ)·(B ⊙ M)ᵀ` (`M` the gate's neuron mask) without materialising `W + ΔW`.
    fn gradient(&mut self, adapter: &Adapter, batch: &TrainBatch) -> Result<Gradient> {
        let _ = (adapter, batch);
        Err(Error::Unsupported {
            backend: self.backend(),
            capability: "training (no autograd here: train on tch or candle, then merge the adapter)".into(),
        })
    }
}

/// The engine's own cache type, or an error naming the backend (a cache of another engine was passed).
pub fn downcast_cache<'c, T: 'static>(cache: &'c mut KvCache, backend: &'static str) -> Result<&'c mut T> {
    cache.downcast_mut::<T>().ok_or_else(|| Error::Backend {
        backend,
        message: "a key/value cache of another model was passed to this one".into(),
    })
}

fn missing(backend: &'static str, what: &str) -> Error {
    Error::Backend { backend, message: format!("the engine returned no {what}") }
}

impl<E: Engine> Model for E {
    fn config(&self) -> &ModelConfig {
        Engine::config(self)
    }

    fn backend(&self) -> &'static str {
        Engine::backend(self)
    }

    fn run(&mut self, req: &Request<'_>) -> Result<ForwardOut> {
        let cfg = Engine::config(self);
        let (layers, width, d) = (cfg.num_layers, cfg.intermediate_size, cfg.hidden_size);
        let (vocab, backend) = (cfg.vocab_size, Engine::backend(self));
        let batch = req.batch;
        batch.validate()?;
        batch.check_vocab(vocab)?;
        req.taps.n_thresholds(layers * width)?;
        let edits = req.intervention.map(|iv| Edits::new(iv, cfg)).transpose()?;
        if let Some(from) = req.nll_from
            && from.len() != batch.rows
        {
            return Err(Error::InvalidBatch(format!("nll_from has {} entries for {} rows", from.len(), batch.rows)));
        }
        let outs = req.outputs;
        if !outs.needs_hidden() && !req.taps.any() && !outs.layer_sums {
            return Ok(ForwardOut::default());
        }
        let body = self.body(&BodyPass {
            batch,
            taps: req.taps,
            edits: edits.as_ref(),
            hidden: outs.needs_hidden(),
            layer_sums: outs.layer_sums,
        })?;
        if req.taps.any() != body.taps.is_some() {
            return Err(missing(backend, "tap statistics"));
        }
        if outs.layer_sums != body.layer_sums.as_ref().is_some_and(|s| s.len() == layers * d) {
            return Err(missing(backend, &format!("layer sums of {layers} × {d}")));
        }
        let mut out = ForwardOut { taps: body.taps, layer_sums: body.layer_sums, ..ForwardOut::default() };
        let Some(hidden) = body.hidden else {
            return if outs.needs_hidden() { Err(missing(backend, "hidden states")) } else { Ok(out) };
        };
        let (rows, seq) = (batch.rows, batch.seq_len);
        if hidden.len() != rows * seq * d {
            return Err(missing(backend, &format!("hidden states of {rows} × {seq} positions")));
        }
        let last: Vec<usize> = (0..rows).map(|r| r * seq + batch.lengths[r] - 1).collect();
        let gather = |at: &mut dyn Iterator<Item = usize>| -> Vec<f32> {
            at.flat_map(|p| &hidden[p * d..(p + 1) * d]).copied().collect()
        };
        if outs.logits {
            out.logits = Some(head::chunked_logits(rows, seq, vocab, |start, len| {
                self.head_logits(&hidden[start * d..(start + len) * d])
            })?);
        }
        if outs.last_logits {
            let rows_h = gather(&mut last.iter().copied());
            out.last_logits = Some(
                head::chunked_logits(rows, 1, vocab, |start, len| {
                    self.head_logits(&rows_h[start * d..(start + len) * d])
                })?
                .reshaped(vec![rows, vocab])?,
            );
        }
        if outs.nll {
            out.nll = Some(head::chunked_nll(batch, vocab, req.nll_from, |at, target| {
                let h = gather(&mut at.iter().map(|&p| p as usize));
                let v = self.head_nll(&h, target)?;
                if v.len() != target.len() {
                    return Err(missing(backend, &format!("NLL of {} positions", target.len())));
                }
                Ok(v)
            })?);
        }
        out.hidden = match outs.hidden {
            None => None,
            Some(HiddenAt::LastReal) => Some(Dense::new(vec![rows, d], gather(&mut last.iter().copied()))?),
            Some(HiddenAt::All) => Some(Dense::new(vec![rows, seq, d], hidden)?),
        };
        Ok(out)
    }

    fn decoder<'m>(&'m mut self, intervention: Option<&Intervention>) -> Result<Box<dyn crate::Decoder + 'm>> {
        Ok(Box::new(crate::decode::CachedDecoder::new(self, intervention)?))
    }

    fn set_adapter(&mut self, adapter: Option<&Adapter>) -> Result<()> {
        if let Some(a) = adapter {
            a.validate(Engine::config(self))?;
        }
        Engine::set_adapter(self, adapter)
    }

    fn gradient(&mut self, adapter: &Adapter, batch: &TrainBatch) -> Result<Gradient> {
        let params = adapter.validate(Engine::config(self))?;
        batch.validate(&adapter.layout)?;
        batch.batch.check_vocab(Engine::config(self).vocab_size)?;
        let g = Engine::gradient(self, adapter, batch)?;
        let backend = Engine::backend(self);
        if g.grads.len() != params.len() || g.grads.iter().zip(&params).any(|(g, p)| g.len() != p.len()) {
            return Err(missing(backend, "gradient of every adapter parameter"));
        }
        Ok(g)
    }
}
