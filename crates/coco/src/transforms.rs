//! mmdetection 2.x's Mask R-CNN pipelines on decoded images, as plain functions:
//! `Resize(keep_ratio=True)` ([`resize_image`], boxes scaled by `new / old` per axis in
//! float32 and clipped to the resized image, masks by cv2's nearest neighbour),
//! `RandomFlip` ([`flip_horizontal`]: `x1' = w − x2`, `x2' = w − x1`), `Normalize`
//! ([`normalize`]) and `Pad(size_divisor=32)` (done when a batch is built, rtb-detection's
//! `ImageBatch`: padding every image to the batch's largest size rounded up to 32 equals
//! mmdet's per-image padding followed by its collate).
//!
//! The resizes are rtb-image's (cv2 `INTER_LINEAR` / `INTER_NEAREST`, byte-equal to OpenCV,
//! checked by rtb-ade's golden tests).

use image::RgbImage;
use rtb_image::{ResizeError, rescale_size, resize_linear, resize_nearest};

/// mmdet's `img_norm_cfg` mean (RGB, 0–255).
pub const COCO_MEAN: [f64; 3] = [123.675, 116.28, 103.53];
/// mmdet's `img_norm_cfg` std (RGB, 0–255).
pub const COCO_STD: [f64; 3] = [58.395, 57.12, 57.375];

/// An image's training targets: boxes `[x1, y1, x2, y2]`, 0-based labels and row-major
/// binary masks at the image's size.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    /// Boxes in pixels (float32, as mmdet keeps them).
    pub boxes: Vec<[f32; 4]>,
    /// 0-based classes.
    pub labels: Vec<usize>,
    /// One `height × width` mask (0 or 1) per box.
    pub masks: Vec<Vec<u8>>,
}

/// The image (cv2 bilinear) resized by mmcv's keep-ratio rule to fit `scale`, with
/// `[w_scale, h_scale]` (new size over old, per axis).
pub fn resize_image(
    image: &RgbImage,
    scale: (u32, u32),
) -> Result<(RgbImage, [f32; 2]), ResizeError> {
    let (w, h) = image.dimensions();
    let ((nw, nh), _) = rescale_size(w, h, scale)?;
    let data = resize_linear(
        image.as_raw(),
        w as usize,
        h as usize,
        3,
        nw as usize,
        nh as usize,
    )?;
    let resized = RgbImage::from_raw(nw, nh, data).ok_or_else(|| ResizeError {
        message: format!("a resized buffer is not {nw}×{nh}×3"),
    })?;
    // mmdet: w_scale = new_w / w in Python floats, stored as a float32 array.
    let factors = [
        (f64::from(nw) / f64::from(w)) as f32,
        (f64::from(nh) / f64::from(h)) as f32,
    ];
    Ok((resized, factors))
}

/// Scales targets of a `(width, height)` image into the `(new_width, new_height)` image of
/// `factors`: boxes multiplied in float32 and clipped to the new image, masks resized with
/// cv2's nearest neighbour (mmdet's `BitmapMasks.rescale`).
pub fn resize_targets(
    targets: &Targets,
    (width, height): (u32, u32),
    (new_width, new_height): (u32, u32),
    factors: [f32; 2],
) -> Result<Targets, ResizeError> {
    let (fx, fy) = (factors[0], factors[1]);
    let (cw, ch) = (new_width as f32, new_height as f32);
    let boxes = targets
        .boxes
        .iter()
        .map(|b| {
            [
                (b[0] * fx).clamp(0.0, cw),
                (b[1] * fy).clamp(0.0, ch),
                (b[2] * fx).clamp(0.0, cw),
                (b[3] * fy).clamp(0.0, ch),
            ]
        })
        .collect();
    let masks = targets
        .masks
        .iter()
        .map(|m| {
            resize_nearest(
                m,
                width as usize,
                height as usize,
                1,
                new_width as usize,
                new_height as usize,
            )
        })
        .collect::<Result<_, _>>()?;
    Ok(Targets {
        boxes,
        labels: targets.labels.clone(),
        masks,
    })
}

/// Mirrors an image and its targets left to right (mmdet's `RandomFlip`, horizontal).
pub fn flip_horizontal(image: &RgbImage, targets: &Targets) -> (RgbImage, Targets) {
    let (w, h) = image.dimensions();
    let flipped = image::imageops::flip_horizontal(image);
    let width = w as f32;
    let boxes = targets
        .boxes
        .iter()
        .map(|b| [width - b[2], b[1], width - b[0], b[3]])
        .collect();
    let (w, h) = (w as usize, h as usize);
    let masks = targets
        .masks
        .iter()
        .map(|m| {
            let mut out = m.clone();
            for (row_out, row_in) in out.chunks_exact_mut(w).zip(m.chunks_exact(w)).take(h) {
                for (o, v) in row_out.iter_mut().zip(row_in.iter().rev()) {
                    *o = *v;
                }
            }
            out
        })
        .collect();
    (
        flipped,
        Targets {
            boxes,
            labels: targets.labels.clone(),
            masks,
        },
    )
}

/// An 8-bit RGB image as normalised CHW float32, as mmcv's `imnormalize` computes it:
/// `cv2.subtract` of the float64 mean, then `cv2.multiply` by the float64 `1 / std`, each
/// rounded to float32.
pub fn normalize(image: &RgbImage) -> Vec<f32> {
    let mut table = [[0f32; 256]; 3];
    for (c, row) in table.iter_mut().enumerate() {
        let inv = 1.0 / COCO_STD[c];
        for (v, out) in row.iter_mut().enumerate() {
            let centred = (v as f64 - COCO_MEAN[c]) as f32;
            *out = (f64::from(centred) * inv) as f32;
        }
    }
    let plane = image.width() as usize * image.height() as usize;
    let mut out = vec![0f32; 3 * plane];
    for (at, px) in image.as_raw().chunks_exact(3).enumerate() {
        out[at] = table[0][usize::from(px[0])];
        out[plane + at] = table[1][usize::from(px[1])];
        out[2 * plane + at] = table[2][usize::from(px[2])];
    }
    out
}

/// The train pipeline on one decoded image: resize to fit `scale`, flip if `flip`.
pub fn train_transform(
    image: &RgbImage,
    targets: &Targets,
    scale: (u32, u32),
    flip: bool,
) -> Result<(RgbImage, Targets), ResizeError> {
    let (resized, factors) = resize_image(image, scale)?;
    let targets = resize_targets(targets, image.dimensions(), resized.dimensions(), factors)?;
    Ok(if flip {
        flip_horizontal(&resized, &targets)
    } else {
        (resized, targets)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flip_mirrors_boxes_and_masks() {
        let image = RgbImage::from_fn(4, 2, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let targets = Targets {
            boxes: vec![[0.0, 0.0, 1.0, 2.0]],
            labels: vec![3],
            masks: vec![vec![1, 0, 0, 0, 1, 1, 0, 0]],
        };
        let (flipped, t) = flip_horizontal(&image, &targets);
        assert_eq!(flipped.get_pixel(0, 1).0, [3, 1, 0]);
        assert_eq!(t.boxes, vec![[3.0, 0.0, 4.0, 2.0]]);
        assert_eq!(t.masks[0], vec![0, 0, 0, 1, 0, 0, 1, 1]);
        assert_eq!(t.labels, vec![3]);
        // Flipping twice is the identity.
        let (back, t2) = flip_horizontal(&flipped, &t);
        assert_eq!(back, image);
        assert_eq!(t2, targets);
    }

    #[test]
    fn resize_scales_and_clips_boxes() {
        let image = RgbImage::new(40, 20);
        let targets = Targets {
            boxes: vec![[10.0, 5.0, 45.0, 20.0]],
            labels: vec![0],
            masks: vec![vec![1; 40 * 20]],
        };
        // (1333, 800): factor min(1333 / 40, 800 / 20) = 33.325 → 1333×667.
        let (out, t) = train_transform(&image, &targets, (1333, 800), false).unwrap();
        assert_eq!(out.dimensions(), (1333, 667));
        let (fx, fy) = (1333.0f32 / 40.0, 667.0f32 / 20.0);
        assert_eq!(t.boxes[0], [10.0 * fx, 5.0 * fy, 1333.0, 20.0 * fy]);
        assert_eq!(t.masks[0].len(), 1333 * 667);
        assert!(t.masks[0].iter().all(|&v| v == 1));
    }

    #[test]
    fn normalize_is_mmcv_arithmetic() {
        let image = RgbImage::from_pixel(1, 1, image::Rgb([0, 128, 255]));
        let v = normalize(&image);
        let expect =
            |x: f64, c: usize| (f64::from((x - COCO_MEAN[c]) as f32) * (1.0 / COCO_STD[c])) as f32;
        assert_eq!(v, vec![expect(0.0, 0), expect(128.0, 1), expect(255.0, 2)]);
        assert!((v[0] - (-123.675 / 58.395) as f32).abs() < 1e-6);
    }
}
