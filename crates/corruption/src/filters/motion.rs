//! The two motion-blur kernels of the references.
//!
//! Both sum `width = 2·ceil(radius) + 1` copies of the image, copy `i` weighted by
//! `exp(−i²/2σ²)` (normalised) and displaced by `(ceil(i·cos a − 0.5), ceil(i·sin a − 0.5))`
//! pixels (x, y), where `(cos a, sin a)` comes from `width·(cos, sin)/hypot`. They differ in
//! the arithmetic:
//! - [`motion_blur_numpy`] is imagecorruptions' `_motion_blur`: kernel with numpy's `exp` and
//!   pairwise sum, edge pixels replicated by its `shift` helper, float64 accumulation; it
//!   stops adding copies once a displacement reaches the image size.
//! - [`motion_blur_imagemagick`] is ImageMagick 6's `MotionBlurImage` as the ImageNet-C code
//!   calls it through Wand (`MagickMotionBlurImage`) on an 8-bit PNG: Q16 quantum values
//!   (`257·v`), the C library's `exp`, edge virtual pixels, `ClampToQuantum` (round half up)
//!   and the 8-bit PNG writer's `floor(q/257)`.
//!
//! Angles are in degrees, as the references take them.

use super::npmath;
use crate::array::Array3;

/// The displacements (dx, dy) of the `width` copies for `angle` degrees. `sin`/`cos` are
/// computed by the caller's convention: numpy uses `angle·(π/180)`, ImageMagick `π·angle/180`.
fn offsets(width: usize, radians: f64) -> Vec<(i64, i64)> {
    let point_y = width as f64 * radians.sin();
    let point_x = width as f64 * radians.cos();
    let hypot = point_y.hypot(point_x);
    (0..width)
        .map(|i| {
            let dx = ((i as f64 * point_x) / hypot - 0.5).ceil() as i64;
            let dy = ((i as f64 * point_y) / hypot - 0.5).ceil() as i64;
            (dx, dy)
        })
        .collect()
}

/// `Σ_i weight_i · x[clamp(r + dy_i), clamp(c + dx_i)]` for every element, the terms added in
/// tap order starting from 0 (as both references accumulate), one output row at a time;
/// `value` widens a source sample, `sink(r, row)` receives each finished row.
fn shifted_sum<S: Copy>(
    x: &[S],
    shape: [usize; 3],
    taps: &[(i64, i64, f64)],
    value: impl Fn(S) -> f64,
    mut sink: impl FnMut(usize, &[f64]),
) {
    let [height, width, channels] = shape;
    let row_len = width * channels;
    let mut acc = vec![0.0f64; row_len];
    for r in 0..height {
        acc.fill(0.0);
        for &(dx, dy, weight) in taps {
            let src_r = (r as i64 + dy).clamp(0, height as i64 - 1) as usize;
            let src = &x[src_r * row_len..(src_r + 1) * row_len];
            // Columns whose source stays inside need no clamping: one contiguous slice.
            let first = (-dx).clamp(0, width as i64) as usize;
            let last = (width as i64 - dx).clamp(0, width as i64) as usize;
            let last = last.max(first);
            if last > first {
                let s0 = (first as i64 + dx) as usize * channels;
                let n = (last - first) * channels;
                for (d, &v) in acc[first * channels..first * channels + n]
                    .iter_mut()
                    .zip(&src[s0..s0 + n])
                {
                    *d += weight * value(v);
                }
            }
            for c in (0..first).chain(last..width) {
                let src_c = (c as i64 + dx).clamp(0, width as i64 - 1) as usize;
                for ch in 0..channels {
                    acc[c * channels + ch] += weight * value(src[src_c * channels + ch]);
                }
            }
        }
        sink(r, &acc);
    }
}

/// The taps (dx, dy, weight) of the numpy kernel, stopping where the reference stops.
fn numpy_taps(shape: [usize; 3], radius: usize, sigma: f64, angle: f64) -> Vec<(i64, i64, f64)> {
    let width = 2 * radius + 1;
    // gauss_function(np.arange(width), 0, sigma): exp(−x²/(2σ²)) / (√(2π)·σ), then k/Σk.
    let two_sigma2 = 2.0 * (sigma * sigma);
    let norm = (2.0 * std::f64::consts::PI).sqrt() * sigma;
    let raw: Vec<f64> = (0..width as i64)
        .map(|i| npmath::exp(-((i * i) as f64) / two_sigma2) / norm)
        .collect();
    let total = npmath::pairwise_sum(&raw);
    // np.deg2rad(angle) = angle·(π/180).
    let radians = angle * (std::f64::consts::PI / 180.0);
    offsets(width, radians)
        .into_iter()
        .zip(raw)
        // The reference shifts by (−dx, −dy) with np.roll and edge fill, i.e. it reads
        // x[r + dy, c + dx]; it stops once a shift reaches the image size.
        .take_while(|&((dx, dy), _)| {
            (dy.unsigned_abs() as usize) < shape[0] && (dx.unsigned_abs() as usize) < shape[1]
        })
        .map(|((dx, dy), k)| (dx, dy, k / total))
        .collect()
}

/// imagecorruptions' `_motion_blur` on an 8-bit image followed by `np.uint8(np.clip(·, 0,
/// 255))`, the motion_blur corruption's arithmetic without intermediate arrays.
pub(crate) fn motion_blur_numpy_u8(
    x: &Array3<u8>,
    radius: usize,
    sigma: f64,
    angle: f64,
) -> Array3<u8> {
    let shape = [x.height, x.width, x.channels];
    let taps = numpy_taps(shape, radius, sigma, angle);
    let mut data = Vec::with_capacity(x.data.len());
    shifted_sum(
        &x.data,
        shape,
        &taps,
        |v| v as f64,
        |_, row| data.extend(row.iter().map(|&v| v.clamp(0.0, 255.0) as u8)),
    );
    Array3 {
        height: x.height,
        width: x.width,
        channels: x.channels,
        data,
    }
}

/// imagecorruptions' `_motion_blur(x, radius, sigma, angle)` on float64 values (an 8-bit image
/// converted exactly, or the float snow layer). Returns the float64 sum; the caller clips and
/// truncates.
pub(crate) fn motion_blur_numpy(
    x: &Array3<f64>,
    radius: usize,
    sigma: f64,
    angle: f64,
) -> Array3<f64> {
    let shape = [x.height, x.width, x.channels];
    let taps = numpy_taps(shape, radius, sigma, angle);
    let mut data = Vec::with_capacity(x.data.len());
    shifted_sum(
        &x.data,
        shape,
        &taps,
        |v| v,
        |_, row| data.extend_from_slice(row),
    );
    Array3 {
        height: x.height,
        width: x.width,
        channels: x.channels,
        data,
    }
}

/// `MagickMotionBlurImage(wand, radius, sigma, angle)` on an 8-bit image read from PNG and
/// written back as 8-bit PNG (what the ImageNet-C and CIFAR-10-C code do through Wand), for any
/// number of channels. `radius` is the integer radius of the parameter tables; radius 0
/// gives the identity (ImageMagick would derive a width from sigma, which no table needs).
pub(crate) fn motion_blur_imagemagick(
    x: &Array3<u8>,
    radius: usize,
    sigma: f64,
    angle: f64,
) -> Array3<u8> {
    const MAGICK_EPSILON: f64 = 1.0e-12;
    const SQ2PI: f64 = 2.506_628_274_631_000_241_612_355_239_340_104_162_693_023_681_640_62;
    // GetOptimalKernelWidth1D for a positive radius: 2·ceil(radius) + 1.
    let width = 2 * radius + 1;
    let sigma = if sigma.abs() < MAGICK_EPSILON {
        MAGICK_EPSILON
    } else {
        sigma
    };
    let mut kernel: Vec<f64> = (0..width)
        .map(|i| {
            let i = i as f64;
            (-(i * i) / (2.0 * sigma * sigma)).exp() / (SQ2PI * sigma)
        })
        .collect();
    let mut normalize = 0.0;
    for k in &kernel {
        normalize += k;
    }
    for k in &mut kernel {
        *k /= normalize;
    }
    // DegreesToRadians(a) = MagickPI·a/180.
    let radians = std::f64::consts::PI * angle / 180.0;

    let taps: Vec<(i64, i64, f64)> = offsets(width, radians)
        .into_iter()
        .zip(kernel)
        .map(|((dx, dy), k)| (dx, dy, k))
        .collect();
    // Q16 quanta of the 8-bit PNG samples: 257·v.
    let quanta: [f64; 256] = std::array::from_fn(|v| 257.0 * v as f64);
    let mut data = Vec::with_capacity(x.data.len());
    shifted_sum(
        &x.data,
        [x.height, x.width, x.channels],
        &taps,
        |v| quanta[v as usize],
        |_, row| data.extend(row.iter().map(|&s| quantum_to_png8(clamp_to_quantum(s)))),
    );
    Array3 {
        height: x.height,
        width: x.width,
        channels: x.channels,
        data,
    }
}

/// `ClampToQuantum` of a non-HDRI Q16 build: 0 below, 65535 above, else `(Quantum)(v + 0.5)`.
fn clamp_to_quantum(value: f64) -> u16 {
    if value <= 0.0 {
        0
    } else if value >= 65535.0 {
        65535
    } else {
        (value + 0.5) as u16
    }
}

/// The 8-bit sample the PNG writer stores for a Q16 quantum: `floor(q/257)` (measured against
/// libmagickcore 6.9.11-60; the rounding `ScaleQuantumToChar` would disagree on half the
/// pixels).
fn quantum_to_png8(q: u16) -> u8 {
    (q / 257) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_walk_along_the_angle() {
        let o = offsets(5, 0.0);
        assert_eq!(o, vec![(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)]);
        let o = offsets(3, std::f64::consts::FRAC_PI_2);
        assert_eq!(o, vec![(0, 0), (0, 1), (0, 2)]);
    }

    #[test]
    fn constant_images_stay_constant() {
        let x = Array3::filled(6, 9, 3, 77u8);
        let out = motion_blur_imagemagick(&x, 3, 1.0, 20.0);
        assert!(out.data.iter().all(|&v| v == 77 || v == 76));
        let xf = x.map(|v| v as f64);
        let out = motion_blur_numpy(&xf, 3, 1.0, -30.0);
        assert!(out.data.iter().all(|&v| (v - 77.0).abs() < 1e-9));
    }

    #[test]
    fn numpy_variant_stops_at_the_image_size() {
        // A 1×1 image: the first copy has zero shift, every later one reaches the size.
        let x = Array3::filled(1, 1, 1, 100.0f64);
        let out = motion_blur_numpy(&x, 10, 3.0, 0.0);
        assert!(out.data[0] < 100.0 && out.data[0] > 0.0);
    }
}
