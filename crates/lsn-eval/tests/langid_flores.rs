//! The language-forcing judge against text whose language is known: lingua's verdict on a fixed sample of FLORES-200
//! devtest sentences (the first 200 of each language) must be the sentence's language for ≥ 95% of them, for every
//! language lsn knows that lingua covers and the data dir holds (needs `LSN_DATA_DIR`).

use lsn_core::Lang;
use lsn_data::Corpus;
use lsn_eval::LanguageId;

const SAMPLE: usize = 200;
const MIN_SHARE: f64 = 0.95;

#[test]
fn lingua_names_the_language_of_flores_sentences() {
    let dir = lsn_data::resolve_data_dir(None)
        .unwrap_or_else(|e| panic!("this test needs the data dir: set LSN_DATA_DIR=../shared/data ({e})"));
    let id = LanguageId::new();
    let (mut tested, mut low) = (Vec::new(), Vec::new());
    for lang in LanguageId::covered() {
        if !Corpus::Flores.path(&dir, lang).is_file() {
            continue;
        }
        let sentences = lsn_data::read_sentences(&dir, Corpus::Flores, lang).unwrap();
        let sample = &sentences[..SAMPLE.min(sentences.len())];
        let right = sample.iter().filter(|s| id.detect(s) == Some(lang)).count();
        let share = right as f64 / sample.len() as f64;
        tested.push(format!("{} {:.1}%", lang.code(), 100.0 * share));
        if share < MIN_SHARE {
            low.push(format!("{} {right}/{}", lang.code(), sample.len()));
        }
    }
    eprintln!("lingua on FLORES-200 devtest ({SAMPLE} sentences each): {}", tested.join(", "));
    // The paper's evaluated languages and its two language sets must all be among those tested.
    for c in ["en", "vi", "hi", "ur", "zh", "fr", "es", "id", "ja", "bn", "ta", "te", "mr", "pa"] {
        let l = Lang::parse(c).unwrap();
        assert!(tested.iter().any(|t| t.starts_with(&format!("{} ", l.code()))), "{c} was not tested");
    }
    assert!(
        low.is_empty(),
        "lingua named the language of fewer than {:.0}% of the sentences of {} (all: {})",
        100.0 * MIN_SHARE,
        low.join(", "),
        tested.join(", ")
    );
}
