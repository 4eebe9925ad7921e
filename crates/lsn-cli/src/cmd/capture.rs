//! `lsn capture`: per-language FFN activation statistics of a model over FLORES-200 + TICO-19 (or your own text).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use lsn_capture::{CaptureSpec, Outcome, Provenance, Shard};
use lsn_core::{Lang, ModelFiles};
use lsn_data::{PackOptions, Source, Tokenizer, default_sources, pack_language, resolve_data_dir};
use lsn_run::{OpenOptions, StageRecord};

use crate::{assets, backends};

/// Capture the statistics that neuron selection needs, one language at a time.
///
/// Each language's documents (FLORES-200 devtest, plus TICO-19 test where the data dir has it, plus any --text
/// files) are shuffled with --seed, tokenized with the model's special tokens, concatenated and cut into rows of
/// --row-len tokens. The model runs over them in batches of --batch-rows rows, twice: pass 1 counts positive
/// activations and accumulates sums, sums of squares and per-batch quantiles (p5…p95); pass 2 counts activations
/// above the language's mean quantiles (ActProb-90p uses p90). Nothing but these per-neuron statistics is kept.
///
/// Output: RUN/stats/<lang>.safetensors (+ .json metadata). A checkpoint is written every --checkpoint-every
/// batches; rerunning the same command after an interruption resumes from it and gives identical bytes. A language
/// that is already complete is skipped.
///
/// Sharding over machines: run `--shard i/N` for every i (pass 1), `lsn merge`, the same shard commands again
/// (pass 2), and `lsn merge` again; the result is byte-identical to an unsharded capture.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A fetched model's name (gemma-3-270m, smollm2-135m) or a HF checkpoint directory.
    #[arg(long, default_value = "gemma-3-270m")]
    pub model: String,
    /// Comma-separated ISO 639-1 codes, e.g. en,fr,es,vi,id,ja,zh.
    #[arg(long, required = true)]
    pub lang: String,
    /// Run directory; statistics go to RUN/stats/.
    #[arg(long, default_value = "runs/default")]
    pub run: PathBuf,
    /// Data directory holding corpus/ [default: $LSN_DATA_DIR].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Corpora from the data dir: flores, tico (TICO-19 is used only where it has the language), or none.
    #[arg(long, default_value = "flores,tico")]
    pub corpus: String,
    /// Extra plain-text file for a language, one document per line: LANG=PATH (repeatable).
    #[arg(long, value_name = "LANG=PATH")]
    pub text: Vec<String>,
    /// Tokens per row (the paper: 512); at most the model's max_position_embeddings.
    #[arg(long, default_value_t = 512, value_parser = crate::cmd::at_least_one)]
    pub row_len: usize,
    /// Token budget per language (whole rows only); default: all the text.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tokens: Option<u64>,
    /// Rows at the end of each language's text that the capture never uses (with or without --max-tokens): they stay
    /// unseen for `lsn ppl --heldout`, PPXC and `lsn train --task lm --extra-rows`. The whole text is then tokenized.
    #[arg(long, default_value_t = 0)]
    pub leave_rows: usize,
    /// Seed of the document shuffle.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rows per forward pass (at least 1).
    #[arg(long, default_value_t = 4, value_parser = crate::cmd::at_least_one)]
    pub batch_rows: usize,
    /// This machine's share of the batches, i/N (0-based).
    #[arg(long)]
    pub shard: Option<String>,
    /// Batches between resumable checkpoints (at least 1).
    #[arg(long, default_value_t = 8, value_parser = crate::cmd::at_least_one)]
    pub checkpoint_every: usize,
    /// Where the statistics are read: act = act_fn(gate_proj(x)), the neuron's activation (what the methods mean);
    /// gate_pre = gate_proj(x) before the activation, as the paper's code hooked it (its fills P5/P10 are then below
    /// SiLU's minimum and its ActProb-90p sets differ). Counts of > 0, and so LAPE, are the same at both points. A run
    /// holds one tap point: selection and interventions refuse to mix them.
    #[arg(long, default_value = "act", value_parser = ["act", "gate_pre"])]
    pub tap_point: String,
    #[command(flatten)]
    pub on: backends::BackendArgs,
    #[command(flatten)]
    pub cache: assets::HomeArg,
}

/// The sources of `lang`: the chosen corpora plus its --text files.
fn sources_for(lang: Lang, corpora: &[&str], texts: &[(Lang, PathBuf)], data_dir: Option<&Path>) -> Vec<Source> {
    let mut s = Vec::new();
    if let Some(dir) = data_dir {
        for src in default_sources(dir, lang) {
            let name = if src == Source::Flores { "flores" } else { "tico" };
            if corpora.contains(&name) {
                s.push(src);
            }
        }
    }
    s.extend(texts.iter().filter(|(l, _)| *l == lang).map(|(_, p)| Source::Text(p.clone())));
    s
}

/// Draws one progress bar per pass and counts the tokens this call processed.
struct Bar {
    lang: String,
    bar: Option<indicatif::ProgressBar>,
    tokens: u64,
}

impl lsn_capture::Progress for Bar {
    fn start(&mut self, pass: u8, total: u64, done: u64) {
        let bar = indicatif::ProgressBar::new(total).with_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>8} {wide_bar} {pos}/{len} batches {elapsed} eta {eta} {per_sec}",
            )
            .expect("static template"),
        );
        bar.set_prefix(format!("{} p{pass}", self.lang));
        bar.set_position(done);
        self.bar = Some(bar);
    }
    fn batch(&mut self, tokens: u64) {
        self.tokens += tokens;
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }
    fn end(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// Bytes one language's statistics take on disk (the file, its checkpoint and an atomic write's temporary).
fn stats_bytes(layers: usize, intermediate: usize) -> u64 {
    let q = lsn_core::QUANTILES.len() as u64;
    // count_pos u64, sum and sum_sq i128, quantile_sum i128 × Q, count_above u64 × Q, derived f32: 3 + 2·Q planes.
    let per_neuron = 8 + 16 + 16 + 16 * q + 8 * q + 4 * (3 + 2 * q);
    3 * (layers * intermediate) as u64 * per_neuron + (1 << 20)
}

/// Fewer pass-1 batches than this make the mean batch quantiles (pass 2's thresholds) a poor estimate; with one
/// batch, pass 2 counts activations above that same batch's own quantiles, so ActProb-90p scores ≈ 10% everywhere.
pub const FEW_BATCHES: u64 = 8;

pub fn run(args: Args) -> Result<()> {
    let home = args.cache.home();
    let langs = crate::cmd::parse_langs(&args.lang, "--lang")?;
    let shard = args.shard.as_deref().map(Shard::parse).transpose()?.unwrap_or(Shard::WHOLE);
    let corpora: Vec<&str> = args.corpus.split(',').map(str::trim).filter(|s| !s.is_empty() && *s != "none").collect();
    if let Some(bad) = corpora.iter().find(|c| !["flores", "tico"].contains(c)) {
        anyhow::bail!("unknown corpus {bad:?} in --corpus: use flores, tico or none");
    }
    let mut texts: Vec<(Lang, PathBuf)> = Vec::new();
    for t in &args.text {
        let (l, p) = t.split_once('=').with_context(|| format!("--text {t:?} is not LANG=PATH"))?;
        let entry = (Lang::parse(l.trim())?, PathBuf::from(p));
        let lang = entry.0;
        anyhow::ensure!(
            langs.contains(&lang),
            "--text {t} gives text for {lang}, which is not in --lang {}: add {lang} to --lang, or drop this --text",
            args.lang
        );
        texts.push(entry);
    }
    let data_dir = if corpora.is_empty() { None } else { Some(resolve_data_dir(args.data_dir.as_deref())?) };
    // One file read twice (under two spellings, or a corpus file also given as --text) would count its documents
    // twice.
    for &lang in &langs {
        let mut seen: Vec<(PathBuf, String)> = Vec::new();
        for src in sources_for(lang, &corpora, &texts, data_dir.as_deref()) {
            let (path, what) = match &src {
                Source::Text(p) => (p.clone(), format!("--text {lang}={}", p.display())),
                s => {
                    let corpus = if *s == Source::Flores { lsn_data::Corpus::Flores } else { lsn_data::Corpus::Tico };
                    let d = data_dir.as_deref().unwrap_or(Path::new("."));
                    (corpus.path(d, lang), format!("the {} corpus", s.name()))
                }
            };
            let key = std::fs::canonicalize(&path).unwrap_or(path);
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                anyhow::bail!(
                    "{what} and {first} are the same file ({}): its documents would count twice",
                    key.display()
                );
            }
            seen.push((key, what));
        }
    }

    // Checks that need no compute come first: the model directory and its config, then the run directory (lock,
    // writability, free space), so a bad path or a busy run fails in the first second.
    let dir = assets::resolve_model(&home, &args.model)?;
    let files = ModelFiles::new(&dir);
    // Headers only: the config is read and every tensor checked against it without loading the weights.
    let ckpt = lsn_weights::open_checkpoint(&dir)
        .with_context(|| format!("{} (the model of --model {})", dir.display(), args.model))?;
    let cfg = &ckpt.config;
    anyhow::ensure!(
        args.row_len <= cfg.max_position_embeddings,
        "--row-len {} is longer than the model's max_position_embeddings ({} in {}): rows beyond the positions the \
         model was trained on are refused; choose --row-len of at most {}",
        args.row_len,
        cfg.max_position_embeddings,
        files.config().display(),
        cfg.max_position_embeddings
    );
    backends::by_name(&args.on.backend, &home)?;
    let need = stats_bytes(cfg.num_layers, cfg.intermediate_size) * langs.len() as u64;
    let opts = OpenOptions { flag: "--run", create: true, subdirs: &["stats"], need_bytes: need };
    let mut run = crate::cmd::open_run(&args.run, &opts)?;
    let stats_dir = run.path("stats");
    for lang in &langs {
        let out = if shard.count == 1 {
            lsn_capture::final_path(&stats_dir, lang.code())
        } else {
            lsn_capture::shard_path(&stats_dir, lang.code(), shard)
        };
        for p in [out.clone(), out.with_extension("json"), lsn_capture::partial_path(&out)] {
            anyhow::ensure!(!p.is_dir(), "{} is a directory, where capture writes a file: remove it", p.display());
        }
    }
    let tokenizer = Tokenizer::from_file(&files.tokenizer())?;
    tokenizer.check_model_vocab(cfg.vocab_size)?;

    let opts = PackOptions {
        row_len: args.row_len,
        max_tokens: args.max_tokens,
        seed: args.seed,
        leave_rows: args.leave_rows,
    };
    // Pack every language before the (slow) model load, so bad input fails fast.
    let mut packed = Vec::new();
    for &lang in &langs {
        let sources = sources_for(lang, &corpora, &texts, data_dir.as_deref());
        anyhow::ensure!(
            !sources.is_empty(),
            "no text for {lang}: the chosen corpora do not have it; add --text {lang}=FILE or change --corpus"
        );
        let p = pack_language(&tokenizer, data_dir.as_deref(), lang, &sources, &opts)?;
        if let Some(budget) = args.max_tokens
            && budget >= (p.rows as u64 + 1) * p.row_len as u64
        {
            eprintln!(
                "note: {lang}: --max-tokens {budget} asks for more than its text holds; using all of it{}: {} rows × {} \
                 = {} tokens",
                if args.leave_rows > 0 { format!(" but the last {} rows", args.leave_rows) } else { String::new() },
                p.rows,
                p.row_len,
                p.rows * p.row_len
            );
        }
        let batches = (p.rows as u64).div_ceil(args.batch_rows as u64);
        anyhow::ensure!(
            u64::from(shard.count) <= batches,
            "--shard {}/{} splits {lang}'s {batches} batches into more shards than batches: use at most {batches} \
             shards (or more text, or a smaller --batch-rows)",
            shard.index,
            shard.count
        );
        if batches < FEW_BATCHES {
            eprintln!(
                "warning: {lang}: {} rows make only {batches} batch(es) of {} rows; pass 2's thresholds are the mean of \
                 {batches} batch quantile(s){}; `lsn select` records this in the neuron file. For usable ActProb-90p \
                 scores give at least {FEW_BATCHES} batches: more text (--max-tokens), or a smaller --batch-rows",
                p.rows,
                args.batch_rows,
                if batches == 1 { ", so every neuron's ActProb score is ≈ 10% by construction" } else { "" }
            );
        }
        packed.push(p);
    }
    let identity = assets::identity(&home, &ckpt, &tokenizer)?;
    run.check_model(&args.model, &identity)?;
    let (backend, mut model) = args.on.load(&home, &files)?;
    // Only a model that passed every check and loaded is bound to the run.
    run.bind_model(&args.model, &identity)?;
    // Capture records (not merge records, which name shards) of this run with another row length.
    let other_row_len = run.manifest().stages.iter().find(|(k, rec)| {
        k.starts_with("capture/") && rec.config["data"]["row_len"].as_u64().is_some_and(|r| r != args.row_len as u64)
    });
    if let Some((key, rec)) = other_row_len {
        eprintln!(
            "warning: {key} in this run used --row-len {}, this capture --row-len {}: `lsn select` refuses to compare \
             different row lengths",
            rec.config["data"]["row_len"], args.row_len
        );
    }
    for p in &packed {
        let lang = p.lang.code().to_owned();
        let mut data = serde_json::json!({
            "sources": p.sources, "seed": args.seed, "row_len": p.row_len, "max_tokens": args.max_tokens,
            "documents": p.n_documents, "stream_tokens": p.stream_tokens, "ids_sha256": p.digest,
        });
        // Recorded only when rows were left, so the records of captures that leave none stay as they were.
        if args.leave_rows > 0 {
            data["leave_rows"] = args.leave_rows.into();
        }
        let provenance = Provenance {
            model: args.model.clone(),
            config_sha256: identity.config_sha256.clone(),
            tokenizer_sha256: identity.tokenizer_sha256.clone(),
            weights_sha256: identity.weights_sha256.clone(),
            backend: backend.name().to_owned(),
            weights_dtype: args.on.dtype,
            stats_on: args.tap_point.clone(),
            data: data.clone(),
        };
        let spec = CaptureSpec {
            lang: lang.clone(),
            ids: &p.ids,
            row_len: p.row_len,
            batch_rows: args.batch_rows,
            shard,
            checkpoint_every: args.checkpoint_every,
            provenance,
        };
        let mut bar = Bar { lang: lang.clone(), bar: None, tokens: 0 };
        let t0 = Instant::now();
        let outcome = lsn_capture::capture(model.as_mut(), &spec, &stats_dir, &mut bar)
            .with_context(|| format!("capturing {lang}"))?;
        let secs = t0.elapsed().as_secs_f64();
        let rate = if bar.tokens > 0 { format!(", {:.0} tokens/s", bar.tokens as f64 / secs) } else { String::new() };
        let (what, state) = match &outcome {
            Outcome::AlreadyDone(_) if shard.count > 1 => (
                "this shard's pass is already done: run `lsn merge` (after pass 1, then this command again for pass 2)",
                "shard done",
            ),
            Outcome::AlreadyDone(_) => ("already complete", "complete"),
            Outcome::Complete(_) => ("complete", "complete"),
            Outcome::ShardPass1(_) => {
                ("pass 1 of this shard done; run `lsn merge`, then this command again for pass 2", "shard pass 1")
            }
            Outcome::ShardPass2(_) => ("pass 2 of this shard done; run `lsn merge` to finish", "shard pass 2"),
        };
        let rel = outcome.path().strip_prefix(run.root()).unwrap_or(outcome.path()).display().to_string();
        let config = serde_json::json!({
            "backend": backend.name(), "dtype": args.on.dtype, "batch_rows": args.batch_rows, "stats_on": args.tap_point, "data": data,
            "shard": format!("{}/{}", shard.index, shard.count),
        });
        let key = if shard.count == 1 {
            format!("capture/{lang}")
        } else {
            format!("capture/{lang}/shard-{}-of-{}", shard.index, shard.count)
        };
        run.record(&key, StageRecord::new(config, vec![rel], state))?;
        println!(
            "{lang}: {} rows × {} tokens ({} documents) → {}: {what} ({} token-passes in {secs:.1} s{rate})",
            p.rows,
            p.row_len,
            p.n_documents,
            outcome.path().display(),
            bar.tokens,
        );
    }
    Ok(())
}
