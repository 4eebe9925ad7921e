//! The training step, written once: one batch's loss and the gradient of every adapter parameter, over a backend's
//! autodiff ([`TrainOps`]) and lsn-core's one layer algorithm. The loss of each objective, the LM head run in chunks
//! whose graphs are freed one by one, the layer-recompute schedule and the unpadding live here; a backend gives its
//! ops, a tape (record or not, leaves) and a backward.
//!
//! The schedule: the first `num_layers / RECOMPUTE_DIVISOR` layers run without a graph, each one's input kept; the
//! others run with one from a leaf at their input, and the loss's backward goes through them at once. Each kept
//! layer is then rerun with a graph from its input, last first, and the gradient sent through it. The layers run over
//! a padded batch's real positions alone (attention over the padded layout, the ops' business).

use crate::arch::LayerWeights;
use crate::layer::{LayerOps, decoder_layer};
use crate::{ModelConfig, Objective, TrainBatch};

/// Training reruns the first `num_layers / RECOMPUTE_DIVISOR` layers in the backward instead of holding their graph.
/// Train bench, Gemma-3-270M (18 layers), 16 XNLI rows, layers rerun → tokens/s and peak RSS (× the f32 weights):
/// tch 0 → 382, 2.46×; 3 → 372, 2.27×; 6 → 335, 2.07×. Candle 0 → 338, 2.92×; 6 → 304, 2.37×; 10 → 274, 1.99×;
/// measured again side by side, candle 6 → 3 rerun: 292 → 315 tokens/s, 2.37× → 2.65×. 6 (3 layers rerun) keeps
/// tch within 3% of no recompute.
pub const RECOMPUTE_DIVISOR: usize = 6;

/// Positions of the LM head per chunk of the next-token loss: bounds the logits (and their gradient) held at once
/// (`HEAD_CHUNK × vocab` f32: 128 MiB on Gemma 3's 262144-entry vocabulary). Train bench `train-lm` (Gemma-3-270M,
/// 16 XNLI rows, 765 tokens, side by side), 128 vs 256: candle 74.1 vs 65.3 tokens/s, peak RSS 3866 vs 5272 MiB;
/// tch 118.5 vs 125.5 tokens/s, 2836 vs 3332 MiB. 128 holds less on both and is faster on candle.
pub const HEAD_CHUNK: usize = 128;

/// What training needs from a backend beyond the layer's ops: its tape and backward, and the ops of the loss.
pub trait TrainOps: LayerOps {
    /// An error with this message (a step that the algorithm finds inconsistent).
    fn fail(&self, message: &str) -> Self::Error;
    /// The (scaled, where the family scales them) f32 embeddings of `ids`, in the layout the layers take: the
    /// batch's positions, or the real ones alone when the batch has padding.
    fn embed(&mut self, ids: &[u32]) -> Result<Self::X, Self::Error>;
    /// Whether the ops that follow record a graph (off: the layers take the fused kernels, and nothing is held).
    fn record(&mut self, on: bool) -> Result<(), Self::Error>;
    /// `x`'s value, cut from any graph.
    fn detach(&mut self, x: &Self::X) -> Result<Self::X, Self::Error>;
    /// `x`'s value as a fresh leaf whose gradient [`TrainOps::backward`] can return.
    fn leaf(&mut self, x: &Self::X) -> Result<Self::X, Self::Error>;
    /// The final norm, as `[tokens, hidden]` rows.
    fn final_norm(&mut self, x: &Self::X) -> Result<Self::X, Self::Error>;
    /// Rows `x` `[n, w]` placed at rows `idx` of a zero `[len, w]` (differentiable in `x`).
    fn scatter_rows(&mut self, x: &Self::X, idx: &[u32], len: usize) -> Result<Self::X, Self::Error>;
    /// Rows `idx` of `x` `[n, w]`.
    fn gather_rows(&mut self, x: &Self::X, idx: &[u32]) -> Result<Self::X, Self::Error>;
    /// Rows `start..start + len` of `x`.
    fn narrow_rows(&mut self, x: &Self::X, start: usize, len: usize) -> Result<Self::X, Self::Error>;
    /// The frozen LM head's (soft-capped) logits of hidden rows.
    fn lm_logits(&mut self, h: &Self::X) -> Result<Self::X, Self::Error>;
    /// The adapter's classification head's logits of hidden rows.
    fn class_logits(&mut self, h: &Self::X) -> Result<Self::X, Self::Error>;
    /// `−Σᵢ wᵢ · log softmax(logitsᵢ)[targetsᵢ]` (all `wᵢ = 1` without weights), a scalar.
    fn nll_sum(&mut self, logits: &Self::X, targets: &[u32], weights: Option<&[f32]>) -> Result<Self::X, Self::Error>;
    /// A scalar's value.
    fn scalar(&mut self, x: &Self::X) -> Result<f64, Self::Error>;
    /// Backpropagates `Σ y ⊙ seed` (`y` itself, a scalar, without a seed) through `y`'s graph, which is freed: the
    /// adapter's parameters accumulate their gradients (over every backward of the step), and the gradient reaching
    /// each leaf of `wrt` in this backward alone comes back (`None` where none reached it).
    fn backward(
        &mut self,
        y: &Self::X,
        seed: Option<&Self::X>,
        wrt: &[&Self::X],
    ) -> Result<Vec<Option<Self::X>>, Self::Error>;
}

/// One training step over `tb`: runs the model under the adapter the ops hold, and backpropagates the summed loss
/// into the adapter's parameters. Returns `(loss sum, count)` (the rows, or the summed next-token weights).
pub fn train_step<O: TrainOps>(
    ops: &mut O,
    cfg: &ModelConfig,
    layers: &[LayerWeights<O::W>],
    tb: &TrainBatch,
) -> Result<(f64, f64), O::Error> {
    let b = &tb.batch;
    let real = b.real_positions();
    let ids: Vec<u32> = match &real {
        Some(r) => r.iter().map(|&p| b.ids[p as usize]).collect(),
        None => b.ids.clone(),
    };
    let rerun = layers.len() / RECOMPUTE_DIVISOR;
    let run = |ops: &mut O, l: usize, x: &O::X| {
        decoder_layer(ops, cfg, &layers[l], l, x, false)?.ok_or_else(|| ops.fail("a layer returned no output"))
    };

    ops.record(false)?;
    let mut x = ops.embed(&ids)?;
    let mut inputs = Vec::with_capacity(rerun);
    for l in 0..rerun {
        let y = run(ops, l, &x)?;
        let y = ops.detach(&y)?;
        inputs.push(std::mem::replace(&mut x, y));
    }
    ops.record(true)?;
    // The graph starts at a leaf (whose gradient goes on to the rerun layers), or at the frozen embeddings.
    let top = if rerun > 0 { Some(ops.leaf(&x)?) } else { None };
    let mut x = match &top {
        Some(t) => run(ops, rerun, t)?,
        None => run(ops, rerun, &x)?,
    };
    for l in rerun + 1..layers.len() {
        x = run(ops, l, &x)?;
    }
    let h = ops.final_norm(&x)?;
    drop(x);
    let h = match &real {
        Some(r) => ops.scatter_rows(&h, r, b.rows * b.seq_len)?,
        None => h,
    };
    let wrt: Vec<&O::X> = top.iter().collect();
    let (loss_sum, count, mut g) = match &tb.objective {
        Objective::Classify { labels } => {
            let last: Vec<u32> = (0..b.rows).map(|r| (r * b.seq_len + b.lengths[r] - 1) as u32).collect();
            let hl = ops.gather_rows(&h, &last)?;
            let logits = ops.class_logits(&hl)?;
            let loss = ops.nll_sum(&logits, labels, None)?;
            let v = ops.scalar(&loss)?;
            (v, b.rows as f64, ops.backward(&loss, None, &wrt)?)
        }
        Objective::NextToken { .. } => {
            let terms = tb.next_token_terms();
            if terms.is_empty() {
                return Ok((0.0, 0.0));
            }
            let pos: Vec<u32> = terms.iter().map(|t| t.0).collect();
            let hs = ops.gather_rows(&h, &pos)?;
            drop(h);
            // The head's graph per chunk is freed by its backward; the hidden rows' gradient gathers in `gh`.
            let hd = ops.detach(&hs)?;
            let hd = ops.leaf(&hd)?;
            let (mut loss_sum, mut gh) = (0.0, None::<O::X>);
            for (c, chunk) in terms.chunks(HEAD_CHUNK).enumerate() {
                let x = ops.narrow_rows(&hd, c * HEAD_CHUNK, chunk.len())?;
                let logits = ops.lm_logits(&x)?;
                let tgt: Vec<u32> = chunk.iter().map(|t| t.1).collect();
                let w: Vec<f32> = chunk.iter().map(|t| t.2).collect();
                let loss = ops.nll_sum(&logits, &tgt, Some(&w))?;
                loss_sum += ops.scalar(&loss)?;
                if let Some(g) = ops.backward(&loss, None, &[&hd])?.pop().flatten() {
                    gh = Some(match gh {
                        Some(acc) => ops.add(&acc, &g)?,
                        None => g,
                    });
                }
            }
            let gh = gh.ok_or_else(|| ops.fail("no gradient reached the hidden states"))?;
            let g = ops.backward(&hs, Some(&gh), &wrt)?;
            (loss_sum, terms.iter().map(|t| f64::from(t.2)).sum(), g)
        }
    };
    // Layer 0's input is the frozen embedding: no gradient is needed there.
    let mut g = g.pop().flatten();
    for (l, input) in inputs.iter().enumerate().rev() {
        let Some(gl) = g.take() else { break };
        if l == 0 {
            let y = run(ops, l, input)?;
            ops.backward(&y, Some(&gl), &[])?;
        } else {
            let x = ops.leaf(input)?;
            let y = run(ops, l, &x)?;
            g = ops.backward(&y, Some(&gl), &[&x])?.pop().flatten();
            if g.is_none() {
                return Err(ops.fail("no gradient reached a layer's input"));
            }
        }
    }
    Ok((loss_sum, count))
}
