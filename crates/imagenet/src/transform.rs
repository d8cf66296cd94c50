//! The ImageNet evaluation transform of torchvision and timm: resize the shorter side, centre
//! crop, `ToTensor`, `Normalize` with the ImageNet mean and standard deviation.
//!
//! The resize is Pillow's `Image.resize` (what `transforms.Resize` calls on a PIL image), not
//! PyTorch's tensor interpolation: a separable two-pass convolution whose filter support is
//! widened by the downscale factor (so downscaling antialiases), with Pillow's 8-bit
//! arithmetic reproduced exactly (`src/libImaging/Resample.c`):
//!
//! - for each output coordinate `i`, `center = (i + ½)·scale` with `scale = in / out`, the
//!   filter stretched by `max(scale, 1)`, taps from `trunc(center − support + ½)` to
//!   `trunc(center + support + ½)` clamped to the image, weights
//!   `filter((j − center + ½) / max(scale, 1))` normalised to sum 1;
//! - the weights become 22-bit fixed point, `trunc(w·2²² ± ½)` (away from zero);
//! - each output value is `(2²¹ + Σ pixel·weight) >> 22` (an arithmetic shift), clipped to
//!   0..=255;
//! - the horizontal pass runs first and its output is stored as 8-bit before the vertical pass;
//!   a pass whose size does not change is skipped.
//!
//! The output size follows torchvision's `Resize(size)` with an integer size: the shorter side
//! becomes `size`, the longer `trunc(size · long / short)`. The crop is torchvision's
//! `CenterCrop`: offsets `int(round((h − crop) / 2))` with Python's round half to even.
//! [`EvalTransform::from_crop_pct`] computes the resize size as timm does,
//! `floor(crop / crop_pct)`.

use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::error::{ImageNetError, Result};

/// ImageNet channel means (RGB, on `[0, 1]` values).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Pillow's resampling filters that the evaluation transforms use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// `Image.BILINEAR` (triangle filter, support 1): torchvision's default, timm's for
    /// ResNets.
    Bilinear,
    /// `Image.BICUBIC` (Keys cubic with a = −0.5, support 2): timm's for Swin and ConvNeXt.
    Bicubic,
}

impl Interpolation {
    fn support(self) -> f64 {
        match self {
            Self::Bilinear => 1.0,
            Self::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Self::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Self::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

impl std::str::FromStr for Interpolation {
    type Err = ImageNetError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bilinear" => Ok(Self::Bilinear),
            "bicubic" => Ok(Self::Bicubic),
            other => Err(ImageNetError::config(
                "interpolation",
                format!("{other:?}: expected bilinear or bicubic"),
            )),
        }
    }
}

/// The evaluation transform: resize the shorter side to `resize`, centre crop `crop`,
/// normalise. Build it with [`EvalTransform::timm_default`], [`EvalTransform::new`] or
/// [`EvalTransform::from_crop_pct`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalTransform {
    /// The shorter side after resizing.
    pub resize: u32,
    /// The side of the square centre crop (at most `resize`).
    pub crop: u32,
    /// Pillow's resampling filter.
    pub interpolation: Interpolation,
    /// Channel means subtracted after scaling to `[0, 1]`.
    pub mean: [f32; 3],
    /// Channel standard deviations divided by.
    pub std: [f32; 3],
}

impl Default for EvalTransform {
    fn default() -> Self {
        Self::timm_default()
    }
}

impl EvalTransform {
    /// Resize 256, crop 224, bilinear, ImageNet mean and std: torchvision's classic
    /// evaluation and timm's default (`crop_pct` 0.875), the one ImageNet-C was made with.
    pub fn timm_default() -> Self {
        Self {
            resize: 256,
            crop: 224,
            interpolation: Interpolation::Bilinear,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// A transform with ImageNet normalisation; an error when a size is 0 or the crop is
    /// larger than the resized shorter side.
    pub fn new(resize: u32, crop: u32, interpolation: Interpolation) -> Result<Self> {
        if resize == 0 || crop == 0 {
            return Err(ImageNetError::config(
                "transform",
                format!("resize {resize} and crop {crop} must be positive"),
            ));
        }
        if crop > resize {
            return Err(ImageNetError::config(
                "transform",
                format!("the crop {crop} is larger than the resized shorter side {resize}"),
            ));
        }
        Ok(Self {
            resize,
            crop,
            interpolation,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        })
    }

    /// timm's rule: the resize size is `floor(crop / crop_pct)` (224 at 0.875 → 256, 224 at
    /// 0.9 → 248).
    pub fn from_crop_pct(crop: u32, crop_pct: f64, interpolation: Interpolation) -> Result<Self> {
        if !(crop_pct > 0.0 && crop_pct <= 1.0) {
            return Err(ImageNetError::config(
                "crop_pct",
                format!("{crop_pct}: expected a value in (0, 1]"),
            ));
        }
        let resize = (f64::from(crop) / crop_pct).floor();
        if resize > f64::from(u32::MAX) {
            return Err(ImageNetError::config(
                "crop_pct",
                format!("{crop_pct} makes the resize size overflow"),
            ));
        }
        Self::new(resize as u32, crop, interpolation)
    }

    /// The size `(width, height)` an image of `width × height` is resized to (torchvision's
    /// `Resize(self.resize)`: the shorter side becomes `resize`, the longer one
    /// `trunc(resize · long / short)`).
    pub fn resized_size(&self, width: u32, height: u32) -> (u32, u32) {
        let (short, long) = if width <= height {
            (width, height)
        } else {
            (height, width)
        };
        let short = short.max(1);
        // Python computes `int(size * long / short)` in float64.
        let new_long = (f64::from(self.resize) * f64::from(long) / f64::from(short)) as u32;
        if width <= height {
            (self.resize, new_long)
        } else {
            (new_long, self.resize)
        }
    }

    /// Resize then centre crop: the `crop × crop` 8-bit image that the network sees before
    /// normalisation (what ImageNet-C's corruptions were applied to). An error for an empty
    /// image.
    pub fn crop_u8(&self, image: &RgbImage) -> Result<RgbImage> {
        if image.width() == 0 || image.height() == 0 {
            return Err(ImageNetError::config(
                "image",
                format!("empty image {}×{}", image.width(), image.height()),
            ));
        }
        let (width, height) = self.resized_size(image.width(), image.height());
        let resized = pil_resize(image, width, height, self.interpolation);
        Ok(center_crop(&resized, self.crop))
    }

    /// `ToTensor` then `Normalize`: an 8-bit image → planar `[3, H, W]` f32 values,
    /// `(v / 255 − mean) / std` computed in f32 as torchvision does.
    pub fn normalize(&self, image: &RgbImage) -> Vec<f32> {
        normalize_planar(image, &self.mean, &self.std)
    }

    /// The whole transform on one decoded image: `[3, crop, crop]` f32 values, channel-major.
    pub fn apply(&self, image: &RgbImage) -> Result<Vec<f32>> {
        Ok(self.normalize(&self.crop_u8(image)?))
    }

    /// [`EvalTransform::apply`] as a `[3, crop, crop]` tensor on `device`.
    pub fn to_tensor(&self, image: &RgbImage, device: &Device) -> Result<Tensor> {
        let side = self.crop as usize;
        Ok(Tensor::from_vec(
            self.apply(image)?,
            (3, side, side),
            device,
        )?)
    }
}

/// `(v / 255 − mean) / std` per channel, planar output (`ToTensor` + `Normalize`).
pub fn normalize_planar(image: &RgbImage, mean: &[f32; 3], std: &[f32; 3]) -> Vec<f32> {
    let plane = image.width() as usize * image.height() as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, pixel) in image.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(pixel[c]) / 255.0 - mean[c]) / std[c];
        }
    }
    out
}

/// torchvision's `CenterCrop(size)` of an image at least `size` on each side: top
/// `int(round((h − size) / 2))`, left likewise, with Python's round half to even. Sides
/// smaller than `size` are cropped to the whole side (callers guarantee they are not).
pub fn center_crop(image: &RgbImage, size: u32) -> RgbImage {
    let offset = |full: u32| -> u32 {
        if full <= size {
            return 0;
        }
        let twice = full - size;
        // round(twice / 2) with ties to even: an odd difference is k + ½ → the even one of
        // k and k + 1.
        let k = twice / 2;
        if twice % 2 == 1 && k % 2 == 1 {
            k + 1
        } else {
            k
        }
    };
    let (left, top) = (offset(image.width()), offset(image.height()));
    let (width, height) = (size.min(image.width()), size.min(image.height()));
    image::imageops::crop_imm(image, left, top, width, height).to_image()
}

/// One pass's taps: for each output index, the first input index and the 22-bit weights.
struct Taps {
    first: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for resizing `in_size` to
/// `out_size` over the whole input.
fn taps(in_size: usize, out_size: usize, filter: Interpolation) -> Taps {
    // Pillow passes the box as floats; whole-image boxes are exact integers.
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    let inv = 1.0 / filter_scale;
    let mut first = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for i in 0..out_size {
        let center = (i as f64 + 0.5) * scale;
        // C's `(int)` truncates toward zero, as `as` does.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = xmax.saturating_sub(xmin);
        let mut k: Vec<f64> = (0..count)
            .map(|x| filter.weight(((x + xmin) as f64 - center + 0.5) * inv))
            .collect();
        let total: f64 = k.iter().sum();
        if total != 0.0 {
            for w in &mut k {
                *w /= total;
            }
        }
        let fixed = k
            .iter()
            .map(|&w| {
                let scaled = w * f64::from(1u32 << PRECISION_BITS);
                if w < 0.0 {
                    (scaled - 0.5) as i32
                } else {
                    (scaled + 0.5) as i32
                }
            })
            .collect();
        first.push(xmin);
        weights.push(fixed);
    }
    Taps { first, weights }
}

fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `Image.resize((width, height), filter)` of an 8-bit RGB image, bit for bit (see
/// the module documentation). A zero target size gives an empty image.
pub fn pil_resize(image: &RgbImage, width: u32, height: u32, filter: Interpolation) -> RgbImage {
    let (in_w, in_h) = (image.width() as usize, image.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    if (out_w, out_h) == (in_w, in_h) || out_w == 0 || out_h == 0 || in_w == 0 || in_h == 0 {
        return if (out_w, out_h) == (in_w, in_h) {
            image.clone()
        } else {
            RgbImage::new(width, height)
        };
    }
    let half = 1i32 << (PRECISION_BITS - 1);
    // Horizontal pass (Pillow skips it when the width does not change).
    let (mid, mid_w) = if out_w != in_w {
        let taps = taps(in_w, out_w, filter);
        let src = image.as_raw();
        let mut out = vec![0u8; out_w * in_h * 3];
        for y in 0..in_h {
            let row = &src[y * in_w * 3..(y + 1) * in_w * 3];
            for (x, (&first, weights)) in taps.first.iter().zip(&taps.weights).enumerate() {
                let mut acc = [half; 3];
                for (j, &w) in weights.iter().enumerate() {
                    let p = &row[(first + j) * 3..(first + j) * 3 + 3];
                    for c in 0..3 {
                        acc[c] += i32::from(p[c]) * w;
                    }
                }
                let dst = (y * out_w + x) * 3;
                for c in 0..3 {
                    out[dst + c] = clip8(acc[c]);
                }
            }
        }
        (out, out_w)
    } else {
        (image.as_raw().clone(), in_w)
    };
    // Vertical pass on the 8-bit intermediate.
    let out = if out_h != in_h {
        let taps = taps(in_h, out_h, filter);
        let mut out = vec![0u8; mid_w * out_h * 3];
        for (y, (&first, weights)) in taps.first.iter().zip(&taps.weights).enumerate() {
            for x in 0..mid_w {
                let mut acc = [half; 3];
                for (j, &w) in weights.iter().enumerate() {
                    let at = ((first + j) * mid_w + x) * 3;
                    for c in 0..3 {
                        acc[c] += i32::from(mid[at + c]) * w;
                    }
                }
                let dst = (y * mid_w + x) * 3;
                for c in 0..3 {
                    out[dst + c] = clip8(acc[c]);
                }
            }
        }
        out
    } else {
        mid
    };
    RgbImage::from_raw(width, height, out).expect("the buffer has width × height × 3 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resized_sizes_follow_torchvision() {
        let t = EvalTransform::timm_default();
        assert_eq!(t.resized_size(300, 257), (298, 256));
        assert_eq!(t.resized_size(257, 300), (256, 298));
        assert_eq!(t.resized_size(500, 375), (341, 256));
        assert_eq!(t.resized_size(200, 180), (284, 256));
        assert_eq!(t.resized_size(256, 256), (256, 256));
    }

    #[test]
    fn crop_pct_follows_timm() {
        let t = EvalTransform::from_crop_pct(224, 0.875, Interpolation::Bilinear).unwrap();
        assert_eq!((t.resize, t.crop), (256, 224));
        let t = EvalTransform::from_crop_pct(224, 0.9, Interpolation::Bicubic).unwrap();
        assert_eq!((t.resize, t.crop), (248, 224));
        assert!(EvalTransform::from_crop_pct(224, 0.0, Interpolation::Bilinear).is_err());
        assert!(EvalTransform::from_crop_pct(224, 1.5, Interpolation::Bilinear).is_err());
        let err = EvalTransform::new(200, 224, Interpolation::Bilinear).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
    }

    #[test]
    fn center_crop_rounds_half_to_even() {
        // 341 − 224 = 117: round(58.5) = 58 in Python.
        let image = RgbImage::from_fn(341, 256, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let crop = center_crop(&image, 224);
        assert_eq!(crop.get_pixel(0, 0), &image::Rgb([58, 16, 0]));
        // 227 − 224 = 3: round(1.5) = 2.
        let image = RgbImage::from_fn(227, 224, |x, _| image::Rgb([x as u8, 0, 0]));
        assert_eq!(center_crop(&image, 224).get_pixel(0, 0)[0], 2);
    }

    #[test]
    fn a_constant_image_stays_constant() {
        // The fixed-point weights of each output sum to 2²² up to rounding: a flat image must
        // come back flat for both filters, up and down.
        let image = RgbImage::from_pixel(301, 187, image::Rgb([200, 17, 255]));
        for filter in [Interpolation::Bilinear, Interpolation::Bicubic] {
            for (w, h) in [(256, 159), (500, 300), (7, 3)] {
                let out = pil_resize(&image, w, h, filter);
                assert!(out.pixels().all(|p| p == &image::Rgb([200, 17, 255])));
            }
        }
    }

    #[test]
    fn normalisation_is_torchvisions() {
        let image = RgbImage::from_pixel(2, 1, image::Rgb([0, 128, 255]));
        let values = normalize_planar(&image, &IMAGENET_MEAN, &IMAGENET_STD);
        assert_eq!(values.len(), 6);
        assert_eq!(values[0], (0.0 - 0.485) / 0.229);
        assert_eq!(values[2], (128.0f32 / 255.0 - 0.456) / 0.224);
        assert_eq!(values[5], (1.0 - 0.406) / 0.225);
    }
}
