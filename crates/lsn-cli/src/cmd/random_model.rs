//! `lsn random-model`: write a tiny, deterministic random model (for tests and for trying the pipeline quickly).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// Write a tiny random-weight model of a preset shape as a HF checkpoint directory: config.json,
/// model.safetensors and a byte-level tokenizer.json (every UTF-8 byte one token, BOS in front), so the model runs
/// every stage on real text, e.g. `lsn capture --model DIR --lang en --data-dir ...`. Its outputs are noise: use it to
/// try the pipeline and in tests. The same --seed gives byte-identical files on every machine.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Preset name: tiny-llama or tiny-gemma3 (see --list).
    #[arg(required_unless_present = "list")]
    pub preset: Option<String>,
    /// The directory to write (created; it must not exist or be empty).
    #[arg(long, short, required_unless_present = "list")]
    pub out: Option<PathBuf>,
    /// Seed of the weights: the same seed gives the same bytes; another seed gives other weights under the same
    /// config.json and tokenizer.json.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// List the presets.
    #[arg(long, conflicts_with_all = ["preset", "out", "seed"])]
    pub list: bool,
}

pub fn run(args: Args) -> Result<()> {
    let presets = lsn_weights::tiny_configs();
    if args.list {
        for (name, cfg) in &presets {
            println!(
                "{name}: {:?}, {} layers, hidden {}, heads {}/{}",
                cfg.family, cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads
            );
        }
        return Ok(());
    }
    let (Some(name), Some(out)) = (args.preset, args.out) else { bail!("give a preset and --out") };
    let Some((_, cfg)) = presets.iter().find(|(n, _)| *n == name) else {
        bail!("unknown preset {name:?} (known: {})", presets.iter().map(|p| p.0).collect::<Vec<_>>().join(", "));
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        lsn_run::prepare_dir(parent, "--out", true)?;
    }
    lsn_weights::write_random_model(cfg, args.seed, &out).context("--out")?;
    println!("wrote {name} (seed {}) to {}: config.json, model.safetensors, tokenizer.json", args.seed, out.display());
    Ok(())
}
