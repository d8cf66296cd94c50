//! pixelate: Pillow's `resize` down with BOX, then back up with NEAREST (imagecorruptions) or
//! BOX (the ImageNet-C and CIFAR-10-C code), byte for byte as Pillow ≥ 7 computes them.
//!
//! Pillow's BOX resampling (`libImaging/Resample.c`): for each output column the source window
//! `[center − support, center + support)` with `center = (x + 0.5) · scale` is rounded to whole
//! pixels, each tap's weight is the box filter at `(i − center + 0.5) / filterscale`, the weights
//! are normalised in double and then stored as 22-bit fixed point (`±0.5` rounding away from
//! zero). A pass sums `pixel · weight` in `i32` starting at `2^21` and shifts right by 22 with
//! clamping. Two passes go through an 8-bit intermediate, horizontal first unless the height
//! shrinks by more than twice as many pixels as the width (Pillow 13's rule). A pass whose size
//! does not change is skipped; equal sizes copy.
//!
//! NEAREST up-sampling goes through Pillow's affine "scale" path: source column
//! `(int)(x_acc)` where `x_acc` starts at `scale / 2` and adds `scale` per output column (a
//! running double sum, which matters for the exact column chosen).

use image::RgbImage;

use crate::{Flavor, Severity};

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The pixelate corruption: the shrink factor per flavor; imagecorruptions comes back up with
/// NEAREST, the ImageNet-C and CIFAR-10-C code with BOX. Those two hard-code the size (224,
/// 32); here the size is the image's own, which equals them at their size.
pub(crate) fn apply(image: &RgbImage, severity: Severity, flavor: Flavor) -> RgbImage {
    let (table, upsample) = match flavor {
        Flavor::ImageCorruptions => ([0.6, 0.5, 0.4, 0.3, 0.25], Upsample::Nearest),
        Flavor::ImageNetC => ([0.6, 0.5, 0.4, 0.3, 0.25], Upsample::Box),
        Flavor::CifarC => ([0.95, 0.9, 0.85, 0.75, 0.65], Upsample::Box),
    };
    let (width, height) = (image.width() as usize, image.height() as usize);
    let out = pixelate(
        image.as_raw(),
        height,
        width,
        table[severity.index()],
        upsample,
    );
    RgbImage::from_raw(image.width(), image.height(), out).expect("pixelate keeps the size")
}

/// Fixed-point BOX weights for one axis: `(first source index, weights)` per output index.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
    ksize: usize,
}

fn box_filter(x: f64) -> f64 {
    if x > -0.5 && x <= 0.5 { 1.0 } else { 0.0 }
}

fn precompute_box(in_size: usize, out_size: usize) -> Coeffs {
    // Pillow passes the box as float32 coordinates: (in1 − in0) is exact for our sizes.
    let scale = in_size as f32 as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 0.5 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let inv_filterscale = 1.0 / filterscale;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0.0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = xmax.saturating_sub(xmin);
        let mut total = 0.0;
        for (x, w) in k.iter_mut().enumerate().take(count) {
            *w = box_filter((x as f64 + xmin as f64 - center + 0.5) * inv_filterscale);
            total += *w;
        }
        for (x, w) in k.iter().enumerate().take(count) {
            let normalised = if total != 0.0 { w / total } else { *w };
            weights[xx * ksize + x] = if normalised < 0.0 {
                (-0.5 + normalised * (1u32 << PRECISION_BITS) as f64) as i32
            } else {
                (0.5 + normalised * (1u32 << PRECISION_BITS) as f64) as i32
            };
        }
        bounds.push((xmin, count));
    }
    Coeffs {
        bounds,
        weights,
        ksize,
    }
}

#[inline]
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One BOX pass along the rows (`horizontal`) of an `rows × width` RGB buffer.
fn pass_horizontal(pixels: &[u8], rows: usize, width: usize, coeffs: &Coeffs) -> Vec<u8> {
    let out_width = coeffs.bounds.len();
    let mut out = vec![0u8; rows * out_width * 3];
    for y in 0..rows {
        let src = &pixels[y * width * 3..(y + 1) * width * 3];
        let dst = &mut out[y * out_width * 3..(y + 1) * out_width * 3];
        for (xx, &(xmin, count)) in coeffs.bounds.iter().enumerate() {
            let k = &coeffs.weights[xx * coeffs.ksize..xx * coeffs.ksize + count];
            let mut sums = [1i32 << (PRECISION_BITS - 1); 3];
            for (x, &w) in k.iter().enumerate() {
                let px = &src[(xmin + x) * 3..(xmin + x) * 3 + 3];
                sums[0] += px[0] as i32 * w;
                sums[1] += px[1] as i32 * w;
                sums[2] += px[2] as i32 * w;
            }
            dst[xx * 3] = clip8(sums[0]);
            dst[xx * 3 + 1] = clip8(sums[1]);
            dst[xx * 3 + 2] = clip8(sums[2]);
        }
    }
    out
}

/// One BOX pass down the columns; `row_offset` is the first source row the buffer holds.
fn pass_vertical(pixels: &[u8], width: usize, coeffs: &Coeffs, row_offset: usize) -> Vec<u8> {
    let row_len = width * 3;
    let out_height = coeffs.bounds.len();
    let mut out = vec![0u8; out_height * row_len];
    let mut sums = vec![0i32; row_len];
    for (yy, &(ymin, count)) in coeffs.bounds.iter().enumerate() {
        let k = &coeffs.weights[yy * coeffs.ksize..yy * coeffs.ksize + count];
        sums.fill(1i32 << (PRECISION_BITS - 1));
        for (y, &w) in k.iter().enumerate() {
            let row = ymin + y - row_offset;
            let src = &pixels[row * row_len..(row + 1) * row_len];
            for (s, &p) in sums.iter_mut().zip(src) {
                *s += p as i32 * w;
            }
        }
        for (d, &s) in out[yy * row_len..(yy + 1) * row_len].iter_mut().zip(&sums) {
            *d = clip8(s);
        }
    }
    out
}

/// Pillow 13 `Image.resize((out_w, out_h), Image.BOX)` of an RGB buffer. The horizontal pass
/// runs first (over just the rows the vertical pass reads) unless the height shrinks by more
/// than twice as many pixels as the width, in which case the vertical pass runs first; the
/// order matters because the intermediate is rounded to 8 bits.
pub(crate) fn resize_box(
    pixels: &[u8],
    height: usize,
    width: usize,
    out_height: usize,
    out_width: usize,
) -> Vec<u8> {
    let need_horizontal = out_width != width;
    let need_vertical = out_height != height;
    if !need_horizontal && !need_vertical {
        return pixels.to_vec();
    }
    let shrink_y = height as i64 - out_height as i64;
    let shrink_x = width as i64 - out_width as i64;
    let horizontal_first = !(shrink_y > 0 && shrink_y > shrink_x * 2);
    let vertical = precompute_box(height, out_height);
    if horizontal_first {
        let (first_row, last_row) = if need_vertical {
            let (start, count) = vertical.bounds[out_height - 1];
            (vertical.bounds[0].0, start + count)
        } else {
            (0, height)
        };
        let temp = if need_horizontal {
            let rows = &pixels[first_row * width * 3..last_row * width * 3];
            pass_horizontal(
                rows,
                last_row - first_row,
                width,
                &precompute_box(width, out_width),
            )
        } else {
            pixels.to_vec()
        };
        if !need_vertical {
            return temp;
        }
        let offset = if need_horizontal { first_row } else { 0 };
        pass_vertical(&temp, out_width, &vertical, offset)
    } else {
        let temp = if need_vertical {
            pass_vertical(pixels, width, &vertical, 0)
        } else {
            pixels.to_vec()
        };
        if !need_horizontal {
            return temp;
        }
        pass_horizontal(&temp, out_height, width, &precompute_box(width, out_width))
    }
}

/// Pillow's source indices for NEAREST resize along one axis (`ImagingScaleAffine`).
fn nearest_indices(in_size: usize, out_size: usize) -> Vec<usize> {
    let step = in_size as f32 as f64 / out_size as f64;
    let mut acc = step * 0.5;
    (0..out_size)
        .map(|_| {
            let index = (acc as i64).clamp(0, in_size as i64 - 1) as usize;
            acc += step;
            index
        })
        .collect()
}

/// Pillow `Image.resize((out_w, out_h), Image.NEAREST)` of an RGB buffer.
pub(crate) fn resize_nearest(
    pixels: &[u8],
    height: usize,
    width: usize,
    out_height: usize,
    out_width: usize,
) -> Vec<u8> {
    if out_height == height && out_width == width {
        return pixels.to_vec();
    }
    let xs = nearest_indices(width, out_width);
    let ys = nearest_indices(height, out_height);
    let mut out = Vec::with_capacity(out_height * out_width * 3);
    for &y in &ys {
        let row = &pixels[y * width * 3..(y + 1) * width * 3];
        for &x in &xs {
            out.extend_from_slice(&row[x * 3..x * 3 + 3]);
        }
    }
    out
}

/// How pixelate brings the small image back to full size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upsample {
    /// imagecorruptions.
    Nearest,
    /// ImageNet-C and CIFAR-10-C.
    Box,
}

/// pixelate: BOX down to `(int(W·c), int(H·c))` (at least 1×1, where Pillow would refuse a
/// zero size), then back up.
pub(crate) fn pixelate(
    pixels: &[u8],
    height: usize,
    width: usize,
    factor: f64,
    upsample: Upsample,
) -> Vec<u8> {
    let small_width = ((width as f64 * factor) as usize).max(1);
    let small_height = ((height as f64 * factor) as usize).max(1);
    let small = resize_box(pixels, height, width, small_height, small_width);
    match upsample {
        Upsample::Nearest => resize_nearest(&small, small_height, small_width, height, width),
        Upsample::Box => resize_box(&small, small_height, small_width, height, width),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_halving_averages_pairs_with_rounding() {
        // One row, 4 → 2 columns: (10 + 21) / 2 = 15.5 rounds to 16; (0 + 255) / 2 → 128.
        let pixels = [10, 10, 10, 21, 21, 21, 0, 0, 0, 255, 255, 255];
        let out = resize_box(&pixels, 1, 4, 1, 2);
        assert_eq!(out, vec![16, 16, 16, 128, 128, 128]);
    }

    #[test]
    fn nearest_upsampling_repeats_pixels() {
        let pixels = [1, 1, 1, 2, 2, 2];
        let out = resize_nearest(&pixels, 1, 2, 1, 5);
        // scale 0.4: centres 0.2, 0.6, 1.0, 1.4, 1.8 → 0, 0, 1, 1, 1.
        let firsts: Vec<u8> = out.chunks(3).map(|p| p[0]).collect();
        assert_eq!(firsts, vec![1, 1, 2, 2, 2]);
    }

    #[test]
    fn pixelate_keeps_size_and_handles_one_pixel() {
        let pixels: Vec<u8> = (0..7 * 5 * 3).map(|i| (i * 5 % 256) as u8).collect();
        for up in [Upsample::Nearest, Upsample::Box] {
            assert_eq!(pixelate(&pixels, 7, 5, 0.25, up).len(), pixels.len());
            assert_eq!(pixelate(&[9, 8, 7], 1, 1, 0.25, up), vec![9, 8, 7]);
        }
    }
}
