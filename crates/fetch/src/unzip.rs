//! Unpacking zip archives (the ADE20K release, COCO's image archives): stored and deflated
//! entries, zip64 sizes and offsets, CRC-32 checked. Extraction goes to `<dest>.part/` and
//! the folder is renamed to `dest` only once every entry is written, so an existing `dest`
//! is a finished extraction and an interrupted one starts over.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use crate::FetchError;

const EOCD: u32 = 0x0605_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const ZIP64_EOCD: u32 = 0x0606_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const LOCAL: u32 = 0x0403_4b50;

/// One entry of the central directory.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    method: u16,
    crc: u32,
    compressed: u64,
    size: u64,
    offset: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

fn bad(path: &Path, message: impl Into<String>) -> FetchError {
    FetchError::Archive {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn io(path: &Path) -> impl FnOnce(io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_at(file: &mut File, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, FetchError> {
    let mut buf = vec![0; len];
    file.seek(SeekFrom::Start(offset)).map_err(io(path))?;
    file.read_exact(&mut buf).map_err(|_| {
        bad(
            path,
            format!("truncated: {len} bytes at offset {offset} run past the end"),
        )
    })?;
    Ok(buf)
}

/// The central directory of `path`.
fn entries(file: &mut File, path: &Path) -> Result<Vec<Entry>, FetchError> {
    let len = file.metadata().map_err(io(path))?.len();
    let tail_len = len.min(22 + 65_535);
    let tail = read_at(file, path, len - tail_len, tail_len as usize)?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(&tail, i) == EOCD)
        .ok_or_else(|| bad(path, "not a zip archive (no end of central directory)"))?;
    let mut count = u64::from(u16_at(&tail, eocd + 10));
    let mut cd_size = u64::from(u32_at(&tail, eocd + 12));
    let mut cd_offset = u64::from(u32_at(&tail, eocd + 16));
    if eocd >= 20 && u32_at(&tail, eocd - 20) == ZIP64_LOCATOR {
        let record_at = u64_at(&tail, eocd - 20 + 8);
        let record = read_at(file, path, record_at, 56)?;
        if u32_at(&record, 0) != ZIP64_EOCD {
            return Err(bad(path, "broken zip64 end of central directory"));
        }
        count = u64_at(&record, 32);
        cd_size = u64_at(&record, 40);
        cd_offset = u64_at(&record, 48);
    }
    if cd_offset.saturating_add(cd_size) > len {
        return Err(bad(
            path,
            "the central directory runs past the end (truncated?)",
        ));
    }
    let cd = read_at(file, path, cd_offset, cd_size as usize)?;
    let mut out = Vec::with_capacity(count as usize);
    let mut at = 0;
    for index in 0..count {
        if at + 46 > cd.len() || u32_at(&cd, at) != CENTRAL {
            return Err(bad(
                path,
                format!("central directory entry {index} is broken"),
            ));
        }
        let name_len = usize::from(u16_at(&cd, at + 28));
        let extra_len = usize::from(u16_at(&cd, at + 30));
        let comment_len = usize::from(u16_at(&cd, at + 32));
        let end = at + 46 + name_len + extra_len + comment_len;
        if end > cd.len() {
            return Err(bad(
                path,
                format!("central directory entry {index} is broken"),
            ));
        }
        let name = String::from_utf8_lossy(&cd[at + 46..at + 46 + name_len]).into_owned();
        let mut entry = Entry {
            name,
            method: u16_at(&cd, at + 10),
            crc: u32_at(&cd, at + 16),
            compressed: u64::from(u32_at(&cd, at + 20)),
            size: u64::from(u32_at(&cd, at + 24)),
            offset: u64::from(u32_at(&cd, at + 42)),
        };
        // The zip64 extra field holds, in this order, the values whose 32-bit field is full.
        let extra = &cd[at + 46 + name_len..at + 46 + name_len + extra_len];
        let mut e = 0;
        while e + 4 <= extra.len() {
            let id = u16_at(extra, e);
            let size = usize::from(u16_at(extra, e + 2));
            if id == 1 {
                let mut field = e + 4;
                for value in [&mut entry.size, &mut entry.compressed, &mut entry.offset] {
                    if *value == 0xFFFF_FFFF && field + 8 <= extra.len() {
                        *value = u64_at(extra, field);
                        field += 8;
                    }
                }
            }
            e += 4 + size;
        }
        out.push(entry);
        at = end;
    }
    Ok(out)
}

/// The relative path an entry name stands for; `None` for names that would leave the
/// destination (absolute, `..`).
fn safe_path(name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// A reader that keeps the CRC-32 and the count of what passes through.
struct Checked<R> {
    inner: R,
    crc: flate2::Crc,
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

/// Unpacks the zip archive `archive` into the folder `dest` (created; its parent must be
/// writable). Returns the number of files written, 0 when `dest` already exists (a finished
/// extraction). `progress` gets (entries done, entries in all). Errors name the archive and
/// the entry: a truncated or malformed archive, an unknown compression method, an entry
/// whose CRC-32 or size differs, a name that would leave `dest`.
pub fn extract_zip(
    archive: &Path,
    dest: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<usize, FetchError> {
    if dest.is_dir() {
        return Ok(0);
    }
    let mut file = File::open(archive).map_err(io(archive))?;
    let entries = entries(&mut file, archive)?;
    let part = PathBuf::from(format!("{}.part", dest.display()));
    if part.exists() {
        fs::remove_dir_all(&part).map_err(io(&part))?;
    }
    fs::create_dir_all(&part).map_err(io(&part))?;
    let mut written = 0;
    for (done, entry) in entries.iter().enumerate() {
        let relative = safe_path(&entry.name).ok_or_else(|| {
            bad(
                archive,
                format!(
                    "entry {:?} would be written outside the destination",
                    entry.name
                ),
            )
        })?;
        let target = part.join(&relative);
        if entry.name.ends_with('/') {
            fs::create_dir_all(&target).map_err(io(&target))?;
            progress(done + 1, entries.len());
            continue;
        }
        let header = read_at(&mut file, archive, entry.offset, 30)?;
        if u32_at(&header, 0) != LOCAL {
            return Err(bad(
                archive,
                format!("{}: no local header at its offset", entry.name),
            ));
        }
        let data_at =
            entry.offset + 30 + u64::from(u16_at(&header, 26)) + u64::from(u16_at(&header, 28));
        file.seek(SeekFrom::Start(data_at)).map_err(io(archive))?;
        let raw = BufReader::new((&mut file).take(entry.compressed));
        let reader: Box<dyn Read + '_> = match entry.method {
            0 => Box::new(raw),
            8 => Box::new(flate2::read::DeflateDecoder::new(raw)),
            other => {
                return Err(bad(
                    archive,
                    format!(
                        "{}: compression method {other} (only stored and deflate)",
                        entry.name
                    ),
                ));
            }
        };
        let mut checked = Checked {
            inner: reader,
            crc: flate2::Crc::new(),
        };
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut out = File::create(&target).map_err(io(&target))?;
        let copied = io::copy(&mut checked, &mut out)
            .map_err(|err| bad(archive, format!("{}: {err}", entry.name)))?;
        out.flush().map_err(io(&target))?;
        if copied != entry.size || checked.crc.sum() != entry.crc {
            return Err(bad(
                archive,
                format!(
                    "{}: {copied} bytes with CRC-32 {:08x}, the directory says {} bytes with {:08x}",
                    entry.name,
                    checked.crc.sum(),
                    entry.size,
                    entry.crc
                ),
            ));
        }
        written += 1;
        progress(done + 1, entries.len());
    }
    fs::rename(&part, dest).map_err(io(dest))?;
    Ok(written)
}
