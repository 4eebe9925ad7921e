//! `lsn fetch-data` against a local HTTP server holding archives shaped as the official ones: downloaded, checked
//! and converted into a data directory the readers accept; a second run downloads nothing; a wrong checksum and an
//! unreachable server are one clear error each and leave no data directory behind.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{fails_with, ok, s};
use serde_json::json;

/// Serves `files` (path → bytes) over HTTP/1.1 on 127.0.0.1 until the test ends; counts the GETs it answered.
fn serve(files: BTreeMap<String, Vec<u8>>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let files = Arc::new(Mutex::new(files));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let body = files.lock().unwrap().get(&path).cloned();
            let _ = match body {
                Some(b) => {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len());
                    stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&b))
                }
                None => stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            };
        }
    });
    (base, hits)
}

fn xnli_zip() -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let header = "language\tgold_label\tsentence1_binary_parse\tsentence1\tsentence2\tpromptID\tgenre\n";
    for split in ["dev", "test"] {
        z.start_file(format!("XNLI-1.0/xnli.{split}.tsv"), zip::write::SimpleFileOptions::default()).unwrap();
        let mut body = header.to_string();
        for (i, label) in ["entailment", "neutral", "contradiction"].iter().enumerate() {
            for lang in ["en", "vi"] {
                body += &format!("{lang}\t{label}\t( x )\t{lang} premise {i}.\t{lang} hypothesis {i}.\t{i}\tfiction\n");
            }
        }
        z.write_all(body.as_bytes()).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn flores_tgz() -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()));
    for (code, text) in [("eng_Latn", "One.\nTwo.\n"), ("vie_Latn", "Một.\nHai.\n"), ("xxx_Xxxx", "?\n")] {
        for split in ["dev", "devtest"] {
            let mut h = tar::Header::new_gnu();
            h.set_size(text.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, format!("flores200_dataset/{split}/{code}.{split}"), text.as_bytes()).unwrap();
        }
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn tico_zip() -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let head = "sourceLang\ttargetLang\tsourceString\ttargetString\tstringID\turl\tlicense\ttranslator_ID\n";
    for (code, words) in [("hi", ["एक", "दो"]), ("es-LA", ["uno", "dos"])] {
        z.start_file(format!("tico19-testset/test/test.en-{code}.tsv"), zip::write::SimpleFileOptions::default())
            .unwrap();
        let body = format!(
            "{head}en\t{code}\t One \t {} \tid1\tu\tl\tt\nen\t{code}\tTwo\t{}\tid2\tu\tl\tt\n",
            words[0], words[1]
        );
        z.write_all(body.as_bytes()).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn xquad_json() -> Vec<u8> {
    let doc = json!({"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "It is in Paris.",
        "qas": [{"id": "q0", "question": "Where?", "answers": [{"text": "Paris", "answer_start": 9}]}]}]}]});
    doc.to_string().into_bytes()
}

struct Setup {
    _t: tempfile::TempDir,
    root: PathBuf,
    base: String,
    hits: Arc<AtomicUsize>,
    files: BTreeMap<String, Vec<u8>>,
}

fn setup() -> Setup {
    let t = tempfile::tempdir().unwrap();
    let files: BTreeMap<String, Vec<u8>> = [
        ("/XNLI-1.0.zip", xnli_zip()),
        ("/flores200_dataset.tar.gz", flores_tgz()),
        ("/tico19-testset.zip", tico_zip()),
        ("/xquad.en.json", xquad_json()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let (base, hits) = serve(files.clone());
    Setup { root: t.path().to_path_buf(), _t: t, base, hits, files }
}

impl Setup {
    /// A sources file for the served files; `wrong` gives that one a wrong sha256.
    fn sources(&self, base: &str, wrong: Option<&str>) -> PathBuf {
        let sha = |p: &str| {
            if Some(p) == wrong { "0".repeat(64) } else { lsn_core::sha256_hex(&self.files[p]) }
        };
        let list = json!([
            {"name": "XNLI-1.0", "url": format!("{base}/XNLI-1.0.zip"), "sha256": sha("/XNLI-1.0.zip"), "kind": "xnli-zip"},
            {"name": "FLORES-200", "url": format!("{base}/flores200_dataset.tar.gz"),
             "sha256": sha("/flores200_dataset.tar.gz"), "kind": "flores-tar-gz"},
            {"name": "TICO-19", "url": format!("{base}/tico19-testset.zip"), "sha256": null, "kind": "tico-zip"},
            {"name": "XQuAD en", "url": format!("{base}/xquad.en.json"), "sha256": sha("/xquad.en.json"),
             "kind": "xquad-json", "lang": "en"},
        ]);
        let p = self.root.join(format!("sources-{}.json", wrong.unwrap_or("ok").trim_start_matches('/')));
        std::fs::write(&p, list.to_string()).unwrap();
        p
    }

    fn fetch(&self, sources: &Path, out: &Path) -> Vec<String> {
        let home = self.root.join("home");
        ["fetch-data", "--sources", s(sources), "--out", s(out), "--home", s(&home)].map(String::from).to_vec()
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn fetches_checks_and_converts_into_a_data_directory_and_downloads_once() {
    let st = setup();
    let out = st.root.join("data");
    let args = st.fetch(&st.sources(&st.base, None), &out);
    let (stdout, _) = ok(&common::strs(&args));
    assert_eq!(st.hits.load(Ordering::SeqCst), 4);
    assert!(stdout.contains("recorded: no published checksum") && stdout.contains("as pinned"), "{stdout}");
    // XNLI: one file per language and split, in file order, the reader's header.
    assert_eq!(
        read(&out.join("xnli/xnli.vi.test.tsv")),
        "premise\thypothesis\tlabel\tgenre\nvi premise 0.\tvi hypothesis 0.\tentailment\tfiction\n\
         vi premise 1.\tvi hypothesis 1.\tneutral\tfiction\nvi premise 2.\tvi hypothesis 2.\tcontradiction\tfiction\n"
    );
    // FLORES: devtest only, languages lsn knows, ISO-prefixed names.
    assert_eq!(read(&out.join("corpus/flores200_devtest/vi.vie_Latn.devtest")), "Một.\nHai.\n");
    let flores: Vec<_> = std::fs::read_dir(out.join("corpus/flores200_devtest")).unwrap().collect();
    assert_eq!(flores.len(), 2, "dev and unknown languages are left out");
    // TICO-19: the target column, trimmed; English from the source column; es-LA as es.
    assert_eq!(read(&out.join("corpus/tico19_test/hi.tico19-test.txt")), "एक\nदो\n");
    assert_eq!(read(&out.join("corpus/tico19_test/es.tico19-test.txt")), "uno\ndos\n");
    assert_eq!(read(&out.join("corpus/tico19_test/en.tico19-test.txt")), "One\nTwo\n");
    assert_eq!(std::fs::read(out.join("xquad/xquad.en.json")).unwrap(), st.files["/xquad.en.json"]);
    let record: serde_json::Value = serde_json::from_str(&read(&out.join("lsn-fetch.json"))).unwrap();
    assert_eq!(record.as_array().unwrap().len(), 4);

    // The readers accept it: an evaluation on the fetched XNLI runs (tiny random model).
    let model = common::random_model(&st.root, "m", "tiny-gemma3", 5);
    let e = st.root.join("e");
    ok(&["eval", "--task", "xnli", "--lang", "vi", "--model", s(&model), "--data-dir", s(&out), "--out", s(&e)]);

    // Again: nothing downloaded (the cache holds every file with its sha256, TICO-19's as recorded).
    ok(&common::strs(&args));
    assert_eq!(st.hits.load(Ordering::SeqCst), 4, "a second fetch downloads nothing");
}

#[test]
fn a_wrong_checksum_or_no_server_is_one_error_and_no_data_directory() {
    let st = setup();
    let out = st.root.join("data");
    let args = st.fetch(&st.sources(&st.base, Some("/flores200_dataset.tar.gz")), &out);
    fails_with(&common::strs(&args), &["FLORES-200", "not the pinned", "sha256"]);
    assert!(!out.exists(), "nothing half-written");
    // A server that is not there (XNLI is in the cache from the run above): the message says what to do offline.
    let gone = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", gone.local_addr().unwrap());
    drop(gone);
    let args = st.fetch(&st.sources(&dead, None), &out);
    fails_with(&common::strs(&args), &["cannot download FLORES-200", "LSN_DATA_DIR"]);
    assert!(!out.exists());
}
