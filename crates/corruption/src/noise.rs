//! The four noise corruptions: gaussian, shot (Poisson), impulse (salt and pepper) and speckle.
//!
//! Each is split in two: a deterministic core that takes the random field as an argument (so
//! tests can hand it any field), and a driver that draws the field from [`RandomState`] in the
//! reference's order — numpy fills an `H×W×3` array in C order, one value per element.
//!
//! - gaussian: `clip(x + N(0, c), 0, 1) · 255`, one normal per element;
//! - speckle: `clip(x + x · N(0, c), 0, 1) · 255`;
//! - shot: `clip(poisson(x · c) / c, 0, 1) · 255`, one Poisson draw per element with its own λ;
//! - impulse: scikit-image ≤ 0.18 `random_noise(mode='s&p', amount=p)`, which draws from the
//!   global state: first `flipped = choice([True, False], p=[p, 1-p])` for every element, then
//!   `salted = choice([True, False], p=[.5, .5])` for every element; flipped & salted → 1,
//!   flipped & ¬salted → 0. (scikit-image ≥ 0.19 draws from fresh OS entropy and cannot be
//!   seeded; see the crate docs.)
//!
//! `x` is `pixel / 255` in float64 and the result is truncated to 8 bits, as the references do.

use image::RgbImage;

use crate::array::truncate_u8;
use crate::rng::{PoissonSampler, RandomState};
use crate::{Flavor, Severity};

/// gaussian_noise's standard deviation per flavor and severity.
fn gaussian_scale(flavor: Flavor, severity: Severity) -> f64 {
    let table = match flavor {
        Flavor::ImageCorruptions | Flavor::ImageNetC => [0.08, 0.12, 0.18, 0.26, 0.38],
        Flavor::CifarC => [0.04, 0.06, 0.08, 0.09, 0.10],
    };
    table[severity.index()]
}

/// shot_noise's photon count.
fn shot_photons(flavor: Flavor, severity: Severity) -> f64 {
    let table = match flavor {
        Flavor::ImageCorruptions | Flavor::ImageNetC => [60.0, 25.0, 12.0, 5.0, 3.0],
        Flavor::CifarC => [500.0, 250.0, 100.0, 75.0, 50.0],
    };
    table[severity.index()]
}

/// impulse_noise's amount.
fn impulse_amount(flavor: Flavor, severity: Severity) -> f64 {
    let table = match flavor {
        Flavor::ImageCorruptions | Flavor::ImageNetC => [0.03, 0.06, 0.09, 0.17, 0.27],
        Flavor::CifarC => [0.01, 0.02, 0.03, 0.05, 0.07],
    };
    table[severity.index()]
}

/// speckle_noise's standard deviation.
fn speckle_scale(flavor: Flavor, severity: Severity) -> f64 {
    let table = match flavor {
        Flavor::ImageCorruptions | Flavor::ImageNetC => [0.15, 0.2, 0.35, 0.45, 0.6],
        Flavor::CifarC => [0.06, 0.1, 0.12, 0.16, 0.2],
    };
    table[severity.index()]
}

fn with_pixels(image: &RgbImage, f: impl FnOnce(&[u8]) -> Vec<u8>) -> RgbImage {
    RgbImage::from_raw(image.width(), image.height(), f(image.as_raw()))
        .expect("the noise keeps the number of bytes")
}

/// The gaussian_noise corruption.
pub(crate) fn apply_gaussian(
    image: &RgbImage,
    severity: Severity,
    flavor: Flavor,
    rng: &mut RandomState,
) -> RgbImage {
    let scale = gaussian_scale(flavor, severity);
    with_pixels(image, |p| gaussian_noise(p, scale, rng))
}

/// The shot_noise corruption.
pub(crate) fn apply_shot(
    image: &RgbImage,
    severity: Severity,
    flavor: Flavor,
    rng: &mut RandomState,
) -> RgbImage {
    let photons = shot_photons(flavor, severity);
    with_pixels(image, |p| shot_noise(p, photons, rng))
}

/// The impulse_noise corruption.
pub(crate) fn apply_impulse(
    image: &RgbImage,
    severity: Severity,
    flavor: Flavor,
    rng: &mut RandomState,
) -> RgbImage {
    let amount = impulse_amount(flavor, severity);
    with_pixels(image, |p| impulse_noise(p, amount, rng))
}

/// The speckle_noise corruption.
pub(crate) fn apply_speckle(
    image: &RgbImage,
    severity: Severity,
    flavor: Flavor,
    rng: &mut RandomState,
) -> RgbImage {
    let scale = speckle_scale(flavor, severity);
    with_pixels(image, |p| speckle_noise(p, scale, rng))
}

/// `k / 255.0` for every byte: the reference's `np.array(x) / 255.`.
pub(crate) fn unit_table() -> &'static [f64; 256] {
    static TABLE: std::sync::OnceLock<[f64; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|k| k as f64 / 255.0))
}

/// `np.uint8(np.clip(v, 0, 1) * 255)`.
#[inline]
fn unit_to_u8(v: f64) -> u8 {
    truncate_u8(v.clamp(0.0, 1.0) * 255.0)
}

/// gaussian_noise's core: `noise` holds the already scaled normal draws (`c · g`), one per byte.
pub(crate) fn gaussian_noise_with(pixels: &[u8], noise: &[f64]) -> Vec<u8> {
    debug_assert_eq!(pixels.len(), noise.len());
    let unit = unit_table();
    pixels
        .iter()
        .zip(noise)
        .map(|(&p, &n)| unit_to_u8(unit[p as usize] + n))
        .collect()
}

/// gaussian_noise: `np.random.normal(size=x.shape, scale=scale)` added to `x`.
pub(crate) fn gaussian_noise(pixels: &[u8], scale: f64, rng: &mut RandomState) -> Vec<u8> {
    let noise: Vec<f64> = pixels.iter().map(|_| rng.normal(0.0, scale)).collect();
    gaussian_noise_with(pixels, &noise)
}

/// speckle_noise's core: `noise` holds the scaled normal draws.
pub(crate) fn speckle_noise_with(pixels: &[u8], noise: &[f64]) -> Vec<u8> {
    debug_assert_eq!(pixels.len(), noise.len());
    let unit = unit_table();
    pixels
        .iter()
        .zip(noise)
        .map(|(&p, &n)| {
            let x = unit[p as usize];
            unit_to_u8(x + x * n)
        })
        .collect()
}

/// speckle_noise: `x + x · np.random.normal(size=x.shape, scale=scale)`.
pub(crate) fn speckle_noise(pixels: &[u8], scale: f64, rng: &mut RandomState) -> Vec<u8> {
    let noise: Vec<f64> = pixels.iter().map(|_| rng.normal(0.0, scale)).collect();
    speckle_noise_with(pixels, &noise)
}

/// shot_noise's core: `counts` holds the Poisson draws, one per byte; `photons` is `c`.
pub(crate) fn shot_noise_with(counts: &[i64], photons: f64) -> Vec<u8> {
    counts
        .iter()
        .map(|&k| unit_to_u8(k as f64 / photons))
        .collect()
}

/// shot_noise: `np.random.poisson(x · c) / c`. The 256 possible λ are prepared once, so each
/// element costs only its draws.
pub(crate) fn shot_noise(pixels: &[u8], photons: f64, rng: &mut RandomState) -> Vec<u8> {
    let unit = unit_table();
    let samplers: Vec<PoissonSampler> = (0..256)
        .map(|k| PoissonSampler::new(unit[k] * photons))
        .collect();
    let counts: Vec<i64> = pixels
        .iter()
        .map(|&p| rng.poisson_with(&samplers[p as usize]))
        .collect();
    shot_noise_with(&counts, photons)
}

/// impulse_noise's core: `flipped[i]` says whether element `i` is replaced, `salted[i]` whether
/// by white (1.0) rather than black (0.0).
pub(crate) fn impulse_noise_with(pixels: &[u8], flipped: &[bool], salted: &[bool]) -> Vec<u8> {
    debug_assert_eq!(pixels.len(), flipped.len());
    debug_assert_eq!(pixels.len(), salted.len());
    let unit = unit_table();
    pixels
        .iter()
        .zip(flipped.iter().zip(salted))
        .map(|(&p, (&flip, &salt))| match (flip, salt) {
            (true, true) => 255,
            (true, false) => 0,
            (false, _) => unit_to_u8(unit[p as usize]),
        })
        .collect()
}

/// impulse_noise by the scikit-image ≤ 0.18 rule (see the module docs).
pub(crate) fn impulse_noise(pixels: &[u8], amount: f64, rng: &mut RandomState) -> Vec<u8> {
    let flip_threshold = RandomState::choice_threshold(amount);
    let salt_threshold = RandomState::choice_threshold(0.5);
    let flipped: Vec<bool> = pixels
        .iter()
        .map(|_| rng.random_sample() < flip_threshold)
        .collect();
    let salted: Vec<bool> = pixels
        .iter()
        .map(|_| rng.random_sample() < salt_threshold)
        .collect();
    impulse_noise_with(pixels, &flipped, &salted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_core_adds_clips_and_truncates() {
        // 128/255 + 0.1 = 0.60196… → 153.5 → 153; 0 − 0.5 clips to 0; 255 + 0.2 clips to 255.
        let out = gaussian_noise_with(&[128, 0, 255], &[0.1, -0.5, 0.2]);
        assert_eq!(out, vec![153, 0, 255]);
    }

    #[test]
    fn speckle_core_scales_the_noise_by_the_pixel() {
        // Black stays black whatever the noise; 100/255 · (1 + 0.5) · 255 = 150 (within float
        // rounding below 150, so truncation gives 149 or 150 exactly as numpy would).
        let out = speckle_noise_with(&[0, 100, 200], &[10.0, 0.5, -2.0]);
        let expected_mid = ((100.0f64 / 255.0 + 100.0 / 255.0 * 0.5) * 255.0) as u8;
        assert_eq!(out, vec![0, expected_mid, 0]);
    }

    #[test]
    fn shot_core_divides_counts_by_photons() {
        assert_eq!(shot_noise_with(&[0, 30, 61], 60.0), vec![0, 127, 255]);
    }

    #[test]
    fn impulse_core_salts_peppers_and_keeps() {
        let out = impulse_noise_with(
            &[10, 20, 30, 40],
            &[true, true, false, false],
            &[true, false, true, false],
        );
        assert_eq!(out, vec![255, 0, 30, 40]);
    }

    #[test]
    fn drivers_equal_their_cores_on_the_same_draws() {
        let pixels: Vec<u8> = (0..=255).collect();
        let mut a = RandomState::new(3);
        let mut b = RandomState::new(3);
        let noise: Vec<f64> = pixels.iter().map(|_| b.normal(0.0, 0.2)).collect();
        assert_eq!(
            gaussian_noise(&pixels, 0.2, &mut a),
            gaussian_noise_with(&pixels, &noise)
        );

        let mut a = RandomState::new(4);
        let mut b = RandomState::new(4);
        let counts: Vec<i64> = pixels
            .iter()
            .map(|&p| b.poisson(p as f64 / 255.0 * 12.0))
            .collect();
        assert_eq!(
            shot_noise(&pixels, 12.0, &mut a),
            shot_noise_with(&counts, 12.0)
        );

        let mut a = RandomState::new(5);
        let mut b = RandomState::new(5);
        let flipped: Vec<bool> = pixels.iter().map(|_| b.bernoulli_choice(0.09)).collect();
        let salted: Vec<bool> = pixels.iter().map(|_| b.bernoulli_choice(0.5)).collect();
        assert_eq!(
            impulse_noise(&pixels, 0.09, &mut a),
            impulse_noise_with(&pixels, &flipped, &salted)
        );
    }
}
