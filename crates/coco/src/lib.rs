//! `rtb-coco`: COCO detection for rtb (Table 1 of the study). The task's data — COCO 2017
//! instances or the shapes world's COCO export — through mmdetection 2.x's Mask R-CNN
//! pipelines, and the task on the engine:
//!
//! - [`dataset`]: the layout ([`CocoSplit`]: `annotations/instances_<split>.json`, images in
//!   `<split>/`) and mmdet's rules for turning annotations into training instances (skips
//!   and errors documented there);
//! - [`transforms`]: keep-ratio resize (rtb-image's cv2-exact bilinear; boxes scaled in
//!   float32 and clipped, masks by nearest neighbour), horizontal flip, normalisation;
//!   padding to 32 comes with rtb-detection's `ImageBatch`;
//! - [`data`]: [`CocoTrain`] (flip drawn from the per-sample seed; aspect-ratio groups for
//!   the loader) and [`CocoTest`] (corruption of the decoded full-resolution image before the
//!   resize with per-image seeds, as mmdetection's `test_robustness`; every image kept);
//! - the task: [`CocoTask`] (rtb-detection's Mask R-CNN in the mmdet flavor over any
//!   backbone; fixed-feature or full-network; gradient accumulation over micro-batches),
//!   [`CocoConfig`] (serde; `config.json` of a run; [`schedule_1x`]), [`train`] (resumes bit
//!   for bit on the CPU), [`evaluate`] (box AP primary, mask AP secondary, through
//!   rtb-coco-eval, clean and every corruption × severity; `metrics.json` written atomically
//!   once complete; a results JSON per condition on request) and [`CocoCell`], the same
//!   behind rtb-train's `CellTask`.
//!
//! Architecture invariant: layer 3; it depends on rtb-detection, rtb-models, rtb-coco-eval,
//! rtb-image, rtb-train, rtb-results, rtb-corruption and candle, never on the CLI, another
//! task or the report.
//!
//! ```
//! use image::RgbImage;
//! use rtb_coco::transforms::{Targets, train_transform};
//!
//! // A 40×20 image with one box, through mmdet's (1333, 800) keep-ratio resize and a flip.
//! let image = RgbImage::new(40, 20);
//! let targets = Targets {
//!     boxes: vec![[0.0, 0.0, 10.0, 20.0]],
//!     labels: vec![0],
//!     masks: vec![vec![1; 40 * 20]],
//! };
//! let (resized, t) = train_transform(&image, &targets, (1333, 800), true)?;
//! assert_eq!(resized.dimensions(), (1333, 667));
//! // Scaled by 1333 / 40 and mirrored: x1' = w − x2.
//! assert_eq!(t.boxes[0][0], 1333.0 - 10.0 * (1333.0f32 / 40.0));
//! assert_eq!(t.boxes[0][2], 1333.0);
//! # Ok::<(), rtb_image::ResizeError>(())
//! ```
#![deny(missing_docs)]

mod cell;
mod config;
pub mod data;
pub mod dataset;
mod error;
mod pipeline;
mod task;
pub mod transforms;

pub use cell::{CELL_OPTIONS, CocoCell, config_from_cell, default_scale};
pub use config::{
    CocoConfig, CocoEvalConfig, DetectorConfig, TestPipeline, TrainPipeline, schedule_1x,
};
pub use data::{
    CocoRawSample, CocoTest, CocoTestBatch, CocoTestSample, CocoTrain, CocoTrainBatch,
    CocoTrainSample, collate_test, collate_train, load_image,
};
pub use dataset::{CocoSplit, ImageInfo, Instance, MIN_TRAIN_SIDE, Split};
pub use error::CocoTaskError;
pub use pipeline::{CocoScores, build_task, coco_ap, evaluate, evaluate_task, train, train_task};
pub use task::{BACKBONE_PREFIX, CocoTask, DetectionCollector, regime_freeze, to_results};
