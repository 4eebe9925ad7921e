//! Masked LoRA fine-tuning for lsn, written once for every backend: what a fine-tune is ([`spec`]: task, LoRA
//! layout, the trained neuron set and its `gate_proj` mask, hyper-parameter presets), the starting values
//! ([`init`]), the optimizer ([`optim`]), the loop with resumable checkpoints ([`train`]), adapters in PEFT's layout
//! ([`peft`]) and merging an adapter into a checkpoint's weights for backends that run merged models ([`merge`]).
//!
//! No framework here: a backend computes one micro-batch's loss and gradient through `lsn_core::Model::gradient`.

mod error;
pub mod init;
pub mod merge;
pub mod optim;
pub mod peft;
pub mod spec;
pub mod train;

pub use error::{Error, Result};
pub use init::initial_adapter;
pub use optim::AdamW;
pub use peft::{AdapterMeta, read_adapter, write_adapter};
pub use spec::{Ftl, LossOn, Task, TrainSpec};
pub use train::{Checkpoints, Example, Outcome, StepLog, Target, train};
