//! One module per `lsn` subcommand.

pub mod capture;
pub mod compare;
pub mod convert;
pub mod eval;
#[cfg(feature = "ort")]
pub mod export_onnx;
pub mod fetch;
pub mod fetch_data;
pub mod generate;
pub mod heldout;
pub mod intervene;
pub mod merge;
pub mod merge_adapter;
pub mod ppl;
pub mod ppxc;
pub mod random_model;
pub mod report;
pub mod reproduce;
pub mod select;
pub mod train;

/// Parses a count that must be at least 1 (`--batch-rows`, `--sentences`, ...): 0 would silently do nothing.
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("0 is not allowed here: give at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?} is not a whole number ({e})")),
    }
}

/// Parses an equivalence margin δ (`--margin`): points of accuracy or F1, finite and above 0.
pub fn positive_margin(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x < 100.0 => Ok(x),
        Ok(x) => Err(format!("{x} is not a margin: give points of accuracy or F1 above 0 and below 100, e.g. 2.0")),
        Err(e) => Err(format!("{s:?} is not a number ({e})")),
    }
}

/// Parses a comma-separated language list given to `flag`, refusing an empty list and a language given twice.
pub fn parse_langs(list: &str, flag: &str) -> anyhow::Result<Vec<lsn_core::Lang>> {
    let langs = lsn_core::Lang::parse_list(list)?;
    anyhow::ensure!(!langs.is_empty(), "{flag} names no language");
    for (k, l) in langs.iter().enumerate() {
        anyhow::ensure!(!langs[..k].contains(l), "{flag} {list} names {l} twice: list each language once");
    }
    Ok(langs)
}

/// Opens (and locks) a run directory, saying so when it takes over the lock of a process that died.
pub fn open_run(root: &std::path::Path, opts: &lsn_run::OpenOptions) -> anyhow::Result<lsn_run::RunDir> {
    let run = lsn_run::RunDir::open(root, opts)?;
    if let Some(h) = run.took_over() {
        warn_took_over(root, h);
    }
    Ok(run)
}

/// The warning when a lock of `root` was taken over from a process that died holding it.
pub fn warn_took_over(root: &std::path::Path, h: &lsn_run::Holder) {
    eprintln!(
        "warning: took over the lock of {}: it was held by pid {} (`{}`, {} ago), which is no longer running",
        root.display(),
        h.pid,
        h.command,
        h.age()
    );
}
