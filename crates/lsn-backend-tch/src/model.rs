//! `TchModel`: one loaded checkpoint behind `lsn_core::Model` — runs the decoder, reduces the FFN taps on the device
//! and applies the LM head only as far as `Want` asks (logits, or next-token NLL chunk by chunk).

use lsn_core::head;
use lsn_core::{Dense, ForwardOut, ModelConfig, TapStats, Taps, TokenBatch, Want};
use tch::{Device, Tensor};

use crate::decoder::{BodyOut, Decoder};
use crate::error::{Context, Result};
use crate::ops::{self, to_vec};
use crate::taps::DeviceTaps;
use crate::weights::Weights;

/// A loaded model on a libtorch device.
pub(crate) struct TchModel {
    cfg: ModelConfig,
    device: Device,
    body: Decoder,
    /// `lm_head.weight` of untied models; tied models use the embedding matrix.
    lm_head: Option<Tensor>,
}

impl TchModel {
    pub(crate) fn load(w: &Weights, cfg: &ModelConfig, device: Device) -> Result<Self> {
        let body = Decoder::load(w, cfg)?;
        let lm_head = if cfg.tie_word_embeddings { None } else { Some(w.get("lm_head.weight")?) };
        Ok(Self { cfg: cfg.clone(), device, body, lm_head })
    }

    fn head(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.body.embed)
    }

    fn run(&mut self, batch: &TokenBatch, taps: &Taps, want: Want) -> Result<ForwardOut> {
        if want == Want::Nothing && !taps.any() {
            return Ok(ForwardOut::default());
        }
        let (rows, seq) = (batch.rows, batch.seq_len);
        let (layers, width) = (self.cfg.num_layers, self.cfg.intermediate_size);
        taps.n_thresholds(layers * width)?;
        let ids: Vec<i64> = batch.ids.iter().map(|&i| i64::from(i)).collect();
        let ids = Tensor::f_from_slice(&ids)
            .and_then(|t| t.f_reshape([rows as i64, seq as i64]))
            .and_then(|t| t.f_to_device(self.device))
            .during(|| "uploading token ids".into())?;
        let real = batch.real_positions();
        let mut device_taps = if taps.any() {
            Some(
                DeviceTaps::new(taps, layers, width, batch.n_tokens(), real.as_deref(), self.device)
                    .during(|| "preparing FFN taps".into())?,
            )
        } else {
            None
        };
        let head = want != Want::Nothing;
        let family = self.cfg.family;
        let out = tch::no_grad(|| self.body.forward(&ids, device_taps.as_mut(), head))
            .during(|| format!("{family:?} forward pass over {rows} rows × {seq} tokens"))?;
        let taps: Option<TapStats> = match device_taps {
            Some(t) => Some(t.finish(layers, batch.n_tokens() as u64).during(|| "reducing FFN taps".into())?),
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
    fn head_logits(&self, hidden: &Tensor) -> std::result::Result<Tensor, tch::TchError> {
        ops::softcap(ops::linear(hidden, self.head())?, self.cfg.final_logit_softcap)
    }

    fn logits(&self, hidden: &Tensor, rows: usize, seq: usize) -> lsn_core::Result<Dense> {
        head::chunked_logits(rows, seq, self.cfg.vocab_size, |start, len| {
            Ok(tch::no_grad(|| to_vec::<f32>(&self.head_logits(&hidden.f_narrow(0, start as i64, len as i64)?)?))
                .during(|| format!("LM head over positions {start}..{}", start + len))?)
        })
    }

    fn nll(&self, hidden: &Tensor, batch: &TokenBatch) -> lsn_core::Result<Dense> {
        head::chunked_nll(batch, self.cfg.vocab_size, |at, target| {
            let long = |v: &[u32]| v.iter().map(|&x| i64::from(x)).collect::<Vec<_>>();
            Ok(tch::no_grad(|| {
                let idx = Tensor::f_from_slice(&long(at))?.f_to_device(self.device)?;
                let tgt = Tensor::f_from_slice(&long(target))?.f_to_device(self.device)?;
                to_vec::<f32>(&ops::nll_rows(&self.head_logits(&hidden.f_index_select(0, &idx)?)?, &tgt)?)
            })
            .during(|| format!("next-token NLL over {} positions", at.len()))?)
        })
    }
}

impl lsn_core::Model for TchModel {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn forward(&mut self, batch: &TokenBatch, taps: &Taps, want: Want) -> lsn_core::Result<ForwardOut> {
        batch.validate()?;
        batch.check_vocab(self.cfg.vocab_size)?;
        Ok(self.run(batch, taps, want)?)
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
