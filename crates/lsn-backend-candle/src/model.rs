//! `CandleModel`: one loaded checkpoint as an `lsn_core::Engine` — the decoder body with its FFN hook, one LM-head
//! chunk and cached steps; lsn-core's pipeline above it makes it a `Model`.

use candle_core::{Device, Tensor};
use lsn_core::engine::downcast_cache;
use lsn_core::{Adapter, BodyOut, BodyPass, Engine, Gradient, KvCache, ModelConfig, Step, TapReducer, TrainBatch};

use crate::decoder::{Cache, Decoder, Hook, Pass, host};
use crate::error::{Context, Result};
use crate::lora::LoraTensors;
use crate::ops::{self, Positions, RopeFreqs, TapCounter};
use crate::weights::Weights;

/// A loaded model on a Candle device.
pub(crate) struct CandleModel {
    cfg: ModelConfig,
    device: Device,
    decoder: Decoder,
    rope: RopeFreqs,
    /// The adapter applied to every pass (`Model::set_adapter`).
    adapter: Option<LoraTensors>,
}

impl CandleModel {
    pub(crate) fn load(w: &Weights, cfg: &ModelConfig, device: &Device) -> Result<Self> {
        let decoder = Decoder::load(w, cfg)?;
        Ok(Self { cfg: cfg.clone(), device: device.clone(), decoder, rope: RopeFreqs::new(cfg), adapter: None })
    }

    /// Head logits of hidden rows `[n, hidden]` → `[n, vocab]`.
    fn head(&self, hidden: &[f32]) -> candle_core::Result<Tensor> {
        let d = self.cfg.hidden_size;
        let h = Tensor::from_slice(hidden, (hidden.len() / d, d), &self.device)?;
        ops::softcap(ops::linear(&h, self.decoder.w.head())?, self.decoder.arch.final_softcap)
    }

    fn ids(&self, ids: &[u32]) -> Result<Tensor> {
        Tensor::from_slice(ids, ids.len(), &self.device).during(|| "uploading token ids".into())
    }
}

impl Engine for CandleModel {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn backend(&self) -> &'static str {
        crate::NAME
    }

    fn body(&mut self, pass: &BodyPass<'_>) -> lsn_core::Result<BodyOut> {
        let batch = pass.batch;
        let (rows, seq) = (batch.rows, batch.seq_len);
        let ids = self.ids(&batch.ids)?;
        let taps = if pass.taps.any() {
            let reducer = TapReducer::new(self.cfg.num_layers, self.cfg.intermediate_size, pass.taps)?;
            Some(TapCounter::new(batch.real_positions(), reducer))
        } else {
            None
        };
        let dev = &self.device;
        let hidden = (|| {
            let mut hook = Hook::new(pass.edits, taps, pass.taps.point, self.cfg.num_layers, dev)?;
            if pass.layer_sums {
                hook.sum_layers(batch.real_positions(), self.cfg.num_layers, self.cfg.hidden_size);
            }
            let pos = self.rope.positions(seq, dev)?;
            let h = self.decoder.forward(
                &ids,
                rows,
                seq,
                &pos,
                &mut hook,
                None,
                pass.hidden,
                None,
                self.adapter.as_ref(),
            )?;
            let sums = hook.take_sums();
            Ok::<_, candle_core::Error>((h.map(|h| host(&h)).transpose()?, hook.taps, sums))
        })()
        .during(|| format!("{:?} forward pass over {rows} rows × {seq} tokens", self.cfg.family))?;
        let (hidden, counter, layer_sums) = hidden;
        let taps = match counter {
            Some(c) => Some(c.finish(batch.n_tokens() as u64).during(|| "reducing FFN taps".into())?),
            None => None,
        };
        Ok(BodyOut { taps, hidden, layer_sums })
    }

    fn head_logits(&mut self, hidden: &[f32]) -> lsn_core::Result<Vec<f32>> {
        Ok(self.head(hidden).and_then(|l| host(&l)).during(|| "LM head".into())?)
    }

    fn head_nll(&mut self, hidden: &[f32], targets: &[u32]) -> lsn_core::Result<Vec<f32>> {
        Ok((|| {
            let tgt = Tensor::from_slice(targets, targets.len(), &self.device)?;
            ops::nll_rows(&self.head(hidden)?, &tgt)?.to_vec1::<f32>()
        })()
        .during(|| format!("next-token NLL over {} positions", targets.len()))?)
    }

    fn new_cache(&mut self) -> lsn_core::Result<KvCache> {
        Ok(Box::new(Cache::default()))
    }

    fn step(&mut self, cache: &mut KvCache, step: &Step<'_>) -> lsn_core::Result<Vec<f32>> {
        let cache = downcast_cache::<Cache>(cache, crate::NAME)?;
        let ids = self.ids(step.ids)?;
        let dev = &self.device;
        Ok((|| {
            let pos = Positions::of_step(step, self.cfg.attn_scale, dev)?;
            let mut hook = Hook::new(step.edits, None, lsn_core::TapPoint::Act, self.cfg.num_layers, dev)?;
            let out = Tensor::from_slice(step.out, step.out.len(), dev)?;
            let h = self.decoder.forward(
                &ids,
                step.rows,
                step.len,
                &pos,
                &mut hook,
                Some(cache),
                true,
                Some(&out),
                self.adapter.as_ref(),
            )?;
            match h {
                Some(h) => host(&h),
                None => candle_core::bail!("the decoder returned no hidden state"),
            }
        })()
        .during(|| format!("cached step of {} rows × {} tokens after {}", step.rows, step.len, step.past))?)
    }

    fn set_adapter(&mut self, adapter: Option<&Adapter>) -> lsn_core::Result<()> {
        self.adapter = match adapter {
            Some(a) => Some(
                LoraTensors::new(a, &self.cfg, &self.device, false).during(|| "uploading the LoRA adapter".into())?,
            ),
            None => None,
        };
        Ok(())
    }

    fn gradient(&mut self, adapter: &Adapter, tb: &TrainBatch) -> lsn_core::Result<Gradient> {
        let b = &tb.batch;
        let dev = &self.device;
        let (loss_sum, count, grads) = (|| {
            let lora = LoraTensors::new(adapter, &self.cfg, dev, true)?;
            let mut hook = Hook::new(None, None, lsn_core::TapPoint::Act, self.cfg.num_layers, dev)?;
            let pos = self.rope.positions(b.seq_len, dev)?;
            let real = b.real_positions().map(|r| Tensor::new(r.as_slice(), dev)).transpose()?;
            let d = &self.decoder;
            let mut pass = Pass::new(d, b.rows, b.seq_len, &pos, &mut hook, Some(&lora));
            pass.real = real.as_ref();
            pass.grads = lora.zero_grads();
            let (loss_sum, count) = lsn_core::train::train_step(&mut pass, &self.cfg, &d.w.layers, tb)?;
            Ok::<_, candle_core::Error>((loss_sum, count, pass.grads))
        })()
        .during(|| format!("training step over {} rows × {} tokens", b.rows, b.seq_len))?;
        Ok(Gradient { loss_sum, count, grads })
    }

    fn keep_rows(&mut self, cache: &mut KvCache, rows: &[usize]) -> lsn_core::Result<()> {
        let cache = downcast_cache::<Cache>(cache, crate::NAME)?;
        Ok(Decoder::keep_rows(cache, rows).during(|| "dropping finished rows from the cache".into())?)
    }
}
