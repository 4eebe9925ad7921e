//! `CandleModel`: one loaded checkpoint as an `lsn_core::Engine` — the decoder body with its FFN hook, one LM-head
//! chunk and cached steps; lsn-core's pipeline above it makes it a `Model`.

use candle_core::{Device, Tensor, Var};
use lsn_core::engine::downcast_cache;
use lsn_core::{Adapter, BodyOut, BodyPass, Engine, Gradient, KvCache, ModelConfig, Step, TapReducer, TrainBatch};

use crate::decoder::{Cache, Decoder, Hook, host};
use crate::error::{Context, Result};
use crate::lora::{self, LoraTensors};
use crate::ops::{self, Positions, RopeFreqs, TapCounter};
use crate::weights::Weights;

/// Training reruns the first `num_layers / RECOMPUTE_DIVISOR` layers in the backward instead of holding their graph
/// (Candle's graph holds every op's output until the whole backward returns). Train bench, Gemma-3-270M, 16 XNLI
/// rows (765 real of 1120 padded positions, the layers running over the real ones), layers rerun → tokens/s, peak
/// RSS: 18 → 230, 1.37× the weights; 10 → 274, 1.99×; 6 → 304, 2.37×; 0 → 338, 2.92×.
const RECOMPUTE_DIVISOR: usize = 3;

/// A loaded model on a Candle device.
pub(crate) struct CandleModel {
    cfg: ModelConfig,
    device: Device,
    decoder: Decoder,
    rope: RopeFreqs,
    /// `lm_head.weight` of untied models; tied models use the embedding matrix.
    lm_head: Option<Tensor>,
    /// The adapter applied to every pass (`Model::set_adapter`).
    adapter: Option<LoraTensors>,
}

impl CandleModel {
    pub(crate) fn load(w: &Weights, cfg: &ModelConfig, device: &Device) -> Result<Self> {
        let decoder = Decoder::load(w, cfg)?;
        let lm_head = if cfg.tie_word_embeddings { None } else { Some(w.matrix(decoder.arch.head_weight)?) };
        Ok(Self {
            cfg: cfg.clone(),
            device: device.clone(),
            decoder,
            rope: RopeFreqs::new(cfg),
            lm_head,
            adapter: None,
        })
    }

    /// Head logits of hidden rows `[n, hidden]` → `[n, vocab]`.
    fn head(&self, hidden: &[f32]) -> candle_core::Result<Tensor> {
        let d = self.cfg.hidden_size;
        let h = Tensor::from_slice(hidden, (hidden.len() / d, d), &self.device)?;
        let w = self.lm_head.as_ref().unwrap_or(&self.decoder.embed);
        ops::softcap(ops::linear(&h, w)?, self.decoder.arch.final_softcap)
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
            let mut hook = Hook::new(pass.overwrite, taps, pass.taps.point, self.cfg.num_layers, dev)?;
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
            Ok::<_, candle_core::Error>((h.map(|h| host(&h)).transpose()?, hook.taps))
        })()
        .during(|| format!("{:?} forward pass over {rows} rows × {seq} tokens", self.cfg.family))?;
        let (hidden, counter) = hidden;
        let taps = match counter {
            Some(c) => Some(c.finish(batch.n_tokens() as u64).during(|| "reducing FFN taps".into())?),
            None => None,
        };
        Ok(BodyOut { taps, hidden })
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
            let mut hook = Hook::new(step.overwrite, None, lsn_core::TapPoint::Act, self.cfg.num_layers, dev)?;
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
        let ids = self.ids(&b.ids)?;
        let dev = &self.device;
        let (loss_sum, count, grads) = (|| {
            let lora = LoraTensors::new(adapter, &self.cfg, dev, true)?;
            let mut hook = Hook::new(None, None, lsn_core::TapPoint::Act, self.cfg.num_layers, dev)?;
            let pos = self.rope.positions(b.seq_len, dev)?;
            let d = &self.decoder;
            // The layers run over the real positions alone (attention over the padded layout).
            let real = b.real_positions().map(|r| Tensor::new(r.as_slice(), dev)).transpose()?;
            let mut layer = |l: usize, x: &Tensor, grad: bool| {
                d.layer(l, x, b.rows, b.seq_len, &pos, &mut hook, None, false, Some(&lora), grad, real.as_ref())?
                    .ok_or_else(|| candle_core::Error::Msg("a layer returned no output".into()))
            };
            // The first `rerun` layers run the fused kernels without a graph, each one's input kept; the rest run
            // differentiably from a variable at their input, and the loss's backward goes through them at once.
            // Then each kept layer is rerun, differentiably, from its input, last first, and the gradient sent
            // through it.
            let layers = d.num_layers();
            let rerun = layers / RECOMPUTE_DIVISOR;
            let mut inputs = Vec::with_capacity(rerun);
            let mut x = match &real {
                Some(idx) => d.embed_ids(&ids.index_select(idx, 0)?)?,
                None => d.embed_ids(&ids)?,
            };
            for l in 0..rerun {
                let y = layer(l, &x, false)?.detach();
                inputs.push(std::mem::replace(&mut x, y));
            }
            let top = Var::from_tensor(&x)?;
            let mut x = top.as_tensor().clone();
            for l in rerun..layers {
                x = layer(l, &x, true)?;
            }
            let h = d.final_norm(&x, true)?;
            let h = match &real {
                Some(idx) => crate::grad_ops::scatter_rows(&h, idx, b.rows * b.seq_len)?,
                None => h,
            };
            let head = self.lm_head.as_ref().unwrap_or(&d.embed);
            let (loss_sum, count, store) = lora::loss_and_backward(tb, &h, &lora, head, d.arch.final_softcap)?;
            let mut grads = lora.zero_grads();
            let Some(store) = store else { return Ok((loss_sum, count, grads)) };
            lora.add_grads(&store, &mut grads)?;
            if inputs.is_empty() {
                return Ok((loss_sum, count, grads));
            }
            let no_grad = || candle_core::Error::Msg("no gradient reached a layer's input".into());
            let mut g = store.get(top.as_tensor()).ok_or_else(no_grad)?.detach();
            drop(store);
            for (l, input) in inputs.iter().enumerate().rev() {
                let x = Var::from_tensor(input)?;
                let store = layer(l, x.as_tensor(), true)?.mul(&g)?.sum_all()?.backward()?;
                lora.add_grads(&store, &mut grads)?;
                if l > 0 {
                    g = store.get(x.as_tensor()).ok_or_else(no_grad)?.detach();
                }
            }
            Ok((loss_sum, count, grads))
        })()
        .during(|| format!("training step over {} rows × {} tokens", b.rows, b.seq_len))?;
        Ok(Gradient { loss_sum, count, grads })
    }

    fn keep_rows(&mut self, cache: &mut KvCache, rows: &[usize]) -> lsn_core::Result<()> {
        let cache = downcast_cache::<Cache>(cache, crate::NAME)?;
        Ok(Decoder::keep_rows(cache, rows).during(|| "dropping finished rows from the cache".into())?)
    }
}
