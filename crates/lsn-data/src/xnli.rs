//! XNLI (`xnli/xnli.<lang>.{dev,test}.tsv`): premise/hypothesis pairs with their labels, in file order.
//!
//! The files are tab-separated with the header `premise hypothesis label genre`; every row must have four fields
//! and a label among `entailment`, `neutral`, `contradiction`. A bad row is an error naming the file and its line.

use std::path::{Path, PathBuf};

use lsn_core::Lang;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// An XNLI label, in the order the paper's head and lm-evaluation-harness's choices use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NliLabel {
    Entailment = 0,
    Neutral = 1,
    Contradiction = 2,
}

impl NliLabel {
    pub const ALL: [NliLabel; 3] = [NliLabel::Entailment, NliLabel::Neutral, NliLabel::Contradiction];

    pub fn name(self) -> &'static str {
        match self {
            NliLabel::Entailment => "entailment",
            NliLabel::Neutral => "neutral",
            NliLabel::Contradiction => "contradiction",
        }
    }

    pub fn parse(s: &str) -> Option<NliLabel> {
        Self::ALL.into_iter().find(|l| l.name() == s)
    }

    /// The label of class index `i` (0 entailment, 1 neutral, 2 contradiction).
    pub fn from_index(i: usize) -> Option<NliLabel> {
        Self::ALL.get(i).copied()
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// An XNLI split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NliSplit {
    Dev,
    Test,
}

impl NliSplit {
    pub fn name(self) -> &'static str {
        match self {
            NliSplit::Dev => "dev",
            NliSplit::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<NliSplit> {
        [NliSplit::Dev, NliSplit::Test].into_iter().find(|x| x.name() == s)
    }

    /// Pairs per language in the released XNLI 1.0 split (every language holds the same pairs, translated).
    pub fn official_size(self) -> usize {
        match self {
            NliSplit::Dev => 2490,
            NliSplit::Test => 5010,
        }
    }
}

/// One premise/hypothesis pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NliExample {
    /// Row index in the file (0 = the first row after the header); rows are parallel across languages.
    pub row: usize,
    pub premise: String,
    pub hypothesis: String,
    pub label: NliLabel,
    pub genre: String,
}

/// The XNLI file of `lang` and `split` in `data_dir`.
pub fn xnli_path(data_dir: &Path, lang: Lang, split: NliSplit) -> PathBuf {
    data_dir.join("xnli").join(format!("xnli.{}.{}.tsv", lang.code(), split.name()))
}

/// The languages XNLI 1.0 has.
pub const XNLI_LANGS: &str = "ar bg de el en es fr hi ru sw th tr ur vi zh";

/// Every pair of `lang`'s XNLI `split`, in file order.
pub fn read_xnli(data_dir: &Path, lang: Lang, split: NliSplit) -> Result<Vec<NliExample>> {
    let path = xnli_path(data_dir, lang, split);
    let bad = |problem: String| Error::BadTaskFile { path: path.clone(), problem };
    if !path.is_file() {
        return Err(bad(format!("no XNLI {} file for {lang}: XNLI has {XNLI_LANGS}", split.name())));
    }
    let bytes = std::fs::read(&path).map_err(|err| Error::Io { path: path.clone(), err })?;
    let text =
        String::from_utf8(bytes).map_err(|e| bad(format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to())))?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    if header.split('\t').collect::<Vec<_>>() != ["premise", "hypothesis", "label", "genre"] {
        return Err(bad(format!(
            "line 1 is {header:?}, not the header premise<TAB>hypothesis<TAB>label<TAB>genre of an XNLI TSV file"
        )));
    }
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let line_no = i + 2;
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 4 {
            return Err(bad(format!(
                "line {line_no} has {} tab-separated fields, not 4 (premise, hypothesis, label, genre)",
                f.len()
            )));
        }
        let label = NliLabel::parse(f[2]).ok_or_else(|| {
            bad(format!("line {line_no} has the label {:?}: use entailment, neutral or contradiction", f[2]))
        })?;
        if f[0].trim().is_empty() || f[1].trim().is_empty() {
            return Err(bad(format!("line {line_no} has an empty premise or hypothesis")));
        }
        out.push(NliExample {
            row: i,
            premise: f[0].to_owned(),
            hypothesis: f[1].to_owned(),
            label,
            genre: f[3].to_owned(),
        });
    }
    if out.is_empty() {
        return Err(bad("holds no row after its header".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, body: &str) -> Lang {
        std::fs::create_dir_all(dir.join("xnli")).unwrap();
        std::fs::write(dir.join("xnli/xnli.vi.test.tsv"), body).unwrap();
        Lang::parse("vi").unwrap()
    }

    #[test]
    fn reads_rows_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let vi =
            write(dir.path(), "premise\thypothesis\tlabel\tgenre\nA\tB\tneutral\tfiction\nC\tD\tcontradiction\tx\n");
        let ex = read_xnli(dir.path(), vi, NliSplit::Test).unwrap();
        assert_eq!(ex.len(), 2);
        assert_eq!((ex[1].row, ex[1].premise.as_str(), ex[1].label), (1, "C", NliLabel::Contradiction));
        assert_eq!(NliLabel::from_index(1), Some(NliLabel::Neutral));
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let h = "premise\thypothesis\tlabel\tgenre\n";
        for (body, want) in [
            (format!("{h}A\tB\tneutral\tg\nC\tD\tcontradiction\n"), "line 3 has 3 tab-separated fields"),
            (format!("{h}A\tB\tmaybe\tg\n"), "line 2 has the label \"maybe\""),
            (h.to_string(), "holds no row"),
            ("premise,hypothesis\n".to_string(), "line 1 is"),
            (format!("{h}\tB\tneutral\tg\n"), "empty premise"),
        ] {
            let vi = write(dir.path(), &body);
            let e = read_xnli(dir.path(), vi, NliSplit::Test).unwrap_err().to_string();
            assert!(e.contains("xnli.vi.test.tsv") && e.contains(want), "{e}");
        }
        let e = read_xnli(dir.path(), Lang::parse("ja").unwrap(), NliSplit::Dev).unwrap_err().to_string();
        assert!(e.contains("no XNLI dev file for ja"), "{e}");
    }
}
