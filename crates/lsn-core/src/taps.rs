//! The FFN tap reductions, defined once: per-neuron counts, moments, batch quantiles and threshold counts of one
//! layer's activations `a [n, intermediate]`, reduced over a batch's real tokens on the host.
//!
//! Backends whose activations live in host memory call [`TapReducer`] directly; a backend that reduces on a device
//! must produce the same numbers (the conformance suite compares them).

use rayon::prelude::*;

use crate::{Error, Result, TapStats, Taps};

/// The quantile levels of the capture's first pass (DESIGN §4), in this order.
pub const QUANTILES: [f32; 7] = [0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95];

/// Index of quantile level `q` in [`QUANTILES`].
pub fn quantile_index(q: f32) -> Option<usize> {
    QUANTILES.iter().position(|&x| x == q)
}

/// The `q`-quantile (`q` in [0, 1]) of the ascending, non-empty `sorted` values, equal bit for bit to
/// `torch.quantile(x, q)` with the default "linear" interpolation on an f32 tensor (CPU, torch 2.x; checked against
/// torch 2.15 on `fixtures/select/torch-quantile.json`). NaN for an empty slice.
///
/// torch's rule, step by step:
/// * `rank = q · (n − 1)` in **f64** from the f32 `q` (an f32 product misses torch in about a third of the
///   fixture cases);
/// * `lo = ⌊rank⌋`, `hi = min(lo + 1, n − 1)` (torch's `ceil(rank)`, equal wherever the weight is not 0);
/// * weight `w = rank − lo`, rounded to f32;
/// * `torch.lerp(v[lo], v[hi], w)` with **one** rounding — torch's kernel is a fused multiply-add:
///   `fma(w, b − a, a)` for `|w| < 0.5`, else `fma(w − 1, b − a, b)` (the formula with two roundings,
///   `a + w·(b − a)`, misses by an ulp now and then). `f32::mul_add` is exact on every platform.
pub fn quantile_linear_f32(sorted: &[f32], q: f32) -> f32 {
    if sorted.is_empty() {
        return f32::NAN;
    }
    let (lo, hi, w) = quantile_position(sorted.len(), q);
    lerp_fused(sorted[lo], sorted[hi], w)
}

/// Where the `q`-quantile of `n ≥ 1` ascending values lies under torch's linear rule: the two neighbouring ranks
/// and the f32 interpolation weight (see [`quantile_linear_f32`]). A backend that sorts on its device gathers these two
/// rows and finishes with [`lerp_fused`].
pub fn quantile_position(n: usize, q: f32) -> (usize, usize, f32) {
    let last = n.saturating_sub(1);
    let rank = f64::from(q) * last as f64;
    let lo = (rank.floor().max(0.0) as usize).min(last);
    let hi = (lo + 1).min(last);
    (lo, hi, (rank - lo as f64) as f32)
}

/// Writes the order statistics of `v` at the ascending, distinct `ranks` (relative to `base`) into `out`, one per
/// rank, reordering `v`. Equal bit for bit to sorting `v` by `f32::total_cmp` and reading those ranks (the order is
/// total, so the value at each rank is unique), in O(n · log ranks) instead of O(n · log n): a column of 2048 values
/// at the 14 ranks of [`QUANTILES`] takes 2.7× less time than its sort (measured, rustc -O).
pub fn order_statistics(v: &mut [f32], base: usize, ranks: &[usize], out: &mut [f32]) {
    if ranks.is_empty() {
        return;
    }
    let mid = ranks.len() / 2;
    let r = ranks[mid] - base;
    let (left, nth, right) = v.select_nth_unstable_by(r, f32::total_cmp);
    out[mid] = *nth;
    let (out_left, out_right) = out.split_at_mut(mid);
    order_statistics(left, base, &ranks[..mid], out_left);
    order_statistics(right, base + r + 1, &ranks[mid + 1..], &mut out_right[1..]);
}

/// The distinct ranks the quantile levels of [`QUANTILES`] read among `n ≥ 1` values, ascending, and for each level
/// the indices of its low and high rank in that list with its weight.
fn quantile_plan(n: usize) -> (Vec<usize>, Vec<(usize, usize, f32)>) {
    let positions: Vec<(usize, usize, f32)> = QUANTILES.iter().map(|&q| quantile_position(n, q)).collect();
    let mut ranks: Vec<usize> = positions.iter().flat_map(|&(lo, hi, _)| [lo, hi]).collect();
    ranks.sort_unstable();
    ranks.dedup();
    let at = |r: usize| ranks.binary_search(&r).expect("every rank is listed");
    let levels = positions.iter().map(|&(lo, hi, w)| (at(lo), at(hi), w)).collect();
    (ranks, levels)
}

/// torch.lerp(a, b, w) with one rounding, as torch's kernel computes it.
pub fn lerp_fused(a: f32, b: f32, w: f32) -> f32 {
    if w.abs() < 0.5 { w.mul_add(b - a, a) } else { (w - 1.0).mul_add(b - a, b) }
}

/// Neurons per parallel work item of the quantiles: the columns of one block are gathered into a contiguous buffer.
const BLOCK: usize = 32;
/// Neurons per parallel work item of the other statistics: each row's slice of the block is read in place.
const ROW_BLOCK: usize = 256;

/// Adds the rows of `x` (`[n, width]`, f32) to `acc` (`[width]`, f64): every row, or only `rows` (flat row indices,
/// the real tokens of a padded batch). The one definition of [`crate::Outputs::layer_sums`].
pub fn add_rows(acc: &mut [f64], x: &[f32], rows: Option<&[u32]>) {
    let width = acc.len();
    if width == 0 {
        return;
    }
    let mut add = |row: &[f32]| {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += f64::from(v);
        }
    };
    match rows {
        Some(rows) => rows.iter().for_each(|&r| add(&x[r as usize * width..(r as usize + 1) * width])),
        None => x.chunks_exact(width).for_each(add),
    }
}

/// Accumulates the requested [`Taps`] of one batch, one layer at a time.
#[derive(Debug)]
pub struct TapReducer {
    layers: usize,
    width: usize,
    taps: Taps,
    n_thresholds: usize,
    count_pos: Vec<u64>,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    quantiles: Vec<f32>,
    count_above: Vec<u64>,
    done: Vec<bool>,
}

/// One row block's results, scattered into the layer-wide arrays afterwards.
struct BlockOut {
    count_pos: Vec<u64>,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    /// `[threshold][col]`
    count_above: Vec<u64>,
}

impl TapReducer {
    /// A reducer for a model with `layers × width` neurons. Fails when the thresholds of `taps.above` are not a whole
    /// number of `[layers × width]` planes.
    pub fn new(layers: usize, width: usize, taps: &Taps) -> Result<Self> {
        let plane = layers * width;
        let n_thresholds = taps.n_thresholds(plane)?;
        let sized = |on: bool, len: usize| if on { len } else { 0 };
        Ok(Self {
            layers,
            width,
            n_thresholds,
            count_pos: vec![0; sized(taps.count_pos, plane)],
            sum: vec![0.0; sized(taps.moments, plane)],
            sum_sq: vec![0.0; sized(taps.moments, plane)],
            quantiles: vec![0.0; sized(taps.quantiles, plane * QUANTILES.len())],
            count_above: vec![0; plane * n_thresholds],
            done: vec![false; layers],
            taps: taps.clone(),
        })
    }

    /// Reduces layer `layer`'s activations `a [n, width]` (row-major) over the rows listed in `rows` (every row when
    /// `None`).
    pub fn push(&mut self, layer: usize, a: &[f32], rows: Option<&[u32]>) -> Result<()> {
        let width = self.width;
        if layer >= self.layers || self.done[layer] {
            return Err(Error::InvalidBatch(format!("tap for layer {layer} given twice or out of range")));
        }
        if width == 0 || !a.len().is_multiple_of(width) {
            return Err(Error::InvalidBatch(format!("tap of {} values is not [n, {width}]", a.len())));
        }
        let n = a.len() / width;
        let all: Vec<u32>;
        let rows = match rows {
            Some(r) => {
                if let Some(&bad) = r.iter().find(|&&i| i as usize >= n) {
                    return Err(Error::InvalidBatch(format!("tap row {bad} is outside the {n} rows")));
                }
                r
            }
            None => {
                all = (0..n as u32).collect();
                &all
            }
        };
        let plane = self.layers * width;
        let base = layer * width;
        let thresholds = self.taps.above.as_deref().map(Vec::as_slice);
        let (n_thr, taps) = (self.n_thresholds, &self.taps);
        // Counts, moments and counts above accumulate row by row over blocks of ROW_BLOCK neurons, reading the
        // activations where they lie, each neuron's values added in row order. Only the quantiles need a neuron's
        // values together, so only they gather blocks of BLOCK columns.
        let blocks: Vec<BlockOut> = (0..width.div_ceil(ROW_BLOCK))
            .into_par_iter()
            .map(|b| {
                let j0 = b * ROW_BLOCK;
                let bw = ROW_BLOCK.min(width - j0);
                let on = |yes: bool| if yes { bw } else { 0 };
                let mut pos = vec![0u32; on(taps.count_pos)];
                let (mut sum, mut sum_sq) = (vec![0f64; on(taps.moments)], vec![0f64; on(taps.moments)]);
                let mut above = vec![0u32; n_thr * bw];
                let thr: Vec<&[f32]> = match thresholds {
                    Some(t) => (0..n_thr).map(|s| &t[s * plane + base + j0..][..bw]).collect(),
                    None => Vec::new(),
                };
                for &r in rows {
                    let src = &a[r as usize * width + j0..][..bw];
                    for (n, &x) in pos.iter_mut().zip(src) {
                        *n += u32::from(x > 0.0);
                    }
                    for ((s, s2), &x) in sum.iter_mut().zip(sum_sq.iter_mut()).zip(src) {
                        let x = f64::from(x);
                        *s += x;
                        *s2 += x * x;
                    }
                    for (n, t) in above.chunks_exact_mut(bw).zip(&thr) {
                        for ((n, &t), &x) in n.iter_mut().zip(*t).zip(src) {
                            *n += u32::from(x > t);
                        }
                    }
                }
                let wide = |v: Vec<u32>| v.into_iter().map(u64::from).collect();
                BlockOut { count_pos: wide(pos), sum, sum_sq, count_above: wide(above) }
            })
            .collect();
        for (b, out) in blocks.into_iter().enumerate() {
            let j0 = base + b * ROW_BLOCK;
            let bw = ROW_BLOCK.min(width - b * ROW_BLOCK);
            if self.taps.count_pos {
                self.count_pos[j0..j0 + bw].copy_from_slice(&out.count_pos);
            }
            if self.taps.moments {
                self.sum[j0..j0 + bw].copy_from_slice(&out.sum);
                self.sum_sq[j0..j0 + bw].copy_from_slice(&out.sum_sq);
            }
            for (s, counts) in out.count_above.chunks_exact(bw).enumerate() {
                self.count_above[s * plane + j0..][..bw].copy_from_slice(counts);
            }
        }
        if self.taps.quantiles {
            let (ranks, levels) = quantile_plan(rows.len().max(1));
            let blocks: Vec<Vec<f32>> = (0..width.div_ceil(BLOCK))
                .into_par_iter()
                .map(|b| {
                    let j0 = b * BLOCK;
                    let bw = BLOCK.min(width - j0);
                    let nr = rows.len();
                    if nr == 0 {
                        return vec![f32::NAN; bw * QUANTILES.len()];
                    }
                    let mut col = vec![0f32; bw * nr];
                    for (ri, &r) in rows.iter().enumerate() {
                        let src = &a[r as usize * width + j0..][..bw];
                        for (c, &x) in src.iter().enumerate() {
                            col[c * nr + ri] = x;
                        }
                    }
                    let mut out = Vec::with_capacity(bw * QUANTILES.len());
                    let mut order = vec![0f32; ranks.len()];
                    for v in col.chunks_exact_mut(nr) {
                        order_statistics(v, 0, &ranks, &mut order);
                        out.extend(levels.iter().map(|&(lo, hi, w)| lerp_fused(order[lo], order[hi], w)));
                    }
                    out
                })
                .collect();
            for (b, q) in blocks.into_iter().enumerate() {
                let j0 = base + b * BLOCK;
                for (c, levels) in q.chunks_exact(QUANTILES.len()).enumerate() {
                    for (s, &v) in levels.iter().enumerate() {
                        self.quantiles[s * plane + j0 + c] = v;
                    }
                }
            }
        }
        self.done[layer] = true;
        Ok(())
    }

    /// The statistics of every layer over `n_tokens` real tokens. Fails when a layer was never pushed.
    pub fn finish(self, n_tokens: u64) -> Result<TapStats> {
        if let Some(l) = self.done.iter().position(|d| !d) {
            return Err(Error::InvalidBatch(format!("no FFN tap was recorded for layer {l}")));
        }
        let taps = &self.taps;
        Ok(TapStats {
            layers: self.layers,
            intermediate: self.width,
            n_tokens,
            count_pos: taps.count_pos.then_some(self.count_pos),
            sum: taps.moments.then_some(self.sum),
            sum_sq: taps.moments.then_some(self.sum_sq),
            quantiles: taps.quantiles.then_some(self.quantiles),
            count_above: taps.above.is_some().then_some(self.count_above),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn linear_interpolation_by_hand() {
        let v = [1.0f32, 2.0, 4.0, 8.0];
        // rank = q·3: q 0 → v0; q 1 → v3; q 0.5 → rank 1.5, w 0.5 (upper branch) → 4 − 2·0.5 = 3.
        assert_eq!(quantile_linear_f32(&v, 0.0), 1.0);
        assert_eq!(quantile_linear_f32(&v, 1.0), 8.0);
        assert_eq!(quantile_linear_f32(&v, 0.5), 3.0);
        // q 0.25 → rank 0.75 → 2 − 1·0.25 = 1.75; one value → itself; empty → NaN.
        assert_eq!(quantile_linear_f32(&v, 0.25), 1.75);
        assert_eq!(quantile_linear_f32(&[7.0], 0.95), 7.0);
        assert!(quantile_linear_f32(&[], 0.5).is_nan());
    }

    #[test]
    fn rank_is_f64_and_lerp_is_fused() {
        // n = 3151, q = 0.95f32 = 0.949999988079071…: rank = q·3150 = 2992.49996244907… in f64 → lo 2992,
        // w = 0.49996245 < 0.5 → fma(w, 1 − 0, 0) = w. In f32 the rank rounds to 2992.5 → w 0.5 → 0.5.
        // torch.quantile gives 0.4999624490737915.
        let v: Vec<f32> = (0..3151).map(|i| if i < 2993 { 0.0 } else { 1.0 }).collect();
        assert_eq!(quantile_linear_f32(&v, 0.95), 0.499_962_45);
        // torch.quantile([0.1, 0.2], 0.3) = 0.13000001 (f32 bits 0x3E051EB9): rank = w = 0.3,
        // fma(0.3, 0.1, 0.1) rounds once; 0.1 + 0.3·0.1 with two roundings gives 0.12999999.
        let got = quantile_linear_f32(&[0.1, 0.2], 0.3);
        assert_eq!(got, 0.130_000_01);
        assert_ne!(got, 0.1f32 + 0.3f32 * (0.2f32 - 0.1f32), "the unfused formula differs here");
    }

    #[test]
    fn reduces_selected_rows_of_one_layer() {
        // 3 rows × 2 neurons; rows 0 and 2 are real.
        let a = [1.0f32, -1.0, 100.0, 100.0, 3.0, 0.5];
        let thr = Arc::new(vec![0.0f32, 0.0, 2.0, 0.6]); // two threshold planes of 1 layer × 2
        let taps = Taps { count_pos: true, moments: true, quantiles: true, above: Some(thr), ..Taps::NONE };
        let mut r = TapReducer::new(1, 2, &taps).unwrap();
        r.push(0, &a, Some(&[0, 2])).unwrap();
        let s = r.finish(2).unwrap();
        assert_eq!(s.count_pos.unwrap(), vec![2, 1]);
        assert_eq!(s.sum.unwrap(), vec![4.0, -0.5]);
        assert_eq!(s.sum_sq.unwrap(), vec![10.0, 1.25]);
        assert_eq!(s.count_above.unwrap(), vec![2, 1, 1, 0]);
        let q = s.quantiles.unwrap();
        assert_eq!(q.len(), 7 * 2);
        let p50 = quantile_index(0.5).unwrap();
        assert_eq!((q[p50 * 2], q[p50 * 2 + 1]), (2.0, -0.25));
    }

    #[test]
    fn no_real_rows_give_zero_counts_and_nan_quantiles() {
        let mut r = TapReducer::new(1, 40, &Taps::pass1()).unwrap();
        r.push(0, &[1.0; 80], Some(&[])).unwrap();
        let s = r.finish(0).unwrap();
        assert!(s.count_pos.unwrap().iter().all(|&c| c == 0));
        assert!(s.sum.unwrap().iter().all(|&x| x == 0.0));
        let q = s.quantiles.unwrap();
        assert_eq!(q.len(), 40 * QUANTILES.len());
        assert!(q.iter().all(|x| x.is_nan()));
    }

    #[test]
    fn asking_for_quantiles_changes_no_other_statistic() {
        // Counts, counts above and the f64 sums are the same bits whether or not the quantiles (which gather
        // columns, in blocks of 32) are asked for alongside them (read in rows, in blocks of 256).
        let (layers, width, n) = (2, 300, 41);
        let plane = layers * width;
        let thr: Vec<f32> = (0..2 * plane).map(|i| ((i * 13) % 9) as f32 / 4.0 - 1.0).collect();
        let above = Some(Arc::new(thr));
        let rows: Vec<u32> = (0..n as u32).filter(|r| r % 5 != 3).collect();
        let run = |quantiles: bool| {
            let taps = Taps { count_pos: true, moments: true, quantiles, above: above.clone(), ..Taps::NONE };
            let mut r = TapReducer::new(layers, width, &taps).unwrap();
            for l in 0..layers {
                let a: Vec<f32> = (0..n * width).map(|i| (((i * 7919 + l * 31) % 23) as f32 - 11.0) / 3.7).collect();
                r.push(l, &a, Some(&rows)).unwrap();
            }
            r.finish(rows.len() as u64).unwrap()
        };
        let (rowwise, columns) = (run(false), run(true));
        assert!(rowwise.quantiles.is_none());
        assert_eq!(rowwise.count_pos, columns.count_pos);
        assert_eq!(rowwise.count_above, columns.count_above);
        let bits = |v: &Option<Vec<f64>>| v.as_ref().unwrap().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&rowwise.sum), bits(&columns.sum));
        assert_eq!(bits(&rowwise.sum_sq), bits(&columns.sum_sq));
        assert!(rowwise.count_above.as_ref().unwrap().iter().any(|&c| c > 0));
    }

    #[test]
    fn blocks_and_layers_agree_with_a_naive_reduction() {
        let (layers, width, n) = (2, 70, 9);
        let acts: Vec<Vec<f32>> = (0..layers)
            .map(|l| (0..n * width).map(|i| (((i * 7919 + l * 31) % 23) as f32 - 11.0) / 4.0).collect())
            .collect();
        let mut r = TapReducer::new(layers, width, &Taps::pass1()).unwrap();
        for (l, a) in acts.iter().enumerate() {
            r.push(l, a, None).unwrap();
        }
        let s = r.finish(n as u64).unwrap();
        let q = s.quantiles.unwrap();
        for (l, a) in acts.iter().enumerate() {
            for j in 0..width {
                let mut col: Vec<f32> = (0..n).map(|i| a[i * width + j]).collect();
                assert_eq!(
                    s.count_pos.as_ref().unwrap()[l * width + j],
                    col.iter().filter(|&&x| x > 0.0).count() as u64
                );
                col.sort_by(f32::total_cmp);
                for (k, &lv) in QUANTILES.iter().enumerate() {
                    assert_eq!(q[k * layers * width + l * width + j], quantile_linear_f32(&col, lv));
                }
            }
        }
    }

    proptest::proptest! {
        /// Selection reads the same bits as a full sort, ties, signed zeros and NaNs included.
        #[test]
        fn order_statistics_equal_the_sorted_values(
            raw in proptest::collection::vec(0u8..12, 1..200),
            picks in proptest::collection::vec(0.0f64..1.0, 0..16),
        ) {
            let pool = [0.0, -0.0, 1.0, -1.0, 0.5, f32::NAN, -f32::NAN, f32::INFINITY, -2.5, 1e-30, 3.0, -0.17];
            let mut v: Vec<f32> = raw.iter().map(|&i| pool[i as usize]).collect();
            let mut sorted = v.clone();
            sorted.sort_by(f32::total_cmp);
            let mut ranks: Vec<usize> = picks.iter().map(|&p| (p * v.len() as f64) as usize).collect();
            ranks.sort_unstable();
            ranks.dedup();
            let mut out = vec![0f32; ranks.len()];
            order_statistics(&mut v, 0, &ranks, &mut out);
            for (&r, &x) in ranks.iter().zip(&out) {
                proptest::prop_assert_eq!(x.to_bits(), sorted[r].to_bits());
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(TapReducer::new(2, 3, &Taps::pass2(Arc::new(vec![0.0; 5]))).is_err());
        let mut r = TapReducer::new(1, 3, &Taps::COUNT_POS).unwrap();
        assert!(r.push(0, &[0.0; 4], None).is_err());
        assert!(r.push(0, &[0.0; 6], Some(&[2])).is_err());
        assert!(r.push(1, &[0.0; 6], None).is_err());
        let r = TapReducer::new(1, 3, &Taps::COUNT_POS).unwrap();
        assert!(r.finish(0).unwrap_err().to_string().contains("layer 0"));
    }
}
