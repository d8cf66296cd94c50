//! The manifests of external files: backbone weights (`weights/backbones.toml`) and datasets
//! (`presets/datasets.toml`).
//!
//! Every pin (a hub revision, a sha256) is either verified — someone downloaded the file and
//! checked it — or marked `verified = false`. Code that downloads refuses an unverified entry
//! unless the user passes `--allow-unverified` ([`BackboneEntry::check_usable`]), and an
//! unverified entry's pins are never invented: missing values stay missing.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::StudyError;

/// A file on the Hugging Face hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSource {
    /// `owner/name`.
    pub repo: String,
    /// A commit hash of the repository (40 hex digits) when pinned; `None` follows `main`
    /// (only with `--allow-unverified`).
    #[serde(default)]
    pub revision: Option<String>,
    /// The file in the repository.
    pub file: String,
    /// sha256 of the file, when known.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// A checkpoint at a plain URL (a GitHub release, a project page).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlSource {
    /// Where to download it from; `None` when the file cannot be fetched by a plain GET (a
    /// Google Drive link behind a confirmation page): pass `--from FILE`.
    #[serde(default)]
    pub url: Option<String>,
    /// The page that links it (for a person to download it by hand).
    #[serde(default)]
    pub page: Option<String>,
    /// The file name in the cache.
    pub file: String,
    /// sha256 of the file, when known.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// How a downloaded checkpoint becomes canonical weights (`rtb weights import`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRecipe {
    /// The top-level key of a PyTorch checkpoint that holds the state dict
    /// (`model_state_dict`, `state_dict`, `model`); `None`: the top level or the usual keys.
    #[serde(default)]
    pub key: Option<String>,
    /// The key layout it is in (a name of `rtb arch list`: `torchvision_resnet`, `timm_swin`, …);
    /// rtb-models detects it and this says what to expect.
    pub layout: String,
    /// Notes for a person (prefixes stripped, legacy format, …).
    #[serde(default)]
    pub notes: String,
}

/// Published ImageNet numbers (notes/paper.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedNumbers {
    /// Top-1 in percent.
    pub imagenet_top1: f64,
    /// ImageNet-C mCE in percent, when published.
    #[serde(default)]
    pub imagenet_c_mce: Option<f64>,
    /// Where the numbers come from.
    pub source: String,
}

/// timm's evaluation settings of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageNetEval {
    /// `bilinear` or `bicubic`.
    pub interpolation: String,
    /// The centre crop over the resized image (224 / resize side).
    pub crop_pct: f64,
}

/// One backbone of the weights manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneEntry {
    /// The entry's name (what a preset's `weights = "…"` refers to).
    pub name: String,
    /// The paper's row.
    #[serde(default)]
    pub paper_row: Option<String>,
    /// The architecture (an rtb-models name).
    pub arch: String,
    /// Whether every pin below (revision, sha256, URL) was checked by downloading the file.
    pub verified: bool,
    /// On the hub.
    #[serde(default)]
    pub hub: Option<HubSource>,
    /// At a URL.
    #[serde(default)]
    pub url: Option<UrlSource>,
    /// How to import it.
    pub import: ImportRecipe,
    /// The ImageNet evaluation transform the weights were published with (timm's
    /// `interpolation` and `crop_pct`); `None`: bilinear, 0.875 (resize 256, crop 224).
    #[serde(default)]
    pub imagenet_eval: Option<ImageNetEval>,
    /// Published numbers.
    pub published: PublishedNumbers,
}

/// The weights manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsManifest {
    /// Entries (`[[backbone]]`).
    #[serde(rename = "backbone")]
    pub backbones: Vec<BackboneEntry>,
}

fn is_sha256(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_commit(value: &str) -> bool {
    value.len() == 40 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, origin: &str) -> Result<T, StudyError> {
    toml::from_str(text).map_err(|err| StudyError::Parse {
        path: origin.into(),
        message: err.to_string(),
    })
}

fn read(path: &Path) -> Result<String, StudyError> {
    std::fs::read_to_string(path).map_err(|source| StudyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl WeightsManifest {
    /// Parses and validates manifest TOML.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, StudyError> {
        let manifest: Self = parse(text, origin)?;
        for entry in &manifest.backbones {
            entry.validate().map_err(|err| match err {
                StudyError::Invalid { what, message } => StudyError::Invalid {
                    what: format!("{origin}: {what}"),
                    message,
                },
                other => other,
            })?;
        }
        Ok(manifest)
    }

    /// Reads a manifest file.
    pub fn load(path: &Path) -> Result<Self, StudyError> {
        Self::from_toml(&read(path)?, &path.display().to_string())
    }

    /// The entry `name`.
    pub fn get(&self, name: &str) -> Result<&BackboneEntry, StudyError> {
        self.backbones
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| StudyError::Invalid {
                what: "weights".into(),
                message: format!(
                    "the manifest has no backbone {name:?} (it has {})",
                    self.backbones
                        .iter()
                        .map(|b| b.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }
}

impl BackboneEntry {
    fn validate(&self) -> Result<(), StudyError> {
        let invalid = |message: String| {
            Err(StudyError::Invalid {
                what: format!("backbone {:?}", self.name),
                message,
            })
        };
        match (&self.hub, &self.url) {
            (Some(_), Some(_)) | (None, None) => {
                return invalid("needs exactly one of [backbone.hub] and [backbone.url]".into());
            }
            _ => {}
        }
        let sha = self
            .hub
            .as_ref()
            .and_then(|h| h.sha256.as_deref())
            .or_else(|| self.url.as_ref().and_then(|u| u.sha256.as_deref()));
        if let Some(sha) = sha
            && !is_sha256(sha)
        {
            return invalid(format!("sha256 {sha:?} is not 64 hex digits"));
        }
        if let Some(revision) = self.hub.as_ref().and_then(|h| h.revision.as_deref())
            && !is_commit(revision)
        {
            return invalid(format!(
                "hub.revision {revision:?} is not a commit hash (40 hex digits)"
            ));
        }
        if self.verified {
            let pinned = match (&self.hub, &self.url) {
                (Some(hub), _) => hub.revision.is_some() && hub.sha256.is_some(),
                (_, Some(url)) => url.sha256.is_some(),
                _ => false,
            };
            if !pinned {
                return invalid(
                    "verified = true needs a sha256 (and, on the hub, a revision)".into(),
                );
            }
        }
        Ok(())
    }

    /// The sha256 pin, if any.
    pub fn sha256(&self) -> Option<&str> {
        self.hub
            .as_ref()
            .and_then(|h| h.sha256.as_deref())
            .or_else(|| self.url.as_ref().and_then(|u| u.sha256.as_deref()))
    }

    /// An error unless the entry is verified or `allow_unverified` is set.
    pub fn check_usable(&self, allow_unverified: bool) -> Result<(), StudyError> {
        if self.verified || allow_unverified {
            Ok(())
        } else {
            Err(StudyError::Invalid {
                what: format!("backbone {:?}", self.name),
                message: "its manifest entry is marked unverified (revision or sha256 not \
                          checked): pass --allow-unverified to use it anyway, and pin the \
                          sha256 that rtb prints"
                    .into(),
            })
        }
    }
}

/// One file of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetFile {
    /// Where to download it.
    pub url: String,
    /// The file name in the data directory.
    pub file: String,
    /// sha256, when known.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Size in bytes, when known (for the plan).
    #[serde(default)]
    pub bytes: Option<u64>,
}

/// One dataset of the datasets manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetEntry {
    /// Its name (`cifar10`, `coco2017`, `ade20k`).
    pub name: String,
    /// Whether the pins were checked by downloading.
    pub verified: bool,
    /// What it is and how it is unpacked.
    #[serde(default)]
    pub description: String,
    /// The task whose cells use it (`cifar10`, `coco`, `ade20k`).
    #[serde(default)]
    pub task: Option<rtb_results::Task>,
    /// How many images its splits hold (the cost estimate reads them).
    #[serde(default)]
    pub images: Option<SplitSizes>,
    /// Its files.
    #[serde(rename = "file")]
    pub files: Vec<DatasetFile>,
}

/// Image counts of a dataset's training and evaluation splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSizes {
    /// Training images.
    pub train: usize,
    /// Evaluation (test or validation) images.
    pub test: usize,
}

impl DatasetsManifest {
    /// The split sizes of the dataset that `task`'s cells use.
    pub fn sizes_for(&self, task: rtb_results::Task) -> Option<SplitSizes> {
        self.datasets
            .iter()
            .find(|d| d.task == Some(task))
            .and_then(|d| d.images)
    }
}

/// The datasets manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetsManifest {
    /// Entries (`[[dataset]]`).
    #[serde(rename = "dataset")]
    pub datasets: Vec<DatasetEntry>,
}

impl DatasetsManifest {
    /// Parses and validates manifest TOML.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, StudyError> {
        let manifest: Self = parse(text, origin)?;
        for dataset in &manifest.datasets {
            for file in &dataset.files {
                if let Some(sha) = &file.sha256
                    && !is_sha256(sha)
                {
                    return Err(StudyError::Invalid {
                        what: format!("{origin}: dataset {:?} file {:?}", dataset.name, file.file),
                        message: format!("sha256 {sha:?} is not 64 hex digits"),
                    });
                }
                if dataset.verified && file.sha256.is_none() {
                    return Err(StudyError::Invalid {
                        what: format!("{origin}: dataset {:?} file {:?}", dataset.name, file.file),
                        message: "verified = true needs a sha256".into(),
                    });
                }
            }
        }
        Ok(manifest)
    }

    /// Reads a manifest file.
    pub fn load(path: &Path) -> Result<Self, StudyError> {
        Self::from_toml(&read(path)?, &path.display().to_string())
    }

    /// The entry `name`.
    pub fn get(&self, name: &str) -> Result<&DatasetEntry, StudyError> {
        self.datasets
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| StudyError::Invalid {
                what: "dataset".into(),
                message: format!("the datasets manifest has no {name:?}"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = r#"
        [[backbone]]
        name = "regular"
        arch = "resnet50"
        verified = false
        hub = { repo = "timm/resnet50.tv_in1k", file = "model.safetensors" }
        import = { layout = "timm" }
        published = { imagenet_top1 = 76.13, source = "torchvision" }
    "#;

    #[test]
    fn unverified_entries_need_the_flag() {
        let manifest = WeightsManifest::from_toml(ENTRY, "m.toml").unwrap();
        let entry = manifest.get("regular").unwrap();
        let err = entry.check_usable(false).unwrap_err().to_string();
        assert!(err.contains("--allow-unverified"), "{err}");
        entry.check_usable(true).unwrap();
        assert!(
            manifest
                .get("ant")
                .unwrap_err()
                .to_string()
                .contains("regular")
        );
    }

    #[test]
    fn verified_entries_must_be_pinned_and_pins_well_formed() {
        let verified = ENTRY.replace("verified = false", "verified = true");
        let err = WeightsManifest::from_toml(&verified, "m.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("m.toml") && err.contains("sha256"), "{err}");
        let bad_revision = ENTRY.replace(
            "file = \"model.safetensors\"",
            "file = \"model.safetensors\", revision = \"main\"",
        );
        let err = WeightsManifest::from_toml(&bad_revision, "m.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("commit hash"), "{err}");
        let pinned = verified.replace(
            "file = \"model.safetensors\"",
            &format!(
                "file = \"model.safetensors\", revision = \"{}\", sha256 = \"{}\"",
                "a".repeat(40),
                "b".repeat(64)
            ),
        );
        let manifest = WeightsManifest::from_toml(&pinned, "m.toml").unwrap();
        manifest
            .get("regular")
            .unwrap()
            .check_usable(false)
            .unwrap();
    }

    #[test]
    fn dataset_pins_are_checked() {
        let text = r#"
            [[dataset]]
            name = "cifar10"
            verified = true
            [[dataset.file]]
            url = "http://127.0.0.1/cifar.tar.gz"
            file = "cifar.tar.gz"
        "#;
        let err = DatasetsManifest::from_toml(text, "d.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs a sha256"), "{err}");
    }
}
