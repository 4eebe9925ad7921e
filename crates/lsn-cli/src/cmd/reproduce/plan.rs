//! The study as a graph of `lsn` command lines: the paper's language sets, tasks and fills, the sizes of each scale,
//! and every stage with the command it runs, the stages it needs and the files it owns.

use std::path::Path;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// The paper's language set 1 (`lang_map["set1"]` of its code).
pub const SET1: [&str; 7] = ["en", "fr", "es", "vi", "id", "ja", "zh"];
/// The paper's language set 6.
pub const SET6: [&str; 10] = ["en", "bn", "hi", "ta", "te", "mr", "ur", "kn", "ml", "pa"];
/// The evaluated languages of each task (the paper's tables).
pub const XNLI_LANGS: [&str; 3] = ["vi", "hi", "ur"];
pub const XQUAD_LANGS: [&str; 3] = ["vi", "hi", "zh"];
/// The intervention columns of the paper's tables, in its order (`mean` is μ).
pub const FILLS: [&str; 7] = ["mean", "p75", "p90", "p95", "zero", "p5", "p10"];
/// The neuron method of the paper's intervention tables, and of its fine-tuning table.
pub const INTERVENTION_METHOD: &str = "act-prob-90p";
pub const FTL_METHOD: &str = "lape-mondal";

/// The neuron set a language's own neurons come from (vi and zh from set 1, hi and ur from set 6, as the paper's).
pub fn set_of(lang: &str) -> &'static str {
    if SET1.contains(&lang) && lang != "en" { "set1" } else { "set6" }
}

/// Which claims a run tests: each a plan of `lsn` commands over the same capture and neuron sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Study {
    /// Mondal et al. 2025: interventions and neuron-masked fine-tunes on XNLI and XQuAD (PPXC too).
    #[default]
    Mondal,
    /// Language Arithmetics (Gurgurov et al. 2025) and CLaS-Bench: does steering the neurons (or a
    /// difference-of-means vector) force the output language? Against a random control, with fluency.
    Arithmetics,
    /// Target-language subnetwork training (Gurgurov et al., arXiv 2510.13580).
    Subnetwork,
    /// Every study above, in one run and one report.
    All,
}

impl Study {
    /// Whether this run includes the stages of `part`.
    pub fn runs(self, part: Study) -> bool {
        self == part || self == Study::All
    }
}

/// The steering operations of the language-forcing table: (name, `lsn forcing` arguments). Language Arithmetics'
/// own two (its code's α = 1), the paper's μ fill ("replacement" there), an amplification of ours, and
/// CLaS-Bench's difference of means (α = 1: the source's mean layer output moved onto the target's).
pub const FORCING: [(&str, &[&str]); 5] = [
    ("add", &["--steer", "add", "--alpha", "1"]),
    ("arithmetic", &["--steer", "arithmetic", "--alpha", "1"]),
    ("fill-mean", &["--steer", "fill", "--fill", "mean"]),
    ("scale", &["--steer", "scale", "--alpha", "2"]),
    ("diffmean", &["--steer", "diffmean", "--alpha", "1"]),
];
/// The languages forced, from English prompts (the paper's evaluated languages).
pub const FORCING_TARGETS: [&str; 4] = ["vi", "zh", "hi", "ur"];
/// The neuron method of the forcing table (Language Arithmetics steers LAPE neurons).
pub const FORCING_METHOD: &str = "lape-mondal";

/// How much of everything a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// Every stage on tiny slices, in minutes (CI runs it): checks the pipeline, its numbers mean nothing.
    Smoke,
    /// The intervention tables at sizes chosen to be conclusive on a 2-core CPU within the hour (stated in the
    /// report): XNLI trained on all English test pairs and evaluated on the targets' dev split; FTL null only. With
    /// --study all, also language forcing (5 operations × vi, zh, hi, ur; 50 prompts × 32 tokens) and subnetwork
    /// training (vi; 3 arms × 2 seeds): 98 stages in 100 minutes on tch, 2 cores (measured; 108 with set-up).
    Default,
    /// The paper's sizes where our data allows, on the default model (hours on a CPU).
    Full,
    /// The paper's recipe (`paper` training preset, full sizes) for a GPU and the paper's models.
    Paper,
}

/// The sizes of a scale; every one is stated in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sizes {
    /// Capture: tokens per language (whole rows; `None`: all of FLORES-200 devtest + TICO-19 test but the last
    /// [`Sizes::capture_leave_rows`] rows), row length and rows per forward pass.
    pub capture_tokens: Option<u64>,
    pub row_len: usize,
    pub batch_rows: usize,
    /// PPXC: held-out rows per language.
    pub ppxc_rows: usize,
    /// Training preset (`small-data` or `paper`), English examples (`None`: the whole split) and epochs
    /// (`None`: the preset's).
    pub preset: String,
    pub xnli_train: Option<usize>,
    pub xnli_epochs: Option<u32>,
    pub xquad_train: Option<usize>,
    pub xquad_epochs: Option<u32>,
    /// XQuAD's loss: `answer` (answer + EOS) or `all` (the paper's: prompt + answer + EOS).
    pub xquad_loss_on: String,
    /// Evaluation: examples per language (`None`: the whole split) and XQuAD's new tokens per answer.
    pub xnli_eval: Option<usize>,
    pub xquad_eval: Option<usize>,
    pub max_new_tokens: usize,
    /// The fills of each method's intervention table.
    pub act_prob_fills: Vec<String>,
    pub lape_fills: Vec<String>,
    /// XNLI's English training split and the target languages' evaluation split: `dev`/`test` (the paper's: train on
    /// English dev, evaluate on test) or `test`/`dev` (5010 English training pairs instead of 2490; no translation
    /// of a training pair is ever evaluated).
    #[serde(default = "dev_split")]
    pub xnli_train_split: String,
    #[serde(default = "test_split")]
    pub xnli_eval_split: String,
    /// The base model's zero-shot baseline (a sanity check, in no verdict): at most this many examples per language
    /// (`None`: as many as the task's evaluations). XNLI's zero-shot protocol scores three continuations per pair.
    #[serde(default)]
    pub baseline_eval: Option<usize>,
    /// Whether every FTL is fine-tuned (null, en, target, en+target, random:target), or FTL null only — the model
    /// the intervention tables test — when the scale's budget cannot hold the seeds an FTL comparison needs.
    #[serde(default = "yes")]
    pub all_ftls: bool,
    /// Training seeds: every fine-tune is trained this many times (seeds 42 + --seed + k), and every evaluation of a
    /// fine-tune (interventions included) runs on each.
    #[serde(default = "one_seed")]
    pub seeds: usize,
    /// Language forcing (`--study arithmetics`): FLORES-200 prompts per target language, new tokens per
    /// continuation, and the captured rows per language the difference-of-means vectors average.
    #[serde(default = "forcing_prompts")]
    pub forcing_prompts: usize,
    #[serde(default = "forcing_new_tokens")]
    pub forcing_new_tokens: usize,
    #[serde(default = "layer_means_rows")]
    pub layer_means_rows: usize,
    /// Subnetwork training (`--study subnetwork`): the target languages, the training seeds of each arm, the rows of
    /// target-language text beyond the capture's that each trains on (`lsn train --extra-rows`), and the held-out
    /// rows its perplexity is scored on.
    #[serde(default = "subnetwork_targets")]
    pub subnetwork_targets: Vec<String>,
    #[serde(default = "two")]
    pub subnetwork_seeds: usize,
    #[serde(default)]
    pub lm_extra_rows: usize,
    #[serde(default = "heldout_rows")]
    pub heldout_rows: usize,
}

fn subnetwork_targets() -> Vec<String> {
    vec!["vi".into()]
}

fn two() -> usize {
    2
}

fn heldout_rows() -> usize {
    16
}

fn one_seed() -> usize {
    1
}

fn forcing_prompts() -> usize {
    50
}

fn forcing_new_tokens() -> usize {
    32
}

fn layer_means_rows() -> usize {
    8
}

fn dev_split() -> String {
    "dev".into()
}

fn test_split() -> String {
    "test".into()
}

fn yes() -> bool {
    true
}

impl Sizes {
    /// Rows at the end of each language's text that a capture of all the text leaves unseen (`lsn capture
    /// --leave-rows`): a skipped row, the held-out rows of PPXC and of the subnetwork perplexity, a skipped row, and the
    /// extra rows of language-model training. A budgeted capture leaves none: its budget already stops short.
    pub fn capture_leave_rows(&self) -> usize {
        match self.capture_tokens {
            Some(_) => 0,
            None => 2 + self.ppxc_rows.max(self.heldout_rows) + self.lm_extra_rows,
        }
    }

    pub fn of(scale: Scale) -> Sizes {
        let fills = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match scale {
            Scale::Smoke => Sizes {
                capture_tokens: Some(256),
                row_len: 64,
                batch_rows: 1,
                ppxc_rows: 1,
                preset: "small-data".into(),
                xnli_train: Some(16),
                xnli_epochs: Some(1),
                xquad_train: Some(4),
                xquad_epochs: Some(1),
                xquad_loss_on: "answer".into(),
                xnli_eval: Some(8),
                xquad_eval: Some(2),
                max_new_tokens: 8,
                act_prob_fills: fills(&FILLS),
                lape_fills: fills(&["mean", "zero"]),
                xnli_train_split: "test".into(),
                xnli_eval_split: "dev".into(),
                baseline_eval: None,
                all_ftls: true,
                seeds: 1,
                forcing_prompts: 4,
                forcing_new_tokens: 6,
                layer_means_rows: 2,
                subnetwork_targets: vec!["vi".into()],
                subnetwork_seeds: 2,
                lm_extra_rows: 2,
                heldout_rows: 2,
            },
            Scale::Default => Sizes {
                capture_tokens: Some(4096),
                row_len: 512,
                // 8 batches of one row: ActProb-90p's thresholds are means of per-batch quantiles, and `lsn capture`
                // warns below 8 batches.
                batch_rows: 1,
                ppxc_rows: 1,
                preset: "small-data".into(),
                // All 5010 English test pairs (384 dev pairs left the head at chance on every language), evaluated on the
                // targets' dev split; FTL null only (see `all_ftls`), so the hour goes to the intervention tables.
                xnli_train: None,
                xnli_epochs: Some(1),
                xquad_train: Some(40),
                xquad_epochs: Some(2),
                xquad_loss_on: "answer".into(),
                xnli_eval: Some(600),
                xquad_eval: Some(30),
                max_new_tokens: 40,
                act_prob_fills: fills(&FILLS),
                lape_fills: fills(&["mean", "zero"]),
                xnli_train_split: "test".into(),
                xnli_eval_split: "dev".into(),
                // 3 × 600 zero-shot pairs took 615 s of the hour: the baseline is a sanity check in no verdict.
                baseline_eval: Some(200),
                all_ftls: false,
                seeds: 1,
                // 50 prompts: a share's 95% interval is about ±14 points at 50%, and 0 of 50 bounds a share below
                // 6% (rule of three).
                forcing_prompts: forcing_prompts(),
                forcing_new_tokens: forcing_new_tokens(),
                layer_means_rows: layer_means_rows(),
                // vi (evaluated on XNLI and XQuAD): 8 captured + 24 extra rows of 512 tokens (16 steps of 2 rows) per
                // fine-tune, 16 held-out rows (8192 tokens) per perplexity. Measured on tch, 2 cores: a fine-tune 143 s,
                // its three scores 124 s, so vi's 6 fine-tunes add ≈ 27 min — `--study all` measured 100 min of
                // stages; vi and hi together took 64.6 min alone, which `all` could not hold within 2 hours.
                subnetwork_targets: subnetwork_targets(),
                subnetwork_seeds: 2,
                lm_extra_rows: 24,
                heldout_rows: heldout_rows(),
            },
            Scale::Full => Sizes {
                capture_tokens: None,
                row_len: 512,
                batch_rows: 4,
                ppxc_rows: 4,
                preset: "small-data".into(),
                xnli_train: None,
                xnli_epochs: None,
                xquad_train: None,
                xquad_epochs: None,
                xquad_loss_on: "answer".into(),
                xnli_eval: None,
                xquad_eval: None,
                max_new_tokens: 100,
                act_prob_fills: fills(&FILLS),
                lape_fills: fills(&FILLS),
                xnli_train_split: "dev".into(),
                xnli_eval_split: "test".into(),
                baseline_eval: None,
                all_ftls: true,
                seeds: 1,
                forcing_prompts: 200,
                forcing_new_tokens: 64,
                layer_means_rows: 32,
                subnetwork_targets: FORCING_TARGETS.iter().map(|s| s.to_string()).collect(),
                subnetwork_seeds: 3,
                // The capture leaves each language's last 2 + 16 + 24 = 42 rows unseen (`capture_leave_rows`). With
                // Gemma-3's tokenizer, FLORES-200 devtest alone gives ja 66 rows of 512 tokens and vi 74 (neither is in
                // TICO-19), so they keep 24 and 32; the others give 96–296.
                lm_extra_rows: 24,
                heldout_rows: 16,
            },
            Scale::Paper => {
                Sizes { preset: "paper".into(), xquad_loss_on: "all".into(), ppxc_rows: 16, ..Sizes::of(Scale::Full) }
            }
        }
    }
}

/// What the run was asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub scale: Scale,
    #[serde(default)]
    pub study: Study,
    /// The backend of capture, selection, PPXC and the base model's baseline.
    pub backend: String,
    /// The backend of fine-tuning and of every evaluation of a fine-tune (ort cannot train: candle then).
    pub task_backend: String,
    pub device: String,
    pub dtype: String,
    pub tap_point: String,
    pub seed: u64,
    pub model: String,
    pub sizes: Sizes,
    /// `--backend all`: the other backends on which capture, selection and the base model's baseline run again,
    /// for the report's agreement table.
    #[serde(default)]
    pub compare_backends: Vec<String>,
    /// The equivalence margin δ of the report's verdicts (points of accuracy or F1), fixed before the run.
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// The equivalence margin of the language-forcing tables (points of the share in the target), fixed before the run.
    #[serde(default = "forcing_margin")]
    pub forcing_margin: f64,
}

fn default_margin() -> f64 {
    lsn_eval::verdict::DEFAULT_MARGIN
}

fn forcing_margin() -> f64 {
    lsn_eval::verdict::FORCING_MARGIN
}

/// One step of the study: an `lsn` command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// Unique, path-like: `capture`, `select/set1`, `train/xnli/en@set1`, `eval/xnli/ftl/null`, ….
    pub key: String,
    /// The `lsn` arguments (without the program name); paths inside the run directory are written `$OUT/…`.
    pub argv: Vec<String>,
    /// Stages whose outputs this one reads.
    pub deps: Vec<String>,
    /// Which data folders it reads (`corpus`, `xnli`, `xquad`): a change there reruns it. The stages that read none
    /// (selection, the gathering) load no model and take no --data-dir or --home.
    pub data: Vec<String>,
    /// What it writes, relative to the run directory: removed before a stage whose configuration changed reruns.
    pub outputs: Vec<String>,
    /// A rough cost (seconds on a 2-core CPU) for the whole run's ETA; corrected by the measured pace.
    pub estimate_s: f64,
    /// Opens the run directory itself (and so holds its lock while it runs): with --shard, such stages all run on
    /// shard 0, one after another.
    pub exclusive: bool,
}

/// One evaluation, as the report reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRole {
    pub stage: String,
    pub task: String,
    /// `ftl` (a fine-tune without intervention), `intervention` (the FTL-null fine-tune with neurons overwritten) or
    /// `baseline` (the base model, zero-shot).
    pub kind: String,
    pub ftl: Option<String>,
    pub method: Option<String>,
    pub fill: Option<String>,
    pub langs: Vec<String>,
    /// `…/results.json`, relative to the run directory.
    pub results: String,
    /// Which training seed's fine-tune (0-based: seed 42 + --seed + this) it evaluates; 0 for the baseline.
    #[serde(default)]
    pub seed_index: usize,
}

/// One fine-tune, as the report reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRole {
    pub stage: String,
    pub task: String,
    /// The FTL as `lsn train` takes it (`en`, `en+vi`, `random:vi`, …), and the set its neurons come from.
    pub ftl: String,
    pub set: Option<String>,
    pub dir: String,
    /// The training seed's index (seed 42 + --seed + this).
    #[serde(default)]
    pub seed_index: usize,
}

/// The whole plan; written to `plan.json` so `lsn report` knows what every output is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub request: Request,
    pub sets: Vec<(String, Vec<String>)>,
    pub stages: Vec<Stage>,
    pub evals: Vec<EvalRole>,
    pub trains: Vec<TrainRole>,
}

/// The placeholder for the run directory in stage command lines.
pub const OUT: &str = "$OUT";

fn out(rel: &str) -> String {
    format!("{OUT}/{rel}")
}

fn opt<T: ToString>(flag: &str, v: Option<T>) -> Vec<String> {
    v.map(|v| vec![flag.to_string(), v.to_string()]).unwrap_or_default()
}

/// A stage's command line from string pieces.
fn argv(parts: &[&str], extra: Vec<Vec<String>>) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).chain(extra.into_iter().flatten()).collect()
}

/// The FTL names of the fine-tunes a task needs, each with the set its neurons come from: `null` once; per
/// evaluated language its own set's `en`, `L`, `en+L` and the matched random control `random:L`.
fn fine_tunes(langs: &[&str]) -> Vec<(String, Option<&'static str>)> {
    let mut v: Vec<(String, Option<&'static str>)> = vec![("null".into(), None)];
    for &l in langs {
        let set = set_of(l);
        for ftl in [format!("en@{set}"), l.to_string(), format!("en+{l}"), format!("random:{l}")] {
            if !v.iter().any(|(f, _)| *f == ftl) {
                v.push((ftl, Some(set)));
            }
        }
    }
    v
}

/// The directory name of a fine-tune (`en+vi` → `en+vi`, `random:vi` → `random-vi`, `en@set1` → `en-set1`) of
/// training seed `k` (the first seed's without a suffix, the others' `-seedK`).
fn ft_dir(task: &str, ftl: &str, k: usize) -> String {
    seeded(&format!("adapters/{task}-{}", ftl.replace([':', '@'], "-")), "-", k)
}

/// A stage key or directory of training seed `k`: `name` for the first, `name{sep}seedK` for the others.
fn seeded(name: &str, sep: &str, k: usize) -> String {
    if k == 0 { name.to_string() } else { format!("{name}{sep}seed{k}") }
}

impl Plan {
    pub fn new(req: Request) -> Plan {
        let z = &req.sizes;
        let common = |backend: &str| -> Vec<String> {
            argv(&["--model", &req.model, "--backend", backend, "--device", &req.device, "--dtype", &req.dtype], vec![])
        };
        let mut stages = Vec::new();
        let mut evals = Vec::new();
        let mut trains = Vec::new();
        let mut all_langs: Vec<&str> = SET1.to_vec();
        all_langs.extend(SET6.iter().filter(|l| !SET1.contains(l)));
        let langs = all_langs.join(",");

        let sets: Vec<(String, Vec<String>)> = vec![
            ("set1".into(), SET1.iter().map(|s| s.to_string()).collect()),
            ("set6".into(), SET6.iter().map(|s| s.to_string()).collect()),
        ];
        // Capture (every language of both sets, once) and selection, into the run directory `run` ("" for the run
        // directory itself, `backends/B` for another backend's copy under --backend all); stage keys get `suffix`.
        let neuron_stages = |run: &str, suffix: &str, backend: &str, stages: &mut Vec<Stage>| {
            let run_arg = if run.is_empty() { OUT.to_string() } else { out(run) };
            let at = |rel: &str| if run.is_empty() { rel.to_string() } else { format!("{run}/{rel}") };
            let capture = |run_arg: &str, langs: &str| {
                let mut a = argv(
                    &[
                        "capture",
                        "--run",
                        run_arg,
                        "--lang",
                        langs,
                        "--row-len",
                        &z.row_len.to_string(),
                        "--batch-rows",
                    ],
                    vec![
                        vec![z.batch_rows.to_string()],
                        opt("--max-tokens", z.capture_tokens),
                        opt("--leave-rows", Some(z.capture_leave_rows()).filter(|&n| n > 0)),
                    ],
                );
                a.extend(argv(
                    &["--tap-point", &req.tap_point, "--seed", &req.seed.to_string()],
                    vec![common(backend)],
                ));
                a
            };
            let per_lang_s = 2.0 * z.capture_tokens.unwrap_or(60_000) as f64 / 700.0 + 1.0;
            if run.is_empty() {
                // The study's capture: one stage per language, each in its own run directory (so shards on other
                // machines capture at once), then gathered into the run directory by `lsn merge --from`.
                let mut gather = argv(&["merge", "--run", OUT], vec![]);
                for l in &all_langs {
                    let dir = format!("capture/{l}");
                    stages.push(Stage {
                        key: format!("capture/{l}"),
                        argv: capture(&out(&dir), l),
                        deps: vec![],
                        data: vec!["corpus".into()],
                        outputs: vec![dir.clone()],
                        estimate_s: per_lang_s + 3.0,
                        exclusive: false,
                    });
                    gather.extend(argv(&["--from", &out(&dir)], vec![]));
                }
                stages.push(Stage {
                    key: "gather".into(),
                    argv: gather,
                    deps: all_langs.iter().map(|l| format!("capture/{l}")).collect(),
                    data: vec![],
                    outputs: vec!["stats".into()],
                    estimate_s: 2.0,
                    exclusive: true,
                });
            } else {
                stages.push(Stage {
                    key: format!("capture{suffix}"),
                    argv: capture(&run_arg, &langs),
                    deps: vec![],
                    data: vec!["corpus".into()],
                    outputs: vec![at("stats")],
                    estimate_s: all_langs.len() as f64 * per_lang_s,
                    exclusive: false,
                });
            }
            let captured = if run.is_empty() { "gather".to_string() } else { format!("capture{suffix}") };
            for (set, members) in &sets {
                stages.push(Stage {
                    key: format!("select/{set}{suffix}"),
                    argv: argv(
                        &["select", "--run", &run_arg, "--lang", &members.join(","), "--set", set, "--method"],
                        vec![vec![format!("lape-mondal,{INTERVENTION_METHOD},random")], opt("--seed", Some(req.seed))],
                    ),
                    deps: vec![captured.clone()],
                    data: vec![],
                    outputs: vec![at(&format!("neurons/{set}"))],
                    estimate_s: 3.0,
                    exclusive: run.is_empty(),
                });
            }
        };
        neuron_stages("", "", &req.backend, &mut stages);
        // --backend all: the same capture and selection on every other backend, for the agreement table.
        for b in &req.compare_backends {
            neuron_stages(&format!("backends/{b}"), &format!("@{b}"), b, &mut stages);
        }
        if req.study.runs(Study::Arithmetics) {
            forcing_stages(&req, &common(&req.backend), &mut stages);
        }
        // The base model, zero-shot, on each task: the sanity baseline of the paper's tables and the base arm of
        // subnetwork training.
        if req.study.runs(Study::Mondal) || req.study.runs(Study::Subnetwork) {
            for task in ["xnli", "xquad"] {
                baseline_stages(&req, task, &common, &mut stages, &mut evals);
            }
        }
        if req.study.runs(Study::Subnetwork) {
            subnetwork_stages(&req, &common(&req.task_backend), &mut stages, &mut evals, &mut trains);
        }
        if req.study.runs(Study::Mondal) {
            // PPXC of set 1's LAPE neurons, with the random control.
            stages.push(Stage {
                key: "ppxc/set1".into(),
                argv: argv(
                    &["ppxc", "--run", OUT, "--set", "set1", "--method", FTL_METHOD, "--rows"],
                    vec![vec![z.ppxc_rows.to_string()], opt("--seed", Some(req.seed)), common(&req.backend)],
                ),
                deps: vec!["select/set1".into()],
                data: vec!["corpus".into()],
                outputs: vec!["ppxc/set1".into()],
                estimate_s: 15.0 * 7.0 * (z.ppxc_rows * z.row_len) as f64 / 300.0 + 5.0,
                exclusive: true,
            });

            for task in ["xnli", "xquad"] {
                let task_langs = task_langs(task);
                let (n_train, epochs, n_eval) = if task == "xnli" {
                    (z.xnli_train, z.xnli_epochs, z.xnli_eval)
                } else {
                    (z.xquad_train, z.xquad_epochs, z.xquad_eval)
                };
                // Cost of one fine-tune and of one language's evaluation (tokens ÷ a 2-core pace).
                let train_s = if task == "xnli" {
                    n_train.unwrap_or(if z.xnli_train_split == "test" { 5010 } else { 2490 }) as f64 * 50.0 / 250.0
                } else {
                    n_train.unwrap_or(952) as f64 * epochs.unwrap_or(3) as f64 * 260.0 / 250.0
                } + 4.0;
                let eval_s = |n: usize| {
                    3.0 + n as f64
                        * if task == "xnli" {
                            n_eval.unwrap_or(if z.xnli_eval_split == "dev" { 2490 } else { 5010 }) as f64 * 50.0 / 800.0
                        } else {
                            n_eval.unwrap_or(238) as f64 * (300.0 / 800.0 + z.max_new_tokens as f64 / 30.0)
                        }
                };
                let task_eval = |langs: &[&str], n_eval: Option<usize>| -> Vec<String> {
                    let mut a =
                        argv(&["eval", "--task", task, "--lang", &langs.join(",")], vec![opt("--limit", n_eval)]);
                    if task == "xnli" {
                        a.extend(argv(&["--protocol", "head", "--split", &z.xnli_eval_split], vec![]));
                    } else {
                        a.extend(argv(&["--max-new-tokens", &z.max_new_tokens.to_string()], vec![]));
                    }
                    a
                };
                // Fine-tunes on English.
                for (ftl, set) in fine_tunes(task_langs).into_iter().filter(|(f, _)| z.all_ftls || f == "null") {
                    for k in 0..z.seeds {
                        let key = seeded(&format!("train/{task}/{ftl}"), "/", k);
                        let dir = ft_dir(task, &ftl, k);
                        let lsn_ftl = ftl.split('@').next().unwrap_or(&ftl).to_string();
                        let mut a = argv(
                            &["train", "--task", task, "--ftl", &lsn_ftl, "--preset", &z.preset, "--out", &out(&dir)],
                            vec![
                                opt("--limit", n_train),
                                opt("--epochs", epochs),
                                opt("--seed", Some(42 + req.seed + k as u64)),
                            ],
                        );
                        if task == "xnli" {
                            a.extend(argv(&["--split", &z.xnli_train_split], vec![]));
                        } else {
                            a.extend(argv(&["--loss-on", &z.xquad_loss_on], vec![]));
                        }
                        let mut deps = vec![];
                        if let Some(set) = set {
                            // A small model can leave a language without LAPE neurons: that fine-tune then trains as null
                            // does, and the report says so.
                            a.extend(argv(
                                &["--neurons", &out(&format!("neurons/{set}/{FTL_METHOD}.json")), "--allow-empty-set"],
                                vec![],
                            ));
                            deps.push(format!("select/{set}"));
                        }
                        a.extend(common(&req.task_backend));
                        stages.push(Stage {
                            key: key.clone(),
                            argv: a,
                            deps,
                            data: vec![task.into()],
                            outputs: vec![dir.clone()],
                            estimate_s: train_s * if ftl == "null" { 1.0 } else { 1.3 },
                            exclusive: false,
                        });
                        trains.push(TrainRole {
                            stage: key.clone(),
                            task: task.into(),
                            ftl: lsn_ftl.clone(),
                            set: set.map(str::to_string),
                            dir: dir.clone(),
                            seed_index: k,
                        });
                        // Which languages this fine-tune is evaluated on: null on all; en on its set's languages; the others
                        // on their target only.
                        let eval_langs: Vec<&str> = match ftl.as_str() {
                            "null" => task_langs.to_vec(),
                            f if f.starts_with("en@") => {
                                task_langs.iter().copied().filter(|l| Some(set_of(l)) == set).collect()
                            }
                            f => vec![f.rsplit(['+', ':']).next().unwrap_or(f)],
                        };
                        let ekey = seeded(&format!("eval/{task}/ftl/{}", ftl.replace(':', "-")), "/", k);
                        let edir = seeded(&format!("eval/{task}-ftl-{}", ftl.replace([':', '@'], "-")), "-", k);
                        let mut a = task_eval(&eval_langs, n_eval);
                        a.extend(argv(
                            &["--adapter", &out(&dir), "--out", &out(&edir)],
                            vec![common(&req.task_backend)],
                        ));
                        stages.push(Stage {
                            key: ekey.clone(),
                            argv: a,
                            deps: vec![key.clone()],
                            data: vec![task.into()],
                            outputs: vec![edir.clone()],
                            estimate_s: eval_s(eval_langs.len()),
                            exclusive: false,
                        });
                        evals.push(EvalRole {
                            stage: ekey,
                            task: task.into(),
                            kind: "ftl".into(),
                            ftl: Some(lsn_ftl),
                            method: set.map(|_| FTL_METHOD.to_string()),
                            fill: None,
                            langs: eval_langs.iter().map(|s| s.to_string()).collect(),
                            results: format!("{edir}/results.json"),
                            seed_index: k,
                        });
                    }
                }

                // Test-time interventions on the FTL-null fine-tune: each language's own set, per set file.
                for (method, fills) in [(INTERVENTION_METHOD, &z.act_prob_fills), (FTL_METHOD, &z.lape_fills)] {
                    for fill in fills {
                        for (set, k) in ["set1", "set6"].into_iter().flat_map(|s| (0..z.seeds).map(move |k| (s, k))) {
                            let langs: Vec<&str> = task_langs.iter().copied().filter(|l| set_of(l) == set).collect();
                            if langs.is_empty() {
                                continue;
                            }
                            let key = seeded(&format!("eval/{task}/int/{method}/{fill}/{set}"), "/", k);
                            let dir = seeded(&format!("eval/{task}-int-{method}-{fill}-{set}"), "-", k);
                            let mut a = task_eval(&langs, n_eval);
                            a.extend(argv(
                                &[
                                    "--adapter",
                                    &out(&ft_dir(task, "null", k)),
                                    "--neurons",
                                    &out(&format!("neurons/{set}/{method}.json")),
                                    "--fill",
                                    fill,
                                    "--allow-empty-set",
                                    "--out",
                                    &out(&dir),
                                ],
                                vec![common(&req.task_backend)],
                            ));
                            stages.push(Stage {
                                key: key.clone(),
                                argv: a,
                                deps: vec![seeded(&format!("train/{task}/null"), "/", k), format!("select/{set}")],
                                data: vec![task.into()],
                                outputs: vec![dir.clone()],
                                estimate_s: eval_s(langs.len()),
                                exclusive: false,
                            });
                            evals.push(EvalRole {
                                stage: key,
                                task: task.into(),
                                kind: "intervention".into(),
                                ftl: Some("null".into()),
                                method: Some(method.into()),
                                fill: Some(fill.clone()),
                                langs: langs.iter().map(|s| s.to_string()).collect(),
                                results: format!("{dir}/results.json"),
                                seed_index: k,
                            });
                        }
                    }
                }
            }
        }
        Plan { request: req, sets, stages, evals, trains }
    }

    /// The stage called `key`.
    pub fn stage(&self, key: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.key == key)
    }

    /// Checks that every dependency names an earlier stage (the order is the execution order).
    pub fn check(&self) -> Result<()> {
        for (i, s) in self.stages.iter().enumerate() {
            for d in &s.deps {
                if !self.stages[..i].iter().any(|p| &p.key == d) {
                    bail!("internal: stage {} needs {d}, which does not come before it", s.key);
                }
            }
        }
        Ok(())
    }
}

/// The language-forcing stages: each language's mean layer outputs over its captured rows, then per steering
/// operation and neuron set one `lsn forcing` of the set's targets from English prompts (its random control inside).
fn forcing_stages(req: &Request, common: &[String], stages: &mut Vec<Stage>) {
    let z = &req.sizes;
    let langs: Vec<&str> = std::iter::once("en").chain(FORCING_TARGETS).collect();
    stages.push(Stage {
        key: "layer-means".into(),
        argv: argv(
            &["layer-means", "--run", OUT, "--lang", &langs.join(","), "--max-rows", &z.layer_means_rows.to_string()],
            vec![common.to_vec()],
        ),
        deps: vec!["gather".into()],
        data: vec!["corpus".into()],
        outputs: langs.iter().map(|l| format!("layer-means/{l}.json")).collect(),
        estimate_s: langs.len() as f64 * (z.layer_means_rows * z.row_len) as f64 / 600.0 + 5.0,
        exclusive: false,
    });
    for (op, op_args) in FORCING {
        for set in ["set1", "set6"] {
            let targets: Vec<&str> = FORCING_TARGETS.iter().copied().filter(|l| set_of(l) == set).collect();
            let file = format!("forcing/{op}-{set}.json");
            let mut a = argv(
                &["forcing", "--neurons", &out(&format!("neurons/{set}/{FORCING_METHOD}.json")), "--source", "en"],
                vec![],
            );
            a.extend(op_args.iter().map(|s| s.to_string()));
            a.extend(argv(
                &[
                    "--targets",
                    &targets.join(","),
                    "--prompts",
                    &z.forcing_prompts.to_string(),
                    "--max-new-tokens",
                    &z.forcing_new_tokens.to_string(),
                    "--control-seed",
                    &(req.seed + 1).to_string(),
                    "--allow-empty-set",
                    "--out",
                    &out(&file),
                ],
                vec![common.to_vec()],
            ));
            let mut deps = vec![format!("select/{set}")];
            if op == "diffmean" {
                deps.push("layer-means".into());
            }
            // Unsteered, steered and control continuations of every target, plus their scoring.
            let tokens = (1 + 2 * targets.len()) * z.forcing_prompts * z.forcing_new_tokens;
            stages.push(Stage {
                key: format!("forcing/{op}/{set}"),
                argv: a,
                deps,
                data: vec!["corpus".into()],
                outputs: vec![file.clone(), file.replace(".json", ".md"), file.replace(".json", ".parts")],
                estimate_s: tokens as f64 / 60.0 + 5.0,
                exclusive: false,
            });
        }
    }
}

/// The languages each task evaluates.
pub fn task_langs(task: &str) -> &'static [&'static str] {
    if task == "xnli" { &XNLI_LANGS } else { &XQUAD_LANGS }
}

/// Examples per language of the base model's zero-shot evaluation of `task` (`None`: all), which subnetwork training's
/// evaluations share so that every arm is scored on the same examples.
fn zero_shot_limit(task: &str, z: &Sizes) -> Option<usize> {
    let n_eval = if task == "xnli" { z.xnli_eval } else { z.xquad_eval };
    match (n_eval, z.baseline_eval) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `lsn eval` of `task` on `langs`, zero-shot (XNLI: lm-eval's protocol; XQuAD: the paper's prompt, greedy), on
/// [`zero_shot_limit`] examples, and its rough cost in seconds.
fn zero_shot(task: &str, langs: &[&str], z: &Sizes) -> (Vec<String>, f64) {
    let n = zero_shot_limit(task, z);
    let mut a = argv(&["eval", "--task", task, "--lang", &langs.join(",")], vec![opt("--limit", n)]);
    let per_lang = if task == "xnli" {
        a.extend(argv(&["--split", &z.xnli_eval_split], vec![]));
        // Three scored continuations of ~50 tokens per pair.
        n.unwrap_or(if z.xnli_eval_split == "dev" { 2490 } else { 5010 }) as f64 * 3.0 * 50.0 / 800.0
    } else {
        a.extend(argv(&["--max-new-tokens", &z.max_new_tokens.to_string()], vec![]));
        n.unwrap_or(238) as f64 * (300.0 / 800.0 + z.max_new_tokens as f64 / 30.0)
    };
    (a, 3.0 + langs.len() as f64 * per_lang)
}

/// The base model's zero-shot evaluation of `task`: the sanity baseline of the paper's tables and subnetwork training's
/// base arm — with --backend all, again on every other backend (the same examples, so the predictions must agree).
fn baseline_stages(
    req: &Request,
    task: &str,
    common: &dyn Fn(&str) -> Vec<String>,
    stages: &mut Vec<Stage>,
    evals: &mut Vec<EvalRole>,
) {
    let langs = task_langs(task);
    let (base, cost) = zero_shot(task, langs, &req.sizes);
    let on =
        std::iter::once((String::new(), &req.backend)).chain(req.compare_backends.iter().map(|b| (format!("@{b}"), b)));
    for (suffix, b) in on {
        let key = format!("eval/{task}/baseline{suffix}");
        let dir = format!("eval/{task}-baseline{}", suffix.replace('@', "-"));
        let mut a = base.clone();
        a.extend(argv(&["--out", &out(&dir)], vec![common(b)]));
        stages.push(Stage {
            key: key.clone(),
            argv: a,
            deps: vec![],
            data: vec![task.into()],
            outputs: vec![dir.clone()],
            estimate_s: cost,
            exclusive: false,
        });
        evals.push(EvalRole {
            stage: key,
            task: task.into(),
            kind: format!("baseline{suffix}"),
            ftl: None,
            method: None,
            fill: None,
            langs: langs.iter().map(|s| s.to_string()).collect(),
            results: format!("{dir}/results.json"),
            seed_index: 0,
        });
    }
}

/// The arms of subnetwork training, each `lsn train --task lm` on a target's text: (name, its FTL as the report
/// shows it, the `lsn train` arguments past the shared ones). The target's LAPE neurons (arXiv 2510.13580's claim),
/// random neurons of the same per-layer count, and a q,v LoRA as large as the first (the equal-budget control; its
/// FTL, null to `lsn train`, is shown as `attention:L`).
pub fn arms(target: &str) -> [(&'static str, String, Vec<String>); 3] {
    [
        ("subnetwork", target.to_string(), vec!["--ftl".into(), target.into()]),
        ("random", format!("random:{target}"), vec!["--ftl".into(), format!("random:{target}")]),
        (
            "attention",
            format!("attention:{target}"),
            vec!["--targets".into(), "q,v".into(), "--match-params".into(), target.into()],
        ),
    ]
}

/// The arms' evaluations a report reads: the task's kind `lm` (one [`EvalRole`] per arm, target and seed, `ftl` the
/// arm's FTL), and the held-out perplexity (task `ppl`; `lsn ppl --json`'s document, not a results.json).
pub const LM_KIND: &str = "lm";
pub const PPL_TASK: &str = "ppl";

/// Subnetwork training: per target language and training seed, each arm of [`arms`] trained on the target's text,
/// then its held-out perplexity and, where the task evaluates the target, XNLI and XQuAD zero-shot on the examples of
/// the base model's baseline; the base model's held-out perplexity once per target.
fn subnetwork_stages(
    req: &Request,
    common: &[String],
    stages: &mut Vec<Stage>,
    evals: &mut Vec<EvalRole>,
    trains: &mut Vec<TrainRole>,
) {
    let z = &req.sizes;
    let tokens_per_row = z.row_len as f64;
    let ppl_s = 3.0 + z.heldout_rows as f64 * tokens_per_row / 600.0;
    for target in &z.subnetwork_targets {
        let target = target.as_str();
        let set = set_of(target);
        // The held-out perplexity of `arm` (the report's FTL `ftl`; the base model without an adapter).
        let ppl = |arm: &str, ftl: &str, adapter: Option<&str>, dep: Option<&str>, k: usize| {
            let key = seeded(&format!("eval/lm/{arm}/{target}/ppl"), "/", k);
            let file = seeded(&format!("eval/lm-{arm}-{target}-ppl"), "-", k) + ".json";
            let mut a = argv(
                &["ppl", "--heldout", OUT, "--lang", target, "--rows", &z.heldout_rows.to_string(), "--batch", "1"],
                vec![],
            );
            if let Some(d) = adapter {
                a.extend(argv(&["--adapter", &out(d)], vec![]));
            }
            a.extend(argv(&["--json", &out(&file)], vec![common.to_vec()]));
            let stage = Stage {
                key: key.clone(),
                argv: a,
                deps: std::iter::once("gather".to_string()).chain(dep.map(str::to_string)).collect(),
                data: vec!["corpus".into()],
                outputs: vec![file.clone()],
                estimate_s: ppl_s,
                exclusive: false,
            };
            let role = EvalRole {
                stage: key,
                task: PPL_TASK.into(),
                kind: LM_KIND.into(),
                ftl: Some(ftl.to_string()),
                method: adapter.map(|_| FTL_METHOD.into()),
                fill: None,
                langs: vec![target.to_string()],
                results: file,
                seed_index: k,
            };
            (stage, role)
        };
        let (s, r) = ppl("base", "base", None, None, 0);
        stages.push(s);
        evals.push(r);
        for k in 0..z.subnetwork_seeds {
            for (arm, ftl, arm_args) in arms(target) {
                let key = seeded(&format!("train/lm/{arm}/{target}"), "/", k);
                let dir = seeded(&format!("adapters/lm-{arm}-{target}"), "-", k);
                let mut a = argv(
                    &[
                        "train",
                        "--task",
                        "lm",
                        "--text",
                        target,
                        "--stats-run",
                        OUT,
                        "--neurons",
                        &out(&format!("neurons/{set}/{FTL_METHOD}.json")),
                        "--allow-empty-set",
                        "--preset",
                        "subnetwork",
                        "--extra-rows",
                        &z.lm_extra_rows.to_string(),
                        "--seed",
                        &(42 + req.seed + k as u64).to_string(),
                        "--out",
                        &out(&dir),
                    ],
                    vec![arm_args],
                );
                a.extend(common.iter().cloned());
                let rows = (z.capture_tokens.unwrap_or(60_000) as f64 / tokens_per_row).ceil() + z.lm_extra_rows as f64;
                stages.push(Stage {
                    key: key.clone(),
                    argv: a,
                    deps: vec!["gather".into(), format!("select/{set}")],
                    data: vec!["corpus".into()],
                    outputs: vec![dir.clone()],
                    // Forward and backward over every row, at a 2-core pace of ~300 tokens/s.
                    estimate_s: 5.0 + rows * tokens_per_row / 300.0,
                    exclusive: false,
                });
                trains.push(TrainRole {
                    stage: key.clone(),
                    task: "lm".into(),
                    ftl: ftl.clone(),
                    set: Some(set.into()),
                    dir: dir.clone(),
                    seed_index: k,
                });
                let (s, r) = ppl(arm, &ftl, Some(&dir), Some(&key), k);
                stages.push(s);
                evals.push(r);
                for task in ["xnli", "xquad"].into_iter().filter(|t| task_langs(t).contains(&target)) {
                    let ekey = seeded(&format!("eval/lm/{arm}/{target}/{task}"), "/", k);
                    let edir = seeded(&format!("eval/lm-{arm}-{target}-{task}"), "-", k);
                    let (mut a, cost) = zero_shot(task, &[target], z);
                    a.extend(argv(&["--adapter", &out(&dir), "--out", &out(&edir)], vec![common.to_vec()]));
                    stages.push(Stage {
                        key: ekey.clone(),
                        argv: a,
                        deps: vec![key.clone()],
                        data: vec![task.into()],
                        outputs: vec![edir.clone()],
                        estimate_s: cost,
                        exclusive: false,
                    });
                    evals.push(EvalRole {
                        stage: ekey,
                        task: task.into(),
                        kind: LM_KIND.into(),
                        ftl: Some(ftl.clone()),
                        method: Some(FTL_METHOD.into()),
                        fill: None,
                        langs: vec![target.to_string()],
                        results: format!("{edir}/results.json"),
                        seed_index: k,
                    });
                }
            }
        }
    }
}

/// `argv` with `$OUT` replaced by the run directory.
pub fn resolve(argv: &[String], root: &Path) -> Vec<String> {
    let root = root.display().to_string();
    argv.iter().map(|a| a.replace(OUT, &root)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(scale: Scale) -> Plan {
        plan_of(scale, Study::Mondal)
    }

    fn plan_of(scale: Scale, study: Study) -> Plan {
        Plan::new(Request {
            scale,
            study,
            backend: "candle".into(),
            task_backend: "candle".into(),
            device: "cpu".into(),
            dtype: "f32".into(),
            tap_point: "act".into(),
            seed: 0,
            model: "gemma-3-270m".into(),
            sizes: Sizes::of(scale),
            compare_backends: vec![],
            margin: 2.0,
            forcing_margin: 10.0,
        })
    }

    #[test]
    fn the_arithmetics_study_forces_every_target_with_every_operation_and_trains_nothing() {
        let p = plan_of(Scale::Default, Study::Arithmetics);
        p.check().unwrap();
        assert!(p.trains.is_empty() && p.evals.is_empty() && p.stage("ppxc/set1").is_none());
        for (op, _) in FORCING {
            for set in ["set1", "set6"] {
                let s = p.stage(&format!("forcing/{op}/{set}")).unwrap_or_else(|| panic!("no forcing/{op}/{set}"));
                assert!(s.deps.contains(&format!("select/{set}")));
                assert_eq!(s.deps.contains(&"layer-means".to_string()), op == "diffmean");
                let targets = &s.argv[s.argv.iter().position(|a| a == "--targets").unwrap() + 1];
                assert_eq!(targets, if set == "set1" { "vi,zh" } else { "hi,ur" });
                assert!(s.argv.windows(2).any(|w| w == ["--prompts", "50"]));
            }
        }
        // The mondal study has no forcing stage; `all` has both.
        assert!(plan(Scale::Default).stages.iter().all(|s| !s.key.starts_with("forcing/")));
        let all = plan_of(Scale::Smoke, Study::All);
        assert!(all.stage("forcing/add/set1").is_some() && all.stage("ppxc/set1").is_some());
        all.check().unwrap();
    }

    #[test]
    fn the_subnetwork_study_trains_three_arms_per_target_and_seed_and_scores_each_on_the_baselines_examples() {
        assert_eq!(Sizes::of(Scale::Default).subnetwork_targets, ["vi"]);
        let mut req = plan_of(Scale::Default, Study::Subnetwork).request;
        req.sizes.subnetwork_targets = vec!["vi".into(), "hi".into()];
        let p = Plan::new(req);
        p.check().unwrap();
        assert!(p.stage("ppxc/set1").is_none() && p.stage("forcing/add/set1").is_none());
        assert!(p.stage("train/xnli/null").is_none());
        let has = |key: &str, words: &[&str]| {
            let s = p.stage(key).unwrap_or_else(|| panic!("no stage {key}"));
            for w in words.windows(2).step_by(2) {
                assert!(s.argv.windows(2).any(|a| a == w), "{key}: no {w:?} in {:?}", s.argv);
            }
            s
        };
        for (t, set) in [("vi", "set1"), ("hi", "set6")] {
            has(&format!("eval/lm/base/{t}/ppl"), &["--lang", t, "--rows", "16"]);
            for k in 0..2 {
                let seed = (42 + k).to_string();
                let sfx = if k == 0 { String::new() } else { format!("/seed{k}") };
                let neurons = format!("$OUT/neurons/{set}/lape-mondal.json");
                let tr = |arm: &str| format!("train/lm/{arm}/{t}{sfx}");
                has(&tr("subnetwork"), &["--ftl", t, "--extra-rows", "24", "--seed", &seed, "--neurons", &neurons]);
                has(&tr("random"), &["--ftl", &format!("random:{t}"), "--seed", &seed]);
                has(&tr("attention"), &["--targets", "q,v", "--match-params", t, "--text", t]);
                for arm in ["subnetwork", "random", "attention"] {
                    let dir = format!("$OUT/adapters/lm-{arm}-{t}{}", sfx.replace('/', "-"));
                    let ppl = has(&format!("eval/lm/{arm}/{t}/ppl{sfx}"), &["--adapter", &dir]);
                    assert_eq!(ppl.deps[1], tr(arm));
                    // XNLI and XQuAD zero-shot on the baseline's examples: its limit and split.
                    let x = has(&format!("eval/lm/{arm}/{t}/xnli{sfx}"), &["--adapter", &dir, "--limit", "200"]);
                    assert!(
                        x.argv.windows(2).any(|w| w == ["--split", "dev"]) && !x.argv.contains(&"--protocol".into())
                    );
                    has(&format!("eval/lm/{arm}/{t}/xquad{sfx}"), &["--limit", "30", "--max-new-tokens", "40"]);
                }
            }
        }
        let b = p.stage("eval/xnli/baseline").unwrap();
        assert!(
            b.argv.windows(2).any(|w| w == ["--limit", "200"]) && b.argv.windows(2).any(|w| w == ["--split", "dev"])
        );
        // 2 targets × 2 seeds × 3 arms, each a training, and a role per score it is evaluated on.
        assert_eq!(p.trains.iter().filter(|t| t.task == "lm").count(), 12);
        assert_eq!(p.evals.iter().filter(|e| e.kind == LM_KIND).count(), 2 + 12 * 3);
        assert!(p.trains.iter().any(|t| t.ftl == "attention:hi" && t.seed_index == 1));
        let outs: Vec<_> = p.stages.iter().flat_map(|s| &s.outputs).collect();
        assert_eq!(outs.iter().collect::<std::collections::BTreeSet<_>>().len(), outs.len());
        // `all` holds every study once: the baselines are shared.
        let all = plan_of(Scale::Default, Study::All);
        all.check().unwrap();
        for key in ["ppxc/set1", "forcing/diffmean/set6", "train/lm/attention/vi/seed1", "train/xnli/null"] {
            assert!(all.stage(key).is_some(), "{key}");
        }
        assert_eq!(all.stages.iter().filter(|s| s.key == "eval/xnli/baseline").count(), 1);
        let keys: std::collections::BTreeSet<_> = all.stages.iter().map(|s| &s.key).collect();
        assert_eq!(keys.len(), all.stages.len());
    }

    #[test]
    fn every_table_cell_has_a_stage_and_dependencies_come_first() {
        let p = plan(Scale::Full);
        p.check().unwrap();
        let keys: std::collections::BTreeSet<_> = p.stages.iter().map(|s| &s.key).collect();
        assert_eq!(keys.len(), p.stages.len(), "stage keys are unique");
        let outs: Vec<_> = p.stages.iter().flat_map(|s| &s.outputs).collect();
        let uniq: std::collections::BTreeSet<_> = outs.iter().collect();
        assert_eq!(uniq.len(), outs.len(), "no two stages own the same output");
        for task in ["xnli", "xquad"] {
            let langs: &[&str] = if task == "xnli" { &XNLI_LANGS } else { &XQUAD_LANGS };
            for l in langs {
                for fill in FILLS {
                    let n = p
                        .evals
                        .iter()
                        .filter(|e| e.task == task && e.kind == "intervention" && e.fill.as_deref() == Some(fill))
                        .filter(|e| e.method.as_deref() == Some(INTERVENTION_METHOD) && e.langs.iter().any(|x| x == l))
                        .count();
                    assert_eq!(n, 1, "{task} {l} {fill}");
                }
                for ftl in ["null".to_string(), "en".into(), l.to_string(), format!("en+{l}"), format!("random:{l}")] {
                    let n = p
                        .evals
                        .iter()
                        .filter(|e| e.task == task && e.kind == "ftl" && e.ftl.as_deref() == Some(&ftl))
                        .filter(|e| e.langs.iter().any(|x| x == l))
                        .count();
                    assert_eq!(n, 1, "{task} {l} FTL {ftl}");
                }
            }
        }
        // The default scale trains FTL null only, on XNLI's English test split, and evaluates on the dev split.
        let d = plan(Scale::Default);
        d.check().unwrap();
        assert!(d.trains.iter().all(|t| t.ftl == "null") && d.trains.len() == 2, "{:?}", d.trains);
        let b = d.stage("eval/xnli/baseline").unwrap().argv.join(" ");
        assert!(
            b.contains("--limit 200") && d.stage("eval/xquad/baseline").unwrap().argv.contains(&"30".into()),
            "{b}"
        );
        let t = d.stage("train/xnli/null").unwrap().argv.join(" ");
        assert!(t.contains("--split test") && !t.contains("--limit"), "{t}");
        assert!(
            d.evals
                .iter()
                .filter(|e| e.task == "xnli")
                .all(|e| { d.stage(&e.stage).unwrap().argv.windows(2).any(|w| w[0] == "--split" && w[1] == "dev") })
        );
        assert_eq!(d.evals.iter().filter(|e| e.kind == "intervention").count(), 2 * 2 * (7 + 2));
        // hi and ur share set 6's English fine-tune; vi's comes from set 1.
        let en6 = p.evals.iter().find(|e| e.stage == "eval/xnli/ftl/en@set6").unwrap();
        assert_eq!(en6.langs, ["hi", "ur"]);
        let t = p.stage("train/xnli/en+ur").unwrap();
        assert!(t.argv.join(" ").contains("--ftl en+ur") && t.argv.join(" ").contains("neurons/set6/lape-mondal.json"));
    }

    #[test]
    fn backend_all_repeats_the_cheap_stages_on_the_other_backends() {
        let mut req = plan(Scale::Smoke).request;
        req.compare_backends = vec!["tch".into(), "ort".into()];
        let p = Plan::new(req);
        p.check().unwrap();
        assert!(p.stage("select/set6@ort").unwrap().argv.contains(&"$OUT/backends/ort".to_string()));
        for key in ["capture@tch", "capture@ort", "eval/xnli/baseline@tch", "eval/xquad/baseline@ort"] {
            let s = p.stage(key).unwrap_or_else(|| panic!("no stage {key}"));
            let b = key.rsplit('@').next().unwrap();
            assert!(s.argv.windows(2).any(|w| w[0] == "--backend" && w[1] == b), "{key}: {:?}", s.argv);
        }
        assert!(p.stage("capture@tch").unwrap().argv.contains(&"$OUT/backends/tch".to_string()));
        assert!(p.stage("select/set1@tch").unwrap().deps == ["capture@tch"]);
        let outs: Vec<_> = p.stages.iter().flat_map(|s| &s.outputs).collect();
        let uniq: std::collections::BTreeSet<_> = outs.iter().collect();
        assert_eq!(uniq.len(), outs.len());
        // The study itself is unchanged: only the capture, selection and baseline stages are repeated.
        assert_eq!(p.stages.len(), plan(Scale::Smoke).stages.len() + 2 * (3 + 2));
    }

    #[test]
    fn the_paper_scale_uses_the_paper_preset_and_every_fill() {
        let p = plan(Scale::Paper);
        assert!(p.stages.iter().filter(|s| s.key.starts_with("train/")).all(|s| s.argv.contains(&"paper".into())));
        assert_eq!(p.request.sizes.lape_fills.len(), FILLS.len());
        assert!(!p.stage("capture/en").unwrap().argv.contains(&"--max-tokens".into()));
        // All the text but what PPXC (16 rows), the subnetwork perplexity (16) and LM training (24 extra rows) need,
        // with a skipped row on either side of the held-out rows; a budgeted capture leaves none.
        let leave = ["--leave-rows".to_string(), "42".into()];
        assert!(p.stage("capture/vi").unwrap().argv.windows(2).any(|w| w == leave));
        assert_eq!(Sizes::of(Scale::Full).capture_leave_rows(), 42);
        assert!(!plan(Scale::Default).stage("capture/vi").unwrap().argv.contains(&leave[0]));
        // Each language's capture in its own run directory, gathered before selection.
        assert!(p.stage("capture/ur").unwrap().argv.contains(&"$OUT/capture/ur".to_string()));
        let gather = p.stage("gather").unwrap();
        assert_eq!(gather.deps.len(), 16);
        assert!(gather.exclusive && p.stage("select/set1").unwrap().deps == ["gather"]);
    }

    #[test]
    fn seeds_repeat_every_fine_tune_and_what_evaluates_it() {
        let mut req = plan(Scale::Default).request;
        req.sizes.seeds = 3;
        let p = Plan::new(req);
        p.check().unwrap();
        let one = plan(Scale::Default);
        assert_eq!(p.trains.len(), 3 * one.trains.len());
        let count = |p: &Plan, kind: &str| p.evals.iter().filter(|e| e.kind == kind).count();
        assert_eq!(count(&p, "ftl"), 3 * count(&one, "ftl"));
        assert_eq!(count(&p, "intervention"), 3 * count(&one, "intervention"));
        assert_eq!(count(&p, "baseline"), count(&one, "baseline"));
        // Seed k trains with 42 + --seed + k; an intervention of seed k reads the null fine-tune of seed k, which an
        // FTL of seed k shares.
        let t = p.stage("train/xnli/null/seed2").unwrap();
        assert!(
            t.argv.windows(2).any(|w| w[0] == "--seed" && w[1] == "44")
                && t.argv.contains(&"$OUT/adapters/xnli-null-seed2".into())
        );
        let e = p.stage("eval/xquad/int/act-prob-90p/p90/set1/seed1").unwrap();
        assert_eq!(e.deps[0], "train/xquad/null/seed1");
        assert!(e.argv.contains(&"$OUT/adapters/xquad-null-seed1".into()));
        for r in &p.evals {
            assert!(r.kind == "baseline" || p.trains.iter().any(|t| t.seed_index == r.seed_index && t.task == r.task));
        }
        let outs: Vec<_> = p.stages.iter().flat_map(|s| &s.outputs).collect();
        let uniq: std::collections::BTreeSet<_> = outs.iter().collect();
        assert_eq!(uniq.len(), outs.len(), "no two seeds share an output");
    }
}
