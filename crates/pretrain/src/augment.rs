//! The pretraining recipes' augmentations, on one interleaved 8-bit RGB image, deterministic
//! in the sample seed.
//!
//! - [`Augment::Standard`]: random crop with zero padding (an eighth of the side) and a
//!   horizontal flip — the "regular" backbone. Every recipe takes `crop = false` for the
//!   flip alone (the mini preset's small images lose too much to a 4-pixel shift).
//! - [`Augment::Noise`] (in the spirit of ANT, Rusak et al. 2020): after the standard
//!   augmentation, a fraction of the images get additive noise of a random kind (Gaussian,
//!   uniform, speckle) with σ drawn uniformly from `[0, max_sigma]`. ANT learns its noise
//!   distribution adversarially; this keeps its core — training on a wide distribution of
//!   noise mixed 50/50 with clean images — without the noise generator.
//! - [`Augment::Augmix`] (in the spirit of DeepAugment+AugMix, Hendrycks et al.): `width`
//!   chains of 1..=`depth` PIL-like operations (autocontrast, equalize, posterize, rotate,
//!   solarize, shear and translate on both axes — AugMix's set, which leaves out operations
//!   that overlap the ImageNet-C corruptions) mixed with Dirichlet(α) weights, then mixed with
//!   the original image with a Beta(α, α) weight; with `jsd` the sample carries the clean image
//!   and two independent AugMix views for the Jensen–Shannon consistency loss. DeepAugment's
//!   image-to-image networks are not reproduced.

use serde::{Deserialize, Serialize};

/// A generator of the draws, seeded per sample: the engine's splitmix64
/// ([`rtb_train::seed::SplitMix64`]) with the distributions the recipes need.
#[derive(Debug, Clone)]
pub struct Draws {
    bits: rtb_train::seed::SplitMix64,
}

impl Draws {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            bits: rtb_train::seed::SplitMix64::new(seed),
        }
    }

    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.bits.next_u64()
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.bits.uniform()
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is below 2⁻⁵⁰ for the small `n` used here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Gamma(shape, 1) by Marsaglia and Tsang (with the `U^(1/shape)` boost below 1).
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            let boost = (1.0 - self.unit()).powf(1.0 / shape);
            return self.gamma(shape + 1.0) * boost;
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = 1.0 - self.unit();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    /// Beta(a, b).
    pub fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        let y = self.gamma(b);
        x / (x + y)
    }

    /// Dirichlet(α, …, α) with `k` components.
    pub fn dirichlet(&mut self, alpha: f64, k: usize) -> Vec<f64> {
        let draws: Vec<f64> = (0..k).map(|_| self.gamma(alpha)).collect();
        let sum: f64 = draws.iter().sum();
        draws.iter().map(|g| g / sum).collect()
    }
}

/// Noise kinds of the ANT-like recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseKind {
    /// `x + σ·N(0, 1)`.
    Gaussian,
    /// `x + σ·√3·U(−1, 1)` (the same variance as Gaussian).
    Uniform,
    /// `x + x·σ·N(0, 1)` (multiplicative).
    Speckle,
}

/// A pretraining recipe's augmentation (the preset's `augment` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Augment {
    /// Random crop with padding and a flip.
    Standard {
        /// The random crop (else the flip alone).
        #[serde(default = "yes")]
        crop: bool,
    },
    /// Standard, then random noise on a fraction of the images.
    Noise {
        /// The random crop (else the flip alone).
        #[serde(default = "yes")]
        crop: bool,
        /// Fraction of images that get noise (ANT: ½).
        #[serde(default = "half")]
        probability: f64,
        /// σ is uniform in `[0, max_sigma]`, on pixel values in [0, 1].
        #[serde(default = "default_max_sigma")]
        max_sigma: f64,
        /// The noise kinds drawn from uniformly.
        #[serde(default = "default_kinds")]
        kinds: Vec<NoiseKind>,
    },
    /// Standard, then AugMix.
    Augmix {
        /// The random crop (else the flip alone).
        #[serde(default = "yes")]
        crop: bool,
        /// Chains per mixture (AugMix: 3).
        #[serde(default = "default_width")]
        width: usize,
        /// Each chain has 1..=depth operations (AugMix: 1..=3).
        #[serde(default = "default_depth")]
        depth: usize,
        /// Operation severity, 1..=10 (AugMix: 3).
        #[serde(default = "default_severity")]
        severity: f64,
        /// Dirichlet and Beta parameter (AugMix: 1).
        #[serde(default = "one")]
        alpha: f64,
        /// Two AugMix views plus the clean image and the Jensen–Shannon loss.
        #[serde(default)]
        jsd: bool,
        /// Weight of the Jensen–Shannon term (AugMix: 12).
        #[serde(default = "default_jsd_weight")]
        jsd_weight: f64,
    },
}

fn yes() -> bool {
    true
}
fn half() -> f64 {
    0.5
}
fn default_max_sigma() -> f64 {
    0.5
}
fn default_kinds() -> Vec<NoiseKind> {
    vec![NoiseKind::Gaussian, NoiseKind::Uniform, NoiseKind::Speckle]
}
fn default_width() -> usize {
    3
}
fn default_depth() -> usize {
    3
}
fn default_severity() -> f64 {
    3.0
}
fn one() -> f64 {
    1.0
}
fn default_jsd_weight() -> f64 {
    12.0
}

impl Augment {
    /// Whether the recipe crops at random before the flip.
    pub fn crop(&self) -> bool {
        match self {
            Augment::Standard { crop }
            | Augment::Noise { crop, .. }
            | Augment::Augmix { crop, .. } => *crop,
        }
    }

    /// Images per sample: 3 with the JSD loss (clean, two views), else 1.
    pub fn views(&self) -> usize {
        match self {
            Augment::Augmix { jsd: true, .. } => 3,
            _ => 1,
        }
    }

    /// The weight of the Jensen–Shannon term, when the recipe has it.
    pub fn jsd_weight(&self) -> Option<f64> {
        match self {
            Augment::Augmix {
                jsd: true,
                jsd_weight,
                ..
            } => Some(*jsd_weight),
            _ => None,
        }
    }

    /// Checks ranges; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Augment::Standard { .. } => Ok(()),
            Augment::Noise {
                probability,
                max_sigma,
                kinds,
                ..
            } => {
                if !(0.0..=1.0).contains(probability) {
                    return Err(format!(
                        "augment.probability {probability} is not in [0, 1]"
                    ));
                }
                if !(max_sigma.is_finite() && *max_sigma >= 0.0) {
                    return Err(format!("augment.max_sigma {max_sigma} must be ≥ 0"));
                }
                if kinds.is_empty() {
                    return Err("augment.kinds must name at least one noise kind".into());
                }
                Ok(())
            }
            Augment::Augmix {
                width,
                depth,
                severity,
                alpha,
                jsd_weight,
                ..
            } => {
                if *width == 0 || *depth == 0 {
                    return Err("augment.width and augment.depth must be at least 1".into());
                }
                if !(1.0..=10.0).contains(severity) {
                    return Err(format!("augment.severity {severity} is not in [1, 10]"));
                }
                if !(alpha.is_finite() && *alpha > 0.0) {
                    return Err(format!("augment.alpha {alpha} must be > 0"));
                }
                if !(jsd_weight.is_finite() && *jsd_weight >= 0.0) {
                    return Err(format!("augment.jsd_weight {jsd_weight} must be ≥ 0"));
                }
                Ok(())
            }
        }
    }

    /// The views of one training image (`rgb`: interleaved, `side × side`), as planar RGB
    /// floats in [0, 1], each `3 × side × side`.
    pub fn apply(&self, rgb: &[u8], side: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut draws = Draws::new(seed);
        let base = if self.crop() {
            crop_flip(rgb, side, &mut draws)
        } else {
            flip(rgb, side, &mut draws)
        };
        match self {
            Augment::Standard { .. } => vec![planar(&to_unit(&base), side)],
            Augment::Noise {
                probability,
                max_sigma,
                kinds,
                ..
            } => {
                let mut image = to_unit(&base);
                if draws.unit() < *probability {
                    let kind = kinds[draws.below(kinds.len())];
                    let sigma = draws.unit() * max_sigma;
                    add_noise(&mut image, kind, sigma, &mut draws);
                }
                vec![planar(&image, side)]
            }
            Augment::Augmix {
                width,
                depth,
                severity,
                alpha,
                jsd,
                ..
            } => {
                let clean = to_unit(&base);
                let mix = |draws: &mut Draws| {
                    augmix(&base, side, *width, *depth, *severity, *alpha, draws)
                };
                if *jsd {
                    let first = mix(&mut draws);
                    let second = mix(&mut draws);
                    vec![
                        planar(&clean, side),
                        planar(&first, side),
                        planar(&second, side),
                    ]
                } else {
                    vec![planar(&mix(&mut draws), side)]
                }
            }
        }
    }
}

/// A horizontal flip with probability ½ (one draw).
pub fn flip(rgb: &[u8], side: usize, draws: &mut Draws) -> Vec<u8> {
    let mut out = rgb.to_vec();
    if draws.unit() < 0.5 {
        for row in out.chunks_exact_mut(side * 3) {
            let pixels = row.len() / 3;
            for x in 0..pixels / 2 {
                let mirror = pixels - 1 - x;
                for channel in 0..3 {
                    row.swap(x * 3 + channel, mirror * 3 + channel);
                }
            }
        }
    }
    out
}

/// Random crop with `side / 8` zero padding, then a horizontal flip with probability ½.
pub fn crop_flip(rgb: &[u8], side: usize, draws: &mut Draws) -> Vec<u8> {
    let padding = (side / 8).max(1);
    let span = 2 * padding + 1;
    let top = draws.below(span) as isize - padding as isize;
    let left = draws.below(span) as isize - padding as isize;
    let flip = draws.unit() < 0.5;
    let s = side as isize;
    let mut out = vec![0u8; rgb.len()];
    for y in 0..s {
        let sy = y + top;
        if !(0..s).contains(&sy) {
            continue;
        }
        for x in 0..s {
            let cx = if flip { s - 1 - x } else { x };
            let sx = cx + left;
            if !(0..s).contains(&sx) {
                continue;
            }
            let dst = ((y * s + x) * 3) as usize;
            let src = ((sy * s + sx) * 3) as usize;
            out[dst..dst + 3].copy_from_slice(&rgb[src..src + 3]);
        }
    }
    out
}

fn to_unit(rgb: &[u8]) -> Vec<f32> {
    rgb.iter().map(|&v| f32::from(v) / 255.0).collect()
}

/// Interleaved → planar.
fn planar(values: &[f32], side: usize) -> Vec<f32> {
    let plane = side * side;
    let mut out = vec![0f32; 3 * plane];
    for (p, rgb) in values.chunks_exact(3).enumerate() {
        for channel in 0..3 {
            out[channel * plane + p] = rgb[channel];
        }
    }
    out
}

fn add_noise(image: &mut [f32], kind: NoiseKind, sigma: f64, draws: &mut Draws) {
    for value in image.iter_mut() {
        let x = f64::from(*value);
        let noisy = match kind {
            NoiseKind::Gaussian => x + sigma * draws.normal(),
            NoiseKind::Uniform => x + sigma * 3f64.sqrt() * (2.0 * draws.unit() - 1.0),
            NoiseKind::Speckle => x + x * sigma * draws.normal(),
        };
        *value = noisy.clamp(0.0, 1.0) as f32;
    }
}

/// The PIL-like operations of AugMix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Stretch each channel's range to 0..255.
    AutoContrast,
    /// Histogram equalisation per channel (PIL's `ImageOps.equalize`).
    Equalize,
    /// Keep the top `4 − level` bits.
    Posterize,
    /// Rotate by up to 30° either way.
    Rotate,
    /// Invert values above a threshold.
    Solarize,
    /// Shear along x by up to 0.3.
    ShearX,
    /// Shear along y by up to 0.3.
    ShearY,
    /// Translate along x by up to a third of the side.
    TranslateX,
    /// Translate along y by up to a third of the side.
    TranslateY,
}

impl Op {
    /// AugMix's operation list.
    pub const ALL: [Op; 9] = [
        Op::AutoContrast,
        Op::Equalize,
        Op::Posterize,
        Op::Rotate,
        Op::Solarize,
        Op::ShearX,
        Op::ShearY,
        Op::TranslateX,
        Op::TranslateY,
    ];
}

/// AugMix's `sample_level`: uniform in [0.1, severity].
fn level(severity: f64, draws: &mut Draws) -> f64 {
    0.1 + draws.unit() * (severity - 0.1)
}

fn signed(value: f64, draws: &mut Draws) -> f64 {
    if draws.unit() < 0.5 { -value } else { value }
}

/// Applies `op` at a random level to an interleaved `side × side` image.
pub fn apply_op(op: Op, rgb: &[u8], side: usize, severity: f64, draws: &mut Draws) -> Vec<u8> {
    let level = level(severity, draws);
    match op {
        Op::AutoContrast => per_channel_lut(rgb, autocontrast_lut),
        Op::Equalize => per_channel_lut(rgb, equalize_lut),
        Op::Posterize => {
            let bits = 4 - (level * 4.0 / 10.0) as u32;
            let mask = !((1u16 << (8 - bits)) - 1) as u8;
            rgb.iter().map(|&v| v & mask).collect()
        }
        Op::Solarize => {
            let threshold = 256 - (level * 256.0 / 10.0) as i32;
            rgb.iter()
                .map(|&v| if i32::from(v) < threshold { v } else { 255 - v })
                .collect()
        }
        Op::Rotate => {
            let degrees = signed(level * 30.0 / 10.0, draws);
            let (sin, cos) = degrees.to_radians().sin_cos();
            let c = (side as f64 - 1.0) / 2.0;
            // Output (x, y) samples the input at the inverse rotation about the centre.
            affine(
                rgb,
                side,
                [
                    cos,
                    sin,
                    c - cos * c - sin * c,
                    -sin,
                    cos,
                    c + sin * c - cos * c,
                ],
            )
        }
        Op::ShearX => {
            let shear = signed(level * 0.3 / 10.0, draws);
            affine(rgb, side, [1.0, shear, 0.0, 0.0, 1.0, 0.0])
        }
        Op::ShearY => {
            let shear = signed(level * 0.3 / 10.0, draws);
            affine(rgb, side, [1.0, 0.0, 0.0, shear, 1.0, 0.0])
        }
        Op::TranslateX => {
            let pixels = signed((level * side as f64 / 3.0 / 10.0).floor(), draws);
            affine(rgb, side, [1.0, 0.0, pixels, 0.0, 1.0, 0.0])
        }
        Op::TranslateY => {
            let pixels = signed((level * side as f64 / 3.0 / 10.0).floor(), draws);
            affine(rgb, side, [1.0, 0.0, 0.0, 0.0, 1.0, pixels])
        }
    }
}

fn per_channel_lut(rgb: &[u8], lut_of: fn(&[u32; 256]) -> [u8; 256]) -> Vec<u8> {
    let mut luts = [[0u8; 256]; 3];
    for (channel, lut) in luts.iter_mut().enumerate() {
        let mut histogram = [0u32; 256];
        for pixel in rgb.chunks_exact(3) {
            histogram[usize::from(pixel[channel])] += 1;
        }
        *lut = lut_of(&histogram);
    }
    rgb.chunks_exact(3)
        .flat_map(|p| {
            [
                luts[0][usize::from(p[0])],
                luts[1][usize::from(p[1])],
                luts[2][usize::from(p[2])],
            ]
        })
        .collect()
}

/// PIL's `autocontrast(cutoff=0)`: map [min, max] linearly onto [0, 255].
fn autocontrast_lut(histogram: &[u32; 256]) -> [u8; 256] {
    let mut lut = [0u8; 256];
    let low = histogram.iter().position(|&h| h > 0).unwrap_or(0);
    let high = histogram.iter().rposition(|&h| h > 0).unwrap_or(255);
    for (value, entry) in lut.iter_mut().enumerate() {
        *entry = if high <= low {
            value as u8
        } else {
            let scale = 255.0 / (high - low) as f64;
            ((value as f64 - low as f64) * scale)
                .round()
                .clamp(0.0, 255.0) as u8
        };
    }
    lut
}

/// PIL's `equalize`: step = (count − count of the last used value) / 255; lut[i] =
/// (step/2 + count below i) / step.
fn equalize_lut(histogram: &[u32; 256]) -> [u8; 256] {
    let mut lut = [0u8; 256];
    let total: u32 = histogram.iter().sum();
    let last = histogram
        .iter()
        .rev()
        .find(|&&h| h > 0)
        .copied()
        .unwrap_or(0);
    let step = (total - last) / 255;
    if step == 0 {
        for (value, entry) in lut.iter_mut().enumerate() {
            *entry = value as u8;
        }
        return lut;
    }
    let mut n = step / 2;
    for (value, entry) in lut.iter_mut().enumerate() {
        *entry = (n / step).min(255) as u8;
        n += histogram[value];
    }
    lut
}

/// PIL's `Image.transform(AFFINE, (a, b, c, d, e, f))`: output (x, y) samples the input at
/// (a·x + b·y + c, d·x + e·y + f) bilinearly; outside is black.
fn affine(rgb: &[u8], side: usize, m: [f64; 6]) -> Vec<u8> {
    let mut out = vec![0u8; rgb.len()];
    let s = side as isize;
    let at = |x: isize, y: isize, channel: usize| -> f64 {
        if (0..s).contains(&x) && (0..s).contains(&y) {
            f64::from(rgb[((y * s + x) * 3) as usize + channel])
        } else {
            0.0
        }
    };
    for y in 0..side {
        for x in 0..side {
            let (xf, yf) = (x as f64, y as f64);
            let sx = m[0] * xf + m[1] * yf + m[2];
            let sy = m[3] * xf + m[4] * yf + m[5];
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            for channel in 0..3 {
                let value = at(x0, y0, channel) * (1.0 - fx) * (1.0 - fy)
                    + at(x0 + 1, y0, channel) * fx * (1.0 - fy)
                    + at(x0, y0 + 1, channel) * (1.0 - fx) * fy
                    + at(x0 + 1, y0 + 1, channel) * fx * fy;
                out[(y * side + x) * 3 + channel] = value.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// One AugMix mixture of `rgb`, interleaved floats in [0, 1].
pub fn augmix(
    rgb: &[u8],
    side: usize,
    width: usize,
    depth: usize,
    severity: f64,
    alpha: f64,
    draws: &mut Draws,
) -> Vec<f32> {
    let weights = draws.dirichlet(alpha, width);
    let m = draws.beta(alpha, alpha);
    let mut mix = vec![0f64; rgb.len()];
    for weight in weights {
        let chain_depth = 1 + draws.below(depth);
        let mut image = rgb.to_vec();
        for _ in 0..chain_depth {
            let op = Op::ALL[draws.below(Op::ALL.len())];
            image = apply_op(op, &image, side, severity, draws);
        }
        for (acc, &v) in mix.iter_mut().zip(&image) {
            *acc += weight * f64::from(v) / 255.0;
        }
    }
    rgb.iter()
        .zip(mix)
        .map(|(&v, mixed)| ((1.0 - m) * f64::from(v) / 255.0 + m * mixed) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(side: usize) -> Vec<u8> {
        (0..side * side * 3)
            .map(|i| ((i * 37) % 251) as u8)
            .collect()
    }

    #[test]
    fn same_seed_same_views_other_seed_other_views() {
        let rgb = image(16);
        for augment in [
            Augment::Standard { crop: true },
            Augment::Standard { crop: false },
            Augment::Noise {
                crop: true,
                probability: 1.0,
                max_sigma: 0.5,
                kinds: default_kinds(),
            },
            Augment::Augmix {
                crop: true,
                width: 3,
                depth: 3,
                severity: 3.0,
                alpha: 1.0,
                jsd: true,
                jsd_weight: 12.0,
            },
        ] {
            let a = augment.apply(&rgb, 16, 7);
            assert_eq!(a, augment.apply(&rgb, 16, 7));
            assert_ne!(a, augment.apply(&rgb, 16, 8));
            assert_eq!(a.len(), augment.views());
            for view in &a {
                assert_eq!(view.len(), 3 * 16 * 16);
                assert!(view.iter().all(|v| (0.0..=1.0).contains(v)));
            }
        }
    }

    #[test]
    fn noise_has_the_drawn_spread() {
        // Mid-grey image, Gaussian noise at probability 1: the per-image standard deviation
        // of the noise is σ ~ U(0, 0.2), so its mean over many images is about 0.1.
        let rgb = vec![128u8; 32 * 32 * 3];
        let augment = Augment::Noise {
            crop: true,
            probability: 1.0,
            max_sigma: 0.2,
            kinds: vec![NoiseKind::Gaussian],
        };
        let mut sum = 0.0;
        for seed in 0..200 {
            let view = &augment.apply(&rgb, 32, seed)[0];
            // Only the centre (never cropped away) is grey.
            let values: Vec<f64> = (8..24)
                .flat_map(|y| (8..24).map(move |x| y * 32 + x))
                .map(|p| f64::from(view[p]))
                .collect();
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
            sum += var.sqrt();
        }
        let mean_sigma = sum / 200.0;
        assert!((mean_sigma - 0.1).abs() < 0.01, "{mean_sigma}");
        // Probability 0 leaves the (cropped, flipped) image unchanged.
        let clean = Augment::Noise {
            crop: true,
            probability: 0.0,
            max_sigma: 0.2,
            kinds: vec![NoiseKind::Gaussian],
        };
        assert_eq!(
            clean.apply(&rgb, 32, 3),
            Augment::Standard { crop: true }.apply(&rgb, 32, 3)
        );
    }

    #[test]
    fn without_the_crop_a_view_is_the_image_or_its_mirror_and_both_occur() {
        let side = 8;
        let rgb = image(side);
        let mirror: Vec<u8> = (0..side * side)
            .flat_map(|p| {
                let (y, x) = (p / side, p % side);
                let q = (y * side + side - 1 - x) * 3;
                rgb[q..q + 3].to_vec()
            })
            .collect();
        let unit = |rgb: &[u8]| planar(&to_unit(rgb), side);
        let augment: Augment =
            serde_json::from_str(r#"{"kind": "standard", "crop": false}"#).unwrap();
        assert!(!augment.crop());
        let (mut same, mut mirrored) = (0, 0);
        for seed in 0..64 {
            let view = &augment.apply(&rgb, side, seed)[0];
            if *view == unit(&rgb) {
                same += 1;
            } else {
                assert_eq!(*view, unit(&mirror), "seed {seed}");
                mirrored += 1;
            }
        }
        assert!(same > 16 && mirrored > 16, "{same} / {mirrored}");
        let default: Augment = serde_json::from_str(r#"{"kind": "noise"}"#).unwrap();
        assert!(default.crop(), "the crop is on unless turned off");
    }

    #[test]
    fn distributions_have_their_means() {
        let mut draws = Draws::new(1);
        let n = 20_000;
        let gamma: f64 = (0..n).map(|_| draws.gamma(0.5)).sum::<f64>() / n as f64;
        assert!((gamma - 0.5).abs() < 0.02, "{gamma}");
        let gamma3: f64 = (0..n).map(|_| draws.gamma(3.0)).sum::<f64>() / n as f64;
        assert!((gamma3 - 3.0).abs() < 0.06, "{gamma3}");
        let beta: f64 = (0..n).map(|_| draws.beta(2.0, 6.0)).sum::<f64>() / n as f64;
        assert!((beta - 0.25).abs() < 0.01, "{beta}");
        let weights = draws.dirichlet(1.0, 3);
        assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn pil_like_ops_match_their_definitions() {
        // Autocontrast stretches 50..=100 to 0..=255.
        let rgb: Vec<u8> = (0..4 * 4)
            .flat_map(|i| [50 + (i as u8 % 2) * 50; 3])
            .collect();
        let out = per_channel_lut(&rgb, autocontrast_lut);
        assert!(out.iter().all(|&v| v == 0 || v == 255));
        // Equalize of a two-valued channel, 512 pixels each: step = (1024 − 512) / 255 = 2,
        // lut[10] = (1 + 0) / 2 = 0, lut[200] = (1 + 512) / 2 = 256, clipped to 255 as PIL's
        // `point` clips.
        let rgb: Vec<u8> = (0..32 * 32)
            .flat_map(|i| [if i < 512 { 10 } else { 200 }; 3])
            .collect();
        let out = per_channel_lut(&rgb, equalize_lut);
        assert_eq!(out[0], 0);
        assert_eq!(out[3 * 600], 255);
        // Identity affine is the identity; a translation by one pixel shifts.
        let rgb = image(8);
        assert_eq!(affine(&rgb, 8, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]), rgb);
        let shifted = affine(&rgb, 8, [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
        assert_eq!(&shifted[0..3], &rgb[3..6]);
        assert_eq!(&shifted[7 * 3..8 * 3], &[0, 0, 0]);
        // Solarize and posterize at every level keep values in range and are deterministic.
        let mut draws = Draws::new(5);
        for op in Op::ALL {
            let out = apply_op(op, &rgb, 8, 10.0, &mut draws);
            assert_eq!(out.len(), rgb.len());
        }
    }

    #[test]
    fn recipes_parse_from_preset_tables_and_validate() {
        let augment: Augment =
            toml::from_str("kind = \"augmix\"\njsd = true\nseverity = 3.0").unwrap();
        assert_eq!(augment.views(), 3);
        assert_eq!(augment.jsd_weight(), Some(12.0));
        let bad: Augment = toml::from_str("kind = \"noise\"\nprobability = 2.0").unwrap();
        assert!(bad.validate().unwrap_err().contains("probability"));
        assert!(toml::from_str::<Augment>("kind = \"noise\"\nsigma = 1.0").is_err());
    }
}
