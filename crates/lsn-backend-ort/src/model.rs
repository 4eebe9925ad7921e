//! `OrtModel`: one exported checkpoint behind `lsn_core::Model`. Each forward pass picks the body graph that
//! computes exactly the requested taps and head, runs it, and finishes the statistics on the host (quantile
//! interpolation by lsn-core's rule); logits and the next-token NLL come from the head graph, chunk by chunk.

use std::path::PathBuf;

use lsn_core::taps::{lerp_fused, quantile_position};
use lsn_core::{
    Dense, Device, ForwardOut, Intervention, ModelConfig, QUANTILES, TapReducer, TapStats, Taps, TokenBatch, Want, head,
};
use ort::session::builder::PrepackedWeights;
use ort::session::{Session, SessionOutputs};
use ort::value::{DynValue, Tensor};

use crate::cache::ExportDir;
use crate::error::{Context, Error, Result};
use crate::export::{BodySpec, Head, Quantiles};
use crate::{QuantilePass, runtime};

/// How many body sessions stay loaded (each holds the model's weights).
const BODY_SESSIONS: usize = 2;

pub(crate) struct OrtModel {
    cfg: ModelConfig,
    export: ExportDir,
    device: Device,
    quantiles: Quantiles,
    prepacked: PrepackedWeights,
    /// Most recently used last.
    bodies: Vec<(BodySpec, Session)>,
    head_logits: Option<Session>,
    head_nll: Option<Session>,
}

pub(crate) fn tensor<T: ort::value::PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static>(
    shape: &[usize],
    data: Vec<T>,
) -> Result<DynValue> {
    let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    Ok(Tensor::from_array((shape, data)).during(|| "building an input tensor".into())?.into_dyn())
}

/// Output `name` of a run as a flat vector.
pub(crate) fn extract<T: ort::value::PrimitiveTensorElementType + Copy>(
    out: &SessionOutputs<'_>,
    name: &str,
) -> Result<Vec<T>> {
    let v = out.get(name).ok_or_else(|| Error::Export(format!("the graph has no output {name}")))?;
    Ok(v.try_extract_tensor::<T>().during(|| format!("reading output {name}"))?.1.to_vec())
}

impl OrtModel {
    pub(crate) fn new(cfg: ModelConfig, export: ExportDir, device: Device, quantiles: QuantilePass) -> Self {
        Self {
            cfg,
            export,
            device,
            quantiles: match quantiles {
                QuantilePass::InGraph => Quantiles::Graph,
                QuantilePass::OnHost => Quantiles::Host,
            },
            prepacked: PrepackedWeights::new(),
            bodies: Vec::new(),
            head_logits: None,
            head_nll: None,
        }
    }

    fn load(&self, path: PathBuf) -> Result<Session> {
        runtime::session(&path, self.device, &self.prepacked)
    }

    /// The body session for `spec`, loaded on first use (least recently used evicted).
    fn body(&mut self, spec: BodySpec) -> Result<&mut Session> {
        if let Some(i) = self.bodies.iter().position(|(s, _)| *s == spec) {
            let entry = self.bodies.remove(i);
            self.bodies.push(entry);
        } else {
            let session = self.load(self.export.body(&spec)?)?;
            if self.bodies.len() >= BODY_SESSIONS {
                self.bodies.remove(0);
            }
            self.bodies.push((spec, session));
        }
        Ok(&mut self.bodies.last_mut().expect("just pushed").1)
    }

    fn run(&mut self, batch: &TokenBatch, taps: &Taps, iv: Option<&Intervention>, want: Want) -> Result<ForwardOut> {
        if want == Want::Nothing && !taps.any() {
            return Ok(ForwardOut::default());
        }
        let n_tokens = batch.n_tokens();
        if n_tokens > 1 << 24 {
            // Counts are summed in f32 in the graph, exact up to 2^24.
            return Err(lsn_core::Error::InvalidBatch(format!(
                "{n_tokens} tokens in one batch; the ort backend counts up to 2^24 per batch: split the batch"
            ))
            .into());
        }
        let spec = BodySpec {
            count_pos: taps.count_pos,
            moments: taps.moments,
            quantiles: if taps.quantiles { self.quantiles } else { Quantiles::No },
            above: taps.above.is_some(),
            intervene: iv.is_some(),
            cache: false,
            head: if want == Want::Nothing { Head::No } else { Head::Hidden },
        };
        let inputs = self.inputs(batch, taps, iv, &spec)?;
        let (layers, width) = (self.cfg.num_layers, self.cfg.intermediate_size);
        let rows_seq = format!("{} rows × {} tokens", batch.rows, batch.seq_len);
        let session = self.body(spec)?;
        let out = session.run(inputs).during(|| format!("forward pass over {rows_seq}"))?;
        let stats = if spec.any_tap() { Some(read_taps(&out, &spec, layers, width, n_tokens)?) } else { None };
        let hidden = match spec.head {
            Head::Hidden => Some(extract::<f32>(&out, "hidden")?),
            _ => None,
        };
        drop(out);
        let mut result = ForwardOut { taps: stats, ..ForwardOut::default() };
        if let Some(hidden) = hidden {
            match want {
                Want::Nothing => {}
                Want::Logits => result.logits = Some(self.logits(&hidden, batch.rows, batch.seq_len)?),
                Want::Nll => result.nll = Some(self.nll(&hidden, batch)?),
            }
        }
        Ok(result)
    }

    /// The inputs of body graph `spec` for this batch.
    fn inputs(
        &self,
        batch: &TokenBatch,
        taps: &Taps,
        iv: Option<&Intervention>,
        spec: &BodySpec,
    ) -> Result<Vec<(&'static str, DynValue)>> {
        let (layers, width) = (self.cfg.num_layers, self.cfg.intermediate_size);
        let plane = layers * width;
        let n_tokens = batch.n_tokens();
        let mut inputs = Vec::new();
        let ids: Vec<i64> = batch.ids.iter().map(|&i| i64::from(i)).collect();
        inputs.push(("input_ids", tensor(&[batch.rows, batch.seq_len], ids)?));
        if spec.any_tap() {
            let real: Vec<i64> = match batch.real_positions() {
                Some(r) => r.iter().map(|&i| i64::from(i)).collect(),
                None => (0..n_tokens as i64).collect(),
            };
            inputs.push(("real_index", tensor(&[n_tokens], real)?));
        }
        if spec.quantiles == Quantiles::Graph {
            let ranks: Vec<i64> = QUANTILES
                .iter()
                .flat_map(|&q| {
                    let (lo, hi, _) = quantile_position(n_tokens, q);
                    [lo as i64, hi as i64]
                })
                .collect();
            inputs.push(("quantile_ranks", tensor(&[ranks.len()], ranks)?));
        }
        if let Some(thr) = &taps.above {
            // `[S, layers·width]` → `[layers, S, width]`.
            let n_thr = taps.n_thresholds(plane)?;
            let mut t = Vec::with_capacity(thr.len());
            for l in 0..layers {
                for s in 0..n_thr {
                    t.extend_from_slice(&thr[s * plane + l * width..][..width]);
                }
            }
            inputs.push(("thresholds", tensor(&[layers, n_thr, width], t)?));
        }
        if let Some(iv) = iv {
            let (mask, value) = iv.dense(layers, width)?;
            inputs.push(("intervention_mask", tensor(&[layers, width], mask)?));
            inputs.push(("intervention_value", tensor(&[layers, width], value)?));
        }
        Ok(inputs)
    }

    fn head_session(&mut self, nll: bool) -> Result<&mut Session> {
        let (export, device, prepacked) = (&self.export, self.device, &self.prepacked);
        let slot = if nll { &mut self.head_nll } else { &mut self.head_logits };
        if slot.is_none() {
            *slot = Some(runtime::session(&export.head(nll)?, device, prepacked)?);
        }
        Ok(slot.as_mut().expect("just loaded"))
    }

    fn logits(&mut self, hidden: &[f32], rows: usize, seq: usize) -> lsn_core::Result<Dense> {
        let (d, vocab) = (self.cfg.hidden_size, self.cfg.vocab_size);
        let session = self.head_session(false)?;
        head::chunked_logits(rows, seq, vocab, |start, len| {
            let h = tensor(&[len, d], hidden[start * d..(start + len) * d].to_vec())?;
            let out = session
                .run(vec![("hidden", h)])
                .during(|| format!("LM head over positions {start}..{}", start + len))?;
            Ok(extract::<f32>(&out, "logits")?)
        })
    }

    fn nll(&mut self, hidden: &[f32], batch: &TokenBatch) -> lsn_core::Result<Dense> {
        let d = self.cfg.hidden_size;
        let vocab = self.cfg.vocab_size;
        let session = self.head_session(true)?;
        head::chunked_nll(batch, vocab, |at, target| {
            let rows: Vec<f32> =
                at.iter().flat_map(|&p| &hidden[p as usize * d..(p as usize + 1) * d]).copied().collect();
            let h = tensor(&[at.len(), d], rows)?;
            let t = tensor(&[at.len()], target.iter().map(|&t| i64::from(t)).collect())?;
            let out = session
                .run(vec![("hidden", h), ("targets", t)])
                .during(|| format!("next-token NLL over {} positions", at.len()))?;
            Ok(extract::<f32>(&out, "nll")?)
        })
    }
}

/// The tap statistics of body graph `spec` from its outputs, in `TapStats`' layout (quantiles finished by lsn-core's
/// rule: fused lerp between the graph's order statistics, or the host reducer over the returned activations).
fn read_taps(
    out: &SessionOutputs<'_>,
    spec: &BodySpec,
    layers: usize,
    width: usize,
    n_tokens: usize,
) -> Result<TapStats> {
    let plane = layers * width;
    let mut stats = TapStats { layers, intermediate: width, n_tokens: n_tokens as u64, ..TapStats::default() };
    let counts = |v: Vec<f32>| v.into_iter().map(|c| c as u64).collect::<Vec<u64>>();
    if spec.count_pos {
        stats.count_pos = Some(counts(extract::<f32>(out, "count_pos")?));
    }
    if spec.moments {
        stats.sum = Some(extract::<f64>(out, "sum")?);
        stats.sum_sq = Some(extract::<f64>(out, "sum_sq")?);
    }
    match spec.quantiles {
        Quantiles::Graph => {
            // `[layers, 2·levels, width]`: the low and high order statistics of each level.
            let picked = extract::<f32>(out, "quantile_stats")?;
            let ranks = 2 * QUANTILES.len();
            let mut q = vec![0f32; QUANTILES.len() * plane];
            for l in 0..layers {
                for (k, &level) in QUANTILES.iter().enumerate() {
                    let (_, _, w) = quantile_position(n_tokens, level);
                    let lo = &picked[(l * ranks + 2 * k) * width..][..width];
                    let hi = &picked[(l * ranks + 2 * k + 1) * width..][..width];
                    let dst = &mut q[k * plane + l * width..][..width];
                    for j in 0..width {
                        dst[j] = lerp_fused(lo[j], hi[j], w);
                    }
                }
            }
            stats.quantiles = Some(q);
        }
        Quantiles::Host => {
            let mut r = TapReducer::new(layers, width, &Taps { quantiles: true, ..Taps::NONE })?;
            for l in 0..layers {
                let name = format!("act_{l}");
                let v = out.get(&name).ok_or_else(|| Error::Export(format!("the graph has no output {name}")))?;
                let (_, a) = v.try_extract_tensor::<f32>().during(|| format!("reading output {name}"))?;
                r.push(l, a, None)?;
            }
            stats.quantiles = r.finish(n_tokens as u64)?.quantiles;
        }
        Quantiles::No => {}
    }
    if spec.above {
        // `[layers, S, width]` → `[S, layers·width]`.
        let c = extract::<f32>(out, "count_above")?;
        let n_thr = c.len() / plane.max(1);
        let mut above = vec![0u64; n_thr * plane];
        for l in 0..layers {
            for s in 0..n_thr {
                let src = &c[(l * n_thr + s) * width..][..width];
                for (dst, &v) in above[s * plane + l * width..][..width].iter_mut().zip(src) {
                    *dst = v as u64;
                }
            }
        }
        stats.count_above = Some(above);
    }
    Ok(stats)
}

impl lsn_core::Model for OrtModel {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn forward(&mut self, batch: &TokenBatch, taps: &Taps, want: Want) -> lsn_core::Result<ForwardOut> {
        batch.validate()?;
        batch.check_vocab(self.cfg.vocab_size)?;
        Ok(self.run(batch, taps, None, want)?)
    }

    fn forward_intervened(
        &mut self,
        batch: &TokenBatch,
        taps: &Taps,
        intervention: &Intervention,
        want: Want,
    ) -> lsn_core::Result<ForwardOut> {
        batch.validate()?;
        batch.check_vocab(self.cfg.vocab_size)?;
        Ok(self.run(batch, taps, Some(intervention), want)?)
    }
}
