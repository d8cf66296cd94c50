//! Pasting the mask head's `M × M` probabilities (28×28) back into the image: torchvision's
//! `paste_masks_in_image` and mmdetection 2.x's `_do_paste_mask`.
//!
//! | | mmdet 2.x `_do_paste_mask` | torchvision `paste_masks_in_image` |
//! |---|---|---|
//! | mask | as is | zero-padded by one cell (`(M + 2)²`) |
//! | box | as is (float) | scaled by `(M + 2) / M` about its centre, truncated to integers |
//! | resampling | `grid_sample` (bilinear, zero padding, `align_corners=False`) at every pixel centre `(x + ½, y + ½)` mapped into the box | bilinear resize (`align_corners=False`) of the padded mask to `(⌊y2 − y1 + 1⌋, ⌊x2 − x1 + 1⌋)`, copied at `(x1, y1)` and cut to the image |
//! | binary mask | `prob ≥ 0.5` | `prob > 0.5` (torchvision's COCO evaluation) |
//!
//! mmdet pastes over the whole image on the GPU and, on the CPU, only inside the box grown by
//! one pixel (`skip_empty`); outside that window the GPU result is below half the mask's edge
//! value, so after binarisation at 0.5 both agree. [`paste_masks_mmdet`] computes the whole
//! image (the GPU rule).
//!
//! Pasting runs on the host in f32, as both references do (masks are probabilities; no
//! gradient).

use candle_core::{DType, Device, Tensor};

use crate::Flavor;
use crate::error::{Result, shape};

/// Mask values, boxes, mask count `D` and side `M`, on the host.
type HostInputs = (Vec<f32>, Vec<[f32; 4]>, usize, usize);

/// Masks `[D, M, M]` (or `[D, 1, M, M]`) and boxes `[D, 4]` on the host.
fn host_inputs(op: &'static str, masks: &Tensor, boxes: &Tensor) -> Result<HostInputs> {
    let (d, m) = match masks.dims() {
        [d, m1, m2] | [d, 1, m1, m2] if m1 == m2 && *m1 > 0 => (*d, *m1),
        dims => return Err(shape(op, "masks", "[D, M, M] or [D, 1, M, M]", dims)),
    };
    if boxes.dims() != [d, 4] {
        return Err(shape(
            op,
            "boxes",
            format!("[{d}, 4] (x1, y1, x2, y2), one per mask"),
            boxes.dims(),
        ));
    }
    let masks: Vec<f32> = masks
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    let boxes: Vec<Vec<f32>> = boxes
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .to_vec2()?;
    let boxes = boxes.iter().map(|b| [b[0], b[1], b[2], b[3]]).collect();
    Ok((masks, boxes, d, m))
}

/// Pastes mask probabilities `[D, M, M]` (or `[D, 1, M, M]`) of `boxes` `[D, 4]` into images
/// of `(h, w)` as `flavor` does: `[D, h, w]` f32 probabilities on the masks' device.
pub fn paste_masks(
    flavor: Flavor,
    masks: &Tensor,
    boxes: &Tensor,
    image_size: (usize, usize),
) -> Result<Tensor> {
    match flavor {
        Flavor::Torchvision => paste_masks_torchvision(masks, boxes, image_size),
        Flavor::Mmdet => paste_masks_mmdet(masks, boxes, image_size),
    }
}

/// Binary masks (u8, 0 or 1) from pasted probabilities with `flavor`'s comparison at 0.5.
pub fn binarize_masks(flavor: Flavor, probabilities: &Tensor) -> Result<Tensor> {
    let mask = match flavor {
        Flavor::Torchvision => probabilities.gt(0.5)?,
        Flavor::Mmdet => probabilities.ge(0.5)?,
    };
    Ok(mask)
}

/// torchvision's `paste_masks_in_image(masks, boxes, (h, w), padding=1)`.
pub fn paste_masks_torchvision(
    masks: &Tensor,
    boxes: &Tensor,
    (im_h, im_w): (usize, usize),
) -> Result<Tensor> {
    let (data, boxes_v, d, m) = host_inputs("paste_masks_torchvision", masks, boxes)?;
    let padded_side = m + 2;
    let scale = padded_side as f32 / m as f32;
    let mut out = vec![0f32; d * im_h * im_w];
    let mut padded = vec![0f32; padded_side * padded_side];
    for (i, b) in boxes_v.iter().enumerate() {
        for y in 0..m {
            let src = &data[(i * m + y) * m..(i * m + y + 1) * m];
            padded[(y + 1) * padded_side + 1..(y + 1) * padded_side + 1 + m].copy_from_slice(src);
        }
        // expand_boxes, then `.to(int64)` (truncation toward zero).
        let w_half = (b[2] - b[0]) * 0.5 * scale;
        let h_half = (b[3] - b[1]) * 0.5 * scale;
        let x_c = (b[2] + b[0]) * 0.5;
        let y_c = (b[3] + b[1]) * 0.5;
        let bx0 = (x_c - w_half) as i64;
        let bx1 = (x_c + w_half) as i64;
        let by0 = (y_c - h_half) as i64;
        let by1 = (y_c + h_half) as i64;
        let w = (bx1 - bx0 + 1).max(1) as usize;
        let h = (by1 - by0 + 1).max(1) as usize;
        let resized = resize_bilinear(&padded, padded_side, padded_side, h, w);
        let x0 = bx0.max(0);
        let x1 = (bx1 + 1).min(im_w as i64);
        let y0 = by0.max(0);
        let y1 = (by1 + 1).min(im_h as i64);
        let plane = &mut out[i * im_h * im_w..(i + 1) * im_h * im_w];
        for y in y0..y1 {
            for x in x0..x1 {
                let (ry, rx) = ((y - by0) as usize, (x - bx0) as usize);
                plane[y as usize * im_w + x as usize] = resized[ry * w + rx];
            }
        }
    }
    Ok(Tensor::from_vec(out, (d, im_h, im_w), masks.device())?)
}

/// PyTorch's `interpolate(mode="bilinear", align_corners=False)` of one `[h_in, w_in]` plane
/// to `[h_out, w_out]` (sizes given, no scale factor), in f32 as its CPU kernel.
fn resize_bilinear(src: &[f32], h_in: usize, w_in: usize, h_out: usize, w_out: usize) -> Vec<f32> {
    let axis = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f32, f32)> {
        let scale = n_in as f32 / n_out as f32;
        (0..n_out)
            .map(|o| {
                let real = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
                let i0 = (real as usize).min(n_in - 1);
                let i1 = if i0 < n_in - 1 { i0 + 1 } else { i0 };
                let l1 = real - i0 as f32;
                (i0, i1, 1.0 - l1, l1)
            })
            .collect()
    };
    let ys = axis(h_in, h_out);
    let xs = axis(w_in, w_out);
    let mut out = vec![0f32; h_out * w_out];
    for (oy, &(y0, y1, wy0, wy1)) in ys.iter().enumerate() {
        for (ox, &(x0, x1, wx0, wx1)) in xs.iter().enumerate() {
            let top = wx0 * src[y0 * w_in + x0] + wx1 * src[y0 * w_in + x1];
            let bottom = wx0 * src[y1 * w_in + x0] + wx1 * src[y1 * w_in + x1];
            out[oy * w_out + ox] = wy0 * top + wy1 * bottom;
        }
    }
    out
}

/// mmdet 2.x's `_do_paste_mask(masks, boxes, h, w, skip_empty=False)`: the probability at
/// pixel `(x, y)` is the mask bilinearly sampled (zero outside) at
/// `((x + ½ − x1) / (x2 − x1)·M − ½, (y + ½ − y1) / (y2 − y1)·M − ½)` in cell units.
pub fn paste_masks_mmdet(
    masks: &Tensor,
    boxes: &Tensor,
    (im_h, im_w): (usize, usize),
) -> Result<Tensor> {
    let (data, boxes_v, d, m) = host_inputs("paste_masks_mmdet", masks, boxes)?;
    let mut out = vec![0f32; d * im_h * im_w];
    for (i, b) in boxes_v.iter().enumerate() {
        let mask = &data[i * m * m..(i + 1) * m * m];
        // grid_sample's source coordinate and bilinear corner weights along one axis; the
        // normalised grid (2·t − 1) is formed as mmdet does, infinities replaced by 0.
        let axis = |n: usize, lo: f32, hi: f32| -> Vec<(i64, f32)> {
            (0..n)
                .map(|p| {
                    let mut g = (p as f32 + 0.5 - lo) / (hi - lo) * 2.0 - 1.0;
                    if g.is_infinite() {
                        g = 0.0;
                    }
                    let s = ((g + 1.0) * m as f32 - 1.0) / 2.0;
                    let f = s.floor();
                    (f as i64, s - f)
                })
                .collect()
        };
        let xs = axis(im_w, b[0], b[2]);
        let ys = axis(im_h, b[1], b[3]);
        let at = |y: i64, x: i64| -> f32 {
            if y < 0 || x < 0 || y >= m as i64 || x >= m as i64 {
                0.0
            } else {
                mask[y as usize * m + x as usize]
            }
        };
        let plane = &mut out[i * im_h * im_w..(i + 1) * im_h * im_w];
        for (py, &(y0, ty)) in ys.iter().enumerate() {
            for (px, &(x0, tx)) in xs.iter().enumerate() {
                let v = at(y0, x0) * (1.0 - tx) * (1.0 - ty)
                    + at(y0, x0 + 1) * tx * (1.0 - ty)
                    + at(y0 + 1, x0) * (1.0 - tx) * ty
                    + at(y0 + 1, x0 + 1) * tx * ty;
                plane[py * im_w + px] = if v.is_nan() { 0.0 } else { v };
            }
        }
    }
    Ok(Tensor::from_vec(out, (d, im_h, im_w), masks.device())?)
}
