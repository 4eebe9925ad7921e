//! `lsn ppxc`: the perplexity-change matrix of a neuron selection (DESIGN §4): PPXC(i, j) = PPL(j | language i's
//! neurons zeroed) − PPL(j), on each language's held-out rows, with a control the paper lacks: the same matrix where
//! language i's set is replaced by random neurons of the same size and per-layer distribution (seeded).

use std::path::PathBuf;

use anyhow::{Result, ensure};
use lsn_core::{Intervention, ModelFiles};
use lsn_data::{Tokenizer, resolve_data_dir};
use lsn_eval::NllSum;
use lsn_run::{OpenOptions, StageRecord};
use lsn_select::Selection;

use crate::plot::matrix::{self, Panel};
use crate::{assets, backends};

/// Perplexity change when each language's neurons are deactivated: PPXC(i, j) = PPL(j | neurons of i set to 0) −
/// PPL(j), on held-out rows (the rows of each language's text after those its capture used, one skipped at the
/// boundary). Reads RUN/neurons/[SET/]METHOD.json and RUN/stats/LANG.safetensors; writes
/// RUN/ppxc/[SET/]METHOD.json and a heatmap (.svg, .png) with the random control beside it.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run directory (from `lsn capture` and `lsn select`).
    #[arg(long)]
    pub run: PathBuf,
    /// The neuron set's sub-directory under RUN/neurons (as given to `lsn select --set`).
    #[arg(long)]
    pub set: Option<String>,
    /// The selection method whose neurons are deactivated.
    #[arg(long, default_value = "lape-mondal")]
    pub method: String,
    /// Held-out rows per language (of the capture's row length).
    #[arg(long, default_value_t = 4, value_parser = crate::cmd::at_least_one)]
    pub rows: usize,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 4, value_parser = crate::cmd::at_least_one)]
    pub batch: usize,
    /// Seed of the random control (language i's random set uses seed + i).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Skip the random control (halves the time).
    #[arg(long)]
    pub no_random: bool,
    /// The model [default: the one the run belongs to].
    #[arg(long)]
    pub model: Option<String>,
    /// Data directory holding corpus/ [default: $LSN_DATA_DIR].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub on: backends::BackendArgs,
    #[command(flatten)]
    pub cache: assets::HomeArg,
}

fn ppl_of(sums: &[NllSum]) -> Vec<f64> {
    sums.iter().map(NllSum::perplexity).collect()
}

/// What `compute` needs besides the model.
struct Job<'a> {
    langs: &'a [String],
    sel: &'a Selection,
    heldout: &'a [super::heldout::HeldOut],
    args: &'a Args,
}

/// Runs every pass and returns the results document's numbers: the baseline, and per method (`lape`, `random`) the
/// K × K PPL, mean NLL and delta matrices (row = the language whose neurons are zeroed, column = the language scored).
fn compute(model: &mut dyn lsn_core::Model, job: &Job<'_>) -> Result<serde_json::Value> {
    let Job { langs, sel, heldout, args } = *job;
    let pad = model.config().pad_token_id.unwrap_or(0);
    let k = langs.len();
    let sets: Vec<Vec<lsn_core::NeuronId>> = langs.iter().map(|l| sel.of(l).unwrap_or_default().to_vec()).collect();
    let random_sets: Vec<Vec<lsn_core::NeuronId>> = if args.no_random {
        Vec::new()
    } else {
        langs.iter().enumerate().map(|(i, l)| sel.random_like(l, args.seed + i as u64)).collect::<Result<_, _>>()?
    };
    // An empty set zeroes nothing: its row is the baseline's, flagged here and in the results, never read as "no
    // effect".
    let empty: Vec<&str> = langs.iter().zip(&sets).filter(|(_, s)| s.is_empty()).map(|(l, _)| l.as_str()).collect();
    if !empty.is_empty() {
        eprintln!(
            "warning: the {} neuron set of {} is empty: its row zeroes nothing and shows the baseline (flagged as \
             empty_sets in the results)",
            args.method,
            empty.join(", ")
        );
    }
    let passes = k * (1 + sets.len() + random_sets.len());
    let bar = indicatif::ProgressBar::new(passes as u64).with_style(
        indicatif::ProgressStyle::with_template("{prefix} {wide_bar} {pos}/{len} language × set {elapsed} (eta {eta})")
            .expect("static template"),
    );
    bar.set_prefix("ppxc");
    let t0 = std::time::Instant::now();
    let mut score = |iv: Option<&Intervention>, j: usize| -> Result<NllSum> {
        let s = lsn_eval::perplexity(model, &heldout[j].rows, args.batch, pad, iv, |_| {})?;
        bar.inc(1);
        ensure!(
            s.tokens > 0 && s.mean().is_finite(),
            "{}: the mean NLL is {} over {} tokens",
            langs[j],
            s.mean(),
            s.tokens
        );
        Ok(s)
    };
    let base: Vec<NllSum> = (0..k).map(|j| score(None, j)).collect::<Result<_>>()?;
    let mut matrix_of = |sets: &[Vec<lsn_core::NeuronId>]| -> Result<Vec<NllSum>> {
        let mut out = Vec::with_capacity(k * k);
        for set in sets {
            let iv = Intervention::deactivate(set.iter().copied());
            for j in 0..k {
                out.push(score(Some(&iv), j)?);
            }
        }
        Ok(out)
    };
    let lape = matrix_of(&sets)?;
    let random = matrix_of(&random_sets)?;
    bar.finish_and_clear();
    let base_ppl = ppl_of(&base);
    let matrix_json = |m: &[NllSum]| {
        let rows = |f: &dyn Fn(usize, &NllSum) -> f64| -> Vec<Vec<f64>> {
            m.chunks(k).map(|r| r.iter().enumerate().map(|(j, s)| f(j, s)).collect()).collect()
        };
        serde_json::json!({
            "ppl": rows(&|_, s| s.perplexity()),
            "mean_nll": rows(&|_, s| s.mean()),
            "delta": rows(&|j, s| s.perplexity() - base_ppl[j]),
            "relative": rows(&|j, s| s.perplexity() / base_ppl[j] - 1.0),
        })
    };
    Ok(serde_json::json!({
        "heldout": heldout.iter().zip(langs).zip(&base).map(|((h, l), b)| serde_json::json!({
            "lang": l, "first_row": h.first, "rows": h.rows.len(), "predicted_tokens": b.tokens})).collect::<Vec<_>>(),
        "neurons_per_language": sets.iter().map(Vec::len).collect::<Vec<_>>(),
        "empty_sets": empty,
        "baseline": {"ppl": base_ppl, "mean_nll": base.iter().map(NllSum::mean).collect::<Vec<_>>()},
        "lape": matrix_json(&lape),
        "random": (!random_sets.is_empty()).then(|| matrix_json(&random)),
        "seconds": t0.elapsed().as_secs_f64(),
    }))
}

/// A K × K matrix of the results document as a flat row-major vector.
fn flat(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r.as_array().into_iter().flatten())
        .filter_map(|x| x.as_f64())
        .collect()
}

pub fn run(args: Args) -> Result<()> {
    let home = &args.cache.home();
    let set_dir = args.set.as_deref().map(|s| format!("{s}/")).unwrap_or_default();
    let per_language: Vec<&str> = super::select::METHODS.iter().copied().filter(|m| *m != "random").collect();
    ensure!(
        per_language.contains(&args.method.as_str()),
        "--method {:?}: PPXC zeroes per-language sets, from one of {} (the random control is built from the chosen \
         set, not from select's random file)",
        args.method,
        per_language.join(", ")
    );
    let neurons = args.run.join("neurons").join(format!("{set_dir}{}.json", args.method));
    ensure!(
        neurons.is_file(),
        "reading {}: no such neuron file; run `lsn select --run {} --method {}` first",
        neurons.display(),
        args.run.display(),
        args.method
    );
    let sel = super::intervene::read_selection(&neurons)?;
    let langs = sel.languages.clone();
    ensure!(
        langs.iter().all(|l| l != "random"),
        "{} is the random control itself; PPXC needs per-language sets (lape-mondal, lape-tang, act-prob-90p)",
        neurons.display()
    );
    let sub = format!("ppxc/{set_dir}");
    let subdirs = [sub.as_str()];
    let mut run = crate::cmd::open_run(
        &args.run,
        &OpenOptions { flag: "--run", create: false, subdirs: &subdirs, need_bytes: 1 << 20 },
    )?;
    let model_name = match (&args.model, run.model()) {
        (Some(m), _) => m.clone(),
        (None, Some(m)) => m.name.clone(),
        (None, None) => "gemma-3-270m".into(),
    };
    let dir = assets::resolve_model(home, &model_name)?;
    let files = ModelFiles::new(&dir);
    let tokenizer = Tokenizer::from_file(&files.tokenizer())?;
    let ckpt = lsn_weights::open_checkpoint(&dir)?;
    let identity = assets::identity(home, &ckpt, &tokenizer)?;
    run.check_model(&model_name, &identity)?;
    super::intervene::check_selection(&sel, &neurons, &ckpt.config, &identity)?;
    let data_dir = args.data_dir.clone().or_else(|| resolve_data_dir(None).ok());
    let heldout = super::heldout::heldout_of_run(&args.run, &langs, data_dir.as_deref(), &tokenizer, args.rows)?;
    let config = serde_json::json!({
        "set": args.set, "method": args.method, "rows": args.rows, "batch": args.batch, "backend": args.on.backend,
        "random_seed": (!args.no_random).then_some(args.seed), "neurons": neurons.display().to_string(),
        "heldout_first_rows": heldout.iter().map(|h| h.first).collect::<Vec<_>>(),
        "weights_sha256": identity.weights_sha256,
    });
    let out_dir = args.run.join(&sub);
    let json = out_dir.join(format!("{}.json", args.method));
    let previous: Option<serde_json::Value> = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|d: &serde_json::Value| d["config"] == config);
    let doc = match previous {
        Some(d) => {
            eprintln!(
                "note: {} already holds this PPXC (same settings): shown again; delete it to recompute",
                json.display()
            );
            d
        }
        None => {
            let (backend, mut model) = args.on.load(home, &files)?;
            let results = compute(model.as_mut(), &Job { langs: &langs, sel: &sel, heldout: &heldout, args: &args })?;
            let mut doc = serde_json::json!({
                "model": model_name, "backend": backend.name(), "config": config, "languages": langs,
                "note": "row i = language whose neurons are set to 0 at every position; column j = language whose \
                         held-out rows are scored; delta = PPL(j | i zeroed) - PPL(j); relative = delta / PPL(j)",
            });
            if let (Some(d), serde_json::Value::Object(r)) = (doc.as_object_mut(), results) {
                d.extend(r);
            }
            run.stage_bytes(&format!("{sub}{}.json", args.method), &serde_json::to_vec_pretty(&doc)?)?;
            doc
        }
    };

    let k = langs.len();
    let percent = |m: &serde_json::Value| flat(&m["relative"]).into_iter().map(|x| 100.0 * x).collect::<Vec<_>>();
    let title =
        format!("PPXC: perplexity change (%) when a language's {} neurons are zeroed ({model_name})", args.method);
    let mut panels = vec![Panel { name: format!("{} neurons", args.method), values: percent(&doc["lape"]) }];
    if !doc["random"].is_null() {
        panels.push(Panel { name: "random control (same size per layer)".into(), values: percent(&doc["random"]) });
    }
    let plots = matrix::matrices(
        &title,
        &langs,
        &panels,
        ("neurons zeroed (language i)", "perplexity of (language j)"),
        &run.staged(&format!("{sub}{}.heatmap", args.method))?,
    )?;
    // The results, the heatmap and the record appear together.
    let (svg, png) = (run.unstaged(&plots.svg), plots.png.as_deref().map(|p| run.unstaged(p)));
    let mut outputs = vec![format!("{sub}{}.json", args.method), svg.clone()];
    outputs.extend(png.clone());
    run.commit(vec![(format!("ppxc/{set_dir}{}", args.method), StageRecord::new(config, outputs, "complete"))])?;

    let secs = doc["seconds"].as_f64().unwrap_or(f64::NAN);
    println!(
        "PPXC ({} on {}, {} held-out rows per language, computed in {secs:.0} s) → {}",
        args.method,
        doc["backend"].as_str().unwrap_or_default(),
        args.rows,
        json.display()
    );
    let base: Vec<f64> = doc["baseline"]["ppl"].as_array().into_iter().flatten().filter_map(|x| x.as_f64()).collect();
    let header: Vec<String> = langs.iter().map(|l| format!(" {l} |")).collect();
    println!("| zeroed ↓ / PPL of → |{}\n|---|{}", header.concat(), "---:|".repeat(k));
    println!("| (baseline PPL) |{}", base.iter().map(|p| format!(" {p:.2} |")).collect::<String>());
    for (name, part) in [("", "lape"), ("random ", "random")] {
        let d = flat(&doc[part]["delta"]);
        for (i, row) in d.chunks(k).enumerate() {
            let cells: String = row
                .iter()
                .enumerate()
                .map(|(j, v)| if i == j { format!(" **{v:+.2}** |") } else { format!(" {v:+.2} |") })
                .collect();
            println!("| {name}{} |{cells}", langs[i]);
        }
    }
    println!(
        "heatmap (relative change): {}{}",
        run.path(&svg).display(),
        png.map(|p| format!(", {}", run.path(&p).display())).unwrap_or_default()
    );
    Ok(())
}
