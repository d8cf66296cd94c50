//! [`CocoConfig`]: everything a COCO detection cell needs, as one serde struct that the task
//! interface fills from a preset (and `config.json` of a run holds, resolved).

use std::path::PathBuf;

use rtb_corruption::{Corruption, Severity};
use rtb_detection::Flavor;
use rtb_detection::mask_rcnn::MaskRcnnConfig;
use rtb_detection::sampler::SamplerConfig;
use rtb_models::ArchConfig;
use rtb_results::Regime;
use rtb_train::{
    DecayConfig, DeviceChoice, EngineConfig, GroupKey, GroupsConfig, OptimizerConfig, Precision,
    ScheduleConfig,
};
use serde::{Deserialize, Serialize};

use crate::error::CocoTaskError;

/// The detector's sizes (mmdet 2.x's Mask R-CNN R50-FPN by default; the offline presets slim
/// the widths and the samplers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// Foreground classes (80 for COCO; the export's category count for the shapes world).
    pub num_classes: usize,
    /// FPN output channels (256).
    pub fpn_channels: usize,
    /// Width of the box head's two fully connected layers (1024).
    pub box_representation: usize,
    /// Channels of the mask head's convolutions (256).
    pub mask_conv_channels: usize,
    /// RPN anchors sampled per image (256, half positive).
    pub rpn_samples: usize,
    /// RoIs sampled per image (512, a quarter positive).
    pub roi_samples: usize,
}

impl DetectorConfig {
    /// mmdet's Mask R-CNN R50-FPN sizes for `num_classes` classes.
    pub fn mask_rcnn(num_classes: usize) -> Self {
        Self {
            num_classes,
            fpn_channels: 256,
            box_representation: 1024,
            mask_conv_channels: 256,
            rpn_samples: 256,
            roi_samples: 512,
        }
    }

    /// rtb-detection's configuration (the mmdet flavor, the paper's).
    pub fn to_mask_rcnn(&self) -> Result<MaskRcnnConfig, CocoTaskError> {
        let mut cfg = MaskRcnnConfig::new(Flavor::Mmdet, self.num_classes).with_widths(
            self.fpn_channels,
            self.box_representation,
            self.mask_conv_channels,
        );
        let sampler = |field: &str, num: usize, fraction: f64, base: SamplerConfig| {
            let mut s = SamplerConfig::new(num, fraction)
                .map_err(|err| CocoTaskError::config(field, err.to_string()))?;
            s.neg_pos_ub = base.neg_pos_ub;
            Ok::<_, CocoTaskError>(s)
        };
        cfg.rpn_sampler = sampler(
            "model.rpn_samples",
            self.rpn_samples,
            cfg.rpn_sampler.pos_fraction,
            cfg.rpn_sampler,
        )?;
        cfg.roi_sampler = sampler(
            "model.roi_samples",
            self.roi_samples,
            cfg.roi_sampler.pos_fraction,
            cfg.roi_sampler,
        )?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), CocoTaskError> {
        for (field, value) in [
            ("model.num_classes", self.num_classes),
            ("model.fpn_channels", self.fpn_channels),
            ("model.box_representation", self.box_representation),
            ("model.mask_conv_channels", self.mask_conv_channels),
            ("model.rpn_samples", self.rpn_samples),
            ("model.roi_samples", self.roi_samples),
        ] {
            if value == 0 {
                return Err(CocoTaskError::config(field, "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// The train pipeline (mmdet's `Resize(img_scale=(1333, 800), keep_ratio=True)`,
/// `RandomFlip(flip_ratio=0.5)`, `Normalize`, `Pad(size_divisor=32)`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainPipeline {
    /// `(long, short)` edge limits of the keep-ratio resize.
    pub scale: (u32, u32),
    /// Probability of a horizontal flip.
    pub flip_ratio: f64,
}

impl Default for TrainPipeline {
    fn default() -> Self {
        Self {
            scale: (1333, 800),
            flip_ratio: 0.5,
        }
    }
}

/// The test pipeline (keep-ratio resize, normalise, pad to 32).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestPipeline {
    /// `(long, short)` edge limits of the keep-ratio resize.
    pub scale: (u32, u32),
}

impl Default for TestPipeline {
    fn default() -> Self {
        Self { scale: (1333, 800) }
    }
}

/// How a detection cell is evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CocoEvalConfig {
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
    /// Evaluation batch size (1: mmdet's; images of different sizes are padded together).
    pub batch_size: usize,
    /// Keep a COCO results JSON per condition (`results/<condition>.json` in the run).
    #[serde(default)]
    pub keep_results: bool,
    /// Paired bootstrap replicates for the confidence intervals (0: none), resampled from
    /// `seed`.
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
}

fn default_bootstrap() -> usize {
    rtb_results::DEFAULT_REPLICATES
}

impl Default for CocoEvalConfig {
    fn default() -> Self {
        Self {
            corruptions: Corruption::BENCHMARK.to_vec(),
            severities: vec![1, 2, 3, 4, 5],
            seed: 0,
            images: None,
            frost_dir: None,
            batch_size: 1,
            keep_results: false,
            bootstrap: default_bootstrap(),
        }
    }
}

impl CocoEvalConfig {
    /// The severities as [`Severity`] values (an error names a bad one).
    pub fn severities(&self) -> Result<Vec<Severity>, CocoTaskError> {
        if self.severities.is_empty() {
            return Err(CocoTaskError::config(
                "eval.severities",
                "give at least one of 1..5",
            ));
        }
        self.severities
            .iter()
            .map(|&s| {
                Severity::new(s).ok_or_else(|| {
                    CocoTaskError::config(
                        "eval.severities",
                        format!("{s} is not a severity (1..5)"),
                    )
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

/// A COCO (or shapes-world COCO export) detection run: data, backbone, Mask R-CNN, regime,
/// pipelines, schedule and evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CocoConfig {
    /// The study preset this run belongs to.
    pub preset: String,
    /// The backbone's name in the results store.
    pub backbone_name: String,
    /// The backbone's architecture (its classifier, if any, is dropped).
    pub arch: ArchConfig,
    /// Pretrained backbone weights (any layout rtb-models reads); `None`: seeded random init.
    pub weights: Option<PathBuf>,
    /// Fixed-feature (backbone frozen, no graph through it) or full-network (mmdet's
    /// `frozen_stages=1` and `norm_eval` for ResNets, nothing frozen otherwise).
    pub regime: Regime,
    /// The dataset root (`train2017/`, `val2017/`, `annotations/`).
    pub data_dir: PathBuf,
    /// The detector's sizes.
    pub model: DetectorConfig,
    /// The train pipeline.
    pub train: TrainPipeline,
    /// The test pipeline.
    pub test: TestPipeline,
    /// Training images per optimizer step (mmdet: 2 per GPU × 8 GPUs = 16).
    pub batch_size: usize,
    /// Micro-batches each step is split into (gradient accumulation: batch 16 in 8 passes of
    /// 2 fits one GPU); must divide `batch_size`.
    pub accumulate: usize,
    /// Batch images of one aspect-ratio group (wide or tall) together, as mmdet's
    /// `GroupSampler`.
    pub group_aspect_ratio: bool,
    /// Loader worker threads.
    pub workers: usize,
    /// The run seed (head init, data order, flips, samplers, DropPath).
    pub seed: u64,
    /// Device.
    pub device: DeviceChoice,
    /// Precision (bf16 on CUDA only).
    pub precision: Precision,
    /// Epochs (or iterations through `max_iters`), optimizer, schedule, groups, checkpoints.
    pub engine: EngineConfig,
    /// Evaluation.
    pub eval: CocoEvalConfig,
}

/// mmdet's 1x schedule for `family`: 12 epochs, steps ×0.1 after epochs 8 and 11, linear
/// warmup over 500 iterations from 0.001; SGD (lr 0.02 at batch 16, momentum 0.9, weight
/// decay 1e-4) for ResNets and ConvNeXts, AdamW (lr 1e-4, weight decay 0.05, no decay on
/// norms, position tables) for Swin, as mmdet's Swin Mask R-CNN configs.
pub fn schedule_1x(family: &str) -> EngineConfig {
    let schedule = ScheduleConfig {
        decay: DecayConfig::Step {
            milestones: vec![8, 11],
            gamma: 0.1,
        },
        warmup_iters: 500,
        warmup_ratio: 0.001,
    };
    let (optimizer, groups) = if family == "swin" {
        let key = |key: &str| GroupKey {
            key: key.into(),
            lr_mult: 1.0,
            decay_mult: 0.0,
        };
        (
            OptimizerConfig::Adamw {
                lr: 1e-4,
                weight_decay: 0.05,
                betas: (0.9, 0.999),
                eps: 1e-8,
            },
            GroupsConfig {
                norm_decay_mult: Some(0.0),
                custom_keys: vec![
                    key("absolute_pos_embed"),
                    key("relative_position_bias_table"),
                ],
                ..GroupsConfig::default()
            },
        )
    } else {
        (
            OptimizerConfig::Sgd {
                lr: 0.02,
                momentum: 0.9,
                weight_decay: 1e-4,
                nesterov: false,
            },
            GroupsConfig::default(),
        )
    };
    EngineConfig {
        epochs: 12,
        optimizer,
        schedule,
        groups,
        ..EngineConfig::default()
    }
}

impl CocoConfig {
    /// mmdet 2.x's Mask R-CNN 1x recipe for `num_classes` classes: the default pipelines,
    /// batch 16 (accumulated over 8 passes of 2), aspect-ratio grouping and
    /// [`schedule_1x`] of the architecture's family.
    pub fn new(
        arch: ArchConfig,
        backbone_name: &str,
        weights: Option<PathBuf>,
        regime: Regime,
        data_dir: PathBuf,
        num_classes: usize,
    ) -> Self {
        let engine = schedule_1x(arch.family());
        Self {
            preset: "custom".into(),
            backbone_name: backbone_name.into(),
            arch,
            weights,
            regime,
            data_dir,
            model: DetectorConfig::mask_rcnn(num_classes),
            train: TrainPipeline::default(),
            test: TestPipeline::default(),
            batch_size: 16,
            accumulate: 8,
            group_aspect_ratio: true,
            workers: 2,
            seed: 0,
            device: DeviceChoice::Cpu,
            precision: Precision::F32,
            engine,
            eval: CocoEvalConfig::default(),
        }
    }

    /// Checks the values the pipeline relies on; errors name the field.
    pub fn validate(&self) -> Result<(), CocoTaskError> {
        if self.batch_size == 0 {
            return Err(CocoTaskError::config("batch_size", "must be at least 1"));
        }
        if self.accumulate == 0 || !self.batch_size.is_multiple_of(self.accumulate) {
            return Err(CocoTaskError::config(
                "accumulate",
                format!(
                    "{} micro-batches do not divide batch_size {}",
                    self.accumulate, self.batch_size
                ),
            ));
        }
        if self.eval.batch_size == 0 {
            return Err(CocoTaskError::config(
                "eval.batch_size",
                "must be at least 1",
            ));
        }
        if !(0.0..=1.0).contains(&self.train.flip_ratio) {
            return Err(CocoTaskError::config(
                "train.flip_ratio",
                format!("{} is not a probability", self.train.flip_ratio),
            ));
        }
        for (field, scale) in [
            ("train.scale", self.train.scale),
            ("test.scale", self.test.scale),
        ] {
            if scale.0 == 0 || scale.1 == 0 {
                return Err(CocoTaskError::config(field, "both edges must be positive"));
            }
        }
        self.model.check()?;
        self.model.to_mask_rcnn()?;
        rtb_results::CellId::new(
            &self.preset,
            &self.backbone_name,
            rtb_results::Task::Coco,
            self.regime,
        )
        .map_err(|err| CocoTaskError::config("backbone_name", err.to_string()))?;
        self.engine.validate()?;
        self.eval.severities()?;
        Ok(())
    }
}
