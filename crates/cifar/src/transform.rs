//! Input pipeline: the standard CIFAR augmentation on the 32×32 image (random crop with 4-px
//! zero padding, then horizontal flip, as torchvision's `RandomCrop(32, padding=4)` and
//! `RandomHorizontalFlip()`), ImageNet normalisation, and the bilinear upsampling to the
//! backbone's input size (rtb-nn's `resize_bilinear`, PyTorch's `align_corners=False`).
//!
//! Normalisation is per-channel affine and bilinear interpolation is linear with weights that
//! sum to 1, so normalising the 32×32 image before upsampling gives the same values as after
//! (up to float rounding) for a fraction of the work.

use candle_core::{DType, Device, Tensor};
use rtb_nn::ops::resize::resize_bilinear;
use rtb_train::seed::SplitMix64;

use crate::binary::{IMAGE_BYTES, SIDE};
use crate::error::Result;

/// ImageNet channel means (RGB, on [0, 1] values).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// Zero padding of the random crop.
pub const CROP_PADDING: usize = 4;

/// Random crop with [`CROP_PADDING`] zero pixels on each side, then a horizontal flip with
/// probability ½, of one interleaved 32×32 RGB image. Draws, in order: the crop's top
/// (0..=8), its left (0..=8), the flip.
pub fn augment(rgb: &[u8], seed: u64) -> Vec<u8> {
    debug_assert_eq!(rgb.len(), IMAGE_BYTES);
    let mut rng = SplitMix64::new(seed);
    let span = 2 * CROP_PADDING as u64 + 1;
    let top = rng.below(span) as isize - CROP_PADDING as isize;
    let left = rng.below(span) as isize - CROP_PADDING as isize;
    let flip = rng.uniform() < 0.5;
    let mut out = vec![0u8; IMAGE_BYTES];
    let side = SIDE as isize;
    for y in 0..side {
        let source_y = y + top;
        if !(0..side).contains(&source_y) {
            continue;
        }
        for x in 0..side {
            let cropped_x = if flip { side - 1 - x } else { x };
            let source_x = cropped_x + left;
            if !(0..side).contains(&source_x) {
                continue;
            }
            let dst = ((y * side + x) * 3) as usize;
            let src = ((source_y * side + source_x) * 3) as usize;
            out[dst..dst + 3].copy_from_slice(&rgb[src..src + 3]);
        }
    }
    out
}

/// Interleaved 32×32 images → a normalised `[N, 3, 32, 32]` f32 tensor on the CPU.
pub fn normalize(images: &[&[u8]]) -> Result<Tensor> {
    let plane = SIDE * SIDE;
    let mut values = vec![0f32; images.len() * 3 * plane];
    for (n, rgb) in images.iter().enumerate() {
        for channel in 0..3 {
            let scale = 1.0 / (255.0 * IMAGENET_STD[channel]);
            let shift = IMAGENET_MEAN[channel] / IMAGENET_STD[channel];
            let dst = &mut values[(n * 3 + channel) * plane..(n * 3 + channel + 1) * plane];
            for (pixel, value) in dst.iter_mut().enumerate() {
                *value = f32::from(rgb[pixel * 3 + channel]) * scale - shift;
            }
        }
    }
    Ok(Tensor::from_vec(
        values,
        (images.len(), 3, SIDE, SIDE),
        &Device::Cpu,
    )?)
}

/// Moves a normalised batch to `device`, upsamples it to `size`×`size` (bilinear) and casts it
/// to `dtype`.
pub fn to_model_input(xs: &Tensor, size: usize, device: &Device, dtype: DType) -> Result<Tensor> {
    let xs = xs.to_device(device)?;
    let xs = if xs.dim(2)? == size && xs.dim(3)? == size {
        xs
    } else {
        resize_bilinear(&xs, (size, size), false)?
    };
    Ok(xs.to_dtype(dtype)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Vec<u8> {
        (0..IMAGE_BYTES).map(|i| (i / 3 % 251) as u8 + 1).collect()
    }

    #[test]
    fn augmentation_is_a_padded_crop_and_a_flip() {
        let image = ramp();
        let mut shifted = 0;
        let mut flipped = 0;
        for seed in 0..200 {
            let out = augment(&image, seed);
            assert_eq!(out, augment(&image, seed), "same seed, same bytes");
            // Recover the draws and check every pixel against the rule.
            let mut rng = SplitMix64::new(seed);
            let top = rng.below(9) as isize - 4;
            let left = rng.below(9) as isize - 4;
            let flip = rng.uniform() < 0.5;
            shifted += usize::from(top != 0 || left != 0);
            flipped += usize::from(flip);
            for y in 0..32isize {
                for x in 0..32isize {
                    let cx = if flip { 31 - x } else { x };
                    let (sy, sx) = (y + top, cx + left);
                    let expected = if (0..32).contains(&sy) && (0..32).contains(&sx) {
                        image[((sy * 32 + sx) * 3) as usize]
                    } else {
                        0
                    };
                    assert_eq!(out[((y * 32 + x) * 3) as usize], expected);
                }
            }
        }
        assert!(
            shifted > 150 && (70..130).contains(&flipped),
            "{shifted} {flipped}"
        );
    }

    #[test]
    fn normalisation_uses_imagenet_statistics_and_resizing_keeps_constants() {
        let white = vec![255u8; IMAGE_BYTES];
        let xs = normalize(&[&white]).unwrap();
        assert_eq!(xs.dims(), [1, 3, 32, 32]);
        let v: Vec<f32> = xs.flatten_all().unwrap().to_vec1().unwrap();
        for channel in 0..3 {
            let expected = (1.0 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel];
            assert!((v[channel * 1024] - expected).abs() < 1e-5);
        }
        let big = to_model_input(&xs, 64, &Device::Cpu, DType::F32).unwrap();
        assert_eq!(big.dims(), [1, 3, 64, 64]);
        let v: Vec<f32> = big.flatten_all().unwrap().to_vec1().unwrap();
        let expected = (1.0 - IMAGENET_MEAN[2]) / IMAGENET_STD[2];
        assert!((v[2 * 4096 + 100] - expected).abs() < 1e-5);
    }
}
