//! Reading and writing model checkpoints: HF safetensors directories, GGUF files, and tiny random models.
//!
//! Backends load tensors with their own framework; this crate resolves and validates what they load.

mod atomic;
mod checkpoint;
mod convert;
mod dequant;
mod edit;
mod error;
mod gguf;
mod hf_config;
pub use hf_config::config_json;
mod random;
mod reader;
mod st_file;
mod st_write;
mod tiny;
mod tokenizer;

pub use checkpoint::{Checkpoint, open_checkpoint};
pub use convert::{ConvertOptions, ConvertReport, TokenizerSource, config_from_gguf, convert_gguf};
pub use dequant::{GgufDType, dequantize};
pub use edit::{TensorEdit, write_edited_checkpoint};
pub use error::{Error, Result};
pub use gguf::{Gguf, GgufTensor};
pub use random::{write_random_model, write_random_model_as};
pub use reader::{TensorReader, WeightElem};
pub use st_file::{NamedTensor, read_safetensors_f32, write_safetensors_f32};
pub use tiny::{full_size_configs, tiny_configs};
pub use tokenizer::{byte_tokenizer, tokenizer_from_gguf};
