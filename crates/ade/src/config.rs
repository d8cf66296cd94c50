//! [`AdeConfig`]: everything an ADE20K segmentation cell needs, as one serde struct that the
//! task interface fills from a preset (and `config.json` of a run holds, resolved).

use std::path::PathBuf;

use rtb_corruption::{Corruption, Severity};
use rtb_models::ArchConfig;
use rtb_results::Regime;
use rtb_segmentation::UperNetConfig;
use rtb_train::{
    DecayConfig, DeviceChoice, EngineConfig, GroupsConfig, OptimizerConfig, Precision,
    ScheduleConfig,
};
use serde::{Deserialize, Serialize};

use crate::error::AdeTaskError;
use crate::transforms::{TestConfig, TrainConfig};

/// How a segmentation cell is evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdeEvalConfig {
    /// Corruptions to evaluate (reference names).
    #[serde(with = "corruption_names")]
    pub corruptions: Vec<Corruption>,
    /// Severities (1..=5); severities not evaluated are NaN in the table.
    pub severities: Vec<u8>,
    /// Seed of the per-image corruption seeds.
    pub seed: u64,
    /// Evaluate the first this many validation images (`None`: all).
    #[serde(default)]
    pub images: Option<usize>,
    /// The frost textures' folder (needed to evaluate frost).
    #[serde(default)]
    pub frost_dir: Option<PathBuf>,
    /// Evaluation batch size (1: mmseg's; images of different sizes are padded together).
    pub batch_size: usize,
    /// Paired bootstrap replicates for the confidence intervals (0: none), resampled from
    /// `seed`.
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
}

fn default_bootstrap() -> usize {
    rtb_results::DEFAULT_REPLICATES
}

impl Default for AdeEvalConfig {
    fn default() -> Self {
        Self {
            corruptions: Corruption::BENCHMARK.to_vec(),
            severities: vec![1, 2, 3, 4, 5],
            seed: 0,
            images: None,
            frost_dir: None,
            batch_size: 1,
            bootstrap: default_bootstrap(),
        }
    }
}

impl AdeEvalConfig {
    /// The severities as [`Severity`] values (an error names a bad one).
    pub fn severities(&self) -> Result<Vec<Severity>, AdeTaskError> {
        if self.severities.is_empty() {
            return Err(AdeTaskError::config(
                "eval.severities",
                "give at least one of 1..5",
            ));
        }
        self.severities
            .iter()
            .map(|&s| {
                Severity::new(s).ok_or_else(|| {
                    AdeTaskError::config("eval.severities", format!("{s} is not a severity (1..5)"))
                })
            })
            .collect()
    }
}

mod corruption_names {
    use rtb_corruption::Corruption;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &[Corruption], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(value.iter().map(|c| c.name()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Corruption>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|n| n.parse().map_err(serde::de::Error::custom))
            .collect()
    }
}

/// An ADE20K (or shapes-world ADE export) segmentation run: data, backbone, UperNet, regime,
/// pipelines, schedule and evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdeConfig {
    /// The study preset this run belongs to.
    pub preset: String,
    /// The backbone's name in the results store.
    pub backbone_name: String,
    /// The backbone's architecture (its classifier, if any, is dropped).
    pub arch: ArchConfig,
    /// Pretrained backbone weights (any layout rtb-models reads); `None`: seeded random init.
    pub weights: Option<PathBuf>,
    /// Fixed-feature (backbone frozen, no graph through it) or full-network.
    pub regime: Regime,
    /// The dataset root (`images/`, `annotations/`).
    pub data_dir: PathBuf,
    /// The segmenter's heads; `model.num_classes` is the label maps' class count (after
    /// reduce_zero_label).
    pub model: UperNetConfig,
    /// The train pipeline.
    pub train: TrainConfig,
    /// The test pipeline.
    pub test: TestConfig,
    /// Training batch size (at least 2: BatchNorm on the 1×1 pooling branch).
    pub batch_size: usize,
    /// Loader worker threads.
    pub workers: usize,
    /// The run seed (head init, data order, augmentation, dropout, DropPath).
    pub seed: u64,
    /// Device.
    pub device: DeviceChoice,
    /// Precision (bf16 on CUDA only).
    pub precision: Precision,
    /// Epochs (or iterations through `max_iters`), optimizer, schedule, groups, checkpoints.
    pub engine: EngineConfig,
    /// Evaluation.
    pub eval: AdeEvalConfig,
}

impl AdeConfig {
    /// mmseg's UperNet-R50 ADE20K 512×512 recipe for `num_classes` classes: the default
    /// pipelines, batch 16, SGD lr 0.01 (momentum 0.9, weight decay 5e-4) with poly decay
    /// (power 0.9, to 1e-4) over 160k iterations (`engine.max_iters`, one epoch of the
    /// loader repeated as needed: set `engine.epochs` to cover it).
    pub fn new(
        arch: ArchConfig,
        backbone_name: &str,
        weights: Option<PathBuf>,
        regime: Regime,
        data_dir: PathBuf,
        num_classes: usize,
    ) -> Self {
        Self {
            preset: "custom".into(),
            backbone_name: backbone_name.into(),
            arch,
            weights,
            regime,
            data_dir,
            model: UperNetConfig::ade20k().with_num_classes(num_classes),
            train: TrainConfig::default(),
            test: TestConfig::default(),
            batch_size: 16,
            workers: 2,
            seed: 0,
            device: DeviceChoice::Cpu,
            precision: Precision::F32,
            engine: EngineConfig {
                epochs: 1,
                optimizer: OptimizerConfig::Sgd {
                    lr: 0.01,
                    momentum: 0.9,
                    weight_decay: 5e-4,
                    nesterov: false,
                },
                schedule: ScheduleConfig {
                    decay: DecayConfig::Poly {
                        power: 0.9,
                        min_lr: 1e-4,
                    },
                    warmup_iters: 0,
                    warmup_ratio: 0.001,
                },
                groups: GroupsConfig::default(),
                ..EngineConfig::default()
            },
            eval: AdeEvalConfig::default(),
        }
    }

    /// Checks the values the pipeline relies on; errors name the field.
    pub fn validate(&self) -> Result<(), AdeTaskError> {
        if self.batch_size < 2 {
            return Err(AdeTaskError::config(
                "batch_size",
                "training needs batches of at least 2 (BatchNorm on the 1×1 pooling branch)",
            ));
        }
        if self.eval.batch_size == 0 {
            return Err(AdeTaskError::config(
                "eval.batch_size",
                "must be at least 1",
            ));
        }
        self.model
            .check()
            .map_err(|err| AdeTaskError::config("model", err.to_string()))?;
        self.train.validate()?;
        rtb_results::CellId::new(
            &self.preset,
            &self.backbone_name,
            rtb_results::Task::Ade20k,
            self.regime,
        )
        .map_err(|err| AdeTaskError::config("backbone_name", err.to_string()))?;
        self.engine.validate()?;
        self.eval.severities()?;
        Ok(())
    }
}
