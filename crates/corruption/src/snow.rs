//! snow: a zoomed, thresholded and motion-blurred random snow layer, added twice (once turned
//! by 180°) to a whitened image.
//!
//! Draws, in the references' order ([`draw_snow`]): the field
//! `np.random.normal(loc, scale, (H, W))` in C order, then the blur angle
//! `np.random.uniform(-135, -45)`. The rest ([`snow_with_draws`]) is deterministic:
//!
//! 1. The snow layer: `clipped_zoom(field, zoom)`, values below `threshold` set to 0, clipped
//!    to [0, 1], then motion-blurred, in one of two ways:
//!    - imagecorruptions: its numpy `_motion_blur` on the whole zoomed layer (which can be a few
//!      pixels larger than the image: the layer is cropped to `H×W` only after the blur), then
//!      `np.round(layer · 255).astype(uint8) / 255`;
//!    - ImageNet-C / CIFAR-10-C: the centrally trimmed `H×W` layer is written as an 8-bit PNG
//!      (`uint8(layer · 255)`, truncating), blurred by ImageMagick's `MotionBlurImage` through
//!      Wand, read back as 8-bit and divided by 255.
//! 2. With `x = image / 255` in float32 and `grey = cv2.cvtColor(x, RGB2GRAY)` (float32, the
//!    exact arithmetic of [`crate::cv::rgb_to_gray_f32`]):
//!    `x = blend · x + (1 − blend) · max(x, grey · 1.5 + 0.5)` in float32, and the output is
//!    `uint8(clip(x + layer + rot90(layer, 2), 0, 1) · 255)` in float64.
//!
//! Both references hard-code nothing that breaks on other sizes except the ImageNet-C /
//! CIFAR-10-C `reshape(224, 224, 1)` / `reshape(32, 32, 1)` and their square crop in
//! `clipped_zoom`; this port uses the image's own height and width there (identical on the
//! references' square sizes). Every size from 1×1 works: the zoomed crop is at least one pixel
//! and the motion blur stops adding copies once a shift reaches the layer's size, as the
//! reference's does. Below 32 pixels, where `imagecorruptions.corrupt` refuses the image, the
//! imagecorruptions flavor equals its own `snow` function called directly (checked on random
//! sizes down to 1×1).

use image::RgbImage;

use crate::array::{Array3, truncate_u8};
use crate::cv::rgb_to_gray_f32;
use crate::filters::motion::{motion_blur_imagemagick, motion_blur_numpy};
use crate::filters::ndimage::{ClippedZoom, clipped_zoom, crop, zoom_order1};
use crate::{Flavor, RandomState, Severity};

/// One row of the reference's parameter table.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Parameters {
    loc: f64,
    scale: f64,
    zoom: f64,
    threshold: f64,
    blur_radius: usize,
    blur_sigma: f64,
    blend: f64,
}

fn parameters(flavor: Flavor, severity: Severity) -> Parameters {
    const fn row(
        loc: f64,
        scale: f64,
        zoom: f64,
        threshold: f64,
        blur_radius: usize,
        blur_sigma: f64,
        blend: f64,
    ) -> Parameters {
        Parameters {
            loc,
            scale,
            zoom,
            threshold,
            blur_radius,
            blur_sigma,
            blend,
        }
    }
    const IMAGENET: [Parameters; 5] = [
        row(0.1, 0.3, 3.0, 0.5, 10, 4.0, 0.8),
        row(0.2, 0.3, 2.0, 0.5, 12, 4.0, 0.7),
        row(0.55, 0.3, 4.0, 0.9, 12, 8.0, 0.7),
        row(0.55, 0.3, 4.5, 0.85, 12, 8.0, 0.65),
        row(0.55, 0.3, 2.5, 0.85, 12, 12.0, 0.55),
    ];
    const CIFAR: [Parameters; 5] = [
        row(0.1, 0.2, 1.0, 0.6, 8, 3.0, 0.95),
        row(0.1, 0.2, 1.0, 0.5, 10, 4.0, 0.9),
        row(0.15, 0.3, 1.75, 0.55, 10, 4.0, 0.9),
        row(0.25, 0.3, 2.25, 0.6, 12, 6.0, 0.85),
        row(0.3, 0.3, 1.25, 0.65, 14, 12.0, 0.8),
    ];
    match flavor {
        Flavor::ImageCorruptions | Flavor::ImageNetC => IMAGENET[severity.index()],
        Flavor::CifarC => CIFAR[severity.index()],
    }
}

/// The random inputs of snow: the normal field (one channel, image-sized) and the blur angle
/// in degrees.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SnowDraws {
    pub field: Array3<f64>,
    pub angle: f64,
}

/// Draws the field and then the angle, as the references do.
pub(crate) fn draw_snow(
    height: usize,
    width: usize,
    severity: Severity,
    flavor: Flavor,
    rng: &mut RandomState,
) -> SnowDraws {
    let p = parameters(flavor, severity);
    let field = Array3 {
        height,
        width,
        channels: 1,
        data: (0..height * width)
            .map(|_| rng.normal(p.loc, p.scale))
            .collect(),
    };
    let angle = rng.uniform(-135.0, -45.0);
    SnowDraws { field, angle }
}

/// snow with the reference's draws.
pub(crate) fn snow(
    image: &RgbImage,
    severity: Severity,
    flavor: Flavor,
    rng: &mut RandomState,
) -> RgbImage {
    let draws = draw_snow(
        image.height() as usize,
        image.width() as usize,
        severity,
        flavor,
        rng,
    );
    snow_with_draws(image, severity, flavor, &draws)
}

/// `v < threshold → 0`, then `np.clip(v, 0, 1)`.
fn threshold_and_clip(layer: &mut Array3<f64>, threshold: f64) {
    for v in &mut layer.data {
        if *v < threshold {
            *v = 0.0;
        }
        *v = v.clamp(0.0, 1.0);
    }
}

/// The blurred snow layer in [0, 1], `H×W`, row-major.
fn snow_layer(
    height: usize,
    width: usize,
    p: Parameters,
    flavor: Flavor,
    draws: &SnowDraws,
) -> Vec<f64> {
    match flavor {
        Flavor::ImageCorruptions => {
            // imagecorruptions' clipped_zoom returns the whole zoomed crop; snow blurs it
            // before slicing [:H, :W], so the blur sees the extra rows and columns.
            let crop_size = |n: usize| ((n as f64 / p.zoom).ceil() as usize).clamp(1, n);
            let (crop_h, crop_w) = (crop_size(height), crop_size(width));
            let cropped = crop(
                &draws.field,
                (height - crop_h) / 2,
                (width - crop_w) / 2,
                crop_h,
                crop_w,
            );
            let mut layer = zoom_order1(&cropped, p.zoom);
            threshold_and_clip(&mut layer, p.threshold);
            let blurred = motion_blur_numpy(&layer, p.blur_radius, p.blur_sigma, draws.angle);
            let mut out = Vec::with_capacity(height * width);
            for row in 0..height.min(blurred.height) {
                for col in 0..width.min(blurred.width) {
                    let v = blurred.data[row * blurred.width + col];
                    out.push(round_half_even_non_negative(v * 255.0) as u8 as f64 / 255.0);
                }
            }
            debug_assert_eq!(out.len(), height * width);
            out
        }
        Flavor::ImageNetC | Flavor::CifarC => {
            let mut layer = clipped_zoom(&draws.field, p.zoom, ClippedZoom::ImageNetC);
            threshold_and_clip(&mut layer, p.threshold);
            let bytes = Array3 {
                height: layer.height,
                width: layer.width,
                channels: 1,
                data: layer.data.iter().map(|&v| (v * 255.0) as u8).collect(),
            };
            let blurred = motion_blur_imagemagick(&bytes, p.blur_radius, p.blur_sigma, draws.angle);
            debug_assert_eq!((blurred.height, blurred.width), (height, width));
            blurred.data.iter().map(|&v| v as f64 / 255.0).collect()
        }
    }
}

/// `np.round(v)` (half to even) for `0 ≤ v < 2^52`, without SSE4.1's `roundsd` (the baseline
/// x86-64 target calls the C library for `round_ties_even`).
#[inline]
fn round_half_even_non_negative(v: f64) -> f64 {
    let floor = (v as u64) as f64;
    let fraction = v - floor;
    if fraction > 0.5 || (fraction == 0.5 && (floor as u64) & 1 == 1) {
        floor + 1.0
    } else {
        floor
    }
}

/// The deterministic part of snow, from the drawn field and angle.
pub(crate) fn snow_with_draws(
    image: &RgbImage,
    severity: Severity,
    flavor: Flavor,
    draws: &SnowDraws,
) -> RgbImage {
    let p = parameters(flavor, severity);
    let (height, width) = (image.height() as usize, image.width() as usize);
    let layer = snow_layer(height, width, p, flavor, draws);
    // x = image / 255 in float32, through a table (the same floats as the division).
    let unit: [f32; 256] = std::array::from_fn(|v| v as f32 / 255.0);
    let blend = p.blend as f32;
    let rest = (1.0 - p.blend) as f32;
    let mut out = RgbImage::new(image.width(), image.height());
    let rows = image
        .as_raw()
        .chunks_exact(3 * width)
        .zip(out.chunks_exact_mut(3 * width));
    for (row, (src_row, dst_row)) in rows.enumerate() {
        let flakes = &layer[row * width..][..width];
        let turned_row = &layer[(height - 1 - row) * width..][..width];
        let pixels = src_row.chunks_exact(3).zip(dst_row.chunks_exact_mut(3));
        for (col, (src, dst)) in pixels.enumerate() {
            let x = [
                unit[src[0] as usize],
                unit[src[1] as usize],
                unit[src[2] as usize],
            ];
            let whitened = rgb_to_gray_f32(x[0], x[1], x[2]) * 1.5 + 0.5;
            let snow = flakes[col];
            let turned = turned_row[width - 1 - col];
            for (d, &v) in dst.iter_mut().zip(&x) {
                let blended = blend * v + rest * v.max(whitened);
                *d = truncate_u8((blended as f64 + snow + turned).clamp(0.0, 1.0) * 255.0);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(height: usize, width: usize, value: f64, angle: f64) -> SnowDraws {
        SnowDraws {
            field: Array3::filled(height, width, 1, value),
            angle,
        }
    }

    #[test]
    fn without_flakes_the_image_is_only_whitened() {
        let image = RgbImage::from_fn(6, 5, |x, y| image::Rgb([x as u8 * 40, y as u8 * 50, 10]));
        let severity = Severity::new(3).unwrap();
        for flavor in Flavor::ALL {
            let out = snow_with_draws(&image, severity, flavor, &draws(5, 6, -1.0, -90.0));
            let p = parameters(flavor, severity);
            for (o, i) in out.pixels().zip(image.pixels()) {
                let [r, g, b] = i.0.map(|v| v as f32 / 255.0);
                let whitened = rgb_to_gray_f32(r, g, b) * 1.5 + 0.5;
                for (channel, &v) in [r, g, b].iter().enumerate() {
                    let blended = p.blend as f32 * v + (1.0 - p.blend) as f32 * v.max(whitened);
                    let expected = (blended as f64).clamp(0.0, 1.0) * 255.0;
                    assert_eq!(o.0[channel], expected as u8, "{flavor}");
                }
            }
        }
    }

    #[test]
    fn a_full_snow_layer_whites_out_the_image() {
        let image = RgbImage::from_pixel(16, 16, image::Rgb([0, 0, 0]));
        for flavor in Flavor::ALL {
            let out = snow_with_draws(&image, Severity::ALL[0], flavor, &draws(16, 16, 1.0, -60.0));
            assert!(out.pixels().all(|p| p.0 == [255, 255, 255]), "{flavor}");
        }
    }

    #[test]
    fn the_layer_is_added_twice_turned_by_half_a_turn() {
        // One bright flake in the middle of a dark field: the output is symmetric under 180°.
        let image = RgbImage::from_pixel(33, 21, image::Rgb([20, 20, 20]));
        let mut d = draws(21, 33, -1.0, -90.0);
        d.field.data[10 * 33 + 16] = 1.0;
        for flavor in Flavor::ALL {
            let out = snow_with_draws(&image, Severity::ALL[1], flavor, &d);
            for (x, y, p) in out.enumerate_pixels() {
                assert_eq!(p, out.get_pixel(32 - x, 20 - y), "{flavor} at ({x}, {y})");
            }
        }
    }

    #[test]
    fn rounding_is_numpys_half_to_even() {
        for v in [
            0.0, 0.5, 1.5, 2.5, 254.5, 255.0, 3.499_999, 3.500_001, 7.2, 1e-300,
        ] {
            assert_eq!(
                round_half_even_non_negative(v),
                f64::round_ties_even(v),
                "{v}"
            );
        }
        for i in 0..100_000 {
            let v = i as f64 * 0.002_55;
            assert_eq!(round_half_even_non_negative(v), v.round_ties_even(), "{v}");
        }
    }

    #[test]
    fn every_size_down_to_one_pixel_works() {
        let mut rng = RandomState::new(4);
        for (w, h) in [(1, 1), (2, 1), (1, 3), (5, 7), (40, 2)] {
            let image = RgbImage::from_pixel(w, h, image::Rgb([128, 64, 32]));
            for flavor in Flavor::ALL {
                for severity in Severity::ALL {
                    assert_eq!(
                        snow(&image, severity, flavor, &mut rng).dimensions(),
                        (w, h)
                    );
                }
            }
        }
    }
}
