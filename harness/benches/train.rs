//! LoRA training throughput on Gemma-3-270M, f32, per backend that trains (tch, candle; ort has no autograd): one
//! `Model::gradient` — forward, loss and backward of a micro-batch — of the XNLI head protocol on [`ROWS`] sequences
//! of the task goldens (`fixtures/golden/gemma-3-270m.eval.json`, the first XNLI rows' ids, right-padded), with
//! LoRA r 16 / α 32 on q, k, v, o and a masked LoRA on every layer's `gate_proj` (every 100th neuron) plus the
//! `Linear(hidden, 3)` head, as real tokens/s (workload `train`); and the same step with the next-token loss of the
//! XQuAD protocol over every real position of the same rows, LoRA on the same linears and no head (workload
//! `train-lm`: the LM head over 262,144 entries is lsn_core::train's chunked head). The optimizer step runs on host
//! values and is not timed. HF's side: xtask/fixtures/hf_train_bench.py (PEFT, same ids, rank, targets, losses and
//! threads); `cargo xtask bench --vs-hf` runs both.
//!
//! Peak memory is a per-process number, so `cargo xtask bench` runs this bench once per backend with
//! `LSN_BENCH_BACKEND=<name>` (only that backend loads), and the bench prints the process's peak RSS after its timed
//! passes (`lsn_harness::print_peak_rss`).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lsn_core::{Error, LoraLayout, LoraTarget, ModelFiles, Objective, TokenBatch, TrainBatch};
use serde::Deserialize;

/// Sequences per micro-batch (the small-data preset's batch).
pub const ROWS: usize = 16;

#[derive(Deserialize)]
struct Row {
    ids: [Vec<u32>; 3],
}

#[derive(Deserialize)]
struct Golden {
    xnli: Vec<Row>,
}

fn train(c: &mut Criterion) {
    let dir = lsn_harness::bench_model_dir();
    let g: Golden = lsn_harness::bench_task_goldens();
    let seqs: Vec<Vec<u32>> = g.xnli.into_iter().take(ROWS).map(|r| r.ids[0].clone()).collect();
    let labels: Vec<u32> = (0..seqs.len() as u32).map(|i| i % 3).collect();
    let tb =
        TrainBatch { batch: TokenBatch::padded(&seqs, 0).expect("a batch"), objective: Objective::Classify { labels } };
    let tokens = tb.batch.n_tokens() as u64;
    // The next-token loss at every real position but each row's last.
    let weights: Vec<f32> = (0..tb.batch.rows * tb.batch.seq_len)
        .map(|i| f32::from(u8::from(i % tb.batch.seq_len + 1 < seqs[i / tb.batch.seq_len].len())))
        .collect();
    let lm = TrainBatch { batch: tb.batch.clone(), objective: Objective::NextToken { weights } };
    for (workload, batch, head) in [("train", &tb, Some(3)), ("train-lm", &lm, None)] {
        if lsn_harness::bench_wants(workload) {
            bench_workload(c, &dir, workload, batch, head, tokens);
        }
    }
}

/// One workload on every backend that trains: `head` classes, or the LM head when `None`.
fn bench_workload(
    c: &mut Criterion,
    dir: &std::path::Path,
    workload: &str,
    tb: &TrainBatch,
    head: Option<usize>,
    tokens: u64,
) {
    for backend in lsn_harness::bench_backends() {
        let name = backend.name();
        let mut model = backend.load(&ModelFiles::new(dir), &lsn_harness::bench_load_options()).expect("model loads");
        let cfg = model.config().clone();
        let layout = LoraLayout {
            rank: 16,
            alpha: 32.0,
            targets: vec![
                LoraTarget::QProj,
                LoraTarget::KProj,
                LoraTarget::VProj,
                LoraTarget::OProj,
                LoraTarget::GateProj,
            ],
            gate_rows: Some((0..cfg.num_layers * cfg.intermediate_size).map(|i| i % 100 == 0).collect()),
            head_classes: head,
        };
        let adapter = lsn_lora::initial_adapter(&layout, &cfg, 0.01, 42);
        match model.gradient(&adapter, tb) {
            Err(Error::Unsupported { .. }) => continue,
            r => {
                r.expect("a gradient");
            }
        }
        let group_name = if head.is_some() { "train-gemma-3-270m-xnli16" } else { "train-lm-gemma-3-270m-xnli16" };
        let mut group = c.benchmark_group(group_name);
        group.sample_size(10).throughput(Throughput::Elements(tokens));
        group.bench_function(format!("{name}/lora-r16-qkvo-gate-grad"), |b| {
            b.iter(|| model.gradient(&adapter, tb).unwrap())
        });
        group.finish();
        lsn_harness::print_peak_rss(workload, name);
    }
}

criterion_group!(benches, train);
criterion_main!(benches);
