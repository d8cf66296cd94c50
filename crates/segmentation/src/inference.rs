//! Sliding-window inference, equal to mmseg's `EncoderDecoder.slide_inference` (0.x and 1.x
//! agree): crops of `crop` on a grid of `stride`,
//! `grids = max(size − crop + stride − 1, 0) / stride + 1` per axis; each crop's corner is
//! `min(i·stride + crop, size) − crop` clamped at 0, so the last row and column of crops end
//! at the image's edge and a crop is never padded (an image smaller than the crop is decoded
//! whole). Each crop's logits are resized to the crop's size, added into the image's logits
//! and divided by how many crops cover each pixel. ADE20K's Swin configs use crop 512 and
//! stride 341.
//!
//! A crop that is not a multiple of the backbone's size divisor (only when the image is
//! smaller than the crop) goes through [`UperNet::forward`]'s zero padding; mmseg's Swin pads
//! inside the backbone instead, which differs slightly at such borders.

use candle_core::Tensor;

use crate::error::{Result, config_error};
use crate::upernet::UperNet;

/// Crop and stride of a sliding window, `(height, width)` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SlideConfig {
    /// Crop size `(h, w)` (512, 512).
    pub crop: (usize, usize),
    /// Step between crops `(h, w)` (341, 341).
    pub stride: (usize, usize),
}

impl SlideConfig {
    /// mmseg's ADE20K setting: crop 512, stride 341.
    pub fn ade20k() -> Self {
        Self {
            crop: (512, 512),
            stride: (341, 341),
        }
    }

    fn check(&self) -> Result<()> {
        if self.crop.0 == 0 || self.crop.1 == 0 || self.stride.0 == 0 || self.stride.1 == 0 {
            return Err(config_error(
                "slide",
                format!(
                    "crop {:?} and stride {:?} must be positive",
                    self.crop, self.stride
                ),
            ));
        }
        Ok(())
    }
}

/// The crop windows `(y1, y2, x1, x2)` over an `h × w` image, in mmseg's order (rows, then
/// columns).
pub fn slide_windows(
    (h, w): (usize, usize),
    cfg: &SlideConfig,
) -> Vec<(usize, usize, usize, usize)> {
    let grids = |size: usize, crop: usize, stride: usize| {
        (size + stride).saturating_sub(crop + 1) / stride + 1
    };
    let (h_grids, w_grids) = (
        grids(h, cfg.crop.0, cfg.stride.0),
        grids(w, cfg.crop.1, cfg.stride.1),
    );
    let mut out = Vec::with_capacity(h_grids * w_grids);
    for hi in 0..h_grids {
        for wi in 0..w_grids {
            let y2 = (hi * cfg.stride.0 + cfg.crop.0).min(h);
            let x2 = (wi * cfg.stride.1 + cfg.crop.1).min(w);
            let y1 = y2.saturating_sub(cfg.crop.0);
            let x1 = x2.saturating_sub(cfg.crop.1);
            out.push((y1, y2, x1, x2));
        }
    }
    out
}

impl UperNet {
    /// Sliding-window logits `[N, num_classes, H, W]` of a normalised `[N, 3, H, W]` batch,
    /// without a gradient graph (see the module's documentation).
    pub fn slide_inference(&self, images: &Tensor, cfg: &SlideConfig) -> Result<Tensor> {
        cfg.check()?;
        let (n, _, h, w) = images.dims4().map_err(|_| {
            crate::error::input_error("images", images.dims(), "expected a [N, 3, H, W] batch")
        })?;
        let k = self.config().num_classes;
        let mut sum = Tensor::zeros((n, k, h, w), images.dtype(), images.device())?;
        let mut count = vec![0u32; h * w];
        for (y1, y2, x1, x2) in slide_windows((h, w), cfg) {
            let crop = images.narrow(2, y1, y2 - y1)?.narrow(3, x1, x2 - x1)?;
            let logits = self.forward(&crop)?;
            let placed = logits
                .pad_with_zeros(2, y1, h - y2)?
                .pad_with_zeros(3, x1, w - x2)?;
            sum = (sum + placed)?;
            for y in y1..y2 {
                for c in &mut count[y * w + x1..y * w + x2] {
                    *c += 1;
                }
            }
        }
        // Every pixel is covered: the last window of each axis ends at the edge.
        let count: Vec<f32> = count.into_iter().map(|c| c as f32).collect();
        let count =
            Tensor::from_vec(count, (1, 1, h, w), images.device())?.to_dtype(images.dtype())?;
        Ok(sum.broadcast_div(&count)?)
    }
}
