//! GGUF → HF conversion of small synthetic GGUF files: names, values, layout fixes, atomicity, clear errors.

mod common;

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::Value;
use common::*;
use lsn_core::{AttentionKind, Family, expected_tensors};
use lsn_weights::{ConvertOptions, Error, TokenizerSource, convert_gguf, open_checkpoint};

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn llama_gguf_converts_to_the_original_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    let want = write_tiny_llama(&gguf);
    let out = tmp.path().join("out");
    let report = convert_gguf(&gguf, &out, &ConvertOptions::default()).unwrap();
    assert_eq!(report.tokenizer, TokenizerSource::BuiltFromGguf);
    assert_eq!(report.source_dtypes["Q8_0"], 3);

    let ck = open_checkpoint(&out).unwrap();
    let cfg = &ck.config;
    assert_eq!(cfg, &report.config);
    assert_eq!(
        (cfg.family, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.vocab_size),
        (Family::Llama, 4, 2, 8, 261)
    );
    assert!(cfg.tie_word_embeddings, "no output.weight means tied embeddings");
    assert_eq!((cfg.rms_norm_eps, cfg.rope_theta, cfg.max_position_embeddings), (1e-5, 100_000.0, 256));
    assert_eq!((cfg.bos_token_id, cfg.eos_token_ids.clone()), (Some(0), vec![0]));

    let got = read_safetensors(&out.join("model.safetensors"));
    assert_eq!(got.len(), expected_tensors(cfg).len());
    assert_eq!(got.len(), want.len());
    for (name, values) in &want {
        assert_eq!(&got[name].1, values, "{name} differs from the weights the GGUF was made from");
    }
    let mut files = leftovers(&out);
    files.sort();
    assert_eq!(files, ["config.json", "model.safetensors", "tokenizer.json"]);
    assert_eq!(leftovers(tmp.path()).len(), 2, "staging directory left behind: {:?}", leftovers(tmp.path()));
}

#[test]
fn existing_output_is_kept_unless_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    write_tiny_llama(&gguf);
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("mine.txt"), "keep").unwrap();
    let e = convert_gguf(&gguf, &out, &ConvertOptions::default()).unwrap_err();
    assert!(matches!(e, Error::OutputExists { .. }), "{e}");
    assert!(out.join("mine.txt").exists());
    let opts = ConvertOptions { overwrite: true, ..Default::default() };
    convert_gguf(&gguf, &out, &opts).unwrap();
    assert!(!out.join("mine.txt").exists() && out.join("model.safetensors").exists());
}

#[test]
fn truncated_gguf_is_a_clear_error_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    write_tiny_llama(&gguf);
    let bytes = std::fs::read(&gguf).unwrap();
    for keep in [bytes.len() - 100, 40] {
        let cut = tmp.path().join("cut.gguf");
        std::fs::write(&cut, &bytes[..keep]).unwrap();
        let out = tmp.path().join("out");
        let e = convert_gguf(&cut, &out, &ConvertOptions::default()).unwrap_err().to_string();
        assert!(e.contains("truncated") && e.contains("download it again"), "cut at {keep}: {e}");
        assert!(!out.exists());
    }
    assert_eq!(leftovers(tmp.path()).len(), 2);
}

/// A tiny gemma3 GGUF: norms stored as `1 + w`, a whitespace-run token spelled with spaces, no merges.
fn write_tiny_gemma(path: &std::path::Path) -> (Vec<String>, std::collections::HashMap<String, Vec<f32>>) {
    let (h, i, d, vocab) = (32, 64, 16, 40);
    let mut tokens: Vec<String> = (0..vocab).map(|k| format!("t{k}")).collect();
    tokens[..3].clone_from_slice(&["<pad>".into(), "<eos>".into(), "<bos>".into()]);
    tokens[10] = "  ".into();
    let mut r = rng(5);
    let mut tensors = Vec::new();
    let mut stored = std::collections::HashMap::new();
    let mut add = |name: String, shape: &[usize], norm: bool| {
        let mut w = random(&mut r, shape.iter().product());
        if norm {
            w.iter_mut().for_each(|x| *x += 1.0);
        }
        let dtype = if norm { GgmlDType::F32 } else { GgmlDType::Q8_0 };
        let q = qtensor(&w, shape, dtype);
        stored.insert(name.clone(), candle_f32(&q));
        tensors.push((name, q));
    };
    add("token_embd.weight".into(), &[vocab, h], false);
    add("output_norm.weight".into(), &[h], true);
    for l in 0..6 {
        for (n, shape, norm) in [
            ("attn_norm", vec![h], true),
            ("attn_q", vec![2 * d, h], false),
            ("attn_k", vec![d, h], false),
            ("attn_v", vec![d, h], false),
            ("attn_output", vec![h, 2 * d], false),
            ("attn_q_norm", vec![d], true),
            ("attn_k_norm", vec![d], true),
            ("post_attention_norm", vec![h], true),
            ("ffn_norm", vec![h], true),
            ("post_ffw_norm", vec![h], true),
            ("ffn_gate", vec![i, h], false),
            ("ffn_up", vec![i, h], false),
            ("ffn_down", vec![h, i], false),
        ] {
            add(format!("blk.{l}.{n}.weight"), &shape, norm);
        }
    }
    let md = vec![
        ("general.architecture", s("gemma3")),
        ("gemma3.embedding_length", Value::U32(h as u32)),
        ("gemma3.block_count", Value::U32(6)),
        ("gemma3.feed_forward_length", Value::U32(i as u32)),
        ("gemma3.attention.head_count", Value::U32(2)),
        ("gemma3.attention.head_count_kv", Value::U32(1)),
        ("gemma3.attention.key_length", Value::U32(d as u32)),
        ("gemma3.attention.value_length", Value::U32(d as u32)),
        ("gemma3.attention.sliding_window", Value::U32(4)),
        ("gemma3.attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
        ("gemma3.rope.freq_base", Value::F32(1e6)),
        ("tokenizer.ggml.model", s("llama")),
        ("tokenizer.ggml.tokens", strings(&tokens)),
        ("tokenizer.ggml.bos_token_id", Value::U32(2)),
        ("tokenizer.ggml.eos_token_id", Value::U32(1)),
        ("tokenizer.ggml.padding_token_id", Value::U32(0)),
    ];
    write_gguf(path, &md, &tensors);
    (tokens, stored)
}

fn tokenizer_json(tokens: &[String]) -> String {
    let vocab: serde_json::Map<String, serde_json::Value> =
        tokens.iter().enumerate().map(|(i, t)| (t.replace(' ', "\u{2581}"), i.into())).collect();
    serde_json::json!({"model": {"type": "BPE", "vocab": vocab, "merges": []}, "added_tokens": []}).to_string()
}

#[test]
fn gemma_gguf_needs_its_tokenizer_and_converts_norms() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("g.gguf");
    let (tokens, stored) = write_tiny_gemma(&gguf);
    let out = tmp.path().join("out");
    let e = convert_gguf(&gguf, &out, &ConvertOptions::default()).unwrap_err().to_string();
    assert!(e.contains("pass the model's tokenizer.json"), "{e}");
    assert!(!out.exists());

    let wrong = tmp.path().join("wrong.json");
    let other: Vec<String> = tokens.iter().map(|t| format!("{t}x")).collect();
    std::fs::write(&wrong, tokenizer_json(&other)).unwrap();
    let opts = ConvertOptions { tokenizer_json: Some(wrong), overwrite: false };
    let e = convert_gguf(&gguf, &out, &opts).unwrap_err().to_string();
    assert!(e.contains("does not match"), "{e}");

    let tok = tmp.path().join("tokenizer.json");
    std::fs::write(&tok, tokenizer_json(&tokens)).unwrap();
    let opts = ConvertOptions { tokenizer_json: Some(tok.clone()), overwrite: false };
    let report = convert_gguf(&gguf, &out, &opts).unwrap();
    assert_eq!(report.tokenizer, TokenizerSource::Copied { from: tok.clone(), differing_tokens: 0 });
    assert_eq!(std::fs::read(&tok).unwrap(), std::fs::read(out.join("tokenizer.json")).unwrap());

    let cfg = open_checkpoint(&out).unwrap().config;
    let kinds: Vec<bool> = cfg.layer_kinds.iter().map(|k| *k == AttentionKind::Global).collect();
    assert_eq!(kinds, [false, false, false, false, false, true]);
    assert_eq!((cfg.rope_theta, cfg.rope_local_theta, cfg.sliding_window), (1e6, 1e4, Some(4)));
    assert_eq!((cfg.attn_scale, cfg.rms_norm_eps), (0.25, 1e-6));
    assert_eq!((cfg.bos_token_id, cfg.pad_token_id), (Some(2), Some(0)));
    assert!(cfg.tie_word_embeddings);

    let got = read_safetensors(&out.join("model.safetensors"));
    let norm = &got["model.layers.3.self_attn.q_norm.weight"].1;
    let raw = &stored["blk.3.attn_q_norm.weight"];
    assert!(norm.iter().zip(raw).all(|(a, b)| (a - (b - 1.0)).abs() < 1e-6), "Gemma norms must lose their +1");
    assert_eq!(got["model.layers.3.post_feedforward_layernorm.weight"].1.len(), 32);
    assert_eq!(
        &got["model.layers.2.self_attn.q_proj.weight"].1, &stored["blk.2.attn_q.weight"],
        "no permutation for Gemma"
    );
    assert_eq!(&got["model.layers.0.mlp.down_proj.weight"].1, &stored["blk.0.ffn_down.weight"]);
}

#[test]
fn unsupported_architecture_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("x.gguf");
    write_gguf(&gguf, &[("general.architecture", s("phi3"))], &[]);
    let e = convert_gguf(&gguf, &tmp.path().join("out"), &ConvertOptions::default()).unwrap_err().to_string();
    assert!(e.contains("phi3") && e.contains("gemma2, gemma3, llama, qwen2, qwen3"), "{e}");
}

/// llama.cpp's GGUF name of a HF tensor (`convert_hf_to_gguf.py`'s tensor map), for a family with or without
/// sandwich norms.
fn llama_cpp_name(hf: &str, sandwich: bool) -> String {
    let fixed = [("model.embed_tokens.weight", "token_embd.weight"), ("model.norm.weight", "output_norm.weight")];
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return (*g).to_owned();
    }
    if hf == "lm_head.weight" {
        return "output.weight".into();
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (layer, part) = rest.split_once('.').unwrap();
    let (module, suffix) = part.rsplit_once('.').unwrap();
    let gguf = match module {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "post_attention_layernorm" if sandwich => "post_attention_norm",
        "post_attention_layernorm" => "ffn_norm",
        "pre_feedforward_layernorm" => "ffn_norm",
        "post_feedforward_layernorm" => "post_ffw_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        other => panic!("no GGUF name for {other}"),
    };
    format!("blk.{layer}.{gguf}.{suffix}")
}

/// A HF checkpoint written as llama.cpp's converter writes its family: every tensor in f32 under its GGUF name
/// (Gemma's norms as `1 + w`), the `{arch}.*` metadata it writes, and the tokenizer's tokens.
fn write_as_llama_cpp(dir: &std::path::Path, cfg: &lsn_core::ModelConfig, arch: &str, path: &std::path::Path) {
    let spec = cfg.family.spec();
    let (tensors, _) = lsn_weights::read_safetensors_f32(&dir.join("model.safetensors")).unwrap();
    let tensors: Vec<(String, candle_core::quantized::QTensor)> = tensors
        .into_iter()
        .map(|(name, shape, mut v)| {
            if spec.norm_plus_one && name.ends_with("norm.weight") {
                v.iter_mut().for_each(|x| *x += 1.0);
            }
            (llama_cpp_name(&name, spec.sandwich_norms), qtensor(&v, &shape, GgmlDType::F32))
        })
        .collect();
    let tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap()).unwrap();
    let mut tokens = vec![String::new(); cfg.vocab_size];
    for (t, id) in tok["model"]["vocab"].as_object().unwrap() {
        tokens[id.as_u64().unwrap() as usize] = t.clone();
    }
    for a in tok["added_tokens"].as_array().unwrap() {
        tokens[a["id"].as_u64().unwrap() as usize] = a["content"].as_str().unwrap().to_owned();
    }
    let k = |key: &str| format!("{arch}.{key}");
    let u = |v: usize| Value::U32(v as u32);
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), s(arch)),
        (k("embedding_length"), u(cfg.hidden_size)),
        (k("block_count"), u(cfg.num_layers)),
        (k("feed_forward_length"), u(cfg.intermediate_size)),
        (k("attention.head_count"), u(cfg.num_heads)),
        (k("attention.head_count_kv"), u(cfg.num_kv_heads)),
        (k("attention.key_length"), u(cfg.head_dim)),
        (k("attention.value_length"), u(cfg.head_dim)),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(cfg.rms_norm_eps as f32)),
        (k("rope.freq_base"), Value::F32(cfg.rope_theta as f32)),
        (k("context_length"), u(cfg.max_position_embeddings)),
        ("tokenizer.ggml.model".into(), s("llama")),
        ("tokenizer.ggml.tokens".into(), strings(&tokens)),
    ];
    if let Some(w) = cfg.sliding_window {
        md.push((k("attention.sliding_window"), u(w)));
    }
    for (key, cap) in
        [("attn_logit_softcapping", cfg.attn_logit_softcap), ("final_logit_softcapping", cfg.final_logit_softcap)]
    {
        if let Some(c) = cap {
            md.push((k(key), Value::F32(c as f32)));
        }
    }
    let ids = [
        ("tokenizer.ggml.bos_token_id", cfg.bos_token_id),
        ("tokenizer.ggml.eos_token_id", cfg.eos_token_ids.first().copied()),
        ("tokenizer.ggml.padding_token_id", cfg.pad_token_id),
    ];
    md.extend(ids.iter().filter_map(|(key, id)| id.map(|i| ((*key).to_owned(), Value::U32(i)))));
    let md: Vec<(&str, Value)> = md.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    write_gguf(path, &md, &tensors);
}

#[test]
fn qwen2_qwen3_and_gemma2_ggufs_convert_to_the_original_checkpoint() {
    for (preset, arch) in [("tiny-qwen2", "qwen2"), ("tiny-qwen3", "qwen3"), ("tiny-gemma2", "gemma2")] {
        let tmp = tempfile::tempdir().unwrap();
        let (_, cfg) = lsn_weights::tiny_configs().into_iter().find(|(n, _)| *n == preset).unwrap();
        let hf = tmp.path().join("hf");
        lsn_weights::write_random_model(&cfg, 7, &hf).unwrap();
        let gguf = tmp.path().join("m.gguf");
        write_as_llama_cpp(&hf, &cfg, arch, &gguf);
        let out = tmp.path().join("out");
        let opts = ConvertOptions { tokenizer_json: Some(hf.join("tokenizer.json")), overwrite: false };
        let report = convert_gguf(&gguf, &out, &opts).unwrap_or_else(|e| panic!("{preset}: {e}"));

        // GGUF does not record query_pre_attn_scalar: llama.cpp (and so the conversion) takes head_dim, which
        // tiny-gemma2 (scalar 16, head_dim 32) deliberately is not; every other field survives.
        let mut want = cfg.clone();
        want.attn_scale = 1.0 / (cfg.head_dim as f64).sqrt();
        assert_eq!(report.config, want, "{preset}");
        let original = read_safetensors(&hf.join("model.safetensors"));
        let got = read_safetensors(&out.join("model.safetensors"));
        assert_eq!(got.len(), original.len(), "{preset}");
        for (name, (shape, values)) in &original {
            let (s2, v2) = &got[name];
            assert_eq!(s2, shape, "{preset} {name}");
            let worst = values.iter().zip(v2).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            // Gemma's norms come back as (1 + w) − 1 in f32; everything else is copied.
            let tol = if cfg.family.spec().norm_plus_one && name.ends_with("norm.weight") { 1e-6 } else { 0.0 };
            assert!(worst <= tol, "{preset} {name}: off by {worst}");
        }
        if cfg.family.spec().qkv_bias {
            assert!(got.contains_key("model.layers.0.self_attn.q_proj.bias"), "{preset}: the biases are converted");
        }
    }
}

#[test]
fn gemma_27b_ggufs_take_hidden_over_heads_as_the_query_scalar() {
    // llama.cpp's rule (GGUF has no query_pre_attn_scalar): head_dim, except the 27B models (Gemma 2: 46 layers,
    // Gemma 3: 62), whose scalar is hidden / heads (4608 / 32 = 144 for Gemma 2 27B; head_dim is 128).
    for (arch, layers, want) in
        [("gemma2", 46, 144.0), ("gemma2", 42, 128.0), ("gemma3", 62, 144.0), ("gemma3", 46, 128.0)]
    {
        let tmp = tempfile::tempdir().unwrap();
        let gguf = tmp.path().join("g.gguf");
        let k = |key: &str| format!("{arch}.{key}");
        let md = [
            ("general.architecture".to_owned(), s(arch)),
            (k("embedding_length"), Value::U32(4608)),
            (k("block_count"), Value::U32(layers)),
            (k("feed_forward_length"), Value::U32(64)),
            (k("attention.head_count"), Value::U32(32)),
            (k("attention.head_count_kv"), Value::U32(16)),
            (k("attention.key_length"), Value::U32(128)),
            (k("attention.sliding_window"), Value::U32(4096)),
        ];
        let md: Vec<(&str, Value)> = md.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        write_gguf(&gguf, &md, &[("token_embd.weight".into(), qtensor(&[0.0; 4608 * 2], &[2, 4608], GgmlDType::F32))]);
        let cfg = lsn_weights::config_from_gguf(&lsn_weights::Gguf::open(&gguf).unwrap()).unwrap();
        assert_eq!(cfg.attn_scale, 1.0 / f64::sqrt(want), "{arch}, {layers} layers");
    }
}
