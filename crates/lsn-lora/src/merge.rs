//! Merging an adapter into a checkpoint: `W ← W + (α/r)·B·A` for every adapted linear of every layer, written as a
//! new HF checkpoint directory (config and tokenizer copied, every tensor f32), so a backend without unmerged LoRA
//! (ONNX Runtime) runs the fine-tuned model. The head, when there is one, is written beside it as `head.safetensors`
//! (`score.weight`), the file `lsn eval --protocol head --head` reads.

use std::collections::BTreeMap;
use std::path::Path;

use lsn_core::Adapter;
use lsn_weights::Checkpoint;

use crate::Result;

/// The file the head goes to in a merged directory.
pub const HEAD_FILE: &str = "head.safetensors";

/// `s·B·A` `[out, in]` for B `[out, r]` and A `[r, in]`, accumulated in f64.
pub fn delta(b: &[f32], a: &[f32], out: usize, rank: usize, inp: usize, s: f32) -> Vec<f32> {
    let mut d = vec![0.0f32; out * inp];
    for o in 0..out {
        let brow = &b[o * rank..(o + 1) * rank];
        if brow.iter().all(|&x| x == 0.0) {
            continue; // a masked (or untrained) row adds nothing
        }
        let drow = &mut d[o * inp..(o + 1) * inp];
        for (i, dv) in drow.iter_mut().enumerate() {
            let mut acc = 0.0f64;
            for (k, &bk) in brow.iter().enumerate() {
                acc += f64::from(bk) * f64::from(a[k * inp + i]);
            }
            *dv = (f64::from(s) * acc) as f32;
        }
    }
    d
}

/// Writes the merge of `adapter` into `ckpt` to `out_dir` (atomically; an existing non-empty directory is refused).
pub fn merge_into(ckpt: &Checkpoint, adapter: &Adapter, out_dir: &Path) -> Result<()> {
    let cfg = &ckpt.config;
    let params = adapter.validate(cfg)?;
    let (rank, s) = (adapter.layout.rank, adapter.layout.scale());
    // HF tensor name → (A, B) of the linear it adapts.
    let values = &adapter.values;
    let deltas: BTreeMap<String, (&[f32], &[f32])> = adapter
        .layout
        .modules(cfg)
        .into_iter()
        .map(|m| (format!("model.layers.{}.{}.weight", m.layer, m.target.path()), (&values[m.a][..], &values[m.b][..])))
        .collect();
    let head = adapter.layout.head_index(cfg).map(|i| (params[i].shape.clone(), values[i].clone()));
    let merged = std::cell::Cell::new(0usize);
    let mut edit = |name: &str, shape: &[usize], values: &mut Vec<f32>| -> lsn_weights::Result<()> {
        if let Some((a, b)) = deltas.get(name) {
            let (out, inp) = (shape[0], shape[1]);
            for (w, d) in values.iter_mut().zip(delta(b, a, out, rank, inp, s)) {
                *w += d;
            }
            merged.set(merged.get() + 1);
        }
        Ok(())
    };
    let want = deltas.len();
    let mut finish = |dir: &Path| -> lsn_weights::Result<()> {
        if merged.get() != want {
            return Err(lsn_weights::Error::BadTensorData {
                tensor: "LoRA targets".into(),
                reason: format!(
                    "the checkpoint had {} of the adapter's {want} target weights; is the adapter of another model?",
                    merged.get()
                ),
            });
        }
        if let Some((shape, v)) = &head {
            let t = [("score.weight".to_string(), shape.clone(), v.clone())];
            lsn_weights::write_safetensors_f32(&dir.join(HEAD_FILE), &t, &BTreeMap::new())?;
        }
        Ok(())
    };
    lsn_weights::write_edited_checkpoint(ckpt, out_dir, &mut edit, &mut finish)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_is_scaled_b_times_a() {
        // B [2, 1] = [[1], [0]], A [1, 3] = [[1, 2, 3]], s = 2.
        let d = delta(&[1.0, 0.0], &[1.0, 2.0, 3.0], 2, 1, 3, 2.0);
        assert_eq!(d, vec![2.0, 4.0, 6.0, 0.0, 0.0, 0.0]);
    }
}
