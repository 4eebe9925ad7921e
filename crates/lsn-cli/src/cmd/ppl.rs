//! `lsn ppl`: per-language perplexity of a model on FLORES-200 (or TICO-19) sentences, or on a capture's held-out
//! rows, optionally with neurons overwritten.

use std::path::PathBuf;

use anyhow::{Context, Result};
use lsn_core::ModelFiles;
use lsn_data::{Corpus, Tokenizer, read_sentences, resolve_data_dir};

use crate::{assets, backends};

/// Perplexity per language: each sentence is tokenized on its own (with the tokenizer's special tokens, e.g. BOS)
/// and PPL = exp(mean next-token NLL over all predicted tokens of the language's sentences). With --heldout RUN, the
/// language's held-out rows of that capture run are scored instead (text the capture did not see: the rows after
/// the ones it used, one skipped). With --neurons, the chosen neurons are overwritten at every position.
/// Token counts differ between scripts, so compare languages with care.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A fetched model's name (gemma-3-270m, smollm2-135m) or a HF checkpoint directory.
    #[arg(long, default_value = "gemma-3-270m")]
    pub model: String,
    /// Comma-separated ISO 639-1 codes.
    #[arg(long, default_value = "en,hi,zh,th,sw")]
    pub lang: String,
    /// Data directory holding corpus/ [default: $LSN_DATA_DIR].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// flores (FLORES-200 devtest) or tico (TICO-19 test).
    #[arg(long, default_value = "flores")]
    pub corpus: String,
    /// Sentences per language (the first N of the corpus file; all of them if it has fewer).
    #[arg(long, default_value_t = 100, value_parser = crate::cmd::at_least_one)]
    pub sentences: usize,
    /// Sentences (or held-out rows) per forward pass.
    #[arg(long, default_value_t = 8, value_parser = crate::cmd::at_least_one)]
    pub batch: usize,
    /// Score each language's held-out rows of this capture run (RUN/stats/LANG.safetensors) instead of sentences.
    #[arg(long, conflicts_with_all = ["corpus", "sentences"])]
    pub heldout: Option<PathBuf>,
    /// Held-out rows per language (with --heldout).
    #[arg(long, default_value_t = 8, requires = "heldout", value_parser = crate::cmd::at_least_one)]
    pub rows: usize,
    #[command(flatten)]
    pub intervene: crate::cmd::intervene::InterveneArgs,
    /// A LoRA adapter directory (`lsn train`, e.g. `--task lm` on a language's text, or a PEFT LoRA adapter of this
    /// model) applied unmerged in every pass (tch, candle; for ort, `lsn merge-adapter` first).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    #[command(flatten)]
    pub on: backends::BackendArgs,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub cache: assets::HomeArg,
}

/// What is scored for one language.
struct Texts {
    lang: lsn_core::Lang,
    /// Sentences to tokenize, or rows already tokenized.
    sentences: Vec<String>,
    rows: Vec<Vec<u32>>,
    what: String,
    /// The index of the first held-out row in the language's packed text (held-out rows only).
    first: Option<usize>,
}

pub fn run(args: Args) -> Result<()> {
    let home = &args.cache.home();
    if let Some(json) = &args.json {
        lsn_run::prepare_file(json, "--json")?;
    }
    let corpus = match args.corpus.as_str() {
        "flores" => Corpus::Flores,
        "tico" => Corpus::Tico,
        other => anyhow::bail!("unknown corpus {other:?}: use flores or tico"),
    };
    let langs = crate::cmd::parse_langs(&args.lang, "--lang")?;
    let data_dir = match &args.heldout {
        Some(_) => args.data_dir.clone().or_else(|| resolve_data_dir(None).ok()),
        None => Some(resolve_data_dir(args.data_dir.as_deref())?),
    };
    // Read every language's text before the (slow) model load, so bad input fails fast.
    let mut texts = Vec::new();
    if args.heldout.is_none() {
        let data_dir = data_dir.as_deref().expect("resolved above");
        for &lang in &langs {
            let mut s = read_sentences(data_dir, corpus, lang)?;
            if s.len() < args.sentences {
                eprintln!(
                    "note: {lang}: --sentences {} asks for more than the {} corpus holds; using all {} sentences",
                    args.sentences,
                    args.corpus,
                    s.len()
                );
            }
            s.truncate(args.sentences);
            let what = format!("first {} sentences of {}", s.len(), args.corpus);
            texts.push(Texts { lang, sentences: s, rows: Vec::new(), what, first: None });
        }
    }
    let dir = assets::resolve_model(home, &args.model)?;
    let files = ModelFiles::new(&dir);
    let tokenizer = Tokenizer::from_file(&files.tokenizer())?;
    if let Some(run) = &args.heldout {
        let codes: Vec<String> = langs.iter().map(|l| l.code().to_owned()).collect();
        let held = super::heldout::heldout_of_run(run, &codes, data_dir.as_deref(), &tokenizer, args.rows)?;
        // An adapter trained on a language's text (`lsn train --task lm`) must not have seen these rows.
        let trained = match &args.adapter {
            Some(a) => {
                let p = a.join(lsn_lora::peft::CONFIG_FILE);
                let c: serde_json::Value =
                    std::fs::read(&p).ok().and_then(|b| serde_json::from_slice(&b).ok()).with_context(|| {
                        format!("{} is not a LoRA adapter directory (no readable {})", a.display(), p.display())
                    })?;
                let data = &c["lsn"]["run"]["data"];
                Some((data["text"].clone(), data["sha256"].as_str().unwrap_or_default().to_string()))
            }
            None => None,
        };
        for (&lang, h) in langs.iter().zip(held) {
            if let Some((text, from)) = &trained {
                let stats = run.join("stats").join(format!("{}.safetensors", lang.code()));
                super::heldout::check_unseen(lang.code(), &crate::fsutil::sha256_file(&stats)?, &h, text, from)?;
            }
            let what = format!("held-out rows {}..{} of {}", h.first, h.first + h.rows.len(), run.display());
            texts.push(Texts { lang, sentences: Vec::new(), rows: h.rows, what, first: Some(h.first) });
        }
    }
    if args.adapter.is_some() {
        args.on.require(home, backends::Need::Adapters)?;
    }
    let (backend, mut model) = args.on.load(home, &files)?;
    tokenizer.check_model_vocab(model.config().vocab_size)?;
    if let Some(p) = &args.adapter {
        let identity = assets::identity(home, &lsn_weights::open_checkpoint(&dir)?, &tokenizer)?;
        let (a, meta) = lsn_lora::read_adapter(p, model.config())?;
        crate::cmd::check_adapter(p, &meta, &args.model, &identity)?;
        model.set_adapter(Some(&a)).with_context(|| format!("applying the adapter {}", p.display()))?;
    }
    let mut intervener = args.intervene.load(home, &dir, &tokenizer, model.config())?;
    let pad = model.config().pad_token_id.unwrap_or(0);

    let total: usize = texts.iter().map(|t| t.sentences.len() + t.rows.len()).sum();
    let bar = indicatif::ProgressBar::new(total as u64).with_style(
        indicatif::ProgressStyle::with_template("{prefix:>4} {wide_bar} {pos}/{len} sequences {elapsed}")
            .expect("static template"),
    );
    let mut rows = Vec::new();
    for t in &texts {
        let lang = t.lang;
        bar.set_prefix(lang.code());
        let seqs = if t.rows.is_empty() {
            t.sentences.iter().map(|s| tokenizer.encode(s)).collect::<Result<Vec<_>, _>>()?
        } else {
            t.rows.clone()
        };
        let longest = seqs.iter().map(Vec::len).max().unwrap_or(0);
        anyhow::ensure!(
            longest <= model.config().max_position_embeddings,
            "a {lang} sequence has {longest} tokens, more than the model's max_position_embeddings ({}): sequences \
             beyond the model's positions are refused",
            model.config().max_position_embeddings
        );
        let iv = intervener.as_mut().map(|iv| iv.for_lang(lang.code())).transpose()?;
        let per_seq =
            lsn_eval::sequence_nll(model.as_mut(), &seqs, args.batch, pad, iv.as_ref(), |n| bar.inc(n as u64))?;
        let nll: lsn_eval::NllSum = per_seq.iter().copied().sum();
        anyhow::ensure!(
            nll.tokens > 0 && nll.mean().is_finite(),
            "{lang}: the mean NLL over {} predicted tokens is {} — {}",
            nll.tokens,
            nll.mean(),
            if nll.tokens == 0 {
                "the sequences give no token to predict (each needs at least 2 tokens)"
            } else {
                "the model produced non-finite logits; check the weights"
            }
        );
        rows.push(serde_json::json!({
            "lang": lang.code(), "sequences": seqs.len(), "text": t.what, "tokens": nll.tokens,
            "mean_nll": nll.mean(), "ppl": nll.perplexity(),
            "sequence_mean_nll": per_seq.iter().map(|s| s.mean()).collect::<Vec<_>>(), "first_row": t.first,
            "neurons_overwritten": iv.as_ref().map(|i| i.set.len()),
        }));
    }
    bar.finish_and_clear();
    let intervention = intervener.as_ref().map(|iv| iv.describe());
    println!(
        "model {} · backend {} · {}",
        args.model,
        backend.name(),
        intervention.as_deref().unwrap_or("no intervention")
    );
    println!("| lang | text | predicted tokens | mean NLL | PPL |\n|---|---|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.4} | {:.2} |",
            r["lang"].as_str().unwrap_or_default(),
            r["text"].as_str().unwrap_or_default(),
            r["tokens"],
            r["mean_nll"].as_f64().unwrap_or(f64::NAN),
            r["ppl"].as_f64().unwrap_or(f64::NAN)
        );
    }
    if let Some(path) = args.json {
        let doc = serde_json::json!({"model": args.model, "backend": backend.name(), "results": rows,
            "intervention": intervener.as_ref().map(|iv| iv.json()),
            "adapter": args.adapter.as_ref().map(|p| p.display().to_string())});
        crate::fsutil::write_atomic(&path, serde_json::to_string_pretty(&doc)?.as_bytes())?;
    }
    Ok(())
}
