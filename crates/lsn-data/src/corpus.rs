//! Per-language sentence corpora in the data directory: FLORES-200 devtest and TICO-19 test.

use std::path::{Path, PathBuf};

use lsn_core::Lang;

use crate::{Error, Result};

/// A multilingual corpus of the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corpus {
    /// `corpus/flores200_devtest/<iso>.<flores>.devtest` (1012 parallel sentences).
    Flores,
    /// `corpus/tico19_test/<iso>.tico19-test.txt` (2100 sentences).
    Tico,
}

impl Corpus {
    fn name(self) -> &'static str {
        match self {
            Corpus::Flores => "FLORES-200",
            Corpus::Tico => "TICO-19",
        }
    }

    /// The file holding `lang`'s sentences.
    pub fn path(self, data_dir: &Path, lang: Lang) -> PathBuf {
        match self {
            Corpus::Flores => {
                data_dir.join("corpus/flores200_devtest").join(format!("{}.{}.devtest", lang.code(), lang.flores()))
            }
            Corpus::Tico => data_dir.join("corpus/tico19_test").join(format!("{}.tico19-test.txt", lang.code())),
        }
    }
}

/// The non-empty lines of `lang`'s file in `corpus`, in file order.
pub fn read_sentences(data_dir: &Path, corpus: Corpus, lang: Lang) -> Result<Vec<String>> {
    let path = corpus.path(data_dir, lang);
    if !path.is_file() {
        return Err(Error::MissingCorpus {
            corpus: corpus.name(),
            lang: lang.code().to_owned(),
            dir: path.parent().unwrap_or(data_dir).to_owned(),
            pattern: path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.clone(), err: source })?;
    let lines: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    if lines.is_empty() {
        return Err(Error::EmptyCorpus { path });
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lang(c: &str) -> Lang {
        Lang::parse(c).unwrap()
    }

    #[test]
    fn reads_flores_lines_and_reports_missing_or_empty() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("corpus/flores200_devtest");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("en.eng_Latn.devtest"), "One.\n\n Two. \n").unwrap();
        std::fs::write(dir.join("hi.hin_Deva.devtest"), "\n").unwrap();
        assert_eq!(read_sentences(t.path(), Corpus::Flores, lang("en")).unwrap(), vec!["One.", "Two."]);
        let e = read_sentences(t.path(), Corpus::Flores, lang("hi")).unwrap_err().to_string();
        assert!(e.contains("holds no sentences"), "{e}");
        let e = read_sentences(t.path(), Corpus::Tico, lang("sw")).unwrap_err().to_string();
        assert!(e.contains("sw.tico19-test.txt") && e.contains("TICO-19"), "{e}");
    }
}
