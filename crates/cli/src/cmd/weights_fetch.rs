//! `rtb weights fetch`: obtain a backbone of the weights manifest (`weights/backbones.toml`)
//! and, with `--to`, import it to canonical safetensors.
//!
//! Hub entries download through hf-hub 0.5 into the standard Hugging Face cache (`HF_HOME`
//! honoured, `HF_ENDPOINT` for a mirror; a cached file is used offline; a `.part` file is
//! resumed; hf-hub draws the progress bar). Other checkpoints (ANT's GitHub release,
//! DeepAug+AugMix's Google Drive file) go through rtb-fetch into `<rtb cache>/weights/`, or
//! are taken from `--from FILE` when the file was downloaded by hand. Every file is checked
//! against the manifest's sha256; an entry marked unverified is refused unless
//! `--allow-unverified` is given, and then rtb prints the sha256 it saw so it can be pinned.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use candle_core::Tensor;
use rtb_models::ArchConfig;
use rtb_study::weights::{BackboneEntry, WeightsManifest};

/// Arguments of `rtb weights fetch`.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// The manifest entry (`regular`, `ant`, `deepaug`, `swin_t`).
    pub name: String,
    /// The weights manifest.
    #[arg(long, default_value = "weights/backbones.toml")]
    pub manifest: PathBuf,
    /// Use a file downloaded by hand instead of downloading (checked against the sha256).
    #[arg(long = "from", value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Also import it to canonical safetensors here.
    #[arg(long = "to", value_name = "FILE")]
    pub to: Option<PathBuf>,
    /// Use an entry whose revision or sha256 is marked unverified.
    #[arg(long)]
    pub allow_unverified: bool,
}

pub fn run(args: &FetchArgs) -> anyhow::Result<ExitCode> {
    let manifest = WeightsManifest::load(&args.manifest)?;
    let entry = manifest.get(&args.name)?;
    let path = fetch_entry(entry, args.from.as_deref(), args.allow_unverified)?;
    println!("{}", path.display());
    if let Some(to) = &args.to {
        let tensors = import_entry(entry, &path, to)?;
        println!(
            "wrote {} ({tensors} tensors, canonical layout)",
            to.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Compares the file's sha256 with the pin; without a pin (an unverified entry that was
/// allowed), prints the digest so a person can pin it.
fn check_sha256(entry: &BackboneEntry, path: &Path) -> anyhow::Result<()> {
    let digest = rtb_fetch::sha256_file(path)?;
    match entry.sha256() {
        Some(expected) if !expected.eq_ignore_ascii_case(&digest) => bail!(
            "{}: sha256 {digest} differs from the manifest's {expected} for {:?}",
            path.display(),
            entry.name
        ),
        Some(_) => Ok(()),
        None => {
            tracing::warn!(
                "{:?} has no pinned sha256; the file {} has sha256 {digest}",
                entry.name,
                path.display()
            );
            Ok(())
        }
    }
}

/// The local path of `entry`'s checkpoint, downloading it when needed.
pub fn fetch_entry(
    entry: &BackboneEntry,
    from: Option<&Path>,
    allow_unverified: bool,
) -> anyhow::Result<PathBuf> {
    entry.check_usable(allow_unverified)?;
    if let Some(hub) = &entry.hub {
        if let Some(file) = from {
            check_sha256(entry, file)?;
            return Ok(file.to_path_buf());
        }
        let api = hf_hub::api::sync::ApiBuilder::from_env()
            .with_progress(std::io::stderr().is_terminal())
            .build()
            .context("setting up the Hugging Face hub client")?;
        let revision = hub.revision.clone().unwrap_or_else(|| "main".to_string());
        let repo = hf_hub::Repo::with_revision(hub.repo.clone(), hf_hub::RepoType::Model, revision);
        let path = api
            .repo(repo)
            .get(&hub.file)
            .with_context(|| format!("downloading {} from {}", hub.file, hub.repo))?;
        check_sha256(entry, &path)?;
        return Ok(path);
    }
    let url = entry
        .url
        .as_ref()
        .context("the entry has neither [hub] nor [url]")?;
    let cache = rtb_fetch::cache_dir()
        .context("no cache directory: set RTB_CACHE_DIR or HOME")?
        .join("weights");
    let dest = cache.join(&url.file);
    if let Some(file) = from {
        check_sha256(entry, file)?;
        std::fs::create_dir_all(&cache).with_context(|| cache.display().to_string())?;
        let digest = rtb_fetch::sha256_file(file)?;
        rtb_fetch::install_verified(file, &digest, &dest)?;
        return Ok(dest);
    }
    let Some(link) = &url.url else {
        bail!(
            "{:?} cannot be downloaded directly{}: download {} by hand and pass --from FILE",
            entry.name,
            url.page
                .as_ref()
                .map(|p| format!(" (see {p})"))
                .unwrap_or_default(),
            url.file
        );
    };
    let Some(sha256) = &url.sha256 else {
        bail!(
            "{:?} has no pinned sha256, so rtb cannot check a download: download {link} by \
             hand and pass --from FILE (rtb prints its sha256)",
            entry.name
        );
    };
    let bar = crate::progress::bytes(None, &url.file);
    rtb_fetch::Fetcher::new().fetch(link, sha256, &dest, &mut |p| {
        if let Some(total) = p.total {
            bar.set_length(total);
        }
        bar.set_position(p.done);
    })?;
    bar.finish_and_clear();
    Ok(dest)
}

/// Imports `path` (any layout rtb-models reads) to canonical safetensors at `to`, with the
/// classifier the file has; returns the number of tensors.
pub fn import_entry(entry: &BackboneEntry, path: &Path, to: &Path) -> anyhow::Result<usize> {
    let arch = ArchConfig::from_name(&entry.arch).with_context(|| {
        format!(
            "manifest entry {:?}: unknown arch {:?}; registered: {}",
            entry.name,
            entry.arch,
            rtb_models::registry::preset_names().join(", ")
        )
    })?;
    let canonical = rtb_models::read_canonical(&arch, path, entry.import.key.as_deref())?;
    let arch = arch.with_classifier_of(&canonical.tensors)?;
    rtb_models::check_state_dict(&arch, &path.display().to_string(), &canonical.tensors)?;
    let found = canonical.layout.name;
    if found != entry.import.layout {
        tracing::warn!(
            "{}: layout {found} ({}), the manifest expects {}",
            path.display(),
            canonical.layout,
            entry.import.layout
        );
    }
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    let tensors: HashMap<String, Tensor> = canonical.tensors.into_iter().collect();
    crate::cmd::weights::save_atomically(&tensors, to)?;
    Ok(tensors.len())
}
