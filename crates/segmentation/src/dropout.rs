//! `Dropout2d` (PyTorch's `nn.Dropout2d`, what mmseg's decode heads apply before their
//! classifier): each `(sample, channel)` plane is zeroed with probability `p` and the
//! survivors are scaled by `1 / (1 − p)`. The draw is a pure function of an explicit seed, so
//! a training step repeats exactly; eval is the identity.

use candle_core::Tensor;

use crate::error::{Result, config_error, input_error};

/// Channel dropout with a fixed probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout2d {
    p: f64,
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Dropout2d {
    /// A channel dropout that drops with probability `p` in `[0, 1)`.
    pub fn new(p: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(config_error(
                "dropout",
                format!("a probability in [0, 1) is needed, got {p}"),
            ));
        }
        Ok(Self { p })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// Which of `batch × channels` planes are kept (row-major: sample, then channel), drawn
    /// from `seed`: the same seed gives the same mask.
    pub fn keep_mask(&self, batch: usize, channels: usize, seed: u64) -> Vec<bool> {
        let keep = 1.0 - self.p;
        let mut state = seed;
        (0..batch * channels)
            .map(|_| ((splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64) < keep)
            .collect()
    }

    /// Train mode on `[N, C, H, W]` with a mask drawn from `seed`.
    pub fn forward_train(&self, xs: &Tensor, seed: u64) -> Result<Tensor> {
        if self.p == 0.0 {
            return Ok(xs.clone());
        }
        let (n, c, _, _) = xs
            .dims4()
            .map_err(|_| input_error("Dropout2d", xs.dims(), "expected an [N, C, H, W] tensor"))?;
        self.forward_with_mask(xs, &self.keep_mask(n, c, seed))
    }

    /// Train mode with an explicit mask of `N·C` flags (sample-major): kept planes are
    /// scaled by `1 / (1 − p)`, dropped ones are zero, and so is their gradient.
    pub fn forward_with_mask(&self, xs: &Tensor, keep: &[bool]) -> Result<Tensor> {
        let (n, c, _, _) = xs
            .dims4()
            .map_err(|_| input_error("Dropout2d", xs.dims(), "expected an [N, C, H, W] tensor"))?;
        if keep.len() != n * c {
            return Err(input_error(
                "Dropout2d",
                xs.dims(),
                format!("a mask of {} flags for {n}·{c} planes", keep.len()),
            ));
        }
        let scale = 1.0 / (1.0 - self.p);
        let factors: Vec<f64> = keep.iter().map(|&k| if k { scale } else { 0.0 }).collect();
        let factors = Tensor::from_vec(factors, (n, c, 1, 1), xs.device())?.to_dtype(xs.dtype())?;
        Ok(xs.broadcast_mul(&factors)?)
    }
}
