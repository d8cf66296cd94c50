//! `rtb-imagenet`: ImageNet and ImageNet-C evaluation of a backbone's classifier, the
//! source-task numbers of the study (ImageNet top-1, mCE, relative mCE and the drop).
//!
//! - [`transform`]: timm/torchvision's evaluation transform, [`EvalTransform`] (resize the
//!   shorter side with Pillow's antialiased bilinear or bicubic resampling, bit for bit;
//!   centre crop; normalise). [`EvalTransform::timm_default`] is 256 → 224 bilinear;
//!   [`EvalTransform::from_crop_pct`] follows timm's `crop_pct`.
//! - [`dataset`]: [`ValSet`], the validation images and their class indices, from the
//!   `val/<wnid>/` folders or a flat folder with `val.txt` or Kaggle's `LOC_val_solution.csv`;
//!   [`synsets`] holds the 1000 wnids in the sorted order that defines the indices.
//! - [`imagenet_c`]: the released ImageNet-C folders ([`ReleasedC`]), generation on the fly
//!   with rtb-corruption's `imagenet-c` flavor and per-image seeds ([`GenerateC`]), AlexNet's
//!   published errors and CE / mCE / relative mCE on plain numbers.
//! - [`evaluate()`]: top-1 / top-5 of any rtb-models [`Backbone`](rtb_models::Backbone) with
//!   1000-class logits, images decoded in rtb-train's data loader threads, on the one candle
//!   device it is given; progress goes to an rtb-train `Observer`. [`ImageNetResults`]
//!   serialises to JSON and converts to rtb-results' `MetricTable` (top-1 accuracy as a
//!   fraction), whose `robustness()` gives the drop; with `bootstrap` replicates asked for,
//!   each image's top-1 outcome is kept and resampled into rtb-results' paired
//!   `Replicates`, which the table carries to the report's intervals.
//!
//! Depends on rtb-corruption, rtb-models, rtb-train and rtb-results; must not depend on the
//! CLI, the report, the study or another task. The library never prints.
//!
//! ```
//! use std::collections::BTreeMap;
//! use image::{Rgb, RgbImage};
//! use rtb_corruption::Corruption;
//! use rtb_imagenet::{EvalTransform, imagenet_c};
//!
//! // The evaluation crop of a 300×257 image: resized to 298×256, then the centre 224×224.
//! let image = RgbImage::from_fn(300, 257, |x, y| Rgb([x as u8, y as u8, 7]));
//! let transform = EvalTransform::timm_default();
//! assert_eq!(transform.resized_size(300, 257), (298, 256));
//! let crop = transform.crop_u8(&image)?;
//! assert_eq!(crop.dimensions(), (224, 224));
//! assert_eq!(transform.apply(&image)?.len(), 3 * 224 * 224);
//!
//! // mCE from top-1 errors: a model with exactly AlexNet's errors has mCE 1.
//! let errors: BTreeMap<Corruption, [f64; 5]> = imagenet_c::ALEXNET_TOP1_ERRORS.into_iter().collect();
//! assert!((imagenet_c::mce(&errors).unwrap() - 1.0).abs() < 1e-12);
//! let rel = imagenet_c::relative_mce(&errors, imagenet_c::ALEXNET_CLEAN_TOP1_ERROR).unwrap();
//! assert!((rel - 1.0).abs() < 1e-12);
//! # Ok::<(), rtb_imagenet::ImageNetError>(())
//! ```
#![deny(missing_docs)]

pub mod dataset;
mod error;
pub mod evaluate;
pub mod imagenet_c;
pub mod synsets;
pub mod transform;

pub use dataset::{LabelsFormat, ValImage, ValSet, load_rgb};
pub use error::{ImageNetError, Result};
pub use evaluate::{
    ConditionResult, ConditionScores, CorruptionSummary, EvalOptions, ImageNetResults, TopKCounts,
    evaluate, evaluate_clean,
};
pub use imagenet_c::{CSource, CSourceInfo, GenerateC, ReleasedC};
pub use transform::{EvalTransform, IMAGENET_MEAN, IMAGENET_STD, Interpolation};
