//! `lsn merge-adapter`: writes a new checkpoint directory with a LoRA adapter merged into the weights
//! (`W + (α/r)·B·A`), which every backend loads as an ordinary model — ONNX Runtime runs fine-tuned models this way.

use std::path::PathBuf;

use anyhow::{Context, Result};
use lsn_core::ModelFiles;

use crate::{assets, fsutil};

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
    /// The merged checkpoint directory: new or empty (a rerun of the same merge finds it done; another adapter or
    /// model is refused). Locked while the merge runs; its files appear together.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub cache: assets::HomeArg,
}

/// What merge-adapter writes: a checkpoint directory, committed as a whole.
const OUTPUT: lsn_run::Output = lsn_run::Output {
    command: "merge-adapter",
    flag: "--out",
    results: &["config.json", "model.safetensors", "tokenizer.json", lsn_lora::merge::HEAD_FILE],
    need_bytes: 0,
};

pub fn run(args: Args) -> Result<()> {
    let home = &args.cache.home();
    let dir = assets::resolve_model(home, &args.model)?;
    let files = ModelFiles::new(&dir);
    let ckpt = lsn_weights::open_checkpoint(files.dir())?;
    let (adapter, meta) = lsn_lora::read_adapter(&args.adapter, &ckpt.config)
        .with_context(|| format!("reading the adapter for {}", args.model))?;
    let tok = lsn_data::Tokenizer::from_file(&files.tokenizer())?;
    let identity = assets::identity(home, &ckpt, &tok)?;
    crate::cmd::check_adapter(&args.adapter, &meta, &args.model, &identity)?;
    let mut out = crate::cmd::open_output(&args.out, &OUTPUT)?;
    let weights = lsn_lora::peft::weights_path(&args.adapter);
    let settings =
        serde_json::json!({"adapter": args.adapter, "adapter_weights_sha256": fsutil::sha256_file(&weights)?});
    if let Some(done) = out.claim(OUTPUT.command, &args.model, &identity, &settings)?
        && done.outputs.iter().all(|f| args.out.join(f).is_file())
    {
        println!(
            "{} already holds {} merged into {}: nothing to do",
            args.out.display(),
            args.adapter.display(),
            args.model
        );
        return Ok(());
    }
    lsn_lora::merge::merge_into(&ckpt, &adapter, &out.staging_dir()?)?;
    out.commit_output(OUTPUT.command, &args.model, &identity, settings)?;
    println!("merged {} into {} → {}", args.adapter.display(), args.model, args.out.display());
    Ok(())
}
