//! `rtb-models`: vision backbones behind one [`Backbone`] trait, equal to timm, and the
//! weight import that feeds them.
//!
//! - [`Backbone`]: a normalised `[N, 3, H, W]` batch → C2..C5 (strides 4–32, NCHW) plus
//!   pooled features and logits when configured; named parameters with their kind and freezing
//!   unit; mmdetection-style freezing ([`Freeze`]: `frozen_stages`, `norm_eval`); explicit
//!   [`Mode`] (train with a seed, eval, inference without a gradient graph).
//! - [`resnet::ResNet`] (torchvision/timm ResNet-50, stride on the 3×3 conv; basic or
//!   bottleneck blocks, any depths and widths) and [`swin::Swin`] (timm ≥ 0.9 Swin-T; timm's
//!   or mmdetection's window rule; optional dense-task output norms). Configs have named
//!   presets and serialise to JSON ([`ArchConfig`]). [`convnext::ConvNeXt`] (timm's
//!   ConvNeXt-T, drop path, layer scale, optional dense-task output norms).
//! - [`registry`]: the one list of architecture families ([`Architecture`]: presets,
//!   constructor, weight layouts, forward cost). Everything that names, builds, imports or
//!   costs an architecture reads it; [`registry::register`] adds your own.
//! - [`weights`]: safetensors and PyTorch `.pth` (zip and legacy pre-1.6 format) reading,
//!   layout detection (each family's layouts, from the registry), conversion to the
//!   canonical timm names, and key checks that list every missing, unexpected and
//!   mismatched key. [`init::trainable_builder`] builds trainable models whose variables come
//!   from a state dict or from a seed.
//!
//! Every op with a backward goes through rtb-nn (candle's LayerNorm, softmax_last_dim and
//! padded max pool have none). This crate must not depend on the training engine, datasets,
//! task heads' crates, the CLI or anything that downloads; choosing and fetching weights
//! belongs to the CLI and xtask.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::VarMap;
//! use rtb_models::{Backbone, Mode, ResNet, ResNetConfig, init::trainable_builder};
//!
//! // A tiny ResNet with seeded random weights, forward on a 2×3×64×64 batch.
//! let varmap = VarMap::new();
//! let vb = trainable_builder(&varmap, Default::default(), 0, DType::F32, &Device::Cpu);
//! let model = ResNet::new(&ResNetConfig::tiny(), &vb).unwrap();
//! let xs = Tensor::zeros((2, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
//! let out = model.forward(&xs, Mode::Inference).unwrap();
//! assert_eq!(out.features.c5().dims(), &[2, 64, 2, 2]);
//! assert_eq!(out.logits.unwrap().dims(), &[2, 5]);
//! // Every parameter trains, the BatchNorm running statistics (buffers) do not.
//! let buffers = model.parameters().iter().filter(|p| !p.kind.is_trainable()).count();
//! assert_eq!(model.trainable_vars().len(), model.parameters().len() - buffers);
//! ```
#![deny(missing_docs)]

pub mod arch;
pub mod backbone;
pub mod convnext;
pub mod error;
pub mod init;
mod layers;
pub mod registry;
pub mod resnet;
pub mod swin;
pub mod weights;

pub use arch::{
    ArchConfig, canonical_for, check_state_dict, from_state_dict, load_backbone, read_canonical,
};
pub use backbone::{
    Backbone, BackboneOutput, Features, Freeze, FreezeGroup, Mode, ParamKind, Parameter,
};
pub use convnext::{ConvNeXt, ConvNeXtArch, ConvNeXtConfig};
pub use error::{KeyReport, ModelError, Result, ShapeMismatch};
pub use registry::{Architecture, WeightLayout};
pub use resnet::{BlockKind, ResNet, ResNetArch, ResNetConfig, Stem};
pub use swin::{Swin, SwinArch, SwinConfig, WindowRule};
