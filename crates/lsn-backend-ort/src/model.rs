//! `OrtModel`: one exported checkpoint as an `lsn_core::Engine`. Each body pass picks the graph that computes exactly
//! the requested taps, intervention and head, runs it, and finishes the statistics on the host (quantile
//! interpolation by lsn-core's rule); head chunks run the head graph; cached steps run the graph with past
//! key/values, whose cache lives on the host between steps.

use std::path::PathBuf;

use lsn_core::engine::downcast_cache;
use lsn_core::taps::{lerp_fused, quantile_position};
use lsn_core::{
    AttentionKind, BodyOut, BodyPass, Device, Edits, Engine, KvCache, ModelConfig, QUANTILES, Step, TapPoint,
    TapReducer, TapStats, Taps, TokenBatch,
};
use ort::session::builder::PrepackedWeights;
use ort::session::{Session, SessionOutputs};
use ort::value::{DynValue, Tensor};

use crate::cache::ExportDir;
use crate::error::{Context, Error, Result};
use crate::export::{BodySpec, Head, Quantiles};
use crate::weights::SharedWeights;
use crate::{QuantilePass, runtime};

/// How many body sessions stay loaded (on the CPU they share the packed weights; each keeps its own plan).
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
    /// The cached-step graphs without and with an intervention.
    steps: [Option<Session>; 2],
    /// The weights every CPU session views (`None` on CUDA, where each session loads its own copy onto the device).
    /// Declared after the sessions so that they drop before the mapping.
    weights: Option<SharedWeights>,
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
    pub(crate) fn new(cfg: ModelConfig, export: ExportDir, device: Device, quantiles: QuantilePass) -> Result<Self> {
        let weights = match device {
            Device::Cpu => Some(SharedWeights::map(&export)?),
            Device::Cuda(_) => None,
        };
        Ok(Self {
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
            steps: [None, None],
            weights,
        })
    }

    fn load(&self, path: PathBuf) -> Result<Session> {
        let shared = self.weights.as_ref().map_or(&[][..], SharedWeights::values);
        let session = runtime::session(&path, self.device, &self.prepacked, shared)?;
        if let Some(w) = &self.weights {
            w.release_pages();
        }
        Ok(session)
    }

    /// The body session for `spec`, loaded on first use (least recently used evicted).
    fn body(&mut self, spec: BodySpec) -> Result<&mut Session> {
        if let Some(i) = self.bodies.iter().position(|(s, _)| *s == spec) {
            let entry = self.bodies.remove(i);
            self.bodies.push(entry);
        } else {
            // Evict first, so that no more than BODY_SESSIONS sessions are alive while the new one loads.
            if self.bodies.len() >= BODY_SESSIONS {
                self.bodies.remove(0);
            }
            let session = self.load(self.export.body(&spec)?)?;
            self.bodies.push((spec, session));
        }
        Ok(&mut self.bodies.last_mut().expect("just pushed").1)
    }

    fn run_body(&mut self, pass: &BodyPass<'_>) -> Result<BodyOut> {
        let (batch, taps) = (pass.batch, pass.taps);
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
            gate_pre: taps.point == TapPoint::GatePre,
            intervene: pass.edits.is_some(),
            cache: false,
            layer_sums: pass.layer_sums,
            head: if pass.hidden { Head::Hidden } else { Head::No },
        };
        let (layers, width) = (self.cfg.num_layers, self.cfg.intermediate_size);
        // Graph quantiles are order statistics of one run's tokens: such a batch runs whole.
        let groups = run_rows(batch, if spec.quantiles == Quantiles::Graph { usize::MAX } else { RUN_TOKENS });
        let whole = groups.len() == 1;
        let mut acc = TapAcc::new(layers, width, n_tokens, &spec);
        let mut hidden = (spec.head == Head::Hidden).then(Vec::new);
        let mut layer_sums = spec.layer_sums.then(|| vec![0f64; layers * self.cfg.hidden_size]);
        for rows in groups {
            let owned;
            let part = if whole {
                batch
            } else {
                let seq = batch.seq_len;
                owned = TokenBatch::new(
                    rows.len(),
                    seq,
                    batch.ids[rows.start * seq..rows.end * seq].to_vec(),
                    batch.lengths[rows.clone()].to_vec(),
                )?;
                &owned
            };
            let inputs = self.inputs(part, taps, pass.edits, &spec)?;
            let what = || format!("forward pass over {} rows × {} tokens", part.rows, part.seq_len);
            let out = self.body(spec)?.run(inputs).during(what)?;
            if spec.any_tap() {
                acc.add(&out, &spec, part.n_tokens(), whole)?;
            }
            if let Some(h) = &mut hidden {
                let v = out.get("hidden").ok_or_else(|| Error::Export("the graph has no output hidden".into()))?;
                h.extend_from_slice(v.try_extract_tensor::<f32>().during(|| "reading output hidden".into())?.1);
            }
            if let Some(sums) = &mut layer_sums {
                let v =
                    out.get("layer_sums").ok_or_else(|| Error::Export("the graph has no output layer_sums".into()))?;
                let part = v.try_extract_tensor::<f64>().during(|| "reading output layer_sums".into())?.1;
                for (a, b) in sums.iter_mut().zip(part) {
                    *a += b;
                }
            }
        }
        let taps = if spec.any_tap() { Some(acc.finish()?) } else { None };
        Ok(BodyOut { taps, hidden, layer_sums })
    }

    /// The inputs of body graph `spec` for this batch.
    fn inputs(
        &self,
        batch: &TokenBatch,
        taps: &Taps,
        edits: Option<&Edits>,
        spec: &BodySpec,
    ) -> Result<Vec<(&'static str, DynValue)>> {
        let (layers, width) = (self.cfg.num_layers, self.cfg.intermediate_size);
        let plane = layers * width;
        let n_tokens = batch.n_tokens();
        let mut inputs = Vec::new();
        let ids: Vec<i64> = batch.ids.iter().map(|&i| i64::from(i)).collect();
        inputs.push(("input_ids", tensor(&[batch.rows, batch.seq_len], ids)?));
        if spec.needs_real() {
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
        if let Some(e) = edits {
            inputs.extend(intervention_inputs(e)?);
        }
        Ok(inputs)
    }

    fn head_session(&mut self, nll: bool) -> Result<&mut Session> {
        if self.head_slot(nll).is_none() {
            let session = self.load(self.export.head(nll)?)?;
            *self.head_slot(nll) = Some(session);
        }
        Ok(self.head_slot(nll).as_mut().expect("just loaded"))
    }

    fn head_slot(&mut self, nll: bool) -> &mut Option<Session> {
        if nll { &mut self.head_nll } else { &mut self.head_logits }
    }

    fn head_chunk(&mut self, hidden: &[f32], targets: Option<&[u32]>) -> Result<Vec<f32>> {
        let d = self.cfg.hidden_size;
        let n = hidden.len() / d;
        let session = self.head_session(targets.is_some())?;
        let mut inputs = vec![("hidden", tensor(&[n, d], hidden.to_vec())?)];
        if let Some(t) = targets {
            inputs.push(("targets", tensor(&[n], t.iter().map(|&t| i64::from(t)).collect())?));
        }
        let out = session.run(inputs).during(|| format!("LM head over {n} positions"))?;
        extract::<f32>(&out, if targets.is_some() { "nll" } else { "logits" })
    }

    /// The cached-step session (with or without an intervention), loaded on first use.
    fn step_session(&mut self, intervene: bool) -> Result<&mut Session> {
        let spec = BodySpec { cache: true, intervene, ..BodySpec::plain(Head::Hidden) };
        let slot = usize::from(intervene);
        if self.steps[slot].is_none() {
            self.steps[slot] = Some(self.load(self.export.body(&spec)?)?);
        }
        Ok(self.steps[slot].as_mut().expect("just loaded"))
    }

    fn run_step(&mut self, cache: &mut Cache, step: &Step<'_>) -> Result<Vec<f32>> {
        let (layers, kv, d) = (self.cfg.num_layers, self.cfg.num_kv_heads, self.cfg.head_dim);
        let (rows, len, total) = (step.rows, step.len, step.past + step.len);
        let mut inputs: Vec<(String, DynValue)> = Vec::new();
        inputs.push(("input_ids".into(), tensor(&[rows, len], step.ids.iter().map(|&i| i64::from(i)).collect())?));
        let mut kinds = vec![("global", step.of(AttentionKind::Global))];
        if self.cfg.layer_kinds.contains(&AttentionKind::Sliding) {
            kinds.push(("sliding", step.of(AttentionKind::Sliding)));
        }
        for (name, p) in kinds {
            let half = p.cos.len() / (rows * len).max(1);
            // `[rows·len, half]` → `[rows, len, 1, 2·half]`, each half repeated (rotate-half layout).
            let full = |v: &[f32]| v.chunks(half.max(1)).flat_map(|c| c.iter().chain(c)).copied().collect::<Vec<f32>>();
            inputs.push((format!("rope_cos_{name}"), tensor(&[rows, len, 1, 2 * half], full(&p.cos))?));
            inputs.push((format!("rope_sin_{name}"), tensor(&[rows, len, 1, 2 * half], full(&p.sin))?));
            inputs.push((format!("mask_{name}"), tensor(&[rows, 1, len, total], p.mask.clone())?));
        }
        if let Some(o) = step.edits {
            inputs.extend(intervention_inputs(o)?.into_iter().map(|(n, v)| (n.to_owned(), v)));
        }
        inputs.push(("out_index".into(), tensor(&[step.out.len()], step.out.iter().map(|&i| i64::from(i)).collect())?));
        let past = std::mem::take(&mut cache.layers);
        if past.is_empty() {
            for l in 0..layers {
                inputs.push((format!("past_key_{l}"), tensor::<f32>(&[rows, kv, 0, d], Vec::new())?));
                inputs.push((format!("past_value_{l}"), tensor::<f32>(&[rows, kv, 0, d], Vec::new())?));
            }
        } else {
            for (l, (k, v)) in past.into_iter().enumerate() {
                inputs.push((format!("past_key_{l}"), k));
                inputs.push((format!("past_value_{l}"), v));
            }
        }
        let session = self.step_session(step.edits.is_some())?;
        let mut out =
            session.run(inputs).during(|| format!("cached step of {rows} rows × {len} tokens after {}", step.past))?;
        let hidden = extract::<f32>(&out, "hidden")?;
        for l in 0..layers {
            let mut take = |name: String| out.remove(&name).ok_or_else(|| Error::Export(format!("no output {name}")));
            let k = take(format!("present_key_{l}"))?;
            let v = take(format!("present_value_{l}"))?;
            cache.layers.push((k, v));
        }
        Ok(hidden)
    }

    /// Keeps rows `keep` of the cached keys and values (host copies, rebuilt).
    fn keep_cache_rows(cache: &mut Cache, keep: &[usize]) -> Result<()> {
        for (k, v) in &mut cache.layers {
            for t in [k, v] {
                let (shape, data) = t.try_extract_tensor::<f32>().during(|| "reading the cache".into())?;
                let dims: Vec<usize> = shape.iter().map(|&x| x as usize).collect();
                let per_row: usize = dims[1..].iter().product();
                let kept: Vec<f32> =
                    keep.iter().flat_map(|&r| &data[r * per_row..(r + 1) * per_row]).copied().collect();
                let mut new_dims = dims.clone();
                new_dims[0] = keep.len();
                *t = tensor(&new_dims, kept)?;
            }
        }
        Ok(())
    }
}

/// The intervention inputs of a graph: `[layers, intermediate]` keep and add factors, `[layers, hidden]` steering
/// vectors (0 in layers without one).
fn intervention_inputs(e: &Edits) -> Result<Vec<(&'static str, DynValue)>> {
    let mut steering = vec![0f32; e.layers * e.hidden];
    for l in 0..e.layers {
        if let Some(v) = e.residual(l) {
            steering[l * e.hidden..(l + 1) * e.hidden].copy_from_slice(v);
        }
    }
    Ok(vec![
        ("intervention_keep", tensor(&[e.layers, e.width], e.keep.clone())?),
        ("intervention_add", tensor(&[e.layers, e.width], e.add.clone())?),
        ("steering", tensor(&[e.layers, e.hidden], steering)?),
    ])
}

/// The keys and values of every layer between steps, as the graph returned them.
#[derive(Default)]
struct Cache {
    layers: Vec<(DynValue, DynValue)>,
}

/// Most tokens one body run takes; a batch with more runs as consecutive groups of whole rows. ORT's working set
/// grows with a run's tokens (Gemma-3-270M, pass 1 at 4 × 512 tokens: ~1 GB of arena, the activations of every
/// layer in flight at once), and runs of one 512-token row were also faster than one run of four (bare ORT, count
/// pass, 2 threads: 1447 against 1277 tokens/s).
const RUN_TOKENS: usize = 512;

/// The row ranges of `batch`'s runs: as many whole rows as fit in `max_positions`, at least one.
fn run_rows(batch: &TokenBatch, max_positions: usize) -> Vec<std::ops::Range<usize>> {
    let per_run = (max_positions / batch.seq_len).max(1);
    (0..batch.rows).step_by(per_run).map(|start| start..(start + per_run).min(batch.rows)).collect()
}

/// The tap statistics of one body pass, summed over its runs, in `TapStats`' layout (quantiles finished by
/// lsn-core's rule: fused lerp between the graph's order statistics, or the host reducer over the activations).
struct TapAcc {
    stats: TapStats,
    /// Host quantiles of a pass of several runs: each layer's activations of every run, in row order.
    acts: Vec<Vec<f32>>,
}

impl TapAcc {
    fn new(layers: usize, width: usize, n_tokens: usize, spec: &BodySpec) -> Self {
        let plane = layers * width;
        let stats = TapStats {
            layers,
            intermediate: width,
            n_tokens: n_tokens as u64,
            count_pos: spec.count_pos.then(|| vec![0; plane]),
            sum: spec.moments.then(|| vec![0.0; plane]),
            sum_sq: spec.moments.then(|| vec![0.0; plane]),
            ..TapStats::default()
        };
        let acts = if spec.quantiles == Quantiles::Host { vec![Vec::new(); layers] } else { Vec::new() };
        Self { stats, acts }
    }

    /// Adds the outputs of one run over `n_tokens` real tokens; `whole` when it is the pass's only run.
    fn add(&mut self, out: &SessionOutputs<'_>, spec: &BodySpec, n_tokens: usize, whole: bool) -> Result<()> {
        let (layers, width) = (self.stats.layers, self.stats.intermediate);
        let plane = layers * width;
        if let Some(acc) = &mut self.stats.count_pos {
            acc.iter_mut().zip(extract::<f32>(out, "count_pos")?).for_each(|(a, c)| *a += c as u64);
        }
        if let (Some(sum), Some(sum_sq)) = (&mut self.stats.sum, &mut self.stats.sum_sq) {
            sum.iter_mut().zip(extract::<f64>(out, "sum")?).for_each(|(a, v)| *a += v);
            sum_sq.iter_mut().zip(extract::<f64>(out, "sum_sq")?).for_each(|(a, v)| *a += v);
        }
        match spec.quantiles {
            Quantiles::Graph => {
                // `[layers, 2·levels, width]`: the low and high order statistics of each level (one run: see
                // `run_body`).
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
                self.stats.quantiles = Some(q);
            }
            Quantiles::Host => {
                // One run: reduce straight from ORT's outputs; several: keep each layer's rows for `finish`.
                let mut r = whole
                    .then(|| TapReducer::new(layers, width, &Taps { quantiles: true, ..Taps::NONE }))
                    .transpose()?;
                for l in 0..layers {
                    let name = format!("act_{l}");
                    let v = out.get(&name).ok_or_else(|| Error::Export(format!("the graph has no output {name}")))?;
                    let (_, a) = v.try_extract_tensor::<f32>().during(|| format!("reading output {name}"))?;
                    match &mut r {
                        Some(r) => r.push(l, a, None)?,
                        None => self.acts[l].extend_from_slice(a),
                    }
                }
                if let Some(r) = r {
                    self.stats.quantiles = r.finish(n_tokens as u64)?.quantiles;
                }
            }
            Quantiles::No => {}
        }
        if spec.above {
            // `[layers, S, width]` → `[S, layers·width]`.
            let c = extract::<f32>(out, "count_above")?;
            let n_thr = c.len() / plane.max(1);
            let above = self.stats.count_above.get_or_insert_with(|| vec![0; n_thr * plane]);
            for l in 0..layers {
                for s in 0..n_thr {
                    let src = &c[(l * n_thr + s) * width..][..width];
                    for (dst, &v) in above[s * plane + l * width..][..width].iter_mut().zip(src) {
                        *dst += v as u64;
                    }
                }
            }
        }
        Ok(())
    }

    /// The pass's statistics (host quantiles of a pass of several runs reduced now, over all its tokens).
    fn finish(mut self) -> Result<TapStats> {
        if self.acts.iter().any(|a| !a.is_empty()) {
            let (layers, width) = (self.stats.layers, self.stats.intermediate);
            let mut r = TapReducer::new(layers, width, &Taps { quantiles: true, ..Taps::NONE })?;
            for (l, a) in self.acts.iter().enumerate() {
                r.push(l, a, None)?;
            }
            self.stats.quantiles = r.finish(self.stats.n_tokens)?.quantiles;
        }
        Ok(self.stats)
    }
}

impl Engine for OrtModel {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn backend(&self) -> &'static str {
        crate::NAME
    }

    fn body(&mut self, pass: &BodyPass<'_>) -> lsn_core::Result<BodyOut> {
        Ok(self.run_body(pass)?)
    }

    fn head_logits(&mut self, hidden: &[f32]) -> lsn_core::Result<Vec<f32>> {
        Ok(self.head_chunk(hidden, None)?)
    }

    fn head_nll(&mut self, hidden: &[f32], targets: &[u32]) -> lsn_core::Result<Vec<f32>> {
        Ok(self.head_chunk(hidden, Some(targets))?)
    }

    fn new_cache(&mut self) -> lsn_core::Result<KvCache> {
        Ok(Box::new(Cache::default()))
    }

    fn step(&mut self, cache: &mut KvCache, step: &Step<'_>) -> lsn_core::Result<Vec<f32>> {
        let cache = downcast_cache::<Cache>(cache, crate::NAME)?;
        Ok(self.run_step(cache, step)?)
    }

    fn keep_rows(&mut self, cache: &mut KvCache, rows: &[usize]) -> lsn_core::Result<()> {
        let cache = downcast_cache::<Cache>(cache, crate::NAME)?;
        Ok(Self::keep_cache_rows(cache, rows)?)
    }
}
