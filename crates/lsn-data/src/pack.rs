//! Packing a language's text into fixed-length token rows (DESIGN §4 "Corpus → rows").
//!
//! The algorithm. Given the same tokenizer, sources, `row_len`, budget and seed, it gives the same rows on every
//! machine and for any number of threads:
//! 1. Read every document of every source, in source order. FLORES-200 devtest and TICO-19 test give one sentence
//!    per non-empty line of the language's file. A [`Source::Text`] file gives one document per non-empty line.
//!    Lines are trimmed, and empty ones are skipped.
//! 2. Shuffle the document order with `lsn_core::SeededRng` (ChaCha8 seeded with `seed`): for i from n−1 down to
//!    1, swap document i with document j, where j = r mod (i+1) and r is the first `next_u64()` draw not below
//!    2^64 mod (i+1). Rejecting those draws keeps j unbiased. The shuffle is our own, not `rand`'s, whose algorithm
//!    may change between versions.
//! 3. Tokenize each document with the tokenizer's special tokens (BOS for Gemma) and concatenate the documents, in
//!    shuffled order, into one stream. Batches of 1024 documents are encoded in parallel, and each batch's
//!    results come back in document order.
//! 4. Cut the stream into non-overlapping rows of `row_len` tokens. The incomplete tail is dropped.
//! 5. With a token budget, keep only the first ⌊max_tokens / row_len⌋ rows. Tokenization stops at the first batch
//!    boundary where the stream already holds enough tokens for those rows. A large text file with a small budget is
//!    therefore not tokenized whole, and the rows are the same as if it had been.
//! 6. With rows to leave (`leave_rows` N), the whole text is tokenized and its last N rows are not kept (nor any
//!    budgeted row among them): they stay unseen for perplexity, PPXC and language-model training.
//!
//! [`Packed::digest`] is the sha256 of the kept ids (each a little-endian u32, row-major) followed by `row_len` (a
//! little-endian u64). It identifies the exact data when a run resumes.

use std::path::{Path, PathBuf};

use lsn_core::Lang;
use sha2::{Digest, Sha256};

use crate::{Corpus, Error, Result, Tokenizer, read_sentences, resolve_data_dir};

/// Documents tokenized per parallel batch. This is also the granularity at which a met budget stops tokenization.
const BATCH: usize = 1024;

/// Where a language's documents come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// FLORES-200 devtest in the data directory.
    Flores,
    /// TICO-19 test in the data directory.
    Tico,
    /// A user's plain-text file with one document per non-empty line.
    Text(PathBuf),
}

impl Source {
    /// A human-readable name: `"FLORES-200 devtest"`, `"TICO-19 test"`, or the text file's path.
    pub fn name(&self) -> String {
        match self {
            Source::Flores => "FLORES-200 devtest".into(),
            Source::Tico => "TICO-19 test".into(),
            Source::Text(p) => p.display().to_string(),
        }
    }
}

/// The default sources for `lang`: FLORES-200 always, plus TICO-19 when the data directory has a file for `lang`.
pub fn default_sources(data_dir: &Path, lang: Lang) -> Vec<Source> {
    let mut s = vec![Source::Flores];
    if Corpus::Tico.path(data_dir, lang).is_file() {
        s.push(Source::Tico);
    }
    s
}

/// How to pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackOptions {
    /// Tokens per row (the paper uses 512).
    pub row_len: usize,
    /// Token budget per language. Only the first ⌊max_tokens / row_len⌋ rows are kept.
    pub max_tokens: Option<u64>,
    /// Seed of the document shuffle.
    pub seed: u64,
    /// Rows at the end of the text that are never kept (step 6 of the module docs); 0 keeps every row.
    pub leave_rows: usize,
}

impl Default for PackOptions {
    fn default() -> Self {
        Self { row_len: 512, max_tokens: None, seed: 0, leave_rows: 0 }
    }
}

/// One source's contribution to a [`Packed`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceInfo {
    /// See [`Source::name`].
    pub name: String,
    /// The file that was read.
    pub path: PathBuf,
    /// Documents (non-empty lines) read from it.
    pub sentences: usize,
}

/// A language's text packed into rows of token ids.
#[derive(Clone, PartialEq)]
pub struct Packed {
    pub lang: Lang,
    pub row_len: usize,
    /// `rows * row_len` ids, row-major. Use [`Packed::row`] to get one row.
    pub ids: Vec<u32>,
    pub rows: usize,
    /// The sources, in the order they were read.
    pub sources: Vec<SourceInfo>,
    /// Documents tokenized into the stream. Without a budget, this is every document the sources gave.
    pub n_documents: usize,
    /// Tokens in the stream before it was cut into rows.
    pub stream_tokens: u64,
    /// Tokens of the incomplete last row, which were dropped (fewer than `row_len`). Any tokens left out by the budget
    /// number `stream_tokens - n_tokens() - dropped_tail`.
    pub dropped_tail: usize,
    /// sha256 hex of the packed ids and `row_len` (see the module docs).
    pub digest: String,
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed")
            .field("lang", &self.lang)
            .field("row_len", &self.row_len)
            .field("rows", &self.rows)
            .field("sources", &self.sources)
            .field("n_documents", &self.n_documents)
            .field("stream_tokens", &self.stream_tokens)
            .field("dropped_tail", &self.dropped_tail)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl Packed {
    /// Row `r` (`r < rows`).
    pub fn row(&self, r: usize) -> &[u32] {
        &self.ids[r * self.row_len..(r + 1) * self.row_len]
    }

    /// Tokens kept: `rows * row_len`.
    pub fn n_tokens(&self) -> u64 {
        self.ids.len() as u64
    }
}

/// Packs `lang`'s documents from `sources` into rows, following the algorithm in the module docs. FLORES and TICO
/// are read from `data_dir`. Without a `data_dir`, they are read from the directory that [`resolve_data_dir`] finds.
pub fn pack_language(
    tok: &Tokenizer,
    data_dir: Option<&Path>,
    lang: Lang,
    sources: &[Source],
    opts: &PackOptions,
) -> Result<Packed> {
    let bad = |reason: String| Error::BadPackOptions { lang: lang.code().to_owned(), reason };
    let row_len = opts.row_len;
    if row_len == 0 {
        return Err(bad("row length 0: pass --row-len of at least 1 (the paper uses 512)".into()));
    }
    let max_rows = match opts.max_tokens {
        None => None,
        Some(budget) => match budget / row_len as u64 {
            0 => {
                return Err(bad(format!(
                    "the token budget {budget} is smaller than one row of {row_len} tokens: \
                     raise --max-tokens to at least {row_len} or pass a smaller --row-len"
                )));
            }
            r => Some(usize::try_from(r).unwrap_or(usize::MAX)),
        },
    };
    if sources.is_empty() {
        return Err(bad("no sources given: name at least one corpus or text file".into()));
    }

    let mut docs = Vec::new();
    let mut infos = Vec::with_capacity(sources.len());
    let mut dir: Option<PathBuf> = None;
    for source in sources {
        let (path, lines) = match source {
            Source::Flores | Source::Tico => {
                let corpus = if *source == Source::Flores { Corpus::Flores } else { Corpus::Tico };
                let d = match &dir {
                    Some(d) => d,
                    None => dir.insert(resolve_data_dir(data_dir)?),
                };
                (corpus.path(d, lang), read_sentences(d, corpus, lang)?)
            }
            Source::Text(p) => (p.clone(), read_text(p)?),
        };
        infos.push(SourceInfo { name: source.name(), path, sentences: lines.len() });
        docs.extend(lines);
    }
    lsn_core::SeededRng::new(opts.seed).shuffle(&mut docs);

    let needed = max_rows.map(|r| (r as u64).saturating_mul(row_len as u64));
    let mut stream: Vec<u32> = Vec::new();
    let mut n_documents = 0;
    for batch in docs.chunks(BATCH) {
        if opts.leave_rows == 0 && needed.is_some_and(|n| stream.len() as u64 >= n) {
            break;
        }
        let texts: Vec<&str> = batch.iter().map(String::as_str).collect();
        for ids in tok.encode_batch(&texts)? {
            stream.extend_from_slice(&ids);
        }
        n_documents += batch.len();
    }
    let stream_tokens = stream.len() as u64;
    let full_rows = stream.len() / row_len;
    if full_rows == 0 {
        return Err(Error::TooLittleText { lang: lang.code().to_owned(), available: stream_tokens, row_len });
    }
    let dropped_tail = stream.len() % row_len;
    if opts.leave_rows >= full_rows {
        return Err(bad(format!(
            "its text gives {full_rows} rows of {row_len} tokens, so leaving the last {} unseen keeps none: leave at \
             most {} rows, or give more text",
            opts.leave_rows,
            full_rows - 1
        )));
    }
    let rows = max_rows.map_or(full_rows, |m| m.min(full_rows)).min(full_rows - opts.leave_rows);
    stream.truncate(rows * row_len);
    let digest = rows_digest(&stream, row_len);
    tracing::info!(
        lang = lang.code(),
        rows,
        row_len,
        n_documents,
        stream_tokens,
        dropped_tail,
        digest = %digest,
        "packed"
    );
    Ok(Packed { lang, row_len, ids: stream, rows, sources: infos, n_documents, stream_tokens, dropped_tail, digest })
}

/// The non-empty (trimmed) lines of a user's text file.
fn read_text(path: &Path) -> Result<Vec<String>> {
    if !path.is_file() {
        let problem = match std::fs::metadata(path) {
            _ if path.as_os_str().is_empty() => "is an empty path",
            Err(_) => "does not exist",
            Ok(m) if m.is_dir() => "is a directory",
            Ok(_) => "is not a regular file",
        };
        return Err(Error::MissingText { path: path.to_owned(), problem });
    }
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_owned(), err: source })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count();
        Error::NotUtf8 { path: path.to_owned(), line }
    })?;
    let lines: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    if lines.is_empty() {
        return Err(Error::EmptyText { path: path.to_owned() });
    }
    Ok(lines)
}

/// The digest of packed rows (see the module docs): sha256 of the ids as little-endian u32s, then `row_len` as a
/// little-endian u64. [`Packed::digest`] is this over the kept rows.
pub fn rows_digest(ids: &[u32], row_len: usize) -> String {
    let mut h = Sha256::new();
    for id in ids {
        h.update(id.to_le_bytes());
    }
    h.update((row_len as u64).to_le_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whitespace-split words a..j (ids 2..11), unknown words 0, and a BOS `<s>` (id 1) added to every document.
    const TOKENIZER: &str = r#"{"version":"1.0","truncation":null,"padding":null,
        "added_tokens":[{"id":1,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,
            "normalized":false,"special":true}],
        "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},
        "post_processor":{"type":"TemplateProcessing",
            "single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
            "pair":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},
                {"Sequence":{"id":"B","type_id":1}}],
            "special_tokens":{"<s>":{"id":"<s>","ids":[1],"tokens":["<s>"]}}},
        "decoder":null,
        "model":{"type":"WordLevel","vocab":{"<unk>":0,"<s>":1,"a":2,"b":3,"c":4,"d":5,"e":6,"f":7,"g":8,"h":9,
            "i":10,"j":11},"unk_token":"<unk>"}}"#;

    struct Fixture {
        dir: tempfile::TempDir,
        tok: Tokenizer,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("tokenizer.json");
            std::fs::write(&p, TOKENIZER).unwrap();
            let tok = Tokenizer::from_file(&p).unwrap();
            std::fs::create_dir_all(dir.path().join("corpus/flores200_devtest")).unwrap();
            std::fs::create_dir_all(dir.path().join("corpus/tico19_test")).unwrap();
            Self { dir, tok }
        }

        fn text(&self, name: &str, content: &str) -> Source {
            let p = self.dir.path().join(name);
            std::fs::write(&p, content).unwrap();
            Source::Text(p)
        }

        fn corpus(&self, corpus: Corpus, lang: Lang, content: &str) {
            std::fs::write(corpus.path(self.dir.path(), lang), content).unwrap();
        }

        fn pack(&self, sources: &[Source], row_len: usize, max_tokens: Option<u64>, seed: u64) -> Result<Packed> {
            let opts = PackOptions { row_len, max_tokens, seed, leave_rows: 0 };
            pack_language(&self.tok, Some(self.dir.path()), en(), sources, &opts)
        }
    }

    fn en() -> Lang {
        Lang::parse("en").unwrap()
    }

    fn shuffle<T>(items: &mut [T], seed: u64) {
        lsn_core::SeededRng::new(seed).shuffle(items);
    }

    /// Ten one-word documents "a".."j": document k tokenizes to [1, k + 2].
    const TEN_DOCS: &str = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";

    #[test]
    fn shuffle_order_is_pinned() {
        // A golden: changing the shuffle changes every packed corpus (and every digest) in existing run directories.
        let mut v: Vec<u32> = (0..10).collect();
        shuffle(&mut v, 0);
        assert_eq!(v, [7, 8, 9, 0, 1, 5, 4, 6, 3, 2]);
        let mut w: Vec<u32> = (0..3).collect();
        shuffle(&mut w, 0);
        assert_eq!(w, [2, 1, 0]);
        // The same by hand from the raw draws: swap 2 with r1 mod 3, then 1 with r2 mod 2 (no draw is rejected: the
        // rejection zones are below 2^64 mod 3 = 1 and 2^64 mod 2 = 0).
        use rand_chacha::rand_core::{RngCore, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let (r1, r2) = (rng.next_u64(), rng.next_u64());
        assert!(r1 >= 1);
        let mut by_hand = [0u32, 1, 2];
        by_hand.swap(2, (r1 % 3) as usize);
        by_hand.swap(1, (r2 % 2) as usize);
        assert_eq!(by_hand, w[..]);
        let mut empty: Vec<u32> = vec![];
        shuffle(&mut empty, 0);
        let mut one = vec![9];
        shuffle(&mut one, 0);
        assert_eq!(one, [9]);
    }

    #[test]
    fn shuffle_is_uniform_over_permutations() {
        // All 6 orders of 3 items appear about equally often over 6000 seeds (expected 1000 each; ±15% is > 5 sigma).
        let mut counts = std::collections::HashMap::new();
        for seed in 0..6000 {
            let mut v = [0u8, 1, 2];
            shuffle(&mut v, seed);
            *counts.entry(v).or_insert(0u32) += 1;
        }
        assert_eq!(counts.len(), 6);
        for (perm, n) in counts {
            assert!((850..=1150).contains(&n), "{perm:?} drawn {n} times of 6000");
        }
    }

    #[test]
    fn uniform_below_stays_in_range() {
        let mut rng = lsn_core::SeededRng::new(1);
        assert!((0..100).all(|_| rng.below(1) == 0));
        let big = (1u64 << 63) + 1; // rejects almost half of all draws
        assert!((0..100).all(|_| rng.below(big) < big));
    }

    #[test]
    fn packs_exact_rows_by_hand() {
        let f = Fixture::new();
        // Documents 0 "a b" → [1,2,3], 1 "c" → [1,4], 2 "d e f" → [1,5,6,7]. Seed 0 orders them 2, 1, 0
        // (`shuffle_order_is_pinned`), so the stream is [1,5,6,7, 1,4, 1,2,3]: 9 tokens, 2 rows of 4, 1 dropped.
        let src = f.text("docs.txt", "a b\n\n  c  \nd e f\n");
        let p = f.pack(std::slice::from_ref(&src), 4, None, 0).unwrap();
        assert_eq!(p.ids, [1, 5, 6, 7, 1, 4, 1, 2]);
        assert_eq!((p.rows, p.row_len, p.n_tokens()), (2, 4, 8));
        assert_eq!(p.row(0), [1, 5, 6, 7]);
        assert_eq!(p.row(1), [1, 4, 1, 2]);
        assert_eq!((p.n_documents, p.stream_tokens, p.dropped_tail), (3, 9, 1));
        let Source::Text(path) = &src else { unreachable!() };
        assert_eq!(p.sources, [SourceInfo { name: path.display().to_string(), path: path.clone(), sentences: 3 }]);
        assert_eq!(p.lang, en());
        // The digest is sha256 over the ids (u32 LE) and then row_len (u64 LE).
        let mut bytes: Vec<u8> = p.ids.iter().flat_map(|i| i.to_le_bytes()).collect();
        bytes.extend(4u64.to_le_bytes());
        assert_eq!(p.digest, hex::encode(Sha256::digest(&bytes)));
        // A row length dividing the stream drops nothing.
        let p3 = f.pack(&[src], 3, None, 0).unwrap();
        assert_eq!((p3.rows, p3.dropped_tail), (3, 0));
        assert_eq!(p3.ids, [1, 5, 6, 7, 1, 4, 1, 2, 3]);
        assert_ne!(p3.digest, p.digest);
    }

    #[test]
    fn sources_are_read_in_order_then_shuffled_together() {
        let f = Fixture::new();
        f.corpus(Corpus::Flores, en(), "a\nb\nc\n");
        f.corpus(Corpus::Tico, en(), "d\ne\n");
        let text = f.text("more.txt", "f\ng\nh\ni\nj\n");
        let sources = [Source::Flores, Source::Tico, text];
        let p = f.pack(&sources, 2, None, 0).unwrap();
        // Documents a..j in source order, shuffled as `shuffle_order_is_pinned` says: 7,8,9,0,1,5,4,6,3,2.
        let expected: Vec<u32> = [7u32, 8, 9, 0, 1, 5, 4, 6, 3, 2].iter().flat_map(|&d| [1, d + 2]).collect();
        assert_eq!(p.ids, expected);
        let names: Vec<_> = p.sources.iter().map(|s| (s.name.as_str(), s.sentences)).collect();
        assert_eq!(names[..2], [("FLORES-200 devtest", 3), ("TICO-19 test", 2)]);
        assert_eq!(names[2].1, 5);
        assert_eq!(p.sources[0].path, Corpus::Flores.path(f.dir.path(), en()));
        assert_eq!(p.n_documents, 10);
    }

    #[test]
    fn same_seed_same_ids_other_seed_other_order() {
        let f = Fixture::new();
        let src = [f.text("ten.txt", TEN_DOCS)];
        let a = f.pack(&src, 4, None, 7).unwrap();
        let b = f.pack(&src, 4, None, 7).unwrap();
        assert_eq!(a, b);
        let c = f.pack(&src, 4, None, 8).unwrap();
        assert_ne!(a.ids, c.ids);
        assert_ne!(a.digest, c.digest);
        // Only the order differs: the same documents and token counts.
        assert_eq!((a.rows, a.stream_tokens, a.n_documents), (c.rows, c.stream_tokens, c.n_documents));
        let sorted = |p: &Packed| {
            let mut v = p.ids.clone();
            v.sort();
            v
        };
        assert_eq!(sorted(&a), sorted(&c));
    }

    #[test]
    fn budget_keeps_the_first_rows() {
        let f = Fixture::new();
        let src = [f.text("ten.txt", TEN_DOCS)];
        let all = f.pack(&src, 3, None, 0).unwrap();
        assert_eq!((all.rows, all.stream_tokens, all.dropped_tail), (6, 20, 2));
        // 10 tokens buy ⌊10/3⌋ = 3 rows: the first 3 rows of the unbudgeted packing.
        let some = f.pack(&src, 3, Some(10), 0).unwrap();
        assert_eq!(some.rows, 3);
        assert_eq!(some.ids, all.ids[..9]);
        assert_eq!(some.row(2), all.row(2));
        assert_eq!(some.stream_tokens, 20);
        assert_ne!(some.digest, all.digest);
        // A budget over what the text gives keeps every row.
        assert_eq!(f.pack(&src, 3, Some(1_000_000), 0).unwrap(), all);
        // Exactly one row.
        assert_eq!(f.pack(&src, 3, Some(3), 0).unwrap().ids, all.ids[..3]);
    }

    #[test]
    fn left_rows_are_the_last_ones_and_never_kept() {
        let f = Fixture::new();
        let src = [f.text("ten.txt", TEN_DOCS)];
        let all = f.pack(&src, 3, None, 0).unwrap();
        assert_eq!(all.rows, 6);
        let with = |max_tokens, leave_rows| {
            let opts = PackOptions { row_len: 3, max_tokens, seed: 0, leave_rows };
            pack_language(&f.tok, Some(f.dir.path()), en(), &src, &opts)
        };
        // Leaving 2 of 6 rows keeps the first 4, whatever the budget above them.
        let left = with(None, 2).unwrap();
        assert_eq!((left.rows, left.ids.as_slice()), (4, &all.ids[..12]));
        assert_eq!(with(Some(1_000_000), 2).unwrap(), left);
        // A budget below them still keeps its first rows.
        assert_eq!(with(Some(6), 2).unwrap().ids, all.ids[..6]);
        // Leaving every row is refused, saying how many may be left.
        let err = with(None, 6).unwrap_err().to_string();
        assert!(err.contains("gives 6 rows") && err.contains("at most 5 rows"), "{err}");
    }

    #[test]
    fn budget_stops_tokenizing_a_big_file_early() {
        let f = Fixture::new();
        let docs = "a b\n".repeat(3 * BATCH);
        let src = [f.text("big.txt", &docs)];
        let all = f.pack(&src, 3, None, 5).unwrap();
        assert_eq!((all.n_documents, all.stream_tokens, all.rows), (3 * BATCH, 9 * BATCH as u64, 3 * BATCH));
        let some = f.pack(&src, 3, Some(30), 5).unwrap();
        assert_eq!((some.n_documents, some.stream_tokens, some.rows), (BATCH, 3 * BATCH as u64, 10));
        assert_eq!(some.ids, all.ids[..30]);
        assert_eq!(some.stream_tokens - some.n_tokens() - some.dropped_tail as u64, 3 * BATCH as u64 - 30);
    }

    #[test]
    fn default_sources_add_tico_when_present() {
        let f = Fixture::new();
        let hi = Lang::parse("hi").unwrap();
        f.corpus(Corpus::Tico, en(), "a\n");
        assert_eq!(default_sources(f.dir.path(), en()), [Source::Flores, Source::Tico]);
        assert_eq!(default_sources(f.dir.path(), hi), [Source::Flores]);
    }

    fn err(r: Result<Packed>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn bad_options_are_clear_errors() {
        let f = Fixture::new();
        let src = [f.text("ten.txt", TEN_DOCS)];
        let e = err(f.pack(&src, 0, None, 0));
        assert!(e.contains("cannot pack en") && e.contains("row length 0") && e.contains("--row-len"), "{e}");
        let e = err(f.pack(&src, 4, Some(3), 0));
        assert!(e.contains("token budget 3 is smaller than one row of 4") && e.contains("--max-tokens"), "{e}");
        let e = err(f.pack(&[], 4, None, 0));
        assert!(e.contains("no sources"), "{e}");
    }

    #[test]
    fn too_little_text_names_language_tokens_and_row_len() {
        let f = Fixture::new();
        let src = [f.text("short.txt", "a b c\nd\n")];
        let e = err(f.pack(&src, 512, None, 0));
        assert!(e.contains("too little text for language en") && e.contains("give 6 tokens"), "{e}");
        assert!(e.contains("one row of 512") && e.contains("smaller --row-len") && e.contains("more text"), "{e}");
        assert_eq!(f.pack(&src, 6, None, 0).unwrap().rows, 1);
    }

    #[test]
    fn missing_or_empty_sources_are_clear_errors() {
        let f = Fixture::new();
        let missing = Source::Text(f.dir.path().join("nope.txt"));
        let e = err(f.pack(&[missing], 4, None, 0));
        assert!(e.contains("nope.txt does not exist") && e.contains("one document per line"), "{e}");
        let blank = f.text("blank.txt", "\n  \n\t\n");
        let e = err(f.pack(&[blank], 4, None, 0));
        assert!(e.contains("blank.txt holds no text"), "{e}");
        let e = err(f.pack(&[Source::Flores], 4, None, 0));
        assert!(e.contains("no FLORES-200 text for language en") && e.contains("en.eng_Latn.devtest"), "{e}");
        f.corpus(Corpus::Flores, en(), "a\n");
        let e = err(f.pack(&[Source::Flores, Source::Tico], 4, None, 0));
        assert!(e.contains("no TICO-19 text for language en"), "{e}");
        f.corpus(Corpus::Tico, en(), "\n\n");
        let e = err(f.pack(&[Source::Flores, Source::Tico], 4, None, 0));
        assert!(e.contains("en.tico19-test.txt holds no sentences"), "{e}");
        // A data directory without corpus/ is the data-dir error, naming --data-dir.
        let empty = tempfile::tempdir().unwrap();
        let e = err(pack_language(&f.tok, Some(empty.path()), en(), &[Source::Flores], &PackOptions::default()));
        assert!(e.contains("no corpus/, xnli/ or xquad/ folder") && e.contains("--data-dir"), "{e}");
    }
}
