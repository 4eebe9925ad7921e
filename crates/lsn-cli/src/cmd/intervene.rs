//! The intervention options shared by the commands that run a model (`ppl`, `generate`, `eval`, `forcing`): a neuron
//! file from `lsn select`, whose set of a language is overwritten at every position with one value per neuron, or
//! steered (scaled, added to, or Language Arithmetics' deactivate-source + activate-target pair).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use lsn_capture::StatsFile;
use lsn_core::{Fill, Intervention, ModelConfig, ModelIdentity, NeuronId, Steer, identity::short};
use lsn_data::Tokenizer;
use lsn_select::Selection;

/// Test-time interventions.
#[derive(Debug, Clone, clap::Args)]
pub struct InterveneArgs {
    /// A neuron file from `lsn select` (RUN/neurons/[SET/]METHOD.json): the neurons of the evaluated language's own
    /// set are overwritten at every position of every forward pass (prompt, padding, generated tokens).
    #[arg(long)]
    pub neurons: Option<PathBuf>,
    /// The value written into each chosen neuron: zero, or the evaluated language's own per-neuron statistic from its
    /// capture: mean, p5, p10, p25, p50, p75, p90, p95 (batch quantiles averaged over batches).
    #[arg(long, requires = "neurons", default_value = "zero")]
    pub fill: String,
    /// What is done to the language's neurons: `fill` (the paper's: set to --fill), `scale` (multiplied by
    /// --alpha), `add` (--alpha times the language's mean activation added: Language Arithmetics' activation),
    /// `arithmetic` (--source-lang's neurons set to 0, then `add` on the language's), or no neuron but `diffmean`
    /// (CLaS-Bench: the language's mean output of layer --steer-layer minus --source-lang's, as a unit vector times
    /// --alpha × the difference's own norm, added to that layer's output; needs `lsn layer-means` of both).
    #[arg(long, requires = "neurons", default_value = "fill")]
    pub steer: String,
    /// The steering strength α of `scale`, `add` and `arithmetic` (Language Arithmetics' code: 1), and of `diffmean`
    /// in units of the difference's norm (1: the source's mean moved onto the target's).
    #[arg(long, requires = "neurons", default_value_t = 1.0, allow_negative_numbers = true)]
    pub alpha: f32,
    /// The language whose neurons `arithmetic` deactivates, and whose mean `diffmean` steers away from (the
    /// prompt's language; e.g. en).
    #[arg(long, requires = "neurons")]
    pub source_lang: Option<String>,
    /// The layer whose output `diffmean` steers [default: 5/8 of the depth, rounded: CLaS-Bench's pick for
    /// Llama-3.1-8B, layer 20 of 32].
    #[arg(long, requires = "neurons")]
    pub steer_layer: Option<u32>,
    /// Apply this language's neuron set instead of the evaluated language's own (e.g. English neurons on Hindi);
    /// the fill values still come from the evaluated language's statistics.
    #[arg(long, requires = "neurons")]
    pub neuron_lang: Option<String>,
    /// The capture run whose statistics (RUN/stats/LANG.safetensors) give the fill values [default: the run that
    /// holds --neurons].
    #[arg(long, requires = "neurons")]
    pub stats_run: Option<PathBuf>,
    /// The matched random control: overwrite, instead of a language's set, random neurons with the same count in
    /// every layer, drawn with this seed (plus the set's position in the neuron file, so each language's control
    /// stays the same whichever languages are evaluated together). Fill values as without it.
    #[arg(long, requires = "neurons")]
    pub random_like: Option<u64>,
    /// Apply a language's set even when it is empty (a small model or capture can leave a language without LAPE
    /// neurons): the "intervention" then changes nothing, and its result is the baseline's — said on stderr. Without
    /// it an empty set is refused.
    #[arg(long, requires = "neurons")]
    pub allow_empty_set: bool,
}

/// A loaded neuron file, ready to give each evaluated language its intervention.
#[derive(Debug)]
pub struct Intervener {
    pub file: PathBuf,
    pub selection: Selection,
    pub fill: Fill,
    pub steer: Steer,
    pub alpha: f32,
    pub source_lang: Option<String>,
    /// The layer `diffmean` steers.
    pub steer_layer: u32,
    pub neuron_lang: Option<String>,
    /// The seed of the matched random control, when it replaces the sets.
    pub random_like: Option<u64>,
    allow_empty_set: bool,
    stats_run: PathBuf,
    intermediate: usize,
    /// The loaded model, which the fill statistics must be of.
    model: ModelIdentity,
    /// Per (language, statistic), the per-neuron values read from its capture.
    values: BTreeMap<(String, Fill), Vec<f32>>,
}

/// The run directory that holds a neuron file `RUN/neurons/[SET/]METHOD.json`.
pub fn run_of(file: &Path) -> Option<PathBuf> {
    file.ancestors()
        .skip(1)
        .find(|a| a.file_name().is_some_and(|n| n == "neurons"))
        .and_then(|n| n.parent())
        .map(|p| if p.as_os_str().is_empty() { PathBuf::from(".") } else { p.to_path_buf() })
}

/// Reads a neuron file written by `lsn select`.
pub fn read_selection(file: &Path) -> Result<Selection> {
    let text = std::fs::read(file).with_context(|| format!("reading the neuron file {}", file.display()))?;
    serde_json::from_slice(&text).with_context(|| {
        format!("{} is not a neuron file written by `lsn select` (RUN/neurons/[SET/]METHOD.json)", file.display())
    })
}

/// Checks that the selection in `file` was made on this model: its shape, and the identity it records (files of
/// older lsn versions record none and are checked by shape only, with a note).
pub fn check_selection(selection: &Selection, file: &Path, cfg: &ModelConfig, model: &ModelIdentity) -> Result<()> {
    ensure!(
        (selection.layers, selection.intermediate) == (cfg.num_layers, cfg.intermediate_size),
        "{} was selected on a model of {} layers × {} FFN neurons, not this one ({} × {}): select neurons on this \
         model",
        file.display(),
        selection.layers,
        selection.intermediate,
        cfg.num_layers,
        cfg.intermediate_size
    );
    match &selection.source {
        Some(src) => lsn_run::check_made_with(
            file,
            &src.model,
            &src.identity(),
            "the model this command loads",
            model,
            "select neurons on this model",
        )?,
        None => eprintln!(
            "note: {} does not record the model it was selected on (made by an older lsn); only its shape was checked",
            file.display()
        ),
    }
    Ok(())
}

impl InterveneArgs {
    /// Reads the neuron file and checks it against the model in `dir` (config `cfg`, tokenizer `tok`); `None`
    /// without `--neurons`. The model's identity (its weights hashed once, then remembered in `home`) is kept to
    /// check the fill statistics against.
    pub fn load(&self, home: &Path, dir: &Path, tok: &Tokenizer, cfg: &ModelConfig) -> Result<Option<Intervener>> {
        let Some(file) = &self.neurons else { return Ok(None) };
        let fill = Fill::parse(&self.fill)?;
        let steer = Steer::parse(&self.steer)?;
        ensure!(
            matches!(steer, Steer::Arithmetic | Steer::DiffMean) || self.source_lang.is_none(),
            "--source-lang names the language `--steer arithmetic` and `--steer diffmean` steer away from; --steer \
             {steer} uses none"
        );
        ensure!(
            steer == Steer::DiffMean || self.steer_layer.is_none(),
            "--steer-layer is the layer `--steer diffmean` adds its vector to; --steer {steer} edits neurons"
        );
        let steer_layer = self.steer_layer.unwrap_or(((cfg.num_layers * 5 + 4) / 8) as u32);
        ensure!(
            (steer_layer as usize) < cfg.num_layers,
            "--steer-layer {steer_layer}: the model has layers 0–{}",
            cfg.num_layers - 1
        );
        ensure!(
            steer == Steer::Fill || self.fill == "zero",
            "--fill sets the value of `--steer fill`; --steer {steer} takes the language's mean activation (add, \
             arithmetic) or none (scale)"
        );
        let selection = read_selection(file)?;
        let model = crate::assets::identity(home, &lsn_weights::open_checkpoint(dir)?, tok)?;
        check_selection(&selection, file, cfg, &model)?;
        for (flag, l) in [("--neuron-lang", &self.neuron_lang), ("--source-lang", &self.source_lang)] {
            if let Some(l) = l {
                ensure!(
                    selection.of(l).is_some(),
                    "{flag} {l}: {} holds sets for {} only",
                    file.display(),
                    selection.languages.join(", ")
                );
            }
        }
        let needs_stats = fill.needs_stats() || steer.needs_mean() || steer == Steer::DiffMean;
        let stats_run = match (&self.stats_run, run_of(file)) {
            (Some(r), _) => r.clone(),
            (None, Some(r)) => r,
            (None, None) if needs_stats => bail!(
                "--fill {fill} / --steer {steer} takes each language's statistics from a capture run, and {} is not \
                 inside one (RUN/neurons/...): give --stats-run RUN",
                file.display()
            ),
            (None, None) => PathBuf::new(),
        };
        Ok(Some(Intervener {
            file: file.clone(),
            selection,
            fill,
            steer,
            alpha: self.alpha,
            source_lang: self.source_lang.clone(),
            steer_layer,
            neuron_lang: self.neuron_lang.clone(),
            random_like: self.random_like,
            allow_empty_set: self.allow_empty_set,
            stats_run,
            intermediate: cfg.intermediate_size,
            model,
            values: BTreeMap::new(),
        }))
    }
}

impl Intervener {
    /// The neurons applied when evaluating `lang`: its set (or --neuron-lang's), or that set's matched random control.
    pub fn neurons_for(&self, lang: &str) -> Result<Vec<NeuronId>> {
        let set = self.neuron_lang.as_deref().unwrap_or(lang);
        let own = self.selection.of(set).with_context(|| {
            format!(
                "{} has no neuron set for {set} (it holds {}): evaluate one of those languages, or give --neuron-lang",
                self.file.display(),
                self.selection.languages.join(", ")
            )
        })?;
        if own.is_empty() {
            ensure!(
                self.allow_empty_set,
                "{set}'s neuron set in {} is empty: overwriting it would change nothing, and the result would be the \
                 baseline's; give --allow-empty-set to run it anyway, or select more neurons (e.g. a higher \
                 --top-rate)",
                self.file.display()
            );
            eprintln!(
                "note: {set}'s neuron set in {} is empty (--allow-empty-set): {lang} is evaluated without any \
                 intervention",
                self.file.display()
            );
        }
        match self.random_like {
            None => Ok(own.to_vec()),
            Some(seed) => random_like(&self.selection, set, seed)
                .with_context(|| format!("the random control of {set}'s set in {}", self.file.display())),
        }
    }

    /// The values of statistic `fill` of `lang`'s capture, read once per language and checked against the model and
    /// the tap point of the neuron file (empty for `Fill::Zero`).
    fn values(&mut self, lang: &str, fill: Fill) -> Result<&[f32]> {
        let model = &self.model;
        let key = (lang.to_owned(), fill);
        if !self.values.contains_key(&key) {
            let v = if fill.needs_stats() {
                let path = self.stats_run.join("stats").join(format!("{lang}.safetensors"));
                ensure!(
                    path.is_file(),
                    "the {fill} values need {lang}'s statistics, and {} does not exist: capture {lang} into {} first",
                    path.display(),
                    self.stats_run.display()
                );
                let f = StatsFile::read(&path)?;
                let prov = &f.meta.provenance;
                ensure!(
                    prov.identity().same_model(model),
                    "{} was captured with another model ({}): they differ in {}",
                    path.display(),
                    prov.model,
                    prov.identity().difference(model)
                );
                if let Some(src) = &self.selection.source {
                    ensure!(
                        src.stats_on == prov.stats_on,
                        "{} holds statistics at tap point {}, but the neurons of {} were selected from statistics at \
                         {}: fill with statistics of the same tap point",
                        path.display(),
                        prov.stats_on,
                        self.file.display(),
                        src.stats_on
                    );
                }
                fill.values(Some(&f.stats)).with_context(|| format!("reading {fill} from {}", path.display()))?
            } else {
                Vec::new()
            };
            self.values.insert(key.clone(), v);
        }
        Ok(&self.values[&key])
    }

    /// The intervention when evaluating `lang`: `--steer` on its neurons (and, for `arithmetic`, --source-lang's).
    pub fn for_lang(&mut self, lang: &str) -> Result<Intervention> {
        let source = self.source_lang.clone();
        self.steer_to(source.as_deref(), lang)
    }

    /// `--steer` towards `target`: on its neurons (or its random control's) with its statistic, and for
    /// `arithmetic` with `source`'s neurons (or their random control) deactivated.
    pub fn steer_to(&mut self, source: Option<&str>, target: &str) -> Result<Intervention> {
        if self.steer == Steer::DiffMean {
            return self.diff_mean(source, target);
        }
        let neurons = self.neurons_for(target)?;
        let source = match (self.steer, source) {
            (Steer::Arithmetic, Some(s)) => Some(self.neurons_for(s)?),
            (Steer::Arithmetic, None) => bail!(
                "`--steer arithmetic` deactivates the source language's neurons: give --source-lang (the language of \
                 the prompts)"
            ),
            _ => None,
        };
        let (steer, alpha, intermediate) = (self.steer, self.alpha, self.intermediate);
        let stat = if steer.needs_mean() { Fill::Mean } else { self.fill };
        let values = if steer == Steer::Scale { &[][..] } else { self.values(target, stat)? };
        Ok(steer.build(source.as_deref(), &neurons, values, alpha, intermediate)?)
    }

    /// `diffmean` from `source` towards `target` at --steer-layer, its norm --alpha × ‖target − source‖; with
    /// --random-like, a random direction of the same norm (seeded as the neuron controls are).
    fn diff_mean(&mut self, source: Option<&str>, target: &str) -> Result<Intervention> {
        let source = source.context(
            "`--steer diffmean` steers from the source language's mean towards the target's: give --source-lang (the \
             language of the prompts)",
        )?;
        let layer = self.steer_layer;
        let s = crate::cmd::layer_means::read(&self.stats_run, source, &self.model)?;
        let t = crate::cmd::layer_means::read(&self.stats_run, target, &self.model)?;
        let (sl, tl) = (&s.mean[layer as usize], &t.mean[layer as usize]);
        let norm = sl.iter().zip(tl).map(|(a, b)| (b - a) * (b - a)).sum::<f64>().sqrt();
        let alpha = (f64::from(self.alpha) * norm) as f32;
        Ok(match self.random_like {
            None => Steer::diff_mean(layer, sl, tl, alpha)?,
            Some(seed) => {
                let position = self.selection.languages.iter().position(|l| l == target).unwrap_or(0) as u64;
                Steer::random_direction(layer, tl.len(), alpha, seed + position)?
            }
        })
    }

    /// What `--steer` does, in words: "fill zero", "scale α = 2", "arithmetic α = 1 (en off)".
    pub fn operation(&self) -> String {
        match self.steer {
            Steer::DiffMean => format!(
                "diffmean α = {} at layer {} (from {})",
                self.alpha,
                self.steer_layer,
                self.source_lang.as_deref().unwrap_or("the source language")
            ),
            Steer::Fill => format!("fill {}", self.fill),
            Steer::Scale | Steer::Add => format!("{} α = {}", self.steer, self.alpha),
            Steer::Arithmetic => format!(
                "arithmetic α = {} ({} off)",
                self.alpha,
                self.source_lang.as_deref().unwrap_or("the source language")
            ),
        }
    }

    /// One line saying what is applied, for tables and logs.
    pub fn describe(&self) -> String {
        let control = self.random_like.map(|s| format!(" (random control, seed {s})")).unwrap_or_default();
        format!(
            "{} neurons of {} ({}){control}, {}",
            self.neuron_lang.as_deref().unwrap_or("each language's own"),
            self.file.display(),
            self.selection.method,
            self.operation()
        )
    }

    /// The intervention as JSON for result files.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "neurons": self.file.display().to_string(), "method": self.selection.method, "fill": self.fill.name(),
            "steer": self.steer.name(), "alpha": self.alpha, "source_lang": self.source_lang,
            "steer_layer": (self.steer == Steer::DiffMean).then_some(self.steer_layer),
            "neuron_lang": self.neuron_lang, "random_like": self.random_like,
            "stats_run": self.stats_run.display().to_string(),
            "selected_on": self.selection.source.as_ref().map(|s| short(&s.weights_sha256).to_owned()),
        })
    }
}

/// The matched random control of language `set` in `selection` ([`Selection::random_like`]), seeded with `seed` plus
/// the set's position among the file's languages.
fn random_like(selection: &Selection, set: &str, seed: u64) -> Result<Vec<NeuronId>> {
    let position = selection.languages.iter().position(|l| l == set).unwrap_or(0) as u64;
    Ok(selection.random_like(set, seed + position)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_random_control_matches_each_layers_count() {
        let ids = |v: &[(u32, u32)]| v.iter().map(|&(l, j)| NeuronId::new(l, j)).collect::<Vec<_>>();
        let vi = ids(&[(0, 1), (2, 3), (2, 4), (2, 9)]);
        let hi = ids(&[(0, 1), (2, 3), (2, 4), (2, 9)]);
        let mut sel = lsn_select::random(3, 64, 1, 0).unwrap();
        sel.languages = vec!["vi".into(), "hi".into()];
        sel.neurons = [("vi".into(), vi.clone()), ("hi".into(), hi)].into();
        sel.per_layer = [("vi".into(), vec![1, 0, 3]), ("hi".into(), vec![1, 0, 3])].into();
        let r = random_like(&sel, "vi", 7).unwrap();
        let layers = |s: &[NeuronId]| (0..3).map(|l| s.iter().filter(|n| n.layer == l).count()).collect::<Vec<_>>();
        assert_eq!(layers(&r), vec![1, 0, 3]);
        assert_ne!(r, vi);
        assert_eq!(r, random_like(&sel, "vi", 7).unwrap());
        assert_ne!(r, random_like(&sel, "vi", 8).unwrap());
        // Equal sets of two languages get different controls: hi, second in the file, draws with seed + 1.
        assert_ne!(r, random_like(&sel, "hi", 7).unwrap());
        assert_eq!(random_like(&sel, "hi", 7).unwrap(), random_like(&sel, "vi", 8).unwrap());
    }

    #[test]
    fn the_run_of_a_neuron_file() {
        assert_eq!(run_of(Path::new("r/neurons/set1/lape-mondal.json")), Some(PathBuf::from("r")));
        assert_eq!(run_of(Path::new("/a/b/neurons/x.json")), Some(PathBuf::from("/a/b")));
        assert_eq!(run_of(Path::new("neurons/x.json")), Some(PathBuf::from(".")));
        assert_eq!(run_of(Path::new("elsewhere/x.json")), None);
    }
}
