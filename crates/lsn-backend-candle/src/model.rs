//! `CandleModel`: one loaded checkpoint behind `lsn_core::Model` — runs a family's decoder, reduces the FFN taps and
//! applies the LM head only as far as `Want` asks (logits, or next-token NLL chunk by chunk).

use candle_core::{Device, Tensor};
use lsn_core::head;
use lsn_core::{Dense, Family, ForwardOut, ModelConfig, TapReducer, Taps, TokenBatch, Want};

use crate::error::{Context, Result};
use crate::ops::{self, TapCounter};
use crate::weights::Weights;
use crate::{gemma3::Gemma3, llama::Llama};

/// What a decoder body returns.
pub(crate) enum BodyOut {
    /// The final-normed hidden states `[rows·seq, hidden]`.
    Hidden(Tensor),
    /// The head was not wanted: the body stopped after the last layer's tap.
    TapsOnly,
}

/// A family's decoder stack, from token ids to the final norm.
pub(crate) trait Body: Send {
    /// The (unscaled) token embedding matrix `[vocab, hidden]`, the head of tied models.
    fn embedding(&self) -> &Tensor;
    /// Runs `ids` (`[rows·seq]`, u32, row-major) through every layer, pushing each layer's FFN tap into `taps`.
    /// With `head == false` the caller needs no hidden states and the body may stop early.
    fn forward(
        &self,
        ids: &Tensor,
        rows: usize,
        seq: usize,
        taps: Option<&mut TapCounter>,
        head: bool,
    ) -> candle_core::Result<BodyOut>;
}

/// A loaded model on a Candle device.
pub(crate) struct CandleModel {
    cfg: ModelConfig,
    device: Device,
    body: Box<dyn Body>,
    /// `lm_head.weight` of untied models; tied models use the body's embedding.
    lm_head: Option<Tensor>,
}

impl CandleModel {
    pub(crate) fn load(w: &Weights, cfg: &ModelConfig, device: &Device) -> Result<Self> {
        let body: Box<dyn Body> = match cfg.family {
            Family::Llama => Box::new(Llama::load(w, cfg)?),
            Family::Gemma3 => Box::new(Gemma3::load(w, cfg)?),
        };
        let lm_head = if cfg.tie_word_embeddings { None } else { Some(w.get("lm_head.weight")?) };
        Ok(Self { cfg: cfg.clone(), device: device.clone(), body, lm_head })
    }

    fn head(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or_else(|| self.body.embedding())
    }

    fn run(&self, batch: &TokenBatch, taps: &Taps, want: Want) -> lsn_core::Result<ForwardOut> {
        if want == Want::Nothing && !taps.any() {
            return Ok(ForwardOut::default());
        }
        let (rows, seq) = (batch.rows, batch.seq_len);
        let dev = &self.device;
        let ids = Tensor::from_slice(&batch.ids, rows * seq, dev).during(|| "uploading token ids".into())?;
        let mut counter = if taps.any() {
            Some(TapCounter::new(
                batch.real_positions(),
                TapReducer::new(self.cfg.num_layers, self.cfg.intermediate_size, taps)?,
            ))
        } else {
            None
        };
        let head = want != Want::Nothing;
        let out = self
            .body
            .forward(&ids, rows, seq, counter.as_mut(), head)
            .during(|| format!("{:?} forward pass over {rows} rows × {seq} tokens", self.cfg.family))?;
        let taps = match counter {
            Some(c) => Some(c.finish(batch.n_tokens() as u64).during(|| "reducing FFN taps".into())?),
            None => None,
        };
        let mut result = ForwardOut { taps, ..ForwardOut::default() };
        if let BodyOut::Hidden(hidden) = out {
            match want {
                Want::Nothing => {}
                Want::Logits => result.logits = Some(self.logits(&hidden, rows, seq)?),
                Want::Nll => result.nll = Some(self.nll(&hidden, batch)?),
            }
        }
        Ok(result)
    }

    /// Head logits of hidden rows `[n, hidden]` → `[n, vocab]`.
    fn head_logits(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        ops::softcap(ops::linear(hidden, self.head())?, self.cfg.final_logit_softcap)
    }

    fn logits(&self, hidden: &Tensor, rows: usize, seq: usize) -> lsn_core::Result<Dense> {
        head::chunked_logits(rows, seq, self.cfg.vocab_size, |start, len| {
            Ok(hidden
                .narrow(0, start, len)
                .and_then(|h| self.head_logits(&h))
                .and_then(|l| l.flatten_all()?.to_vec1::<f32>())
                .during(|| format!("LM head over positions {start}..{}", start + len))?)
        })
    }

    fn nll(&self, hidden: &Tensor, batch: &TokenBatch) -> lsn_core::Result<Dense> {
        head::chunked_nll(batch, self.cfg.vocab_size, |at, target| {
            Ok((|| {
                let idx = Tensor::from_slice(at, at.len(), &self.device)?;
                let tgt = Tensor::from_slice(target, target.len(), &self.device)?;
                let logits = self.head_logits(&hidden.index_select(&idx, 0)?)?;
                ops::nll_rows(&logits, &tgt)?.to_vec1::<f32>()
            })()
            .during(|| format!("next-token NLL over {} positions", at.len()))?)
        })
    }
}

impl lsn_core::Model for CandleModel {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn forward(&mut self, batch: &TokenBatch, taps: &Taps, want: Want) -> lsn_core::Result<ForwardOut> {
        batch.validate()?;
        batch.check_vocab(self.cfg.vocab_size)?;
        self.run(batch, taps, want)
    }

    fn forward_intervened(
        &mut self,
        _: &TokenBatch,
        _: &Taps,
        _: &lsn_core::Intervention,
        _: Want,
    ) -> lsn_core::Result<ForwardOut> {
        Err(lsn_core::Error::Unsupported {
            backend: crate::NAME,
            capability: "test-time interventions (not yet)".into(),
        })
    }
}
