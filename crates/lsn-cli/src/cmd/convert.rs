//! `lsn convert`: turn a GGUF file into a HF checkpoint directory (f32 safetensors + config.json + tokenizer.json).

use std::path::PathBuf;

use anyhow::{Context, Result};

/// Convert a GGUF file (architecture llama, gemma2, gemma3, qwen2 or qwen3) into a HF checkpoint directory that HF
/// transformers and every lsn backend read: model.safetensors in f32 (dequantized), config.json, tokenizer.json.
/// llama.cpp's Q/K row permutation is undone and Gemma's norm weights are stored in HF's (1 + w) convention. GGUF
/// does not record Gemma's query_pre_attn_scalar: as llama.cpp, the conversion takes head_dim (hidden / heads for
/// the 27B models). Qwen's GGUF vocabularies use a pre-tokenizer lsn does not rebuild: pass --tokenizer.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The GGUF file.
    pub gguf: PathBuf,
    /// Output directory (must not exist or be empty, unless --force).
    #[arg(long, short)]
    pub out: PathBuf,
    /// A tokenizer.json to copy in; without it, one is built from the GGUF vocabulary (byte-level BPE models).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Replace an existing output directory.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args) -> Result<()> {
    if let Some(t) = &args.tokenizer {
        anyhow::ensure!(t.is_file(), "--tokenizer {}: not a file; give the path of a tokenizer.json", t.display());
    }
    // --force replaces --out: never when it holds an input of this very command.
    if let Ok(out) = std::fs::canonicalize(&args.out) {
        for (flag, input) in [("the GGUF", Some(&args.gguf)), ("--tokenizer", args.tokenizer.as_ref())] {
            if let Some(inside) = input.and_then(|i| std::fs::canonicalize(i).ok()).filter(|i| i.starts_with(&out)) {
                anyhow::bail!(
                    "--out {} holds {flag} {} that this command reads: choose another --out",
                    args.out.display(),
                    inside.display()
                );
            }
        }
    }
    let busy = std::fs::read_dir(&args.out).map(|mut d| d.next().is_some()).unwrap_or(false);
    if busy && !args.force {
        anyhow::bail!(
            "--out {} exists and is not empty: choose another --out, remove it, or pass --force to replace it",
            args.out.display()
        );
    }
    let opts = lsn_weights::ConvertOptions { tokenizer_json: args.tokenizer, overwrite: args.force };
    let report = lsn_weights::convert_gguf(&args.gguf, &args.out, &opts)
        .with_context(|| format!("converting {}", args.gguf.display()))?;
    let dtypes: Vec<String> = report.source_dtypes.iter().map(|(t, n)| format!("{n} {t}")).collect();
    println!(
        "wrote {}: {:?} model, {} tensors in f32 ({:.1} MB) from {}; tokenizer: {:?}",
        args.out.display(),
        report.config.family,
        report.n_tensors,
        report.safetensors_bytes as f64 / 1e6,
        dtypes.join(", "),
        report.tokenizer
    );
    Ok(())
}
