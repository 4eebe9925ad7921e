//! `lsn layer-means`: the mean of each layer's output (the residual stream) over a language's captured rows, per
//! language, into RUN/layer-means/LANG.json — what difference-of-means steering vectors (`--steer diffmean`) are made
//! of, from the same text the language's neurons were selected on.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use lsn_capture::StatsFile;
use lsn_core::{ModelFiles, ModelIdentity, Outputs, Request, TokenBatch};
use lsn_data::Tokenizer;
use serde::{Deserialize, Serialize};

use crate::{assets, backends, fsutil};

/// Per layer, the mean of the layer's output over the first --max-rows rows a language's capture used (packed again
/// exactly as the capture packed them, checked against its recorded digest), on the model of the capture. Written to
/// RUN/layer-means/LANG.json; a language whose file was made from the same rows and model is skipped.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A fetched model's name (gemma-3-270m, smollm2-135m) or a HF checkpoint directory: the capture's.
    #[arg(long, default_value = "gemma-3-270m")]
    pub model: String,
    /// The capture run (RUN/stats/LANG.safetensors).
    #[arg(long)]
    pub run: PathBuf,
    /// Languages, comma-separated.
    #[arg(long)]
    pub lang: String,
    /// Captured rows per language, at most.
    #[arg(long, default_value_t = 32, value_parser = crate::cmd::at_least_one)]
    pub max_rows: usize,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 4, value_parser = crate::cmd::at_least_one)]
    pub batch_rows: usize,
    /// Data directory the capture read [default: $LSN_DATA_DIR].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub on: backends::BackendArgs,
    #[command(flatten)]
    pub cache: assets::HomeArg,
}

/// One language's layer means, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerMeans {
    pub lang: String,
    pub model: String,
    pub identity: ModelIdentity,
    /// The capture rows the means cover, and their tokens.
    pub rows: usize,
    pub tokens: u64,
    pub layers: usize,
    pub hidden: usize,
    /// `[layers][hidden]`.
    pub mean: Vec<Vec<f64>>,
}

/// The file of `lang`'s layer means in run `run`.
pub fn path(run: &Path, lang: &str) -> PathBuf {
    run.join("layer-means").join(format!("{lang}.json"))
}

/// Reads `lang`'s layer means from `run`, checked to be of the model `identity`.
pub fn read(run: &Path, lang: &str, identity: &ModelIdentity) -> Result<LayerMeans> {
    let p = path(run, lang);
    ensure!(
        p.is_file(),
        "difference-of-means steering needs {lang}'s layer means, and {} does not exist: run `lsn layer-means --run {} \
         --lang {lang}`",
        p.display(),
        run.display()
    );
    let m: LayerMeans = serde_json::from_slice(&std::fs::read(&p)?)
        .with_context(|| format!("{} is not a layer-means file written by `lsn layer-means`", p.display()))?;
    ensure!(
        m.mean.len() == m.layers && m.mean.iter().all(|l| l.len() == m.hidden),
        "{} does not hold {} layers × {} means: it was edited or cut short; run `lsn layer-means` again",
        p.display(),
        m.layers,
        m.hidden
    );
    ensure!(
        m.identity.same_model(identity),
        "{} was made with another model ({}): they differ in {}",
        p.display(),
        m.model,
        m.identity.difference(identity)
    );
    Ok(m)
}

pub fn run(args: Args) -> Result<()> {
    let home = &args.cache.home();
    let langs = crate::cmd::parse_langs(&args.lang, "--lang")?;
    let dir = assets::resolve_model(home, &args.model)?;
    let files = ModelFiles::new(&dir);
    let tok = Tokenizer::from_file(&files.tokenizer())?;
    let identity = assets::identity(home, &lsn_weights::open_checkpoint(&dir)?, &tok)?;
    let data_dir = args.data_dir.clone().or_else(|| lsn_data::resolve_data_dir(None).ok());
    // Every language's rows before the (slow) model load, so bad input fails fast.
    let mut todo = Vec::new();
    for lang in &langs {
        let stats = args.run.join("stats").join(format!("{}.safetensors", lang.code()));
        ensure!(
            stats.is_file(),
            "no statistics for {lang} at {}: capture {lang} into {} first",
            stats.display(),
            args.run.display()
        );
        let prov = StatsFile::read(&stats)?.meta.provenance;
        ensure!(
            prov.identity().same_model(&identity),
            "{} was captured with another model ({}): they differ in {}; give the capture's --model",
            stats.display(),
            prov.model,
            prov.identity().difference(&identity)
        );
        let rows = super::heldout::captured(&stats, data_dir.as_deref(), &tok, args.max_rows)?;
        ensure!(!rows.is_empty(), "{lang}: its capture used no rows");
        let out = path(&args.run, lang.code());
        let tokens: u64 = rows.iter().map(|r| r.len() as u64).sum();
        if let Ok(m) = read(&args.run, lang.code(), &identity)
            && (m.rows, m.tokens) == (rows.len(), tokens)
        {
            eprintln!("{lang}: {} is complete (same model and rows); skipped", out.display());
            continue;
        }
        todo.push((lang.code().to_owned(), rows, out));
    }
    if todo.is_empty() {
        return Ok(());
    }
    let (backend, mut model) = args.on.load(home, &files)?;
    tok.check_model_vocab(model.config().vocab_size)?;
    let (layers, hidden) = (model.config().num_layers, model.config().hidden_size);
    let pad = model.config().pad_token_id.unwrap_or(0);
    for (lang, rows, out) in todo {
        let bar = indicatif::ProgressBar::new(rows.len() as u64).with_style(
            indicatif::ProgressStyle::with_template("{prefix:>4} {wide_bar} {pos}/{len} rows {per_sec} eta {eta}")
                .expect("static template"),
        );
        bar.set_prefix(lang.clone());
        let mut sums = vec![0f64; layers * hidden];
        let mut tokens = 0u64;
        for chunk in rows.chunks(args.batch_rows) {
            let batch = TokenBatch::padded(chunk, pad)?;
            let s = model.run(&Request::new(&batch, Outputs::LAYER_SUMS))?.layer_sums.context("no layer sums")?;
            for (a, b) in sums.iter_mut().zip(s) {
                *a += b;
            }
            tokens += batch.n_tokens() as u64;
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        let mean = sums.chunks(hidden).map(|l| l.iter().map(|x| x / tokens as f64).collect()).collect();
        let m = LayerMeans {
            lang: lang.clone(),
            model: args.model.clone(),
            identity: identity.clone(),
            rows: rows.len(),
            tokens,
            layers,
            hidden,
            mean,
        };
        fsutil::write_atomic(&out, serde_json::to_string(&m)?.as_bytes())?;
        println!(
            "{lang}: means of {layers} layers over {} rows ({tokens} tokens) on {} → {}",
            rows.len(),
            backend.name(),
            out.display()
        );
    }
    Ok(())
}
