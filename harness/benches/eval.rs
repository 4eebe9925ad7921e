//! Task-evaluation throughput on Gemma-3-270M, f32, per backend compiled in, on the task goldens' own slice
//! (`fixtures/golden/gemma-3-270m.eval.json`; HF's side: xtask/fixtures/hf_eval_bench.py on the same ids, batches and
//! threads; `cargo xtask bench --vs-hf` runs both):
//! - xnli: lm-eval-style zero-shot scoring (`lsn_eval::xnli::score_zero_shot`) of the first [`XNLI_PAIRS`] XNLI pairs
//!   (English), 3 continuations each, 8 sequences per forward pass sorted by length, as examples/s;
//! - xquad: greedy KV-cached answers (`lsn_eval::xquad::generate`) to the first [`XQUAD_PROMPTS`] XQuAD prompts
//!   (Vietnamese), 4 per batch sorted by length, at most 32 new tokens, stopping at EOS, as examples/s.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lsn_core::{Greedy, ModelFiles};
use lsn_eval::xnli::ZeroShotItem;
use serde::Deserialize;

/// Pairs and prompts of the slice timed (criterion runs each at least 10 times; these keep one run near 10 s).
pub const XNLI_PAIRS: usize = 12;
pub const XQUAD_PROMPTS: usize = 4;

#[derive(Deserialize)]
struct Row {
    ids: [Vec<u32>; 3],
    continuation: [usize; 3],
}

#[derive(Deserialize)]
struct Prompt {
    prompt: Vec<u32>,
}

#[derive(Deserialize)]
struct Golden {
    eos: Vec<u32>,
    max_new_tokens: usize,
    xnli: Vec<Row>,
    xquad: Vec<Prompt>,
}

fn eval(c: &mut Criterion) {
    let dir = lsn_harness::bench_model_dir();
    let g: Golden = lsn_harness::bench_task_goldens();
    let items: Vec<ZeroShotItem> = g
        .xnli
        .into_iter()
        .take(XNLI_PAIRS)
        .map(|r| ZeroShotItem { ids: r.ids, continuation: r.continuation })
        .collect();
    let prompts: Vec<Vec<u32>> = g.xquad.into_iter().take(XQUAD_PROMPTS).map(|p| p.prompt).collect();
    let opts = Greedy { max_new_tokens: g.max_new_tokens, eos: g.eos, pad: 0 };
    for backend in lsn_harness::bench_backends() {
        let name = backend.name();
        let mut model = backend.load(&ModelFiles::new(&dir), &lsn_harness::bench_load_options()).expect("model loads");
        if lsn_harness::bench_wants("xnli") {
            let mut group = c.benchmark_group("xnli-gemma-3-270m-12x3");
            group.sample_size(10).throughput(Throughput::Elements(items.len() as u64));
            group.bench_function(format!("{name}/zero-shot-batch8"), |b| {
                b.iter(|| lsn_eval::xnli::score_zero_shot(model.as_mut(), &items, 8, 0, None, |_| {}).unwrap())
            });
            group.finish();
            lsn_harness::print_peak_rss("xnli", name);
        }
        if lsn_harness::bench_wants("xquad") {
            let mut group = c.benchmark_group("xquad-gemma-3-270m-4x32");
            group.sample_size(10).throughput(Throughput::Elements(prompts.len() as u64));
            group.bench_function(format!("{name}/greedy-batch4"), |b| {
                b.iter(|| lsn_eval::xquad::generate(model.as_mut(), &prompts, 4, &opts, None, |_| {}).unwrap())
            });
            group.finish();
            lsn_harness::print_peak_rss("xquad", name);
        }
    }
}

criterion_group!(benches, eval);
criterion_main!(benches);
