//! Choosing an architecture by name or by a serialisable config, and building it from a
//! weights file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::backbone::Backbone;
use crate::error::{ModelError, Result};
use crate::resnet::{ResNet, ResNetConfig};
use crate::swin::{Swin, SwinConfig};
use crate::weights::{self, Canonical, Family};

/// An architecture with its configuration; serialises as JSON like
/// `{"family": "resnet", "block": "bottleneck", "depths": [3, 4, 6, 3], …}` or
/// `{"family": "swin", "embed_dim": 96, …}` (every config field spelled out).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum ArchConfig {
    /// A ResNet.
    Resnet(ResNetConfig),
    /// A Swin Transformer.
    Swin(SwinConfig),
}

/// Names accepted by [`ArchConfig::from_name`].
pub const ARCH_NAMES: [&str; 8] = [
    "resnet50",
    "resnet18",
    "resnet_mini",
    "resnet_tiny",
    "swin_t",
    "swin_t_dense",
    "swin_mini",
    "swin_tiny",
];

impl ArchConfig {
    /// A named preset (see [`ARCH_NAMES`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "resnet50" => Self::Resnet(ResNetConfig::resnet50()),
            "resnet18" => Self::Resnet(ResNetConfig::resnet18()),
            "resnet_mini" => Self::Resnet(ResNetConfig::mini()),
            "resnet_tiny" => Self::Resnet(ResNetConfig::tiny()),
            "swin_t" => Self::Swin(SwinConfig::swin_t()),
            "swin_t_dense" => Self::Swin(SwinConfig::swin_t_dense()),
            "swin_mini" => Self::Swin(SwinConfig::mini()),
            "swin_tiny" => Self::Swin(SwinConfig::tiny()),
            _ => return None,
        })
    }

    /// The architecture family.
    pub fn family(&self) -> Family {
        match self {
            Self::Resnet(_) => Family::ResNet,
            Self::Swin(_) => Family::Swin,
        }
    }

    /// Builds the model from a `VarBuilder`.
    pub fn build(&self, vb: &VarBuilder<'_>) -> Result<Box<dyn Backbone>> {
        Ok(match self {
            Self::Resnet(cfg) => Box::new(ResNet::new(cfg, vb)?),
            Self::Swin(cfg) => Box::new(Swin::new(cfg, vb)?),
        })
    }

    /// Every key and shape the model needs.
    pub fn expected_keys(&self) -> Result<Vec<(String, Vec<usize>)>> {
        weights::expected_keys(|vb| self.build(vb).map(|_| ()))
    }

    /// The number of classes of the classifier.
    pub fn num_classes(&self) -> Option<usize> {
        match self {
            Self::Resnet(cfg) => cfg.num_classes,
            Self::Swin(cfg) => cfg.num_classes,
        }
    }

    /// The same architecture with (`Some`) or without (`None`) a classifier.
    pub fn with_num_classes(&self, num_classes: Option<usize>) -> Self {
        let mut out = self.clone();
        match &mut out {
            Self::Resnet(cfg) => cfg.num_classes = num_classes,
            Self::Swin(cfg) => {
                cfg.num_classes = num_classes;
                if num_classes.is_some() {
                    cfg.final_norm = true;
                }
            }
        }
        out
    }
}

impl ArchConfig {
    /// The key of the classifier weight in the canonical layout.
    pub fn classifier_key(&self) -> &'static str {
        match self {
            Self::Resnet(_) => "fc.weight",
            Self::Swin(_) => "head.fc.weight",
        }
    }

    /// The same architecture with the classifier that `tensors` (canonical) carry: as many
    /// classes as their classifier weight has rows, or none when they have no classifier.
    pub fn with_classifier_of(&self, tensors: &BTreeMap<String, Tensor>) -> Self {
        let classes = tensors
            .get(self.classifier_key())
            .and_then(|w| w.dims().first().copied());
        self.with_num_classes(classes)
    }
}

/// Reads a weights file in any known layout and converts it to the canonical layout of
/// `arch`'s family (an error when the file holds the other family).
pub fn read_canonical(arch: &ArchConfig, path: &Path, key: Option<&str>) -> Result<Canonical> {
    let file = weights::read_weights(path, key)?;
    let source = path.display().to_string();
    let canonical = weights::canonicalize(&source, file.tensors)?;
    if canonical.layout.family() != arch.family() {
        return Err(ModelError::Unsupported {
            model: "weights",
            message: format!(
                "{source} holds a {} ({}), not a {:?}",
                match canonical.layout.family() {
                    Family::ResNet => "ResNet",
                    Family::Swin => "Swin",
                },
                canonical.layout,
                arch.family()
            ),
        });
    }
    Ok(canonical)
}

/// Checks that `tensors` fit `arch` exactly (every missing, unexpected and mismatched key in
/// one error).
pub fn check_state_dict(
    arch: &ArchConfig,
    source: &str,
    tensors: &BTreeMap<String, Tensor>,
) -> Result<()> {
    let report = weights::check_keys(&arch.expected_keys()?, tensors);
    if report.is_clean() {
        Ok(())
    } else {
        Err(ModelError::Keys {
            source_name: source.to_string(),
            arch: format!("{arch:?}"),
            report: Box::new(report),
        })
    }
}

/// Builds a model for inference or fixed features from a canonical state dict that fits
/// `arch` exactly. Its tensors are plain (not `Var`s): nothing trains and no gradient graph
/// reaches the weights.
pub fn from_state_dict(
    arch: &ArchConfig,
    source: &str,
    tensors: BTreeMap<String, Tensor>,
    dtype: DType,
    device: &Device,
) -> Result<Box<dyn Backbone>> {
    check_state_dict(arch, source, &tensors)?;
    let map: HashMap<String, Tensor> = tensors.into_iter().collect();
    arch.build(&VarBuilder::from_tensors(map, dtype, device))
}

/// Reads a weights file (any known format and layout) and builds `arch` from it (see
/// [`from_state_dict`]).
pub fn load_backbone(
    arch: &ArchConfig,
    path: &Path,
    dtype: DType,
    device: &Device,
) -> Result<Box<dyn Backbone>> {
    let canonical = read_canonical(arch, path, None)?;
    from_state_dict(
        arch,
        &path.display().to_string(),
        canonical.tensors,
        dtype,
        device,
    )
}
