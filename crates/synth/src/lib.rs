//! `rtb-synth`: a deterministic synthetic "shapes" world and its exports, the data of the
//! offline mini study and of end-to-end tests.
//!
//! A scene is a textured background (value noise between two colours, sometimes stripes)
//! with shape instances of K classes ([`ShapeKind`]: circle, square, triangle, star, ring,
//! cross, hexagon, ellipse, crescent, heart) varied in size, colour, rotation and position, and
//! occluding each other. It is exported four ways, each in the format the real readers load:
//!
//! - [`write_cifar`]: CIFAR-10 binaries of 32×32 single-shape images (`data_batch_1..5.bin`,
//!   `test_batch.bin`, `batches.meta.txt`);
//! - [`write_coco`]: COCO instances (`train2017/`, `val2017/`,
//!   `annotations/instances_*.json`) with boxes, polygon or RLE masks and `iscrowd` crowds;
//! - [`write_ade`]: the ADEChallengeData2016 layout with 8-bit PNG label maps (0 = background,
//!   as reduce_zero_label expects), readable by `rtb_ade_eval::AdeDataset`;
//! - [`write_source`]: a larger-image classification task for pretraining (64×64 by default,
//!   one dominant shape per image), in a CIFAR-like binary with a header ([`read_source`]).
//!
//! Everything follows from a [`SynthConfig`] (presets [`SynthConfig::mini`] and
//! [`SynthConfig::tiny`]): every random draw comes from a generator seeded by the world seed,
//! the export and the image index, so images are made in parallel and the same config always
//! writes the same bytes.
//!
//! Architecture invariant: no candle, no models; it depends only on image I/O, serde and
//! rtb-ade-eval (for the label-map PNG writer that its reader pairs with).
//!
//! ```
//! use rtb_synth::{SynthConfig, read_source, write_source};
//! let dir = tempfile::tempdir()?;
//! let mut config = SynthConfig::tiny().with_seed(7).with_num_classes(3);
//! config.source.train = 6;
//! config.source.val = 3;
//! config.source.size = 32;
//! let written = write_source(&config, dir.path())?;
//! let train = read_source(&written.train)?;
//! assert_eq!((train.width, train.height, train.labels.len()), (32, 32, 6));
//! // Balanced classes: each of the 3 twice.
//! let mut labels = train.labels.clone();
//! labels.sort();
//! assert_eq!(labels, [0, 0, 1, 1, 2, 2]);
//! assert_eq!(train.pixels.len(), 6 * 3 * 32 * 32);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod classify;
mod config;
mod error;
mod export;
mod rng;
mod scene;
mod shapes;

pub use classify::{
    CifarSummary, SOURCE_MAGIC, SourceSplit, SourceSummary, read_source, write_cifar, write_source,
};
pub use config::{AdeSpec, CifarSpec, CocoSpec, SourceSpec, SynthConfig};
pub use error::SynthError;
pub use export::{
    AdeSummary, CocoSummary, Segmentation, rle_counts, write_ade, write_coco, write_jpeg,
};
pub use rng::{Rng, derive_seed, mix64};
pub use scene::{
    Background, Instance, Rendered, Scene, SceneLayout, compose_scene, dominant_scene, random_color,
};
pub use shapes::{ShapeKind, fill_polygon};
