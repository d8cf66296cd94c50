//! Axis-aligned boxes `[x1, y1, x2, y2]`: area, pairwise IoU (torchvision's `box_area` /
//! `box_iou`, no "+1"), clipping to an image, and the delta-xywh box coder of R-CNN heads.
//!
//! The coder follows mmdetection 2.x's `DeltaXYWHBBoxCoder` (the paper's heads are mmdet's):
//! targets are normalised by `means`/`stds`; decoding clamps `dw`, `dh` to
//! `±|log(wh_ratio_clip)|` (`log(1000/16)`) and clips to the image `[0, W] × [0, H]`.
//! torchvision's `BoxCoder` differs in three ways: it takes `weights` (= 1 / `stds`, e.g.
//! (10, 10, 5, 5) ↔ (0.1, 0.1, 0.2, 0.2)) and no means, it clamps `dw`, `dh` only from above,
//! and clipping is a separate step ([`clip_boxes_to_image`]).
//!
//! Everything here is candle ops, so it runs on any device and is differentiable.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use rtb_nn::boxes::{box_iou, DeltaXywhCoder};
//! let a = Tensor::new(&[[0f32, 0., 2., 2.]], &Device::Cpu).unwrap();
//! let b = Tensor::new(&[[1f32, 1., 3., 3.], [0., 0., 2., 2.]], &Device::Cpu).unwrap();
//! let iou: Vec<Vec<f32>> = box_iou(&a, &b).unwrap().to_vec2().unwrap();
//! assert_eq!(iou, vec![vec![1.0 / 7.0, 1.0]]);
//! let coder = DeltaXywhCoder::mmdet_rcnn();
//! let deltas = coder.encode(&a, &b.narrow(0, 0, 1).unwrap()).unwrap();
//! let back = coder.decode(&a, &deltas, None).unwrap();
//! assert!((back.to_vec2::<f32>().unwrap()[0][2] - 3.0).abs() < 1e-5);
//! ```

use candle_core::{Result, Tensor};

use crate::error::{invalid, shape_error};

fn check_boxes(op: &'static str, arg: &'static str, boxes: &Tensor) -> Result<usize> {
    match boxes.dims() {
        [n, 4] => Ok(*n),
        dims => Err(shape_error(op, arg, "[K, 4] (x1, y1, x2, y2)", dims)),
    }
}

/// Areas `(x2 − x1)·(y2 − y1)` of `[K, 4]` boxes, shape `[K]`.
pub fn box_area(boxes: &Tensor) -> Result<Tensor> {
    check_boxes("box_area", "boxes", boxes)?;
    let w = (boxes.narrow(1, 2, 1)? - boxes.narrow(1, 0, 1)?)?;
    let h = (boxes.narrow(1, 3, 1)? - boxes.narrow(1, 1, 1)?)?;
    (w * h)?.squeeze(1)
}

/// Pairwise IoU of `a` `[N, 4]` and `b` `[M, 4]`, shape `[N, M]` (torchvision's `box_iou`:
/// intersection over union with no "+1", 0/0 → NaN as in torchvision).
pub fn box_iou(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let n = check_boxes("box_iou", "a", a)?;
    let m = check_boxes("box_iou", "b", b)?;
    let area_a = box_area(a)?.reshape((n, 1))?;
    let area_b = box_area(b)?.reshape((1, m))?;
    let a = a.unsqueeze(1)?; // [N, 1, 4]
    let b = b.unsqueeze(0)?; // [1, M, 4]
    let top_left = a.narrow(2, 0, 2)?.broadcast_maximum(&b.narrow(2, 0, 2)?)?;
    let bottom_right = a.narrow(2, 2, 2)?.broadcast_minimum(&b.narrow(2, 2, 2)?)?;
    let wh = (bottom_right - top_left)?.relu()?;
    let inter = (wh.narrow(2, 0, 1)? * wh.narrow(2, 1, 1)?)?.squeeze(2)?;
    let union = (area_a.broadcast_add(&area_b)? - &inter)?;
    inter / union
}

/// Clamps x to `[0, width]` and y to `[0, height]` (torchvision's `clip_boxes_to_image`, and
/// the clipping inside mmdet's decoder). `boxes` is `[K, 4·m]`.
pub fn clip_boxes_to_image(boxes: &Tensor, (height, width): (usize, usize)) -> Result<Tensor> {
    let dims = boxes.dims();
    if dims.len() != 2 || !dims[1].is_multiple_of(4) {
        return Err(shape_error(
            "clip_boxes_to_image",
            "boxes",
            "[K, 4·m]",
            dims,
        ));
    }
    let (k, cols) = (dims[0], dims[1]);
    let grouped = boxes.reshape((k, cols / 2, 2))?;
    let x = grouped.narrow(2, 0, 1)?.clamp(0.0, width as f64)?;
    let y = grouped.narrow(2, 1, 1)?.clamp(0.0, height as f64)?;
    Tensor::cat(&[x, y], 2)?.reshape((k, cols))
}

/// mmdet's `DeltaXYWHBBoxCoder`: `(dx, dy, dw, dh) = ((gx − px)/pw, (gy − py)/ph, log(gw/pw),
/// log(gh/ph))`, then `(delta − means) / stds`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeltaXywhCoder {
    /// Means subtracted from encoded deltas.
    pub means: [f64; 4],
    /// Standard deviations that divide encoded deltas.
    pub stds: [f64; 4],
    /// Smallest allowed ratio of decoded to prior size; `dw`, `dh` are clamped to
    /// `±|log(wh_ratio_clip)|` (mmdet: 16/1000).
    pub wh_ratio_clip: f64,
    /// Whether decoding clips to `[0, W] × [0, H]` when an image shape is given.
    pub clip_border: bool,
}

impl DeltaXywhCoder {
    /// A coder with the given normalisation and mmdet's other defaults.
    pub fn new(means: [f64; 4], stds: [f64; 4]) -> Self {
        Self {
            means,
            stds,
            wh_ratio_clip: 16.0 / 1000.0,
            clip_border: true,
        }
    }

    /// The RPN's coder in mmdet's Mask R-CNN: means 0, stds 1.
    pub fn mmdet_rpn() -> Self {
        Self::new([0.0; 4], [1.0; 4])
    }

    /// The R-CNN box head's coder in mmdet's Mask R-CNN: means 0, stds (0.1, 0.1, 0.2, 0.2).
    pub fn mmdet_rcnn() -> Self {
        Self::new([0.0; 4], [0.1, 0.1, 0.2, 0.2])
    }

    fn affine_columns(&self, deltas: &Tensor, inverse: bool) -> Result<Tensor> {
        let device = deltas.device();
        let dtype = deltas.dtype();
        let means = Tensor::new(&self.means, device)?.to_dtype(dtype)?;
        let stds = Tensor::new(&self.stds, device)?.to_dtype(dtype)?;
        if inverse {
            deltas.broadcast_sub(&means)?.broadcast_div(&stds)
        } else {
            deltas.broadcast_mul(&stds)?.broadcast_add(&means)
        }
    }

    /// Regression targets `[K, 4]` that move `proposals` `[K, 4]` onto `gt` `[K, 4]`.
    pub fn encode(&self, proposals: &Tensor, gt: &Tensor) -> Result<Tensor> {
        let k = check_boxes("DeltaXywhCoder::encode", "proposals", proposals)?;
        let kg = check_boxes("DeltaXywhCoder::encode", "gt", gt)?;
        if k != kg {
            return Err(invalid(
                "DeltaXywhCoder::encode",
                format!(
                    "proposals {:?} and gt {:?} must have the same number of boxes",
                    proposals.dims(),
                    gt.dims()
                ),
            ));
        }
        let (px, py, pw, ph) = centre_size(proposals)?;
        let (gx, gy, gw, gh) = centre_size(gt)?;
        let dx = ((gx - &px)? / &pw)?;
        let dy = ((gy - &py)? / &ph)?;
        let dw = (gw / &pw)?.log()?;
        let dh = (gh / &ph)?.log()?;
        let deltas = Tensor::cat(&[dx, dy, dw, dh], 1)?;
        self.affine_columns(&deltas, true)
    }

    /// Applies `deltas` `[K, 4·m]` (class-specific when m > 1) to `rois` `[K, 4]`, giving boxes
    /// `[K, 4·m]`; clipped to `max_shape = (height, width)` when given and `clip_border`.
    pub fn decode(
        &self,
        rois: &Tensor,
        deltas: &Tensor,
        max_shape: Option<(usize, usize)>,
    ) -> Result<Tensor> {
        let k = check_boxes("DeltaXywhCoder::decode", "rois", rois)?;
        let dims = deltas.dims();
        if dims.len() != 2 || dims[0] != k || !dims[1].is_multiple_of(4) || dims[1] == 0 {
            return Err(shape_error(
                "DeltaXywhCoder::decode",
                "deltas",
                format!("[K, 4·m] with K = {k} (the rois' count)"),
                dims,
            ));
        }
        let m = dims[1] / 4;
        let denorm = self.affine_columns(&deltas.reshape((k, m, 4))?, false)?;
        let max_ratio = self.wh_ratio_clip.ln().abs();
        let dx = denorm.narrow(2, 0, 1)?;
        let dy = denorm.narrow(2, 1, 1)?;
        let dw = denorm.narrow(2, 2, 1)?.clamp(-max_ratio, max_ratio)?;
        let dh = denorm.narrow(2, 3, 1)?.clamp(-max_ratio, max_ratio)?;
        let (px, py, pw, ph) = centre_size(rois)?;
        let (px, py, pw, ph) = (
            px.unsqueeze(1)?,
            py.unsqueeze(1)?,
            pw.unsqueeze(1)?,
            ph.unsqueeze(1)?,
        );
        let gw = pw.broadcast_mul(&dw.exp()?)?;
        let gh = ph.broadcast_mul(&dh.exp()?)?;
        let gx = px.broadcast_add(&pw.broadcast_mul(&dx)?)?;
        let gy = py.broadcast_add(&ph.broadcast_mul(&dy)?)?;
        let half_w = (gw * 0.5)?;
        let half_h = (gh * 0.5)?;
        let boxes = Tensor::cat(
            &[
                (&gx - &half_w)?,
                (&gy - &half_h)?,
                (&gx + &half_w)?,
                (&gy + &half_h)?,
            ],
            2,
        )?
        .reshape((k, 4 * m))?;
        match max_shape {
            Some(shape) if self.clip_border => clip_boxes_to_image(&boxes, shape),
            _ => Ok(boxes),
        }
    }
}

/// Centres and sizes `[K, 1]` each, computed as mmdet does (`(x1 + x2)·0.5`, `x2 − x1`).
fn centre_size(boxes: &Tensor) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    let x1 = boxes.narrow(1, 0, 1)?;
    let y1 = boxes.narrow(1, 1, 1)?;
    let x2 = boxes.narrow(1, 2, 1)?;
    let y2 = boxes.narrow(1, 3, 1)?;
    Ok((
        ((&x1 + &x2)? * 0.5)?,
        ((&y1 + &y2)? * 0.5)?,
        (x2 - x1)?,
        (y2 - y1)?,
    ))
}
