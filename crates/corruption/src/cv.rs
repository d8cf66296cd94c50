//! Bit-exact ports of the OpenCV 4.10 functions that `spatter` and `snow` call, as the
//! `opencv-python` 4.10.0.84 wheel computes them (with its Intel IPP paths where the wheel takes
//! them).
//!
//! All images here are single-channel, row-major `height × width` slices. What each function
//! reproduces, and where the wheel's arithmetic differs from OpenCV's portable C++ code:
//!
//! - [`canny_l1`]: `cv2.Canny(src, low, high)` (aperture 3, L1 gradient). Sobel derivatives with
//!   replicated borders, |dx| + |dy|, non-maximum suppression in four directions with the
//!   `tan 22.5°` fixed-point test, magnitudes outside the image read as 0, then hysteresis over
//!   8-neighbours. The portable and the IPP paths agree (checked against both).
//! - [`distance_transform_l2_mask5`]: `cv2.distanceTransform(src, DIST_L2, 5)`. DIST_L2 with
//!   `maskSize = 5` is the 5×5 chamfer approximation (weights 1, 1.4, 2.1969), not the exact
//!   transform (`DIST_MASK_PRECISE`). The wheel runs IPP's `ippiDistanceTransform_5x5_8u32f`,
//!   which propagates in `float` (so a diagonal step is `1.4f`, where OpenCV's own fixed-point
//!   code gives 1.3999939); pixels outside the image never contribute, and a pixel with no zero
//!   pixel anywhere keeps `FLT_MAX`.
//! - [`threshold_trunc`]: `cv2.threshold(x, t, _, THRESH_TRUNC)` on `float32`.
//! - [`box_blur3_f32`] / [`box_blur3_u8`]: `cv2.blur(x, (3, 3))` with `BORDER_REFLECT_101`; the
//!   float version sums rows then a running column sum in `double` and scales by `1/9`, the
//!   8-bit version rounds the integer mean to nearest.
//! - [`equalize_hist`]: `cv2.equalizeHist` (LUT from the cumulative histogram above the first
//!   occupied bin, `float` scale, rounded; a constant image maps to itself).
//! - [`filter2d_3x3_u8`]: `cv2.filter2D(src, CV_8U, kernel)` for an integer 3×3 kernel
//!   (correlation, centred anchor, `BORDER_REFLECT_101`, saturation to 0..=255).
//! - [`rgb_to_gray_f32`]: `cv2.cvtColor(x, COLOR_RGB2GRAY)` on `float32`: the wheel's IPP path
//!   computes `fma(b, 0.114, fma(r, 0.299, g·0.587))` in `float` (OpenCV's own SIMD code orders
//!   the fused multiply-adds differently and would differ in the last bit).
//!
//! `cvtColor` GRAY2BGRA, BGR2BGRA and BGRA2BGR only add or drop an alpha lane that never
//! reaches spatter's output (its per-channel max is 1 and it is dropped at the end), so the
//! spatter port works on three channels directly.

/// `cv::borderInterpolate` for `BORDER_REFLECT_101` at distance ≤ 1 outside `0..len`
/// (`gfedcb|abcdefgh|gfedcba`; a single pixel reflects onto itself).
#[inline]
fn reflect101(index: isize, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    if index < 0 {
        (-index) as usize
    } else if index as usize >= len {
        2 * len - 2 - index as usize
    } else {
        index as usize
    }
}

/// `cv2.Canny(src, low_threshold, high_threshold)`: aperture 3, L1 gradient; 255 on edges.
pub(crate) fn canny_l1(
    src: &[u8],
    height: usize,
    width: usize,
    low_threshold: f64,
    high_threshold: f64,
) -> Vec<u8> {
    debug_assert_eq!(src.len(), height * width);
    let (low_threshold, high_threshold) = if low_threshold > high_threshold {
        (high_threshold, low_threshold)
    } else {
        (low_threshold, high_threshold)
    };
    let low = low_threshold.floor() as i32;
    let high = high_threshold.floor() as i32;

    // Sobel 3×3 with BORDER_REPLICATE, on the image framed by one replicated pixel.
    let stride = width + 2;
    let mut padded = vec![0i32; (height + 2) * stride];
    for (row, line) in padded.chunks_exact_mut(stride).enumerate() {
        let src_line = &src[(row.max(1) - 1).min(height - 1) * width..][..width];
        line[0] = src_line[0] as i32;
        line[stride - 1] = src_line[width - 1] as i32;
        for (d, &v) in line[1..=width].iter_mut().zip(src_line) {
            *d = v as i32;
        }
    }
    let mut dx = vec![0i32; height * width];
    let mut dy = vec![0i32; height * width];
    for row in 0..height {
        let up = &padded[row * stride..][..stride];
        let mid = &padded[(row + 1) * stride..][..stride];
        let down = &padded[(row + 2) * stride..][..stride];
        let dx_line = &mut dx[row * width..][..width];
        let dy_line = &mut dy[row * width..][..width];
        for col in 0..width {
            let (left, right) = (col, col + 2);
            dx_line[col] = (up[right] + 2 * mid[right] + down[right])
                - (up[left] + 2 * mid[left] + down[left]);
            dy_line[col] = (down[left] + 2 * down[col + 1] + down[right])
                - (up[left] + 2 * up[col + 1] + up[right]);
        }
    }

    // Magnitudes with a ring of zeros around the image (OpenCV's border rows and columns).
    let padded_width = width + 2;
    let mut magnitude = vec![0i32; (height + 2) * padded_width];
    for row in 0..height {
        for col in 0..width {
            let i = row * width + col;
            magnitude[(row + 1) * padded_width + col + 1] = dx[i].abs() + dy[i].abs();
        }
    }

    // 0: may belong to an edge, 1: cannot, 2: edge. The frame of 1s stops the hysteresis.
    const CANDIDATE: u8 = 0;
    const NOT_EDGE: u8 = 1;
    const EDGE: u8 = 2;
    // round(tan(22.5°) · 2^15)
    const TG22: i64 = 13573;
    let mut map = vec![NOT_EDGE; (height + 2) * padded_width];
    let mut stack: Vec<usize> = Vec::new();
    for row in 0..height {
        for col in 0..width {
            let here = (row + 1) * padded_width + col + 1;
            let m = magnitude[here];
            if m <= low {
                continue;
            }
            let xs = dx[row * width + col];
            let ys = dy[row * width + col];
            let x = xs.unsigned_abs() as i64;
            let y = (ys.unsigned_abs() as i64) << 15;
            let tg22x = x * TG22;
            let is_peak = if y < tg22x {
                m > magnitude[here - 1] && m >= magnitude[here + 1]
            } else {
                let tg67x = tg22x + (x << 16);
                if y > tg67x {
                    m > magnitude[here - padded_width] && m >= magnitude[here + padded_width]
                } else if (xs ^ ys) < 0 {
                    m > magnitude[here - padded_width + 1] && m > magnitude[here + padded_width - 1]
                } else {
                    m > magnitude[here - padded_width - 1] && m > magnitude[here + padded_width + 1]
                }
            };
            if is_peak {
                if m > high {
                    map[here] = EDGE;
                    stack.push(here);
                } else {
                    map[here] = CANDIDATE;
                }
            }
        }
    }
    while let Some(here) = stack.pop() {
        for neighbour in [
            here - padded_width - 1,
            here - padded_width,
            here - padded_width + 1,
            here - 1,
            here + 1,
            here + padded_width - 1,
            here + padded_width,
            here + padded_width + 1,
        ] {
            if map[neighbour] == CANDIDATE {
                map[neighbour] = EDGE;
                stack.push(neighbour);
            }
        }
    }
    let mut out = vec![0u8; height * width];
    for row in 0..height {
        for col in 0..width {
            if map[(row + 1) * padded_width + col + 1] == EDGE {
                out[row * width + col] = 255;
            }
        }
    }
    out
}

/// `cv2.distanceTransform(src, cv2.DIST_L2, 5)`: float32 chamfer distance to the nearest zero
/// pixel, as the wheel's IPP routine computes it (see the module docs).
pub(crate) fn distance_transform_l2_mask5(src: &[u8], height: usize, width: usize) -> Vec<f32> {
    debug_assert_eq!(src.len(), height * width);
    const HV: f32 = 1.0;
    const DIAGONAL: f32 = 1.4;
    const KNIGHT: f32 = 2.1969;
    // A frame of two FLT_MAX pixels stands for "outside" (FLT_MAX + w rounds back to FLT_MAX,
    // which never wins a minimum), so the passes need no bounds tests. Every candidate is
    // ≥ 0, so zero pixels stay 0 without a test either. The minimum is exact, so splitting it
    // into the (vectorisable) rows above and the sequential left neighbour changes nothing.
    let stride = width + 4;
    let mut padded = vec![f32::MAX; (height + 4) * stride];
    for row in 0..height {
        let line = &mut padded[(row + 2) * stride + 2..][..width];
        for (d, &v) in line.iter_mut().zip(&src[row * width..][..width]) {
            if v == 0 {
                *d = 0.0;
            }
        }
    }
    // Forward pass: the mask's upper half (two rows above) then the left neighbour.
    for row in 2..height + 2 {
        let (above, rest) = padded.split_at_mut(row * stride);
        let up2 = &above[(row - 2) * stride..][..stride];
        let up1 = &above[(row - 1) * stride..][..stride];
        let line = &mut rest[..stride];
        for col in 2..width + 2 {
            let knights = fmin(
                fmin(up2[col - 1] + KNIGHT, up2[col + 1] + KNIGHT),
                fmin(up1[col - 2] + KNIGHT, up1[col + 2] + KNIGHT),
            );
            let near = fmin(
                fmin(up1[col - 1] + DIAGONAL, up1[col + 1] + DIAGONAL),
                up1[col] + HV,
            );
            line[col] = fmin(line[col], fmin(knights, near));
        }
        for col in 2..width + 2 {
            line[col] = fmin(line[col], line[col - 1] + HV);
        }
    }
    // Backward pass: the mirrored mask (two rows below, right neighbour), right to left.
    for row in (2..height + 2).rev() {
        let (head, below) = padded.split_at_mut((row + 1) * stride);
        let down1 = &below[..stride];
        let down2 = &below[stride..][..stride];
        let line = &mut head[row * stride..];
        for col in 2..width + 2 {
            let knights = fmin(
                fmin(down2[col + 1] + KNIGHT, down2[col - 1] + KNIGHT),
                fmin(down1[col + 2] + KNIGHT, down1[col - 2] + KNIGHT),
            );
            let near = fmin(
                fmin(down1[col + 1] + DIAGONAL, down1[col - 1] + DIAGONAL),
                down1[col] + HV,
            );
            line[col] = fmin(line[col], fmin(knights, near));
        }
        for col in (2..width + 2).rev() {
            line[col] = fmin(line[col], line[col + 1] + HV);
        }
    }
    let mut dist = Vec::with_capacity(height * width);
    for row in 0..height {
        dist.extend_from_slice(&padded[(row + 2) * stride + 2..][..width]);
    }
    dist
}

/// The smaller of two non-NaN floats (compiles to `minss`/`minps`, unlike `f32::min`).
#[inline]
fn fmin(a: f32, b: f32) -> f32 {
    if b < a { b } else { a }
}

/// `cv2.threshold(values, threshold, _, cv2.THRESH_TRUNC)` in place.
pub(crate) fn threshold_trunc(values: &mut [f32], threshold: f32) {
    for v in values {
        if *v > threshold {
            *v = threshold;
        }
    }
}

/// Horizontal 3-sums with REFLECT_101 borders, in `S` (`f64` for float input, as OpenCV's
/// `RowSum<float, double>`).
fn row_sums3<T: Copy, S: Copy + std::ops::Add<Output = S>>(
    src: &[T],
    height: usize,
    width: usize,
    widen: impl Fn(T) -> S,
) -> Vec<S> {
    let mut out = Vec::with_capacity(height * width);
    let mut padded: Vec<S> = Vec::with_capacity(width + 2);
    for line in src.chunks_exact(width).take(height) {
        padded.clear();
        padded.push(widen(line[reflect101(-1, width)]));
        padded.extend(line.iter().map(|&v| widen(v)));
        padded.push(widen(line[reflect101(width as isize, width)]));
        out.extend(padded.windows(3).map(|w| w[0] + w[1] + w[2]));
    }
    out
}

/// `cv2.blur(src, (3, 3))` on `float32` (BORDER_REFLECT_101): row sums and OpenCV's running
/// column sum in `double`, times `1/9`, rounded to `float`.
pub(crate) fn box_blur3_f32(src: &[f32], height: usize, width: usize) -> Vec<f32> {
    debug_assert_eq!(src.len(), height * width);
    let rows = row_sums3(src, height, width, |v| v as f64);
    let scale = 1.0 / 9.0;
    let row = |r: isize| &rows[reflect101(r, height) * width..][..width];
    let mut out = vec![0f32; height * width];
    // OpenCV keeps SUM = r[y-1] + r[y] (accumulated from zero), adds r[y+1], emits, then
    // subtracts r[y-1]; the same additions in the same order give the same doubles.
    let mut running: Vec<f64> = vec![0.0; width];
    for (acc, (&a, &b)) in running.iter_mut().zip(row(-1).iter().zip(row(0))) {
        *acc = 0.0 + a + b;
    }
    for y in 0..height {
        let newest = row(y as isize + 1);
        let oldest = row(y as isize - 1);
        let out_line = &mut out[y * width..][..width];
        for col in 0..width {
            let total = running[col] + newest[col];
            out_line[col] = (total * scale) as f32;
            running[col] = total - oldest[col];
        }
    }
    out
}

/// `cv2.blur(src, (3, 3))` on `uint8` (BORDER_REFLECT_101): the mean of nine rounded to the
/// nearest integer (a ninth of an integer never ends in exactly one half).
pub(crate) fn box_blur3_u8(src: &[u8], height: usize, width: usize) -> Vec<u8> {
    debug_assert_eq!(src.len(), height * width);
    let rows = row_sums3(src, height, width, |v| v as u32);
    let row = |r: isize| &rows[reflect101(r, height) * width..][..width];
    let mut out = vec![0u8; height * width];
    for y in 0..height {
        let (up, mid, down) = (row(y as isize - 1), row(y as isize), row(y as isize + 1));
        let out_line = &mut out[y * width..][..width];
        for (o, ((&a, &b), &c)) in out_line.iter_mut().zip(up.iter().zip(mid).zip(down)) {
            *o = ((2 * (a + b + c) + 9) / 18) as u8;
        }
    }
    out
}

/// `cv2.equalizeHist(src)`.
pub(crate) fn equalize_hist(src: &[u8]) -> Vec<u8> {
    let mut histogram = [0u32; 256];
    for &v in src {
        histogram[v as usize] += 1;
    }
    let total = src.len() as u32;
    let Some(first) = histogram.iter().position(|&count| count > 0) else {
        return Vec::new();
    };
    if histogram[first] == total {
        return vec![first as u8; src.len()];
    }
    let scale = 255.0f32 / (total - histogram[first]) as f32;
    let mut lut = [0u8; 256];
    let mut cumulative = 0u32;
    for level in first + 1..256 {
        cumulative += histogram[level];
        // saturate_cast<uchar>(float) rounds half to even.
        lut[level] = (cumulative as f32 * scale)
            .round_ties_even()
            .clamp(0.0, 255.0) as u8;
    }
    src.iter().map(|&v| lut[v as usize]).collect()
}

/// `cv2.filter2D(src, cv2.CV_8U, kernel)` for an integer 3×3 kernel: correlation about the
/// centre with BORDER_REFLECT_101, saturated to 0..=255 (integer sums are exact in OpenCV's
/// float accumulator).
pub(crate) fn filter2d_3x3_u8(
    src: &[u8],
    height: usize,
    width: usize,
    kernel: [[i32; 3]; 3],
) -> Vec<u8> {
    debug_assert_eq!(src.len(), height * width);
    // The image with a one-pixel REFLECT_101 frame, widened to i32.
    let stride = width + 2;
    let mut padded = vec![0i32; (height + 2) * stride];
    for (row, line) in padded.chunks_exact_mut(stride).enumerate() {
        let src_line = &src[reflect101(row as isize - 1, height) * width..][..width];
        line[0] = src_line[reflect101(-1, width)] as i32;
        line[stride - 1] = src_line[reflect101(width as isize, width)] as i32;
        for (d, &v) in line[1..=width].iter_mut().zip(src_line) {
            *d = v as i32;
        }
    }
    let mut out = vec![0u8; height * width];
    for (y, out_line) in out.chunks_exact_mut(width).enumerate() {
        let lines = [0, 1, 2].map(|d| &padded[(y + d) * stride..][..stride]);
        for (x, o) in out_line.iter_mut().enumerate() {
            let mut total = 0i32;
            for (line, weights) in lines.iter().zip(&kernel) {
                total += weights[0] * line[x] + weights[1] * line[x + 1] + weights[2] * line[x + 2];
            }
            *o = total.clamp(0, 255) as u8;
        }
    }
    out
}

/// `cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)` for one `float32` RGB pixel, as the wheel's IPP
/// routine computes it.
#[inline]
pub(crate) fn rgb_to_gray_f32(r: f32, g: f32, b: f32) -> f32 {
    fma_f32(b, 0.114, fma_f32(r, 0.299, g * 0.587))
}

/// `fmaf(a, b, c)`, correctly rounded, without the FMA instruction (the baseline x86-64 target
/// lacks it, and `f32::mul_add` then calls the C library). The product of two floats is exact
/// in a double; the double sum is made round-to-odd (its last bit set when it is inexact, found
/// by Knuth's TwoSum), and rounding a round-to-odd double to float is correctly rounded because
/// a double carries more than two extra bits.
#[inline]
pub(crate) fn fma_f32(a: f32, b: f32, c: f32) -> f32 {
    let product = a as f64 * b as f64;
    let addend = c as f64;
    let sum = product + addend;
    let addend_part = sum - product;
    let error = (product - (sum - addend_part)) + (addend - addend_part);
    // Branch-free (the test is a coin flip on image data): step one ulp towards the exact
    // value when the sum is inexact and its last bit is even.
    let bits = sum.to_bits();
    let inexact_even = ((error != 0.0) as u64) & !bits & 1;
    let towards_larger_magnitude = ((error > 0.0) == (sum > 0.0)) as u64;
    let step = inexact_even
        .wrapping_mul(2 * towards_larger_magnitude)
        .wrapping_sub(inexact_even);
    let odd = f64::from_bits(bits.wrapping_add(step));
    odd as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn golden() -> Value {
        serde_json::from_str(include_str!("../tests/golden/cv_ops.json")).unwrap()
    }

    fn u8s(v: &Value) -> Vec<u8> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u8)
            .collect()
    }

    fn f32s(v: &Value) -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    }

    /// Every case of `op` in the fixture: (height, width, case).
    fn cases(op: &str) -> Vec<(usize, usize, Value)> {
        let all = golden();
        let list = all[op]
            .as_array()
            .unwrap_or_else(|| panic!("no {op} cases"));
        assert!(!list.is_empty());
        list.iter()
            .map(|c| {
                (
                    c["height"].as_u64().unwrap() as usize,
                    c["width"].as_u64().unwrap() as usize,
                    c.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn canny_equals_opencv() {
        for (h, w, case) in cases("canny") {
            let got = canny_l1(&u8s(&case["input"]), h, w, 50.0, 150.0);
            assert_eq!(got, u8s(&case["output"]), "{h}×{w} {}", case["name"]);
        }
    }

    #[test]
    fn canny_of_a_constant_image_has_no_edges() {
        for (h, w) in [(1, 1), (3, 7), (32, 32)] {
            assert!(
                canny_l1(&vec![200; h * w], h, w, 50.0, 150.0)
                    .iter()
                    .all(|&v| v == 0)
            );
        }
    }

    #[test]
    fn distance_transform_equals_opencv() {
        for (h, w, case) in cases("distance_transform") {
            let got = distance_transform_l2_mask5(&u8s(&case["input"]), h, w);
            let expected = f32s(&case["output"]);
            assert_eq!(got.len(), expected.len());
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert_eq!(g.to_bits(), e.to_bits(), "{h}×{w} {} at {i}", case["name"]);
            }
        }
    }

    #[test]
    fn distance_transform_without_zeros_is_flt_max() {
        assert!(
            distance_transform_l2_mask5(&[9; 12], 3, 4)
                .iter()
                .all(|&d| d == f32::MAX)
        );
    }

    #[test]
    fn box_blurs_equal_opencv() {
        for (h, w, case) in cases("blur_f32") {
            let got = box_blur3_f32(&f32s(&case["input"]), h, w);
            let expected = f32s(&case["output"]);
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert_eq!(g.to_bits(), e.to_bits(), "{h}×{w} {} at {i}", case["name"]);
            }
        }
        for (h, w, case) in cases("blur_u8") {
            let got = box_blur3_u8(&u8s(&case["input"]), h, w);
            assert_eq!(got, u8s(&case["output"]), "{h}×{w} {}", case["name"]);
        }
    }

    #[test]
    fn equalize_hist_equals_opencv() {
        for (h, w, case) in cases("equalize_hist") {
            let got = equalize_hist(&u8s(&case["input"]));
            assert_eq!(got, u8s(&case["output"]), "{h}×{w} {}", case["name"]);
        }
        assert_eq!(equalize_hist(&[0; 9]), vec![0; 9]);
        assert_eq!(equalize_hist(&[7; 4]), vec![7; 4]);
    }

    #[test]
    fn filter2d_equals_opencv() {
        for (h, w, case) in cases("filter2d") {
            let got = filter2d_3x3_u8(
                &u8s(&case["input"]),
                h,
                w,
                [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]],
            );
            assert_eq!(got, u8s(&case["output"]), "{h}×{w} {}", case["name"]);
        }
    }

    #[test]
    fn threshold_trunc_caps_values() {
        let mut values = vec![0.0, 19.5, 20.0, 20.5, f32::MAX];
        threshold_trunc(&mut values, 20.0);
        assert_eq!(values, vec![0.0, 19.5, 20.0, 20.0, 20.0]);
    }

    #[test]
    fn rgb_to_gray_equals_opencv() {
        for (h, w, case) in cases("rgb2gray") {
            let input = f32s(&case["input"]);
            let expected = f32s(&case["output"]);
            assert_eq!(input.len(), 3 * h * w);
            for (i, (px, e)) in input.chunks_exact(3).zip(&expected).enumerate() {
                let g = rgb_to_gray_f32(px[0], px[1], px[2]);
                assert_eq!(g.to_bits(), e.to_bits(), "{h}×{w} {} at {i}", case["name"]);
            }
        }
    }

    #[test]
    fn fma_emulation_equals_the_fused_instruction() {
        // A small LCG over float bit patterns: wide exponent ranges, cancellations, ties.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 32) as u32
        };
        let mut checked = 0;
        for i in 0..2_000_000 {
            let pick = |bits: u32, range: u32| {
                // Exponents near 1.0 for most draws, anywhere for some.
                let exponent = if range == 0 {
                    (bits >> 23) & 0xff
                } else {
                    127 - range / 2 + (bits >> 23) % range.max(1)
                };
                f32::from_bits((bits & 0x807f_ffff) | (exponent.min(254) << 23))
            };
            let range = if i % 4 == 0 { 0 } else { 24 };
            let (a, b) = (pick(next(), range), pick(next(), range));
            // c close to −a·b half of the time to exercise cancellation.
            let c = if i % 2 == 0 {
                -(a * b) + pick(next(), range) * 1e-7
            } else {
                pick(next(), range)
            };
            let expected = a.mul_add(b, c);
            if expected.is_finite() && (a as f64 * b as f64).is_finite() {
                assert_eq!(
                    fma_f32(a, b, c).to_bits(),
                    expected.to_bits(),
                    "fma({a:e}, {b:e}, {c:e})"
                );
                checked += 1;
            }
        }
        assert!(checked > 1_000_000);
        // Inputs of snow: 8-bit values over 255.
        for r in 0..256 {
            for g in (0..256).step_by(5) {
                let (r, g) = (r as f32 / 255.0, g as f32 / 255.0);
                assert_eq!(fma_f32(r, 0.299, g * 0.587), r.mul_add(0.299, g * 0.587));
            }
        }
    }

    #[test]
    fn reflect101_matches_opencv_border_rule() {
        assert_eq!(reflect101(-1, 5), 1);
        assert_eq!(reflect101(5, 5), 3);
        assert_eq!(reflect101(-1, 1), 0);
        assert_eq!(reflect101(1, 1), 0);
        assert_eq!(reflect101(2, 2), 0);
    }
}
