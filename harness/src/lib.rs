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
