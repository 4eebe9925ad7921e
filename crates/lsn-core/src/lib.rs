//! Plain data shared by every lsn crate, and the narrow `Backend`/`Model` boundary that every backend implements.
//!
//! Nothing in here links a tensor framework: values cross the boundary as `Vec`s with shapes.

pub mod activation;
mod backend;
mod batch;
mod config;
mod dense;
mod digest;
mod error;
mod fs;
pub mod head;
pub mod identity;
mod intervention;
mod lang;
mod neuron;
pub mod positions;
mod rng;
mod stats;
pub mod taps;
mod tensors;

pub use backend::{Backend, Capabilities, Device, ForwardOut, LoadOptions, Model, ModelFiles, TapStats, Taps, Want};
pub use batch::TokenBatch;
pub use config::{Activation, AttentionKind, Family, HfConfig, ModelConfig, RopeScaling};
pub use dense::Dense;
pub use digest::{hash_memo_dir, sha256_file, sha256_file_memo, sha256_hex};
pub use error::{Error, Result};
pub use fs::{cache_home, write_atomic};
pub use identity::ModelIdentity;
pub use intervention::Intervention;
pub use lang::Lang;
pub use neuron::NeuronId;
pub use rng::SeededRng;
pub use stats::{ActivationStats, FIXED_FRAC_BITS, Pass1, Pass2, from_fixed};
pub use taps::{QUANTILES, TapReducer};
pub use tensors::{TensorSpec, expected_tensors, is_norm};
