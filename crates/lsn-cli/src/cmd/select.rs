//! `lsn select`: language-specific neurons from captured statistics — LAPE (mondal / tang), ActProb-90p, random.

use std::path::PathBuf;

use anyhow::{Result, bail, ensure};
use lsn_capture::{StatsFile, final_path};
use lsn_core::Lang;
use lsn_run::{OpenOptions, RunDir, StageRecord};
use lsn_select::{CountTable, LapeParams, LapePreset, Selection};

use crate::cmd::capture::FEW_BATCHES;
use crate::plot;

/// Select language-specific neurons from RUN/stats/<lang>.safetensors (written by `lsn capture`).
///
/// Methods: lape-mondal (top 1% of neurons by LAPE entropy, torch.quantile thresholds, every neuron tied
/// at the cut kept — the paper's code), lape-tang (top 5%, torch.kthvalue thresholds, exactly m — Tang et al.'s
/// code), act-prob-90p (per language the 0.125% of neurons most often above that language's mean p90), random
/// (10 per layer, seeded). LAPE compares the languages given together, so the language set matters.
///
/// Output: RUN/neurons[/SET]/<method>.json (per language the sorted [layer, index] pairs, their scores, the
/// thresholds), and a plot of neurons per layer per language, <method>.layers.svg/.png.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run directory (statistics in RUN/stats/).
    #[arg(long, default_value = "runs/default")]
    pub run: PathBuf,
    /// Comma-separated languages to compare (each needs complete statistics).
    #[arg(long, required = true)]
    pub lang: String,
    /// Comma-separated methods: lape-mondal, lape-tang, act-prob-90p, random, or all.
    #[arg(long, default_value = "all")]
    pub method: String,
    /// Name of this language set: outputs go to RUN/neurons/SET/ (e.g. set1; letters, digits, '-', '_', '.').
    #[arg(long, value_parser = parse_set)]
    pub set: Option<String>,
    /// LAPE: fraction of all neurons kept as candidates, in (0, 1] [default: the preset's, mondal 0.01, tang 0.05].
    #[arg(long)]
    pub top_rate: Option<f64>,
    /// ActProb-90p: fraction of all neurons selected per language, in (0, 1] [default: 0.00125, the paper's].
    #[arg(long)]
    pub act_prob_rate: Option<f64>,
    /// Random control: neurons per layer [default: 10].
    #[arg(long, value_parser = crate::cmd::at_least_one)]
    pub random_per_layer: Option<usize>,
    /// Random control: seed [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
}

/// The selection methods, in the order `--method all` runs them.
pub const METHODS: [&str; 4] = ["lape-mondal", "lape-tang", "act-prob-90p", "random"];

/// A `--set` name: one path component inside RUN/neurons/, never `..` or an absolute path.
fn parse_set(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && !s.starts_with('.')
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a set name: use letters, digits, '-', '_' and '.' (not first), at most 64 characters; the \
             set is a directory inside RUN/neurons/"
        ))
    }
}

/// The statistics of `langs`, each checked to belong to the run's model; and a warning when they were computed by
/// different backends (equal up to float rounding, which can move a neuron across a cut).
fn load(run: &mut RunDir, langs: &[Lang]) -> Result<(Vec<StatsFile>, Option<String>)> {
    let dir = run.path("stats");
    let mut files: Vec<StatsFile> = Vec::new();
    for lang in langs {
        let path = final_path(&dir, lang.code());
        ensure!(
            path.is_file() || !lsn_capture::partial_path(&path).is_file(),
            "the capture of {lang} in {} was interrupted ({} holds its checkpoint): run the same `lsn capture` \
             command again to resume it",
            run.root().display(),
            lsn_capture::partial_path(&path).display()
        );
        ensure!(
            path.is_file(),
            "no statistics for {lang} at {}: run `lsn capture --lang {lang} --run {}` first",
            path.display(),
            run.root().display()
        );
        let f = StatsFile::read(&path)?;
        run.check_input(&path, &f.meta.provenance.model, &f.meta.provenance.identity())?;
        if let Some(first) = files.first() {
            let (a, b) = (&first.meta, &f.meta);
            ensure!(
                a.provenance.stats_on == b.provenance.stats_on && a.layers == b.layers,
                "{} and {} hold statistics of different quantities ({} vs {}): select over one kind of statistics",
                a.lang,
                b.lang,
                a.provenance.stats_on,
                b.provenance.stats_on
            );
            // Activations depend on the context length: languages compared by LAPE must share it.
            ensure!(
                a.row_len == b.row_len,
                "{} was captured in rows of {} tokens and {} in rows of {}: statistics of different context lengths \
                 are not comparable; capture {} again with --row-len {} (into another --run, or after deleting {})",
                a.lang,
                a.row_len,
                b.lang,
                b.row_len,
                b.lang,
                a.row_len,
                path.display()
            );
        }
        files.push(f);
    }
    let mut backends: Vec<String> = files.iter().map(|f| f.meta.provenance.backend.clone()).collect();
    backends.sort();
    backends.dedup();
    let mixed = (backends.len() > 1).then(|| {
        format!(
            "the languages' statistics were computed by different backends ({}): equal up to float rounding, which \
             can move a neuron across a cut",
            backends.join(", ")
        )
    });
    Ok((files, mixed))
}

/// ActProb-90p's thresholds are pass 1's batch quantiles averaged over batches: with one batch, pass 2 counts the
/// activations above that batch's own p90, ≈ 10% for every neuron, and the selection is decided by index.
fn batch_warnings(files: &[StatsFile]) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    for f in files {
        let (lang, b) = (&f.meta.lang, f.meta.batches);
        ensure!(
            b >= 2,
            "act-prob-90p needs statistics of at least 2 capture batches per language; {lang} has {b} ({} rows of {} \
             tokens in batches of {}), so its pass 2 counts activations above that batch's own p90 — ≈ 10% for every \
             neuron, and the selection would be decided by neuron index. Capture more text (--max-tokens) or use a \
             smaller --batch-rows (at least {FEW_BATCHES} batches recommended), or select only other methods \
             (--method lape-mondal,lape-tang,random)",
            f.meta.rows,
            f.meta.row_len,
            f.meta.batch_rows
        );
        if b < FEW_BATCHES {
            warnings.push(format!(
                "{lang}: the p90 thresholds are the mean of only {b} batch quantiles (at least {FEW_BATCHES} \
                 recommended)"
            ));
        }
    }
    Ok(warnings)
}

fn lape_table(files: &[StatsFile]) -> Result<CountTable> {
    for f in files {
        ensure!(f.meta.pass1_complete(), "statistics of {} are incomplete (pass 1): finish `lsn capture`", f.meta.lang);
    }
    Ok(CountTable::positive_counts(&by_lang(files))?)
}

fn act_prob_table(files: &[StatsFile]) -> Result<CountTable> {
    for f in files {
        ensure!(
            f.stats.pass2.is_some() && f.meta.pass2_complete(),
            "statistics of {} lack a complete pass 2: finish `lsn capture` (and `lsn merge`)",
            f.meta.lang
        );
    }
    Ok(CountTable::above_p90(&by_lang(files))?)
}

fn by_lang(files: &[StatsFile]) -> Vec<(&str, &lsn_core::ActivationStats)> {
    files.iter().map(|f| (f.meta.lang.as_str(), &f.stats)).collect()
}

/// A rate flag's value: a fraction in (0, 1].
fn rate(flag: &str, v: Option<f64>) -> Result<Option<f64>> {
    if let Some(r) = v {
        ensure!(
            r > 0.0 && r <= 1.0,
            "{flag} {r} is not a fraction in (0, 1]: e.g. {flag} 0.01 selects 1% of all neurons"
        );
    }
    Ok(v)
}

pub fn run(args: Args) -> Result<()> {
    let langs = crate::cmd::parse_langs(&args.lang, "--lang")?;
    let methods: Vec<&str> = if args.method.trim() == "all" {
        METHODS.to_vec()
    } else {
        args.method.split(',').map(str::trim).filter(|m| !m.is_empty()).collect()
    };
    ensure!(!methods.is_empty(), "--method names no method: use {} or all", METHODS.join(", "));
    for (k, m) in methods.iter().enumerate() {
        if *m == "all" {
            bail!("--method {}: `all` cannot be combined with other methods; give all, or a list", args.method);
        }
        if !METHODS.contains(m) {
            bail!("unknown method {m:?} in --method: use {} or all", METHODS.join(", "));
        }
        ensure!(!methods[..k].contains(m), "--method {} names {m} twice", args.method);
    }
    let uses = |prefix: &str| methods.iter().any(|m| m.starts_with(prefix));
    for (given, flag, prefix) in [
        (args.top_rate.is_some(), "--top-rate", "lape"),
        (args.act_prob_rate.is_some(), "--act-prob-rate", "act-prob"),
        (args.random_per_layer.is_some(), "--random-per-layer", "random"),
        (args.seed.is_some(), "--seed", "random"),
    ] {
        ensure!(!given || uses(prefix), "{flag} is given but no chosen method uses it (--method {})", args.method);
    }
    let top_rate = rate("--top-rate", args.top_rate)?;
    let act_prob_rate = rate("--act-prob-rate", args.act_prob_rate)?.unwrap_or(lsn_select::ACT_PROB_RATE);
    if args.run.exists() && !args.run.is_dir() {
        bail!(
            "--run {} is a file, not a run directory: give the directory `lsn capture --run` wrote",
            args.run.display()
        );
    }
    if !args.run.is_dir() {
        bail!(
            "no statistics for {}: the run directory {} does not exist; run `lsn capture --lang {} --run {}` first",
            langs[0],
            args.run.display(),
            args.lang,
            args.run.display()
        );
    }
    let sub = match &args.set {
        Some(set) => format!("neurons/{set}"),
        None => "neurons".to_owned(),
    };
    let out_dir = args.run.join(&sub);
    if out_dir.exists() && !out_dir.is_dir() {
        bail!("{} is a file, where select writes the set {sub}: choose another --set, or remove it", out_dir.display());
    }
    // Every output path of every method, before any is computed: a failure halfway would leave a partial set.
    for method in &methods {
        for ext in ["json", "layers.svg", "layers.png"] {
            let p = out_dir.join(format!("{method}.{ext}"));
            ensure!(!p.is_dir(), "{} is a directory, where select writes a file: remove it", p.display());
        }
    }
    let subdirs = [sub.as_str()];
    let mut run = crate::cmd::open_run(
        &args.run,
        &OpenOptions { flag: "--run", create: false, subdirs: &subdirs, need_bytes: 0 },
    )?;
    let (files, mixed) = load(&mut run, &langs)?;
    // Every method is computed before anything is written: one that fails leaves no set behind, half or whole.
    let mut selected = Vec::with_capacity(methods.len());
    for method in methods {
        let (mut sel, flag): (Selection, &str) = match method {
            "lape-mondal" | "lape-tang" => {
                let preset = if method == "lape-mondal" { LapePreset::Mondal } else { LapePreset::Tang };
                let mut p = LapeParams::new(preset);
                if let Some(t) = top_rate {
                    p.top_rate = t;
                }
                (lsn_select::lape(&lape_table(&files)?, &p)?, "--top-rate")
            }
            "act-prob-90p" => {
                let few = batch_warnings(&files)?;
                let mut sel = lsn_select::act_prob(&act_prob_table(&files)?, act_prob_rate)?;
                sel.warnings.splice(0..0, few);
                (sel, "--act-prob-rate")
            }
            _ => {
                let m = &files[0].meta;
                let per_layer = args.random_per_layer.unwrap_or(lsn_select::RANDOM_PER_LAYER);
                (lsn_select::random(m.layers, m.intermediate, per_layer, args.seed.unwrap_or(0))?, "--random-per-layer")
            }
        };
        ensure!(
            sel.m > 0,
            "{method} would select no neuron: m rounds to 0 for this model ({} layers × {}); raise {flag} (nothing \
             was written)",
            sel.layers,
            sel.intermediate
        );
        sel.warnings.extend(mixed.iter().cloned());
        let prov = &files[0].meta.provenance;
        sel.source = Some(lsn_select::SelectionSource {
            model: prov.model.clone(),
            config_sha256: prov.config_sha256.clone(),
            tokenizer_sha256: prov.tokenizer_sha256.clone(),
            weights_sha256: prov.weights_sha256.clone(),
            stats_on: prov.stats_on.clone(),
        });
        selected.push((method, sel));
    }
    // Then every file of every method is staged, and all are committed with their records in one step.
    let mut records = Vec::new();
    let mut done = Vec::new();
    for (method, sel) in &selected {
        let series: Vec<plot::LayerCounts> = sel
            .languages
            .iter()
            .map(|l| plot::LayerCounts { lang: l.clone(), per_layer: sel.per_layer[l].clone() })
            .collect();
        let title =
            format!("{}: {method} neurons per layer ({})", files[0].meta.provenance.model, sel.languages.join(" "));
        let plots = plot::neurons_per_layer(&title, &series, &run.staged(&format!("{sub}/{method}.layers"))?)?;
        let rel = format!("{sub}/{method}.json");
        run.stage_bytes(&rel, &serde_json::to_vec_pretty(sel)?)?;
        let inputs: Vec<serde_json::Value> = files
            .iter()
            .map(
                |f| serde_json::json!({"lang": f.meta.lang, "data": f.meta.provenance.data, "batches": f.meta.batches}),
            )
            .collect();
        let config = serde_json::json!({"method": method, "languages": sel.languages, "params": sel.params,
                                        "inputs": inputs});
        let json = run.path(&rel);
        let key = format!("select/{}{method}", args.set.as_deref().map(|s| format!("{s}/")).unwrap_or_default());
        let record = StageRecord::new(config, vec![rel], "complete");
        if let Some(old) = run.stage(&key).filter(|o| o.config_sha256 != record.config_sha256) {
            eprintln!(
                "note: {} replaces a {method} selection made with other settings (languages {}); give --set NAME to \
                 keep both",
                json.display(),
                old.config["languages"]
            );
        }
        records.push((key, record));
        let plots = (run.path(&run.unstaged(&plots.svg)), plots.png.map(|p| run.path(&run.unstaged(&p))));
        done.push((method, sel, json, plots));
    }
    run.commit(records)?;
    for (method, sel, json, (svg, png)) in done {
        println!(
            "{method}: m = {}, {} candidates → {} (plot {}{})",
            sel.m,
            sel.candidates,
            json.display(),
            svg.display(),
            png.map(|p| format!(", {}", p.display())).unwrap_or_default()
        );
        for w in &sel.warnings {
            eprintln!("warning: {method}: {w}");
        }
        for l in &sel.languages {
            let per_layer: Vec<String> = sel.per_layer[l].iter().map(usize::to_string).collect();
            println!("  {l:>6}: {:>5} neurons; per layer [{}]", sel.counts[l], per_layer.join(" "));
        }
    }
    Ok(())
}
