//! `lsn fetch-data`: the study's data from its official sources — downloaded, checked against pinned sha256s, and
//! converted into the data-directory layout (`corpus/`, `xnli/`, `xquad/`) the readers expect.
//!
//! Sources (the built-in list, [`official_sources`]): XNLI-1.0's zip (dev and test of 15 languages in two TSVs),
//! XQuAD's twelve JSON files from its repository at a fixed commit, FLORES-200's tarball (devtest), and TICO-19's
//! test-set zip. The first three have published checksums; TICO-19 has none, so its archive's sha256 is recorded
//! at the first download and held to on every later one. A list of one's own (a mirror, a test server) is read
//! with [`DataSource`]'s JSON form.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// What a downloaded file is, and so how it is converted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Kind {
    /// XNLI-1.0.zip: `XNLI-1.0/xnli.{dev,test}.tsv`, every language in one file.
    XnliZip,
    /// One language's XQuAD file, stored as it is.
    XquadJson { lang: String },
    /// FLORES-200's `flores200_dataset.tar.gz`: `flores200_dataset/devtest/<flores code>.devtest`.
    FloresTarGz,
    /// TICO-19's `tico19-testset.zip`: `tico19-testset/test/test.en-<code>.tsv`.
    TicoZip,
}

/// One file to download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSource {
    pub name: String,
    pub url: String,
    /// The expected sha256 (hex); `None` where the source publishes none (then the first download's is recorded).
    pub sha256: Option<String>,
    #[serde(flatten)]
    pub kind: Kind,
}

/// XQuAD's repository at the commit the shared data was taken from, and its files' sha256s.
const XQUAD_COMMIT: &str = "7d30520c717524000f0d9d2f9c10a069acd9d285";
const XQUAD: [(&str, &str); 12] = [
    ("ar", "abdabd7afed5c635d99cca0f3f0d0c9d9ed0bc77451e963c2e4e0638c29e486d"),
    ("de", "990b5d746746ed65ed4702ea5f35f99ffa4e2f1c390c07d003642acd937916f9"),
    ("el", "821cf0f88e73fa258fd2f548b19b6ec39f7025059e16f6f9fc8cd797c9c3663e"),
    ("en", "e4c57d1c9143aaa1c5d265ba5987a65f4e69528d2a98f29d6e75019b10344f29"),
    ("es", "dcbae93ec3a9f4b9e78fd834a171d6f96c1a875e10e15b7530b7e4ef4971e37e"),
    ("hi", "df2cce3532b37e9beb8979704b5c9a4bf874358f105395a298b89427b43b9d24"),
    ("ro", "94f8d54e93ad2b7dd2e76dd921a666b5b8eff2d4379df9f179c42b445f09643f"),
    ("ru", "208d5b1aa154c52b1b5c5eda16281e455e8fd198cdb9af3f469f0d6037d973bf"),
    ("th", "5cdda11d0e1e075f7872abf4e6ae830388ce7f617964d542308e9ae4257e0f43"),
    ("tr", "92179a564774b7696100d144c1e10870d0a966b6fccbdd254a65b9d2ab1971cc"),
    ("vi", "f619a1eb11fb42d3ab0834259e488a65f585447ef6154437bfb7199d85161a04"),
    ("zh", "691d0b3359bc6b8faa8de931dfdfe21d50a65861ae348e32a0d1a0190b0c8835"),
];

/// The official sources of the study's data.
pub fn official_sources() -> Vec<DataSource> {
    let mut v = vec![
        DataSource {
            name: "XNLI-1.0".into(),
            url: "https://dl.fbaipublicfiles.com/XNLI/XNLI-1.0.zip".into(),
            sha256: Some("4ba1d5e1afdb7161f0f23c66dc787802ccfa8a25a3ddd3b165a35e50df346ab1".into()),
            kind: Kind::XnliZip,
        },
        DataSource {
            name: "FLORES-200".into(),
            url: "https://dl.fbaipublicfiles.com/nllb/flores200_dataset.tar.gz".into(),
            sha256: Some("b8b0b76783024b85797e5cc75064eb83fc5288b41e9654dabc7be6ae944011f6".into()),
            kind: Kind::FloresTarGz,
        },
        DataSource {
            name: "TICO-19".into(),
            url: "https://tico-19.github.io/data/tico19-testset.zip".into(),
            sha256: None,
            kind: Kind::TicoZip,
        },
    ];
    v.extend(XQUAD.iter().map(|(lang, sha)| DataSource {
        name: format!("XQuAD {lang}"),
        url: format!("https://raw.githubusercontent.com/google-deepmind/xquad/{XQUAD_COMMIT}/xquad.{lang}.json"),
        sha256: Some((*sha).into()),
        kind: Kind::XquadJson { lang: (*lang).into() },
    }));
    v
}

/// Where downloads are kept: `home/downloads/<name of the URL's last segment>`.
fn download_path(home: &Path, src: &DataSource) -> PathBuf {
    let file = src.url.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or("download");
    home.join("downloads").join(file)
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io { path: path.to_owned(), err: e }
}

/// The sha256 recorded for a source without a published one (`home/downloads/<file>.sha256`).
fn recorded(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

/// Downloads `src` into the cache (unless a file with the expected sha256 is already there) and returns its path
/// and sha256. A mismatch is an error naming both hashes; the bad file is removed.
pub fn download(
    home: &Path,
    src: &DataSource,
    progress: &mut dyn FnMut(&str, u64, Option<u64>),
) -> Result<(PathBuf, String)> {
    let path = download_path(home, src);
    let pinned = match &src.sha256 {
        Some(s) => Some(s.to_lowercase()),
        None => std::fs::read_to_string(recorded(&path)).ok().map(|s| s.trim().to_owned()),
    };
    if path.is_file()
        && let Some(want) = &pinned
        && &lsn_core::sha256_file(&path)? == want
    {
        return Ok((path, want.clone()));
    }
    let dir = path.parent().expect("under downloads/");
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let tmp = path.with_extension("part");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(std::time::Duration::from_secs(30)))
        .timeout_recv_response(Some(std::time::Duration::from_secs(60)))
        .build()
        .into();
    let response = agent.get(&src.url).call().map_err(|e| Error::Download {
        name: src.name.clone(),
        url: src.url.clone(),
        reason: e.to_string(),
    })?;
    let total = response.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse().ok());
    let mut body = response.into_body().into_reader();
    let mut out = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    loop {
        let n = body.read(&mut buf).map_err(|e| Error::Download {
            name: src.name.clone(),
            url: src.url.clone(),
            reason: format!("the transfer broke off after {got} bytes: {e}"),
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| io_err(&tmp, e))?;
        got += n as u64;
        progress(&src.name, got, total);
    }
    out.sync_all().map_err(|e| io_err(&tmp, e))?;
    drop(out);
    let sha = hex::encode(hasher.finalize());
    if let Some(want) = &pinned
        && &sha != want
    {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Checksum { name: src.name.clone(), url: src.url.clone(), want: want.clone(), got: sha });
    }
    std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
    if pinned.is_none() {
        lsn_core::write_atomic(&recorded(&path), sha.as_bytes()).map_err(|e| io_err(&path, e))?;
        tracing::warn!("{}: no published checksum; recorded this download's sha256 {sha}", src.name);
    }
    Ok((path, sha))
}

fn bad(src: &DataSource, reason: impl Into<String>) -> Error {
    Error::Convert { name: src.name.clone(), reason: reason.into() }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| io_err(d, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| io_err(path, e))
}

/// XNLI-1.0's two TSVs → `xnli/xnli.<lang>.<split>.tsv` (premise, hypothesis, label, genre; file order kept).
fn convert_xnli(src: &DataSource, file: &Path, out: &Path) -> Result<Vec<String>> {
    let f = std::fs::File::open(file).map_err(|e| io_err(file, e))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| bad(src, format!("not a zip archive: {e}")))?;
    let mut written = Vec::new();
    for split in ["dev", "test"] {
        let member = format!("XNLI-1.0/xnli.{split}.tsv");
        let mut text = String::new();
        zip.by_name(&member)
            .map_err(|_| bad(src, format!("the archive has no {member}")))?
            .read_to_string(&mut text)
            .map_err(|e| bad(src, format!("{member}: {e}")))?;
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
        let col = |name: &str| {
            header.iter().position(|h| *h == name).ok_or_else(|| bad(src, format!("{member} has no {name} column")))
        };
        let (lang, label, p, h, genre) =
            (col("language")?, col("gold_label")?, col("sentence1")?, col("sentence2")?, col("genre")?);
        let mut by_lang: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
        for (i, line) in lines.enumerate() {
            let f: Vec<&str> = line.split('\t').collect();
            let need = [lang, label, p, h, genre].into_iter().max().unwrap_or(0);
            if f.len() <= need {
                return Err(bad(
                    src,
                    format!("{member} line {}: {} fields, expected {}", i + 2, f.len(), header.len()),
                ));
            }
            by_lang
                .entry(f[lang].to_owned())
                .or_insert_with(|| "premise\thypothesis\tlabel\tgenre\n".to_owned())
                .push_str(&format!("{}\t{}\t{}\t{}\n", f[p], f[h], f[label], f[genre]));
        }
        for (l, body) in by_lang {
            let rel = format!("xnli/xnli.{l}.{split}.tsv");
            write(&out.join(&rel), body.as_bytes())?;
            written.push(rel);
        }
    }
    Ok(written)
}

/// FLORES-200's devtest files of every language lsn knows → `corpus/flores200_devtest/<iso>.<flores>.devtest`.
fn convert_flores(src: &DataSource, file: &Path, out: &Path) -> Result<Vec<String>> {
    let f = std::fs::File::open(file).map_err(|e| io_err(file, e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let wanted: std::collections::BTreeMap<String, lsn_core::Lang> =
        lsn_core::Lang::all().map(|l| (format!("devtest/{}.devtest", l.flores()), l)).collect();
    let mut written = Vec::new();
    for entry in archive.entries().map_err(|e| bad(src, format!("not a gzip'd tar archive: {e}")))? {
        let mut entry = entry.map_err(|e| bad(src, e.to_string()))?;
        let name = entry.path().map_err(|e| bad(src, e.to_string()))?.display().to_string();
        let tail = name.rsplitn(3, '/').take(2).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("/");
        let Some(lang) = wanted.get(&tail) else { continue };
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| bad(src, format!("{name}: {e}")))?;
        let rel = format!("corpus/flores200_devtest/{}.{}.devtest", lang.code(), lang.flores());
        write(&out.join(&rel), &bytes)?;
        written.push(rel);
    }
    if written.is_empty() {
        return Err(bad(src, "the archive holds no devtest file of a language lsn knows"));
    }
    written.sort();
    Ok(written)
}

/// TICO-19's test TSVs → `corpus/tico19_test/<iso>.tico19-test.txt` (one sentence per line, surrounding spaces
/// trimmed; English from the source column of the first file).
fn convert_tico(src: &DataSource, file: &Path, out: &Path) -> Result<Vec<String>> {
    let f = std::fs::File::open(file).map_err(|e| io_err(file, e))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| bad(src, format!("not a zip archive: {e}")))?;
    let names: Vec<String> = zip.file_names().map(String::from).collect();
    let mut members: Vec<(String, String)> = names
        .iter()
        .filter_map(|n| {
            let code = n.rsplit('/').next()?.strip_prefix("test.en-")?.strip_suffix(".tsv")?;
            (!n.contains("__MACOSX")).then(|| (n.clone(), code.to_owned()))
        })
        .collect();
    members.sort();
    let mut written = Vec::new();
    let mut english = None;
    for (member, code) in members {
        // TICO-19 codes: es-LA is Latin-American Spanish; others are ISO 639-1 where lsn knows the language.
        let iso = code.split('-').next().unwrap_or(&code);
        let Ok(lang) = lsn_core::Lang::parse(iso) else { continue };
        let mut text = String::new();
        zip.by_name(&member)
            .map_err(|e| bad(src, format!("{member}: {e}")))?
            .read_to_string(&mut text)
            .map_err(|e| bad(src, format!("{member}: {e}")))?;
        let mut src_lines = String::new();
        let mut tgt_lines = String::new();
        for (i, line) in text.lines().enumerate().skip(1) {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 4 {
                return Err(bad(src, format!("{member} line {}: {} fields, expected at least 4", i + 1, f.len())));
            }
            src_lines.push_str(f[2].trim_matches(' '));
            src_lines.push('\n');
            tgt_lines.push_str(f[3].trim_matches(' '));
            tgt_lines.push('\n');
        }
        english.get_or_insert(src_lines);
        let rel = format!("corpus/tico19_test/{}.tico19-test.txt", lang.code());
        write(&out.join(&rel), tgt_lines.as_bytes())?;
        written.push(rel);
    }
    let Some(en) = english else { return Err(bad(src, "the archive holds no test/test.en-<code>.tsv")) };
    let rel = "corpus/tico19_test/en.tico19-test.txt".to_string();
    write(&out.join(&rel), en.as_bytes())?;
    written.push(rel);
    Ok(written)
}

/// Converts one downloaded source into the data-directory layout under `out`; returns the files written (relative).
pub fn convert(src: &DataSource, file: &Path, out: &Path) -> Result<Vec<String>> {
    match &src.kind {
        Kind::XnliZip => convert_xnli(src, file, out),
        Kind::FloresTarGz => convert_flores(src, file, out),
        Kind::TicoZip => convert_tico(src, file, out),
        Kind::XquadJson { lang } => {
            let rel = format!("xquad/xquad.{lang}.json");
            let dest = out.join(&rel);
            if let Some(d) = dest.parent() {
                std::fs::create_dir_all(d).map_err(|e| io_err(d, e))?;
            }
            std::fs::copy(file, &dest).map_err(|e| io_err(&dest, e))?;
            Ok(vec![rel])
        }
    }
}

/// What `fetch_all` did, written as `lsn-fetch.json` into the data directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchRecord {
    pub name: String,
    pub url: String,
    pub sha256: String,
    /// Whether the sha256 was pinned (published) or recorded at the first download.
    pub pinned: bool,
    pub files: Vec<String>,
}

/// Downloads every source into `home/downloads` and converts them into a new data directory at `out` (built in a
/// sibling temporary directory and renamed into place, so `out` is complete or absent).
pub fn fetch_all(
    home: &Path,
    sources: &[DataSource],
    out: &Path,
    progress: &mut dyn FnMut(&str, u64, Option<u64>),
) -> Result<Vec<FetchRecord>> {
    let tmp = out.with_extension("partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    }
    let mut records = Vec::new();
    for src in sources {
        let (file, sha) = download(home, src, progress)?;
        let files = convert(src, &file, &tmp)?;
        records.push(FetchRecord {
            name: src.name.clone(),
            url: src.url.clone(),
            sha256: sha,
            pinned: src.sha256.is_some(),
            files,
        });
    }
    let doc = serde_json::to_vec_pretty(&records)
        .map_err(|e| Error::Convert { name: "record".into(), reason: e.to_string() })?;
    write(&tmp.join(crate::FETCH_MARKER), &doc)?;
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(|e| io_err(out, e))?;
    }
    std::fs::rename(&tmp, out).map_err(|e| io_err(out, e))?;
    Ok(records)
}

/// The data directory `lsn fetch-data` fills by default: `home/data`.
pub fn fetched_data_dir(home: &Path) -> PathBuf {
    home.join("data")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_official_list_pins_every_source_but_tico() {
        let s = official_sources();
        assert_eq!(s.len(), 15);
        assert!(s.iter().filter(|s| s.kind != Kind::TicoZip).all(|s| s.sha256.as_ref().is_some_and(|h| h.len() == 64)));
        let json = serde_json::to_string(&s[3]).unwrap();
        assert!(json.contains("\"kind\":\"xquad-json\"") && json.contains("\"lang\":\"ar\""), "{json}");
        let back: DataSource = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s[3]);
    }

    #[test]
    fn xnli_splits_by_language_in_file_order() {
        let t = tempfile::tempdir().unwrap();
        let zip_path = t.path().join("x.zip");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let header = "language\tgold_label\tsentence1\tsentence2\tgenre\tpairID\n";
        for split in ["dev", "test"] {
            z.start_file(format!("XNLI-1.0/xnli.{split}.tsv"), zip::write::SimpleFileOptions::default()).unwrap();
            let body = format!(
                "{header}en\tneutral\tA \"b\".\tC.\tfiction\t1\nvi\tneutral\tA vi.\tC vi.\tfiction\t1\nen\tentailment\tD.\tE.\tslate\t2\n"
            );
            z.write_all(body.as_bytes()).unwrap();
        }
        z.finish().unwrap();
        let src = DataSource { name: "x".into(), url: "u".into(), sha256: None, kind: Kind::XnliZip };
        let out = t.path().join("d");
        let files = convert(&src, &zip_path, &out).unwrap();
        assert_eq!(files.len(), 4);
        let en = std::fs::read_to_string(out.join("xnli/xnli.en.test.tsv")).unwrap();
        assert_eq!(
            en,
            "premise\thypothesis\tlabel\tgenre\nA \"b\".\tC.\tneutral\tfiction\nD.\tE.\tentailment\tslate\n"
        );
        let rows = crate::read_xnli(&out, lsn_core::Lang::parse("vi").unwrap(), crate::NliSplit::Dev).unwrap();
        assert_eq!(rows.len(), 1);
    }
}
