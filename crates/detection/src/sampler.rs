//! Seeded random sampling of positives and negatives for a head's loss: torchvision's
//! `BalancedPositiveNegativeSampler` and mmdetection 2.x's `RandomSampler`.
//!
//! Both draw up to `⌊num · pos_fraction⌋` positives uniformly without replacement, then fill
//! the rest of `num` with negatives, and return index sets in ascending order (torchvision
//! through masks, mmdet through `unique()`). mmdet adds two options: `neg_pos_ub` (at most
//! `neg_pos_ub · max(1, positives)` negatives; −1 = no bound) and `add_gt_as_proposals` (the
//! ground truths are prepended to the proposals as positives of themselves before sampling,
//! which the R-CNN head of Mask R-CNN uses; see [`add_gt_as_proposals`]).
//!
//! Draws come from an explicit seed (SplitMix64 and a partial Fisher–Yates shuffle): the same
//! seed and the same matches give the same picks on every machine and thread count. They are
//! not torch's `randperm` draws: parity with torch's generator is not attempted, so a sampled
//! set equals torchvision's or mmdet's in distribution (counts, uniformity), not pick for pick.

use crate::error::{Result, config};
use crate::matcher::Match;

/// Settings of a positive/negative sampler.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    /// Samples per image (positives and negatives together).
    pub num: usize,
    /// Largest share of positives.
    pub pos_fraction: f64,
    /// mmdet's bound on negatives per positive; `None` for none (torchvision, mmdet's −1).
    pub neg_pos_ub: Option<f64>,
}

impl SamplerConfig {
    /// A sampler of `num` samples with at most `pos_fraction` positives (in `[0, 1]`).
    pub fn new(num: usize, pos_fraction: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&pos_fraction) {
            return Err(config(
                "SamplerConfig::new",
                "pos_fraction",
                format!("must lie in [0, 1], got {pos_fraction}"),
            ));
        }
        Ok(Self {
            num,
            pos_fraction,
            neg_pos_ub: None,
        })
    }

    /// The RPN's sampler in both references: 256 per image, half positive.
    pub fn rpn() -> Self {
        Self {
            num: 256,
            pos_fraction: 0.5,
            neg_pos_ub: None,
        }
    }

    /// The RoI heads' sampler in both references: 512 per image, a quarter positive.
    pub fn roi_heads() -> Self {
        Self {
            num: 512,
            pos_fraction: 0.25,
            neg_pos_ub: None,
        }
    }

    /// With mmdet's bound of `ub` negatives per positive (a negative `ub` means none).
    pub fn with_neg_pos_ub(mut self, ub: f64) -> Self {
        self.neg_pos_ub = (ub >= 0.0).then_some(ub);
        self
    }
}

/// The sampled predictions of one image, each list ascending.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sample {
    /// Indices of the sampled positives.
    pub positives: Vec<usize>,
    /// Indices of the sampled negatives.
    pub negatives: Vec<usize>,
}

/// Samples positives ([`Match::Gt`]) and negatives ([`Match::Negative`]) of one image's
/// matches with the draws of `seed`; [`Match::Ignored`] is never sampled.
pub fn sample(matches: &[Match], cfg: &SamplerConfig, seed: u64) -> Sample {
    let positives: Vec<usize> = (0..matches.len())
        .filter(|&i| matches!(matches[i], Match::Gt(_)))
        .collect();
    let negatives: Vec<usize> = (0..matches.len())
        .filter(|&i| matches[i] == Match::Negative)
        .collect();
    let mut rng = SplitMix64::new(seed);
    let num_pos = ((cfg.num as f64 * cfg.pos_fraction) as usize).min(positives.len());
    let positives = choose(&positives, num_pos, &mut rng);
    let mut num_neg = cfg.num - num_pos;
    if let Some(ub) = cfg.neg_pos_ub {
        num_neg = num_neg.min((ub * num_pos.max(1) as f64) as usize);
    }
    let negatives = choose(&negatives, num_neg.min(negatives.len()), &mut rng);
    Sample {
        positives,
        negatives,
    }
}

/// mmdet's `add_gt_as_proposals`: the `g` ground truths become predictions `0..g`, each
/// matched to itself, ahead of `matches` (whose indices shift by `g`). Concatenate the
/// ground-truth boxes in front of the proposals in the same way.
pub fn add_gt_as_proposals(matches: &[Match], num_gt: usize) -> Vec<Match> {
    (0..num_gt)
        .map(Match::Gt)
        .chain(matches.iter().copied())
        .collect()
}

/// `count` distinct elements of `pool` (uniformly, without replacement), ascending.
fn choose(pool: &[usize], count: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let mut pool = pool.to_vec();
    let count = count.min(pool.len());
    for i in 0..count {
        let j = i + rng.below(pool.len() - i);
        pool.swap(i, j);
    }
    pool.truncate(count);
    pool.sort_unstable();
    pool
}

/// SplitMix64 (Steele, Lea and Flood 2014): small, fast, and the same on every platform.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by rejection so that no value is favoured.
    fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let v = self.next_u64();
            if v < zone {
                return (v % n) as usize;
            }
        }
    }
}
