//! `rtb-segmentation`: UperNet semantic segmentation over any rtb-models [`Backbone`], equal
//! to mmsegmentation's UperNet (ADE20K 512×512 configs) and transformers'
//! `UperNetForSemanticSegmentation`.
//!
//! What it owns, one file per concept:
//! - [`ConvModule`] (convolution + BatchNorm + ReLU, mmcv's), [`Dropout2d`] with seeded
//!   draws, [`Classifier`] (dropout + 1×1 convolution, mmseg's `cls_seg`);
//! - [`PyramidPooling`] (PSP on C5, pools 1, 2, 3, 6), [`UperHead`] (PPM + FPN fusion +
//!   bottleneck + classifier) and the auxiliary [`FcnHead`] on C4;
//! - [`UperNet`] with [`UperNetConfig`] (presets [`UperNetConfig::ade20k`] and
//!   [`UperNetConfig::tiny`]): `forward_train → Losses` (cross-entropy with ignore index 255
//!   on logits upsampled to the labels, auxiliary × 0.4), `forward` (whole image) and
//!   `slide_inference` ([`SlideConfig`], mmseg's crop 512 / stride 341), [`resize_logits`],
//!   [`argmax`]; fixed-feature and full-network [`Regime`]s with `trainable_vars`;
//! - [`UperNetConfig::head_macs`] ([`UperNetMacs`]): the heads' multiply-accumulates at an
//!   input size, which the study's cost estimate adds to the backbone's;
//! - [`weights`]: transformers' and mmseg's UperNet checkpoints → heads (transformers'
//!   names) + backbone (canonical names).
//!
//! Every op with a backward goes through rtb-nn. This crate depends on rtb-nn and
//! rtb-models only: never on the training engine, datasets, the CLI or anything that
//! downloads (layer 2, next to rtb-models).
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::VarMap;
//! use rtb_models::{ArchConfig, ResNetConfig, init::trainable_builder};
//! use rtb_segmentation::{Regime, UperNet, UperNetConfig, argmax};
//!
//! // A tiny ResNet (no classifier) under a tiny UperNet, seeded random weights.
//! let varmap = VarMap::new();
//! let vb = trainable_builder(&varmap, Default::default(), 0, DType::F32, &Device::Cpu);
//! let arch = ArchConfig::from(ResNetConfig::tiny().without_classifier());
//! let mut model = UperNet::build(&UperNetConfig::tiny(), &arch, &vb).unwrap();
//! model.set_regime(Regime::FixedFeature);
//!
//! let images = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &Device::Cpu).unwrap();
//! let labels = Tensor::zeros((2, 64, 64), DType::U32, &Device::Cpu).unwrap();
//! let losses = model.forward_train(&images, &labels, 7).unwrap();
//! let grads = losses.total.backward().unwrap();
//! // Only the heads train in the fixed-feature regime, and every one of them gets a gradient.
//! for (name, var) in model.trainable_vars() {
//!     assert!(!name.starts_with("backbone."));
//!     assert!(grads.get(&var).is_some(), "{name}");
//! }
//!
//! let logits = model.forward(&images).unwrap();
//! assert_eq!(logits.dims(), &[2, 5, 64, 64]);
//! assert_eq!(argmax(&logits).unwrap().dims(), &[2, 64, 64]);
//! ```
#![deny(missing_docs)]

pub mod classifier;
pub mod conv_module;
pub mod dropout;
pub mod error;
pub mod fcn_head;
pub mod inference;
pub mod macs;
pub mod params;
pub mod ppm;
pub mod uper_head;
pub mod upernet;
pub mod weights;

pub use classifier::Classifier;
pub use conv_module::ConvModule;
pub use dropout::Dropout2d;
pub use error::{Result, SegError};
pub use fcn_head::FcnHead;
pub use inference::{SlideConfig, slide_windows};
pub use macs::UperNetMacs;
pub use params::NamedTensor;
pub use ppm::PyramidPooling;
pub use rtb_models::Backbone;
pub use uper_head::UperHead;
pub use upernet::{AuxiliaryConfig, Losses, Regime, UperNet, UperNetConfig, argmax, resize_logits};
pub use weights::{HeadLayout, UperNetWeights, load_upernet};
