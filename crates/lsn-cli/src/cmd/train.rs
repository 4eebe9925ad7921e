//! `lsn train`: fine-tunes a model on English task data with LoRA on attention and, for an FTL other than null, the
//! masked LoRA on `gate_proj` that trains only the chosen neurons' rows; writes a PEFT-format adapter. A killed run
//! resumes from its last checkpoint and ends with the same bytes an uninterrupted run writes.

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use lsn_core::{Lang, LoraTarget, ModelFiles};
use lsn_data::{NliSplit, QaSplit, Tokenizer, read_xnli, read_xquad, resolve_data_dir};
use lsn_lora::{Checkpoints, Example, Ftl, LossOn, Target, Task, TrainSpec};

use crate::cmd::intervene::{check_selection, read_selection};
use crate::{assets, backends, fsutil};

/// Fine-tunes on English XNLI (attention LoRA + a Linear(hidden, 3) head on the last real token) or English XQuAD
/// (attention LoRA, causal-LM loss on the paper's prompt + answer + EOS), with the masked gate_proj LoRA over the
/// FTL's neurons.
///
/// The FTL (the paper's "fine-tuning language"): null (attention LoRA only, the baseline), a language of the
/// neuron file (en), a union (en+vi), or random:<languages> (a seeded random set with that set's size and per-layer
/// distribution). Presets: paper (DESIGN §4: AdamW β (0.95, 0.999), wd 0.1, clip 10, 1% warm-up; XNLI lr 1e-5,
/// batch 8, r 8; XQuAD lr 5e-5, batch 4, r 64, 10 epochs) and small-data (the recipe that learns with our smaller
/// English sets at 270M scale). Every value can be overridden.
///
/// Writes OUT/adapter_config.json + adapter_model.safetensors (PEFT's layout; the head as PEFT saves `score`),
/// OUT/train.json (spec, data, the loss curve, tokens/s) and OUT/checkpoint.safetensors (for resuming). The three
/// outputs appear together or not at all; OUT is locked while train runs, and holds one adapter: a rerun with the
/// same settings finds it done, one with other settings is refused, naming what differs.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// xnli, xquad, or lm: language modelling on --text's captured rows (target-language subnetwork training,
    /// arXiv 2510.13580; preset subnetwork; the masked gate_proj LoRA of the FTL's neurons trains, no attention LoRA
    /// unless --targets asks for it). Also spelled --objective.
    #[arg(long, alias = "objective")]
    pub task: String,
    /// --task lm: the language whose text trains: the rows its capture in --stats-run used (never its held-out rows,
    /// which `lsn ppl --heldout` scores).
    #[arg(long)]
    pub text: Option<String>,
    /// --task lm: the capture run whose rows of --text train [default: the run that holds --neurons].
    #[arg(long)]
    pub stats_run: Option<PathBuf>,
    /// --task lm: also train on the last N rows of --text's text (after the held-out rows, a row apart), for more
    /// text than the capture read; `lsn ppl --heldout --adapter` refuses held-out rows that would reach them.
    #[arg(long, requires = "text")]
    pub extra_rows: Option<usize>,
    /// The equal-budget control: set the rank of the --targets LoRA (with FTL null) so that it trains as many
    /// parameters as the masked gate_proj LoRA of this FTL's neurons (from --neurons) would at the preset's rank — the
    /// nearest rank, at least 1, α kept at the preset's α/r. train.json records both counts.
    #[arg(long, conflicts_with = "rank", requires = "neurons")]
    pub match_params: Option<String>,
    /// null, a language of --neurons (en), a union (en+vi) or random:<languages>.
    #[arg(long, default_value = "null")]
    pub ftl: String,
    /// The neuron file (`lsn select`) the FTL's neurons come from.
    #[arg(long)]
    pub neurons: Option<PathBuf>,
    /// Train an FTL whose neuron set is empty (a small model or capture can leave a language without LAPE neurons)
    /// instead of refusing it: its masked LoRA then changes nothing, and it trains what FTL null trains.
    #[arg(long)]
    pub allow_empty_set: bool,
    /// paper or small-data (task fine-tunes); subnetwork (= paper for --task lm).
    #[arg(long, default_value = "paper")]
    pub preset: String,
    /// XNLI: the English split to train on, dev or test [default: dev]. (Training on test leaks into the target
    /// languages' test split, which holds translations of it: evaluate on their dev split then.) XQuAD trains on
    /// the first 80% of the English examples.
    #[arg(long)]
    pub split: Option<String>,
    /// Train on the first N examples only.
    #[arg(long, value_parser = crate::cmd::at_least_one)]
    pub limit: Option<usize>,
    /// LoRA rank r of every adapted linear (paper: 8 for XNLI, 64 for XQuAD; small-data: 16).
    #[arg(long, value_parser = crate::cmd::at_least_one)]
    pub rank: Option<usize>,
    /// LoRA α: the update is scaled by α/r (every preset: 2·r).
    #[arg(long)]
    pub alpha: Option<f32>,
    /// Attention (and MLP) targets of the ordinary LoRA, comma-separated: q,k,v,o[,up,down,gate].
    #[arg(long)]
    pub targets: Option<String>,
    /// Peak learning rate of the LoRA factors, reached after the 1% warm-up, then linear to 0.
    #[arg(long)]
    pub lr: Option<f32>,
    /// Peak learning rate of the XNLI head (paper: the LoRA rate; small-data: its own, 2e-3).
    #[arg(long)]
    pub head_lr: Option<f32>,
    /// Examples per optimizer step.
    #[arg(long, value_parser = crate::cmd::at_least_one)]
    pub batch: Option<usize>,
    /// Examples per forward/backward pass (gradients accumulate to --batch).
    #[arg(long, value_parser = crate::cmd::at_least_one)]
    pub micro_batch: Option<usize>,
    /// Passes over the training examples, each in its own seeded order.
    #[arg(long)]
    pub epochs: Option<u32>,
    /// Batches of similar length (true in small-data, false in paper: HF's group_by_length): less padding, another
    /// seeded order.
    #[arg(long)]
    pub group_by_length: Option<bool>,
    /// Longer examples are dropped (and counted).
    #[arg(long)]
    pub max_len: Option<usize>,
    /// XQuAD: all (prompt + answer + EOS, the paper's) or answer (answer + EOS only).
    #[arg(long)]
    pub loss_on: Option<String>,
    /// Seeds the adapter's initialization, the data order and a random FTL's neurons [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// A checkpoint every N optimizer steps.
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// A fetched model's name or a HF checkpoint directory.
    #[arg(long, default_value = "gemma-3-270m")]
    pub model: String,
    /// Data directory holding xnli/ and xquad/ [default: $LSN_DATA_DIR].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub on: backends::BackendArgs,
    /// Output directory of the adapter.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub cache: assets::HomeArg,
}

/// What train writes: its outputs, committed together.
const OUTPUT: lsn_run::Output = lsn_run::Output {
    command: "train",
    flag: "--out",
    results: &[lsn_lora::peft::CONFIG_FILE, lsn_lora::peft::WEIGHTS_FILE, "train.json"],
    need_bytes: 0,
};

/// The spec from the preset and the overrides.
fn spec(args: &Args, task: Task) -> Result<TrainSpec> {
    let mut s = TrainSpec::preset(&args.preset, task)?;
    let base = s.clone();
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = args.$f.clone() { s.$f = v; } )* };
    }
    set!(rank, alpha, lr, head_lr, batch, micro_batch, group_by_length, epochs, max_len, seed, checkpoint_every);
    if args.batch.is_some() && args.micro_batch.is_none() {
        s.micro_batch = s.batch;
    }
    if let Some(t) = &args.targets {
        let mut v = t.split(',').map(LoraTarget::parse).collect::<Result<Vec<_>, _>>()?;
        v.sort();
        v.dedup();
        s.targets = v;
    }
    if let Some(l) = &args.loss_on {
        ensure!(task == Task::Xquad, "--loss-on is for XQuAD's causal-LM loss");
        s.loss_on = match l.as_str() {
            "all" => LossOn::All,
            "answer" => LossOn::Answer,
            o => bail!("--loss-on {o:?}: use all or answer"),
        };
    }
    if s != base {
        s.preset = format!("{} (overridden)", base.preset);
    }
    s.validate()?;
    Ok(s)
}

/// Sets `spec`'s rank (and α, at the same α/r) so that its LoRA trains as many parameters as the masked gate_proj
/// LoRA of `of`'s neurons at `spec`'s rank: what `--match-params` records.
fn match_params(
    spec: &mut TrainSpec,
    of: &str,
    selection: Option<&lsn_select::Selection>,
    cfg: &lsn_core::ModelConfig,
    allow_empty: bool,
    ftl_null: bool,
) -> Result<serde_json::Value> {
    ensure!(
        ftl_null && !spec.targets.is_empty(),
        "--match-params is the equal-budget control: an ordinary LoRA (--targets, e.g. q,v) with --ftl null"
    );
    let reference_ftl = Ftl::parse(of)?;
    ensure!(reference_ftl != Ftl::Null, "--match-params {of}: name the FTL whose neurons set the budget (e.g. vi)");
    let mask = reference_ftl.gate_mask(selection, cfg, spec.seed, allow_empty)?;
    let reference = TrainSpec { targets: Vec::new(), ..spec.clone() }.layout(mask);
    let budget = reference.trainable_params(cfg);
    let base = spec.clone();
    let at = |rank: usize| TrainSpec { rank, ..base.clone() }.layout(None).trainable_params(cfg);
    let fixed = 2 * at(1) - at(2);
    let per_rank = (at(1) - fixed).max(1);
    let rank = ((budget.saturating_sub(fixed) as f64 / per_rank as f64).round() as usize).max(1);
    let (from_rank, from_alpha) = (spec.rank, spec.alpha);
    spec.alpha = from_alpha / from_rank as f32 * rank as f32;
    spec.rank = rank;
    if !spec.preset.ends_with("(overridden)") {
        spec.preset = format!("{} (overridden)", spec.preset);
    }
    spec.validate()?;
    eprintln!(
        "--match-params {of}: the masked gate_proj LoRA of {of} trains {budget} parameters at rank {from_rank}; the {} \
         LoRA trains {} at rank {rank}",
        spec.targets.iter().map(|t| t.path()).collect::<Vec<_>>().join(", "),
        at(rank)
    );
    Ok(serde_json::json!({"ftl": of, "reference_params": budget, "reference_rank": from_rank, "rank": rank,
        "params": at(rank)}))
}

pub fn run(args: Args) -> Result<()> {
    let task = match args.task.as_str() {
        "xnli" => Task::Xnli,
        "xquad" => Task::Xquad,
        "lm" => Task::Lm,
        t => bail!("unknown task {t:?}: use xnli, xquad or lm"),
    };
    ensure!(
        (task == Task::Lm) == args.text.is_some() && (task == Task::Lm || args.stats_run.is_none()),
        "--text and --stats-run name the text of --task lm (and only of it)"
    );
    let spec = spec(&args, task)?;
    let ftl = Ftl::parse(&args.ftl)?;
    ensure!(ftl == Ftl::Null || args.neurons.is_some(), "--ftl {ftl} needs --neurons FILE (from `lsn select`)");
    let data_dir = match task {
        Task::Lm => args.data_dir.clone().or_else(|| resolve_data_dir(None).ok()).unwrap_or_default(),
        _ => resolve_data_dir(args.data_dir.as_deref())?,
    };
    let en = Lang::parse("en")?;
    let home = &args.cache.home();
    let dir = assets::resolve_model(home, &args.model)?;
    let files = ModelFiles::new(&dir);
    let tok = Tokenizer::from_file(&files.tokenizer())?;
    let ckpt = lsn_weights::open_checkpoint(&dir)?;
    let identity = assets::identity(home, &ckpt, &tok)?;
    let cfg = ckpt.config;
    tok.check_model_vocab(cfg.vocab_size)?;
    let eos = *cfg.eos_token_ids.first().context("the model's config names no EOS token")?;
    let (selection, neurons_sha) = match &args.neurons {
        Some(p) => {
            let sel = read_selection(p)?;
            check_selection(&sel, p, &cfg, &identity)?;
            (Some(sel), Some(fsutil::sha256_file(p)?))
        }
        None => (None, None),
    };
    let mut spec = spec;
    let matched = match &args.match_params {
        Some(m) => Some(match_params(&mut spec, m, selection.as_ref(), &cfg, args.allow_empty_set, ftl == Ftl::Null)?),
        None => None,
    };
    let gate_rows = ftl.gate_mask(selection.as_ref(), &cfg, spec.seed, args.allow_empty_set)?;
    let gate_neurons = gate_rows.as_ref().map(|m| m.iter().filter(|&&b| b).count());
    let layout = spec.layout(gate_rows);
    layout.validate(&cfg)?;
    // The training set.
    let mut text_record = None;
    let (examples, data_file, n_read) = match task {
        Task::Xnli => {
            let split = match args.split.as_deref() {
                None => NliSplit::Dev,
                Some(s) => NliSplit::parse(s).with_context(|| format!("XNLI has no split {s:?}: use dev or test"))?,
            };
            let rows = read_xnli(&data_dir, en, split)?;
            let eos_text = tok.id_to_token(eos).context("the tokenizer has no text for the EOS id")?;
            let mut ex = Vec::with_capacity(rows.len());
            for r in &rows {
                ex.push(Example {
                    ids: lsn_eval::xnli::head_input(&tok, &eos_text, r)?,
                    target: Target::Label(r.label.index() as u32),
                });
            }
            (ex, lsn_data::xnli_path(&data_dir, en, split), rows.len())
        }
        Task::Xquad => {
            ensure!(args.split.is_none(), "XQuAD trains on the first 80% of the English examples; --split is for XNLI");
            let rows = QaSplit::Train.of(read_xquad(&data_dir, en)?);
            let set = lsn_eval::xquad::prepare(&tok, eos, &rows)?;
            let ex = set
                .items
                .into_iter()
                .map(|it| {
                    let n = it.prompt.len() + it.gold_ids.len();
                    let first = match spec.loss_on {
                        LossOn::All => 0,
                        LossOn::Answer => it.prompt.len() - 1,
                    };
                    let weights = (0..n).map(|t| if t >= first && t + 1 < n { 1.0 } else { 0.0 }).collect();
                    Example { ids: [it.prompt, it.gold_ids].concat(), target: Target::Weights(weights) }
                })
                .collect();
            (ex, lsn_data::xquad_path(&data_dir, en), rows.len())
        }
        Task::Lm => {
            let lang = Lang::parse(args.text.as_deref().unwrap_or_default())?;
            let run = match (&args.stats_run, args.neurons.as_deref().and_then(crate::cmd::intervene::run_of)) {
                (Some(r), _) => r.clone(),
                (None, Some(r)) => r,
                (None, None) => bail!("--task lm trains on a capture's rows: give --stats-run RUN"),
            };
            let stats = run.join("stats").join(format!("{}.safetensors", lang.code()));
            ensure!(
                stats.is_file(),
                "no statistics for {lang} at {}: capture {lang} into {} first",
                stats.display(),
                run.display()
            );
            let dir = (!data_dir.as_os_str().is_empty()).then_some(data_dir.as_path());
            let text = super::heldout::training_rows(&stats, dir, &tok, args.extra_rows.unwrap_or(0))?;
            text_record = Some(text.record(lang.code()));
            let ex: Vec<Example> = text
                .rows
                .into_iter()
                .map(|ids| {
                    let n = ids.len();
                    Example {
                        ids,
                        target: Target::Weights((0..n).map(|t| if t + 1 < n { 1.0 } else { 0.0 }).collect()),
                    }
                })
                .collect();
            let n = ex.len();
            (ex, stats, n)
        }
    };
    let mut examples: Vec<Example> = examples;
    if let Some(n) = args.limit {
        examples.truncate(n);
    }
    let before = examples.len();
    examples.retain(|e| e.ids.len() <= spec.max_len && e.ids.len() <= cfg.max_position_embeddings);
    let dropped = before - examples.len();
    ensure!(
        !examples.is_empty(),
        "no training example is left: all {before} are longer than --max-len {} tokens",
        spec.max_len
    );
    let data_sha = fsutil::sha256_file(&data_file)?;
    // Only now, with every input checked, is the output directory made: a refused run leaves nothing behind, and one
    // that fails before its first write (the model load) removes it again.
    args.on.require(home, backends::Need::Train)?;
    let mut out = crate::cmd::open_output(&args.out, &OUTPUT)?;
    let mask_digest = layout.gate_rows.as_ref().map(|m| {
        let bytes: Vec<u8> = m.iter().map(|&b| u8::from(b)).collect();
        lsn_core::sha256_hex(&bytes)
    });
    let run = serde_json::json!({
        "spec": spec, "ftl": ftl.to_string(), "neurons_sha256": neurons_sha, "gate_mask_sha256": mask_digest,
        "targets": layout.targets, "data": {"file": data_file, "sha256": data_sha, "limit": args.limit,
        "examples": examples.len(), "dropped_longer_than_max_len": dropped, "text": text_record},
        "trainable_params": layout.trainable_params(&cfg), "matched": matched, "identity": identity,
        "backend": args.on.backend, "device": format!("{:?}", args.on.device), "dtype": args.on.dtype,
    });
    let run_key = lsn_core::sha256_hex(run.to_string().as_bytes());
    if let Some(done) = out.claim(OUTPUT.command, &args.model, &identity, &run)?
        && done.outputs.iter().all(|f| args.out.join(f).is_file())
    {
        println!("{} already holds this adapter, trained with the same settings: nothing to do", args.out.display());
        return Ok(());
    }
    // Loaded only once the settings are known to be new or resumable.
    let (backend, mut model) = args.on.load(home, &files)?;
    let ck = Checkpoints { path: lsn_lora::train::checkpoint_path(&args.out), run_key: run_key.clone() };
    let initial = lsn_lora::initial_adapter(&layout, &cfg, spec.init_std, spec.seed);
    let (per_epoch, total) = lsn_lora::train::steps(&spec, examples.len());
    eprintln!(
        "training {} on {} of {} examples ({dropped} dropped, > {} tokens): {total} steps ({per_epoch}/epoch) of {} on {}, FTL {ftl}{}",
        task.name(),
        examples.len(),
        n_read,
        spec.max_len,
        spec.batch,
        backend.name(),
        layout
            .gate_rows
            .as_ref()
            .map_or(String::new(), |m| format!(" ({} gate neurons)", m.iter().filter(|&&b| b).count()))
    );
    let bar = indicatif::ProgressBar::new(total).with_style(
        indicatif::ProgressStyle::with_template("{wide_bar} {pos}/{len} steps · {msg} · eta {eta}")
            .expect("static template"),
    );
    let t0 = std::time::Instant::now();
    let pad = cfg.pad_token_id.unwrap_or(eos);
    let mut tokens = 0u64;
    let outcome = lsn_lora::train(model.as_mut(), &spec, initial, &examples, pad, &ck, &mut |log, _| {
        tokens += log.tokens;
        bar.set_position(log.step);
        bar.set_message(format!(
            "loss {:.4} · lr {:.2e} · {:.0} tokens/s",
            log.loss,
            log.lr,
            tokens as f64 / t0.elapsed().as_secs_f64().max(1e-9)
        ));
    })?;
    bar.finish_and_clear();
    drop(model);
    let meta = lsn_lora::AdapterMeta {
        task_type: task.peft_task_type().into(),
        base_model: args.model.clone(),
        lsn: serde_json::json!({"run": run, "run_key": run_key, "ftl": ftl.to_string(),
            "neurons": args.neurons.as_ref().map(|p| p.display().to_string()), "neurons_sha256": neurons_sha}),
    };
    lsn_lora::write_adapter(&out.staging_dir()?, &outcome.adapter, &cfg, &meta)?;
    let peak_rss = lsn_core::procinfo::peak_rss_mib();
    let summary = serde_json::json!({
        "run": run, "run_key": run_key, "steps": total, "resumed_at_step": outcome.resumed_at,
        "gate_neurons": gate_neurons,
        "tokens_per_s_this_process": outcome.tokens_per_s, "wall_seconds_this_process": t0.elapsed().as_secs_f64(),
        "peak_rss_mib_this_process": peak_rss,
        "log": outcome.log,
    });
    out.stage_bytes("train.json", serde_json::to_string_pretty(&summary)?.as_bytes())?;
    out.commit_output(OUTPUT.command, &args.model, &identity, run)?;
    let last = outcome.log.last().map_or(f64::NAN, |l| l.loss);
    println!(
        "trained {total} steps (resumed at {}), final loss {last:.4}, {:.0} tokens/s, peak RSS {} · wrote {}",
        outcome.resumed_at,
        outcome.tokens_per_s,
        peak_rss.map_or("unknown".into(), |m| format!("{m:.0} MiB")),
        args.out.display()
    );
    Ok(())
}
