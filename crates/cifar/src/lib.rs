//! `rtb-cifar`: CIFAR-10 classification transfer, end to end.
//!
//! - Data: [`Cifar10`] reads the binary version (`data_batch_1..5.bin`, `test_batch.bin`,
//!   `batches.meta.txt`), checking sizes and labels (errors name the file and record);
//!   [`download`] fetches and extracts the official archive through rtb-fetch.
//! - CIFAR-10-C: [`cifar_c::generate`] makes it with rtb-corruption's `cifar-c` flavor and
//!   per-image seeds, cached on disk in the released layout; [`CifarC`] reads that layout
//!   (generated or the released `.npy` files, through the small reader in [`npy`]).
//! - Transfer: [`Classifier`] is any rtb-models backbone plus a linear head, in the
//!   fixed-feature regime (frozen backbone without a gradient graph, head only; features
//!   optionally cached) or the full-network regime; [`transform`] augments (random crop with
//!   4-px padding, flip), normalises (ImageNet) and upsamples (bilinear, 224 in the paper).
//!   [`CifarTask`] plugs it into rtb-train's engine.
//! - [`train`] and [`evaluate`]: the entry points behind `rtb train cifar` and
//!   `rtb eval cifar`, driven by one serde [`CifarConfig`]; evaluation writes `metrics.json`
//!   through rtb-results (mPC, rPC and drops are computed there, nowhere else).
//! - [`CifarCell`]: the same behind rtb-train's `CellTask`, the study's one task interface
//!   (a resolved `CellSpec` in, `metrics.json` out; options `augment`, `cache_features`).
//!
//! Depends on rtb-models, rtb-train, rtb-corruption, rtb-results and rtb-fetch; must not
//! depend on the CLI, the other tasks or the report.
//!
//! ```
//! use rtb_cifar::{CifarImages, encode_batch, read_batch};
//! // Two 32×32 images in the CIFAR binary format, read back.
//! let images = CifarImages { pixels: vec![7; 2 * 3072], labels: vec![3, 9] };
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("test_batch.bin");
//! std::fs::write(&path, encode_batch(&images))?;
//! assert_eq!(read_batch(&path, 10)?, images);
//! // A label outside the classes is an error naming the file and the record.
//! let err = read_batch(&path, 5).unwrap_err().to_string();
//! assert!(err.contains("test_batch.bin") && err.contains("record 1 has label 9"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod binary;
mod cell;
pub mod cifar_c;
mod config;
mod download;
mod error;
mod model;
pub mod npy;
mod pipeline;
mod task;
pub mod transform;

pub use binary::{
    ARCHIVE_FOLDER, Cifar10, CifarImages, IMAGE_BYTES, META_FILE, RECORD_BYTES, SIDE, TEST_FILE,
    TRAIN_FILES, encode_batch, read_batch, read_meta,
};
pub use cell::{CELL_OPTIONS, CifarCell, config_from_cell};
pub use cifar_c::{CifarC, GenerateOptions};
pub use config::{CifarCSource, CifarConfig, EvalConfig};
pub use download::{
    ARCHIVE_FILE, ArchiveSource, CIFAR10_BINARY_SHA256, CIFAR10_BINARY_URL, download, extract,
};
pub use error::{CifarError, Result};
pub use model::{BACKBONE_PREFIX, Classifier, HEAD_BIAS, HEAD_WEIGHT};
pub use pipeline::{EvalOverrides, build_task, evaluate, evaluate_task, train, train_task};
pub use task::{CifarBatch, CifarSample, CifarTask, CollateFn, ImageSet, collate, loader};
