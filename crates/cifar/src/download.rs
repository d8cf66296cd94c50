//! Downloading the official CIFAR-10 binary archive (`cifar-10-binary.tar.gz`) through
//! rtb-fetch (sha256-pinned, resumable, atomic) and extracting it.
//!
//! The pinned sha256 is not published by the dataset's page (which gives the MD5
//! `c32a1d4ab5d03f1284b67883e8d87530` and the size); it is the value that several independent
//! public downloaders pin for the same 170 052 171-byte file.

use std::path::{Path, PathBuf};

use rtb_fetch::{Fetcher, Progress};

use crate::binary::{ARCHIVE_FOLDER, Cifar10};
use crate::error::{CifarError, Result, io_err};

/// Where and what to download.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArchiveSource {
    /// The URL of the `.tar.gz`.
    pub url: String,
    /// Its pinned sha256 (lowercase hex).
    pub sha256: String,
}

/// The official archive's URL.
pub const CIFAR10_BINARY_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
/// Its sha256.
pub const CIFAR10_BINARY_SHA256: &str =
    "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd";
/// The archive's file name in the destination folder.
pub const ARCHIVE_FILE: &str = "cifar-10-binary.tar.gz";

impl Default for ArchiveSource {
    /// The official archive.
    fn default() -> Self {
        Self {
            url: CIFAR10_BINARY_URL.into(),
            sha256: CIFAR10_BINARY_SHA256.into(),
        }
    }
}

/// Makes sure `dest/cifar-10-batches-bin` holds CIFAR-10: returns at once when every file is
/// there and reads back; otherwise downloads `source` to `dest/cifar-10-binary.tar.gz`
/// (resuming a `.part`; skipped when the archive is already verified), extracts it into a
/// temporary folder and renames the batch folder into place. Returns the batch folder.
pub fn download(
    source: &ArchiveSource,
    dest: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<PathBuf> {
    let batches = dest.join(ARCHIVE_FOLDER);
    if Cifar10::is_present(&batches) && Cifar10::load(&batches).is_ok() {
        return Ok(batches);
    }
    std::fs::create_dir_all(dest).map_err(io_err(dest))?;
    let archive = dest.join(ARCHIVE_FILE);
    Fetcher::new().fetch(&source.url, &source.sha256, &archive, progress)?;
    extract(&archive, dest)?;
    // Reading it back validates sizes and labels.
    Cifar10::load(&batches)?;
    Ok(batches)
}

/// Extracts the archive's `cifar-10-batches-bin/` into `dest` atomically (into
/// `dest/.extract.tmp`, then one rename).
pub fn extract(archive: &Path, dest: &Path) -> Result<()> {
    let staging = dest.join(".extract.tmp");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io_err(&staging))?;
    }
    std::fs::create_dir_all(&staging).map_err(io_err(&staging))?;
    let file = std::fs::File::open(archive).map_err(io_err(archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    // `unpack` refuses entries that would land outside `staging` (absolute paths, `..`).
    tar.unpack(&staging).map_err(|err| CifarError::Format {
        path: archive.to_path_buf(),
        message: format!("cannot extract: {err}"),
    })?;
    let extracted = staging.join(ARCHIVE_FOLDER);
    if !extracted.is_dir() {
        return Err(CifarError::Format {
            path: archive.to_path_buf(),
            message: format!("the archive has no {ARCHIVE_FOLDER}/ folder"),
        });
    }
    let target = dest.join(ARCHIVE_FOLDER);
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(io_err(&target))?;
    }
    std::fs::rename(&extracted, &target).map_err(io_err(&target))?;
    std::fs::remove_dir_all(&staging).map_err(io_err(&staging))?;
    Ok(())
}
