//! `lsn ppl`: per-language perplexity of a model on FLORES-200 (or TICO-19) sentences.

use std::path::PathBuf;

use anyhow::Result;
use lsn_core::ModelFiles;
use lsn_data::{Corpus, Tokenizer, read_sentences, resolve_data_dir};

use crate::{assets, backends};

/// Perplexity per language: each sentence is tokenized on its own (with the tokenizer's special tokens, e.g. BOS)
/// and PPL = exp(mean next-token NLL over all predicted tokens of the language's sentences).
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
    /// Sentences per forward pass.
    #[arg(long, default_value_t = 8, value_parser = crate::cmd::at_least_one)]
    pub batch: usize,
    #[command(flatten)]
    pub on: backends::BackendArgs,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub cache: assets::HomeArg,
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
    let data_dir = resolve_data_dir(args.data_dir.as_deref())?;
    // Read every language's text before the (slow) model load, so bad input fails fast.
    let mut texts = Vec::new();
    for &lang in &langs {
        let mut s = read_sentences(&data_dir, corpus, lang)?;
        if s.len() < args.sentences {
            eprintln!(
                "note: {lang}: --sentences {} asks for more than the {} corpus holds; using all {} sentences",
                args.sentences,
                args.corpus,
                s.len()
            );
        }
        s.truncate(args.sentences);
        texts.push(s);
    }
    let dir = assets::resolve_model(home, &args.model)?;
    let files = ModelFiles::new(&dir);
    let tokenizer = Tokenizer::from_file(&files.tokenizer())?;
    let (backend, mut model) = args.on.load(home, &files)?;
    tokenizer.check_model_vocab(model.config().vocab_size)?;
    let pad = model.config().pad_token_id.unwrap_or(0);

    let total: usize = texts.iter().map(Vec::len).sum();
    let bar = indicatif::ProgressBar::new(total as u64).with_style(
        indicatif::ProgressStyle::with_template("{prefix:>4} {wide_bar} {pos}/{len} sentences {elapsed}")
            .expect("static template"),
    );
    let mut rows = Vec::new();
    for (lang, sents) in langs.iter().zip(&texts) {
        bar.set_prefix(lang.code());
        let seqs = sents.iter().map(|s| tokenizer.encode(s)).collect::<Result<Vec<_>, _>>()?;
        let longest = seqs.iter().map(Vec::len).max().unwrap_or(0);
        anyhow::ensure!(
            longest <= model.config().max_position_embeddings,
            "a {lang} sentence has {longest} tokens, more than the model's max_position_embeddings ({}): sentences \
             beyond the model's positions are refused",
            model.config().max_position_embeddings
        );
        let nll = lsn_eval::perplexity(model.as_mut(), &seqs, args.batch, pad, None, |n| bar.inc(n as u64))?;
        anyhow::ensure!(
            nll.tokens > 0 && nll.mean().is_finite(),
            "{lang}: the mean NLL over {} predicted tokens is {} — {}",
            nll.tokens,
            nll.mean(),
            if nll.tokens == 0 {
                "the sentences give no token to predict (each needs at least 2 tokens)"
            } else {
                "the model produced non-finite logits; check the weights"
            }
        );
        rows.push(serde_json::json!({
            "lang": lang.code(), "sentences": sents.len(), "tokens": nll.tokens,
            "mean_nll": nll.mean(), "ppl": nll.perplexity(),
        }));
    }
    bar.finish_and_clear();
    println!(
        "model {} · backend {} · {} · first {} sentences",
        args.model,
        backend.name(),
        args.corpus,
        args.sentences
    );
    println!("| lang | sentences | predicted tokens | mean NLL | PPL |\n|---|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.4} | {:.2} |",
            r["lang"].as_str().unwrap_or_default(),
            r["sentences"],
            r["tokens"],
            r["mean_nll"].as_f64().unwrap_or(f64::NAN),
            r["ppl"].as_f64().unwrap_or(f64::NAN)
        );
    }
    if let Some(path) = args.json {
        let doc =
            serde_json::json!({"model": args.model, "backend": backend.name(), "corpus": args.corpus, "results": rows});
        crate::fsutil::write_atomic(&path, serde_json::to_string_pretty(&doc)?.as_bytes())?;
    }
    Ok(())
}
