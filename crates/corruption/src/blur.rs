//! The blur corruptions: defocus, glass, motion, zoom (benchmark) and gaussian blur (extra),
//! in the three flavors.
//!
//! Each follows its reference line by line on top of the exact primitives of
//! [`filters`](crate::filters):
//! - **defocus_blur**: `x/255` correlated per channel with `disk(radius, alias_blur)`
//!   (`cv2.filter2D`, `BORDER_REFLECT_101`). The disk is bit-exact; the correlation is computed
//!   to within a few ulps of the exact value because OpenCV's own result comes from an IPP DFT
//!   whose last bits cannot be reproduced (see [`correlate_unit_u8`]). The bytes agree with the
//!   reference on every golden case.
//! - **glass_blur**: `uint8(gaussian(x/255, σ)·255)`, then the reference's pixel "swaps", then
//!   `gaussian(·/255, σ)`. The Python swap assigns through numpy views, so it is a copy
//!   `x[h, w] ← x[h + dy, w + dx]`; rows run from `H − δ` down to `δ + 1`, columns likewise,
//!   with `(dx, dy) = randint(−δ, δ, size=2)`. All offsets are drawn first, in the reference
//!   order, then applied. The ImageNet-C and CIFAR-10-C code loop over fixed 224 / 32 sizes;
//!   here the loops use the image's own height and width (the same at those sizes).
//! - **motion_blur**: `angle = uniform(−45, 45)`; imagecorruptions uses its numpy kernel
//!   (float sum, truncated), ImageNet-C and CIFAR-10-C call ImageMagick (Q16 sum, rounded to a
//!   quantum, written as 8-bit PNG).
//! - **zoom_blur**: `x = float32(x/255)`, the mean of `x` and `clipped_zoom(x, z)` over the
//!   numpy `arange` of zoom factors (12 values for `arange(1, 1.11, .01)`), accumulated in
//!   float32; the flavors differ in `clipped_zoom` (top-left crop vs. central trim).
//! - **gaussian_blur**: `gaussian(x/255, σ, channel_axis=-1)`.
//!
//! Parameter tables are the references' own (reference/corruption-parameters.md):
//! imagecorruptions and ImageNet-C share the ImageNet tables, CIFAR-10-C has its own.
//!
//! Any size from 1×1 works: reflect-101 padding and scipy's boundary modes extend small
//! images, the glass loops are empty when `H ≤ 2δ`, and the numpy motion kernel stops adding
//! copies once a shift reaches the image size, as the references do on their own inputs.

use image::RgbImage;

use crate::array::{Array3, truncate_u8, unit_f32_to_rgb, unit_f64_to_rgb};
use crate::filters::motion::{motion_blur_imagemagick, motion_blur_numpy_u8};
use crate::filters::ndimage::{ClippedZoom, Mode, accumulate_clipped_zoom, gaussian_filter_rows};
use crate::filters::npmath::arange;
use crate::filters::opencv::{correlate_unit_u8, disk_kernel};
use crate::{Flavor, RandomState, Severity};

/// `np.array(x) / 255.` of 8-bit values, in float64.
fn unit_f64(values: &[u8]) -> Vec<f64> {
    values.iter().map(|&v| v as f64 / 255.0).collect()
}

/// scikit-image's `gaussian(values, σ, channel_axis=-1)` (mode `nearest`, truncate 4) on an
/// H×W×3 float64 image, each finished value passed through `convert` into a new 8-bit array.
fn gaussian_to_u8(
    values: &[f64],
    height: usize,
    width: usize,
    sigma: f64,
    convert: impl Fn(f64) -> u8,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len());
    gaussian_filter_rows(
        values,
        [height, width, 3],
        [sigma, sigma],
        Mode::Nearest,
        4.0,
        |_, row| out.extend(row.iter().map(|&v| convert(v))),
        |v| v,
    );
    out
}

/// `np.uint8(np.clip(x, 0, 1) * 255)`.
fn clip_to_u8(v: f64) -> u8 {
    truncate_u8(v.clamp(0.0, 1.0) * 255.0)
}

/// `(radius, alias_blur)` of the defocus disk.
fn defocus_params(severity: Severity, flavor: Flavor) -> (f64, f64) {
    const IMAGENET: [(f64, f64); 5] = [(3.0, 0.1), (4.0, 0.5), (6.0, 0.5), (8.0, 0.5), (10.0, 0.5)];
    const CIFAR: [(f64, f64); 5] = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)];
    match flavor {
        Flavor::ImageCorruptions | Flavor::ImageNetC => IMAGENET[severity.index()],
        Flavor::CifarC => CIFAR[severity.index()],
    }
}

/// defocus_blur: every channel of `x/255` correlated with the anti-aliased disk.
pub(crate) fn defocus_blur(image: &RgbImage, severity: Severity, flavor: Flavor) -> RgbImage {
    let (radius, alias_blur) = defocus_params(severity, flavor);
    let (size, kernel) = disk_kernel(radius, alias_blur);
    let src = Array3::from_rgb(image);
    let (height, width) = (src.height, src.width);
    let mut out = Array3::filled(height, width, 3, 0.0f64);
    let mut plane = vec![0u8; height * width];
    for channel in 0..3 {
        for (p, v) in plane.iter_mut().enumerate() {
            *v = src.data[p * 3 + channel];
        }
        let filtered = correlate_unit_u8(&plane, height, width, &kernel, size);
        for (p, v) in filtered.into_iter().enumerate() {
            out.data[p * 3 + channel] = v;
        }
    }
    unit_f64_to_rgb(&out)
}

/// `(sigma, max_delta, iterations)` of glass_blur.
fn glass_params(severity: Severity, flavor: Flavor) -> (f64, usize, usize) {
    const IMAGENET: [(f64, usize, usize); 5] = [
        (0.7, 1, 2),
        (0.9, 2, 1),
        (1.0, 2, 3),
        (1.1, 3, 2),
        (1.5, 4, 2),
    ];
    const CIFAR: [(f64, usize, usize); 5] = [
        (0.05, 1, 1),
        (0.25, 1, 1),
        (0.4, 1, 1),
        (0.25, 1, 2),
        (0.4, 1, 2),
    ];
    match flavor {
        Flavor::ImageCorruptions | Flavor::ImageNetC => IMAGENET[severity.index()],
        Flavor::CifarC => CIFAR[severity.index()],
    }
}

/// The pixel offsets `(dx, dy)` of glass_blur, one per visited pixel, in the reference's loop
/// order (iterations, then rows from `H − δ` down to `δ + 1`, then columns likewise), each
/// drawn as `np.random.randint(−δ, δ, size=(2,))`.
pub(crate) fn glass_offsets(
    rng: &mut RandomState,
    height: usize,
    width: usize,
    max_delta: usize,
    iterations: usize,
) -> Vec<(i8, i8)> {
    let rows = height.saturating_sub(2 * max_delta);
    let cols = width.saturating_sub(2 * max_delta);
    let delta = max_delta as i64;
    let mut offsets = Vec::with_capacity(iterations * rows * cols);
    for _ in 0..iterations * rows * cols {
        let dx = rng.randint(-delta, delta) as i8;
        let dy = rng.randint(-delta, delta) as i8;
        offsets.push((dx, dy));
    }
    offsets
}

/// The deterministic core of glass_blur: blur, apply the drawn `offsets` (as
/// [`glass_offsets`] orders them), blur again.
pub(crate) fn glass_blur_with_offsets(
    image: &RgbImage,
    severity: Severity,
    flavor: Flavor,
    offsets: &[(i8, i8)],
) -> RgbImage {
    let (sigma, max_delta, iterations) = glass_params(severity, flavor);
    let (height, width) = (image.height() as usize, image.width() as usize);
    // np.uint8(gaussian(x / 255., sigma) * 255): truncation.
    let mut pixels = gaussian_to_u8(&unit_f64(image.as_raw()), height, width, sigma, |v| {
        truncate_u8(v * 255.0)
    });
    let rows = height.saturating_sub(2 * max_delta);
    let cols = width.saturating_sub(2 * max_delta);
    debug_assert_eq!(offsets.len(), iterations * rows * cols);
    let mut next = offsets.iter();
    for _ in 0..iterations {
        for h in (max_delta + 1..=height.saturating_sub(max_delta)).rev() {
            for w in (max_delta + 1..=width.saturating_sub(max_delta)).rev() {
                let Some(&(dx, dy)) = next.next() else {
                    break;
                };
                let hp = (h as i64 + dy as i64) as usize;
                let wp = (w as i64 + dx as i64) as usize;
                let src = (hp * width + wp) * 3;
                let dst = (h * width + w) * 3;
                pixels.copy_within(src..src + 3, dst);
            }
        }
    }
    let out = gaussian_to_u8(&unit_f64(&pixels), height, width, sigma, clip_to_u8);
    RgbImage::from_raw(width as u32, height as u32, out).expect("an H×W×3 buffer")
}

/// glass_blur: draws the offsets from `rng`, then [`glass_blur_with_offsets`].
pub(crate) fn glass_blur(
    image: &RgbImage,
    severity: Severity,
    flavor: Flavor,
    rng: &mut RandomState,
) -> RgbImage {
    let (_, max_delta, iterations) = glass_params(severity, flavor);
    let offsets = glass_offsets(
        rng,
        image.height() as usize,
        image.width() as usize,
        max_delta,
        iterations,
    );
    glass_blur_with_offsets(image, severity, flavor, &offsets)
}

/// `(radius, sigma)` of motion_blur.
fn motion_params(severity: Severity, flavor: Flavor) -> (usize, f64) {
    const IMAGENET: [(usize, f64); 5] = [(10, 3.0), (15, 5.0), (15, 8.0), (15, 12.0), (20, 15.0)];
    const CIFAR: [(usize, f64); 5] = [(6, 1.0), (6, 1.5), (6, 2.0), (8, 2.0), (9, 2.5)];
    match flavor {
        Flavor::ImageCorruptions | Flavor::ImageNetC => IMAGENET[severity.index()],
        Flavor::CifarC => CIFAR[severity.index()],
    }
}

/// The deterministic core of motion_blur for a drawn `angle` (degrees).
pub(crate) fn motion_blur_with_angle(
    image: &RgbImage,
    severity: Severity,
    flavor: Flavor,
    angle: f64,
) -> RgbImage {
    let (radius, sigma) = motion_params(severity, flavor);
    let x = Array3::from_rgb(image);
    match flavor {
        Flavor::ImageCorruptions => motion_blur_numpy_u8(&x, radius, sigma, angle).into_rgb(),
        Flavor::ImageNetC | Flavor::CifarC => {
            motion_blur_imagemagick(&x, radius, sigma, angle).into_rgb()
        }
    }
}

/// motion_blur: `angle = np.random.uniform(−45, 45)`, then [`motion_blur_with_angle`].
pub(crate) fn motion_blur(
    image: &RgbImage,
    severity: Severity,
    flavor: Flavor,
    rng: &mut RandomState,
) -> RgbImage {
    let angle = rng.uniform(-45.0, 45.0);
    motion_blur_with_angle(image, severity, flavor, angle)
}

/// The zoom factors of zoom_blur: numpy's `arange` of the reference tables.
pub(crate) fn zoom_factors(severity: Severity, flavor: Flavor) -> Vec<f64> {
    const IMAGENET: [(f64, f64, f64); 5] = [
        (1.0, 1.11, 0.01),
        (1.0, 1.16, 0.01),
        (1.0, 1.21, 0.02),
        (1.0, 1.26, 0.02),
        (1.0, 1.31, 0.03),
    ];
    const CIFAR: [(f64, f64, f64); 5] = [
        (1.0, 1.06, 0.01),
        (1.0, 1.11, 0.01),
        (1.0, 1.16, 0.01),
        (1.0, 1.21, 0.01),
        (1.0, 1.26, 0.01),
    ];
    let (start, stop, step) = match flavor {
        Flavor::ImageCorruptions | Flavor::ImageNetC => IMAGENET[severity.index()],
        Flavor::CifarC => CIFAR[severity.index()],
    };
    arange(start, stop, step)
}

/// zoom_blur: `(x + Σ_z clipped_zoom(x, z)) / (n + 1)` in float32.
pub(crate) fn zoom_blur(image: &RgbImage, severity: Severity, flavor: Flavor) -> RgbImage {
    let factors = zoom_factors(severity, flavor);
    let variant = match flavor {
        Flavor::ImageCorruptions => ClippedZoom::ImageCorruptions,
        Flavor::ImageNetC | Flavor::CifarC => ClippedZoom::ImageNetC,
    };
    // (np.array(x) / 255.).astype(np.float32): divide in double, then round to float.
    let x = Array3::from_rgb(image).map(|v| (v as f64 / 255.0) as f32);
    let mut sum = Array3::filled(x.height, x.width, x.channels, 0.0f32);
    for &zoom in &factors {
        // The references add a smaller layer into the top-left corner.
        accumulate_clipped_zoom(&mut sum, &x, zoom, variant);
    }
    let count = (factors.len() + 1) as f32;
    let mean = Array3 {
        height: x.height,
        width: x.width,
        channels: x.channels,
        data: x
            .data
            .iter()
            .zip(&sum.data)
            .map(|(&a, &b)| (a + b) / count)
            .collect(),
    };
    unit_f32_to_rgb(&mean)
}

/// The sigma of gaussian_blur.
fn gaussian_sigma(severity: Severity, flavor: Flavor) -> f64 {
    const IMAGENET: [f64; 5] = [1.0, 2.0, 3.0, 4.0, 6.0];
    const CIFAR: [f64; 5] = [0.4, 0.6, 0.7, 0.8, 1.0];
    match flavor {
        Flavor::ImageCorruptions | Flavor::ImageNetC => IMAGENET[severity.index()],
        Flavor::CifarC => CIFAR[severity.index()],
    }
}

/// gaussian_blur: scikit-image's gaussian of `x/255` per channel (mode `nearest`, truncate 4).
pub(crate) fn gaussian_blur(image: &RgbImage, severity: Severity, flavor: Flavor) -> RgbImage {
    let sigma = gaussian_sigma(severity, flavor);
    let (height, width) = (image.height() as usize, image.width() as usize);
    let out = gaussian_to_u8(&unit_f64(image.as_raw()), height, width, sigma, clip_to_u8);
    RgbImage::from_raw(width as u32, height as u32, out).expect("an H×W×3 buffer")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::ndimage::gaussian_filter;

    fn gradient(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 11 % 256) as u8,
                ((x + y) * 5 % 256) as u8,
            ])
        })
    }

    #[test]
    fn glass_draws_two_integers_per_visited_pixel() {
        let mut rng = RandomState::new(3);
        let offsets = glass_offsets(&mut rng, 10, 12, 2, 3);
        assert_eq!(offsets.len(), 3 * 6 * 8);
        assert!(
            offsets
                .iter()
                .all(|&(dx, dy)| (-2..2).contains(&dx) && (-2..2).contains(&dy))
        );
        let mut again = RandomState::new(3);
        let first: Vec<i64> = (0..4).map(|_| again.randint(-2, 2)).collect();
        assert_eq!(
            first,
            vec![
                offsets[0].0 as i64,
                offsets[0].1 as i64,
                offsets[1].0 as i64,
                offsets[1].1 as i64
            ]
        );
    }

    #[test]
    fn glass_with_zero_offsets_is_two_gaussians() {
        let image = gradient(9, 7);
        let severity = Severity::new(2).unwrap();
        let (_, delta, iterations) = glass_params(severity, Flavor::ImageCorruptions);
        let n = iterations * (7 - 2 * delta) * (9 - 2 * delta);
        let out =
            glass_blur_with_offsets(&image, severity, Flavor::ImageCorruptions, &vec![(0, 0); n]);
        let x = crate::array::to_unit_f64(&image);
        let once = gaussian_filter(&x, [0.9, 0.9], Mode::Nearest, 4.0).map(|v| (v * 255.0) as u8);
        let twice = gaussian_filter(
            &once.map(|v| v as f64 / 255.0),
            [0.9, 0.9],
            Mode::Nearest,
            4.0,
        );
        assert_eq!(out, unit_f64_to_rgb(&twice));
    }

    #[test]
    fn zoom_factor_counts_follow_numpy() {
        let counts: Vec<usize> = Severity::ALL
            .iter()
            .map(|&s| zoom_factors(s, Flavor::ImageCorruptions).len())
            .collect();
        assert_eq!(counts, vec![12, 16, 11, 13, 11]);
        let cifar: Vec<usize> = Severity::ALL
            .iter()
            .map(|&s| zoom_factors(s, Flavor::CifarC).len())
            .collect();
        assert_eq!(cifar, vec![7, 12, 16, 21, 26]);
    }

    #[test]
    fn every_blur_handles_tiny_images() {
        for (w, h) in [(1, 1), (5, 7), (2, 3), (40, 1)] {
            let image = gradient(w, h);
            for flavor in Flavor::ALL {
                for severity in Severity::ALL {
                    let mut rng = RandomState::new(7);
                    for out in [
                        defocus_blur(&image, severity, flavor),
                        glass_blur(&image, severity, flavor, &mut rng),
                        motion_blur(&image, severity, flavor, &mut rng),
                        zoom_blur(&image, severity, flavor),
                        gaussian_blur(&image, severity, flavor),
                    ] {
                        assert_eq!(out.dimensions(), (w, h));
                    }
                }
            }
        }
    }

    #[test]
    fn constant_images_stay_nearly_constant() {
        let image = RgbImage::from_pixel(40, 33, image::Rgb([90, 90, 90]));
        for flavor in Flavor::ALL {
            for severity in Severity::ALL {
                let mut rng = RandomState::new(1);
                for out in [
                    glass_blur(&image, severity, flavor, &mut rng),
                    motion_blur(&image, severity, flavor, &mut rng),
                    zoom_blur(&image, severity, flavor),
                    gaussian_blur(&image, severity, flavor),
                ] {
                    assert!(
                        out.pixels().all(|p| p.0[0].abs_diff(90) <= 1),
                        "{flavor} {severity}"
                    );
                }
            }
        }
    }
}
