//! Capture on a tiny random Gemma 3 through the Candle backend: sharded runs merge into the unsharded bytes, and a
//! run interrupted after any batch resumes to the same bytes.

use std::path::Path;

use lsn_backend_candle::CandleBackend;
use lsn_capture::{CaptureSpec, NoProgress, Outcome, Provenance, Shard, StatsFile, capture, merge_language};
use lsn_core::{
    Backend, ForwardOut, LoadOptions, Model, ModelConfig, ModelFiles, Outputs, Request, TapStats, Taps, TokenBatch,
};

fn tiny_model() -> (tempfile::TempDir, Box<dyn Model>) {
    let (_, cfg) = lsn_weights::tiny_configs().into_iter().find(|(n, _)| *n == "tiny-gemma3").unwrap();
    let dir = tempfile::tempdir().unwrap();
    lsn_weights::write_random_model(&cfg, 7, dir.path()).unwrap();
    let m = CandleBackend.load(&ModelFiles::new(dir.path()), &LoadOptions::default()).unwrap();
    (dir, m)
}

/// 11 rows of 16 tokens: 6 batches of 2 rows, the last one short.
fn ids() -> Vec<u32> {
    (0..11 * 16u32).map(|i| if i % 16 == 0 { 2 } else { (i * 7919 + 13) % 500 + 3 }).collect()
}

fn spec(ids: &[u32], shard: Shard) -> CaptureSpec<'_> {
    CaptureSpec {
        lang: "xx".into(),
        ids,
        row_len: 16,
        batch_rows: 2,
        shard,
        checkpoint_every: 1,
        provenance: Provenance {
            model: "tiny-gemma3".into(),
            config_sha256: "c".into(),
            tokenizer_sha256: "t".into(),
            weights_sha256: "w".into(),
            backend: "candle".into(),
            weights_dtype: lsn_core::WeightDType::F32,
            stats_on: "act".into(),
            data: serde_json::json!({"test": true}),
        },
    }
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn shards_merge_into_the_unsharded_bytes() {
    let (_m, mut model) = tiny_model();
    let ids = ids();
    let whole = tempfile::tempdir().unwrap();
    let out = capture(model.as_mut(), &spec(&ids, Shard::WHOLE), whole.path(), &mut NoProgress).unwrap();
    assert_eq!(out, Outcome::Complete(whole.path().join("xx.safetensors")));
    let reference = bytes(out.path());
    let f = StatsFile::read(out.path()).unwrap();
    assert_eq!(f.meta.tokens_pass1, 11 * 16);
    assert_eq!(f.meta.tokens_pass2, 11 * 16);
    assert!(f.meta.pass1_complete() && f.meta.pass2_complete());
    // Running again does nothing.
    let again = capture(model.as_mut(), &spec(&ids, Shard::WHOLE), whole.path(), &mut NoProgress).unwrap();
    assert!(matches!(again, Outcome::AlreadyDone(_)));

    for n in [2u32, 4] {
        let d = tempfile::tempdir().unwrap();
        for i in 0..n {
            let o = capture(model.as_mut(), &spec(&ids, Shard { index: i, count: n }), d.path(), &mut NoProgress);
            assert!(matches!(o.unwrap(), Outcome::ShardPass1(_)));
        }
        let r = merge_language(d.path(), "xx", None).unwrap();
        assert!(r.complete && r.pass == 1);
        for i in (0..n).rev() {
            let o = capture(model.as_mut(), &spec(&ids, Shard { index: i, count: n }), d.path(), &mut NoProgress);
            assert!(matches!(o.unwrap(), Outcome::ShardPass2(_)));
        }
        let r = merge_language(d.path(), "xx", None).unwrap();
        assert!(r.complete && r.pass == 2);
        assert!(bytes(&r.out) == reference, "{n} shards merged differ from one pass");
        // Merging again is harmless; a shard asked for again is already done.
        merge_language(d.path(), "xx", None).unwrap();
        let o = capture(model.as_mut(), &spec(&ids, Shard { index: 0, count: n }), d.path(), &mut NoProgress);
        assert!(matches!(o.unwrap(), Outcome::AlreadyDone(_)));
    }
    // A stray pass-1 shard of an abandoned split does not replace a complete result.
    let o = capture(model.as_mut(), &spec(&ids, Shard { index: 0, count: 2 }), whole.path(), &mut NoProgress);
    assert!(matches!(o.unwrap(), Outcome::AlreadyDone(_)));
    let other = tempfile::tempdir().unwrap();
    capture(model.as_mut(), &spec(&ids, Shard { index: 0, count: 2 }), other.path(), &mut NoProgress).unwrap();
    let name = "xx.shard-0-of-2.safetensors";
    std::fs::copy(other.path().join(name), whole.path().join(name)).unwrap();
    let e = merge_language(whole.path(), "xx", None).unwrap_err().to_string();
    assert!(e.contains("already complete") && e.contains("xx.shard-0-of-2.safetensors"), "{e}");
    assert!(bytes(&whole.path().join("xx.safetensors")) == reference);
}

/// Fails every forward pass after the first `left`.
struct Dies {
    inner: Box<dyn Model>,
    left: usize,
}

impl Model for Dies {
    fn config(&self) -> &ModelConfig {
        self.inner.config()
    }
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn run(&mut self, req: &Request<'_>) -> lsn_core::Result<ForwardOut> {
        if self.left == 0 {
            return Err(lsn_core::Error::InvalidBatch("simulated crash".into()));
        }
        self.left -= 1;
        self.inner.run(req)
    }
    fn decoder<'m>(
        &'m mut self,
        iv: Option<&lsn_core::Intervention>,
    ) -> lsn_core::Result<Box<dyn lsn_core::Decoder + 'm>> {
        self.inner.decoder(iv)
    }
}

#[test]
fn an_interrupted_capture_resumes_to_the_same_bytes() {
    let (_m, model) = tiny_model();
    let ids = ids();
    let clean = tempfile::tempdir().unwrap();
    let mut model = Dies { inner: model, left: usize::MAX };
    let reference =
        bytes(capture(&mut model, &spec(&ids, Shard::WHOLE), clean.path(), &mut NoProgress).unwrap().path());
    // Batches: 6 in pass 1, 6 in pass 2; crash after k of them, then finish.
    for k in [1, 5, 6, 7, 11] {
        let d = tempfile::tempdir().unwrap();
        model.left = k;
        assert!(capture(&mut model, &spec(&ids, Shard::WHOLE), d.path(), &mut NoProgress).is_err());
        assert!(d.path().join("xx.partial.safetensors").exists() || k == 6, "no checkpoint after {k} batches");
        assert!(!d.path().join("xx.safetensors").exists());
        model.left = usize::MAX;
        let out = capture(&mut model, &spec(&ids, Shard::WHOLE), d.path(), &mut NoProgress).unwrap();
        assert!(bytes(out.path()) == reference, "resumed after {k} batches: bytes differ");
        assert!(!d.path().join("xx.partial.safetensors").exists());
        assert!(!d.path().join("xx.partial.json").exists(), "the checkpoint's metadata copy was left behind");
    }
}

#[test]
fn statistics_match_the_batches_taps() {
    let (_m, mut model) = tiny_model();
    let ids = ids();
    let d = tempfile::tempdir().unwrap();
    let out = capture(model.as_mut(), &spec(&ids, Shard::WHOLE), d.path(), &mut NoProgress).unwrap();
    let f = StatsFile::read(out.path()).unwrap();
    // count_pos is the sum over batches of the per-batch counts.
    let mut want = vec![0u64; f.stats.pass1.count_pos.len()];
    for b in 0..6 {
        let rows = if b == 5 { 1 } else { 2 };
        let batch = TokenBatch::full(rows, 16, ids[b * 32..b * 32 + rows * 16].to_vec()).unwrap();
        let t: TapStats = model.run(&Request::new(&batch, Outputs::NONE).taps(&Taps::COUNT_POS)).unwrap().taps.unwrap();
        want.iter_mut().zip(t.count_pos.unwrap()).for_each(|(w, c)| *w += c);
    }
    assert_eq!(f.stats.pass1.count_pos, want);
    // The p50 count of a neuron is roughly half its tokens; the p95 count is small.
    let p2 = f.stats.pass2.as_ref().unwrap();
    let plane = want.len();
    let (c50, c95): (u64, u64) =
        (p2.count_above[3 * plane..4 * plane].iter().sum(), p2.count_above[6 * plane..].iter().sum());
    let total = 176 * plane as u64;
    assert!(c50 > total / 3 && c50 < total * 2 / 3, "{c50} of {total}");
    assert!(c95 < total / 10, "{c95} of {total}");
}

#[test]
fn a_different_capture_is_not_overwritten() {
    let (_m, mut model) = tiny_model();
    let ids = ids();
    let d = tempfile::tempdir().unwrap();
    capture(model.as_mut(), &spec(&ids, Shard::WHOLE), d.path(), &mut NoProgress).unwrap();
    let mut other = spec(&ids, Shard::WHOLE);
    other.batch_rows = 3;
    let e = capture(model.as_mut(), &other, d.path(), &mut NoProgress).unwrap_err().to_string();
    assert!(e.contains("different capture") && e.contains("batch rows 2 vs 3"), "{e}");
    std::fs::write(d.path().join("xx.safetensors"), b"garbage").unwrap();
    let e = capture(model.as_mut(), &spec(&ids, Shard::WHOLE), d.path(), &mut NoProgress).unwrap_err().to_string();
    assert!(e.contains("unusable") && e.contains("delete it"), "{e}");
}

#[test]
fn merge_names_missing_doubled_and_impossible_shards() {
    let (_m, mut model) = tiny_model();
    let ids = ids();
    let d = tempfile::tempdir().unwrap();
    for i in [0, 2] {
        capture(model.as_mut(), &spec(&ids, Shard { index: i, count: 3 }), d.path(), &mut NoProgress).unwrap();
    }
    let r = merge_language(d.path(), "xx", None).unwrap();
    assert!(!r.complete);
    assert_eq!(r.missing, vec!["xx.shard-1-of-3.safetensors (absent)".to_owned()]);
    // Shards of another model than the run's.
    let other = lsn_core::ModelIdentity::new("c".into(), "t".into(), [("model.safetensors".into(), "z".into())].into());
    let e = merge_language(d.path(), "xx", Some(&other)).unwrap_err().to_string();
    assert!(e.contains("xx.shard-0-of-3.safetensors was captured with another model"), "{e}");
    // A shard of another split of the same language.
    capture(model.as_mut(), &spec(&ids, Shard { index: 0, count: 2 }), d.path(), &mut NoProgress).unwrap();
    let e = merge_language(d.path(), "xx", None).unwrap_err().to_string();
    assert!(e.contains("xx.shard-0-of-2.safetensors") && e.contains("of 3") && e.contains("delete"), "{e}");
    std::fs::remove_file(d.path().join("xx.shard-0-of-2.safetensors")).unwrap();
    // A shard whose count exceeds its tokens is refused when merging, naming the file.
    let p = d.path().join("xx.shard-2-of-3.safetensors");
    let mut f = StatsFile::read(&p).unwrap();
    f.stats.pass1.count_pos[3] = f.stats.pass1.n_tokens + 1;
    f.write(&p).unwrap();
    let e = merge_language(d.path(), "xx", None).unwrap_err().to_string();
    assert!(e.contains("xx.shard-2-of-3.safetensors") && e.contains("count_pos") && e.contains("damaged"), "{e}");
    // A shard of another language renamed into this one.
    std::fs::remove_file(&p).unwrap();
    let mut other = spec(&ids, Shard { index: 2, count: 3 });
    other.lang = "yy".into();
    capture(model.as_mut(), &other, d.path(), &mut NoProgress).unwrap();
    std::fs::rename(d.path().join("yy.shard-2-of-3.safetensors"), &p).unwrap();
    let e = merge_language(d.path(), "xx", None).unwrap_err().to_string();
    assert!(e.contains("xx.shard-2-of-3.safetensors") && e.contains("language \"yy\""), "{e}");
}
