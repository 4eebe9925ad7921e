//! `lsn eval`: XNLI (lm-eval zero-shot, or the paper's head) and XQuAD (the paper's prompt, greedy generation, three
//! metrics) per language, optionally with neurons overwritten; writes `results.json` (every example) and `results.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use lsn_core::{Greedy, Intervention, Lang, Model, ModelFiles};
use lsn_data::{
    NliLabel, NliSplit, QaSplit, Tokenizer, read_xnli, read_xquad, resolve_data_dir, xnli_path, xquad_path,
};
use lsn_eval::xnli::{ClassifierHead, XnliWords};
use lsn_eval::{EvalResults, ExampleResult, LangResult, xnli, xquad};

use crate::cmd::intervene::{InterveneArgs, Intervener};
use crate::{assets, backends, fsutil};

/// Evaluates a model on XNLI or XQuAD, one language at a time.
///
/// XNLI, --protocol zero-shot (lm-evaluation-harness): context "{premise}, {QW}?" and the three continuations
/// " {E}, {hypothesis}", " {N}, {hypothesis}", " {C}, {hypothesis}" in the language's own words, scored by summed
/// log-likelihood; the argmax is the prediction. --protocol head (the paper's): "premise <eos> hypothesis" and a
/// Linear(hidden, 3) head (--head FILE, safetensors) on the final hidden state at the last real token.
/// XQuAD: the paper's prompt, byte for byte; prompts of 511 tokens or more are dropped and counted; greedy decoding
/// with a KV cache, at most --max-new-tokens, stopping at EOS; scored three ways: paper (token ids), squad (the
/// official SQuAD v1.1 script) and mlqa (MLQA's language-aware script).
///
/// Every score comes with its 95% percentile-bootstrap interval. results.json holds every example's prediction,
/// gold and scores; compare two runs with `lsn compare`. A rerun into the same --out reuses the languages already
/// done with the same settings.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// xnli or xquad.
    #[arg(long)]
    pub task: String,
    /// XNLI: zero-shot (lm-eval) or head (the paper's classifier head, needs --head). XQuAD: generate.
    #[arg(long)]
    pub protocol: Option<String>,
    /// The head for --protocol head: safetensors holding one [3, hidden] tensor named …weight (and optionally a
    /// [3] …bias), e.g. a PEFT adapter's saved `score` head.
    #[arg(long)]
    pub head: Option<PathBuf>,
    /// Comma-separated ISO 639-1 codes.
    #[arg(long)]
    pub lang: String,
    /// XNLI: dev or test [default: test]. XQuAD: eval (last 20% by file order, the paper's), train (first 80%) or
    /// all [default: eval].
    #[arg(long)]
    pub split: Option<String>,
    /// Evaluate only the first N examples of the split (file order).
    #[arg(long, value_parser = crate::cmd::at_least_one)]
    pub limit: Option<usize>,
    /// Sequences per forward pass (XNLI zero-shot scores 3 per example), or prompts per decoder (XQuAD).
    #[arg(long, default_value_t = 8, value_parser = crate::cmd::at_least_one)]
    pub batch: usize,
    /// XQuAD: new tokens per answer, at most (the paper: 100).
    #[arg(long, default_value_t = xquad::MAX_NEW_TOKENS, value_parser = crate::cmd::at_least_one)]
    pub max_new_tokens: usize,
    /// A fetched model's name (gemma-3-270m, smollm2-135m) or a HF checkpoint directory.
    #[arg(long, default_value = "gemma-3-270m")]
    pub model: String,
    /// Data directory holding xnli/ and xquad/ [default: $LSN_DATA_DIR].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A LoRA adapter directory (`lsn train`, or a PEFT LoRA adapter of this model) applied unmerged in every pass
    /// (tch, candle; for ort, `lsn merge-adapter` first). An XNLI adapter's head serves --protocol head.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    #[command(flatten)]
    pub intervene: InterveneArgs,
    #[command(flatten)]
    pub on: backends::BackendArgs,
    /// Bootstrap resamples for the intervals.
    #[arg(long, default_value_t = lsn_eval::DEFAULT_RESAMPLES, value_parser = crate::cmd::at_least_one)]
    pub resamples: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = lsn_eval::DEFAULT_SEED)]
    pub seed: u64,
    /// Output directory: results.json, results.md (and per-language files that let a rerun resume).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub cache: assets::HomeArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    XnliZeroShot(NliSplit),
    XnliHead(NliSplit),
    Xquad(QaSplit),
}

impl Task {
    fn parse(args: &Args) -> Result<Task> {
        let split = args.split.as_deref();
        match args.task.as_str() {
            "xnli" => {
                let split = match split {
                    None => NliSplit::Test,
                    Some(s) => {
                        NliSplit::parse(s).with_context(|| format!("XNLI has no split {s:?}: use dev or test"))?
                    }
                };
                match args.protocol.as_deref().unwrap_or("zero-shot") {
                    "zero-shot" => {
                        ensure!(args.head.is_none(), "--head is for --protocol head");
                        Ok(Task::XnliZeroShot(split))
                    }
                    "head" => {
                        ensure!(
                            args.head.is_some() || args.adapter.is_some(),
                            "--protocol head needs --head FILE (a safetensors [3, hidden] head) or an --adapter with a head"
                        );
                        Ok(Task::XnliHead(split))
                    }
                    p => bail!("XNLI has no protocol {p:?}: use zero-shot or head"),
                }
            }
            "xquad" => {
                ensure!(
                    matches!(args.protocol.as_deref(), None | Some("generate")),
                    "XQuAD has one protocol, generate (greedy answers to the paper's prompt)"
                );
                ensure!(args.head.is_none(), "--head is for XNLI's head protocol");
                let split = match split {
                    None => QaSplit::Eval,
                    Some(s) => QaSplit::parse(s)
                        .with_context(|| format!("XQuAD has no split {s:?}: use eval, train or all"))?,
                };
                Ok(Task::Xquad(split))
            }
            t => bail!("unknown task {t:?}: use xnli or xquad"),
        }
    }

    fn protocol(self) -> &'static str {
        match self {
            Task::XnliZeroShot(_) => "zero_shot",
            Task::XnliHead(_) => "head",
            Task::Xquad(_) => "generate",
        }
    }

    fn split(self) -> &'static str {
        match self {
            Task::XnliZeroShot(s) | Task::XnliHead(s) => s.name(),
            Task::Xquad(s) => s.name(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Task::Xquad(_) => "xquad",
            _ => "xnli",
        }
    }
}

/// What eval writes: results.json and results.md, committed together.
const OUTPUT: lsn_run::Output =
    lsn_run::Output { command: "eval", flag: "--out", results: &["results.json", "results.md"], need_bytes: 0 };

/// What a language's evaluation needs besides the model.
struct Ctx<'a> {
    tok: &'a Tokenizer,
    head: Option<&'a ClassifierHead>,
    args: &'a Args,
    task: Task,
    data_dir: &'a Path,
}

pub fn run(args: Args) -> Result<()> {
    let task = Task::parse(&args)?;
    let langs = crate::cmd::parse_langs(&args.lang, "--lang")?;
    // Locked for the whole command; removed again if the command fails before it writes into it.
    let mut out = crate::cmd::open_output(&args.out, &OUTPUT)?;
    let data_dir = resolve_data_dir(args.data_dir.as_deref())?;
    // Read every language's data once, before the (slow) model load, so bad input fails fast.
    let mut data = Vec::with_capacity(langs.len());
    for &lang in &langs {
        data.push(match task {
            Task::XnliZeroShot(s) | Task::XnliHead(s) => {
                let ex = read_xnli(&data_dir, lang, s)?;
                if let Task::XnliZeroShot(_) = task {
                    XnliWords::of(lang.code())?;
                }
                let official = s.official_size();
                if ex.len() != official {
                    eprintln!(
                        "note: {lang}: {} holds {} examples where XNLI's {} split has {official}: is the file \
                         truncated or edited?",
                        xnli_path(&data_dir, lang, s).display(),
                        ex.len(),
                        s.name()
                    );
                }
                Examples::Nli(limited(ex, args.limit, lang, task.split()))
            }
            Task::Xquad(s) => {
                let ex = s.of(read_xquad(&data_dir, lang)?);
                ensure!(!ex.is_empty(), "{lang}: the XQuAD {} split is empty", s.name());
                Examples::Qa(limited(ex, args.limit, lang, task.split()))
            }
        });
    }
    let home = &args.cache.home();
    let dir = assets::resolve_model(home, &args.model)?;
    let files = ModelFiles::new(&dir);
    let tok = Tokenizer::from_file(&files.tokenizer())?;
    let identity = assets::identity(home, &lsn_weights::open_checkpoint(&dir)?, &tok)?;
    if args.adapter.is_some() {
        args.on.require(home, backends::Need::Adapters)?;
    }
    let (backend, mut model) = args.on.load(home, &files)?;
    tok.check_model_vocab(model.config().vocab_size)?;
    let head = match &args.head {
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("reading the head {}", p.display()))?;
            Some(
                ClassifierHead::from_safetensors(&bytes, model.config().hidden_size)
                    .with_context(|| format!("{}", p.display()))?,
            )
        }
        None => None,
    };
    let adapter = match &args.adapter {
        Some(p) => {
            let (a, meta) = lsn_lora::read_adapter(p, model.config())?;
            crate::cmd::check_adapter(p, &meta, &args.model, &identity)?;
            model.set_adapter(Some(&a)).with_context(|| format!("applying the adapter {}", p.display()))?;
            Some(a)
        }
        None => None,
    };
    let head = match (head, adapter.as_ref().and_then(adapter_head)) {
        (Some(_), Some(_)) => bail!("both --head and an adapter with a head were given: use one"),
        (Some(h), None) => Some(h),
        (None, Some(w)) => Some(ClassifierHead::new(model.config().hidden_size, w, None)?),
        (None, None) if matches!(task, Task::XnliHead(_)) => {
            bail!("--protocol head needs a head: the adapter has none (is it an XQuAD adapter?); pass --head FILE")
        }
        (None, None) => None,
    };
    let mut intervener = args.intervene.load(home, &dir, &tok, model.config())?;
    let config = serde_json::json!({
        "lsn_version": env!("CARGO_PKG_VERSION"), "model": args.model, "identity": identity,
        "backend": backend.name(), "device": format!("{:?}", args.on.device), "dtype": args.on.dtype, "batch": args.batch,
        "limit": args.limit, "max_new_tokens": matches!(task, Task::Xquad(_)).then_some(args.max_new_tokens),
        "head": args.head.as_ref().map(|p| fsutil::sha256_file(p)).transpose()?,
        "adapter": args.adapter.as_ref().map(|p| -> Result<serde_json::Value> {
            Ok(serde_json::json!({"dir": p, "weights_sha256": fsutil::sha256_file(&lsn_lora::peft::weights_path(p))?}))
        }).transpose()?,
        "intervention": intervener.as_ref().map(Intervener::json),
    });
    let claim = serde_json::json!({"task": task.name(), "protocol": task.protocol(), "split": task.split(),
        "config": config});
    out.claim(OUTPUT.command, &args.model, &identity, &claim)?;
    let ctx = Ctx { tok: &tok, head: head.as_ref(), args: &args, task, data_dir: &data_dir };
    let t0 = std::time::Instant::now();
    let mut languages = Vec::new();
    // The settings a stored language must share to be reused (the intervals are recomputed: they are cheap).
    let key = lsn_core::sha256_hex(format!("{}|{}|{}|{config}", task.name(), task.protocol(), task.split()).as_bytes());
    for (&lang, examples) in langs.iter().zip(&data) {
        let partial = args.out.join("languages").join(format!("{}.json", lang.code()));
        if let Some(mut done) = reuse(&partial, &key) {
            eprintln!("{lang}: reusing {} (same settings)", partial.display());
            done.summarize(args.resamples, args.seed);
            languages.push(done);
            continue;
        }
        let iv = intervener.as_mut().map(|iv| iv.for_lang(lang.code())).transpose()?;
        let mut res = eval_lang(&ctx, model.as_mut(), lang, examples, iv.as_ref())?;
        res.summarize(args.resamples, args.seed);
        let doc = serde_json::json!({"key": key, "result": res});
        std::fs::create_dir_all(partial.parent().expect("has a parent"))?;
        fsutil::write_atomic(&partial, serde_json::to_string(&doc)?.as_bytes())?;
        languages.push(res);
    }
    let results = EvalResults {
        task: task.name().into(),
        protocol: task.protocol().into(),
        split: task.split().into(),
        config,
        resamples: args.resamples,
        seed: args.seed,
        languages,
    };
    let title = format!(
        "{} ({}, {} split) · {} on {} · {}",
        task.name(),
        task.protocol(),
        task.split(),
        args.model,
        backend.name(),
        intervener.as_ref().map_or("no intervention".into(), Intervener::describe)
    );
    let md = results.markdown(&title);
    out.stage_bytes("results.json", serde_json::to_string_pretty(&results)?.as_bytes())?;
    out.stage_bytes("results.md", md.as_bytes())?;
    out.commit_output(OUTPUT.command, &args.model, &identity, claim)?;
    println!("{md}\nwall time {:.1} s · wrote {}", t0.elapsed().as_secs_f64(), args.out.join("results.json").display());
    Ok(())
}

/// The head weight `[classes · hidden]` an adapter carries, if any.
fn adapter_head(a: &lsn_core::Adapter) -> Option<Vec<f32>> {
    a.layout.head_classes?;
    a.values.last().cloned()
}

/// A language's stored result when it was made with the same settings.
fn reuse(path: &Path, key: &str) -> Option<LangResult> {
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    (doc["key"] == key).then(|| serde_json::from_value(doc["result"].clone()).ok()).flatten()
}

fn progress(lang: Lang, len: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64).with_style(
        indicatif::ProgressStyle::with_template("{prefix:>4} {wide_bar} {pos}/{len} examples {per_sec} eta {eta}")
            .expect("static template"),
    );
    bar.set_prefix(lang.code().to_owned());
    bar
}

/// The first `limit` examples; says so when the split holds fewer than asked.
fn limited<T>(mut v: Vec<T>, limit: Option<usize>, lang: Lang, split: &str) -> Vec<T> {
    if let Some(n) = limit {
        if n > v.len() {
            eprintln!(
                "note: {lang}: --limit {n}, but the {split} split holds {} examples: evaluating all {}",
                v.len(),
                v.len()
            );
        }
        v.truncate(n);
    }
    v
}

/// A language's examples of the task, read once.
enum Examples {
    Nli(Vec<lsn_data::NliExample>),
    Qa(Vec<lsn_data::QaExample>),
}

fn eval_lang(
    ctx: &Ctx,
    model: &mut dyn Model,
    lang: Lang,
    examples: &Examples,
    iv: Option<&Intervention>,
) -> Result<LangResult> {
    let cfg = model.config().clone();
    let pad = cfg.pad_token_id.unwrap_or(0);
    let (examples, dropped) = match examples {
        Examples::Nli(ex) => {
            let bar = progress(lang, ex.len());
            let preds = if let Some(head) = ctx.head {
                let eos = cfg.eos_token_ids.first().context("the model's config names no EOS token")?;
                let eos_text = ctx.tok.id_to_token(*eos).context("the tokenizer has no text for the EOS id")?;
                let inputs: Vec<Vec<u32>> =
                    ex.iter().map(|e| xnli::head_input(ctx.tok, &eos_text, e)).collect::<Result<_, _>>()?;
                check_positions(&inputs, 0, &cfg)?;
                xnli::score_head(model, head, &inputs, ctx.args.batch, pad, iv, |n| bar.inc(n as u64))?
            } else {
                let words = XnliWords::of(lang.code())?;
                let bos =
                    cfg.bos_token_id.filter(|&b| ctx.tok.encode("a").ok().and_then(|v| v.first().copied()) == Some(b));
                let items: Vec<_> =
                    ex.iter().map(|e| xnli::zero_shot_item(ctx.tok, bos, &words, e)).collect::<Result<_, _>>()?;
                let seqs: Vec<Vec<u32>> = items.iter().flat_map(|i| i.ids.iter().cloned()).collect();
                check_positions(&seqs, 0, &cfg)?;
                xnli::score_zero_shot(model, &items, ctx.args.batch, pad, iv, |n| bar.inc(n as u64))?
            };
            bar.finish_and_clear();
            let examples = ex
                .iter()
                .zip(preds)
                .map(|(e, p)| ExampleResult {
                    key: e.row.to_string(),
                    metrics: BTreeMap::from([("accuracy".into(), if p.pred == e.label.index() { 100.0 } else { 0.0 })]),
                    detail: serde_json::json!({
                        "gold": e.label.name(),
                        "pred": NliLabel::from_index(p.pred).map(NliLabel::name),
                        "scores": p.scores,
                    }),
                })
                .collect();
            (examples, Vec::new())
        }
        Examples::Qa(ex) => {
            let eos = *cfg.eos_token_ids.first().context("the model's config names no EOS token")?;
            let set = xquad::prepare(ctx.tok, eos, ex)?;
            ensure!(
                !set.items.is_empty(),
                "{lang}: no XQuAD example left to evaluate ({} selected, {} dropped for prompts of ≥ {} tokens)",
                ex.len(),
                set.dropped.len(),
                xquad::MAX_PROMPT_TOKENS
            );
            let prompts: Vec<Vec<u32>> = set.items.iter().map(|i| i.prompt.clone()).collect();
            check_positions(&prompts, ctx.args.max_new_tokens, &cfg)?;
            let opts = Greedy { max_new_tokens: ctx.args.max_new_tokens, eos: cfg.eos_token_ids.clone(), pad };
            let bar = progress(lang, prompts.len());
            let generated = xquad::generate(model, &prompts, ctx.args.batch, &opts, iv, |n| bar.inc(n as u64))?;
            bar.finish_and_clear();
            let mut examples = Vec::new();
            for (item, g) in set.items.iter().zip(&generated) {
                let text = xquad::answer_text(ctx.tok, g)?;
                let s = xquad::score(item, g, &text, lang.code());
                examples.push(ExampleResult {
                    key: item.id.clone(),
                    metrics: BTreeMap::from([
                        ("paper_em".into(), s.paper.em),
                        ("paper_f1".into(), s.paper.f1),
                        ("squad_em".into(), s.squad.em),
                        ("squad_f1".into(), s.squad.f1),
                        ("mlqa_em".into(), s.mlqa.em),
                        ("mlqa_f1".into(), s.mlqa.f1),
                    ]),
                    detail: serde_json::json!({
                        "index": item.index, "prompt_tokens": item.prompt.len(), "generated": g.ids,
                        "stopped_at_eos": g.eos, "text": text, "gold": item.golds, "gold_ids": item.gold_ids,
                    }),
                });
            }
            let dropped = ex.iter().filter(|e| set.dropped.contains(&e.index)).map(|e| e.id.clone()).collect();
            (examples, dropped)
        }
    };
    let path = match ctx.task {
        Task::XnliZeroShot(split) | Task::XnliHead(split) => xnli_path(ctx.data_dir, lang, split),
        Task::Xquad(_) => xquad_path(ctx.data_dir, lang),
    };
    Ok(LangResult {
        lang: lang.code().into(),
        data_sha256: fsutil::sha256_file(&path)?,
        data_file: path.display().to_string(),
        dropped,
        scores: BTreeMap::new(),
        examples,
    })
}

/// Refuses sequences (plus `extra` new tokens) beyond the model's positions.
fn check_positions(seqs: &[Vec<u32>], extra: usize, cfg: &lsn_core::ModelConfig) -> Result<()> {
    let longest = seqs.iter().map(Vec::len).max().unwrap_or(0);
    ensure!(
        longest + extra <= cfg.max_position_embeddings,
        "an input of {longest} tokens{} exceeds the model's max_position_embeddings ({})",
        if extra > 0 { format!(" plus {extra} new ones") } else { String::new() },
        cfg.max_position_embeddings
    );
    Ok(())
}
