//! The two classification exports: CIFAR-10 binaries (32×32) and the larger source task.
//!
//! CIFAR-10 binary format (exactly the released `cifar-10-batches-bin`): each record is one
//! label byte followed by 3,072 pixel bytes, the red plane (32×32, row-major), then green,
//! then blue. Training records are spread over `data_batch_1.bin` … `data_batch_5.bin`, test
//! records are in `test_batch.bin`, and `batches.meta.txt` holds one class name per line.
//!
//! Source-task format (`train.bin`, `val.bin`, `classes.txt`): a 32-byte header — the magic
//! `RTBSHAPE`, then little-endian u32 `version` (1), `width`, `height`, `channels` (3),
//! `count`, `num_classes` — followed by `count` records laid out like CIFAR's: one label byte,
//! then the planar R, G, B planes of `width × height` bytes each. One read loads a split.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::io_error;
use crate::rng::{Rng, derive_seed};
use crate::scene::dominant_scene;
use crate::{ShapeKind, SynthConfig, SynthError};

pub(crate) const STREAM_CIFAR_TRAIN: u64 = 1;
pub(crate) const STREAM_CIFAR_TEST: u64 = 2;
pub(crate) const STREAM_SOURCE_TRAIN: u64 = 7;
pub(crate) const STREAM_SOURCE_VAL: u64 = 8;

/// Magic bytes at the start of a source-task split file.
pub const SOURCE_MAGIC: &[u8; 8] = b"RTBSHAPE";
const SOURCE_HEADER: usize = 32;

/// Balanced labels (each class `count / K` times, the remainder to the first classes), in an
/// order shuffled from the seed.
fn balanced_labels(seed: u64, stream: u64, count: usize, num_classes: usize) -> Vec<u8> {
    let mut labels: Vec<u8> = (0..count).map(|i| (i % num_classes) as u8).collect();
    Rng::new(derive_seed(seed, stream, u64::MAX)).shuffle(&mut labels);
    labels
}

/// `count` records of one label byte + planar RGB of `size × size`.
fn classification_records(
    seed: u64,
    stream: u64,
    count: usize,
    num_classes: usize,
    size: usize,
    distractors: usize,
) -> Vec<u8> {
    let labels = balanced_labels(seed, stream, count, num_classes);
    let plane = size * size;
    let mut records = vec![0u8; count * (1 + 3 * plane)];
    records
        .par_chunks_mut(1 + 3 * plane)
        .enumerate()
        .for_each(|(index, record)| {
            let mut rng = Rng::new(derive_seed(seed, stream, index as u64));
            let label = labels[index];
            let (_, rendered) =
                dominant_scene(&mut rng, size, usize::from(label), num_classes, distractors);
            record[0] = label;
            for (p, rgb) in rendered.rgb.chunks_exact(3).enumerate() {
                for channel in 0..3 {
                    record[1 + channel * plane + p] = rgb[channel];
                }
            }
        });
    records
}

/// What [`write_cifar`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CifarSummary {
    /// The folder holding the batches.
    pub dir: PathBuf,
    /// Records per training batch file, data_batch_1..5.
    pub train_batches: [usize; 5],
    /// Records in test_batch.bin.
    pub test: usize,
}

/// Writes a CIFAR-10-format dataset of 32×32 single-shape images into `dir`
/// (`data_batch_1..5.bin`, `test_batch.bin`, `batches.meta.txt`).
pub fn write_cifar(config: &SynthConfig, dir: &Path) -> Result<CifarSummary, SynthError> {
    config.validate()?;
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let record = 1 + 3 * 32 * 32;
    let train = classification_records(
        config.seed,
        STREAM_CIFAR_TRAIN,
        config.cifar.train,
        config.num_classes,
        32,
        0,
    );
    let mut train_batches = [0usize; 5];
    for (batch, count) in train_batches.iter_mut().enumerate() {
        let start = batch * config.cifar.train / 5;
        let end = (batch + 1) * config.cifar.train / 5;
        *count = end - start;
        let path = dir.join(format!("data_batch_{}.bin", batch + 1));
        fs::write(&path, &train[start * record..end * record]).map_err(io_error(&path))?;
    }
    let test = classification_records(
        config.seed,
        STREAM_CIFAR_TEST,
        config.cifar.test,
        config.num_classes,
        32,
        0,
    );
    let path = dir.join("test_batch.bin");
    fs::write(&path, &test).map_err(io_error(&path))?;
    write_class_names(&dir.join("batches.meta.txt"), config.num_classes, true)?;
    Ok(CifarSummary {
        dir: dir.to_path_buf(),
        train_batches,
        test: config.cifar.test,
    })
}

fn write_class_names(
    path: &Path,
    num_classes: usize,
    trailing_blank: bool,
) -> Result<(), SynthError> {
    let mut text = String::new();
    for kind in &ShapeKind::ALL[..num_classes] {
        text += kind.name();
        text.push('\n');
    }
    if trailing_blank {
        // The released batches.meta.txt ends with an empty line too.
        text.push('\n');
    }
    fs::write(path, text).map_err(io_error(path))
}

/// What [`write_source`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSummary {
    /// `train.bin`.
    pub train: PathBuf,
    /// `val.bin`.
    pub val: PathBuf,
}

/// Writes the source (pretraining) task into `dir`: `train.bin`, `val.bin` (format in the
/// module docs) and `classes.txt`.
pub fn write_source(config: &SynthConfig, dir: &Path) -> Result<SourceSummary, SynthError> {
    config.validate()?;
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let spec = &config.source;
    let mut paths = Vec::new();
    for (name, stream, count) in [
        ("train.bin", STREAM_SOURCE_TRAIN, spec.train),
        ("val.bin", STREAM_SOURCE_VAL, spec.val),
    ] {
        let records = classification_records(
            config.seed,
            stream,
            count,
            config.num_classes,
            spec.size,
            spec.distractors,
        );
        let path = dir.join(name);
        let mut file = std::io::BufWriter::new(fs::File::create(&path).map_err(io_error(&path))?);
        let mut header = Vec::with_capacity(SOURCE_HEADER);
        header.extend_from_slice(SOURCE_MAGIC);
        for value in [1, spec.size, spec.size, 3, count, config.num_classes] {
            header.extend_from_slice(&(value as u32).to_le_bytes());
        }
        file.write_all(&header)
            .and_then(|()| file.write_all(&records))
            .and_then(|()| file.flush())
            .map_err(io_error(&path))?;
        paths.push(path);
    }
    write_class_names(&dir.join("classes.txt"), config.num_classes, false)?;
    let val = paths.pop().expect("two splits");
    let train = paths.pop().expect("two splits");
    Ok(SourceSummary { train, val })
}

/// One split of the source task, loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSplit {
    /// Image width.
    pub width: usize,
    /// Image height.
    pub height: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// One label per image.
    pub labels: Vec<u8>,
    /// Planar RGB per image, `3 × width × height` bytes each, images back to back.
    pub pixels: Vec<u8>,
}

/// Reads a source-task split file (`train.bin` / `val.bin`).
pub fn read_source(path: &Path) -> Result<SourceSplit, SynthError> {
    let bytes = fs::read(path).map_err(io_error(path))?;
    let bad = |message: String| SynthError::Format {
        path: path.to_path_buf(),
        message,
    };
    if bytes.len() < SOURCE_HEADER || &bytes[..8] != SOURCE_MAGIC {
        return Err(bad(
            "not an rtb source-task file (no RTBSHAPE header)".into()
        ));
    }
    let field = |i: usize| {
        u32::from_le_bytes(bytes[8 + 4 * i..12 + 4 * i].try_into().expect("4 bytes")) as usize
    };
    let (version, width, height, channels, count, num_classes) =
        (field(0), field(1), field(2), field(3), field(4), field(5));
    if version != 1 || channels != 3 {
        return Err(bad(format!(
            "version {version} with {channels} channels; expected version 1, 3 channels"
        )));
    }
    let record = 1 + channels * width * height;
    let expected = SOURCE_HEADER + count * record;
    if bytes.len() != expected {
        return Err(bad(format!(
            "{} bytes, but the header ({count} images of {width}×{height}) needs {expected}",
            bytes.len()
        )));
    }
    let mut labels = Vec::with_capacity(count);
    let mut pixels = Vec::with_capacity(count * (record - 1));
    for chunk in bytes[SOURCE_HEADER..].chunks_exact(record) {
        if usize::from(chunk[0]) >= num_classes {
            return Err(bad(format!(
                "label {} is not below num_classes {num_classes}",
                chunk[0]
            )));
        }
        labels.push(chunk[0]);
        pixels.extend_from_slice(&chunk[1..]);
    }
    Ok(SourceSplit {
        width,
        height,
        num_classes,
        labels,
        pixels,
    })
}
