//! Reading and writing model checkpoints: HF safetensors directories, GGUF files, and tiny random models.
//!
//! Backends load tensors with their own framework; this crate resolves and validates what they load.

mod checkpoint;
mod error;

pub use checkpoint::{Checkpoint, open_checkpoint};
pub use error::{Error, Result};
