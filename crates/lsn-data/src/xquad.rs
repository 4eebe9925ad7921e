//! XQuAD (`xquad/xquad.<lang>.json`, SQuAD v1.1 JSON): the examples in file order, and the paper's prompt.
//!
//! `answer_start` counts Unicode characters of the context, not bytes; every answer is checked against its context.

use std::path::{Path, PathBuf};

use lsn_core::Lang;
use serde::Deserialize;

use crate::{Error, Result};

/// One question with its context and gold answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QaExample {
    /// Position in the file (articles, paragraphs, questions in order); ids are parallel across languages.
    pub index: usize,
    pub id: String,
    pub context: String,
    pub question: String,
    /// `(text, start in characters)`.
    pub answers: Vec<(String, usize)>,
}

#[derive(Deserialize)]
struct File {
    data: Vec<Article>,
}

#[derive(Deserialize)]
struct Article {
    paragraphs: Vec<Paragraph>,
}

#[derive(Deserialize)]
struct Paragraph {
    context: String,
    qas: Vec<Qa>,
}

#[derive(Deserialize)]
struct Qa {
    id: String,
    question: String,
    answers: Vec<Answer>,
}

#[derive(Deserialize)]
struct Answer {
    text: String,
    answer_start: usize,
}

/// The XQuAD file of `lang` in `data_dir`.
pub fn xquad_path(data_dir: &Path, lang: Lang) -> PathBuf {
    data_dir.join("xquad").join(format!("xquad.{}.json", lang.code()))
}

/// Every example of `lang`'s XQuAD file, in file order (articles, paragraphs, questions).
pub fn read_xquad(data_dir: &Path, lang: Lang) -> Result<Vec<QaExample>> {
    let path = xquad_path(data_dir, lang);
    let bad = |problem: String| Error::BadTaskFile { path: path.clone(), problem };
    if !path.is_file() {
        return Err(bad(format!("no XQuAD file for {lang}: XQuAD has ar de el en es hi ro ru th tr vi zh")));
    }
    let text = std::fs::read(&path).map_err(|err| Error::Io { path: path.clone(), err })?;
    let file: File = serde_json::from_slice(&text).map_err(|e| bad(format!("not SQuAD v1.1 JSON: {e}")))?;
    let mut out = Vec::new();
    for p in file.data.iter().flat_map(|a| &a.paragraphs) {
        let chars: Vec<char> = p.context.chars().collect();
        for qa in &p.qas {
            let row = out.len();
            if qa.answers.is_empty() {
                return Err(bad(format!("example {row} ({}) has no answer", qa.id)));
            }
            let mut answers = Vec::with_capacity(qa.answers.len());
            for a in &qa.answers {
                let n = a.text.chars().count();
                let at: String = chars.iter().skip(a.answer_start).take(n).collect();
                if at != a.text {
                    return Err(bad(format!(
                        "example {row} ({}): the answer {:?} is not at character {} of its context (found {at:?})",
                        qa.id, a.text, a.answer_start
                    )));
                }
                answers.push((a.text.clone(), a.answer_start));
            }
            out.push(QaExample {
                index: row,
                id: qa.id.clone(),
                context: p.context.clone(),
                question: qa.question.clone(),
                answers,
            });
        }
    }
    if out.is_empty() {
        return Err(bad("holds no example".into()));
    }
    Ok(out)
}

/// Which part of a language's XQuAD examples, split as the paper did: the first 80% by file order train, the last
/// 20% evaluate (952 and 238 of 1190).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QaSplit {
    Train,
    Eval,
    All,
}

impl QaSplit {
    pub fn name(self) -> &'static str {
        match self {
            QaSplit::Train => "train",
            QaSplit::Eval => "eval",
            QaSplit::All => "all",
        }
    }

    pub fn parse(s: &str) -> Option<QaSplit> {
        [QaSplit::Train, QaSplit::Eval, QaSplit::All].into_iter().find(|x| x.name() == s)
    }

    /// The examples of this split, in file order.
    pub fn of(self, examples: Vec<QaExample>) -> Vec<QaExample> {
        let cut = examples.len() * 4 / 5;
        match self {
            QaSplit::Train => examples.into_iter().take(cut).collect(),
            QaSplit::Eval => examples.into_iter().skip(cut).collect(),
            QaSplit::All => examples,
        }
    }
}

/// The paper's XQuAD prompt, byte for byte (a triple-quoted Python string whose later lines keep 12 leading spaces;
/// note the space after the context).
pub fn xquad_prompt(context: &str, question: &str) -> String {
    const PAD: &str = "            ";
    format!(
        "Below is an instruction that describes a task, paired with an input that provides further context. Write a \
         response that appropriately completes the request.\n\n{PAD}### Instruction:\n{PAD}Answer the question based on \
         the given context.\n\n{PAD}### Input:\n{PAD}Context: {context} \n{PAD}Question: {question}\n\n{PAD}### Response:"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_is_the_papers() {
        let p = xquad_prompt("C", "Q?");
        assert!(p.starts_with("Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n            ### Instruction:\n"));
        assert!(p.contains("\n            Context: C \n            Question: Q?\n\n            ### Response:"));
        assert!(p.ends_with("### Response:"));
    }

    #[test]
    fn the_split_is_the_papers() {
        let ex: Vec<QaExample> = (0..1190)
            .map(|i| QaExample {
                index: i,
                id: i.to_string(),
                context: String::new(),
                question: String::new(),
                answers: vec![],
            })
            .collect();
        let train = QaSplit::Train.of(ex.clone());
        let eval = QaSplit::Eval.of(ex.clone());
        assert_eq!((train.len(), eval.len()), (952, 238));
        assert_eq!((train[951].index, eval[0].index, eval[237].index), (951, 952, 1189));
        assert_eq!(QaSplit::All.of(ex).len(), 1190);
    }

    #[test]
    fn answers_are_checked_in_characters() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("xquad")).unwrap();
        let write = |start: usize| {
            let doc = serde_json::json!({"version": "1.1", "data": [{"title": "t", "paragraphs": [{
                "context": "Hà Nội là thủ đô.", "qas": [{"id": "q1", "question": "?",
                "answers": [{"text": "thủ đô", "answer_start": start}]}]}]}]});
            std::fs::write(dir.path().join("xquad/xquad.vi.json"), doc.to_string()).unwrap();
        };
        write(10);
        let ex = read_xquad(dir.path(), Lang::parse("vi").unwrap()).unwrap();
        assert_eq!(ex[0].answers, vec![("thủ đô".to_string(), 10)]);
        assert_eq!(QaSplit::Eval.of(ex.clone()).len(), 1);
        assert_eq!(QaSplit::Train.of(ex).len(), 0);
        write(12); // a byte offset would be wrong
        let e = read_xquad(dir.path(), Lang::parse("vi").unwrap()).unwrap_err().to_string();
        assert!(e.contains("example 0 (q1)") && e.contains("character 12"), "{e}");
        let e = read_xquad(dir.path(), Lang::parse("hi").unwrap()).unwrap_err().to_string();
        assert!(e.contains("no XQuAD file for hi"), "{e}");
    }
}
