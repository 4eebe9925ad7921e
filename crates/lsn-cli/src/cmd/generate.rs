//! `lsn generate`: greedy, KV-cached continuations of prompts (free text or XQuAD examples with the paper's prompt),
//! optionally with neurons overwritten at every step.

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use lsn_core::{Greedy, Lang, ModelFiles};
use lsn_data::{Tokenizer, read_xquad, resolve_data_dir, xquad_prompt};

use crate::cmd::intervene::InterveneArgs;
use crate::{assets, backends, fsutil};

/// Greedy generation with a key/value cache: each prompt is fed once, then one token per step until an EOS token or
/// --max-new-tokens. Prompts are --prompt texts (in --lang) or XQuAD examples (--xquad vi:0 is the first example of
/// xquad.vi.json, in the paper's prompt). With --neurons, each prompt's language's neurons are overwritten at every
/// position of every step.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A fetched model's name (gemma-3-270m, smollm2-135m) or a HF checkpoint directory.
    #[arg(long, default_value = "gemma-3-270m")]
    pub model: String,
    /// A prompt (repeatable), in the language --lang.
    #[arg(long)]
    pub prompt: Vec<String>,
    /// The language of the --prompt texts (whose neurons --neurons applies).
    #[arg(long, default_value = "en")]
    pub lang: String,
    /// An XQuAD example as LANG:INDEX (index in file order; repeatable), prompted as the paper did.
    #[arg(long, value_name = "LANG:INDEX")]
    pub xquad: Vec<String>,
    /// New tokens per prompt, at most (the paper: 100).
    #[arg(long, default_value_t = 100, value_parser = crate::cmd::at_least_one)]
    pub max_new_tokens: usize,
    /// Prompts per batch (one language per batch).
    #[arg(long, default_value_t = 8, value_parser = crate::cmd::at_least_one)]
    pub batch: usize,
    /// Data directory holding xquad/ [default: $LSN_DATA_DIR].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub intervene: InterveneArgs,
    #[command(flatten)]
    pub on: backends::BackendArgs,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub cache: assets::HomeArg,
}

struct Prompt {
    lang: Lang,
    name: String,
    text: String,
}

fn prompts(args: &Args) -> Result<Vec<Prompt>> {
    let mut out = Vec::new();
    let lang = Lang::parse(&args.lang)?;
    for (i, p) in args.prompt.iter().enumerate() {
        ensure!(!p.trim().is_empty(), "--prompt number {} is empty: give some text to continue", i + 1);
        out.push(Prompt { lang, name: format!("prompt {}", i + 1), text: p.clone() });
    }
    if !args.xquad.is_empty() {
        let data_dir = resolve_data_dir(args.data_dir.as_deref())?;
        for spec in &args.xquad {
            let (l, i) =
                spec.split_once(':').with_context(|| format!("--xquad {spec:?}: write LANG:INDEX, e.g. vi:0"))?;
            let lang = Lang::parse(l)?;
            let i: usize = i.parse().with_context(|| format!("--xquad {spec:?}: the index is not a whole number"))?;
            let examples = read_xquad(&data_dir, lang)?;
            let ex = examples.get(i).with_context(|| {
                format!(
                    "--xquad {spec}: xquad.{l}.json has {} examples (indices 0..{})",
                    examples.len(),
                    examples.len()
                )
            })?;
            out.push(Prompt {
                lang,
                name: format!("xquad {l}:{i} ({})", ex.id),
                text: xquad_prompt(&ex.context, &ex.question),
            });
        }
    }
    if out.is_empty() {
        bail!("nothing to generate from: give --prompt TEXT or --xquad LANG:INDEX");
    }
    Ok(out)
}

pub fn run(args: Args) -> Result<()> {
    let home = &args.cache.home();
    if let Some(json) = &args.json {
        lsn_run::prepare_file(json, "--json")?;
    }
    let prompts = prompts(&args)?;
    let dir = assets::resolve_model(home, &args.model)?;
    let files = ModelFiles::new(&dir);
    let tokenizer = Tokenizer::from_file(&files.tokenizer())?;
    let ids: Vec<Vec<u32>> = prompts.iter().map(|p| tokenizer.encode(&p.text)).collect::<Result<_, _>>()?;
    let (backend, mut model) = args.on.load(home, &files)?;
    tokenizer.check_model_vocab(model.config().vocab_size)?;
    let cfg = model.config().clone();
    if let Some(long) = ids.iter().map(Vec::len).max()
        && long + args.max_new_tokens > cfg.max_position_embeddings
    {
        bail!(
            "a prompt of {long} tokens plus {} new ones exceeds the model's max_position_embeddings ({})",
            args.max_new_tokens,
            cfg.max_position_embeddings
        );
    }
    let mut intervener = args.intervene.load(home, &dir, &tokenizer, &cfg)?;
    let opts = Greedy {
        max_new_tokens: args.max_new_tokens,
        eos: cfg.eos_token_ids.clone(),
        pad: cfg.pad_token_id.unwrap_or(0),
    };
    let mut results: Vec<Option<serde_json::Value>> = vec![None; prompts.len()];
    let mut langs: Vec<Lang> = prompts.iter().map(|p| p.lang).collect();
    langs.sort();
    langs.dedup();
    let t0 = std::time::Instant::now();
    let mut new_tokens = 0usize;
    for lang in langs {
        let iv = intervener.as_mut().map(|iv| iv.for_lang(lang.code())).transpose()?;
        let members: Vec<usize> = (0..prompts.len()).filter(|&i| prompts[i].lang == lang).collect();
        for chunk in members.chunks(args.batch) {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
            let mut dec = model.decoder(iv.as_ref())?;
            let out = lsn_core::greedy(dec.as_mut(), &batch, &opts)?;
            for (&i, g) in chunk.iter().zip(out) {
                new_tokens += g.ids.len();
                let text = tokenizer.decode(&g.ids)?;
                results[i] = Some(serde_json::json!({
                    "prompt": prompts[i].name, "lang": lang.code(), "prompt_tokens": ids[i].len(),
                    "generated": g.ids, "text": text, "stopped_at_eos": g.eos,
                }));
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let results: Vec<serde_json::Value> = results.into_iter().flatten().collect();
    let intervention = intervener.as_ref().map(|iv| iv.describe());
    println!(
        "model {} · backend {} · {} · {new_tokens} new tokens in {secs:.1} s",
        args.model,
        backend.name(),
        intervention.as_deref().unwrap_or("no intervention")
    );
    for r in &results {
        println!(
            "--- {} ({} prompt tokens, {}):\n{}",
            r["prompt"].as_str().unwrap_or_default(),
            r["prompt_tokens"],
            if r["stopped_at_eos"] == true { "stopped at EOS" } else { "hit --max-new-tokens" },
            r["text"].as_str().unwrap_or_default()
        );
    }
    if let Some(path) = args.json {
        let doc = serde_json::json!({"model": args.model, "backend": backend.name(), "max_new_tokens": args.max_new_tokens,
            "intervention": intervener.as_ref().map(|iv| iv.json()), "results": results});
        fsutil::write_atomic(&path, serde_json::to_string_pretty(&doc)?.as_bytes())?;
    }
    Ok(())
}
