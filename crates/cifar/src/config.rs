//! [`CifarConfig`]: everything a CIFAR-10 cell needs, as one serde struct that the CLI fills
//! from flags and the study orchestrator fills from a preset file. `config.json` of a run is
//! this struct, resolved (the architecture spelled out, the seed included).

use std::path::PathBuf;

use rtb_corruption::{Corruption, Severity};
use rtb_models::ArchConfig;
use rtb_results::Regime;
use rtb_train::{
    DecayConfig, DeviceChoice, EngineConfig, GroupsConfig, OptimizerConfig, Precision,
    ScheduleConfig,
};
use serde::{Deserialize, Serialize};

use crate::error::{CifarError, Result};

/// Where corrupted test images come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CifarCSource {
    /// Generated with the `cifar-c` flavor and cached in `dir` (default:
    /// `<data dir>/rtb-cifar-10-c-seed<seed>`); an existing complete cache is reused.
    Generate {
        /// The cache folder.
        #[serde(default)]
        dir: Option<PathBuf>,
    },
    /// The released CIFAR-10-C folder (`<corruption>.npy`, `labels.npy`).
    Released {
        /// The folder.
        dir: PathBuf,
    },
    /// Corrupted while loading (nothing cached; the same bytes as `generate`).
    OnTheFly,
}

/// How a cell is evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Corruptions to evaluate (default: all 19; mPC and rPC need the 15 benchmark ones).
    #[serde(default = "all_corruptions", with = "corruption_names")]
    pub corruptions: Vec<Corruption>,
    /// Severities to evaluate (default 1..5; unevaluated ones are recorded as NaN).
    #[serde(default = "all_severities")]
    pub severities: Vec<u8>,
    /// Source of the corrupted images.
    #[serde(default = "default_source")]
    pub source: CifarCSource,
    /// Seed of the per-image corruption seeds.
    #[serde(default)]
    pub seed: u64,
    /// The frost textures' folder (default: `rtb_fetch::frost_dir()`); needed to generate
    /// frost.
    #[serde(default)]
    pub frost_dir: Option<PathBuf>,
    /// Evaluation batch size.
    #[serde(default = "default_eval_batch")]
    pub batch_size: usize,
    /// Paired bootstrap replicates for the confidence intervals (0: none), resampled from
    /// `seed`.
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
}

fn default_bootstrap() -> usize {
    rtb_results::DEFAULT_REPLICATES
}

fn all_corruptions() -> Vec<Corruption> {
    Corruption::ALL.to_vec()
}
fn all_severities() -> Vec<u8> {
    vec![1, 2, 3, 4, 5]
}
fn default_source() -> CifarCSource {
    CifarCSource::Generate { dir: None }
}
fn default_eval_batch() -> usize {
    100
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            corruptions: all_corruptions(),
            severities: all_severities(),
            source: default_source(),
            seed: 0,
            frost_dir: None,
            batch_size: default_eval_batch(),
            bootstrap: default_bootstrap(),
        }
    }
}

impl EvalConfig {
    /// The severities as [`Severity`] values (an error names a bad one).
    pub fn severities(&self) -> Result<Vec<Severity>> {
        if self.severities.is_empty() {
            return Err(CifarError::config(
                "severities",
                "give at least one of 1..5",
            ));
        }
        self.severities
            .iter()
            .map(|&s| {
                Severity::new(s).ok_or_else(|| {
                    CifarError::config("severities", format!("{s} is not a severity (1..5)"))
                })
            })
            .collect()
    }
}

/// Corruptions as their reference names in JSON.
mod corruption_names {
    use rtb_corruption::Corruption;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &[Corruption], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(value.iter().map(|c| c.name()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Corruption>, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names
            .iter()
            .map(|n| n.parse().map_err(serde::de::Error::custom))
            .collect()
    }
}

/// A CIFAR-10 transfer run: data, backbone, regime, schedule and evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CifarConfig {
    /// The study preset this run belongs to (the first level of the results store).
    pub preset: String,
    /// The backbone's name in the results store (`regular`, `swin_t`, …).
    pub backbone_name: String,
    /// The architecture (its classifier, if any, is replaced by a new head).
    pub arch: ArchConfig,
    /// Pretrained weights (any layout rtb-models reads); `None`: seeded random init.
    pub weights: Option<PathBuf>,
    /// Fixed-feature or full-network transfer.
    pub regime: Regime,
    /// The CIFAR-10 binary folder.
    pub data_dir: PathBuf,
    /// Side the 32×32 images are upsampled to (224 in the paper).
    pub image_size: usize,
    /// Random crop with padding and horizontal flip during training.
    pub augment: bool,
    /// Fixed-feature regime without augmentation: compute the backbone's pooled features of
    /// the training set once and train the head on them.
    pub cache_features: bool,
    /// Training batch size.
    pub batch_size: usize,
    /// Loader worker threads.
    pub workers: usize,
    /// The run seed (data order, augmentation, head init, DropPath).
    pub seed: u64,
    /// Device.
    pub device: DeviceChoice,
    /// Precision (bf16 on CUDA only).
    pub precision: Precision,
    /// Epochs, optimizer, schedule, groups, clipping, checkpoints.
    pub engine: EngineConfig,
    /// Evaluation.
    pub eval: EvalConfig,
}

impl CifarConfig {
    /// The defaults for a cell: 224-px inputs, augmentation, batch 64, 10 epochs of SGD
    /// (momentum 0.9, weight decay 5e-4, no decay on norms and biases) with cosine decay,
    /// lr 0.01 for the full network and 0.1 for a linear head on fixed features.
    pub fn new(
        arch: ArchConfig,
        backbone_name: &str,
        weights: Option<PathBuf>,
        regime: Regime,
        data_dir: PathBuf,
    ) -> Self {
        let lr = match regime {
            Regime::Fixed => 0.1,
            Regime::Full => 0.01,
        };
        Self {
            preset: "custom".into(),
            backbone_name: backbone_name.into(),
            arch,
            weights,
            regime,
            data_dir,
            image_size: 224,
            augment: true,
            cache_features: true,
            batch_size: 64,
            workers: 2,
            seed: 0,
            device: DeviceChoice::Cpu,
            precision: Precision::F32,
            engine: EngineConfig {
                epochs: 10,
                optimizer: OptimizerConfig::Sgd {
                    lr,
                    momentum: 0.9,
                    weight_decay: 5e-4,
                    nesterov: false,
                },
                schedule: ScheduleConfig {
                    decay: DecayConfig::Cosine { min_lr: 0.0 },
                    warmup_iters: 0,
                    warmup_ratio: 0.001,
                },
                groups: GroupsConfig::no_decay_for_norms_and_biases(),
                ..EngineConfig::default()
            },
            eval: EvalConfig::default(),
        }
    }

    /// Checks the values the pipeline relies on.
    pub fn validate(&self) -> Result<()> {
        if self.image_size < 32 {
            return Err(CifarError::config(
                "image_size",
                format!("{} is below the backbones' minimum of 32", self.image_size),
            ));
        }
        if self.batch_size == 0 || self.eval.batch_size == 0 {
            return Err(CifarError::config("batch_size", "must be at least 1"));
        }
        if self.batch_size == 1 && self.regime == Regime::Full {
            return Err(CifarError::config(
                "batch_size",
                "full-network training needs batches of at least 2 (BatchNorm statistics)",
            ));
        }
        rtb_results::CellId::new(
            &self.preset,
            &self.backbone_name,
            rtb_results::Task::Cifar10,
            self.regime,
        )?;
        self.engine.validate()?;
        self.eval.severities()?;
        Ok(())
    }

    /// Whether training runs the head on cached features.
    pub fn uses_feature_cache(&self) -> bool {
        self.regime == Regime::Fixed && !self.augment && self.cache_features
    }

    /// The folder of generated CIFAR-10-C for this config.
    pub fn generated_cifar_c_dir(&self) -> PathBuf {
        match &self.eval.source {
            CifarCSource::Generate { dir: Some(dir) } => dir.clone(),
            _ => self
                .data_dir
                .join(format!("rtb-cifar-10-c-seed{}", self.eval.seed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_round_trip_and_validate() {
        let mut cfg = CifarConfig::new(
            ArchConfig::from_name("resnet_tiny").unwrap(),
            "tiny",
            None,
            Regime::Full,
            "data".into(),
        );
        cfg.eval.corruptions = vec![Corruption::Fog, Corruption::Snow];
        let text = serde_json::to_string_pretty(&cfg).unwrap();
        assert!(
            text.contains("\"fog\"") && text.contains("\"regime\": \"full\""),
            "{text}"
        );
        let back: CifarConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, cfg);
        assert!(cfg.validate().is_ok());
        cfg.eval.severities = vec![0];
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("severities")
        );
        cfg.eval.severities = vec![1];
        cfg.backbone_name = "a/b".into();
        assert!(cfg.validate().unwrap_err().to_string().contains("backbone"));
    }
}
