//! The one registry of backbone architectures: every place that lists, parses, builds,
//! imports or costs an architecture reads it, so a new architecture is one module plus one
//! registration, and a program that depends on rtb can add its own without editing the
//! crates.
//!
//! An architecture is a type implementing [`Architecture`]: a family name (`resnet`,
//! `swin`, `convnext`, or your own), a serialisable config type, named presets of that config
//! (`resnet50`, `swin_t`, …), a constructor of `Box<dyn Backbone>`, the weight key layouts it
//! imports (the first is its canonical layout) and its forward cost for the study's
//! estimate. [`register`] adds one to the process-wide registry; the built-in families are
//! registered on first use.
//!
//! ```
//! use rtb_models::registry;
//!
//! let names = registry::preset_names();
//! assert!(names.iter().any(|n| n == "resnet50") && names.iter().any(|n| n == "swin_t"));
//! let arch = rtb_models::ArchConfig::from_name("resnet50").unwrap();
//! assert_eq!(arch.family(), "resnet");
//! // About 4.1 billion multiply-accumulates at 224².
//! let gmacs = arch.forward_macs(224, 224).unwrap() / 1e9;
//! assert!((4.0..4.2).contains(&gmacs), "{gmacs}");
//! ```

use std::fmt::Debug;
use std::sync::{Arc, LazyLock, RwLock};

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backbone::Backbone;
use crate::error::{ModelError, Result};

/// Converts the keys of a state dict from one layout to an architecture's canonical layout.
/// Arguments: the source's name (for errors) and the tensors as stored (after any
/// DataParallel `module.` prefix was stripped).
pub type ConvertFn = fn(&str, Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>>;

/// One key layout of an architecture's checkpoints (timm's, torchvision's, an original
/// release's, transformers'), with how to recognise it and how to convert it.
#[derive(Clone, Copy)]
pub struct WeightLayout {
    /// Short identifier, as weight manifests name it (`timm`, `torchvision`,
    /// `microsoft_swin`, `transformers_swin`, …); unique within the family.
    pub name: &'static str,
    /// One line for people (`Swin, Hugging Face transformers names`).
    pub description: &'static str,
    /// Whether a set of keys (without a `module.` prefix) is in this layout. Layouts of all
    /// families are tried, so a detector must not accept another family's keys.
    pub detect: fn(&[&str]) -> bool,
    /// Renames (and, where needed, splits or joins) tensors into the canonical layout.
    pub convert: ConvertFn,
}

impl Debug for WeightLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightLayout")
            .field("name", &self.name)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// The canonical layout's converter: keys are already canonical.
pub fn identity(_source: &str, tensors: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>> {
    Ok(tensors)
}

/// A family of backbones that rtb can build, import and cost. Implement it for a unit struct
/// and [`register`] it; `Config` is what presets and JSON/TOML architecture configs hold
/// (serialised without the `family` key, which [`crate::ArchConfig`] adds).
pub trait Architecture: Send + Sync + 'static {
    /// The family's configuration.
    type Config: Serialize + DeserializeOwned + Clone + Debug + Send + Sync;

    /// The family's name (`resnet`); the `family` field of an architecture config.
    fn family(&self) -> &'static str;

    /// One line for `rtb arch list`.
    fn description(&self) -> &'static str;

    /// Named configs (`resnet50`); names are unique across all families.
    fn presets(&self) -> Vec<(&'static str, Self::Config)>;

    /// Builds the model from a `VarBuilder` whose keys are the canonical layout's.
    fn build(&self, cfg: &Self::Config, vb: &VarBuilder<'_>) -> Result<Box<dyn Backbone>>;

    /// Classes of the classifier, if the config has one.
    fn num_classes(&self, cfg: &Self::Config) -> Option<usize>;

    /// The config with a classifier of `num_classes` classes (`None`: without classifier).
    fn with_num_classes(&self, cfg: &Self::Config, num_classes: Option<usize>) -> Self::Config;

    /// The canonical key of the classifier's weight matrix (`fc.weight`).
    fn classifier_key(&self) -> &'static str;

    /// The layouts this family imports; the first is the canonical one (its converter is
    /// normally [`identity`]).
    fn layouts(&self) -> Vec<WeightLayout>;

    /// Multiply-accumulates of one forward pass of a `height × width` image through the
    /// backbone (convolutions, linear layers, attention products; no task head). The study's
    /// cost estimate uses it.
    fn forward_macs(&self, cfg: &Self::Config, height: usize, width: usize) -> f64;
}

/// What the registry stores: an [`Architecture`] with its config erased to JSON.
trait Erased: Send + Sync {
    fn family(&self) -> &'static str;
    fn description(&self) -> &'static str;
    fn presets(&self) -> Result<Vec<(&'static str, serde_json::Value)>>;
    fn build(&self, cfg: &serde_json::Value, vb: &VarBuilder<'_>) -> Result<Box<dyn Backbone>>;
    fn num_classes(&self, cfg: &serde_json::Value) -> Result<Option<usize>>;
    fn with_num_classes(
        &self,
        cfg: &serde_json::Value,
        num_classes: Option<usize>,
    ) -> Result<serde_json::Value>;
    fn classifier_key(&self) -> &'static str;
    fn layouts(&self) -> Vec<WeightLayout>;
    fn forward_macs(&self, cfg: &serde_json::Value, height: usize, width: usize) -> Result<f64>;
    fn validate(&self, cfg: &serde_json::Value) -> Result<()>;
}

struct Typed<A>(A);

impl<A: Architecture> Typed<A> {
    fn config(&self, cfg: &serde_json::Value) -> Result<A::Config> {
        serde_json::from_value(cfg.clone()).map_err(|e| ModelError::Arch {
            family: self.0.family().to_string(),
            message: format!("not a {} config: {e}", self.0.family()),
        })
    }

    fn to_value(&self, cfg: &A::Config) -> Result<serde_json::Value> {
        serde_json::to_value(cfg).map_err(|e| ModelError::Arch {
            family: self.0.family().to_string(),
            message: format!("config does not serialise: {e}"),
        })
    }
}

impl<A: Architecture> Erased for Typed<A> {
    fn family(&self) -> &'static str {
        self.0.family()
    }
    fn description(&self) -> &'static str {
        self.0.description()
    }
    fn presets(&self) -> Result<Vec<(&'static str, serde_json::Value)>> {
        self.0
            .presets()
            .into_iter()
            .map(|(name, cfg)| Ok((name, self.to_value(&cfg)?)))
            .collect()
    }
    fn build(&self, cfg: &serde_json::Value, vb: &VarBuilder<'_>) -> Result<Box<dyn Backbone>> {
        self.0.build(&self.config(cfg)?, vb)
    }
    fn num_classes(&self, cfg: &serde_json::Value) -> Result<Option<usize>> {
        Ok(self.0.num_classes(&self.config(cfg)?))
    }
    fn with_num_classes(
        &self,
        cfg: &serde_json::Value,
        num_classes: Option<usize>,
    ) -> Result<serde_json::Value> {
        self.to_value(&self.0.with_num_classes(&self.config(cfg)?, num_classes))
    }
    fn classifier_key(&self) -> &'static str {
        self.0.classifier_key()
    }
    fn layouts(&self) -> Vec<WeightLayout> {
        self.0.layouts()
    }
    fn forward_macs(&self, cfg: &serde_json::Value, height: usize, width: usize) -> Result<f64> {
        Ok(self.0.forward_macs(&self.config(cfg)?, height, width))
    }
    fn validate(&self, cfg: &serde_json::Value) -> Result<()> {
        self.config(cfg).map(|_| ())
    }
}

static REGISTRY: LazyLock<RwLock<Vec<Arc<dyn Erased>>>> = LazyLock::new(|| {
    let builtins: Vec<Arc<dyn Erased>> = vec![
        Arc::new(Typed(crate::resnet::ResNetArch)),
        Arc::new(Typed(crate::swin::SwinArch)),
        Arc::new(Typed(crate::convnext::ConvNeXtArch)),
    ];
    RwLock::new(builtins)
});

fn entries() -> Vec<Arc<dyn Erased>> {
    // A poisoned lock only means a registration panicked half-way; the list is still valid.
    match REGISTRY.read() {
        Ok(list) => list.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn entry(family: &str) -> Result<Arc<dyn Erased>> {
    entries()
        .into_iter()
        .find(|e| e.family() == family)
        .ok_or_else(|| ModelError::Arch {
            family: family.to_string(),
            message: format!(
                "unknown architecture family; registered: {}",
                families().join(", ")
            ),
        })
}

/// Adds an architecture to the process-wide registry. An error if its family, one of its
/// preset names or one of its layout names (within the family) is already taken, or if a
/// preset does not serialise.
pub fn register<A: Architecture>(architecture: A) -> Result<()> {
    let typed = Typed(architecture);
    let family = typed.family();
    let presets = typed.presets()?;
    let mut layout_names: Vec<&str> = typed.layouts().iter().map(|l| l.name).collect();
    layout_names.sort_unstable();
    if layout_names.windows(2).any(|w| w[0] == w[1]) || layout_names.is_empty() {
        return Err(ModelError::Arch {
            family: family.to_string(),
            message: "needs at least one weight layout, with distinct names".into(),
        });
    }
    let mut list = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    if list.iter().any(|e| e.family() == family) {
        return Err(ModelError::Arch {
            family: family.to_string(),
            message: "a family of this name is already registered".into(),
        });
    }
    for existing in list.iter() {
        for (name, _) in existing.presets()? {
            if presets.iter().any(|(new, _)| *new == name) {
                return Err(ModelError::Arch {
                    family: family.to_string(),
                    message: format!(
                        "preset name {name:?} is already taken by family {}",
                        existing.family()
                    ),
                });
            }
        }
    }
    list.push(Arc::new(typed));
    Ok(())
}

/// The registered families, in registration order (built-ins first).
pub fn families() -> Vec<String> {
    entries().iter().map(|e| e.family().to_string()).collect()
}

/// Every preset name of every family, family by family.
pub fn preset_names() -> Vec<String> {
    summaries()
        .into_iter()
        .flat_map(|s| s.presets.into_iter())
        .collect()
}

/// What `rtb arch list` shows of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilySummary {
    /// The family.
    pub family: String,
    /// One line.
    pub description: String,
    /// Its preset names.
    pub presets: Vec<String>,
    /// Its layouts' `(name, description)`, canonical first.
    pub layouts: Vec<(String, String)>,
}

/// Every family with its presets and layouts.
pub fn summaries() -> Vec<FamilySummary> {
    entries()
        .iter()
        .map(|e| FamilySummary {
            family: e.family().to_string(),
            description: e.description().to_string(),
            // Presets of a registered family serialised when it was registered.
            presets: e
                .presets()
                .map(|p| p.into_iter().map(|(n, _)| n.to_string()).collect())
                .unwrap_or_default(),
            layouts: e
                .layouts()
                .iter()
                .map(|l| (l.name.to_string(), l.description.to_string()))
                .collect(),
        })
        .collect()
}

/// `(family, config)` of a preset name.
pub(crate) fn preset(name: &str) -> Option<(&'static str, serde_json::Value)> {
    entries().iter().find_map(|e| {
        e.presets()
            .ok()?
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, cfg)| (e.family(), cfg))
    })
}

/// Every layout of every family, as `(family, layout)`.
pub fn layouts() -> Vec<(String, WeightLayout)> {
    entries()
        .iter()
        .flat_map(|e| {
            let family = e.family().to_string();
            e.layouts().into_iter().map(move |l| (family.clone(), l))
        })
        .collect()
}

pub(crate) fn build(
    family: &str,
    cfg: &serde_json::Value,
    vb: &VarBuilder<'_>,
) -> Result<Box<dyn Backbone>> {
    entry(family)?.build(cfg, vb)
}

pub(crate) fn num_classes(family: &str, cfg: &serde_json::Value) -> Result<Option<usize>> {
    entry(family)?.num_classes(cfg)
}

pub(crate) fn with_num_classes(
    family: &str,
    cfg: &serde_json::Value,
    num_classes: Option<usize>,
) -> Result<serde_json::Value> {
    entry(family)?.with_num_classes(cfg, num_classes)
}

pub(crate) fn classifier_key(family: &str) -> Result<&'static str> {
    Ok(entry(family)?.classifier_key())
}

pub(crate) fn forward_macs(
    family: &str,
    cfg: &serde_json::Value,
    height: usize,
    width: usize,
) -> Result<f64> {
    entry(family)?.forward_macs(cfg, height, width)
}

pub(crate) fn validate(family: &str, cfg: &serde_json::Value) -> Result<()> {
    entry(family)?.validate(cfg)
}
