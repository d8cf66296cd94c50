//! Learning-rate schedules as pure functions of the iteration and epoch, with mmcv's
//! `LrUpdaterHook` semantics (which equal `torch.optim.lr_scheduler`'s `MultiStepLR`,
//! `PolynomialLR`, `CosineAnnealingLR` and `LinearLR` warmup chained with them).
//!
//! - The regular rate follows [`Decay`] over `progress` = epoch (`by_epoch`) or iteration.
//! - Warmup is always counted in iterations (mmcv's default): while `iter < warmup_iters`,
//!   `lr = regular · (1 − k)` with `k = (1 − iter / warmup_iters)·(1 − warmup_ratio)`
//!   (linear), `k = 1 − warmup_ratio` (constant) or `lr = regular · ratio^(1 − iter/warmup)`
//!   (exp).
//! - Iterations and epochs are 0-based, as mmcv's `runner.iter` / `runner.epoch` before an
//!   iteration.
//!
//! ```
//! use rtb_nn::schedule::{Decay, LrSchedule, Warmup};
//! // mmdet's Mask R-CNN 1x: lr 0.02, warmup 500 iterations from 0.001×, ×0.1 at epochs 8, 11.
//! let schedule = LrSchedule {
//!     base_lr: 0.02,
//!     decay: Decay::MultiStep { milestones: vec![8, 11], gamma: 0.1 },
//!     by_epoch: true,
//!     warmup: Warmup::Linear { iters: 500, ratio: 0.001 },
//! };
//! assert!((schedule.lr(0, 0) - 0.02 * 0.001).abs() < 1e-12);
//! assert!((schedule.lr(500, 0) - 0.02).abs() < 1e-12);
//! assert!((schedule.lr(100_000, 9) - 0.002).abs() < 1e-12);
//! ```

/// The regular (post-warmup) rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Decay {
    /// The base rate throughout.
    Fixed,
    /// `base · gamma^(number of milestones ≤ progress)` (mmcv `step=[…]`, torch `MultiStepLR`).
    MultiStep {
        /// Progress values (epochs or iterations) at which the rate is multiplied by `gamma`,
        /// ascending.
        milestones: Vec<usize>,
        /// Factor per milestone.
        gamma: f64,
    },
    /// `(base − min_lr)·(1 − progress/max_progress)^power + min_lr` (mmcv `poly`; torch
    /// `PolynomialLR` when `min_lr = 0`).
    Poly {
        /// Exponent.
        power: f64,
        /// Rate at the end.
        min_lr: f64,
        /// Total epochs or iterations.
        max_progress: usize,
    },
    /// `min_lr + ½(base − min_lr)(1 + cos(π·progress/max_progress))` (mmcv `CosineAnnealing`,
    /// torch `CosineAnnealingLR` with `eta_min`).
    Cosine {
        /// Rate at the end.
        min_lr: f64,
        /// Total epochs or iterations.
        max_progress: usize,
    },
}

/// Warmup at the start of training, in iterations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Warmup {
    /// No warmup.
    None,
    /// Linear from `ratio · regular` to `regular` over `iters` iterations.
    Linear {
        /// Warmup length in iterations.
        iters: usize,
        /// Starting fraction of the regular rate.
        ratio: f64,
    },
    /// `ratio · regular` for `iters` iterations.
    Constant {
        /// Warmup length in iterations.
        iters: usize,
        /// Fraction of the regular rate.
        ratio: f64,
    },
    /// `regular · ratio^(1 − iter/iters)`.
    Exp {
        /// Warmup length in iterations.
        iters: usize,
        /// Starting fraction of the regular rate.
        ratio: f64,
    },
}

/// A complete schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct LrSchedule {
    /// The optimizer's base rate (group multipliers apply on top).
    pub base_lr: f64,
    /// The regular rule.
    pub decay: Decay,
    /// Whether [`Decay`] counts epochs (true) or iterations (false).
    pub by_epoch: bool,
    /// Warmup (always in iterations).
    pub warmup: Warmup,
}

impl LrSchedule {
    /// The regular rate at `progress` (an epoch or an iteration, per `by_epoch`).
    pub fn regular_lr(&self, progress: usize) -> f64 {
        let base = self.base_lr;
        match &self.decay {
            Decay::Fixed => base,
            Decay::MultiStep { milestones, gamma } => {
                let passed = milestones.iter().filter(|&&m| progress >= m).count();
                base * gamma.powi(passed as i32)
            }
            Decay::Poly {
                power,
                min_lr,
                max_progress,
            } => {
                let fraction = progress.min(*max_progress) as f64 / (*max_progress).max(1) as f64;
                (base - min_lr) * (1.0 - fraction).powf(*power) + min_lr
            }
            Decay::Cosine {
                min_lr,
                max_progress,
            } => {
                let fraction = progress.min(*max_progress) as f64 / (*max_progress).max(1) as f64;
                min_lr + 0.5 * (base - min_lr) * ((std::f64::consts::PI * fraction).cos() + 1.0)
            }
        }
    }

    /// The rate for the iteration `iter` (0-based, counted over the whole run) that belongs to
    /// epoch `epoch` (0-based; ignored unless `by_epoch`).
    pub fn lr(&self, iter: usize, epoch: usize) -> f64 {
        let regular = self.regular_lr(if self.by_epoch { epoch } else { iter });
        match self.warmup {
            Warmup::None => regular,
            Warmup::Linear { iters, ratio } if iter < iters => {
                let k = (1.0 - iter as f64 / iters as f64) * (1.0 - ratio);
                regular * (1.0 - k)
            }
            Warmup::Constant { iters, ratio } if iter < iters => regular * ratio,
            Warmup::Exp { iters, ratio } if iter < iters => {
                regular * ratio.powf(1.0 - iter as f64 / iters as f64)
            }
            _ => regular,
        }
    }
}
