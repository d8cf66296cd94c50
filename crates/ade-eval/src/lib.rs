//! `rtb-ade-eval`: the ADE20K data layout and semantic-segmentation metrics equal to
//! mmsegmentation's (mIoU, mAcc, aAcc).
//!
//! It owns:
//! - [`AdeDataset`]: the ADEChallengeData2016 layout (`images/{training,validation}/*.jpg`,
//!   `annotations/{training,validation}/*.png`), pairing and size checks, and
//!   [`ADE20K_CLASSES`], the 150 class names;
//! - [`LabelMap`] and [`read_label_png`] / [`write_label_png`]: 8-bit single-channel PNGs;
//! - [`EvalConfig`]: class count, ignore index, reduce_zero_label (0 → 255, k → k − 1);
//! - [`IouAccumulator`]: a streaming, mergeable (threads, shards, processes: it serialises)
//!   accumulator of per-class intersection, union, predicted and label area in exact `u64`;
//! - [`Metrics`]: mmseg's `total_area_to_metrics` (IoU = I/U, Acc = I/L, NaN for 0/0,
//!   `nanmean`) and [`mmseg_round`], mmseg's display rounding;
//! - [`evaluate_dirs`]: a folder of predictions against a folder of labels, in parallel.
//!
//! Parity: the golden fixtures (made by `tests/golden/make_golden.py` from mmseg 1.2.2's own
//! `LoadAnnotations`, `IoUMetric.intersect_and_union` and `total_area_to_metrics`) agree to
//! the last bit. Areas are exact `u64` sums; mmseg 1.x sums per-image float32 histograms, which
//! round once a class's total passes 2^24 pixels (about 50 ADE20K images of one class), so on
//! full datasets rtb equals mmseg's float64 path (0.x `total_intersect_and_union`) and can
//! differ from 1.x's float32 sums in the 7th significant digit.
//!
//! Architecture invariant: this crate knows nothing of tensors or models; it must not depend
//! on candle or any other rtb crate. Predictions arrive as plain bytes.
//!
//! ```
//! use rtb_ade_eval::{EvalConfig, IouAccumulator, mmseg_round};
//! // Two classes, 255 ignored; a 2×3 label map and its prediction.
//! let label = [0, 0, 1, 1, 255, 1];
//! let pred = [0, 1, 1, 1, 0, 0];
//! let mut acc = IouAccumulator::new(EvalConfig::new(2))?;
//! acc.add(&label, &pred)?;
//! assert_eq!(acc.intersect(), &[1, 2]);
//! assert_eq!(acc.union(), &[3, 4]);
//! let metrics = acc.metrics();
//! assert_eq!(metrics.iou, vec![1.0 / 3.0, 0.5]);
//! assert_eq!(metrics.a_acc, 3.0 / 5.0);
//! assert_eq!(mmseg_round(metrics.m_iou), 41.67);
//!
//! // Shards merge to the same totals as one pass.
//! let mut first = IouAccumulator::new(EvalConfig::new(2))?;
//! first.add(&label[..3], &pred[..3])?;
//! let mut second = IouAccumulator::new(EvalConfig::new(2))?;
//! second.add(&label[3..], &pred[3..])?;
//! let shard = IouAccumulator::from_json(&second.to_json(), "shard-1.json")?;
//! first.merge(&shard)?;
//! assert_eq!(first.union(), acc.union());
//! # Ok::<(), rtb_ade_eval::AdeError>(())
//! ```
#![deny(missing_docs)]

mod accumulate;
mod classes;
mod config;
mod dataset;
mod dirs;
mod error;
mod label_map;
mod metrics;
mod pairs;
mod per_image;

pub use accumulate::IouAccumulator;
pub use classes::{ADE20K_CLASSES, class_names};
pub use config::{EvalConfig, reduce_zero_label, reduce_zero_label_value};
pub use dataset::{AdeDataset, AdeSample, Split};
pub use dirs::{DirEvaluation, evaluate_dirs, evaluate_pair};
pub use error::AdeError;
pub use label_map::{LabelMap, image_size, png_size, read_label_png, write_label_png};
pub use metrics::{Metrics, mmseg_round, nanmean, numpy_sum};
pub use per_image::PerImageAreas;
