//! One module per `lsn` subcommand.

pub mod capture;
pub mod convert;
#[cfg(feature = "ort")]
pub mod export_onnx;
pub mod fetch;
pub mod merge;
pub mod ppl;
pub mod random_model;
pub mod select;
