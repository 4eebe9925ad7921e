//! Tiny random models: written deterministically, readable by `open_checkpoint`, and mismatches reported clearly.

use lsn_core::{ModelConfig, expected_tensors, is_norm};
use lsn_weights::{open_checkpoint, tiny_configs, write_random_model};

fn tiny(name: &str) -> ModelConfig {
    tiny_configs().into_iter().find(|(n, _)| *n == name).unwrap().1
}

fn floats(bytes: &[u8], name: &str) -> Vec<f32> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    st.tensor(name).unwrap().data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn mean_std(v: &[f32]) -> (f64, f64) {
    let m = v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (*x as f64 - m).powi(2)).sum::<f64>() / v.len() as f64;
    (m, var.sqrt())
}

#[test]
fn every_family_round_trips_through_open_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, cfg) in tiny_configs() {
        let dir = tmp.path().join(name);
        write_random_model(&cfg, 42, &dir).unwrap();
        let ck = open_checkpoint(&dir).unwrap();
        assert_eq!(ck.config, cfg, "{name}");
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let specs = expected_tensors(&cfg);
        assert_eq!(st.len(), specs.len(), "{name}");
        for spec in &specs {
            assert_eq!(st.tensor(&spec.name).unwrap().shape(), spec.shape.as_slice(), "{name} {}", spec.name);
            let (m, s) = mean_std(&floats(&bytes, &spec.name));
            if is_norm(&spec.name) {
                let want = if cfg.family.spec().norm_plus_one { 0.0 } else { 1.0 };
                assert!((m - want).abs() < 0.1 && s > 0.03 && s < 0.2, "{name} {}: mean {m} std {s}", spec.name);
            } else {
                // Matrices (and Qwen2's q/k/v biases): std 1/√fan_in, within 5 standard errors of their n values.
                let fan_in =
                    if spec.name.contains("embed") { cfg.hidden_size } else { spec.shape[spec.shape.len() - 1] };
                let want = 1.0 / (fan_in as f64).sqrt();
                let n = spec.shape.iter().product::<usize>() as f64;
                let (m_tol, s_tol) = ((5.0 / n.sqrt()).max(0.2), (5.0 / (2.0 * n).sqrt()).max(0.2));
                assert!(
                    m.abs() < m_tol * want && (s / want - 1.0).abs() < s_tol,
                    "{name} {}: mean {m} std {s}",
                    spec.name
                );
            }
        }
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny("tiny-gemma3");
    let read = |seed: u64, sub: &str| {
        let dir = tmp.path().join(sub);
        write_random_model(&cfg, seed, &dir).unwrap();
        (std::fs::read(dir.join("model.safetensors")).unwrap(), std::fs::read(dir.join("config.json")).unwrap())
    };
    let (a, ca) = read(7, "a");
    let (b, cb) = read(7, "b");
    let (c, _) = read(8, "c");
    assert!(a == b && ca == cb, "same seed must give byte-identical files");
    assert_ne!(a, c, "another seed must give other weights");
    assert_eq!(a.len(), c.len());
}

#[test]
fn refuses_a_non_empty_directory() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("keep.txt"), "x").unwrap();
    let e = write_random_model(&tiny("tiny-llama"), 1, tmp.path()).unwrap_err().to_string();
    assert!(e.contains("not empty"), "{e}");
    assert!(tmp.path().join("keep.txt").exists());
}

#[test]
fn config_disagreeing_with_weights_names_hidden_size() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    write_random_model(&tiny("tiny-llama"), 1, &dir).unwrap();
    let path = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["hidden_size"] = 128.into();
    std::fs::write(&path, v.to_string()).unwrap();
    let e = open_checkpoint(&dir).unwrap_err().to_string();
    assert!(e.contains("hidden_size 128") && e.contains("[512, 64]"), "{e}");
}

#[test]
fn truncated_safetensors_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    write_random_model(&tiny("tiny-gemma3"), 1, &dir).unwrap();
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    let e = open_checkpoint(&dir).unwrap_err().to_string();
    assert!(e.contains("model.safetensors") && e.contains("incomplete or corrupt"), "{e}");
}

#[test]
fn a_layer_beyond_num_hidden_layers_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    write_random_model(&tiny("tiny-llama"), 1, &dir).unwrap();
    let path = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["num_hidden_layers"] = 2.into();
    std::fs::write(&path, v.to_string()).unwrap();
    let e = open_checkpoint(&dir).unwrap_err().to_string();
    assert!(e.contains("not accounted for by config.json") && e.contains("model.layers.2."), "{e}");
}

#[test]
fn a_tensor_of_integer_dtype_is_refused() {
    use safetensors::{Dtype, SafeTensors, tensor::TensorView};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    write_random_model(&tiny("tiny-llama"), 1, &dir).unwrap();
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let views: Vec<(String, TensorView)> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| {
            let dt = if name == "model.norm.weight" { Dtype::I32 } else { v.dtype() };
            (name, TensorView::new(dt, v.shape().to_vec(), v.data()).unwrap())
        })
        .collect();
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(&path, out).unwrap();
    let e = open_checkpoint(&dir).unwrap_err().to_string();
    assert!(e.contains("model.norm.weight") && e.contains("I32") && e.contains("not a float type"), "{e}");
}

#[test]
fn identity_tells_weights_apart_under_one_config() {
    let tmp = tempfile::tempdir().unwrap();
    let memo = tmp.path().join("memo");
    let ids: Vec<_> = [1u64, 2]
        .iter()
        .map(|&seed| {
            let dir = tmp.path().join(format!("m{seed}"));
            write_random_model(&tiny("tiny-gemma3"), seed, &dir).unwrap();
            let tok = dir.join("tokenizer.json");
            if !tok.exists() {
                std::fs::write(&tok, "{}").unwrap();
            }
            open_checkpoint(&dir).unwrap().identity(&lsn_core::sha256_file(&tok).unwrap(), &memo).unwrap()
        })
        .collect();
    assert_eq!(ids[0].config_sha256, ids[1].config_sha256);
    assert_ne!(ids[0].weights_sha256, ids[1].weights_sha256);
    assert!(!ids[0].same_model(&ids[1]));
}

#[test]
fn the_byte_tokenizer_encodes_any_text_with_bos() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, cfg) in tiny_configs() {
        let dir = tmp.path().join(name);
        write_random_model(&cfg, 1, &dir).unwrap();
        let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        assert_eq!(tok.get_vocab_size(true), cfg.vocab_size, "{name}");
        let ids = tok.encode("hé 中", true).unwrap().get_ids().to_vec();
        // BOS, then one token per UTF-8 byte: h, é (2), space, 中 (3).
        assert_eq!(ids.len(), 1 + 7, "{name}: {ids:?}");
        assert_eq!(ids[0], cfg.bos_token_id.unwrap(), "{name}");
        assert!(ids.iter().all(|&i| (i as usize) < cfg.vocab_size));
        let h = tok.token_to_id("<0x68>").unwrap();
        assert_eq!(ids[1], h, "{name}");
        assert_eq!(tok.decode(&ids[1..], true).unwrap(), "hé 中", "{name}");
    }
}
