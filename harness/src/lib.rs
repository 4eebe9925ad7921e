//! The cross-backend conformance suite: cases written once and run against `&dyn Backend` for every backend compiled
//! in (DESIGN §7).
//!
//! Per backend: forward logits, next-token NLL and FFN tap counts against HF transformers goldens
//! (`fixtures/golden/`), and capture statistics plus the neuron sets selected from them on a fixed FLORES slice.
//! Across backends: every statistic's largest difference and the neuron sets' symmetric differences. A case a
//! backend cannot run is a recorded skip with the reason its `capabilities()` gives. Every comparison records the
//! largest deviation it saw. Task evaluation (XNLI, XQuAD) joins as cases of the real models (`eval`); LoRA (adapted
//! forward passes and gradients against HF transformers + PEFT) as cases of the tiny models (`lora`).

pub mod compare;
pub mod dtype;
pub mod eval;
pub mod generate;
pub mod golden;
pub mod lora;
pub mod report;
pub mod slice;
pub mod suite;

use lsn_core::Backend;

pub use report::{Check, Outcome, PairRow, Report};
pub use suite::{Env, run_suite};

/// The fetched Gemma-3-270M the benches time; panics saying how to fetch it when it is absent.
pub fn bench_model_dir() -> std::path::PathBuf {
    let dir = lsn_data::model_dir(&lsn_data::cache_home(), "gemma-3-270m");
    assert!(
        dir.join(lsn_data::FETCH_MARKER).is_file(),
        "Gemma-3-270M is not in {}: run `cargo xtask bench` (it fetches it) or `lsn fetch-model gemma-3-270m`",
        dir.display()
    );
    dir
}

/// Gemma-3-270M's task goldens (`fixtures/golden/gemma-3-270m.eval.json`), as the part of them `T` reads.
pub fn bench_task_goldens<T: serde::de::DeserializeOwned>() -> T {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden/gemma-3-270m.eval.json");
    serde_json::from_slice(&std::fs::read(&path).expect("task goldens")).expect("task goldens parse")
}

/// The backends a bench process times: every one compiled in, or only `LSN_BENCH_BACKEND` when set (`cargo xtask
/// bench` runs one backend per process, so the process's peak memory is that backend's).
pub fn bench_backends() -> Vec<Box<dyn Backend>> {
    let only = std::env::var("LSN_BENCH_BACKEND").ok();
    backends().into_iter().filter(|b| only.as_deref().is_none_or(|o| o == b.name())).collect()
}

/// How a bench loads its model: on `LSN_BENCH_DEVICE` (`cpu`, `cuda`, `cuda:N`; default the CPU), f32. Panics
/// naming the variable when its value is not a device.
pub fn bench_load_options() -> lsn_core::LoadOptions {
    let device = std::env::var("LSN_BENCH_DEVICE")
        .ok()
        .map(|d| d.parse().unwrap_or_else(|e| panic!("LSN_BENCH_DEVICE: {e}")))
        .unwrap_or_default();
    lsn_core::LoadOptions { device, ..Default::default() }
}

/// Whether this bench process times `workload`: all of them, or only `LSN_BENCH_WORKLOAD` when set (one workload
/// per process, for its peak memory).
pub fn bench_wants(workload: &str) -> bool {
    std::env::var("LSN_BENCH_WORKLOAD").ok().is_none_or(|w| w == workload)
}

/// Prints the process's peak resident memory after `workload` on `backend` as one JSON line
/// (`{"bench":"peak-rss","workload":..,"backend":..,"peak_rss_mib":..,"weights_mib":..,"x_weights":..}`), against
/// the f32 weights of the bench model. It covers the whole process (model load included), so it is one backend's
/// and one workload's only when both variables above select them.
pub fn print_peak_rss(workload: &str, backend: &str) {
    let peak = lsn_core::procinfo::peak_rss_mib();
    let weights =
        std::fs::metadata(bench_model_dir().join("model.safetensors")).map(|m| m.len() as f64 / 1048576.0).ok();
    let alone = std::env::var_os("LSN_BENCH_BACKEND").is_some() && std::env::var_os("LSN_BENCH_WORKLOAD").is_some();
    println!(
        "{}",
        serde_json::json!({"bench": "peak-rss", "workload": workload, "backend": backend, "peak_rss_mib": peak,
            "weights_mib": weights, "x_weights": peak.zip(weights).map(|(p, w)| p / w),
            "covers": if alone { "this backend and workload only" } else { "everything this process ran so far" }})
    );
}

/// Every backend compiled into this build, in a fixed order (the first one is the reference of cross-backend cases).
// Each push is behind its own feature, so `vec![..]` cannot list them.
#[allow(clippy::vec_init_then_push)]
pub fn backends() -> Vec<Box<dyn Backend>> {
    let mut v: Vec<Box<dyn Backend>> = Vec::new();
    #[cfg(feature = "candle")]
    v.push(Box::new(lsn_backend_candle::CandleBackend::new()));
    #[cfg(feature = "tch")]
    v.push(Box::new(lsn_backend_tch::TchBackend::new()));
    #[cfg(feature = "ort")]
    v.push(Box::new(lsn_backend_ort::OrtBackend::new()));
    v
}
