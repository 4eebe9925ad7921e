//! HF `tokenizer.json` for GGUF models: built from a byte-level BPE vocabulary, or a given file checked against it.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::{Error, Gguf, Result};

/// llama.cpp token types.
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

fn added(id: usize, content: &str, special: bool) -> Value {
    json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
           "normalized": false, "special": special})
}

/// A post-processor that puts the token `name` (id `bos`) in front of every sequence.
fn bos_template(name: &str, bos: u64) -> Value {
    let b = json!({"SpecialToken": {"id": name, "type_id": 0}});
    json!({"type": "TemplateProcessing",
           "single": [b, {"Sequence": {"id": "A", "type_id": 0}}],
           "pair": [b, {"Sequence": {"id": "A", "type_id": 0}}, b, {"Sequence": {"id": "B", "type_id": 1}}],
           "special_tokens": { (name): {"id": name, "ids": [bos], "tokens": [name]}}})
}

/// Builds an HF `tokenizer.json` from the GGUF's byte-level BPE vocabulary (`tokenizer.ggml.model = "gpt2"`).
///
/// Tokens and merges come from `tokenizer.ggml.tokens` / `.merges`; control tokens (type 3) become special added
/// tokens and user-defined ones (type 4) plain added tokens. Pre-tokenization follows `tokenizer.ggml.pre`
/// (`smollm`: single digits, then GPT-2's byte-level split; `gpt2`/`default`: the byte-level split alone).
/// A BOS token is added only where `tokenizer.ggml.add_bos_token` says so (SmolLM2: no).
pub fn tokenizer_from_gguf(g: &Gguf) -> Result<Value> {
    let model = g.opt_str("tokenizer.ggml.model")?.unwrap_or("");
    if model != "gpt2" {
        return Err(Error::Tokenizer(format!(
            "{} has a {model:?} tokenizer; lsn builds tokenizer.json only for byte-level BPE (\"gpt2\"): \
             pass the model's tokenizer.json instead",
            g.path().display()
        )));
    }
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let pre = match g.opt_str("tokenizer.ggml.pre")?.unwrap_or("default") {
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level]}),
        "gpt2" | "gpt-2" | "default" => byte_level,
        other => {
            return Err(Error::Tokenizer(format!(
                "pre-tokenizer {other:?} of {} is not supported (smollm, gpt2): pass the model's tokenizer.json",
                g.path().display()
            )));
        }
    };
    let tokens = g.strings("tokenizer.ggml.tokens")?;
    let merges = g.strings("tokenizer.ggml.merges")?;
    let types = g.opt_i64s("tokenizer.ggml.token_type")?.unwrap_or_default();
    if !types.is_empty() && types.len() != tokens.len() {
        return Err(Error::Tokenizer(format!(
            "{} lists {} tokens but {} token types (the file is corrupt)",
            g.path().display(),
            tokens.len(),
            types.len()
        )));
    }
    let post = match (g.opt_bool("tokenizer.ggml.add_bos_token")?, g.opt_u64("tokenizer.ggml.bos_token_id")?) {
        (Some(true), Some(bos)) => {
            let name = tokens.get(bos as usize).ok_or_else(|| {
                Error::Tokenizer(format!("BOS id {bos} is outside the vocabulary of {}", g.path().display()))
            })?;
            bos_template(name, bos)
        }
        _ => {
            json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true})
        }
    };
    let mut vocab = serde_json::Map::new();
    for (id, t) in tokens.iter().enumerate() {
        if vocab.insert((*t).to_owned(), json!(id)).is_some() {
            return Err(Error::Tokenizer(format!("token {t:?} appears twice in {}", g.path().display())));
        }
    }
    let added_tokens: Vec<Value> = types
        .iter()
        .enumerate()
        .filter(|(_, ty)| **ty == CONTROL || **ty == USER_DEFINED)
        .map(|(id, ty)| added(id, tokens[id], *ty == CONTROL))
        .collect();
    let decoder = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true});
    Ok(bpe_tokenizer(added_tokens, pre, post, decoder, false, vocab, json!(merges)))
}

/// A `tokenizer.json` with a BPE model (no normalizer).
fn bpe_tokenizer(
    added_tokens: Vec<Value>,
    pre: Value,
    post: Value,
    decoder: Value,
    byte_fallback: bool,
    vocab: serde_json::Map<String, Value>,
    merges: Value,
) -> Value {
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens,
        "normalizer": null,
        "pre_tokenizer": pre,
        "post_processor": post,
        "decoder": decoder,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": byte_fallback,
                  "ignore_merges": false, "vocab": vocab, "merges": merges}
    })
}

/// A byte-level `tokenizer.json` for a model with `cfg`'s vocabulary (at least 256 ids beside its special tokens):
/// every UTF-8 byte of a text is one token `<0xNN>` (a BPE model with no merges and byte fallback), BOS is added in
/// front where the config has one, and unused ids are `<unused_N>`. Any text tokenizes, so a tiny random model can run
/// the whole pipeline on real corpora.
pub fn byte_tokenizer(cfg: &lsn_core::ModelConfig) -> Result<Value> {
    let mut special: Vec<(u32, &str)> = Vec::new();
    if let Some(p) = cfg.pad_token_id {
        special.push((p, "<pad>"));
    }
    if let Some(&e) = cfg.eos_token_ids.first() {
        special.push((e, "<eos>"));
    }
    if let Some(b) = cfg.bos_token_id {
        special.push((b, "<bos>"));
    }
    if cfg.vocab_size < 256 + special.len() {
        return Err(Error::Tokenizer(format!(
            "a byte-level tokenizer needs 256 ids beside the {} special tokens; the vocabulary has {}",
            special.len(),
            cfg.vocab_size
        )));
    }
    let mut names: Vec<Option<String>> = vec![None; cfg.vocab_size];
    for &(id, name) in &special {
        if let Some(slot) = names.get_mut(id as usize) {
            *slot = Some(name.to_owned());
        }
    }
    let mut next_byte = 0u32;
    let mut unused = 0usize;
    for slot in names.iter_mut().filter(|n| n.is_none()) {
        *slot = Some(if next_byte < 256 {
            next_byte += 1;
            format!("<0x{:02X}>", next_byte - 1)
        } else {
            unused += 1;
            format!("<unused_{}>", unused - 1)
        });
    }
    let mut vocab = serde_json::Map::new();
    for (id, n) in names.iter().enumerate() {
        vocab.insert(n.clone().unwrap_or_default(), json!(id));
    }
    let added_tokens: Vec<Value> = special.iter().map(|&(id, name)| added(id as usize, name, true)).collect();
    let post = match cfg.bos_token_id {
        Some(bos) => bos_template("<bos>", u64::from(bos)),
        None => Value::Null,
    };
    Ok(bpe_tokenizer(added_tokens, Value::Null, post, json!({"type": "ByteFallback"}), true, vocab, json!([])))
}

/// Id → token of a `tokenizer.json`'s model vocabulary, and id → token of its added tokens.
type IdMap = HashMap<u64, String>;

fn json_vocab(tok: &Value) -> Result<(IdMap, IdMap)> {
    let mut vocab = HashMap::new();
    match tok.pointer("/model/vocab") {
        Some(Value::Object(m)) => {
            for (t, id) in m {
                if let Some(id) = id.as_u64() {
                    vocab.insert(id, t.clone());
                }
            }
        }
        Some(Value::Array(a)) => {
            for (id, e) in a.iter().enumerate() {
                if let Some(t) = e.get(0).and_then(Value::as_str) {
                    vocab.insert(id as u64, t.to_owned());
                }
            }
        }
        _ => {
            return Err(Error::Tokenizer("tokenizer.json has no model.vocab (is it a HF tokenizer.json?)".into()));
        }
    }
    let mut added = HashMap::new();
    for a in tok.get("added_tokens").and_then(Value::as_array).into_iter().flatten() {
        if let (Some(id), Some(t)) = (a.get("id").and_then(Value::as_u64), a.get("content").and_then(Value::as_str)) {
            added.insert(id, t.to_owned());
        }
    }
    Ok((vocab, added))
}

/// Checks that a given `tokenizer.json` belongs to the GGUF: no vocabulary id beyond the model's vocabulary (added
/// tokens beyond it, like Gemma 3's `<image_soft_token>`, are allowed: text never produces them), and (where the GGUF lists
/// its tokens) at most 1% of them spelled differently, spaces counting as `▁` (Gemma GGUFs spell whitespace-run
/// tokens with spaces). Returns the number of differing tokens.
pub(crate) fn check_tokenizer_json(g: &Gguf, text: &str, vocab_size: usize) -> Result<usize> {
    let tok: Value = serde_json::from_str(text).map_err(|e| {
        Error::Tokenizer(format!("the given tokenizer.json is not valid JSON ({e}); pass the right file"))
    })?;
    let (mut ids, added) = json_vocab(&tok)?;
    if let Some(max) = ids.keys().max().filter(|m| **m as usize >= vocab_size) {
        return Err(Error::Tokenizer(format!(
            "the given tokenizer.json has token id {max}, beyond the model's vocabulary of {vocab_size}: it belongs \
             to another model"
        )));
    }
    for (id, t) in added {
        ids.insert(id, t);
    }
    let Some(tokens) = g.opt_strings("tokenizer.ggml.tokens")? else {
        return Ok(0);
    };
    let differ: Vec<usize> = tokens
        .iter()
        .enumerate()
        .filter(|(id, t)| ids.get(&(*id as u64)).is_none_or(|j| *j != t.replace(' ', "\u{2581}") && j != *t))
        .map(|(id, _)| id)
        .collect();
    if differ.len() * 100 > tokens.len() {
        let id = differ[0];
        return Err(Error::Tokenizer(format!(
            "the given tokenizer.json does not match the GGUF's vocabulary: {} of {} tokens differ (e.g. id {id}: \
             GGUF {:?}, tokenizer.json {:?}); pass the tokenizer.json of this model",
            differ.len(),
            tokens.len(),
            tokens[id],
            ids.get(&(id as u64))
        )));
    }
    Ok(differ.len())
}
