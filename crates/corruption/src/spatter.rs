//! spatter: water drops (severities 1–3) or mud (4–5) from a smoothed random "liquid layer".
//!
//! The one random draw is the liquid field, `np.random.normal(loc, scale, (H, W))` in C order
//! ([`draw_liquid_field`]); [`spatter_with_field`] is the deterministic rest, the same in the
//! three flavors except for their parameter tables and one dtype:
//!
//! 1. `liquid = skimage.filters.gaussian(field, sigma)` (float64, mode `nearest`, truncate 4),
//!    then `liquid[liquid < threshold] = 0`.
//! 2. Water: `u = uint8(liquid · 255)`; `dist = 255 − Canny(u, 50, 150)`;
//!    `distanceTransform(dist, DIST_L2, 5)`; `threshold(…, 20, TRUNC)`; `blur 3×3 → uint8`;
//!    `equalizeHist`; `filter2D(CV_8U, [[−2,−1,0],[−1,1,1],[0,1,2]])`; `blur 3×3 → float32`;
//!    `m = u · dist / max(u · dist) · intensity` (float32); the output is
//!    `uint8(clip(x + m · (175, 238, 238)/255, 0, 1) · 255)` in float32, with `x = image / 255`
//!    in float32. The OpenCV calls are the bit-exact ports of [`crate::cv`].
//! 3. Mud: `m = gaussian(float32(liquid > threshold), mud_sigma)` (float32), `m[m < 0.8] = 0`;
//!    the output is `uint8(clip(x · (1 − m) + m · (63, 42, 20)/255, 0, 1) · 255)`. The brown is
//!    float64 in imagecorruptions (`np.ones_like` of the uint8 image) and float32 in the
//!    ImageNet-C / CIFAR-10-C code (`np.ones_like` of the float32 image), and the sum follows.
//!
//! Small images: every step is defined from 1×1 up, so sizes below the reference's 32 pixels
//! go through the same arithmetic, and the output equals the references' `spatter` functions
//! called directly at those sizes (checked on random sizes down to 1×1, all flavors). One
//! reference behaviour is replaced: when no pixel of the water layer survives
//! (`max(u · dist) = 0`, likely on tiny images), the reference divides 0 by 0 and returns a
//! black image; here the water layer is then empty and the image is returned unchanged (the
//! float32 round trip is exact for 8-bit values).

use image::RgbImage;

use crate::array::{Array3, to_unit_f32, unit_f32_to_rgb, unit_f64_to_rgb};
use crate::cv;
use crate::filters::ndimage::{Mode, gaussian_filter};
use crate::{Flavor, RandomState, Severity};

/// One row of the reference's parameter table.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Parameters {
    loc: f64,
    scale: f64,
    sigma: f64,
    threshold: f64,
    /// Water: the layer's intensity; mud: the σ that smooths the mud mask.
    intensity: f64,
    mud: bool,
}

fn parameters(flavor: Flavor, severity: Severity) -> Parameters {
    const fn row(
        loc: f64,
        scale: f64,
        sigma: f64,
        threshold: f64,
        intensity: f64,
        mode: u8,
    ) -> Parameters {
        Parameters {
            loc,
            scale,
            sigma,
            threshold,
            intensity,
            mud: mode == 1,
        }
    }
    const IMAGENET: [Parameters; 5] = [
        row(0.65, 0.3, 4.0, 0.69, 0.6, 0),
        row(0.65, 0.3, 3.0, 0.68, 0.6, 0),
        row(0.65, 0.3, 2.0, 0.68, 0.5, 0),
        row(0.65, 0.3, 1.0, 0.65, 1.5, 1),
        row(0.67, 0.4, 1.0, 0.65, 1.5, 1),
    ];
    const CIFAR: [Parameters; 5] = [
        row(0.62, 0.1, 0.7, 0.7, 0.5, 0),
        row(0.65, 0.1, 0.8, 0.7, 0.5, 0),
        row(0.65, 0.3, 1.0, 0.69, 0.5, 0),
        row(0.65, 0.1, 0.7, 0.69, 0.6, 1),
        row(0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ];
    match flavor {
        Flavor::ImageCorruptions | Flavor::ImageNetC => IMAGENET[severity.index()],
        Flavor::CifarC => CIFAR[severity.index()],
    }
}

/// The liquid field: `np.random.normal(size=(height, width), loc, scale)`, one channel.
pub(crate) fn draw_liquid_field(
    height: usize,
    width: usize,
    severity: Severity,
    flavor: Flavor,
    rng: &mut RandomState,
) -> Array3<f64> {
    let p = parameters(flavor, severity);
    Array3 {
        height,
        width,
        channels: 1,
        data: (0..height * width)
            .map(|_| rng.normal(p.loc, p.scale))
            .collect(),
    }
}

/// spatter with the reference's draws.
pub(crate) fn spatter(
    image: &RgbImage,
    severity: Severity,
    flavor: Flavor,
    rng: &mut RandomState,
) -> RgbImage {
    let field = draw_liquid_field(
        image.height() as usize,
        image.width() as usize,
        severity,
        flavor,
        rng,
    );
    spatter_with_field(image, severity, flavor, &field)
}

/// The deterministic part of spatter, from the drawn liquid field (one channel, image-sized).
pub(crate) fn spatter_with_field(
    image: &RgbImage,
    severity: Severity,
    flavor: Flavor,
    field: &Array3<f64>,
) -> RgbImage {
    let p = parameters(flavor, severity);
    let mut liquid = gaussian_filter(field, [p.sigma, p.sigma], Mode::Nearest, 4.0);
    for v in &mut liquid.data {
        if *v < p.threshold {
            *v = 0.0;
        }
    }
    let x = to_unit_f32(image);
    if p.mud {
        mud(&x, &liquid, p, flavor)
    } else {
        water(&x, &liquid, p)
    }
}

/// `(liquid * 255).astype(np.uint8)`: truncation; numpy's cast wraps past 255 on x86-64
/// (the value goes through a 32-bit integer), reachable only by a layer above 1.
fn liquid_to_u8(v: f64) -> u8 {
    (v * 255.0) as i64 as u8
}

fn water(x: &Array3<f32>, liquid: &Array3<f64>, p: Parameters) -> RgbImage {
    let (height, width) = (liquid.height, liquid.width);
    let layer: Vec<u8> = liquid.data.iter().map(|&v| liquid_to_u8(v)).collect();
    let edges = cv::canny_l1(&layer, height, width, 50.0, 150.0);
    let not_edges: Vec<u8> = edges.iter().map(|&e| 255 - e).collect();
    let mut dist = cv::distance_transform_l2_mask5(&not_edges, height, width);
    cv::threshold_trunc(&mut dist, 20.0);
    let dist: Vec<u8> = cv::box_blur3_f32(&dist, height, width)
        .iter()
        .map(|&v| v as u8)
        .collect();
    let dist = cv::equalize_hist(&dist);
    let dist = cv::filter2d_3x3_u8(&dist, height, width, [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]);
    let dist = cv::box_blur3_u8(&dist, height, width);

    // uint8 · float32 → float32; both factors are small integers, so the product is exact.
    let m: Vec<f32> = layer
        .iter()
        .zip(&dist)
        .map(|(&l, &d)| l as f32 * d as f32)
        .collect();
    let max = m.iter().copied().fold(0.0f32, f32::max);
    let intensity = p.intensity as f32;
    let colour = [175.0 / 255.0, 238.0 / 255.0, 238.0 / 255.0].map(|c: f64| c as f32);
    let mut out = x.clone();
    if max > 0.0 {
        for (pixel, &mv) in out.data.chunks_exact_mut(3).zip(&m) {
            let weight = mv / max * intensity;
            for (v, &c) in pixel.iter_mut().zip(&colour) {
                *v += weight * c;
            }
        }
    }
    unit_f32_to_rgb(&out)
}

fn mud(x: &Array3<f32>, liquid: &Array3<f64>, p: Parameters, flavor: Flavor) -> RgbImage {
    let mask = Array3 {
        height: liquid.height,
        width: liquid.width,
        channels: 1,
        data: liquid
            .data
            .iter()
            .map(|&v| if v > p.threshold { 1.0f32 } else { 0.0 })
            .collect(),
    };
    let mut m = gaussian_filter(&mask, [p.intensity, p.intensity], Mode::Nearest, 4.0);
    for v in &mut m.data {
        if *v < 0.8 {
            *v = 0.0;
        }
    }
    let brown = [63.0 / 255.0, 42.0 / 255.0, 20.0 / 255.0f64];
    match flavor {
        Flavor::ImageCorruptions => {
            // float32 image · (1 − m) in float32, plus a float64 brown · m: the sum is float64.
            let mut out = Array3::filled(x.height, x.width, 3, 0.0f64);
            for ((dst, src), &mv) in out
                .data
                .chunks_exact_mut(3)
                .zip(x.data.chunks_exact(3))
                .zip(&m.data)
            {
                for channel in 0..3 {
                    let kept = src[channel] * (1.0 - mv);
                    dst[channel] = kept as f64 + brown[channel] * mv as f64;
                }
            }
            unit_f64_to_rgb(&out)
        }
        Flavor::ImageNetC | Flavor::CifarC => {
            let brown = brown.map(|c| c as f32);
            let mut out = x.clone();
            for (pixel, &mv) in out.data.chunks_exact_mut(3).zip(&m.data) {
                for (v, &c) in pixel.iter_mut().zip(&brown) {
                    *v = *v * (1.0 - mv) + c * mv;
                }
            }
            unit_f32_to_rgb(&out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(height: usize, width: usize, value: impl Fn(usize, usize) -> f64) -> Array3<f64> {
        Array3 {
            height,
            width,
            channels: 1,
            data: (0..height * width)
                .map(|i| value(i / width, i % width))
                .collect(),
        }
    }

    #[test]
    fn a_dry_field_leaves_the_image_unchanged() {
        let image = RgbImage::from_fn(9, 7, |x, y| image::Rgb([x as u8 * 20, y as u8 * 30, 77]));
        let dry = field(7, 9, |_, _| 0.0);
        for flavor in Flavor::ALL {
            for severity in Severity::ALL {
                assert_eq!(spatter_with_field(&image, severity, flavor, &dry), image);
            }
        }
    }

    #[test]
    fn mud_covers_a_soaked_region_in_brown() {
        let image = RgbImage::from_pixel(40, 40, image::Rgb([200, 200, 200]));
        let soaked = field(40, 40, |_, _| 5.0);
        let severity = Severity::new(5).unwrap();
        for flavor in Flavor::ALL {
            let out = spatter_with_field(&image, severity, flavor, &soaked);
            // m = 1 everywhere: pure brown, (63, 42, 20)/255 · 255 truncated.
            let px = out.get_pixel(20, 20).0;
            assert!(
                px[0].abs_diff(63) <= 1 && px[1].abs_diff(42) <= 1 && px[2].abs_diff(20) <= 1,
                "{flavor}: {px:?}"
            );
        }
    }

    #[test]
    fn water_brightens_towards_turquoise() {
        // A disc of liquid in a dry field: edges, distances and the water layer are non-empty.
        let image = RgbImage::from_pixel(48, 48, image::Rgb([10, 10, 10]));
        let wet = field(48, 48, |r, c| {
            let (dr, dc) = (r as f64 - 24.0, c as f64 - 24.0);
            if dr * dr + dc * dc < 100.0 { 0.95 } else { 0.0 }
        });
        let out = spatter_with_field(&image, Severity::new(3).unwrap(), Flavor::ImageNetC, &wet);
        assert!(out.pixels().any(|p| p.0[1] > 10 && p.0[1] >= p.0[0]));
        assert!(out.pixels().all(|p| p.0.iter().all(|&v| v >= 10)));
    }

    #[test]
    fn every_size_down_to_one_pixel_works() {
        let mut rng = RandomState::new(1);
        for (w, h) in [(1, 1), (2, 1), (1, 3), (5, 7), (31, 2)] {
            let image = RgbImage::from_pixel(w, h, image::Rgb([128, 64, 32]));
            for flavor in Flavor::ALL {
                for severity in Severity::ALL {
                    let out = spatter(&image, severity, flavor, &mut rng);
                    assert_eq!(out.dimensions(), (w, h));
                }
            }
        }
    }

    #[test]
    fn liquid_cast_truncates_and_wraps_like_numpy() {
        assert_eq!(liquid_to_u8(0.999), 254);
        assert_eq!(liquid_to_u8(1.0), 255);
        assert_eq!(liquid_to_u8(1.004), 0);
    }
}
