//! The engine's configuration: optimizer, learning-rate schedule, parameter groups, clipping,
//! logging, checkpoints. Plain serde structs that a task's own config embeds, that the CLI
//! fills from flags and that a preset file fills for the study orchestrator.
//!
//! Defaults live in one place, the `Default` impls here.

use candle_core::Var;
use rtb_nn::optim::{
    AdamW, AdamWConfig, Optimizer, ParamGroup, ParamGroupsBuilder, ParamRole, Sgd, SgdConfig,
};
use rtb_nn::schedule::{Decay, LrSchedule, Warmup};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Which optimizer trains the variables, with its hyper-parameters (PyTorch's names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// `torch.optim.SGD`.
    Sgd {
        /// Base learning rate.
        lr: f64,
        /// Momentum factor.
        #[serde(default)]
        momentum: f64,
        /// Coupled L2 weight decay.
        #[serde(default)]
        weight_decay: f64,
        /// Nesterov momentum.
        #[serde(default)]
        nesterov: bool,
    },
    /// `torch.optim.AdamW`.
    Adamw {
        /// Base learning rate.
        lr: f64,
        /// Decoupled weight decay.
        #[serde(default = "default_adamw_decay")]
        weight_decay: f64,
        /// `(β1, β2)`.
        #[serde(default = "default_betas")]
        betas: (f64, f64),
        /// ε.
        #[serde(default = "default_eps")]
        eps: f64,
    },
}

fn default_adamw_decay() -> f64 {
    0.01
}
fn default_betas() -> (f64, f64) {
    (0.9, 0.999)
}
fn default_eps() -> f64 {
    1e-8
}

impl Default for OptimizerConfig {
    /// SGD, lr 0.01, momentum 0.9, weight decay 5e-4 (the usual CIFAR fine-tuning recipe).
    fn default() -> Self {
        OptimizerConfig::Sgd {
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 5e-4,
            nesterov: false,
        }
    }
}

impl OptimizerConfig {
    /// The base learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerConfig::Sgd { lr, .. } | OptimizerConfig::Adamw { lr, .. } => *lr,
        }
    }

    /// The same optimizer with another base learning rate.
    pub fn with_lr(mut self, new_lr: f64) -> Self {
        match &mut self {
            OptimizerConfig::Sgd { lr, .. } | OptimizerConfig::Adamw { lr, .. } => *lr = new_lr,
        }
        self
    }

    /// Builds the optimizer over `groups`.
    pub fn build(&self, groups: Vec<ParamGroup>) -> Result<Box<dyn Optimizer>> {
        let lr = self.lr();
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(TrainError::config(
                "optimizer.lr",
                format!("must be finite and ≥ 0, got {lr}"),
            ));
        }
        Ok(match *self {
            OptimizerConfig::Sgd {
                lr,
                momentum,
                weight_decay,
                nesterov,
            } => Box::new(Sgd::new(
                groups,
                SgdConfig {
                    lr,
                    momentum,
                    dampening: 0.0,
                    nesterov,
                    weight_decay,
                },
            )?),
            OptimizerConfig::Adamw {
                lr,
                weight_decay,
                betas,
                eps,
            } => Box::new(AdamW::new(
                groups,
                AdamWConfig {
                    lr,
                    betas,
                    eps,
                    weight_decay,
                },
            )?),
        })
    }
}

/// The regular learning-rate rule after warmup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DecayConfig {
    /// The base rate throughout.
    Fixed,
    /// Cosine annealing to `min_lr` over the whole run (per iteration).
    Cosine {
        /// Rate at the end.
        #[serde(default)]
        min_lr: f64,
    },
    /// × `gamma` at each milestone epoch (the rate changes at the first iteration of the
    /// milestone epoch).
    Step {
        /// Epochs (0-based) at which the rate is multiplied by `gamma`, ascending.
        milestones: Vec<usize>,
        /// Factor per milestone.
        gamma: f64,
    },
    /// Polynomial decay to `min_lr` over the whole run (per iteration; mmseg's `poly`).
    Poly {
        /// Exponent.
        power: f64,
        /// Rate at the end.
        #[serde(default)]
        min_lr: f64,
    },
}

/// Learning-rate schedule: a decay rule plus a linear warmup counted in iterations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// The regular rule.
    pub decay: DecayConfig,
    /// Linear warmup length in iterations (0: none).
    #[serde(default)]
    pub warmup_iters: usize,
    /// Starting fraction of the rate during warmup.
    #[serde(default = "default_warmup_ratio")]
    pub warmup_ratio: f64,
}

fn default_warmup_ratio() -> f64 {
    0.001
}

impl Default for ScheduleConfig {
    /// Cosine to 0, no warmup.
    fn default() -> Self {
        Self {
            decay: DecayConfig::Cosine { min_lr: 0.0 },
            warmup_iters: 0,
            warmup_ratio: default_warmup_ratio(),
        }
    }
}

impl ScheduleConfig {
    /// The rtb-nn schedule for a run of `total_iters` iterations starting from `base_lr`. The
    /// rate is set before every iteration.
    pub fn resolve(&self, base_lr: f64, total_iters: usize) -> Result<LrSchedule> {
        let (decay, by_epoch) = match &self.decay {
            DecayConfig::Fixed => (Decay::Fixed, false),
            DecayConfig::Cosine { min_lr } => (
                Decay::Cosine {
                    min_lr: *min_lr,
                    max_progress: total_iters,
                },
                false,
            ),
            DecayConfig::Poly { power, min_lr } => (
                Decay::Poly {
                    power: *power,
                    min_lr: *min_lr,
                    max_progress: total_iters,
                },
                false,
            ),
            DecayConfig::Step { milestones, gamma } => {
                if milestones.windows(2).any(|w| w[0] > w[1]) {
                    return Err(TrainError::config(
                        "schedule.decay.milestones",
                        format!("must be ascending, got {milestones:?}"),
                    ));
                }
                (
                    Decay::MultiStep {
                        milestones: milestones.clone(),
                        gamma: *gamma,
                    },
                    true,
                )
            }
        };
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return Err(TrainError::config(
                "schedule.warmup_ratio",
                format!("must be in [0, 1], got {}", self.warmup_ratio),
            ));
        }
        let warmup = if self.warmup_iters == 0 {
            Warmup::None
        } else {
            Warmup::Linear {
                iters: self.warmup_iters,
                ratio: self.warmup_ratio,
            }
        };
        Ok(LrSchedule {
            base_lr,
            decay,
            by_epoch,
            warmup,
        })
    }
}

/// One custom parameter-group rule: parameters whose name contains `key` get these
/// multipliers (mmcv's `paramwise_cfg.custom_keys`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupKey {
    /// Substring of the parameter name.
    pub key: String,
    /// Learning-rate multiplier.
    #[serde(default = "one")]
    pub lr_mult: f64,
    /// Weight-decay multiplier.
    #[serde(default = "one")]
    pub decay_mult: f64,
}

fn one() -> f64 {
    1.0
}

/// Per-group learning rate and weight decay (mmcv's `paramwise_cfg`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupsConfig {
    /// Custom keys, matched longest first.
    #[serde(default)]
    pub custom_keys: Vec<GroupKey>,
    /// Weight-decay multiplier of biases outside norm layers (`None`: 1).
    #[serde(default)]
    pub bias_decay_mult: Option<f64>,
    /// Weight-decay multiplier of norm layers' parameters (`None`: 1).
    #[serde(default)]
    pub norm_decay_mult: Option<f64>,
}

impl GroupsConfig {
    /// No decay on norms, biases and position tables (Swin fine-tuning, timm's habit).
    pub fn no_decay_for_norms_and_biases() -> Self {
        Self {
            custom_keys: [
                "absolute_pos_embed",
                "relative_position_bias_table",
                "pos_embed",
            ]
            .into_iter()
            .map(|key| GroupKey {
                key: key.into(),
                lr_mult: 1.0,
                decay_mult: 0.0,
            })
            .collect(),
            bias_decay_mult: Some(0.0),
            norm_decay_mult: Some(0.0),
        }
    }

    /// Groups `vars` by these rules; a variable's role, when given, decides whether it is a
    /// norm or a bias (names otherwise).
    pub fn build(&self, vars: Vec<(String, Var, Option<ParamRole>)>) -> Vec<ParamGroup> {
        let mut builder = ParamGroupsBuilder::default();
        for rule in &self.custom_keys {
            builder = builder.custom_key(rule.key.clone(), rule.lr_mult, rule.decay_mult);
        }
        if let Some(mult) = self.bias_decay_mult {
            builder = builder.bias_decay_mult(mult);
        }
        if let Some(mult) = self.norm_decay_mult {
            builder = builder.norm_decay_mult(mult);
        }
        builder.build_with_roles(vars)
    }
}

/// When checkpoints are written and how many are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Also save every this many iterations (`None`: only at the end of epochs).
    #[serde(default)]
    pub every_iters: Option<usize>,
    /// Save at the end of every this many epochs (and always after the last).
    #[serde(default = "one_usize")]
    pub every_epochs: usize,
    /// Keep the newest this many checkpoints (the strategy [`crate::KeepLast`]).
    #[serde(default = "default_keep_last")]
    pub keep_last: usize,
}

fn one_usize() -> usize {
    1
}
fn default_keep_last() -> usize {
    2
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            every_iters: None,
            every_epochs: 1,
            keep_last: default_keep_last(),
        }
    }
}

/// Everything the loop needs besides the task and the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Epochs to train.
    pub epochs: usize,
    /// Stop after this many iterations in total (`None`: run every epoch). The learning-rate
    /// schedule still spans every epoch, so a stopped run resumes into the same rates.
    #[serde(default)]
    pub max_iters: Option<usize>,
    /// Iterations the learning-rate schedule spans (`None`: every epoch). A shortened run
    /// sets it to its own length, so that it is a complete schedule (warmup, decay to the
    /// end) rather than the first part of a longer one.
    #[serde(default)]
    pub schedule_iters: Option<usize>,
    /// Optimizer and base learning rate.
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule (set every iteration).
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Parameter groups.
    #[serde(default)]
    pub groups: GroupsConfig,
    /// Clip gradients to this global 2-norm (`None`: no clipping).
    #[serde(default)]
    pub clip_grad_norm: Option<f64>,
    /// Write a train record to the JSONL log every this many iterations.
    #[serde(default = "default_log_every")]
    pub log_every: usize,
    /// Checkpoints.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// Run the evaluation hook every this many epochs (`None`: never during training).
    #[serde(default)]
    pub eval_every_epochs: Option<usize>,
}

fn default_log_every() -> usize {
    10
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            max_iters: None,
            schedule_iters: None,
            optimizer: OptimizerConfig::default(),
            schedule: ScheduleConfig::default(),
            groups: GroupsConfig::default(),
            clip_grad_norm: None,
            log_every: default_log_every(),
            checkpoint: CheckpointConfig::default(),
            eval_every_epochs: None,
        }
    }
}

impl EngineConfig {
    /// Checks ranges that the loop relies on.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(TrainError::config("epochs", "must be at least 1"));
        }
        if self.log_every == 0 {
            return Err(TrainError::config("log_every", "must be at least 1"));
        }
        if self.checkpoint.every_epochs == 0 || self.checkpoint.every_iters == Some(0) {
            return Err(TrainError::config(
                "checkpoint",
                "every_epochs and every_iters must be at least 1",
            ));
        }
        if self.checkpoint.keep_last == 0 {
            return Err(TrainError::config(
                "checkpoint.keep_last",
                "must be at least 1 (the newest checkpoint is what a resume starts from)",
            ));
        }
        if let Some(max_norm) = self.clip_grad_norm
            && !(max_norm.is_finite() && max_norm > 0.0)
        {
            return Err(TrainError::config(
                "clip_grad_norm",
                format!("must be finite and > 0, got {max_norm}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_round_trip_through_json_with_defaults() {
        let text = r#"{"epochs": 3, "optimizer": {"kind": "sgd", "lr": 0.1, "momentum": 0.9},
            "schedule": {"decay": {"kind": "step", "milestones": [1, 2], "gamma": 0.1}}}"#;
        let cfg: EngineConfig = serde_json::from_str(text).unwrap();
        assert_eq!(cfg.optimizer.lr(), 0.1);
        assert_eq!(cfg.checkpoint.keep_last, 2);
        let back: EngineConfig =
            serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
        let err = serde_json::from_str::<EngineConfig>(r#"{"epochs": 1, "lr": 3}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("lr"), "{err}");
    }

    #[test]
    fn schedules_resolve_per_iteration() {
        let cosine = ScheduleConfig::default().resolve(0.1, 100).unwrap();
        assert!((cosine.lr(0, 0) - 0.1).abs() < 1e-12);
        assert!((cosine.lr(50, 0) - 0.05).abs() < 1e-12);
        let step = ScheduleConfig {
            decay: DecayConfig::Step {
                milestones: vec![2],
                gamma: 0.1,
            },
            warmup_iters: 10,
            warmup_ratio: 0.5,
        }
        .resolve(1.0, 100)
        .unwrap();
        assert!((step.lr(0, 0) - 0.5).abs() < 1e-12);
        assert!((step.lr(20, 1) - 1.0).abs() < 1e-12);
        assert!((step.lr(20, 2) - 0.1).abs() < 1e-12);
        let bad = ScheduleConfig {
            decay: DecayConfig::Step {
                milestones: vec![3, 1],
                gamma: 0.1,
            },
            ..ScheduleConfig::default()
        };
        assert!(
            bad.resolve(1.0, 10)
                .unwrap_err()
                .to_string()
                .contains("milestones")
        );
    }

    #[test]
    fn validation_names_the_field() {
        let cfg = EngineConfig {
            epochs: 0,
            ..EngineConfig::default()
        };
        assert!(cfg.validate().unwrap_err().to_string().contains("epochs"));
        let cfg = EngineConfig {
            clip_grad_norm: Some(-1.0),
            ..EngineConfig::default()
        };
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("clip_grad_norm")
        );
    }
}
