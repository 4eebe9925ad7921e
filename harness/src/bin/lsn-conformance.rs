//! `lsn-conformance`: runs the conformance suite on every backend compiled in and prints the case × backend table
//! and the pairwise table (markdown), then one summary line; exits non-zero when a case fails.
//!
//! Usage: `lsn-conformance [--device cpu|cuda[:N]] [--backends a,b] [--json FILE]`. `cargo xtask conformance` builds and runs it.
//! Reads `LSN_HOME` (model cache; the fetched models must be there) and `LSN_DATA_DIR` (FLORES-200 for the slice).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use lsn_core::Device;
use lsn_harness::{Outcome, backends, run_suite, suite::Env};

fn main() -> Result<()> {
    let mut device = Device::Cpu;
    let mut json: Option<PathBuf> = None;
    let mut only: Option<Vec<String>> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--device" => {
                device = args.next().context("--device needs a value")?.parse().map_err(anyhow::Error::msg)?
            }
            "--backends" => {
                only = Some(args.next().context("--backends needs a list")?.split(',').map(str::to_owned).collect())
            }
            "--json" => json = Some(args.next().context("--json needs a file")?.into()),
            "-h" | "--help" => {
                println!(
                    "lsn-conformance [--device cpu|cuda[:N]] [--backends a,b] [--json FILE]\n\n{}\n\n--backends runs only the named backends (the first is the reference)",
                    env!("CARGO_PKG_DESCRIPTION")
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    let env = Env::from_env(device).context("creating a scratch folder")?;
    let mut backends = backends();
    if let Some(only) = only {
        let known: Vec<&str> = backends.iter().map(|b| b.name()).collect();
        if let Some(bad) = only.iter().find(|n| !known.contains(&n.as_str())) {
            bail!("backend {bad:?} is not compiled in (this build has {})", known.join(", "));
        }
        backends.retain(|b| only.iter().any(|n| n == b.name()));
        backends.sort_by_key(|b| only.iter().position(|n| n == b.name()));
    }
    eprintln!(
        "conformance: backends {}; models from {}; data dir {}",
        backends.iter().map(|b| b.name()).collect::<Vec<_>>().join(", "),
        env.home.display(),
        env.data_dir.as_ref().map_or_else(|e| format!("(none: {e})"), |d| d.display().to_string())
    );
    // Each progress line ends with the seconds since the previous one: what a case (or the work before it) cost.
    let mut last = std::time::Instant::now();
    let report = run_suite(&backends, &env, &mut |c| {
        let verdict = match &c.outcome {
            Outcome::Pass => "pass",
            Outcome::Fail(_) => "FAIL",
            Outcome::Skip(_) => "skip",
            Outcome::Reference => "ref",
        };
        let secs = last.elapsed().as_secs_f64();
        last = std::time::Instant::now();
        eprintln!(
            "  {verdict:4} {} [{}]{} ({secs:.1} s)",
            c.case,
            c.backend,
            c.worst.map_or(String::new(), |w| format!(" {w:.3e}"))
        );
    });
    println!("\n## Conformance: case × backend\n\n{}", report.case_table());
    println!("\n## Pairwise\n\n{}", report.pair_table());
    if let Some(path) = json {
        let bytes = serde_json::to_vec_pretty(&report)?;
        lsn_core::write_atomic(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    let (pass, fail, skip) = report.counts();
    println!("conformance: {pass} passed, {fail} failed, {skip} skipped");
    if fail > 0 {
        bail!("{fail} conformance case(s) failed");
    }
    Ok(())
}
