//! `rtb-fetch`: checksum-pinned, resumable, atomic downloads, and rtb's cache directory.
//!
//! Everything rtb downloads (the frost textures, datasets, checkpoints that are not on a model
//! hub) goes through [`Fetcher::fetch`]:
//!
//! - the expected sha256 is part of the request, so a file is either verified or an error;
//! - bytes land in `<dest>.part` first and the file appears under its real name only after the
//!   checksum matched (a rename on the same filesystem), so partial output is never mistaken
//!   for finished output;
//! - an interrupted transfer leaves `<dest>.part` behind and the next call resumes it with an
//!   HTTP `Range` request (servers that ignore ranges are handled by starting over);
//! - a destination that already holds the right bytes is never fetched again.
//!
//! [`extract_zip`] unpacks the zip archives datasets come in (stored and deflated entries,
//! zip64, CRC-32 checked) into a folder that appears only once complete.
//!
//! The crate knows no URL of its own: callers pass them (xtask's asset manifest, the dataset
//! manifests). It never prints; progress is reported through a callback so that binaries can
//! draw a bar.
//!
//! ```
//! use rtb_fetch::{sha256_hex, install_verified};
//! let dir = tempfile::tempdir().unwrap();
//! let src = dir.path().join("src.bin");
//! std::fs::write(&src, b"hello").unwrap();
//! let digest = sha256_hex(b"hello");
//! let dest = dir.path().join("nested/dest.bin");
//! install_verified(&src, &digest, &dest).unwrap();
//! assert_eq!(std::fs::read(&dest).unwrap(), b"hello");
//! // A wrong checksum is an error and leaves nothing behind.
//! let other = dir.path().join("other.bin");
//! assert!(install_verified(&src, &"0".repeat(64), &other).is_err());
//! assert!(!other.exists());
//! ```
#![deny(missing_docs)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

mod unzip;
pub use unzip::extract_zip;

/// Errors from downloading or verifying a file. Each names the URL or path involved.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server could not be reached or the connection broke.
    #[error("cannot download {url}: {message}")]
    Transport {
        /// The URL requested.
        url: String,
        /// What the HTTP client reported.
        message: String,
    },
    /// The server answered with an error status.
    #[error("cannot download {url}: the server answered HTTP {status}")]
    Status {
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An archive that cannot be unpacked (truncated, malformed, an entry that fails its
    /// check); the message names the entry.
    #[error("{path}: {message}")]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The bytes did not have the pinned sha256.
    #[error(
        "{path}: sha256 is {actual}, expected {expected} (from {origin}); the file was removed"
    )]
    ChecksumMismatch {
        /// The file whose checksum was wrong (already removed).
        path: PathBuf,
        /// Where the bytes came from (a URL or a local path).
        origin: String,
        /// The pinned checksum.
        expected: String,
        /// The checksum of the bytes received.
        actual: String,
    },
    /// The pinned checksum is not 64 hex digits.
    #[error("invalid sha256 {0:?}: expected 64 hexadecimal digits")]
    InvalidChecksum(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Progress of one transfer, passed to the caller's callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the file present so far (including bytes from a resumed `.part`).
    pub done: u64,
    /// Total size when the server announced it.
    pub total: Option<u64>,
}

/// What [`Fetcher::fetch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// The destination already held the pinned bytes; nothing was transferred.
    AlreadyVerified,
    /// The file was downloaded (`resumed_from` bytes came from an earlier partial transfer).
    Downloaded {
        /// Size of the finished file.
        bytes: u64,
        /// Bytes reused from `<dest>.part`.
        resumed_from: u64,
    },
}

/// The sha256 of a byte slice as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 of a file's contents as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn check_sha256(sha256: &str) -> Result<String, FetchError> {
    if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(sha256.to_ascii_lowercase())
    } else {
        Err(FetchError::InvalidChecksum(sha256.to_string()))
    }
}

/// Whether `path` exists and holds bytes with the given sha256.
pub fn is_verified(path: &Path, sha256: &str) -> Result<bool, FetchError> {
    let expected = check_sha256(sha256)?;
    if !path.is_file() {
        return Ok(false);
    }
    Ok(sha256_file(path)? == expected)
}

/// `<dest>.part`: where bytes wait until they are verified.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

fn ensure_parent(dest: &Path) -> Result<(), FetchError> {
    match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            fs::create_dir_all(parent).map_err(io_err(parent))
        }
        _ => Ok(()),
    }
}

/// Verifies `part` against `expected` and renames it to `dest`; removes it on a mismatch.
fn finish(part: &Path, dest: &Path, expected: &str, origin: &str) -> Result<u64, FetchError> {
    let actual = sha256_file(part)?;
    if actual != expected {
        // A corrupt partial file must not be resumed either.
        let _ = fs::remove_file(part);
        return Err(FetchError::ChecksumMismatch {
            path: dest.to_path_buf(),
            origin: origin.to_string(),
            expected: expected.to_string(),
            actual,
        });
    }
    fs::rename(part, dest).map_err(io_err(dest))?;
    Ok(fs::metadata(dest).map_err(io_err(dest))?.len())
}

/// Copies a local file to `dest` if, and only if, it has the pinned sha256 (atomically, through
/// `<dest>.part`). Used for assets obtained by other means than HTTP (a package archive, a
/// directory the user points at).
pub fn install_verified(src: &Path, sha256: &str, dest: &Path) -> Result<(), FetchError> {
    let expected = check_sha256(sha256)?;
    ensure_parent(dest)?;
    let part = part_path(dest);
    fs::copy(src, &part).map_err(io_err(src))?;
    finish(&part, dest, &expected, &src.display().to_string()).map(|_| ())
}

/// An HTTP client with rtb's timeouts. Cheap to clone; reuses connections.
#[derive(Debug, Clone)]
pub struct Fetcher {
    agent: ureq::Agent,
}

impl Default for Fetcher {
    fn default() -> Self {
        Self::new()
    }
}

impl Fetcher {
    /// A client with a 15 s connect timeout and a 60 s read timeout (no overall limit, so
    /// large files can take as long as they need while bytes keep arriving).
    pub fn new() -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(15))
            .timeout_read(Duration::from_secs(60))
            .user_agent(concat!("rtb/", env!("CARGO_PKG_VERSION")))
            .build();
        Self { agent }
    }

    /// Downloads `url` to `dest` unless `dest` already has the pinned `sha256`.
    ///
    /// Resumes `<dest>.part` when present; on an error the partial bytes stay there for the
    /// next call, except after a checksum mismatch, which removes them.
    pub fn fetch(
        &self,
        url: &str,
        sha256: &str,
        dest: &Path,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Fetched, FetchError> {
        let expected = check_sha256(sha256)?;
        if is_verified(dest, &expected)? {
            return Ok(Fetched::AlreadyVerified);
        }
        ensure_parent(dest)?;
        let part = part_path(dest);
        let have = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);

        let mut request = self.agent.get(url);
        if have > 0 {
            request = request.set("Range", &format!("bytes={have}-"));
        }
        let response = match request.call() {
            Ok(response) => response,
            // 416: the partial file may already be complete (the transfer broke after the
            // last byte, before the rename).
            Err(ureq::Error::Status(416, _)) if have > 0 => {
                let bytes = finish(&part, dest, &expected, url)?;
                return Ok(Fetched::Downloaded {
                    bytes,
                    resumed_from: have,
                });
            }
            Err(ureq::Error::Status(status, _)) => {
                return Err(FetchError::Status {
                    url: url.to_string(),
                    status,
                });
            }
            Err(err) => {
                return Err(FetchError::Transport {
                    url: url.to_string(),
                    message: err.to_string(),
                });
            }
        };

        let resumed = have > 0 && response.status() == 206;
        let resumed_from = if resumed { have } else { 0 };
        let length: Option<u64> = response
            .header("Content-Length")
            .and_then(|v| v.trim().parse().ok());
        let total = length.map(|len| len + resumed_from);
        let mut file = if resumed {
            OpenOptions::new().append(true).open(&part)
        } else {
            File::create(&part)
        }
        .map_err(io_err(&part))?;

        let mut reader = response.into_reader();
        let mut done = resumed_from;
        progress(Progress { done, total });
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader.read(&mut buf).map_err(|err| FetchError::Transport {
                url: url.to_string(),
                message: format!("transfer interrupted after {done} bytes: {err}"),
            });
            let n = match n {
                Ok(n) => n,
                Err(err) => {
                    // Keep what arrived so that the next call resumes from it.
                    let _ = file.flush();
                    return Err(err);
                }
            };
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n]).map_err(io_err(&part))?;
            done += n as u64;
            progress(Progress { done, total });
        }
        file.sync_all().map_err(io_err(&part))?;
        drop(file);
        if let Some(total) = total
            && done < total
        {
            return Err(FetchError::Transport {
                url: url.to_string(),
                message: format!("transfer ended after {done} of {total} bytes"),
            });
        }
        let bytes = finish(&part, dest, &expected, url)?;
        Ok(Fetched::Downloaded {
            bytes,
            resumed_from,
        })
    }
}

/// rtb's cache directory: `$RTB_CACHE_DIR`, else `$XDG_CACHE_HOME/rtb`, else
/// `$HOME/.cache/rtb`. `None` only when none of these variables is set.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("RTB_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("rtb"));
    }
    var("HOME").map(|home| PathBuf::from(home).join(".cache").join("rtb"))
}

/// Where `cargo xtask assets` puts the frost textures: `$RTB_FROST_DIR`, else
/// `<cache_dir>/assets/frost`.
pub fn frost_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("RTB_FROST_DIR").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    cache_dir().map(|dir| dir.join("assets").join("frost"))
}
