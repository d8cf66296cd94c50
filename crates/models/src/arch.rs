//! Choosing an architecture by name or by a serialisable config, and building it from a
//! weights file. Every family comes from the [`registry`](crate::registry).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::backbone::Backbone;
use crate::error::{ModelError, Result};
use crate::registry::{self, Architecture};
use crate::weights::{self, Canonical};

/// An architecture with its configuration: a registered family and that family's config.
/// Serialises as one flat JSON / TOML table, `{"family": "resnet", "block": "bottleneck",
/// "depths": [3, 4, 6, 3], …}` (every config field spelled out).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ArchConfig {
    family: String,
    #[serde(flatten)]
    config: serde_json::Map<String, serde_json::Value>,
}

impl ArchConfig {
    /// The config of a registered family, checked against that family's config type.
    pub fn new(family: &str, config: serde_json::Value) -> Result<Self> {
        registry::validate(family, &config)?;
        let serde_json::Value::Object(config) = config else {
            return Err(ModelError::Arch {
                family: family.to_string(),
                message: "a config must serialise as a table of fields".into(),
            });
        };
        Ok(Self {
            family: family.to_string(),
            config,
        })
    }

    /// The config of architecture `A` (registered or not yet: it is checked when built).
    pub fn of<A: Architecture>(architecture: &A, config: &A::Config) -> Result<Self> {
        let value = serde_json::to_value(config).map_err(|e| ModelError::Arch {
            family: architecture.family().to_string(),
            message: format!("config does not serialise: {e}"),
        })?;
        let serde_json::Value::Object(config) = value else {
            return Err(ModelError::Arch {
                family: architecture.family().to_string(),
                message: "a config must serialise as a table of fields".into(),
            });
        };
        Ok(Self {
            family: architecture.family().to_string(),
            config,
        })
    }

    /// A registered preset (`resnet50`, `swin_t`, …; see [`registry::preset_names`]).
    pub fn from_name(name: &str) -> Option<Self> {
        let (family, config) = registry::preset(name)?;
        match config {
            serde_json::Value::Object(config) => Some(Self {
                family: family.to_string(),
                config,
            }),
            _ => None,
        }
    }

    /// A preset name, an inline JSON config (`{"family": …}`), or the path of a JSON file
    /// holding one; the config is checked against its family.
    pub fn resolve(name_or_path: &str) -> Result<Self> {
        if let Some(config) = Self::from_name(name_or_path) {
            return Ok(config);
        }
        if name_or_path.trim_start().starts_with('{') {
            let config: Self =
                serde_json::from_str(name_or_path).map_err(|e| ModelError::Arch {
                    family: "inline".into(),
                    message: format!("not an architecture config: {e}"),
                })?;
            config.check()?;
            return Ok(config);
        }
        let path = Path::new(name_or_path);
        if path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let config: Self = serde_json::from_str(&text).map_err(|e| ModelError::Format {
                path: path.to_path_buf(),
                message: format!("not an architecture config: {e}"),
            })?;
            config.check()?;
            return Ok(config);
        }
        Err(ModelError::Arch {
            family: name_or_path.to_string(),
            message: format!(
                "neither a registered architecture ({}) nor a JSON config file",
                registry::preset_names().join(", ")
            ),
        })
    }

    /// Checks that the family is registered and the config fits it (configs read with
    /// serde are checked here, not at deserialisation).
    pub fn check(&self) -> Result<()> {
        registry::validate(&self.family, &self.config_value())
    }

    /// The architecture family (`resnet`, `swin`, `convnext`, …).
    pub fn family(&self) -> &str {
        &self.family
    }

    /// The family's config as JSON (without the `family` key).
    pub fn config_value(&self) -> serde_json::Value {
        serde_json::Value::Object(self.config.clone())
    }

    /// The family's config as its typed struct, for architecture `A`.
    pub fn typed<A: Architecture>(&self, architecture: &A) -> Result<A::Config> {
        if self.family != architecture.family() {
            return Err(ModelError::Arch {
                family: self.family.clone(),
                message: format!("not a {} config", architecture.family()),
            });
        }
        serde_json::from_value(self.config_value()).map_err(|e| ModelError::Arch {
            family: self.family.clone(),
            message: format!("not a {} config: {e}", self.family),
        })
    }

    /// Builds the model from a `VarBuilder`.
    pub fn build(&self, vb: &VarBuilder<'_>) -> Result<Box<dyn Backbone>> {
        registry::build(&self.family, &self.config_value(), vb)
    }

    /// A config given as JSON (a preset's `arch` table or a serialised `ArchConfig`), checked
    /// against its family.
    pub fn from_json(value: serde_json::Value) -> Result<Self> {
        let config: Self = serde_json::from_value(value).map_err(|e| ModelError::Arch {
            family: "json".into(),
            message: format!("not an architecture config: {e}"),
        })?;
        config.check()?;
        Ok(config)
    }

    /// The backbone without its classifier on zero weights (CPU, f32): what a cost count
    /// reads (channels, strides, pooled features) without any weights file.
    pub fn build_for_shapes(&self) -> Result<Box<dyn Backbone>> {
        let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
        self.with_num_classes(None)?.build(&vb)
    }

    /// Every key and shape the model needs.
    pub fn expected_keys(&self) -> Result<Vec<(String, Vec<usize>)>> {
        weights::expected_keys(|vb| self.build(vb).map(|_| ()))
    }

    /// The number of classes of the classifier (`None` also for an unregistered family).
    pub fn num_classes(&self) -> Option<usize> {
        registry::num_classes(&self.family, &self.config_value())
            .ok()
            .flatten()
    }

    /// The same architecture with (`Some`) or without (`None`) a classifier.
    pub fn with_num_classes(&self, num_classes: Option<usize>) -> Result<Self> {
        let value = registry::with_num_classes(&self.family, &self.config_value(), num_classes)?;
        Self::new(&self.family, value)
    }

    /// Multiply-accumulates of one `height × width` forward pass (no task head).
    pub fn forward_macs(&self, height: usize, width: usize) -> Result<f64> {
        registry::forward_macs(&self.family, &self.config_value(), height, width)
    }

    /// The key of the classifier weight in the canonical layout.
    pub fn classifier_key(&self) -> Result<&'static str> {
        registry::classifier_key(&self.family)
    }

    /// The same architecture with the classifier that `tensors` (canonical) carry: as many
    /// classes as their classifier weight has rows, or none when they have no classifier.
    pub fn with_classifier_of(&self, tensors: &BTreeMap<String, Tensor>) -> Result<Self> {
        let classes = tensors
            .get(self.classifier_key()?)
            .and_then(|w| w.dims().first().copied());
        self.with_num_classes(classes)
    }
}

impl std::fmt::Display for ArchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let json = serde_json::to_string(self).map_err(|_| std::fmt::Error)?;
        f.write_str(&json)
    }
}

/// Reads a weights file in any known layout and converts it to the canonical layout of
/// `arch`'s family (an error when the file holds another family).
pub fn read_canonical(arch: &ArchConfig, path: &Path, key: Option<&str>) -> Result<Canonical> {
    let file = weights::read_weights(path, key)?;
    canonical_for(arch, &path.display().to_string(), file.tensors)
}

/// [`read_canonical`] on tensors already read from `source`.
pub fn canonical_for(
    arch: &ArchConfig,
    source: &str,
    tensors: Vec<(String, Tensor)>,
) -> Result<Canonical> {
    let canonical = weights::canonicalize(source, tensors)?;
    if canonical.layout.family != arch.family() {
        return Err(ModelError::Unsupported {
            model: "weights",
            message: format!(
                "{source} holds a {} ({}), not a {}",
                canonical.layout.family,
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
            arch: arch.to_string(),
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

/// Built-in configs convert without a round trip through a preset name.
macro_rules! from_builtin {
    ($config:ty, $arch:expr) => {
        impl From<$config> for ArchConfig {
            fn from(config: $config) -> Self {
                // The built-in configs are plain structs of numbers, enums and bools: they
                // always serialise to a table.
                Self::of(&$arch, &config).expect("built-in configs serialise to a table")
            }
        }
    };
}

from_builtin!(crate::resnet::ResNetConfig, crate::resnet::ResNetArch);
from_builtin!(crate::swin::SwinConfig, crate::swin::SwinArch);
from_builtin!(
    crate::convnext::ConvNeXtConfig,
    crate::convnext::ConvNeXtArch
);
