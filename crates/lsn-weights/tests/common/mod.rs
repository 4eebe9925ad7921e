//! Small synthetic GGUF files for the tests, written with candle's GGUF writer from known f32 weights.

#![allow(dead_code)]

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// GPT-2's byte → printable character table (printable Latin-1 bytes map to themselves, the rest to U+0100…).
pub fn byte_chars() -> Vec<char> {
    let keep = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    let mut next = 256;
    (0..256u32)
        .map(|b| {
            if keep(b) {
                char::from_u32(b).unwrap()
            } else {
                next += 1;
                char::from_u32(next - 1).unwrap()
            }
        })
        .collect()
}

/// A byte-level BPE vocabulary: one control token, the 256 byte characters, and merged tokens.
pub fn bpe_vocab() -> (Vec<String>, Vec<String>, Vec<i32>) {
    let mut tokens = vec!["<|endoftext|>".to_owned()];
    tokens.extend(byte_chars().iter().map(|c| c.to_string()));
    let merges = ["h e", "Ġ t", "Ġt he", "t he"];
    tokens.extend(["he", "Ġt", "Ġthe", "the"].map(String::from));
    let mut types = vec![1; tokens.len()];
    types[0] = 3;
    (tokens, merges.map(String::from).to_vec(), types)
}

pub fn random(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// A tensor of `shape` (HF order) quantized to `dtype` by candle.
pub fn qtensor(data: &[f32], shape: &[usize], dtype: GgmlDType) -> QTensor {
    let t = Tensor::from_slice(data, shape, &Device::Cpu).unwrap();
    QTensor::quantize(&t, dtype).unwrap()
}

/// Candle's own dequantization of `q` (the independent reference).
pub fn candle_f32(q: &QTensor) -> Vec<f32> {
    q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

/// llama.cpp's Q/K permutation of HF rows: row `h·d + p·d/2 + i` moves to `h·d + 2i + p`.
pub fn llama_cpp_permute(w: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    let d = w.len() / cols / heads;
    let mut out = vec![0.0; w.len()];
    for h in 0..heads {
        for p in 0..2 {
            for i in 0..d / 2 {
                let (src, dst) = (h * d + p * (d / 2) + i, h * d + 2 * i + p);
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

pub fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

pub fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().map(|x| Value::String(x.clone())).collect())
}

/// Writes a GGUF file with `metadata` and `tensors` (name, HF-order tensor).
pub fn write_gguf(path: &Path, metadata: &[(&str, Value)], tensors: &[(String, QTensor)]) {
    let mut f = std::fs::File::create(path).unwrap();
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut f, &md, &ts).unwrap();
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A tiny llama-architecture GGUF (hidden 32, 4 heads / 2 KV heads of 8, 2 layers, tied) with a byte-level BPE
/// vocabulary. Returns the HF-order f32 weights each GGUF tensor was made from, keyed by HF name, after the
/// rounding of the GGUF type (candle's dequantization), so a correct conversion reproduces them exactly.
pub fn write_tiny_llama(path: &Path) -> std::collections::HashMap<String, Vec<f32>> {
    let (tokens, merges, types) = bpe_vocab();
    let (h, i, heads, kv, d, vocab) = (32, 64, 4, 2, 8, tokens.len());
    let mut r = rng(3);
    let mut hf = std::collections::HashMap::new();
    let mut tensors = Vec::new();
    let mut add = |gguf: String, hf_name: String, shape: &[usize], dtype: GgmlDType, permute: Option<usize>| {
        let w = random(&mut r, shape.iter().product());
        let stored = match permute {
            Some(n) => llama_cpp_permute(&w, n, shape[1]),
            None => w.clone(),
        };
        let q = qtensor(&stored, shape, dtype);
        // The HF tensor is the original with the type's rounding: dequantize the unpermuted quantization.
        let rounded = candle_f32(&qtensor(&w, shape, dtype));
        if matches!(dtype, GgmlDType::F32 | GgmlDType::F16) || permute.is_none() {
            hf.insert(hf_name, if permute.is_none() { candle_f32(&q) } else { rounded });
        }
        tensors.push((gguf, q));
    };
    add("token_embd.weight".into(), "model.embed_tokens.weight".into(), &[vocab, h], GgmlDType::Q8_0, None);
    add("output_norm.weight".into(), "model.norm.weight".into(), &[h], GgmlDType::F32, None);
    for l in 0..2 {
        let (b, m) = (format!("blk.{l}"), format!("model.layers.{l}"));
        add(format!("{b}.attn_norm.weight"), format!("{m}.input_layernorm.weight"), &[h], GgmlDType::F32, None);
        add(
            format!("{b}.attn_q.weight"),
            format!("{m}.self_attn.q_proj.weight"),
            &[heads * d, h],
            GgmlDType::F32,
            Some(heads),
        );
        add(
            format!("{b}.attn_k.weight"),
            format!("{m}.self_attn.k_proj.weight"),
            &[kv * d, h],
            GgmlDType::F16,
            Some(kv),
        );
        add(format!("{b}.attn_v.weight"), format!("{m}.self_attn.v_proj.weight"), &[kv * d, h], GgmlDType::Q4_0, None);
        add(
            format!("{b}.attn_output.weight"),
            format!("{m}.self_attn.o_proj.weight"),
            &[h, heads * d],
            GgmlDType::Q4_1,
            None,
        );
        add(format!("{b}.ffn_norm.weight"), format!("{m}.post_attention_layernorm.weight"), &[h], GgmlDType::F32, None);
        add(format!("{b}.ffn_gate.weight"), format!("{m}.mlp.gate_proj.weight"), &[i, h], GgmlDType::Q5_0, None);
        add(format!("{b}.ffn_up.weight"), format!("{m}.mlp.up_proj.weight"), &[i, h], GgmlDType::Q5_1, None);
        add(format!("{b}.ffn_down.weight"), format!("{m}.mlp.down_proj.weight"), &[h, i], GgmlDType::Q8_0, None);
    }
    let md = vec![
        ("general.architecture", s("llama")),
        ("llama.embedding_length", Value::U32(h as u32)),
        ("llama.block_count", Value::U32(2)),
        ("llama.feed_forward_length", Value::U32(i as u32)),
        ("llama.attention.head_count", Value::U32(heads as u32)),
        ("llama.attention.head_count_kv", Value::U32(kv as u32)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.rope.freq_base", Value::F32(100_000.0)),
        ("llama.context_length", Value::U32(256)),
        ("tokenizer.ggml.model", s("gpt2")),
        ("tokenizer.ggml.pre", s("smollm")),
        ("tokenizer.ggml.tokens", strings(&tokens)),
        ("tokenizer.ggml.merges", strings(&merges)),
        ("tokenizer.ggml.token_type", Value::Array(types.iter().map(|t| Value::I32(*t)).collect())),
        ("tokenizer.ggml.bos_token_id", Value::U32(0)),
        ("tokenizer.ggml.eos_token_id", Value::U32(0)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
    ];
    write_gguf(path, &md, &tensors);
    hf
}

/// All f32 tensors of a safetensors file.
pub fn read_safetensors(path: &Path) -> std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| {
            let vals = v.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            (n, (v.shape().to_vec(), vals))
        })
        .collect()
}
