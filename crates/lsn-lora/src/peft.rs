//! Adapters on disk in PEFT's layout, so HF transformers + PEFT load what lsn trains and lsn loads what PEFT trains:
//! `adapter_config.json` (`peft_type: LORA`, `task_type`, `r`, `lora_alpha`, `target_modules`, `modules_to_save`,
//! `base_model_name_or_path`, …) and `adapter_model.safetensors` with PEFT's tensor names
//! (`base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` `[r, in]`, `…lora_B.weight` `[out, r]`, the
//! head as `base_model.model.score.weight`). What PEFT has no field for — the `gate_proj` neuron mask, the FTL, the
//! neuron file, the training spec — goes under the extra key `lsn`, which PEFT ignores. A masked row of B is 0 in the
//! file, so PEFT's plain LoRA computes exactly what the masked LoRA does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lsn_core::{Adapter, LoraLayout, LoraTarget, ModelConfig, NeuronId};
use serde_json::{Value, json};

use crate::{Error, Result};

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// What an adapter directory says besides its tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterMeta {
    /// PEFT's `task_type`: `SEQ_CLS` (with the head) or `CAUSAL_LM`.
    pub task_type: String,
    /// `base_model_name_or_path`.
    pub base_model: String,
    /// The `lsn` object (FTL, neuron file, spec, model identity), `null` for an adapter PEFT wrote.
    pub lsn: Value,
}

impl AdapterMeta {
    /// The base model the adapter was trained on, as `lsn train` records it (`None` for an adapter PEFT wrote).
    pub fn trained_on(&self) -> Option<lsn_core::ModelIdentity> {
        serde_json::from_value(self.lsn.get("run")?.get("identity")?.clone()).ok()
    }
}

/// The neurons of a `[layers × intermediate]` mask, as `[layer, index]` pairs.
fn mask_neurons(mask: &[bool], width: usize) -> Vec<[usize; 2]> {
    mask.iter().enumerate().filter(|(_, m)| **m).map(|(f, _)| [f / width, f % width]).collect()
}

/// Writes `adapter` into `dir` (created if needed): the weights first, then the config, each atomically.
pub fn write_adapter(dir: &Path, adapter: &Adapter, cfg: &ModelConfig, meta: &AdapterMeta) -> Result<()> {
    let params = adapter.validate(cfg)?;
    let l = &adapter.layout;
    let tensors: Vec<_> =
        params.iter().zip(&adapter.values).map(|(p, v)| (p.name.clone(), p.shape.clone(), v.clone())).collect();
    lsn_weights::write_safetensors_f32(&dir.join(WEIGHTS_FILE), &tensors, &BTreeMap::new())?;
    let mut lsn = match &meta.lsn {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    if let Some(mask) = &l.gate_rows {
        lsn.insert("gate_neurons".into(), json!(mask_neurons(mask, cfg.intermediate_size)));
    }
    if let Some(c) = l.head_classes {
        lsn.insert("head_classes".into(), json!(c));
    }
    let config = json!({
        "peft_type": "LORA",
        "task_type": meta.task_type,
        "base_model_name_or_path": meta.base_model,
        "r": l.rank,
        "lora_alpha": l.alpha,
        "lora_dropout": 0.0,
        "target_modules": l.targets.iter().map(|t| t.name()).collect::<Vec<_>>(),
        "modules_to_save": l.head_classes.map(|_| vec!["score"]),
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "use_rslora": false,
        "use_dora": false,
        "layers_to_transform": Value::Null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "lsn": Value::Object(lsn),
    });
    let text = serde_json::to_string_pretty(&config).map_err(|e| Error::Invalid(e.to_string()))? + "\n";
    let path = dir.join(CONFIG_FILE);
    lsn_core::write_atomic(&path, text.as_bytes()).map_err(|e| Error::io(&path, e))
}

/// Reads the adapter in `dir` for a model of `cfg`: PEFT's LoRA config (no DoRA, no per-layer ranks, every layer),
/// the tensors its layout names with their shapes, and the `gate_proj` neuron mask when lsn wrote one.
pub fn read_adapter(dir: &Path, cfg: &ModelConfig) -> Result<(Adapter, AdapterMeta)> {
    let bad = |reason: String| Error::Adapter { path: dir.to_owned(), reason };
    let cpath = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&cpath).map_err(|e| {
        bad(format!("cannot read {CONFIG_FILE} ({e}); an adapter directory holds {CONFIG_FILE} and {WEIGHTS_FILE}"))
    })?;
    let c: Value = serde_json::from_str(&text).map_err(|e| bad(format!("{CONFIG_FILE} is not valid JSON: {e}")))?;
    if c["peft_type"] != "LORA" {
        return Err(bad(format!("peft_type is {}, only LORA adapters are supported", c["peft_type"])));
    }
    for (key, plain) in [("use_dora", Value::Bool(false)), ("use_rslora", Value::Bool(false))] {
        if !c[key].is_null() && c[key] != plain {
            return Err(bad(format!("{key} = {} is not supported (plain LoRA only)", c[key])));
        }
    }
    for key in ["rank_pattern", "alpha_pattern"] {
        if c[key].as_object().is_some_and(|m| !m.is_empty()) {
            return Err(bad(format!("{key} is not supported: every module must share r and lora_alpha")));
        }
    }
    if !c["layers_to_transform"].is_null() {
        return Err(bad("layers_to_transform is not supported: the adapter must cover every layer".into()));
    }
    let rank = c["r"].as_u64().ok_or_else(|| bad("r is missing or not an integer".into()))? as usize;
    let alpha = c["lora_alpha"].as_f64().ok_or_else(|| bad("lora_alpha is missing or not a number".into()))? as f32;
    let mut targets = match &c["target_modules"] {
        Value::Array(a) => a
            .iter()
            .map(|t| t.as_str().ok_or_else(|| bad("target_modules holds a non-string".into())))
            .map(|t| t.and_then(|t| LoraTarget::parse(t).map_err(|e| bad(e.to_string()))))
            .collect::<Result<Vec<_>>>()?,
        other => return Err(bad(format!("target_modules must be a list of module names, found {other}"))),
    };
    targets.sort();
    targets.dedup();
    let lsn = c.get("lsn").cloned().unwrap_or(Value::Null);
    let gate_rows = match lsn.get("gate_neurons") {
        Some(list) => {
            let pairs: Vec<[usize; 2]> =
                serde_json::from_value(list.clone()).map_err(|e| bad(format!("lsn.gate_neurons: {e}")))?;
            let mut mask = vec![false; cfg.num_layers * cfg.intermediate_size];
            for [l, i] in pairs {
                if l >= cfg.num_layers || i >= cfg.intermediate_size {
                    return Err(bad(format!(
                        "lsn.gate_neurons names neuron [{l}, {i}], outside this model's {} layers × {} neurons",
                        cfg.num_layers, cfg.intermediate_size
                    )));
                }
                mask[NeuronId::new(l as u32, i as u32).flat(cfg.intermediate_size)] = true;
            }
            Some(mask)
        }
        None => None,
    };
    let (tensors, _) = lsn_weights::read_safetensors_f32(&dir.join(WEIGHTS_FILE))?;
    let mut by_name: BTreeMap<String, (Vec<usize>, Vec<f32>)> =
        tensors.into_iter().map(|(n, s, v)| (n, (s, v))).collect();
    let saves_head = c["modules_to_save"].as_array().is_some_and(|m| m.iter().any(|x| x == "score"));
    let head_classes = match (saves_head, by_name.get(lsn_core::PEFT_HEAD)) {
        (true, Some((shape, _))) if shape.len() == 2 => Some(shape[0]),
        (true, _) => return Err(bad(format!("modules_to_save names score but {} is missing", lsn_core::PEFT_HEAD))),
        (false, _) => None,
    };
    let layout = LoraLayout { rank, alpha, targets, gate_rows, head_classes };
    layout.validate(cfg).map_err(|e| bad(e.to_string()))?;
    let mut values = Vec::new();
    for p in layout.params(cfg) {
        let (shape, v) = by_name
            .remove(&p.name)
            .ok_or_else(|| bad(format!("{WEIGHTS_FILE} lacks {} (is the adapter of another model?)", p.name)))?;
        if shape != p.shape {
            return Err(bad(format!(
                "{} has shape {shape:?}; this model needs {:?} (is the adapter of another model?)",
                p.name, p.shape
            )));
        }
        values.push(v);
    }
    if let Some(extra) = by_name.keys().next() {
        return Err(bad(format!(
            "{WEIGHTS_FILE} holds {extra}, which no module of this model's adapter uses (is it of another model?)"
        )));
    }
    let adapter = Adapter { layout, values };
    adapter.validate(cfg).map_err(|e| bad(e.to_string()))?;
    let meta = AdapterMeta {
        task_type: c["task_type"].as_str().unwrap_or("").to_string(),
        base_model: c["base_model_name_or_path"].as_str().unwrap_or("").to_string(),
        lsn,
    };
    Ok((adapter, meta))
}

/// `dir` if it holds an adapter's two files.
pub fn is_adapter_dir(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file() && dir.join(WEIGHTS_FILE).is_file()
}

/// The adapter directory's weights file (for hashing).
pub fn weights_path(dir: &Path) -> PathBuf {
    dir.join(WEIGHTS_FILE)
}
