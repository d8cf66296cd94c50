//! brightness, saturate and contrast: per-pixel arithmetic in float64, exactly as the references.
//!
//! brightness and saturate go through scikit-image's `rgb2hsv` / `hsv2rgb` (0.20, whose
//! arithmetic equals every release the references ran on):
//! - V = max, S = (max − min) / V (0 where max = min), H from the channel that holds the max
//!   with ties going to the *later* of r, g, b (numpy assigns the three masks in order), then
//!   `(H / 6) % 1` with numpy's floor-mod (a tiny negative becomes `1.0` after rounding, which
//!   `hsv2rgb` maps like 0), and H = 0 where max = min;
//! - back: `hi = floor(6H) mod 6`, `f = 6H − floor(6H)`, `p = V(1 − S)`, `q = V(1 − fS)`,
//!   `t = V(1 − (1 − f)S)` and the usual six-way choice.
//!
//! contrast: `(x − mean) · c + mean` with the per-channel mean summed in order over the pixels
//! (numpy reduces a C-ordered `H×W×3` array over axes (0, 1) with a plain running sum per
//! channel, not pairwise) and divided by `H·W`.

use image::RgbImage;

use crate::array::truncate_u8;
use crate::noise::unit_table;
use crate::{Flavor, Severity};

fn with_pixels(image: &RgbImage, f: impl FnOnce(&[u8]) -> Vec<u8>) -> RgbImage {
    RgbImage::from_raw(image.width(), image.height(), f(image.as_raw()))
        .expect("a per-pixel corruption keeps the number of bytes")
}

/// The brightness corruption: V shift per flavor.
pub(crate) fn apply_brightness(image: &RgbImage, severity: Severity, flavor: Flavor) -> RgbImage {
    let table = match flavor {
        Flavor::ImageCorruptions | Flavor::ImageNetC => [0.1, 0.2, 0.3, 0.4, 0.5],
        Flavor::CifarC => [0.05, 0.1, 0.15, 0.2, 0.3],
    };
    with_pixels(image, |p| brightness(p, table[severity.index()]))
}

/// The saturate corruption: (multiplier, offset) on S per flavor.
pub(crate) fn apply_saturate(image: &RgbImage, severity: Severity, flavor: Flavor) -> RgbImage {
    let table = match flavor {
        Flavor::ImageCorruptions | Flavor::ImageNetC => {
            [(0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2)]
        }
        Flavor::CifarC => [(0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2)],
    };
    let (mult, add) = table[severity.index()];
    with_pixels(image, |p| saturate(p, mult, add))
}

/// The contrast corruption: the factor per flavor.
pub(crate) fn apply_contrast(image: &RgbImage, severity: Severity, flavor: Flavor) -> RgbImage {
    let table = match flavor {
        Flavor::ImageCorruptions | Flavor::ImageNetC => [0.4, 0.3, 0.2, 0.1, 0.05],
        Flavor::CifarC => [0.75, 0.5, 0.4, 0.3, 0.15],
    };
    with_pixels(image, |p| contrast(p, table[severity.index()]))
}

/// `np.remainder(a, 1.0)` for float64: fmod, then shifted into [0, 1) (or exactly 1.0 when the
/// shift rounds up), with `+0.0` for an exact zero. Hues reach it as `h / 6` with `h` in
/// [−1, 5], where fmod by 1 is the identity, so only the shift is computed.
#[inline]
fn remainder_one(a: f64) -> f64 {
    let m = if a.abs() < 1.0 { a } else { a % 1.0 };
    if m == 0.0 {
        0.0
    } else if m < 0.0 {
        m + 1.0
    } else {
        m
    }
}

/// scikit-image `rgb2hsv` for one pixel of float64 channels.
#[inline]
pub(crate) fn rgb_to_hsv(r: f64, g: f64, b: f64) -> (f64, f64, f64) {
    let v = r.max(g).max(b);
    let delta = v - r.min(g).min(b);
    if delta == 0.0 {
        return (0.0, 0.0, v);
    }
    let s = delta / v;
    // numpy assigns red, then green, then blue: the last channel equal to the max wins.
    let h = if b == v {
        4.0 + (r - g) / delta
    } else if g == v {
        2.0 + (b - r) / delta
    } else {
        (g - b) / delta
    };
    (remainder_one(h / 6.0), s, v)
}

/// scikit-image `hsv2rgb` for one pixel.
#[inline]
pub(crate) fn hsv_to_rgb(h: f64, s: f64, v: f64) -> (f64, f64, f64) {
    let h6 = h * 6.0;
    let hi = h6.floor();
    let f = h6 - hi;
    let p = v * (1.0 - s);
    let q = v * (1.0 - f * s);
    let t = v * (1.0 - (1.0 - f) * s);
    match (hi as u8) % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

#[inline]
fn unit_to_u8(v: f64) -> u8 {
    truncate_u8(v.clamp(0.0, 1.0) * 255.0)
}

/// Applies `adjust` to every pixel's HSV and writes the clipped, truncated RGB.
fn map_hsv(pixels: &[u8], adjust: impl Fn(f64, f64, f64) -> (f64, f64, f64)) -> Vec<u8> {
    let unit = unit_table();
    let mut out = vec![0u8; pixels.len()];
    for (src, dst) in pixels.chunks_exact(3).zip(out.chunks_exact_mut(3)) {
        let (h, s, v) = rgb_to_hsv(
            unit[src[0] as usize],
            unit[src[1] as usize],
            unit[src[2] as usize],
        );
        let (h, s, v) = adjust(h, s, v);
        let (r, g, b) = hsv_to_rgb(h, s, v);
        dst[0] = unit_to_u8(r);
        dst[1] = unit_to_u8(g);
        dst[2] = unit_to_u8(b);
    }
    out
}

/// brightness: `V ← clip(V + shift, 0, 1)`.
pub(crate) fn brightness(pixels: &[u8], shift: f64) -> Vec<u8> {
    map_hsv(pixels, |h, s, v| (h, s, (v + shift).clamp(0.0, 1.0)))
}

/// saturate: `S ← clip(S · mult + add, 0, 1)`.
pub(crate) fn saturate(pixels: &[u8], mult: f64, add: f64) -> Vec<u8> {
    map_hsv(pixels, |h, s, v| (h, (s * mult + add).clamp(0.0, 1.0), v))
}

/// `np.mean(x / 255., axis=(0, 1))` for an H×W×3 byte buffer.
pub(crate) fn channel_means(pixels: &[u8]) -> [f64; 3] {
    let unit = unit_table();
    let mut sums = [0.0f64; 3];
    for px in pixels.chunks_exact(3) {
        sums[0] += unit[px[0] as usize];
        sums[1] += unit[px[1] as usize];
        sums[2] += unit[px[2] as usize];
    }
    let count = (pixels.len() / 3) as f64;
    sums.map(|s| s / count)
}

/// contrast: `clip((x − mean) · factor + mean, 0, 1) · 255`. Each channel has only 256 possible
/// inputs, so the result is a lookup table per channel.
pub(crate) fn contrast(pixels: &[u8], factor: f64) -> Vec<u8> {
    let unit = unit_table();
    let means = channel_means(pixels);
    let tables: [[u8; 256]; 3] =
        means.map(|mean| std::array::from_fn(|k| unit_to_u8((unit[k] - mean) * factor + mean)));
    let mut out = pixels.to_vec();
    for px in out.chunks_exact_mut(3) {
        px[0] = tables[0][px[0] as usize];
        px[1] = tables[1][px[1] as usize];
        px[2] = tables[2][px[2] as usize];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsv_ties_go_to_the_later_channel() {
        // r = g = max: green wins (hue 2 + (b − r)/Δ), so pure yellow has hue 1/6.
        let (h, s, v) = rgb_to_hsv(1.0, 1.0, 0.0);
        assert_eq!((h, s, v), (1.0 / 6.0, 1.0, 1.0));
        // g = b = max: blue wins → 4 + (r − g)/Δ = 3 → hue 0.5 (cyan).
        assert_eq!(rgb_to_hsv(0.0, 1.0, 1.0).0, 0.5);
        // Grey: hue and saturation 0.
        assert_eq!(rgb_to_hsv(0.5, 0.5, 0.5), (0.0, 0.0, 0.5));
        // Black: no division by zero.
        assert_eq!(rgb_to_hsv(0.0, 0.0, 0.0), (0.0, 0.0, 0.0));
    }

    #[test]
    fn hue_uses_floor_mod() {
        // Red max with b > g gives a negative raw hue that wraps below 1.
        let (h, _, _) = rgb_to_hsv(1.0, 0.0, 0.5);
        assert!((h - (1.0 - 0.5 / 6.0)).abs() < 1e-15, "{h}");
        assert_eq!(remainder_one(-0.0), 0.0);
        assert_eq!(remainder_one(-1e-20), 1.0);
        assert_eq!(remainder_one(2.25), 0.25);
        assert_eq!(remainder_one(-2.75), 0.25);
    }

    #[test]
    fn hsv_round_trip_is_close() {
        for &(r, g, b) in &[
            (0.2, 0.4, 0.9),
            (0.9, 0.1, 0.3),
            (0.3, 0.8, 0.1),
            (1.0, 0.0, 0.0),
        ] {
            let (h, s, v) = rgb_to_hsv(r, g, b);
            let (r2, g2, b2) = hsv_to_rgb(h, s, v);
            assert!((r - r2).abs() < 1e-12 && (g - g2).abs() < 1e-12 && (b - b2).abs() < 1e-12);
        }
        // Hue exactly 1.0 maps like 0.
        assert_eq!(hsv_to_rgb(1.0, 0.5, 1.0), hsv_to_rgb(0.0, 0.5, 1.0));
    }

    #[test]
    fn contrast_pulls_towards_the_channel_mean() {
        let pixels = [0, 0, 255, 255, 255, 255];
        let out = contrast(&pixels, 0.5);
        // Channel 0 mean is 0.5: 0 → 0.25 → 63, 255 → 0.75 → 191.
        assert_eq!(out[0], 63);
        assert_eq!(out[3], 191);
        // Channel 2 is constant 255: unchanged.
        assert_eq!((out[2], out[5]), (255, 255));
    }

    #[test]
    fn brightness_and_saturate_leave_sizes_alone() {
        let pixels: Vec<u8> = (0..30).map(|i| (i * 8) as u8).collect();
        assert_eq!(brightness(&pixels, 0.3).len(), 30);
        assert_eq!(saturate(&pixels, 5.0, 0.1).len(), 30);
        // Brightness of white stays white; of black becomes the shift.
        assert_eq!(
            brightness(&[0, 0, 0, 255, 255, 255], 0.3),
            vec![76, 76, 76, 255, 255, 255]
        );
    }
}
