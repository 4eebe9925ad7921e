//! `lsn export-onnx`: lsn's own ONNX export of a checkpoint (the graph the ort backend runs), as a stand-alone model.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lsn_core::ModelFiles;

use crate::assets;

/// Writes the whole model as ONNX (opset 18): input `input_ids` `[batch, seq]` (int64, rows right-padded), output
/// `logits` `[batch, seq, vocab]`; RoPE and causal / sliding-window masks are computed in the graph. Weights are f32
/// external data in `weights.bin` beside the graph. The export is cached under the cache directory's onnx/ by the
/// checkpoint's content and the exporter version; `--out` copies the two files into a directory of your choice.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A fetched model's name (gemma-3-270m, smollm2-135m) or a HF checkpoint directory.
    #[arg(long, default_value = "gemma-3-270m")]
    pub model: String,
    /// Directory to copy model.onnx and weights.bin into (created; existing files are replaced).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub cache: assets::HomeArg,
}

/// Copies `from` to `to` through a temporary sibling and a rename, so `to` is never half-written. (A hard link would
/// save the space, but `onnx.checker` rejects external data with several links.)
fn copy_atomic(from: &Path, to: &Path) -> Result<()> {
    let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = to.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::copy(from, &tmp)
        .and_then(|_| std::fs::rename(&tmp, to))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    let home = &args.cache.home();
    let dir = assets::resolve_model(home, &args.model)?;
    // Removed again if the export fails before anything is copied into it.
    let _out = args.out.as_deref().map(|o| lsn_run::OutDir::prepare(o, "--out")).transpose()?;
    let graph = lsn_backend_ort::export_model(&ModelFiles::new(&dir), &home.join("onnx"))
        .with_context(|| format!("exporting {} to ONNX", dir.display()))?;
    let weights = graph.with_file_name("weights.bin");
    match args.out {
        None => println!("{}\n{}", graph.display(), weights.display()),
        Some(out) => {
            copy_atomic(&weights, &out.join("weights.bin"))?;
            copy_atomic(&graph, &out.join("model.onnx"))?;
            println!("{}\n{}", out.join("model.onnx").display(), out.join("weights.bin").display());
        }
    }
    Ok(())
}
