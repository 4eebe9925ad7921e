//! Plain data shared by every lsn crate, and the narrow `Backend`/`Model` boundary that every backend implements.
//!
//! Nothing in here links a tensor framework: values cross the boundary as `Vec`s with shapes.

pub mod activation;
pub mod alloc;
pub mod arch;
mod backend;
mod batch;
mod config;
pub mod decode;
mod dense;
mod digest;
pub mod engine;
mod error;
pub mod family;
mod fs;
pub mod head;
pub mod identity;
mod intervention;
mod lang;
pub mod layer;
pub mod lora;
mod neuron;
pub mod positions;
pub mod procinfo;
mod request;
mod rng;
mod simd;
mod stats;
pub mod taps;
mod tensors;
pub mod train;

pub use arch::Arch;
pub use backend::{Backend, Capabilities, Device, LoadOptions, Model, ModelFiles, WeightDType};
pub use batch::TokenBatch;
pub use config::{Activation, AttentionKind, HfConfig, ModelConfig, RopeScaling};
pub use decode::{Decoder, Generated, Greedy, greedy};
pub use dense::Dense;
pub use digest::{hash_memo_dir, sha256_file, sha256_file_memo, sha256_hex};
pub use engine::{BodyOut, BodyPass, Engine, KvCache, Step, StepPositions};
pub use error::{Error, Result};
pub use family::{FAMILIES, Family, FamilySpec};
pub use fs::{cache_home, write_atomic};
pub use identity::ModelIdentity;
pub use intervention::{Edits, Fill, Intervention, Steer};
pub use lang::Lang;
pub use lora::{
    Adapter, Gradient, LoraLayout, LoraModule, LoraTarget, Objective, PEFT_HEAD, ParamRole, ParamSpec, TrainBatch,
    peft_name,
};
pub use neuron::NeuronId;
pub use request::{ForwardOut, HiddenAt, NO_TAPS, Outputs, Request, TapPoint, TapStats, Taps};
pub use rng::SeededRng;
pub use stats::{ActivationStats, FIXED_FRAC_BITS, Pass1, Pass2, from_fixed};
pub use taps::{QUANTILES, TapReducer};
pub use tensors::{TensorSpec, expected_tensors, is_norm};
