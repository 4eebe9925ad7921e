//! The fixed capture slice: Gemma-3-270M over FLORES-200 devtest in seven languages, 1024 tokens each (8 rows × 128
//! in 4 batches of 2 rows, seed 0), captured with `lsn_capture` through a backend and turned into neuron sets by
//! `lsn_select` — the same code paths as `lsn capture` and `lsn select`.
//!
//! Several batches per language matter: with one batch, pass 2 counts activations above that very batch's own p90,
//! so every neuron scores ≈ 10% and ActProb-90p degenerates into breaking a 36864-way tie.

use std::path::Path;

use lsn_capture::{CaptureSpec, NoProgress, Provenance, Shard, StatsFile, capture};
use lsn_core::{ActivationStats, Backend, Lang, LoadOptions, ModelFiles, WeightDType};
use lsn_data::{PackOptions, Packed, Source, Tokenizer, pack_language};
use lsn_select::{CountTable, LapeParams, LapePreset, RANDOM_PER_LAYER, Selection};

use crate::golden::{self, GoldenModel};
use crate::suite::Env;

/// The model of the slice.
pub const MODEL: GoldenModel = GoldenModel { name: "gemma-3-270m", source: golden::Source::Fetched };
/// The languages, as `lsn select`'s snapshot test: Latin-script European, Vietnamese, Chinese, Devanagari and Arabic
/// script.
pub const LANGS: &[&str] = &["en", "fr", "es", "vi", "zh", "hi", "ur"];
pub const ROW_LEN: usize = 128;
pub const MAX_TOKENS: u64 = 1024;
pub const BATCH_ROWS: usize = 2;
pub const SEED: u64 = 0;
/// Seed of the random control.
pub const RANDOM_SEED: u64 = 0;

/// The case name of the slice.
pub fn name() -> String {
    format!("{}/flores-{}x{}", MODEL.name, LANGS.len(), MAX_TOKENS)
}

/// The packed rows of every language of the slice.
#[derive(Debug)]
pub struct Slice {
    pub model_dir: std::path::PathBuf,
    pub tokenizer_sha256: String,
    pub packed: Vec<Packed>,
}

/// Packs the slice; fails when the model or the data dir is missing.
pub fn load(env: &Env) -> Result<Slice, String> {
    let model_dir = golden::model_dir(env, &MODEL)?;
    let data_dir = env.data_dir.as_deref().map_err(Clone::clone)?;
    let tok = Tokenizer::from_file(&model_dir.join("tokenizer.json")).map_err(|e| e.to_string())?;
    let opts = PackOptions { row_len: ROW_LEN, max_tokens: Some(MAX_TOKENS), seed: SEED, leave_rows: 0 };
    let mut packed = Vec::new();
    for code in LANGS {
        let lang = Lang::parse(code).map_err(|e| e.to_string())?;
        // FLORES only, so the slice is the same whichever extra corpora the data dir holds.
        packed.push(pack_language(&tok, Some(data_dir), lang, &[Source::Flores], &opts).map_err(|e| e.to_string())?);
    }
    Ok(Slice { model_dir, tokenizer_sha256: tok.digest().to_owned(), packed })
}

/// Captures every language of the slice through `backend`, holding the weights in `dtype`, into `dir/stats/`,
/// returning `(lang, statistics)`.
pub fn capture_all(
    backend: &dyn Backend,
    env: &Env,
    slice: &Slice,
    dir: &Path,
    dtype: WeightDType,
) -> Result<Vec<(String, ActivationStats)>, String> {
    let files = ModelFiles::new(&slice.model_dir);
    let mut model = backend.load(&files, &LoadOptions { device: env.device, dtype }).map_err(|e| e.to_string())?;
    let config_sha256 = golden::sha256(&files.config())?;
    let stats_dir = dir.join("stats");
    let mut out = Vec::new();
    for p in &slice.packed {
        let lang = p.lang.code().to_owned();
        let spec = CaptureSpec {
            lang: lang.clone(),
            ids: &p.ids,
            row_len: p.row_len,
            batch_rows: BATCH_ROWS,
            shard: Shard::WHOLE,
            checkpoint_every: usize::MAX,
            provenance: Provenance {
                model: MODEL.name.into(),
                config_sha256: config_sha256.clone(),
                tokenizer_sha256: slice.tokenizer_sha256.clone(),
                weights_sha256: String::new(),
                backend: backend.name().into(),
                weights_dtype: dtype,
                stats_on: "act".into(),
                data: serde_json::json!({"slice": name(), "ids_sha256": p.digest}),
            },
        };
        let done = capture(model.as_mut(), &spec, &stats_dir, &mut NoProgress).map_err(|e| format!("{lang}: {e}"))?;
        let f = StatsFile::read(done.path()).map_err(|e| e.to_string())?;
        out.push((lang, f.stats));
    }
    Ok(out)
}

/// The four methods' neuron sets from the slice's statistics, in a fixed order.
pub fn select_all(stats: &[(String, ActivationStats)]) -> Result<Vec<Selection>, String> {
    let by_lang: Vec<(&str, &ActivationStats)> = stats.iter().map(|(l, s)| (l.as_str(), s)).collect();
    let e = |e: lsn_select::Error| e.to_string();
    let positive = CountTable::positive_counts(&by_lang).map_err(e)?;
    let above = CountTable::above_p90(&by_lang).map_err(e)?;
    let first = &stats.first().ok_or("no statistics")?.1;
    Ok(vec![
        lsn_select::lape(&positive, &LapeParams::new(LapePreset::Mondal)).map_err(e)?,
        lsn_select::lape(&positive, &LapeParams::new(LapePreset::Tang)).map_err(e)?,
        lsn_select::act_prob(&above, lsn_select::ACT_PROB_RATE).map_err(e)?,
        lsn_select::random(first.layers, first.intermediate, RANDOM_PER_LAYER, RANDOM_SEED).map_err(e)?,
    ])
}

/// The PPXC cell the backends are compared on.
pub const PPXC_CELL: &str = "PPXC(zh → zh): PPL of the last 2 zh rows with zh's lape-mondal neurons zeroed, minus PPL";
/// Largest |ΔPPXC| between backends relative to the cell (|PPXC| ≥ 1): mean NLLs agree to ~1e-6–1e-5 between
/// backends, so perplexities, and their difference, to about that relative precision (measured: 3.5e-7 on a cell of
/// ≈ 5400, the rows the neurons were selected on).
pub const PPXC_TOL: f64 = 1e-5;

/// [`PPXC_CELL`] through `backend`, with the neuron set `lape` (selected on the slice by the same backend).
pub fn ppxc_cell(backend: &dyn Backend, env: &Env, slice: &Slice, lape: &Selection) -> Result<f64, String> {
    let zh = slice.packed.iter().find(|p| p.lang.code() == "zh").ok_or("no zh in the slice")?;
    let rows: Vec<Vec<u32>> = (zh.rows - 2..zh.rows).map(|r| zh.row(r).to_vec()).collect();
    let set = lape.of("zh").ok_or("lape-mondal selected no zh set")?;
    let iv = lsn_core::Intervention::deactivate(set.iter().copied());
    let files = ModelFiles::new(&slice.model_dir);
    let mut model = backend
        .load(&files, &LoadOptions { device: env.device, ..LoadOptions::default() })
        .map_err(|e| e.to_string())?;
    let e = |e: lsn_core::Error| e.to_string();
    let base = lsn_eval::perplexity(model.as_mut(), &rows, 2, 0, None, |_| {}).map_err(e)?;
    let off = lsn_eval::perplexity(model.as_mut(), &rows, 2, 0, Some(&iv), |_| {}).map_err(e)?;
    Ok(off.perplexity() - base.perplexity())
}
