//! The FFN tap statistics reduced on the libtorch device, layer by layer, and copied to the host once per batch.
//!
//! They are the numbers `lsn_core::TapReducer` defines: counts of `a > 0`, f64 sums and sums of squares, linear
//! quantiles at `lsn_core::QUANTILES` and counts above per-neuron thresholds. On an accelerator, quantiles are sorted
//! on the device; the two neighbouring order statistics of each level come back to the host, which finishes with
//! lsn-core's rank and fused-lerp rule (torch 2.13's own `quantile` differs from that rule, which follows torch 2.15,
//! in the last bit). On the CPU they go to lsn-core's `TapReducer`, whose selection reads the same order statistics
//! without a full sort: torch's transpose + sort of `[2048 × 2048]` per layer took pass 1 from 652 (counts only) to
//! 361 tokens/s in the capture bench.

use lsn_core::taps::{lerp_fused, quantile_position};
use lsn_core::{QUANTILES, TapReducer, TapStats, Taps};
use tch::{Device, Kind, TchError, Tensor};

use crate::ops::to_vec;

type Result<T> = std::result::Result<T, TchError>;

/// Positions per run of the f64 moment sums (in unit tests fewer, so that their 53-position batches take several).
const MOMENT_ROWS: i64 = if cfg!(test) { 16 } else { 256 };

/// Accumulates one batch's per-layer statistics on the device.
pub(crate) struct DeviceTaps {
    taps: Taps,
    intermediate: usize,
    /// Rows of the real tokens when the batch has padding.
    real: Option<Tensor>,
    /// Per quantile level, the two order statistics (ranks) it interpolates and the weight, for this batch's size.
    positions: Vec<(usize, usize, f32)>,
    /// Those ranks, low and high per level, on the device.
    ranks: Tensor,
    /// Thresholds `[n, layers·intermediate]` on the device.
    thresholds: Option<Tensor>,
    layer: usize,
    count_pos: Vec<Tensor>,
    sum: Vec<Tensor>,
    sum_sq: Vec<Tensor>,
    quantiles: Vec<Tensor>,
    above: Vec<Tensor>,
    /// Quantiles reduced on the host instead (CPU), with the real rows it reads.
    host: Option<(TapReducer, Option<Vec<u32>>)>,
}

/// Where [`DeviceTaps`] computes the batch quantiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QuantilesOn {
    /// Sorted on the libtorch device.
    Device,
    /// Selected by lsn-core's host reducer from a host copy of each layer's activations.
    Host,
}

impl QuantilesOn {
    /// The faster place for a device: the host when the tensors are already in host memory.
    pub(crate) fn for_device(device: Device) -> Self {
        if device == Device::Cpu { Self::Host } else { Self::Device }
    }
}

fn core_err(e: lsn_core::Error) -> TchError {
    TchError::Kind(format!("FFN tap reduction: {e}"))
}

impl DeviceTaps {
    pub(crate) fn new(
        taps: &Taps,
        layers: usize,
        intermediate: usize,
        n_tokens: usize,
        real: Option<&[u32]>,
        device: Device,
        quantiles_on: QuantilesOn,
    ) -> Result<Self> {
        let host = if taps.quantiles && quantiles_on == QuantilesOn::Host {
            let only = Taps { quantiles: true, ..Taps::NONE };
            Some((TapReducer::new(layers, intermediate, &only).map_err(core_err)?, real.map(<[u32]>::to_vec)))
        } else {
            None
        };
        let real = match real {
            Some(r) => {
                Some(Tensor::f_from_slice(&r.iter().map(|&i| i64::from(i)).collect::<Vec<_>>())?.f_to_device(device)?)
            }
            None => None,
        };
        // `[n, layers·intermediate]`; the caller has checked (`Taps::n_thresholds`) that the length divides.
        let plane = (layers * intermediate) as i64;
        let thresholds = match &taps.above {
            Some(thr) => Some(Tensor::f_from_slice(thr)?.f_reshape([-1, plane])?.f_to_device(device)?),
            None => None,
        };
        let positions: Vec<(usize, usize, f32)> = QUANTILES.iter().map(|&q| quantile_position(n_tokens, q)).collect();
        let ranks: Vec<i64> = positions.iter().flat_map(|&(lo, hi, _)| [lo as i64, hi as i64]).collect();
        Ok(Self {
            taps: taps.clone(),
            intermediate,
            real,
            positions,
            ranks: Tensor::f_from_slice(&ranks)?.f_to_device(device)?,
            thresholds,
            layer: 0,
            count_pos: Vec::new(),
            sum: Vec::new(),
            sum_sq: Vec::new(),
            quantiles: Vec::new(),
            above: Vec::new(),
            host,
        })
    }

    /// Reduces the next layer's activations `a` `[positions, intermediate]` over the real tokens.
    pub(crate) fn push(&mut self, a: &Tensor) -> Result<()> {
        if let Some((reducer, rows)) = self.host.as_mut() {
            let values = Vec::<f32>::try_from(&a.f_contiguous()?.f_reshape([-1])?)?;
            reducer.push(self.layer, &values, rows.as_deref()).map_err(core_err)?;
        }
        let a = match &self.real {
            Some(rows) => a.f_index_select(0, rows)?,
            None => a.shallow_clone(),
        };
        if self.taps.count_pos {
            self.count_pos.push(a.f_gt(0.0)?.f_sum_dim_intlist(0, false, Kind::Int64)?);
        }
        if self.taps.moments {
            // In runs of MOMENT_ROWS positions, each widened to a copy (never an alias of `a`) squared in place after
            // its sum: an f64 buffer of a few MiB in flight instead of two of `[positions, intermediate]` (2 × 32 MiB
            // for a 4 × 512 batch of Gemma-3-270M, which kept tch's capture peak above 1.5× the weights).
            let mut sum = Tensor::f_zeros([self.intermediate as i64], (Kind::Double, a.device()))?;
            let mut sum_sq = sum.f_zeros_like()?;
            for part in a.f_split(MOMENT_ROWS, 0)? {
                let mut wide = part.f_to_dtype(Kind::Double, false, true)?;
                sum = sum.f_add(&wide.f_sum_dim_intlist(0, false, Kind::Double)?)?;
                sum_sq = sum_sq.f_add(&wide.f_square_()?.f_sum_dim_intlist(0, false, Kind::Double)?)?;
            }
            self.sum.push(sum);
            self.sum_sq.push(sum_sq);
        }
        if self.taps.quantiles && self.host.is_none() {
            self.quantiles.push(self.quantiles_of(&a)?);
        }
        if let Some(thr) = &self.thresholds {
            let width = self.intermediate as i64;
            let layer_thr = thr.f_narrow(1, self.layer as i64 * width, width)?;
            let mut rows = Vec::with_capacity(layer_thr.size()[0] as usize);
            for s in 0..layer_thr.size()[0] {
                let t = layer_thr.f_get(s)?;
                rows.push(a.f_gt_tensor(&t.f_unsqueeze(0)?)?.f_sum_dim_intlist(0, false, Kind::Int64)?);
            }
            self.above.push(Tensor::f_stack(&rows, 0)?);
        }
        self.layer += 1;
        Ok(())
    }

    /// The order statistics `[2 · QUANTILES.len(), intermediate]` (low, high rank per level) over the token axis.
    fn quantiles_of(&self, a: &Tensor) -> Result<Tensor> {
        // Sorting along the contiguous axis is several times faster than along the strided token axis.
        let (sorted, _) = a.f_transpose(0, 1)?.f_contiguous()?.f_sort(-1, false)?;
        sorted.f_index_select(1, &self.ranks)?.f_transpose(0, 1)
    }

    /// Quantiles `[QUANTILES.len(), n]` from the order statistics `[2 · QUANTILES.len(), n]`.
    fn lerp(&self, order: &[f32]) -> Vec<f32> {
        let n = order.len() / (2 * QUANTILES.len()).max(1);
        let mut out = Vec::with_capacity(QUANTILES.len() * n);
        for (k, &(_, _, w)) in self.positions.iter().enumerate() {
            let (lo, hi) = (&order[2 * k * n..(2 * k + 1) * n], &order[(2 * k + 1) * n..(2 * k + 2) * n]);
            out.extend(lo.iter().zip(hi).map(|(&a, &b)| lerp_fused(a, b, w)));
        }
        out
    }

    /// The statistics of every layer, `[rows, layers·intermediate]` row-major by layer, over `n_tokens` real tokens.
    pub(crate) fn finish(mut self, layers: usize, n_tokens: u64) -> Result<TapStats> {
        // Per-layer `[intermediate]` vectors concatenate to `[layers·intermediate]`; per-layer `[rows, intermediate]`
        // matrices concatenate along the neuron axis to `[rows, layers·intermediate]`.
        let flat = |v: &[Tensor]| -> Result<Option<Tensor>> {
            if v.is_empty() { Ok(None) } else { Tensor::f_cat(v, 0).map(Some) }
        };
        let wide = |v: &[Tensor]| -> Result<Option<Tensor>> {
            if v.is_empty() { Ok(None) } else { Tensor::f_cat(v, 1).map(Some) }
        };
        let u64s = |t: Option<Tensor>| -> Result<Option<Vec<u64>>> {
            t.map(|t| to_vec::<i64>(&t).map(|v| v.into_iter().map(|x| x as u64).collect())).transpose()
        };
        let host_quantiles = match self.host.take() {
            Some((reducer, _)) => reducer.finish(n_tokens).map_err(core_err)?.quantiles,
            None => None,
        };
        Ok(TapStats {
            layers,
            intermediate: self.intermediate,
            n_tokens,
            count_pos: u64s(flat(&self.count_pos)?)?,
            sum: flat(&self.sum)?.map(|t| to_vec::<f64>(&t)).transpose()?,
            sum_sq: flat(&self.sum_sq)?.map(|t| to_vec::<f64>(&t)).transpose()?,
            quantiles: match host_quantiles {
                Some(q) => Some(q),
                None => wide(&self.quantiles)?.map(|t| to_vec::<f32>(&t)).transpose()?.map(|v| self.lerp(&v)),
            },
            count_above: u64s(wide(&self.above)?)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lsn_core::TapReducer;

    use super::*;

    /// Activations with ties, exact zeros, saturated negatives and values on the thresholds.
    fn activations(n: usize, width: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n * width)
            .map(|i| {
                s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let u = (s >> 40) as f32 / (1u64 << 24) as f32;
                match i % 7 {
                    0 => 0.0,
                    1 => -0.17,
                    2 => (u * 8.0).round() / 4.0 - 1.0,
                    _ => u * 6.0 - 2.0,
                }
            })
            .collect()
    }

    #[test]
    fn device_reduction_equals_the_host_reducer() {
        let (layers, width, n) = (2, 37, 53);
        let plane = layers * width;
        let thresholds: Vec<f32> = (0..2 * plane).map(|i| [0.0, -0.17, 0.25, 1.0][i % 4]).collect();
        let taps =
            Taps { count_pos: true, moments: true, quantiles: true, above: Some(Arc::new(thresholds)), ..Taps::NONE };
        // Rows 3 and 40 are padding.
        let real: Vec<u32> = (0..n as u32).filter(|&r| r != 3 && r != 40).collect();
        for on in [QuantilesOn::Device, QuantilesOn::Host] {
            let mut host = TapReducer::new(layers, width, &taps).unwrap();
            let mut dev = DeviceTaps::new(&taps, layers, width, real.len(), Some(&real), Device::Cpu, on).unwrap();
            for l in 0..layers {
                let a = activations(n, width, l as u64 + 1);
                host.push(l, &a, Some(&real)).unwrap();
                dev.push(&Tensor::from_slice(&a).reshape([n as i64, width as i64])).unwrap();
            }
            let (h, d) = (host.finish(real.len() as u64).unwrap(), dev.finish(layers, real.len() as u64).unwrap());
            same(d, h);
        }
    }

    fn same(d: TapStats, h: TapStats) {
        assert_eq!(d.count_pos, h.count_pos);
        assert_eq!(d.count_above, h.count_above);
        // torch's sort (or lsn-core's selection) against lsn-core's bit-exact transcription of torch.quantile.
        assert_eq!(d.quantiles, h.quantiles);
        for (x, y) in d.sum.unwrap().iter().zip(h.sum.unwrap()).chain(d.sum_sq.unwrap().iter().zip(h.sum_sq.unwrap())) {
            assert!((x - y).abs() <= 1e-12 * y.abs().max(1.0), "{x} vs {y}");
        }
    }
}
