//! The tokenizer.json built from a byte-level BPE GGUF loads in `tokenizers` and encodes as the vocabulary intends.

mod common;

use lsn_weights::{Gguf, tokenizer_from_gguf};

#[test]
fn built_tokenizer_encodes_digits_singly_keeps_specials_and_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    common::write_tiny_llama(&gguf);
    let json = tokenizer_from_gguf(&Gguf::open(&gguf).unwrap()).unwrap();
    let path = tmp.path().join("tokenizer.json");
    std::fs::write(&path, json.to_string()).unwrap();
    let tok = tokenizers::Tokenizer::from_file(&path).unwrap();

    let text = "the the 12<|endoftext|>";
    let enc = tok.encode(text, true).unwrap();
    // "the" (merged), "Ġthe" (merged), "Ġ" (byte 0x20 → id 33), "1" (0x31 → 50), "2" (51), the control token.
    assert_eq!(enc.get_ids(), &[260, 259, 33, 50, 51, 0], "{:?}", enc.get_tokens());
    assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), text);
    assert_eq!(tok.decode(enc.get_ids(), true).unwrap(), "the the 12");
    // Non-ASCII text goes through the byte alphabet and comes back intact.
    let hi = "नमस्ते, 世界";
    let enc = tok.encode(hi, false).unwrap();
    assert_eq!(enc.get_ids().len(), hi.len(), "one token per byte without merges");
    assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), hi);
}

#[test]
fn sentencepiece_gguf_asks_for_a_tokenizer_json() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("x.gguf");
    common::write_gguf(&gguf, &[("tokenizer.ggml.model", common::s("llama"))], &[]);
    let e = tokenizer_from_gguf(&Gguf::open(&gguf).unwrap()).unwrap_err().to_string();
    assert!(e.contains("\"llama\"") && e.contains("tokenizer.json"), "{e}");
}
