//! `lsn merge-adapter`: writes a new checkpoint directory with a LoRA adapter merged into the weights
//! (`W + (α/r)·B·A`), which every backend loads as an ordinary model — ONNX Runtime runs fine-tuned models this way.

use std::path::PathBuf;

use anyhow::{Context, Result};
use lsn_core::ModelFiles;

use crate::assets;

/// Merges an adapter (`lsn train`, or any PEFT LoRA adapter of this model) into the base weights: OUT holds
/// config.json, the tokenizer and model.safetensors (f32) with every adapted linear replaced by W + (α/r)·B·A, and
/// for an XNLI adapter head.safetensors (its Linear(hidden, 3) head, for `lsn eval --protocol head --head`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The adapter directory (adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    pub adapter: PathBuf,
    /// The base model: a fetched model's name or a HF checkpoint directory.
    #[arg(long, default_value = "gemma-3-270m")]
    pub model: String,
    /// The merged checkpoint directory (must not exist, or be empty).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub cache: assets::HomeArg,
}

pub fn run(args: Args) -> Result<()> {
    let home = &args.cache.home();
    let dir = assets::resolve_model(home, &args.model)?;
    let ckpt = lsn_weights::open_checkpoint(ModelFiles::new(&dir).dir())?;
    let (adapter, _) = lsn_lora::read_adapter(&args.adapter, &ckpt.config)
        .with_context(|| format!("reading the adapter for {}", args.model))?;
    lsn_lora::merge::merge_into(&ckpt, &adapter, &args.out)?;
    println!("merged {} into {} → {}", args.adapter.display(), args.model, args.out.display());
    Ok(())
}
