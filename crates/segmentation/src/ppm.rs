//! The pyramid pooling module of PSPNet on C5, as UperNet uses it (mmseg's `PPM`,
//! transformers' `UperNetPyramidPoolingModule`): for each pool scale `s`, adaptive average
//! pooling to `s × s`, a 1×1 [`ConvModule`], and bilinear upsampling (align_corners=False)
//! back to C5's size.
//!
//! Keys: `psp_modules.i.1.{conv, batch_norm}` (index 0 of each block is the parameterless
//! pooling).

use candle_core::Tensor;
use candle_nn::VarBuilder;
use rtb_models::Mode;
use rtb_nn::ops::pool::adaptive_avg_pool2d;
use rtb_nn::ops::resize::resize_bilinear;

use crate::conv_module::ConvModule;
use crate::error::{Result, config_error};
use crate::params::NamedTensor;

/// The pyramid pooling branches.
#[derive(Debug, Clone)]
pub struct PyramidPooling {
    scales: Vec<usize>,
    blocks: Vec<ConvModule>,
}

impl PyramidPooling {
    /// One branch per pool scale, each `in_channels → channels`, under `vb` (`vb` is the
    /// module's own prefix, e.g. `decode_head.psp_modules`).
    pub fn new(
        scales: &[usize],
        in_channels: usize,
        channels: usize,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        if scales.is_empty() || scales.contains(&0) {
            return Err(config_error(
                "pool_scales",
                format!("positive pool sizes are needed, got {scales:?}"),
            ));
        }
        let blocks = scales
            .iter()
            .enumerate()
            .map(|(i, _)| ConvModule::new(in_channels, channels, 1, 0, &vb.pp(i).pp("1")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            scales: scales.to_vec(),
            blocks,
        })
    }

    /// The pool scales.
    pub fn scales(&self) -> &[usize] {
        &self.scales
    }

    /// `[N, C, H, W]` → one `[N, channels, H, W]` map per scale.
    pub fn forward(&self, xs: &Tensor, mode: Mode) -> Result<Vec<Tensor>> {
        let (_, _, h, w) = xs.dims4()?;
        self.scales
            .iter()
            .zip(&self.blocks)
            .map(|(&scale, block)| {
                let pooled = adaptive_avg_pool2d(xs, (scale, scale))?;
                let ys = block.forward(&pooled, mode)?;
                Ok(resize_bilinear(&ys, (h, w), false)?)
            })
            .collect()
    }

    /// The branches' tensors under their full keys.
    pub fn parameters(&self) -> Vec<NamedTensor> {
        self.blocks.iter().flat_map(|b| b.parameters()).collect()
    }
}
