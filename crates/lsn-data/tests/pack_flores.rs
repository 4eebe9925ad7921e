//! Packing the real FLORES-200 + TICO-19 text with the Gemma 3 tokenizer (needs the data dir and the fetched model).

use lsn_core::Lang;
use lsn_data::{Corpus, PackOptions, Packed, Source, Tokenizer, cache_home, default_sources, pack_language};

const BOS: u32 = 2;

fn tokenizer() -> Tokenizer {
    let path = cache_home().join("models/gemma-3-270m/tokenizer.json");
    Tokenizer::from_file(&path).unwrap_or_else(|e| {
        panic!("this test needs the Gemma 3 tokenizer at {}: run `lsn fetch` (or set LSN_HOME): {e}", path.display())
    })
}

fn data_dir() -> std::path::PathBuf {
    lsn_data::resolve_data_dir(None)
        .unwrap_or_else(|e| panic!("this test needs the data dir: set LSN_DATA_DIR=../shared/data ({e})"))
}

/// Packs `code` with FLORES + TICO, checks it against an independent per-sentence tokenization, and returns it.
fn pack_and_check(tok: &Tokenizer, code: &str) -> Packed {
    let dir = data_dir();
    let lang = Lang::parse(code).unwrap();
    let sources = default_sources(&dir, lang);
    assert_eq!(sources, [Source::Flores, Source::Tico], "{code} has both corpora in the data dir");
    let opts = PackOptions::default();
    assert_eq!(opts.row_len, 512);
    let p = pack_language(tok, Some(&dir), lang, &sources, &opts).unwrap();
    println!("{code}: {p:?}");

    // The sentences, tokenized one by one in file order (no shuffle): one BOS per document, at its start, and the
    // same total length as the packed stream.
    let mut n_docs = 0;
    let mut stream_bos = 0;
    let mut stream_tokens = 0u64;
    for (corpus, info) in [Corpus::Flores, Corpus::Tico].into_iter().zip(&p.sources) {
        let sentences = lsn_data::read_sentences(&dir, corpus, lang).unwrap();
        assert_eq!(info.sentences, sentences.len());
        assert_eq!(info.path, corpus.path(&dir, lang));
        for s in &sentences {
            let ids = tok.encode(s).unwrap();
            assert_eq!(ids[0], BOS, "{s}");
            stream_bos += ids.iter().filter(|&&i| i == BOS).count();
            stream_tokens += ids.len() as u64;
        }
        n_docs += sentences.len();
    }
    assert_eq!(p.sources[0].name, "FLORES-200 devtest");
    assert_eq!(p.sources[0].sentences, 1012);
    assert_eq!(p.sources[1].name, "TICO-19 test");
    assert_eq!(p.sources[1].sentences, 2100);
    assert_eq!(p.n_documents, n_docs);
    assert_eq!(stream_bos, n_docs, "one BOS per document");
    assert_eq!(p.stream_tokens, stream_tokens);

    // Rows: every full row of the stream, the tail (< one row) dropped.
    assert!(p.rows > 0);
    assert_eq!(p.rows as u64, stream_tokens / 512);
    assert_eq!(p.dropped_tail as u64, stream_tokens % 512);
    assert_eq!(p.ids.len(), p.rows * 512);
    assert_eq!(p.row(p.rows - 1).len(), 512);
    // The kept rows are a prefix of the shuffled stream: they lose at most the BOS of documents starting in the tail.
    let kept_bos = p.ids.iter().filter(|&&i| i == BOS).count();
    assert!(kept_bos <= n_docs && n_docs - kept_bos <= p.dropped_tail, "{kept_bos} BOS kept of {n_docs}");
    let vocab = tok.vocab_size();
    assert!(p.ids.iter().all(|&i| (i as usize) < vocab));
    p
}

#[test]
fn packs_flores_and_tico_for_en_and_hi() {
    let tok = tokenizer();
    assert_eq!(tok.digest().len(), 64);
    for code in ["en", "hi"] {
        let p = pack_and_check(&tok, code);
        println!("{code}: {} rows of {} tokens", p.rows, p.row_len);
        // Deterministic: a second call gives the same ids and digest; another seed only reorders.
        let again =
            pack_language(&tok, None, p.lang, &default_sources(&data_dir(), p.lang), &PackOptions::default()).unwrap();
        assert_eq!(again.digest, p.digest);
        assert_eq!(again.ids, p.ids);
        let other = PackOptions { seed: 1, ..PackOptions::default() };
        let reseeded = pack_language(&tok, None, p.lang, &[Source::Flores, Source::Tico], &other).unwrap();
        assert_eq!(reseeded.stream_tokens, p.stream_tokens);
        assert_ne!(reseeded.digest, p.digest);
        // A budget keeps the first rows.
        let budget = PackOptions { max_tokens: Some(10 * 512 + 100), ..PackOptions::default() };
        let cut = pack_language(&tok, None, p.lang, &[Source::Flores, Source::Tico], &budget).unwrap();
        assert_eq!(cut.rows, 10);
        assert_eq!(cut.ids, p.ids[..10 * 512]);
    }
}
