//! `lsn random-model`: write a deterministic random model — tiny ones for tests and trying the pipeline, full-size
//! shapes of the paper's models for measuring memory and speed at scale.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// Write a random-weight model of a preset shape as a HF checkpoint directory: config.json, model.safetensors and a
/// byte-level tokenizer.json (every UTF-8 byte one token, BOS in front), so the model runs every stage on real text,
/// e.g. `lsn capture --model DIR --lang en --data-dir ...`. Its outputs are noise: use the tiny presets to try the
/// pipeline and in tests, and the full-size ones (llama-3.1-8b: Llama-3.1-8B's exact shapes, 16 GB in bf16) to measure
/// memory and throughput at the paper's scale. The same --seed gives byte-identical files on every machine.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Preset name: a tiny one per family (tiny-llama, tiny-gemma3, tiny-qwen2, tiny-qwen3, tiny-gemma2,
    /// tiny-llama32) or a real model's shapes (llama-3.1-8b, qwen2.5-0.5b, qwen2.5-1.5b, qwen3-0.6b, gemma-2-2b,
    /// llama-3.2-1b); see --list.
    #[arg(required_unless_present = "list")]
    pub preset: Option<String>,
    /// The directory to write (created; it must not exist or be empty).
    #[arg(long, short, required_unless_present_any = ["list", "config"])]
    pub out: Option<PathBuf>,
    /// Seed of the weights: the same seed gives the same bytes; another seed gives other weights under the same
    /// config.json and tokenizer.json.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stored dtype of the weights: f32, or bf16 (the f32 values rounded to nearest even; half the size).
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    pub dtype: lsn_core::WeightDType,
    /// List the presets.
    #[arg(long, conflicts_with_all = ["preset", "out", "seed", "dtype"])]
    pub list: bool,
    /// Print the preset's config.json (as --out would get it) and write nothing.
    #[arg(long, requires = "preset", conflicts_with_all = ["out", "seed", "dtype", "list"])]
    pub config: bool,
}

pub fn run(args: Args) -> Result<()> {
    let presets: Vec<_> = lsn_weights::tiny_configs().into_iter().chain(lsn_weights::full_size_configs()).collect();
    if args.list {
        for (name, cfg) in &presets {
            println!(
                "{name}: {:?}, {} layers, hidden {}, heads {}/{}, {:.3e} parameters",
                cfg.family,
                cfg.num_layers,
                cfg.hidden_size,
                cfg.num_heads,
                cfg.num_kv_heads,
                lsn_core::expected_tensors(cfg).iter().map(|t| t.shape.iter().product::<usize>() as f64).sum::<f64>()
            );
        }
        return Ok(());
    }
    let Some(name) = args.preset else { bail!("give a preset") };
    let Some((_, cfg)) = presets.iter().find(|(n, _)| *n == name) else {
        bail!("unknown preset {name:?} (known: {})", presets.iter().map(|p| p.0).collect::<Vec<_>>().join(", "));
    };
    if args.config {
        println!("{}", lsn_weights::config_json(cfg));
        return Ok(());
    }
    let Some(out) = args.out else { bail!("give --out") };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        lsn_run::prepare_dir(parent, "--out", true)?;
    }
    lsn_weights::write_random_model_as(cfg, args.seed, &out, args.dtype).context("--out")?;
    println!(
        "wrote {name} (seed {}, {}) to {}: config.json, model.safetensors, tokenizer.json",
        args.seed,
        args.dtype,
        out.display()
    );
    Ok(())
}

fn parse_dtype(s: &str) -> std::result::Result<lsn_core::WeightDType, String> {
    s.parse()
}
