//! elastic_transform in its two reference variants.
//!
//! - **imagecorruptions** (any size): two displacement fields, each a uniform field
//!   `U(−0.005·H, 0.005·H)` (both use the height, as the reference does) smoothed by
//!   scikit-image's gaussian with σ = `(0.01·H, 0.01·W)`, `mode='reflect'`, `truncate=3`,
//!   scaled by α and cast to float32; the image (float32 `x/255`) is sampled at
//!   `(row + dy, col + dx)` with `map_coordinates(order=1, mode='reflect')`. No affine step.
//! - **ImageNet-C / CIFAR-10-C**: first a random affine warp — three points around the centre
//!   (`H//2, W//2 ± min(H, W)//3`, in the reference's coordinate order) jittered by
//!   `U(−c, c)` in float32, `cv2.getAffineTransform`, `cv2.warpAffine` (bilinear,
//!   `BORDER_REFLECT_101`) — then displacement fields from `U(−1, 1)` smoothed with one σ for
//!   both axes and scaled by α. The tables were written for 224 (with 244 in place of 224, as
//!   the code notes) and 32 pixels; they are applied unchanged at other sizes.
//!
//! Random draws, in reference order: (ImageNet-C only) the 6 affine jitters, then the H·W
//! uniforms of `dx`, then those of `dy`. [`ElasticDraws`] holds them so that the deterministic
//! core [`elastic_with_draws`] can be tested on its own.
//!
//! Degenerate sizes: when `min(H, W) < 3` the affine points coincide, OpenCV's solver reports
//! a singular system and `getAffineTransform` returns zeros; the port does the same, which
//! makes the warp sample the top-left pixel everywhere, exactly as OpenCV would.

use image::RgbImage;

use crate::array::{Array3, unit_f32_to_rgb};
use crate::filters::ndimage::{Mode, gaussian_filter_rows, map_coordinates_order1_with};
use crate::filters::opencv::{get_affine_transform, warp_affine_linear_f32};
use crate::{Flavor, RandomState, Severity};

/// The parameters of one severity: displacement scale α, smoothing σ per axis (rows,
/// columns), uniform range of the raw fields, and the affine jitter (ImageNet-C only).
#[derive(Debug, Clone, Copy, PartialEq)]
struct ElasticParams {
    alpha: f64,
    sigma: [f64; 2],
    field_range: f64,
    affine_jitter: Option<f64>,
}

fn params(severity: Severity, flavor: Flavor, height: usize, width: usize) -> ElasticParams {
    let i = severity.index();
    match flavor {
        Flavor::ImageCorruptions => {
            let alpha = [
                250.0 * 0.05,
                250.0 * 0.065,
                250.0 * 0.085,
                250.0 * 0.1,
                250.0 * 0.12,
            ][i];
            ElasticParams {
                alpha,
                sigma: [height as f64 * 0.01, width as f64 * 0.01],
                field_range: height as f64 * 0.005,
                affine_jitter: None,
            }
        }
        Flavor::ImageNetC => {
            let table = [
                (244.0 * 2.0, 244.0 * 0.7, 244.0 * 0.1),
                (244.0 * 2.0, 244.0 * 0.08, 244.0 * 0.2),
                (244.0 * 0.05, 244.0 * 0.01, 244.0 * 0.02),
                (244.0 * 0.07, 244.0 * 0.01, 244.0 * 0.02),
                (244.0 * 0.12, 244.0 * 0.01, 244.0 * 0.02),
            ];
            let (alpha, sigma, jitter) = table[i];
            ElasticParams {
                alpha,
                sigma: [sigma, sigma],
                field_range: 1.0,
                affine_jitter: Some(jitter),
            }
        }
        Flavor::CifarC => {
            const IMSIZE: f64 = 32.0;
            let table = [
                (IMSIZE * 0.0, IMSIZE * 0.0, IMSIZE * 0.08),
                (IMSIZE * 0.05, IMSIZE * 0.2, IMSIZE * 0.07),
                (IMSIZE * 0.08, IMSIZE * 0.06, IMSIZE * 0.06),
                (IMSIZE * 0.1, IMSIZE * 0.04, IMSIZE * 0.05),
                (IMSIZE * 0.1, IMSIZE * 0.03, IMSIZE * 0.03),
            ];
            let (alpha, sigma, jitter) = table[i];
            ElasticParams {
                alpha,
                sigma: [sigma, sigma],
                field_range: 1.0,
                affine_jitter: Some(jitter),
            }
        }
    }
}

/// The random inputs of one elastic transform.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ElasticDraws {
    /// The six affine jitters (ImageNet-C / CIFAR-10-C), already cast to float32.
    pub affine: Option<[f32; 6]>,
    /// The raw uniform field of the column displacement, H·W values row-major.
    pub dx: Vec<f64>,
    /// The raw uniform field of the row displacement.
    pub dy: Vec<f64>,
}

/// Draws [`ElasticDraws`] from `rng` in the reference's order.
pub(crate) fn elastic_draws(
    rng: &mut RandomState,
    severity: Severity,
    flavor: Flavor,
    height: usize,
    width: usize,
) -> ElasticDraws {
    let p = params(severity, flavor, height, width);
    let affine = p.affine_jitter.map(|jitter| {
        let mut values = [0.0f32; 6];
        for v in &mut values {
            *v = rng.uniform(-jitter, jitter) as f32;
        }
        values
    });
    let mut field = || -> Vec<f64> {
        (0..height * width)
            .map(|_| rng.uniform(-p.field_range, p.field_range))
            .collect()
    };
    let dx = field();
    let dy = field();
    ElasticDraws { affine, dx, dy }
}

/// The three source points of the ImageNet-C affine step, as the reference builds them in
/// float32: `center_square = float32([H, W]) // 2`, `square_size = min(H, W) // 3`.
fn affine_points(height: usize, width: usize) -> [[f32; 2]; 3] {
    let center = [(height as f32 / 2.0).floor(), (width as f32 / 2.0).floor()];
    let square = (height.min(width) / 3) as f32;
    [
        [center[0] + square, center[1] + square],
        [center[0] + square, center[1] - square],
        [center[0] - square, center[1] - square],
    ]
}

/// A displacement field: `(gaussian(raw, σ, mode='reflect', truncate=3) · α).astype(float32)`.
fn displacement(raw: &[f64], height: usize, width: usize, sigma: [f64; 2], alpha: f64) -> Vec<f32> {
    let mut field = Vec::with_capacity(raw.len());
    gaussian_filter_rows(
        raw,
        [height, width, 1],
        sigma,
        Mode::Reflect,
        3.0,
        |_, row| field.extend(row.iter().map(|&v| (v * alpha) as f32)),
        |v| v,
    );
    field
}

/// The deterministic core of elastic_transform for given draws.
pub(crate) fn elastic_with_draws(
    image: &RgbImage,
    severity: Severity,
    flavor: Flavor,
    draws: &ElasticDraws,
) -> RgbImage {
    let (height, width) = (image.height() as usize, image.width() as usize);
    let p = params(severity, flavor, height, width);
    // np.array(image, dtype=np.float32) / 255.
    let mut x = Array3::from_rgb(image).map(|v| v as f32 / 255.0);
    if let Some(jitter) = draws.affine {
        let src = affine_points(height, width);
        let mut dst = src;
        for (k, point) in dst.iter_mut().enumerate() {
            point[0] += jitter[2 * k];
            point[1] += jitter[2 * k + 1];
        }
        // OpenCV returns a zero matrix when the points are degenerate.
        let matrix = get_affine_transform(src, dst).unwrap_or([0.0; 6]);
        x = warp_affine_linear_f32(&x, matrix);
    }
    let dx = displacement(&draws.dx, height, width, p.sigma, p.alpha);
    let dy = displacement(&draws.dy, height, width, p.sigma, p.alpha);
    // (y + dy, x + dx): integer grid plus float32 displacement, summed in double.
    let sampled = map_coordinates_order1_with(&x, Mode::Reflect, |p| {
        (
            (p / width) as f64 + dy[p] as f64,
            (p % width) as f64 + dx[p] as f64,
        )
    });
    unit_f32_to_rgb(&sampled)
}

/// elastic_transform: draws from `rng`, then [`elastic_with_draws`].
pub(crate) fn elastic_transform(
    image: &RgbImage,
    severity: Severity,
    flavor: Flavor,
    rng: &mut RandomState,
) -> RgbImage {
    let draws = elastic_draws(
        rng,
        severity,
        flavor,
        image.height() as usize,
        image.width() as usize,
    );
    elastic_with_draws(image, severity, flavor, &draws)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([
                (x * 9 % 256) as u8,
                (y * 13 % 256) as u8,
                ((x * y) % 256) as u8,
            ])
        })
    }

    #[test]
    fn zero_fields_and_no_jitter_are_the_identity() {
        let image = gradient(20, 17);
        for flavor in Flavor::ALL {
            let draws = ElasticDraws {
                affine: match flavor {
                    Flavor::ImageCorruptions => None,
                    _ => Some([0.0; 6]),
                },
                dx: vec![0.0; 20 * 17],
                dy: vec![0.0; 20 * 17],
            };
            let out = elastic_with_draws(&image, Severity::ALL[2], flavor, &draws);
            // x/255 in float32 times 255 truncates some values one level down.
            for (a, b) in out.as_raw().iter().zip(image.as_raw()) {
                assert!(b - a <= 1, "{flavor}");
            }
        }
    }

    #[test]
    fn draws_come_in_reference_order() {
        let mut rng = RandomState::new(11);
        let draws = elastic_draws(&mut rng, Severity::ALL[0], Flavor::ImageNetC, 4, 5);
        let mut again = RandomState::new(11);
        let first = again.uniform(-24.4, 24.4) as f32;
        assert_eq!(draws.affine.unwrap()[0], first);
        for _ in 0..5 {
            again.uniform(-1.0, 1.0);
        }
        assert_eq!(draws.dx[0], again.uniform(-1.0, 1.0));
        assert_eq!(draws.dx.len(), 20);
        assert_eq!(draws.dy.len(), 20);
    }

    #[test]
    fn every_size_works() {
        for (w, h) in [(1, 1), (5, 7), (2, 2), (31, 3)] {
            let image = gradient(w, h);
            for flavor in Flavor::ALL {
                for severity in Severity::ALL {
                    let out = elastic_transform(&image, severity, flavor, &mut RandomState::new(5));
                    assert_eq!(out.dimensions(), (w, h));
                }
            }
        }
    }
}
