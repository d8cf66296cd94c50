//! mmseg's `PhotoMetricDistortion` (mmseg 1.2.2, `mmseg/datasets/transforms/transforms.py`)
//! with OpenCV 4.10's 8-bit HSV conversions (`modules/imgproc/src/color_hsv.simd.hpp`), which
//! it calls through `mmcv.bgr2hsv` / `mmcv.hsv2bgr`.
//!
//! The order of the draws and of the steps is mmseg's: brightness (probability ½, delta
//! uniform in [−32, 32)); a mode bit; contrast here if the mode is 1; saturation (probability
//! ½, factor in [0.5, 1.5) on the S channel); hue (probability ½, shift `randint(−18, 18)`,
//! i.e. −18..=17, modulo 180); contrast here if the mode is 0. Each of brightness, contrast and
//! saturation computes `x·α + β` in float32, clips to [0, 255] and truncates to 8 bits.
//! Saturation and hue each convert to HSV and back on their own, as mmseg does.
//!
//! OpenCV's float steps of HSV → RGB are fused multiply-adds where its compiler fused them
//! (`1 − s·h`, `1 − s·(1 − h)`); this module computes the same singly rounded values.
//! OpenCV's 8-bit HSV → RGB has two paths in one row: the vector kernel (AVX2, 32 pixels at a
//! time) truncates `x·255`, the scalar tail rounds it half to even. [`hsv_to_rgb`] copies that
//! split for the x86 build with AVX2 (what the opencv-python wheels dispatch to on any AVX2
//! machine); on a CPU without AVX2 OpenCV's blocks are 16 pixels and a few tail pixels can
//! differ by one level. RGB → HSV is integer arithmetic, the same in both paths.

use rtb_train::seed::SplitMix64;

/// Pixels per block of OpenCV's AVX2 HSV → RGB kernel (4 × 8 float lanes).
const HSV_BLOCK: usize = 32;
/// `hsv_shift` of OpenCV's 8-bit RGB → HSV.
const HSV_SHIFT: u32 = 12;

/// The tables of OpenCV's 8-bit RGB → HSV (`sdiv_table`, `hdiv_table180`).
struct HsvTables {
    sdiv: [i32; 256],
    hdiv: [i32; 256],
}

fn hsv_tables() -> &'static HsvTables {
    static TABLES: std::sync::OnceLock<HsvTables> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        let mut sdiv = [0i32; 256];
        let mut hdiv = [0i32; 256];
        for i in 1..256 {
            // saturate_cast<int>(double): round half to even.
            sdiv[i] = (f64::from(255 << HSV_SHIFT) / i as f64).round_ties_even() as i32;
            hdiv[i] = (f64::from(180 << HSV_SHIFT) / (6.0 * i as f64)).round_ties_even() as i32;
        }
        HsvTables { sdiv, hdiv }
    })
}

/// `cv2.cvtColor(COLOR_RGB2HSV)` of one 8-bit pixel: hue 0..180, saturation and value 0..=255.
pub fn rgb_to_hsv_pixel(r: u8, g: u8, b: u8) -> [u8; 3] {
    rgb_to_hsv_with(hsv_tables(), r, g, b)
}

fn rgb_to_hsv_with(tables: &HsvTables, r: u8, g: u8, b: u8) -> [u8; 3] {
    let (r, g, b) = (i32::from(r), i32::from(g), i32::from(b));
    let v = r.max(g).max(b);
    let vmin = r.min(g).min(b);
    let diff = v - vmin;
    let vr = if v == r { -1 } else { 0 };
    let vg = if v == g { -1 } else { 0 };
    let half = 1 << (HSV_SHIFT - 1);
    let s = (diff * tables.sdiv[v as usize] + half) >> HSV_SHIFT;
    let mut h = (vr & (g - b)) + (!vr & ((vg & (b - r + 2 * diff)) + (!vg & (r - g + 4 * diff))));
    h = (h * tables.hdiv[diff as usize] + half) >> HSV_SHIFT;
    if h < 0 {
        h += 180;
    }
    [h.clamp(0, 255) as u8, s as u8, v as u8]
}

/// The float part of OpenCV's HSV → RGB for 8-bit input (hue range 180): returns r, g, b in
/// 0..=1 before the scaling by 255. Vector and scalar paths agree here for hue < 180.
fn hsv_to_rgb_float(h: u8, s: u8, v: u8) -> [f32; 3] {
    let hscale = 6.0f32 / 180.0;
    let s = f32::from(s) * (1.0 / 255.0);
    let v = f32::from(v) * (1.0 / 255.0);
    let mut h = f32::from(h) * hscale;
    // h ≥ 0, so the cast truncates as OpenCV's v_trunc / cvFloor do (and, unlike
    // `f32::trunc`, needs no libm call on baseline x86-64).
    let sector = h as i32;
    h -= sector as f32;
    // OpenCV reduces the sector modulo 6 (h ≥ 180 cannot occur after RGB → HSV).
    let sector = sector.rem_euclid(6) as usize;
    // The x86 build of OpenCV compiles this kernel with FMA enabled, and the compiler fuses
    // `1 − s·h` into one fused negative multiply-add in both paths (an unfused version
    // differs from cv2 on 1,758 of the 11.8 million inputs); `1 − s` and `1 − h` stay
    // plain subtractions.
    let tab = [
        v,
        v * (1.0 - s),
        v * fused_one_minus(s, h),
        v * fused_one_minus(s, 1.0 - h),
    ];
    // OpenCV's `sector_data`, as (b, g, r) indices into `tab`.
    const SECTORS: [[usize; 3]; 6] = [
        [1, 3, 0],
        [1, 0, 2],
        [3, 0, 1],
        [0, 2, 1],
        [0, 1, 3],
        [2, 1, 0],
    ];
    let [bi, gi, ri] = SECTORS[sector];
    [tab[ri], tab[gi], tab[bi]]
}

/// `1 − a·b` with one rounding, as a fused multiply-add gives it. The product of two f32 is
/// exact in f64 and the f64 sum rounds once more before the f32 rounding; on this function's
/// whole domain (every 8-bit s and hue) that double rounding never differs from a true fused
/// operation (the exhaustive golden test checks every input), and it avoids the software
/// `fmaf` that `f32::mul_add` becomes without a compile-time FMA target.
fn fused_one_minus(a: f32, b: f32) -> f32 {
    (1.0 - f64::from(a) * f64::from(b)) as f32
}

/// `cv2.cvtColor(COLOR_HSV2RGB)` of one 8-bit pixel as the vector kernel computes it
/// (truncating `x·255`).
pub fn hsv_to_rgb_pixel_vector(h: u8, s: u8, v: u8) -> [u8; 3] {
    // `as u8` truncates toward zero and saturates, as v_trunc then v_pack_u do.
    hsv_to_rgb_float(h, s, v).map(|x| (x * 255.0) as u8)
}

/// `cv2.cvtColor(COLOR_HSV2RGB)` of one 8-bit pixel as the scalar tail computes it
/// (`saturate_cast<uchar>(x·255)`, rounding half to even).
pub fn hsv_to_rgb_pixel_scalar(h: u8, s: u8, v: u8) -> [u8; 3] {
    hsv_to_rgb_float(h, s, v).map(|x| round_half_even(x * 255.0) as u8)
}

/// Round half to even for 0 ≤ x < 2^22 without a libm call: adding 2^23 leaves no fraction
/// bits, so the addition itself rounds (half to even, the default mode).
fn round_half_even(x: f32) -> f32 {
    const SHIFT: f32 = 8_388_608.0;
    if (0.0..4_194_304.0).contains(&x) {
        (x + SHIFT) - SHIFT
    } else {
        x.round_ties_even()
    }
}

/// An interleaved 8-bit RGB image converted to OpenCV's 8-bit HSV in place.
pub fn rgb_to_hsv(pixels: &mut [u8]) {
    let tables = hsv_tables();
    for px in pixels.chunks_exact_mut(3) {
        let hsv = rgb_to_hsv_with(tables, px[0], px[1], px[2]);
        px.copy_from_slice(&hsv);
    }
}

/// An interleaved 8-bit HSV image of rows `width` pixels wide converted back to RGB in place,
/// with OpenCV's per-row split between the vector blocks and the scalar tail.
pub fn hsv_to_rgb(pixels: &mut [u8], width: usize) {
    if width == 0 {
        return;
    }
    let vector_end = width / HSV_BLOCK * HSV_BLOCK;
    for row in pixels.chunks_exact_mut(width * 3) {
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let rgb = if x < vector_end {
                hsv_to_rgb_pixel_vector(px[0], px[1], px[2])
            } else {
                hsv_to_rgb_pixel_scalar(px[0], px[1], px[2])
            };
            px.copy_from_slice(&rgb);
        }
    }
}

/// The parameters of mmseg's `PhotoMetricDistortion` (its defaults in
/// [`PhotometricConfig::default`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhotometricConfig {
    /// Brightness delta: β uniform in [−delta, delta). Default 32.
    pub brightness_delta: f64,
    /// Contrast factor range. Default (0.5, 1.5).
    pub contrast_range: (f64, f64),
    /// Saturation factor range. Default (0.5, 1.5).
    pub saturation_range: (f64, f64),
    /// Hue shift: `randint(−delta, delta)`, so −delta..delta−1. Default 18.
    pub hue_delta: i32,
}

impl Default for PhotometricConfig {
    fn default() -> Self {
        PhotometricConfig {
            brightness_delta: 32.0,
            contrast_range: (0.5, 1.5),
            saturation_range: (0.5, 1.5),
            hue_delta: 18,
        }
    }
}

/// What one application of the distortion drew: `None` for a step that its coin switched off.
/// Injectable, so that each step can be checked against mmseg given the same draws.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PhotometricDraws {
    /// Brightness β.
    pub brightness: Option<f64>,
    /// mmseg's `mode == 1`: contrast before the HSV steps (otherwise after them).
    pub contrast_first: bool,
    /// Contrast α.
    pub contrast: Option<f64>,
    /// Saturation α.
    pub saturation: Option<f64>,
    /// Hue shift.
    pub hue: Option<i32>,
}

impl PhotometricConfig {
    /// Draws the parameters from `rng` in mmseg's order (brightness coin and value, mode,
    /// contrast if first, saturation, hue, contrast if last).
    pub fn draw(&self, rng: &mut SplitMix64) -> PhotometricDraws {
        let uniform = |rng: &mut SplitMix64, (lo, hi): (f64, f64)| lo + (hi - lo) * rng.uniform();
        let mut draws = PhotometricDraws::default();
        if rng.coin() {
            let delta = self.brightness_delta;
            draws.brightness = Some(uniform(rng, (-delta, delta)));
        }
        draws.contrast_first = rng.coin();
        let contrast = |rng: &mut SplitMix64| {
            if rng.coin() {
                Some(uniform(rng, self.contrast_range))
            } else {
                None
            }
        };
        if draws.contrast_first {
            draws.contrast = contrast(rng);
        }
        if rng.coin() {
            draws.saturation = Some(uniform(rng, self.saturation_range));
        }
        if rng.coin() {
            let span = (2 * self.hue_delta).max(1) as u64;
            draws.hue = Some(rng.below(span) as i32 - self.hue_delta);
        }
        if !draws.contrast_first {
            draws.contrast = contrast(rng);
        }
        draws
    }
}

/// mmseg's `convert`: `clip(x·α + β, 0, 255)` in float32, truncated to 8 bits.
fn convert(value: u8, alpha: f32, beta: f32) -> u8 {
    (f32::from(value) * alpha + beta).clamp(0.0, 255.0) as u8
}

/// Applies the distortion drawn as `draws` to an interleaved 8-bit RGB image of rows `width`
/// pixels wide, in place.
pub fn photometric_distortion(pixels: &mut [u8], width: usize, draws: &PhotometricDraws) {
    if let Some(beta) = draws.brightness {
        let beta = beta as f32;
        pixels.iter_mut().for_each(|v| *v = convert(*v, 1.0, beta));
    }
    let contrast = |pixels: &mut [u8]| {
        if let Some(alpha) = draws.contrast {
            let alpha = alpha as f32;
            pixels.iter_mut().for_each(|v| *v = convert(*v, alpha, 0.0));
        }
    };
    if draws.contrast_first {
        contrast(pixels);
    }
    if let Some(alpha) = draws.saturation {
        let alpha = alpha as f32;
        rgb_to_hsv(pixels);
        pixels
            .chunks_exact_mut(3)
            .for_each(|px| px[1] = convert(px[1], alpha, 0.0));
        hsv_to_rgb(pixels, width);
    }
    if let Some(shift) = draws.hue {
        rgb_to_hsv(pixels);
        pixels
            .chunks_exact_mut(3)
            .for_each(|px| px[0] = (i32::from(px[0]) + shift).rem_euclid(180) as u8);
        hsv_to_rgb(pixels, width);
    }
    if !draws.contrast_first {
        contrast(pixels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_pixels_have_no_hue_or_saturation() {
        for v in [0u8, 1, 128, 255] {
            assert_eq!(rgb_to_hsv_pixel(v, v, v), [0, 0, v]);
            assert_eq!(hsv_to_rgb_pixel_scalar(0, 0, v), [v, v, v]);
        }
        // Pure red, green, blue: hues 0, 60, 120 on OpenCV's 0..180 scale.
        assert_eq!(rgb_to_hsv_pixel(255, 0, 0), [0, 255, 255]);
        assert_eq!(rgb_to_hsv_pixel(0, 255, 0), [60, 255, 255]);
        assert_eq!(rgb_to_hsv_pixel(0, 0, 255), [120, 255, 255]);
    }

    #[test]
    fn draws_repeat_for_a_seed_and_stay_in_range() {
        let cfg = PhotometricConfig::default();
        for seed in 0..200 {
            let a = cfg.draw(&mut SplitMix64::new(seed));
            assert_eq!(a, cfg.draw(&mut SplitMix64::new(seed)));
            if let Some(b) = a.brightness {
                assert!((-32.0..32.0).contains(&b));
            }
            if let Some(h) = a.hue {
                assert!((-18..18).contains(&h));
            }
            for x in [a.contrast, a.saturation].into_iter().flatten() {
                assert!((0.5..1.5).contains(&x));
            }
        }
    }

    #[test]
    fn nothing_drawn_changes_nothing() {
        let mut pixels: Vec<u8> = (0..=255).cycle().take(40 * 3 * 2).collect();
        let before = pixels.clone();
        photometric_distortion(&mut pixels, 40, &PhotometricDraws::default());
        assert_eq!(pixels, before);
    }
}
