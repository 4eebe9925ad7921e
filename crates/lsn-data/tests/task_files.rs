//! Every XNLI and XQuAD file of the data dir reads without a skipped row (needs LSN_DATA_DIR): XNLI 2490 dev and 5010
//! test pairs per language with balanced labels, rows parallel across languages; XQuAD 1190 questions per language
//! with every answer at its character offset, ids parallel across languages, split 952 / 238.

use lsn_core::Lang;
use lsn_data::{NliLabel, NliSplit, QaSplit, XNLI_LANGS, read_xnli, read_xquad};

fn data_dir() -> std::path::PathBuf {
    lsn_data::resolve_data_dir(None)
        .unwrap_or_else(|e| panic!("this test needs the data dir: set LSN_DATA_DIR=../shared/data ({e})"))
}

#[test]
fn every_xnli_file_reads_whole() {
    let dir = data_dir();
    for (split, n) in [(NliSplit::Dev, 2490), (NliSplit::Test, 5010)] {
        let en = read_xnli(&dir, Lang::parse("en").unwrap(), split).unwrap();
        for code in XNLI_LANGS.split(' ') {
            let rows = read_xnli(&dir, Lang::parse(code).unwrap(), split).unwrap();
            assert_eq!(rows.len(), n, "{code} {split:?}");
            for l in NliLabel::ALL {
                assert_eq!(rows.iter().filter(|r| r.label == l).count(), n / 3, "{code} {split:?} {l:?}");
            }
            // Parallel rows: the same label and genre as English, row by row.
            assert!(rows.iter().zip(&en).all(|(a, b)| a.label == b.label && a.genre == b.genre), "{code} {split:?}");
        }
    }
}

#[test]
fn every_xquad_file_reads_whole() {
    let dir = data_dir();
    let en = read_xquad(&dir, Lang::parse("en").unwrap()).unwrap();
    for code in ["ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh"] {
        let ex = read_xquad(&dir, Lang::parse(code).unwrap()).unwrap();
        assert_eq!(ex.len(), 1190, "{code}");
        assert!(ex.iter().zip(&en).all(|(a, b)| a.id == b.id), "{code}: ids are not parallel to English");
        assert_eq!(QaSplit::Eval.of(ex).len(), 238);
    }
}
