//! `TchModel`: one loaded checkpoint as an `lsn_core::Engine` — the decoder body with its FFN hook (taps reduced on
//! the device), one LM-head chunk and cached steps; lsn-core's pipeline above it makes it a `Model`.

use lsn_core::engine::downcast_cache;
use lsn_core::{Adapter, BodyOut, BodyPass, Engine, Gradient, KvCache, ModelConfig, Step, TapPoint, TrainBatch};
use tch::{Device, Tensor};

use crate::decoder::{Cache, Decoder, Hook, Pass, Unpadded};
use crate::error::{Context, Result};
use crate::lora::LoraTensors;
use crate::ops::{self, Positions, to_vec};
use crate::taps::{DeviceTaps, QuantilesOn};
use crate::weights::Weights;

/// A loaded model on a libtorch device.
pub(crate) struct TchModel {
    cfg: ModelConfig,
    device: Device,
    decoder: Decoder,
    /// The RoPE tables and masks of the last sequence length (capture runs batch after batch of one length).
    positions: Option<Positions>,
    /// The adapter applied to every pass (`Model::set_adapter`).
    adapter: Option<LoraTensors>,
}

impl TchModel {
    pub(crate) fn load(w: &Weights, cfg: &ModelConfig, device: Device) -> Result<Self> {
        let decoder = Decoder::load(w, cfg)?;
        Ok(Self { cfg: cfg.clone(), device, decoder, positions: None, adapter: None })
    }

    /// Head logits of hidden rows `[n, hidden]` → `[n, vocab]`.
    fn head(&self, hidden: &[f32]) -> std::result::Result<Tensor, tch::TchError> {
        let d = self.cfg.hidden_size as i64;
        let h = Tensor::f_from_slice(hidden)?.f_reshape([-1, d])?.f_to_device(self.device)?;
        ops::softcap(ops::head_linear(&h, self.decoder.w.head())?, self.decoder.arch.final_softcap)
    }

    fn ids(&self, ids: &[u32], rows: usize) -> Result<Tensor> {
        let long: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
        Tensor::f_from_slice(&long)
            .and_then(|t| t.f_reshape([rows as i64, -1]))
            .and_then(|t| t.f_to_device(self.device))
            .during(|| "uploading token ids".into())
    }
}

impl Engine for TchModel {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn backend(&self) -> &'static str {
        crate::NAME
    }

    fn body(&mut self, pass: &BodyPass<'_>) -> lsn_core::Result<BodyOut> {
        let batch = pass.batch;
        let (rows, seq) = (batch.rows, batch.seq_len);
        let (layers, width) = (self.cfg.num_layers, self.cfg.intermediate_size);
        let ids = self.ids(&batch.ids, rows)?;
        let real = batch.real_positions();
        let mut device_taps = if pass.taps.any() {
            Some(
                DeviceTaps::new(
                    pass.taps,
                    layers,
                    width,
                    batch.n_tokens(),
                    real.as_deref(),
                    self.device,
                    QuantilesOn::for_device(self.device),
                )
                .during(|| "preparing FFN taps".into())?,
            )
        } else {
            None
        };
        let (device, family) = (self.device, self.cfg.family);
        let (hidden, layer_sums) = tch::no_grad(|| {
            let mut hook = Hook::new(pass.edits, device_taps.as_mut(), pass.taps.point, layers, device)?;
            if pass.layer_sums {
                hook.sum_layers(real.as_deref(), device)?;
            }
            let pos = Positions::for_len(&mut self.positions, &self.cfg, seq, device)?;
            let h = self.decoder.forward(&ids, pos, None, &mut hook, pass.hidden, None, self.adapter.as_ref())?;
            Ok::<_, tch::TchError>((h.map(|h| to_vec::<f32>(&h)).transpose()?, hook.take_sums()?))
        })
        .during(|| format!("{family:?} forward pass over {rows} rows × {seq} tokens"))?;
        let taps = match device_taps {
            Some(t) => Some(t.finish(layers, batch.n_tokens() as u64).during(|| "reducing FFN taps".into())?),
            None => None,
        };
        Ok(BodyOut { taps, hidden, layer_sums })
    }

    fn head_logits(&mut self, hidden: &[f32]) -> lsn_core::Result<Vec<f32>> {
        Ok(tch::no_grad(|| to_vec::<f32>(&self.head(hidden)?)).during(|| "LM head".into())?)
    }

    fn head_nll(&mut self, hidden: &[f32], targets: &[u32]) -> lsn_core::Result<Vec<f32>> {
        let long: Vec<i64> = targets.iter().map(|&x| i64::from(x)).collect();
        Ok(tch::no_grad(|| {
            let tgt = Tensor::f_from_slice(&long)?.f_to_device(self.device)?;
            to_vec::<f32>(&ops::nll_rows(&self.head(hidden)?, &tgt)?)
        })
        .during(|| format!("next-token NLL over {} positions", targets.len()))?)
    }

    fn new_cache(&mut self) -> lsn_core::Result<KvCache> {
        Ok(Box::new(Cache::default()))
    }

    fn step(&mut self, cache: &mut KvCache, step: &Step<'_>) -> lsn_core::Result<Vec<f32>> {
        let cache = downcast_cache::<Cache>(cache, crate::NAME)?;
        let ids = self.ids(step.ids, step.rows)?;
        let (device, layers) = (self.device, self.cfg.num_layers);
        Ok(tch::no_grad(|| {
            let pos = Positions::of_step(step, self.cfg.attn_scale, device)?;
            let mut hook = Hook::new(step.edits, None, TapPoint::Act, layers, device)?;
            let out: Vec<i64> = step.out.iter().map(|&i| i64::from(i)).collect();
            let out = Tensor::f_from_slice(&out)?.f_to_device(device)?;
            match self.decoder.forward(&ids, &pos, Some(cache), &mut hook, true, Some(&out), self.adapter.as_ref())? {
                Some(h) => to_vec::<f32>(&h),
                None => Err(tch::TchError::Kind("the decoder returned no hidden state".into())),
            }
        })
        .during(|| format!("cached step of {} rows × {} tokens after {}", step.rows, step.len, step.past))?)
    }

    fn set_adapter(&mut self, adapter: Option<&Adapter>) -> lsn_core::Result<()> {
        self.adapter = match adapter {
            Some(a) => Some(
                tch::no_grad(|| LoraTensors::new(a, &self.cfg, self.device, false))
                    .during(|| "uploading the LoRA adapter".into())?,
            ),
            None => None,
        };
        Ok(())
    }

    fn gradient(&mut self, adapter: &Adapter, tb: &TrainBatch) -> lsn_core::Result<Gradient> {
        let b = &tb.batch;
        let lora = LoraTensors::new(adapter, &self.cfg, self.device, true)
            .during(|| "uploading the LoRA parameters".into())?;
        let (loss_sum, count) = (|| {
            let unpadded = Unpadded::of(b, self.device)?;
            let pos = Positions::for_len(&mut self.positions, &self.cfg, b.seq_len, self.device)?;
            let mut hook = Hook::new(None, None, TapPoint::Act, self.cfg.num_layers, self.device)?;
            let shape = (b.rows as i64, b.seq_len as i64);
            let d = &self.decoder;
            let mut pass = Pass::new(d, shape, pos, &mut hook, Some(&lora), unpadded.as_ref());
            lsn_core::train::train_step(&mut pass, &self.cfg, &d.w.layers, tb)
        })()
        .during(|| format!("training step over {} rows × {} tokens", b.rows, b.seq_len))?;
        let grads = lora.grads().during(|| "reading the gradients".into())?;
        Ok(Gradient { loss_sum, count, grads })
    }

    fn keep_rows(&mut self, cache: &mut KvCache, rows: &[usize]) -> lsn_core::Result<()> {
        let cache = downcast_cache::<Cache>(cache, crate::NAME)?;
        Ok(tch::no_grad(|| Decoder::keep_rows(cache, rows))
            .during(|| "dropping finished rows from the cache".into())?)
    }
}
