//! Generation and scoring throughput on Gemma-3-270M, f32, per backend compiled in (HF's side:
//! xtask/fixtures/hf_generate_bench.py on the same ids, batch and threads; `cargo xtask bench --vs-hf` runs both).
//! - generate: greedy KV-cached decoding (`Model::decoder` + `lsn_core::greedy`) of 4 prompts of 200 tokens, 32 new
//!   tokens each (no EOS stops a row early), as new tokens/s — prefill included, as in HF's `generate`;
//! - score: next-token NLL of one 4 × 512 batch through the LM head (`Outputs::NLL`), as tokens/s.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lsn_core::{Greedy, ModelFiles, Outputs, Request, TokenBatch};

pub const PROMPTS: usize = 4;
pub const PROMPT_LEN: usize = 200;
pub const NEW_TOKENS: usize = 32;
const ROWS: usize = 4;
const ROW_LEN: usize = 512;

/// The bench's ids: BOS (2) first, then `(i · 2654435761) mod 200000 + 300`, as the capture bench and the HF script.
fn ids(rows: usize, len: usize) -> Vec<Vec<u32>> {
    (0..rows)
        .map(|r| {
            (0..len)
                .map(|t| {
                    let i = (r * len + t) as u64;
                    if t == 0 { 2 } else { ((i * 2_654_435_761) % 200_000 + 300) as u32 }
                })
                .collect()
        })
        .collect()
}

fn generate(c: &mut Criterion) {
    let dir = lsn_harness::bench_model_dir();
    let prompts = ids(PROMPTS, PROMPT_LEN);
    let rows = ids(ROWS, ROW_LEN);
    let batch = TokenBatch::padded(&rows, 0).unwrap();
    let opts = Greedy { max_new_tokens: NEW_TOKENS, eos: Vec::new(), pad: 0 };
    for backend in lsn_harness::bench_backends() {
        let name = backend.name();
        let mut model = backend.load(&ModelFiles::new(&dir), &lsn_harness::bench_load_options()).expect("model loads");
        if lsn_harness::bench_wants("generate") {
            let mut g = c.benchmark_group("generate-gemma-3-270m-4x200+32");
            g.sample_size(10).throughput(Throughput::Elements((PROMPTS * NEW_TOKENS) as u64));
            g.bench_function(format!("{name}/greedy-kv-cache"), |b| {
                b.iter(|| {
                    let mut dec = model.decoder(None).unwrap();
                    lsn_core::greedy(dec.as_mut(), &prompts, &opts).unwrap()
                })
            });
            g.finish();
            lsn_harness::print_peak_rss("generate", name);
        }
        if lsn_harness::bench_wants("score") {
            let mut g = c.benchmark_group("score-gemma-3-270m-4x512");
            g.sample_size(10).throughput(Throughput::Elements((ROWS * ROW_LEN) as u64));
            g.bench_function(format!("{name}/nll"), |b| {
                b.iter(|| model.run(&Request::new(&batch, Outputs::NLL)).unwrap())
            });
            g.finish();
            lsn_harness::print_peak_rss("score", name);
        }
    }
}

criterion_group!(benches, generate);
criterion_main!(benches);
