//! Max-IoU assignment of predictions (anchors or proposals) to ground-truth boxes:
//! torchvision's `Matcher` and mmdetection 2.x's `MaxIoUAssigner`.
//!
//! Both start from an IoU matrix `[G, N]` (ground truths × predictions, e.g. from
//! [`rtb_nn::boxes::box_iou`]) and give each prediction its best ground truth (the first on
//! ties) when that IoU reaches the high threshold, *negative* below the low threshold and
//! *ignored* in between. They differ in the low-quality step that lets every ground truth keep
//! its best predictions even below the high threshold:
//!
//! - **torchvision** (`allow_low_quality_matches`): every prediction whose IoU with some
//!   ground truth `g` equals `g`'s highest IoU is set back to *its own* best ground truth
//!   (`argmax` over ground truths, not necessarily `g`), however low that IoU is (even 0);
//! - **mmdet** (`match_low_quality`, `gt_max_assign_all`): for `g` in order, when `g`'s highest
//!   IoU is at least `min_pos_iou`, every prediction with that IoU is assigned to `g` itself
//!   (a later ground truth overwrites an earlier one).
//!
//! A NaN IoU (0/0 between two zero-area boxes) counts as 0 here; torch's `max` would propagate
//! it. mmdet's IoU adds `eps = 1e-6` to the union; pass the matrix you want matched.

use candle_core::{DType, Tensor};

use crate::Flavor;
use crate::error::{Result, config, shape};

/// The outcome of matching one prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// Matched to ground truth `g` (a positive).
    Gt(usize),
    /// Below the low threshold: background (a negative).
    Negative,
    /// Between the thresholds: neither trained as positive nor as negative.
    Ignored,
}

impl Match {
    /// torchvision's encoding: `g ≥ 0`, −1 (below low), −2 (between thresholds).
    pub fn to_torchvision(self) -> i64 {
        match self {
            Self::Gt(g) => g as i64,
            Self::Negative => -1,
            Self::Ignored => -2,
        }
    }

    /// mmdet's `gt_inds` encoding: `g + 1`, 0 (negative), −1 (ignored).
    pub fn to_mmdet(self) -> i64 {
        match self {
            Self::Gt(g) => g as i64 + 1,
            Self::Negative => 0,
            Self::Ignored => -1,
        }
    }
}

/// Thresholds of a max-IoU matcher.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Matcher {
    /// Which reference's rules (see the module docs).
    pub flavor: Flavor,
    /// IoU at or above which a prediction is positive.
    pub high_threshold: f64,
    /// IoU below which a prediction is negative.
    pub low_threshold: f64,
    /// Whether each ground truth keeps its best predictions below `high_threshold`.
    pub allow_low_quality_matches: bool,
    /// mmdet only: a ground truth's best IoU must reach this for the low-quality step
    /// (torchvision has no such bound).
    pub min_pos_iou: f64,
}

impl Matcher {
    /// A matcher; `low_threshold ≤ high_threshold` is required.
    pub fn new(
        flavor: Flavor,
        high_threshold: f64,
        low_threshold: f64,
        allow_low_quality_matches: bool,
    ) -> Result<Self> {
        if low_threshold > high_threshold || low_threshold.is_nan() || high_threshold.is_nan() {
            return Err(config(
                "Matcher::new",
                "low_threshold",
                format!("{low_threshold} must not exceed high_threshold {high_threshold}"),
            ));
        }
        Ok(Self {
            flavor,
            high_threshold,
            low_threshold,
            allow_low_quality_matches,
            min_pos_iou: 0.0,
        })
    }

    /// The RPN's matcher: positive ≥ 0.7, negative < 0.3, low-quality matches (mmdet:
    /// `min_pos_iou` 0.3).
    pub fn rpn(flavor: Flavor) -> Self {
        Self {
            flavor,
            high_threshold: 0.7,
            low_threshold: 0.3,
            allow_low_quality_matches: true,
            min_pos_iou: if flavor == Flavor::Mmdet { 0.3 } else { 0.0 },
        }
    }

    /// The RoI heads' matcher: positive ≥ 0.5, negative < 0.5. torchvision has no
    /// low-quality step here; mmdet's Mask R-CNN configs of 2.x (the Swin detection repository,
    /// mmdet 2.11, included) keep `match_low_quality=True` with `min_pos_iou` 0.5, which can
    /// only move an already positive prediction to the ground truth it is the best for.
    pub fn roi_heads(flavor: Flavor) -> Self {
        Self {
            flavor,
            high_threshold: 0.5,
            low_threshold: 0.5,
            allow_low_quality_matches: flavor == Flavor::Mmdet,
            min_pos_iou: if flavor == Flavor::Mmdet { 0.5 } else { 0.0 },
        }
    }

    /// Matches each of the `N` predictions given the IoU matrix `[G, N]` (any float dtype
    /// and device; read on the host). With no ground truth every prediction is negative
    /// (mmdet; torchvision refuses an empty target there, and its RPN gives such an image
    /// all-background labels itself).
    pub fn match_iou(&self, iou: &Tensor) -> Result<Vec<Match>> {
        let (g, n) = match iou.dims() {
            [g, n] => (*g, *n),
            dims => {
                return Err(shape(
                    "Matcher::match_iou",
                    "iou",
                    "[G, N] (ground truths × predictions)",
                    dims,
                ));
            }
        };
        let values: Vec<f64> = iou.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        Ok(self.match_rows(&values, g, n))
    }

    /// [`Self::match_iou`] on a row-major `[G, N]` slice.
    pub fn match_rows(&self, iou: &[f64], g: usize, n: usize) -> Vec<Match> {
        if g == 0 {
            return vec![Match::Negative; n];
        }
        let iou: Vec<f64> = iou
            .iter()
            .map(|&v| if v.is_nan() { 0.0 } else { v })
            .collect();
        let at = |gi: usize, p: usize| iou[gi * n + p];
        // Best ground truth of each prediction: the first maximum.
        let best: Vec<(usize, f64)> = (0..n)
            .map(|p| {
                let mut best = (0, at(0, p));
                for gi in 1..g {
                    let v = at(gi, p);
                    if v > best.1 {
                        best = (gi, v);
                    }
                }
                best
            })
            .collect();
        let mut matches: Vec<Match> = best
            .iter()
            .map(|&(gi, v)| {
                if v >= self.high_threshold {
                    Match::Gt(gi)
                } else if v < self.low_threshold {
                    Match::Negative
                } else {
                    Match::Ignored
                }
            })
            .collect();
        if !self.allow_low_quality_matches {
            return matches;
        }
        for gi in 0..g {
            let row = &iou[gi * n..(gi + 1) * n];
            let highest = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            match self.flavor {
                Flavor::Torchvision => {
                    for (p, &v) in row.iter().enumerate() {
                        if v == highest {
                            matches[p] = Match::Gt(best[p].0);
                        }
                    }
                }
                Flavor::Mmdet => {
                    if highest >= self.min_pos_iou {
                        for (p, &v) in row.iter().enumerate() {
                            if v == highest {
                                matches[p] = Match::Gt(gi);
                            }
                        }
                    }
                }
            }
        }
        matches
    }
}

/// The best IoU of each prediction over the ground truths (`max_overlaps` in mmdet's
/// `AssignResult`), 0 for every prediction when there is no ground truth.
pub fn max_overlaps(iou: &[f64], g: usize, n: usize) -> Vec<f64> {
    (0..n)
        .map(|p| {
            (0..g)
                .map(|gi| iou[gi * n + p])
                .fold(0.0f64, |acc, v| if v > acc { v } else { acc })
        })
        .collect()
}
