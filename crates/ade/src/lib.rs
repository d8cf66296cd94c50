//! `rtb-ade`: ADE20K semantic segmentation for rtb (Table 2 of the study). This crate owns the
//! task's data: mmsegmentation 1.x's ADE20K pipelines reproduced byte for byte, and the
//! datasets the training engine and the corrupted evaluation load from.
//!
//! - [`resize`]: mmcv's `imrescale` / `imresize` with the cv2 backend, from rtb-image (shared
//!   with the COCO task): [`rescale_size`] (the keep-ratio rule), [`resize_linear`] (cv2
//!   `INTER_LINEAR` on 8-bit images, OpenCV's 11-bit fixed point) and [`resize_nearest`]
//!   (cv2 `INTER_NEAREST`, for label maps); the golden tests here pin them to OpenCV;
//! - [`photometric`]: mmseg's `PhotoMetricDistortion` with OpenCV's 8-bit HSV conversions;
//! - [`transforms`]: the train pipeline ([`TrainConfig`]: random resize, `cat_max_ratio`
//!   crop, flip, photometric distortion; normalisation and padding) with its random draws as
//!   a plain struct ([`TrainDraws`]), and the test pipeline ([`TestConfig`]);
//! - [`dataset`]: [`AdeTrain`] and [`AdeTest`] on rtb-train's `Dataset` trait (per-sample
//!   seeds; corruption of the full-resolution image before the resize with per-image seeds),
//!   [`collate_train`] / [`collate_test`], and the checks of bad input (a label map of the
//!   wrong size, a label value out of range, an image that does not decode; a missing pair is
//!   caught by rtb-ade-eval's `AdeDataset::open`), each an error naming the file.
//!
//! - the task: [`AdeTask`] (UperNet over any backbone on rtb-train's engine; fixed-feature or
//!   full-network), [`AdeConfig`] (serde; `config.json` of a run), [`train`] (resumes bit for
//!   bit on the CPU) and [`evaluate`] (mIoU primary, aAcc and mAcc secondary, clean and every
//!   corruption × severity, `metrics.json` written atomically once complete), and
//!   [`AdeCell`], the same behind rtb-train's `CellTask` (the study's task interface).
//!
//! The ADEChallengeData2016 layout itself (pairing, 8-bit PNGs, reduce_zero_label) is
//! rtb-ade-eval's; the synthetic shapes world's ADE export loads through the same code.
//!
//! Parity: `tests/golden/make_golden.py` runs OpenCV 4.10 (opencv-python-headless 4.10.0.84),
//! mmcv 2.1.0 and mmseg 1.2.2's own transforms on fixed images and draws; the fixtures are
//! committed and `tests/golden.rs` requires byte equality.
//!
//! Architecture invariant: layer 3; it depends on rtb-segmentation (UperNet), rtb-models,
//! rtb-ade-eval (layout, labels, metrics), rtb-train (engine, datasets, seeds),
//! rtb-results, rtb-corruption and candle, never on the CLI, another task or the report.
//!
//! ```
//! use image::RgbImage;
//! use rtb_ade::{PhotometricDraws, TrainConfig, TrainDraws, rescale_size};
//! use rtb_ade_eval::LabelMap;
//!
//! // mmcv's keep-ratio rule: a 683×512 image already fits (2048, 512).
//! assert_eq!(rescale_size(683, 512, (2048, 512))?.0, (683, 512));
//!
//! // A 6×4 image with two classes (left: 0, right: 1) through the train pipeline with a
//! // 4×4 crop and hand-made draws: ratio 1 at scale (6, 4) keeps the size.
//! let image = RgbImage::from_fn(6, 4, |x, y| image::Rgb([10 * x as u8, 20 * y as u8, 128]));
//! let label = LabelMap::new(6, 4, (0..24).map(|i| u8::from(i % 6 >= 3)).collect())?;
//! let cfg = TrainConfig { scale: (6, 4), crop_size: (4, 4), photometric: None, ..TrainConfig::default() };
//! let draws = TrainDraws {
//!     ratio: 1.0,
//!     // The first crop holds only class 0 and is rejected; the second mixes both classes.
//!     crop_candidates: vec![(0, 0), (0, 1), (0, 2)],
//!     flip: true,
//!     photometric: PhotometricDraws::default(),
//! };
//! let crop = cfg.augment(&image, &label, &draws)?;
//! assert_eq!(crop.offset, (0, 1));
//! assert_eq!(crop.label.data()[..4], [1, 1, 0, 0]); // flipped
//! assert_eq!(crop.image.get_pixel(0, 0)[0], 40); // column 4 of the source
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod cell;
mod config;
pub mod dataset;
mod error;
pub mod photometric;
mod pipeline;
mod task;
pub mod transforms;

pub use cell::{AdeCell, CELL_OPTIONS, config_from_cell, dataset_classes};
pub use config::{AdeConfig, AdeEvalConfig};
pub use dataset::{
    AdeRawSample, AdeTest, AdeTestBatch, AdeTestSample, AdeTrain, AdeTrainBatch, AdeTrainSample,
    LabelSpec, collate_test, collate_train, load_image, load_label, load_pair,
};
pub use error::AdeTaskError;
pub use photometric::{PhotometricConfig, PhotometricDraws, photometric_distortion};
pub use pipeline::{build_task, constant_baseline, evaluate, evaluate_task, train, train_task};
/// mmcv's resizes (rtb-image's; re-exported so the golden tests and users keep their paths).
pub use rtb_image::resize;
pub use rtb_image::{ResizeError, rescale_size, resize_linear, resize_nearest};
pub use task::{AdeTask, BACKBONE_PREFIX, IouMetric, SegPredictions};
pub use transforms::{
    ADE_MEAN, ADE_STD, IGNORE_INDEX, TestConfig, TrainConfig, TrainCrop, TrainDraws, normalize,
};
