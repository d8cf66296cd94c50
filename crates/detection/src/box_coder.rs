//! Box coding: the regression targets `(dx, dy, dw, dh)` that move a prior box (anchor or
//! proposal) onto a target box, and back. Boxes are `[x1, y1, x2, y2]`, widths `x2 − x1`
//! (no "+1" in either reference: mmdetection dropped it in 2.0).
//!
//! mmdetection's `DeltaXYWHBBoxCoder` is rtb-nn's [`DeltaXywhCoder`] (re-exported here);
//! this module adds torchvision's `BoxCoder` ([`WeightedBoxCoder`]) and [`BoxCoder`], which
//! picks one by [`Flavor`]. The two are the same transform with these differences:
//!
//! | | mmdet `DeltaXYWHBBoxCoder` | torchvision `BoxCoder` |
//! |---|---|---|
//! | normalisation | `(δ − means) / stds` | `δ · weights` (`weights = 1 / stds`) |
//! | RPN / R-CNN | stds (1, 1, 1, 1) / (0.1, 0.1, 0.2, 0.2) | weights (1, 1, 1, 1) / (10, 10, 5, 5) |
//! | centre | `(x1 + x2) · 0.5` | `x1 + 0.5 · w` |
//! | `dw`, `dh` clamp | `±log(1000/16)` | `≤ log(1000/16)` (from above only) |
//! | clipping | inside `decode` when given a shape | separate (`clip_boxes_to_image`) |
//!
//! The centre formulas agree up to a rounding step; the one-sided clamp only matters for
//! deltas below `−4.1` (boxes shrunk more than 62-fold).

use candle_core::Tensor;
pub use rtb_nn::boxes::DeltaXywhCoder;
use rtb_nn::boxes::clip_boxes_to_image;

use crate::Flavor;
use crate::error::{Result, shape};

/// torchvision's `BoxCoder`: `(dx, dy, dw, dh) = (wx·(gx − px)/pw, wy·(gy − py)/ph,
/// ww·log(gw/pw), wh·log(gh/ph))` with centres `x1 + 0.5·w`; decoding clamps `dw`, `dh` from
/// above at `bbox_xform_clip`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightedBoxCoder {
    /// `(wx, wy, ww, wh)`.
    pub weights: [f64; 4],
    /// Upper clamp of the decoded `dw`, `dh` (torchvision: `log(1000 / 16)`).
    pub bbox_xform_clip: f64,
}

impl WeightedBoxCoder {
    /// A coder with the given weights and torchvision's clamp `log(1000 / 16)`.
    pub fn new(weights: [f64; 4]) -> Self {
        Self {
            weights,
            bbox_xform_clip: (1000.0f64 / 16.0).ln(),
        }
    }

    /// The RPN's coder: weights (1, 1, 1, 1).
    pub fn rpn() -> Self {
        Self::new([1.0; 4])
    }

    /// The RoI box head's coder: weights (10, 10, 5, 5).
    pub fn roi_heads() -> Self {
        Self::new([10.0, 10.0, 5.0, 5.0])
    }

    /// Regression targets `[K, 4]` that move `proposals` `[K, 4]` onto `gt` `[K, 4]`
    /// (torchvision's `encode_single`).
    pub fn encode(&self, proposals: &Tensor, gt: &Tensor) -> Result<Tensor> {
        let k = check_boxes("WeightedBoxCoder::encode", "proposals", proposals)?;
        if gt.dims() != [k, 4] {
            return Err(shape(
                "WeightedBoxCoder::encode",
                "gt",
                format!("[{k}, 4] (one per proposal)"),
                gt.dims(),
            ));
        }
        let (px, py, pw, ph) = centre_size(proposals)?;
        let (gx, gy, gw, gh) = centre_size(gt)?;
        let [wx, wy, ww, wh] = self.weights;
        let dx = (((gx - &px)? * wx)? / &pw)?;
        let dy = (((gy - &py)? * wy)? / &ph)?;
        let dw = ((gw / &pw)?.log()? * ww)?;
        let dh = ((gh / &ph)?.log()? * wh)?;
        Ok(Tensor::cat(&[dx, dy, dw, dh], 1)?)
    }

    /// Applies `deltas` `[K, 4·m]` (class-specific when m > 1) to `boxes` `[K, 4]`, giving
    /// boxes `[K, 4·m]` (torchvision's `decode_single`, no clipping).
    pub fn decode(&self, boxes: &Tensor, deltas: &Tensor) -> Result<Tensor> {
        let k = check_boxes("WeightedBoxCoder::decode", "boxes", boxes)?;
        let m = check_deltas("WeightedBoxCoder::decode", k, deltas)?;
        let deltas = deltas.to_dtype(boxes.dtype())?.reshape((k, m, 4))?;
        let [wx, wy, ww, wh] = self.weights;
        let dx = (deltas.narrow(2, 0, 1)? / wx)?;
        let dy = (deltas.narrow(2, 1, 1)? / wy)?;
        let clip = self.bbox_xform_clip;
        let dw = (deltas.narrow(2, 2, 1)? / ww)?.minimum(clip)?;
        let dh = (deltas.narrow(2, 3, 1)? / wh)?.minimum(clip)?;
        let (px, py, pw, ph) = centre_size(boxes)?;
        let (px, py, pw, ph) = (
            px.unsqueeze(1)?,
            py.unsqueeze(1)?,
            pw.unsqueeze(1)?,
            ph.unsqueeze(1)?,
        );
        let cx = dx.broadcast_mul(&pw)?.broadcast_add(&px)?;
        let cy = dy.broadcast_mul(&ph)?.broadcast_add(&py)?;
        let half_w = (dw.exp()?.broadcast_mul(&pw)? * 0.5)?;
        let half_h = (dh.exp()?.broadcast_mul(&ph)? * 0.5)?;
        let out = Tensor::cat(
            &[
                (&cx - &half_w)?,
                (&cy - &half_h)?,
                (&cx + &half_w)?,
                (&cy + &half_h)?,
            ],
            2,
        )?;
        Ok(out.reshape((k, 4 * m))?)
    }
}

/// A box coder of either flavor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BoxCoder {
    /// mmdetection's `DeltaXYWHBBoxCoder`.
    Mmdet(DeltaXywhCoder),
    /// torchvision's `BoxCoder`.
    Torchvision(WeightedBoxCoder),
}

impl BoxCoder {
    /// The RPN's coder of `flavor` (mmdet stds 1 / torchvision weights 1).
    pub fn rpn(flavor: Flavor) -> Self {
        match flavor {
            Flavor::Mmdet => Self::Mmdet(DeltaXywhCoder::mmdet_rpn()),
            Flavor::Torchvision => Self::Torchvision(WeightedBoxCoder::rpn()),
        }
    }

    /// The RoI box head's coder of `flavor` (mmdet stds (0.1, 0.1, 0.2, 0.2) / torchvision
    /// weights (10, 10, 5, 5)).
    pub fn roi_heads(flavor: Flavor) -> Self {
        match flavor {
            Flavor::Mmdet => Self::Mmdet(DeltaXywhCoder::mmdet_rcnn()),
            Flavor::Torchvision => Self::Torchvision(WeightedBoxCoder::roi_heads()),
        }
    }

    /// Regression targets `[K, 4]` moving `proposals` `[K, 4]` onto `gt` `[K, 4]`.
    pub fn encode(&self, proposals: &Tensor, gt: &Tensor) -> Result<Tensor> {
        match self {
            Self::Mmdet(coder) => Ok(coder.encode(proposals, gt)?),
            Self::Torchvision(coder) => coder.encode(proposals, gt),
        }
    }

    /// Boxes `[K, 4·m]` from `priors` `[K, 4]` and `deltas` `[K, 4·m]`, clipped to
    /// `[0, W] × [0, H]` when `max_shape = Some((H, W))` is given.
    pub fn decode(
        &self,
        priors: &Tensor,
        deltas: &Tensor,
        max_shape: Option<(usize, usize)>,
    ) -> Result<Tensor> {
        match self {
            Self::Mmdet(coder) => Ok(coder.decode(priors, deltas, max_shape)?),
            Self::Torchvision(coder) => {
                let boxes = coder.decode(priors, deltas)?;
                match max_shape {
                    Some(size) => Ok(clip_boxes_to_image(&boxes, size)?),
                    None => Ok(boxes),
                }
            }
        }
    }
}

fn check_boxes(op: &'static str, arg: &'static str, boxes: &Tensor) -> Result<usize> {
    match boxes.dims() {
        [k, 4] => Ok(*k),
        dims => Err(shape(op, arg, "[K, 4] (x1, y1, x2, y2)", dims)),
    }
}

fn check_deltas(op: &'static str, k: usize, deltas: &Tensor) -> Result<usize> {
    match deltas.dims() {
        [kd, c] if *kd == k && *c > 0 && c % 4 == 0 => Ok(c / 4),
        dims => Err(shape(
            op,
            "deltas",
            format!("[K, 4·m] with K = {k} (the boxes' count)"),
            dims,
        )),
    }
}

/// Centres `x1 + 0.5·w` and sizes `[K, 1]` each, as torchvision computes them.
fn centre_size(boxes: &Tensor) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    let x1 = boxes.narrow(1, 0, 1)?;
    let y1 = boxes.narrow(1, 1, 1)?;
    let w = (boxes.narrow(1, 2, 1)? - &x1)?;
    let h = (boxes.narrow(1, 3, 1)? - &y1)?;
    let cx = (&x1 + (&w * 0.5)?)?;
    let cy = (&y1 + (&h * 0.5)?)?;
    Ok((cx, cy, w, h))
}
