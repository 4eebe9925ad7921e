//! Capture throughput on Gemma-3-270M, f32, per backend compiled in: tokens/s of one 4 × 512 batch through pass 1
//! (positive counts, moments, batch quantiles), pass 2 (threshold counts) and counting positives only, all without
//! the LM head. Same batch and thread count for every backend. Run with `cargo xtask bench` (it sets up the runtimes
//! and fetches the model if missing).

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lsn_core::{LoadOptions, ModelFiles, Outputs, QUANTILES, Request, Taps, TokenBatch};

const ROWS: usize = 4;
const ROW_LEN: usize = 512;

fn capture(c: &mut Criterion) {
    let dir = lsn_harness::bench_model_dir();
    // Deterministic ids spread over the vocabulary, BOS at the start of each row.
    let ids: Vec<u32> = (0..ROWS * ROW_LEN)
        .map(|i| if i % ROW_LEN == 0 { 2 } else { ((i as u64 * 2_654_435_761) % 200_000 + 300) as u32 })
        .collect();
    let batch = TokenBatch::full(ROWS, ROW_LEN, ids).unwrap();
    let mut g = c.benchmark_group("capture-gemma-3-270m-4x512");
    g.sample_size(10).throughput(Throughput::Elements((ROWS * ROW_LEN) as u64));
    if !lsn_harness::bench_wants("capture") {
        return;
    }
    #[allow(unused_mut)]
    let mut backends = lsn_harness::bench_backends();
    // ort can sort pass 1's quantiles on the host (its default) or in the graph: both are timed, the second as a
    // backend of its own name (so `LSN_BENCH_BACKEND=ort-graph-quantiles` gives its own peak memory).
    #[cfg(feature = "ort")]
    if std::env::var("LSN_BENCH_BACKEND").ok().is_none_or(|b| b == lsn_core::Backend::name(&OrtGraphQuantiles)) {
        backends.push(Box::new(OrtGraphQuantiles));
    }
    for backend in backends {
        let name = backend.name();
        let mut model = backend.load(&ModelFiles::new(&dir), &lsn_harness::bench_load_options()).expect("model loads");
        let cfg = model.config().clone();
        let thresholds = Arc::new(vec![0.05f32; cfg.num_layers * cfg.intermediate_size * QUANTILES.len()]);
        g.bench_function(format!("{name}/pass1"), |b| {
            b.iter(|| model.run(&Request::new(&batch, Outputs::NONE).taps(&Taps::pass1())).unwrap())
        });
        let pass2 = Taps::pass2(thresholds);
        g.bench_function(format!("{name}/pass2"), |b| {
            b.iter(|| model.run(&Request::new(&batch, Outputs::NONE).taps(&pass2)).unwrap())
        });
        g.bench_function(format!("{name}/count-pos-only"), |b| {
            b.iter(|| model.run(&Request::new(&batch, Outputs::NONE).taps(&Taps::COUNT_POS)).unwrap())
        });
        lsn_harness::print_peak_rss("capture", name);
    }
    g.finish();
}

/// The ort backend with pass-1 quantiles sorted in the graph, named `ort-graph-quantiles` in the report.
#[cfg(feature = "ort")]
struct OrtGraphQuantiles;

#[cfg(feature = "ort")]
impl lsn_core::Backend for OrtGraphQuantiles {
    fn name(&self) -> &'static str {
        "ort-graph-quantiles"
    }
    fn capabilities(&self) -> lsn_core::Capabilities {
        lsn_backend_ort::OrtBackend::new().capabilities()
    }
    fn load(&self, files: &ModelFiles, opts: &LoadOptions) -> lsn_core::Result<Box<dyn lsn_core::Model>> {
        lsn_backend_ort::OrtBackend::new().with_quantile_pass(lsn_backend_ort::QuantilePass::InGraph).load(files, opts)
    }
}

criterion_group!(benches, capture);
criterion_main!(benches);
