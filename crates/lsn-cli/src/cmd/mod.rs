//! One module per `lsn` subcommand.

pub mod capture;
pub mod compare;
pub mod convert;
pub mod eval;
#[cfg(feature = "ort")]
pub mod export_onnx;
pub mod fetch;
pub mod fetch_data;
pub mod forcing;
pub mod generate;
pub mod heldout;
pub mod intervene;
pub mod layer_means;
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

/// Opens (and locks) the output directory of a command ([`lsn_run::RunDir::open_output`]), saying what it recovered.
pub fn open_output(dir: &std::path::Path, out: &lsn_run::Output) -> anyhow::Result<lsn_run::RunDir> {
    let run = lsn_run::RunDir::open_output(dir, out)?;
    if let Some(h) = run.took_over() {
        warn_took_over(dir, h);
    }
    Ok(run)
}

/// Checks that the adapter in `dir` was trained on the model this command loads (`model`, of `identity`), as its
/// `lsn train` metadata records; an adapter PEFT wrote records none, and only its shapes can be checked (said).
pub fn check_adapter(
    dir: &std::path::Path,
    meta: &lsn_lora::AdapterMeta,
    model: &str,
    identity: &lsn_core::ModelIdentity,
) -> anyhow::Result<()> {
    match meta.trained_on() {
        Some(made_with) => Ok(lsn_run::check_made_with(
            dir,
            &meta.base_model,
            &made_with,
            model,
            identity,
            "give the --model it was trained on, or train an adapter on this model",
        )?),
        None => {
            eprintln!(
                "note: {} does not record the model it was trained on (not written by `lsn train`): only its shapes \
                 were checked against {model}",
                dir.display()
            );
            Ok(())
        }
    }
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
