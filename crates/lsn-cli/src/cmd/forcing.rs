//! `lsn forcing`: does steering a language's neurons make the model write in that language? Greedy continuations of
//! source-language FLORES-200 prompts, unsteered, steered towards each target and under the matched random control;
//! lingua judges each continuation's language and the unsteered model scores its fluency. One table, with bootstrap
//! intervals over prompts.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use lsn_core::{Greedy, Lang, Model, ModelFiles};
use lsn_data::{Corpus, Tokenizer, read_sentences, resolve_data_dir};
use lsn_eval::LanguageId;
use lsn_eval::forcing::{self, ForcingCell, Judged};

use crate::cmd::intervene::InterveneArgs;
use crate::{assets, backends, fsutil};

/// Language forcing (Language Arithmetics' test, arXiv 2507.22608): prompts in --source are continued greedily with
/// --neurons steered towards each --targets language (--steer, --alpha), without steering, and with the same
/// operation on random neurons of the same count per layer (--control-seed). lingua names each continuation's language
/// (models inside the binary); the model without steering scores each continuation's NLL per token (fluency).
/// Prompts: the last --prompts sentences of the source's FLORES-200 devtest file. Each target's results are kept
/// beside --out and reused when the command is run again with the same settings.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A fetched model's name (gemma-3-270m, smollm2-135m) or a HF checkpoint directory.
    #[arg(long, default_value = "gemma-3-270m")]
    pub model: String,
    /// The prompts' language (its neurons are the ones `--steer arithmetic` deactivates).
    #[arg(long, default_value = "en")]
    pub source: String,
    /// The languages to force, comma-separated (each needs a neuron set in --neurons and, for add and arithmetic,
    /// its statistics in the capture run).
    #[arg(long, default_value = "vi,hi,ur,zh")]
    pub targets: String,
    /// Prompts: the last this many FLORES-200 devtest sentences of --source.
    #[arg(long, default_value_t = 50, value_parser = crate::cmd::at_least_one)]
    pub prompts: usize,
    /// New tokens per continuation, at most.
    #[arg(long, default_value_t = 32, value_parser = crate::cmd::at_least_one)]
    pub max_new_tokens: usize,
    /// Prompts per batch.
    #[arg(long, default_value_t = 8, value_parser = crate::cmd::at_least_one)]
    pub batch: usize,
    /// The seed of the random-neuron control (same operation, random neurons with each set's count per layer).
    #[arg(long, default_value_t = 1)]
    pub control_seed: u64,
    /// Data directory holding corpus/flores200_devtest [default: $LSN_DATA_DIR].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub intervene: InterveneArgs,
    #[command(flatten)]
    pub on: backends::BackendArgs,
    /// The results (JSON: the table's cells and every continuation); a markdown table beside it (.md).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub cache: assets::HomeArg,
}

/// The prompts: the last `n` sentences of `lang`'s FLORES-200 devtest file, in file order.
fn prompts(data_dir: &Path, lang: Lang, n: usize) -> Result<Vec<String>> {
    let all = read_sentences(data_dir, Corpus::Flores, lang)?;
    ensure!(all.len() >= n, "--prompts {n}: {}'s FLORES-200 devtest file holds {} sentences", lang.code(), all.len());
    Ok(all[all.len() - n..].to_vec())
}

/// A run's stored part, reused when made with the same settings.
fn reuse(path: &Path, key: &serde_json::Value) -> Option<Vec<Judged>> {
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    (&doc["key"] == key).then(|| serde_json::from_value(doc["judged"].clone()).ok()).flatten()
}

struct Runner<'a> {
    model: Box<dyn Model>,
    tok: &'a Tokenizer,
    id: &'a LanguageId,
    ids: Vec<Vec<u32>>,
    opts: Greedy,
    batch: usize,
    parts: PathBuf,
    key: serde_json::Value,
}

impl Runner<'_> {
    /// The judged continuations of every prompt under `iv` (`name` keys the stored part).
    fn run(&mut self, name: &str, iv: Option<&lsn_core::Intervention>) -> Result<Vec<Judged>> {
        let path = self.parts.join(format!("{name}.json"));
        let key = serde_json::json!({"settings": self.key, "intervention": iv});
        if let Some(j) = reuse(&path, &key) {
            eprintln!("{name}: reusing {}", path.display());
            return Ok(j);
        }
        let bar = indicatif::ProgressBar::new(self.ids.len() as u64).with_style(
            indicatif::ProgressStyle::with_template("{prefix:>24} {wide_bar} {pos}/{len} prompts {per_sec} eta {eta}")
                .expect("static template"),
        );
        bar.set_prefix(name.to_owned());
        let conts =
            forcing::continuations(self.model.as_mut(), iv, &self.ids, &self.opts, self.batch, |n| bar.inc(n as u64))?;
        bar.finish_and_clear();
        let new: Vec<Vec<u32>> = conts.iter().map(|(ids, _)| ids.clone()).collect();
        let nll = forcing::continuation_nll(self.model.as_mut(), &self.ids, &new, self.batch, self.opts.pad)?;
        let tok = self.tok;
        let judged = forcing::judge(self.id, conts, nll, |ids| {
            tok.decode(ids).map_err(|e| lsn_eval::Error::Unsupported(e.to_string()))
        })?;
        let doc = serde_json::json!({"key": key, "judged": judged});
        fsutil::write_atomic(&path, serde_json::to_string(&doc)?.as_bytes())?;
        Ok(judged)
    }
}

pub fn run(args: Args) -> Result<()> {
    let home = &args.cache.home();
    ensure!(
        args.intervene.neurons.is_some(),
        "language forcing steers a neuron set: give --neurons RUN/neurons/[SET/]METHOD.json"
    );
    ensure!(
        args.intervene.random_like.is_none(),
        "--random-like replaces the steered sets; `lsn forcing` runs the random control itself (--control-seed)"
    );
    ensure!(
        args.intervene.source_lang.is_none(),
        "--source-lang: `lsn forcing` deactivates the prompts' language, --source"
    );
    lsn_run::prepare_file(&args.out, "--out")?;
    let source = Lang::parse(&args.source)?;
    let targets = crate::cmd::parse_langs(&args.targets, "--targets")?;
    for &t in &targets {
        LanguageId::check_covered(t)?;
        ensure!(t != source, "--targets {t}: forcing the prompts' own language measures nothing");
    }
    let data_dir = resolve_data_dir(args.data_dir.as_deref())?;
    let texts = prompts(&data_dir, source, args.prompts)?;
    let dir = assets::resolve_model(home, &args.model)?;
    let files = ModelFiles::new(&dir);
    let tok = Tokenizer::from_file(&files.tokenizer())?;
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t)).collect::<Result<_, _>>()?;
    // Every input is checked against the checkpoint's config before the (slow) model load.
    let cfg = lsn_weights::open_checkpoint(&dir)?.config;
    tok.check_model_vocab(cfg.vocab_size)?;
    if let Some(long) = ids.iter().map(Vec::len).max()
        && long + args.max_new_tokens > cfg.max_position_embeddings
    {
        bail!("a prompt of {long} tokens plus {} new ones exceeds the model's context", args.max_new_tokens);
    }
    let mut steered = args.intervene.load(home, &dir, &tok, &cfg)?.context("--neurons is required")?;
    let mut control_args = args.intervene.clone();
    control_args.random_like = Some(args.control_seed);
    let mut control = control_args.load(home, &dir, &tok, &cfg)?.context("--neurons is required")?;
    let from_source = matches!(steered.steer, lsn_core::Steer::Arithmetic | lsn_core::Steer::DiffMean);
    for l in targets.iter().chain(from_source.then_some(&source)) {
        ensure!(
            steered.selection.of(l.code()).is_some(),
            "{} has no neuron set for {l} (it holds sets for {}): force one of those languages, or select neurons \
             for {l}",
            steered.file.display(),
            steered.selection.languages.join(", ")
        );
    }
    if from_source {
        steered.source_lang = Some(source.code().to_owned());
        control.source_lang = Some(source.code().to_owned());
    }
    let op = steered.operation();
    let (backend, model) = args.on.load(home, &files)?;
    let id = LanguageId::new();
    let parts = args.out.with_extension("parts");
    std::fs::create_dir_all(&parts).with_context(|| format!("creating {}", parts.display()))?;
    let settings = serde_json::json!({
        "model": args.model, "backend": backend.name(), "source": source, "prompts": args.prompts,
        "max_new_tokens": args.max_new_tokens, "steer": steered.json(), "control_seed": args.control_seed,
    });
    let mut runner = Runner {
        model,
        tok: &tok,
        id: &id,
        ids,
        opts: Greedy {
            max_new_tokens: args.max_new_tokens,
            eos: cfg.eos_token_ids.clone(),
            pad: cfg.pad_token_id.unwrap_or(0),
        },
        batch: args.batch,
        parts,
        key: settings.clone(),
    };
    let t0 = std::time::Instant::now();
    let plain = runner.run("plain", None)?;
    let mut cells: Vec<ForcingCell> = Vec::new();
    let mut runs = serde_json::Map::new();
    for &t in &targets {
        let from = Some(source.code());
        let iv = steered.steer_to(from, t.code())?;
        let iv_control = control.steer_to(from, t.code())?;
        let s = runner.run(&format!("{}-steered", t.code()), Some(&iv))?;
        let c = runner.run(&format!("{}-control", t.code()), Some(&iv_control))?;
        let mut cell = forcing::cell(t, &op, &plain, &s, Some(&c))?;
        // The target's own edited neurons (arithmetic also switches the source's off; its control has as many).
        if steered.steer != lsn_core::Steer::DiffMean {
            let set = steered.neuron_lang.as_deref().unwrap_or(t.code());
            cell.neurons = steered.selection.of(set).map_or(0, <[_]>::len);
        }
        cells.push(cell);
        runs.insert(t.code().to_owned(), serde_json::json!({"steered": s, "control": c}));
    }
    let table = forcing::markdown(&cells);
    println!(
        "model {} · backend {} · {} prompts in {} · {} · {:.0} s\n\n{table}",
        args.model,
        backend.name(),
        args.prompts,
        source.code(),
        steered.describe(),
        t0.elapsed().as_secs_f64()
    );
    let doc = serde_json::json!({
        "settings": settings, "judge": "lingua 1.8 (high-accuracy mode, every covered language)",
        "prompts": texts, "cells": cells, "plain": plain, "runs": runs,
    });
    fsutil::write_atomic(&args.out.with_extension("md"), table.as_bytes())?;
    fsutil::write_atomic(&args.out, serde_json::to_string_pretty(&doc)?.as_bytes())?;
    Ok(())
}
