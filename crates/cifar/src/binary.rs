//! The CIFAR-10 binary version: `data_batch_1.bin` … `data_batch_5.bin`, `test_batch.bin`
//! and `batches.meta.txt`.
//!
//! Each batch file is a run of 3073-byte records: one label byte, then 1024 red, 1024 green
//! and 1024 blue bytes of a 32×32 image in row-major order. `batches.meta.txt` has one class
//! name per line. Images are kept here as interleaved RGB (`[N, 32, 32, 3]`, the layout of
//! `image::RgbImage` and of the CIFAR-10-C `.npy` files).

use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::error::{CifarError, Result, io_err};

/// Side of a CIFAR image.
pub const SIDE: usize = 32;
/// Bytes of one image (3 × 32 × 32).
pub const IMAGE_BYTES: usize = 3 * SIDE * SIDE;
/// Bytes of one record (label + image).
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
/// The training batch files, in order.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test batch file.
pub const TEST_FILE: &str = "test_batch.bin";
/// The class names file.
pub const META_FILE: &str = "batches.meta.txt";
/// The folder the official archive extracts to.
pub const ARCHIVE_FOLDER: &str = "cifar-10-batches-bin";

/// Labelled 32×32 RGB images, interleaved (`[N, 32, 32, 3]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CifarImages {
    /// `N × 32 × 32 × 3` bytes.
    pub pixels: Vec<u8>,
    /// `N` labels.
    pub labels: Vec<u8>,
}

impl CifarImages {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The interleaved bytes of image `index`.
    pub fn image_bytes(&self, index: usize) -> &[u8] {
        &self.pixels[index * IMAGE_BYTES..(index + 1) * IMAGE_BYTES]
    }

    /// Image `index` as an `RgbImage`.
    pub fn image(&self, index: usize) -> RgbImage {
        RgbImage::from_raw(SIDE as u32, SIDE as u32, self.image_bytes(index).to_vec())
            .expect("a CIFAR image has 3072 bytes")
    }

    /// Appends another set.
    pub fn extend(&mut self, other: CifarImages) {
        self.pixels.extend(other.pixels);
        self.labels.extend(other.labels);
    }
}

/// Reads one batch file, checking that it is whole records and that every label is below
/// `num_classes`; errors name the file and the offending record.
pub fn read_batch(path: &Path, num_classes: usize) -> Result<CifarImages> {
    let bytes = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            CifarError::Missing {
                path: path.to_path_buf(),
                hint: "download CIFAR-10 (binary version) or point --data at its folder".into(),
            }
        } else {
            io_err(path)(source)
        }
    })?;
    let bad = |message: String| CifarError::Format {
        path: path.to_path_buf(),
        message,
    };
    if bytes.is_empty() {
        return Err(bad("the file is empty".into()));
    }
    if bytes.len() % RECORD_BYTES != 0 {
        let whole = bytes.len() / RECORD_BYTES;
        return Err(bad(format!(
            "{} bytes is not a whole number of {RECORD_BYTES}-byte records: record {whole} is \
             truncated ({} of {RECORD_BYTES} bytes)",
            bytes.len(),
            bytes.len() % RECORD_BYTES
        )));
    }
    let count = bytes.len() / RECORD_BYTES;
    let mut images = CifarImages {
        pixels: Vec::with_capacity(count * IMAGE_BYTES),
        labels: Vec::with_capacity(count),
    };
    let plane = SIDE * SIDE;
    for (record_index, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let label = record[0];
        if usize::from(label) >= num_classes {
            return Err(bad(format!(
                "record {record_index} has label {label}, but there are {num_classes} classes \
                 (labels 0..={})",
                num_classes - 1
            )));
        }
        images.labels.push(label);
        let planes = &record[1..];
        for pixel in 0..plane {
            images.pixels.extend_from_slice(&[
                planes[pixel],
                planes[plane + pixel],
                planes[2 * plane + pixel],
            ]);
        }
    }
    Ok(images)
}

/// Reads `batches.meta.txt`: one class name per non-empty line.
pub fn read_meta(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            CifarError::Missing {
                path: path.to_path_buf(),
                hint: "it lists the class names; it comes with the CIFAR-10 binary archive".into(),
            }
        } else {
            io_err(path)(source)
        }
    })?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(String::from)
        .collect();
    if names.len() < 2 || names.len() > 256 {
        return Err(CifarError::Format {
            path: path.to_path_buf(),
            message: format!(
                "lists {} class names; expected between 2 and 256 (CIFAR-10 has 10)",
                names.len()
            ),
        });
    }
    Ok(names)
}

/// The whole dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cifar10 {
    /// The folder the files were read from.
    pub dir: PathBuf,
    /// Class names, from `batches.meta.txt`.
    pub classes: Vec<String>,
    /// 50 000 images in CIFAR-10 (the five training batches in order).
    pub train: CifarImages,
    /// 10 000 images in CIFAR-10.
    pub test: CifarImages,
}

impl Cifar10 {
    /// The folder holding the batch files: `dir` itself, or `dir/cifar-10-batches-bin` (where
    /// the official archive extracts).
    pub fn resolve_dir(dir: &Path) -> PathBuf {
        let nested = dir.join(ARCHIVE_FOLDER);
        if !dir.join(META_FILE).exists() && nested.join(META_FILE).exists() {
            nested
        } else {
            dir.to_path_buf()
        }
    }

    /// Whether every file is present (sizes are checked by [`Cifar10::load`]).
    pub fn is_present(dir: &Path) -> bool {
        let dir = Self::resolve_dir(dir);
        TRAIN_FILES
            .iter()
            .chain([&TEST_FILE, &META_FILE])
            .all(|name| dir.join(name).is_file())
    }

    /// Reads every file of the folder (see [`Cifar10::resolve_dir`]).
    pub fn load(dir: &Path) -> Result<Self> {
        let dir = Self::resolve_dir(dir);
        let classes = read_meta(&dir.join(META_FILE))?;
        let mut train = CifarImages::default();
        for name in TRAIN_FILES {
            train.extend(read_batch(&dir.join(name), classes.len())?);
        }
        let test = read_batch(&dir.join(TEST_FILE), classes.len())?;
        Ok(Self {
            dir,
            classes,
            train,
            test,
        })
    }

    /// Reads only the class names and the test batch (evaluation).
    pub fn load_test(dir: &Path) -> Result<(Vec<String>, CifarImages)> {
        let dir = Self::resolve_dir(dir);
        let classes = read_meta(&dir.join(META_FILE))?;
        let test = read_batch(&dir.join(TEST_FILE), classes.len())?;
        Ok((classes, test))
    }
}

/// Encodes images as one CIFAR batch file's bytes (the inverse of [`read_batch`]); used to
/// write small datasets in the CIFAR format.
pub fn encode_batch(images: &CifarImages) -> Vec<u8> {
    let plane = SIDE * SIDE;
    let mut out = Vec::with_capacity(images.len() * RECORD_BYTES);
    for index in 0..images.len() {
        out.push(images.labels[index]);
        let rgb = images.image_bytes(index);
        for channel in 0..3 {
            out.extend((0..plane).map(|pixel| rgb[pixel * 3 + channel]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> CifarImages {
        CifarImages {
            pixels: (0..n * IMAGE_BYTES).map(|i| (i * 7 % 251) as u8).collect(),
            labels: (0..n).map(|i| (i % 10) as u8).collect(),
        }
    }

    #[test]
    fn batches_round_trip_and_planes_become_interleaved() {
        let dir = tempfile::tempdir().unwrap();
        let images = sample(3);
        let path = dir.path().join("b.bin");
        std::fs::write(&path, encode_batch(&images)).unwrap();
        assert_eq!(read_batch(&path, 10).unwrap(), images);
        // First record: label, then the red plane starts with the red of pixel 0.
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes[0], 0);
        assert_eq!(bytes[1], images.pixels[0]);
        assert_eq!(bytes[2], images.pixels[3]);
        assert_eq!(bytes[1 + 1024], images.pixels[1]);
    }

    #[test]
    fn truncated_files_and_bad_labels_name_the_file_and_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data_batch_2.bin");
        let mut bytes = encode_batch(&sample(3));
        bytes.truncate(2 * RECORD_BYTES + 100);
        std::fs::write(&path, &bytes).unwrap();
        let err = read_batch(&path, 10).unwrap_err().to_string();
        assert!(
            err.contains("data_batch_2.bin") && err.contains("record 2 is truncated"),
            "{err}"
        );
        let mut bytes = encode_batch(&sample(3));
        bytes[RECORD_BYTES] = 12;
        std::fs::write(&path, &bytes).unwrap();
        let err = read_batch(&path, 10).unwrap_err().to_string();
        assert!(
            err.contains("data_batch_2.bin") && err.contains("record 1 has label 12"),
            "{err}"
        );
        std::fs::write(&path, b"").unwrap();
        assert!(
            read_batch(&path, 10)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
    }

    #[test]
    fn missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = Cifar10::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("batches.meta.txt") && err.contains("missing"),
            "{err}"
        );
        std::fs::write(dir.path().join(META_FILE), "a\nb\n").unwrap();
        let err = Cifar10::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("data_batch_1.bin is missing"), "{err}");
        std::fs::write(dir.path().join(META_FILE), "only\n").unwrap();
        let err = Cifar10::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("class names"), "{err}");
    }
}
