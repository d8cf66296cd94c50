//! A small `.npy` reader and writer for the arrays CIFAR-10-C uses: `uint8` images
//! `[N, 32, 32, 3]` and `uint8` or `int64` labels `[N]`, little-endian, C order.
//!
//! Format (numpy's `format.py`): the magic `\x93NUMPY`, a major and minor version byte, the
//! header length (u16 little-endian in version 1, u32 in versions 2 and 3), then a Python
//! dict literal `{'descr': '|u1', 'fortran_order': False, 'shape': (N, 32, 32, 3), }` padded
//! with spaces and a newline so that the data starts at a multiple of 64 bytes.

use std::io::Read;
use std::path::Path;

use crate::error::{CifarError, Result, io_err};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The element data of an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NpyData {
    /// `uint8` (`|u1`).
    U8(Vec<u8>),
    /// Little-endian `int64` (`<i8`).
    I64(Vec<i64>),
}

/// An array read from a `.npy` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyArray {
    /// The shape (C order).
    pub shape: Vec<usize>,
    /// The elements.
    pub data: NpyData,
}

impl NpyArray {
    /// The data as `u8` (an error naming `path` for other dtypes).
    pub fn into_u8(self, path: &Path) -> Result<Vec<u8>> {
        match self.data {
            NpyData::U8(data) => Ok(data),
            NpyData::I64(_) => Err(format_error(path, "expected uint8 data, found int64")),
        }
    }

    /// The data as labels `0..=255`: `uint8` as is, `int64` checked to fit.
    pub fn into_labels(self, path: &Path) -> Result<Vec<u8>> {
        match self.data {
            NpyData::U8(data) => Ok(data),
            NpyData::I64(data) => data
                .iter()
                .enumerate()
                .map(|(index, &value)| {
                    u8::try_from(value).map_err(|_| {
                        format_error(path, format!("element {index} is {value}, not a label"))
                    })
                })
                .collect(),
        }
    }
}

fn format_error(path: &Path, message: impl Into<String>) -> CifarError {
    CifarError::Format {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads the header; returns (dtype, shape) and leaves `reader` at the data.
fn read_header(reader: &mut impl Read, path: &Path) -> Result<(String, Vec<usize>)> {
    let bad = |message: String| format_error(path, message);
    let mut prefix = [0u8; 8];
    reader
        .read_exact(&mut prefix)
        .map_err(|_| bad("too short for a .npy header".into()))?;
    if &prefix[..6] != MAGIC {
        return Err(bad("not a .npy file (no \\x93NUMPY magic)".into()));
    }
    let major = prefix[6];
    let header_len = match major {
        1 => {
            let mut len = [0u8; 2];
            reader
                .read_exact(&mut len)
                .map_err(|_| bad("truncated header".into()))?;
            usize::from(u16::from_le_bytes(len))
        }
        2 | 3 => {
            let mut len = [0u8; 4];
            reader
                .read_exact(&mut len)
                .map_err(|_| bad("truncated header".into()))?;
            u32::from_le_bytes(len) as usize
        }
        other => return Err(bad(format!(".npy format version {other} is not supported"))),
    };
    let mut header = vec![0u8; header_len];
    reader
        .read_exact(&mut header)
        .map_err(|_| bad("truncated header".into()))?;
    let header = String::from_utf8_lossy(&header).into_owned();
    let value_of = |key: &str| -> Result<String> {
        let pattern = format!("'{key}':");
        let start = header
            .find(&pattern)
            .ok_or_else(|| bad(format!("header has no {key:?}: {}", header.trim())))?
            + pattern.len();
        Ok(header[start..].trim_start().to_string())
    };
    let descr = value_of("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|rest| rest.split('\'').next())
        .ok_or_else(|| bad(format!("unreadable descr in header {}", header.trim())))?
        .to_string();
    let fortran = value_of("fortran_order")?;
    if fortran.starts_with("True") {
        return Err(bad(
            "the array is in Fortran order; only C-order arrays are read".into(),
        ));
    }
    let shape_text = value_of("shape")?;
    let inner = shape_text
        .strip_prefix('(')
        .and_then(|rest| rest.split(')').next())
        .ok_or_else(|| bad(format!("unreadable shape in header {}", header.trim())))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| bad(format!("unreadable shape ({inner})")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((descr, shape))
}

/// Reads a `.npy` file of `uint8` or little-endian `int64` in C order; errors name the file
/// and what is wrong (dtype, order, size).
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let file = std::fs::File::open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            CifarError::Missing {
                path: path.to_path_buf(),
                hint: "the CIFAR-10-C folder has one <corruption>.npy per corruption and \
                       labels.npy"
                    .into(),
            }
        } else {
            io_err(path)(source)
        }
    })?;
    let mut reader = std::io::BufReader::new(file);
    let (descr, shape) = read_header(&mut reader, path)?;
    let count: usize = shape.iter().product();
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(io_err(path))?;
    let element = match descr.as_str() {
        "|u1" | "<u1" | "u1" | "|b1" => 1,
        "<i8" => 8,
        other => {
            return Err(format_error(
                path,
                format!("dtype {other:?} is not supported (uint8 '|u1' or int64 '<i8')"),
            ));
        }
    };
    if bytes.len() != count * element {
        return Err(format_error(
            path,
            format!(
                "shape {shape:?} needs {} data bytes, the file has {} (truncated?)",
                count * element,
                bytes.len()
            ),
        ));
    }
    let data = if element == 1 {
        NpyData::U8(bytes)
    } else {
        NpyData::I64(
            bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        )
    };
    Ok(NpyArray { shape, data })
}

/// The bytes of a version-1.0 `.npy` file holding `data` with `descr` and `shape`.
fn encode(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape_text = match shape {
        [single] => format!("({single},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad so that magic + version + length + header is a multiple of 64, ending in '\n'.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Writes a `uint8` array atomically.
pub fn write_npy_u8(path: &Path, shape: &[usize], data: &[u8]) -> Result<()> {
    if shape.iter().product::<usize>() != data.len() {
        return Err(CifarError::config(
            "npy",
            format!("shape {shape:?} does not hold {} elements", data.len()),
        ));
    }
    rtb_train::write_atomically(path, &encode("|u1", shape, data))?;
    Ok(())
}

/// Writes a little-endian `int64` array atomically.
pub fn write_npy_i64(path: &Path, shape: &[usize], data: &[i64]) -> Result<()> {
    if shape.iter().product::<usize>() != data.len() {
        return Err(CifarError::config(
            "npy",
            format!("shape {shape:?} does not hold {} elements", data.len()),
        ));
    }
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    rtb_train::write_atomically(path, &encode("<i8", shape, &bytes))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_round_trip_and_headers_are_aligned() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("fog.npy");
        let data: Vec<u8> = (0..2 * 4 * 4 * 3).map(|i| i as u8).collect();
        write_npy_u8(&images, &[2, 4, 4, 3], &data).unwrap();
        let bytes = std::fs::read(&images).unwrap();
        assert_eq!((bytes.len() - data.len()) % 64, 0);
        let array = read_npy(&images).unwrap();
        assert_eq!(array.shape, [2, 4, 4, 3]);
        assert_eq!(array.into_u8(&images).unwrap(), data);

        let labels = dir.path().join("labels.npy");
        write_npy_i64(&labels, &[3], &[0, 9, 4]).unwrap();
        let array = read_npy(&labels).unwrap();
        assert_eq!(array.shape, [3]);
        assert_eq!(array.into_labels(&labels).unwrap(), [0, 9, 4]);
    }

    #[test]
    fn numpy_written_headers_parse() {
        // Exactly what numpy 1.26 writes for np.zeros((2, 3), np.uint8).
        let header = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }";
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        let padded = format!("{header}{}\n", " ".repeat(128 - 10 - header.len() - 1));
        bytes.extend_from_slice(&(padded.len() as u16).to_le_bytes());
        bytes.extend_from_slice(padded.as_bytes());
        bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        std::fs::write(&path, &bytes).unwrap();
        let array = read_npy(&path).unwrap();
        assert_eq!(array.shape, [2, 3]);
        assert_eq!(array.data, NpyData::U8(vec![1, 2, 3, 4, 5, 6]));
    }

    #[test]
    fn bad_files_name_the_file_and_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snow.npy");
        write_npy_u8(&path, &[4], &[1, 2, 3, 4]).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 1);
        std::fs::write(&path, &bytes).unwrap();
        let err = read_npy(&path).unwrap_err().to_string();
        assert!(
            err.contains("snow.npy") && err.contains("truncated"),
            "{err}"
        );
        std::fs::write(&path, encode("<f4", &[1], &[0, 0, 0, 0])).unwrap();
        let err = read_npy(&path).unwrap_err().to_string();
        assert!(err.contains("<f4"), "{err}");
        std::fs::write(&path, b"PK\x03\x04 not npy").unwrap();
        assert!(read_npy(&path).unwrap_err().to_string().contains("magic"));
        let err = read_npy(&dir.path().join("absent.npy"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("absent.npy is missing"), "{err}");
        let labels = dir.path().join("labels.npy");
        write_npy_i64(&labels, &[2], &[3, 300]).unwrap();
        let err = read_npy(&labels)
            .unwrap()
            .into_labels(&labels)
            .unwrap_err()
            .to_string();
        assert!(err.contains("element 1 is 300"), "{err}");
    }
}
