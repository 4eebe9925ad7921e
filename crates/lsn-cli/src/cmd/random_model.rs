//! `lsn random-model`: write a tiny, deterministic random model (for tests and for trying the pipeline quickly).

use std::path::PathBuf;

use anyhow::{Result, bail};

/// Write a tiny random-weight model of a preset shape as a HF checkpoint directory (config.json +
/// model.safetensors). The same --seed gives byte-identical files on every machine.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Preset name (see --list).
    #[arg(required_unless_present = "list")]
    pub preset: Option<String>,
    #[arg(long, short, required_unless_present = "list")]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// List the presets.
    #[arg(long)]
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
    lsn_weights::write_random_model(cfg, args.seed, &out)?;
    println!("wrote {name} (seed {}) to {}", args.seed, out.display());
    Ok(())
}
