//! DropPath (stochastic depth): each sample's residual branch is zeroed with probability
//! `drop_prob` and the survivors scaled by `1 / (1 − drop_prob)`, like timm's `drop_path` with
//! `scale_by_keep=True`. Eval mode is the identity.
//!
//! The draw is a pure function of a seed (splitmix64), so a run is reproducible; the mask can
//! also be given explicitly.

use candle_core::{Result, Tensor};

use crate::ops::shape_error;

/// Stochastic depth with a fixed drop probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DropPath {
    /// Probability that a sample's branch is dropped, in `[0, 1)`.
    pub drop_prob: f64,
}

/// splitmix64: a tiny, well-mixed generator for reproducible draws.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl DropPath {
    /// A DropPath with this drop probability.
    pub fn new(drop_prob: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&drop_prob) {
            return Err(shape_error(
                "DropPath",
                format!("drop probability must be in [0, 1), got {drop_prob}"),
            ));
        }
        Ok(Self { drop_prob })
    }

    /// Which of `batch` samples keep their branch, drawn from `seed` (same seed, same mask).
    pub fn keep_mask(&self, batch: usize, seed: u64) -> Vec<bool> {
        let keep_prob = 1.0 - self.drop_prob;
        let mut state = seed;
        (0..batch)
            .map(|_| {
                let uniform = (splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
                uniform < keep_prob
            })
            .collect()
    }

    /// Train mode with a mask drawn from `seed`; `xs` is `[N, ...]`.
    pub fn forward_train(&self, xs: &Tensor, seed: u64) -> Result<Tensor> {
        if self.drop_prob == 0.0 {
            return Ok(xs.clone());
        }
        let batch = xs.dims().first().copied().unwrap_or(0);
        self.forward_with_mask(xs, &self.keep_mask(batch, seed))
    }

    /// Train mode with an explicit mask (one flag per sample): kept samples are scaled by
    /// `1 / (1 − drop_prob)`, dropped ones are zero (and so is their gradient).
    pub fn forward_with_mask(&self, xs: &Tensor, keep: &[bool]) -> Result<Tensor> {
        let dims = xs.dims();
        if dims.first() != Some(&keep.len()) {
            return Err(shape_error(
                "DropPath",
                format!("mask of {} samples for input {dims:?}", keep.len()),
            ));
        }
        let scale = 1.0 / (1.0 - self.drop_prob);
        let factors: Vec<f64> = keep.iter().map(|&k| if k { scale } else { 0.0 }).collect();
        let mut shape = vec![1; dims.len()];
        shape[0] = keep.len();
        let factors = Tensor::from_vec(factors, shape, xs.device())?.to_dtype(xs.dtype())?;
        xs.broadcast_mul(&factors)
    }

    /// Eval mode: the identity.
    pub fn forward_eval(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(xs.clone())
    }
}
