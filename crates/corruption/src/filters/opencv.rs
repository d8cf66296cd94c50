//! Ports of the OpenCV 4.10 routines the references call (opencv-python 4.10.0.84, x86-64,
//! AVX2 dispatch): `getGaussianKernel`, `GaussianBlur` on a small float32 image (the defocus
//! disk), `filter2D` with `BORDER_REFLECT_101`, `getAffineTransform` and `warpAffine` with
//! bilinear interpolation.
//!
//! Where OpenCV's arithmetic is fixed (fixed-point coordinates, the separable small-kernel
//! filters, LU decomposition) the ports are exact. One path cannot be: `filter2D` on float64
//! images with kernels of 50 taps or more goes through a DFT, which opencv-python runs in
//! Intel IPP (closed, CPU-dispatched; OpenCV's own DFT gives different last bits). There
//! [`correlate_unit_u8`] computes the correlation to within a few ulps of the exact value
//! instead, which gives the same bytes after the references' truncation unless a value falls
//! within ~1e-13 of an integer boundary.

use crate::array::Array3;

/// `cv::borderInterpolate(p, len, BORDER_REFLECT_101)`: `gfedcb|abcdefgh|gfedcba`.
pub(crate) fn reflect101(p: i64, len: usize) -> usize {
    let len = len as i64;
    if len == 1 {
        return 0;
    }
    let mut p = p;
    while p < 0 || p >= len {
        p = if p < 0 { -p } else { 2 * len - 2 - p };
    }
    p as usize
}

/// `cv::getGaussianKernel(ksize, sigma, CV_32F)`: OpenCV's bit-exact construction in double
/// (`exp(−x²/(2σ²))` for the offsets from the centre, normalised by the sum), rounded to
/// float32. `sigma ≤ 0` selects the fixed tables for sizes 1, 3, 5, 7, 9 and
/// `σ = 0.3·((ksize − 1)/2 − 1) + 0.8` otherwise.
pub(crate) fn gaussian_kernel_f32(ksize: usize, sigma: f64) -> Vec<f32> {
    if sigma <= 0.0 {
        let table: Option<&[f64]> = match ksize {
            1 => Some(&[1.0]),
            3 => Some(&[0.25, 0.5, 0.25]),
            5 => Some(&[0.0625, 0.25, 0.375, 0.25, 0.0625]),
            7 => Some(&[
                0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125,
            ]),
            9 => Some(&[
                4.0 / 256.0,
                13.0 / 256.0,
                30.0 / 256.0,
                51.0 / 256.0,
                60.0 / 256.0,
                51.0 / 256.0,
                30.0 / 256.0,
                13.0 / 256.0,
                4.0 / 256.0,
            ]),
            _ => None,
        };
        if let Some(values) = table {
            return values.iter().map(|&v| v as f32).collect();
        }
    }
    let sigma = if sigma > 0.0 {
        sigma
    } else {
        // mulAdd(n, 0.15, 0.35) in softfloat, i.e. a fused multiply-add.
        (ksize as f64).mul_add(0.15, 0.35)
    };
    let scale2 = -0.125 / (sigma * sigma);
    let half = (ksize - 1) / 2;
    let mut values = Vec::with_capacity(half);
    let mut sum = 0.0f64;
    for i in 0..half {
        let x = 1 - ksize as i64 + 2 * i as i64;
        let t = ((x * x) as f64 * scale2).exp();
        values.push(t);
        sum += t;
    }
    sum *= 2.0;
    sum += 1.0;
    if ksize.is_multiple_of(2) {
        sum += 1.0;
    }
    let mul = 1.0 / sum;
    let mut kernel = vec![0.0f32; ksize];
    for (i, &t) in values.iter().enumerate() {
        let v = (t * mul) as f32;
        kernel[i] = v;
        kernel[ksize - 1 - i] = v;
    }
    kernel[half] = mul as f32;
    if ksize.is_multiple_of(2) {
        kernel[half + 1] = kernel[half];
    }
    kernel
}

/// One output of OpenCV's symmetric small-kernel filters (`SymmRowSmallVec_32f` /
/// `SymmColumnSmallVec_32f` under AVX2): `centre` and the sums of mirrored pairs.
#[inline]
fn symmetric_small(centre: f32, pairs: &[f32], kernel_half: &[f32], row_pass: bool) -> f32 {
    match pairs.len() {
        0 => centre * kernel_half[0],
        // Rows: fma(s0, k0, (a + b)·k1). Columns: fma(a + b, k1, s0·k0).
        1 if row_pass => centre.mul_add(kernel_half[0], pairs[0] * kernel_half[1]),
        1 => pairs[0].mul_add(kernel_half[1], centre * kernel_half[0]),
        // Both passes at size 5: fma(a2 + b2, k2, fma(a1 + b1, k1, s0·k0)).
        _ => {
            let mut acc = centre * kernel_half[0];
            for (pair, &k) in pairs.iter().zip(&kernel_half[1..]) {
                acc = pair.mul_add(k, acc);
            }
            acc
        }
    }
}

/// `cv2.GaussianBlur(plane, (ksize, ksize), sigma)` on a float32 plane (`BORDER_REFLECT_101`),
/// for `ksize` 1, 3 or 5, the sizes of the defocus disk (OpenCV's separable symmetric
/// small-kernel filters; larger sizes take other code paths in OpenCV and are not ported).
pub(crate) fn gaussian_blur_small_f32(
    plane: &[f32],
    height: usize,
    width: usize,
    ksize: usize,
    sigma: f64,
) -> Vec<f32> {
    debug_assert!(matches!(ksize, 1 | 3 | 5), "ksize {ksize} is not ported");
    debug_assert_eq!(plane.len(), height * width);
    let kernel = gaussian_kernel_f32(ksize, sigma);
    let half = ksize / 2;
    let kernel_half = &kernel[half..];
    // A 1-pixel side makes OpenCV drop that direction's filter.
    let (kx, ky) = (
        if width == 1 { 0 } else { half },
        if height == 1 { 0 } else { half },
    );
    let mut rows = vec![0.0f32; height * width];
    let mut pairs = Vec::with_capacity(half);
    for r in 0..height {
        for c in 0..width {
            let at = |dc: i64| plane[r * width + reflect101(c as i64 + dc, width)];
            pairs.clear();
            pairs.extend((1..=kx as i64).map(|d| at(-d) + at(d)));
            rows[r * width + c] = symmetric_small(at(0), &pairs, kernel_half, true);
        }
    }
    let mut out = vec![0.0f32; height * width];
    for r in 0..height {
        for c in 0..width {
            let at = |dr: i64| rows[reflect101(r as i64 + dr, height) * width + c];
            pairs.clear();
            pairs.extend((1..=ky as i64).map(|d| at(-d) + at(d)));
            out[r * width + c] = symmetric_small(at(0), &pairs, kernel_half, false);
        }
    }
    out
}

/// `cv2.filter2D(src, cv2.CV_8U, kernel)` for an 8-bit plane and a kernel of integers
/// (`BORDER_REFLECT_101`, anchor at the centre): the exact integer correlation saturated to
/// 0…255, which is what OpenCV's float and fixed-point paths both produce for such kernels.
// The general CV_8U path (any odd size); spatter's emboss uses the 3×3 specialisation in
// cv.rs, and this port is kept, tested against OpenCV, for kernels beyond it.
#[allow(dead_code)]
pub(crate) fn filter2d_u8_integer_kernel(
    plane: &[u8],
    height: usize,
    width: usize,
    kernel: &[i32],
    ksize: usize,
) -> Vec<u8> {
    let half = (ksize / 2) as i64;
    let mut out = vec![0u8; height * width];
    for r in 0..height {
        for c in 0..width {
            let mut sum = 0i64;
            for i in 0..ksize {
                let rr = reflect101(r as i64 + i as i64 - half, height);
                for j in 0..ksize {
                    let cc = reflect101(c as i64 + j as i64 - half, width);
                    sum += kernel[i * ksize + j] as i64 * plane[rr * width + cc] as i64;
                }
            }
            out[r * width + c] = sum.clamp(0, 255) as u8;
        }
    }
    out
}

/// `cv2.filter2D(src, -1, kernel)` for a float64 plane and a kernel of fewer than 50 taps
/// (`BORDER_REFLECT_101`): OpenCV's direct `Filter2D`, which sums `k·x` over the non-zero
/// taps in row-major order starting from 0 (fused multiply-adds: the filter is compiled for
/// AVX2 with FMA contraction). The test oracle of [`correlate_unit_u8`].
#[cfg(test)]
pub(crate) fn filter2d_f64_small(
    plane: &[f64],
    height: usize,
    width: usize,
    kernel: &[f64],
    ksize: usize,
) -> Vec<f64> {
    let half = (ksize / 2) as i64;
    let taps: Vec<(i64, i64, f64)> = (0..ksize)
        .flat_map(|i| (0..ksize).map(move |j| (i, j)))
        .filter(|&(i, j)| kernel[i * ksize + j] != 0.0)
        .map(|(i, j)| (i as i64 - half, j as i64 - half, kernel[i * ksize + j]))
        .collect();
    let mut out = vec![0.0; height * width];
    for r in 0..height {
        for c in 0..width {
            let mut sum = 0.0;
            for &(di, dj, k) in &taps {
                let rr = reflect101(r as i64 + di, height);
                let cc = reflect101(c as i64 + dj, width);
                sum = k.mul_add(plane[rr * width + cc], sum);
            }
            out[r * width + c] = sum;
        }
    }
    out
}

/// The correlation `Σ k·(v/255)` of an 8-bit plane with a float32 kernel
/// (`BORDER_REFLECT_101`, anchor at the centre), as `cv2.filter2D(plane / 255., -1, kernel)`
/// computes it up to rounding.
///
/// Taps with equal weights are grouped and their pixels summed exactly in integers, so the
/// only roundings are one product and one addition per distinct weight and the final
/// division: the result is within a few ulps of the exact value. When the kernel is
/// symmetric top to bottom (the defocus disks are), the two mirrored input rows are added
/// first, which halves the work. The disks have 4 to 41 distinct weights over 9 to 429 taps.
pub(crate) fn correlate_unit_u8(
    plane: &[u8],
    height: usize,
    width: usize,
    kernel: &[f32],
    ksize: usize,
) -> Vec<f64> {
    let half = ksize / 2;
    let at = |i: usize, j: usize| kernel[i * ksize + j];
    let symmetric = (0..ksize)
        .all(|i| (0..ksize).all(|j| at(i, j).to_bits() == at(ksize - 1 - i, j).to_bits()));
    // The kernel rows that are read: the upper half and the centre when the lower half
    // mirrors it, else all of them.
    let used_rows = if symmetric { half + 1 } else { ksize };
    // Distinct non-zero weights, each with its taps (used row, column).
    let mut groups: Vec<(f32, Vec<(usize, usize)>)> = Vec::new();
    for i in 0..used_rows {
        for j in 0..ksize {
            let w = at(i, j);
            if w == 0.0 {
                continue;
            }
            match groups.iter_mut().find(|(g, _)| g.to_bits() == w.to_bits()) {
                Some((_, taps)) => taps.push((i, j)),
                None => groups.push((w, vec![(i, j)])),
            }
        }
    }
    // The plane padded by reflection once: (H + 2h) rows of W + 2h.
    let padded_w = width + 2 * half;
    let column_of: Vec<usize> = (0..padded_w)
        .map(|pc| reflect101(pc as i64 - half as i64, width))
        .collect();
    let mut padded = Vec::with_capacity((height + 2 * half) * padded_w);
    for pr in 0..height + 2 * half {
        let src_r = reflect101(pr as i64 - half as i64, height);
        let row = &plane[src_r * width..(src_r + 1) * width];
        padded.extend(column_of.iter().map(|&c| row[c] as u16));
    }
    let padded_row = |pr: usize| &padded[pr * padded_w..(pr + 1) * padded_w];
    // Per output row: the used kernel rows' input rows, mirrored pairs added (≤ 510).
    let mut rows: Vec<Vec<u16>> = vec![vec![0u16; padded_w]; used_rows];
    let max_row_value = if symmetric { 510 } else { 255 };
    let mut group_sum = vec![0u32; width];
    let mut partial = vec![0u16; width];
    let mut out = vec![0.0f64; height * width];
    for r in 0..height {
        for (i, buffer) in rows.iter_mut().enumerate() {
            buffer.copy_from_slice(padded_row(r + i));
            if symmetric && i < half {
                for (a, &b) in buffer.iter_mut().zip(padded_row(r + ksize - 1 - i)) {
                    *a += b;
                }
            }
        }
        let acc = &mut out[r * width..(r + 1) * width];
        for (weight, taps) in &groups {
            // Chunks of taps small enough to be summed in 16 bits, added up in 32.
            let chunk = (u16::MAX as usize / max_row_value).max(1);
            group_sum.fill(0);
            for part in taps.chunks(chunk) {
                group_sums(&rows, part, width, &mut partial);
                for (s, &p) in group_sum.iter_mut().zip(&partial) {
                    *s += p as u32;
                }
            }
            let w = *weight as f64;
            for (a, &s) in acc.iter_mut().zip(&group_sum) {
                *a += w * s as i32 as f64;
            }
        }
        for a in acc.iter_mut() {
            *a /= 255.0;
        }
    }
    out
}

/// `out[c] = Σ_taps rows[i][c + j]` for every column in 16 bits (the caller passes few
/// enough taps for it not to overflow), over blocks of columns kept in registers.
fn group_sums(rows: &[Vec<u16>], taps: &[(usize, usize)], width: usize, out: &mut [u16]) {
    const BLOCK: usize = 32;
    let mut c0 = 0;
    while c0 + BLOCK <= width {
        let mut sums = [0u16; BLOCK];
        for &(i, j) in taps {
            let src: &[u16; BLOCK] = rows[i][c0 + j..c0 + j + BLOCK]
                .try_into()
                .expect("a full block");
            for k in 0..BLOCK {
                sums[k] += src[k];
            }
        }
        out[c0..c0 + BLOCK].copy_from_slice(&sums);
        c0 += BLOCK;
    }
    for (c, o) in out.iter_mut().enumerate().skip(c0) {
        *o = taps.iter().map(|&(i, j)| rows[i][c + j]).sum();
    }
}

/// `cv2.getAffineTransform(src, dst)` for three float32 point pairs: the 6×6 system solved by
/// OpenCV's `LU` (partial pivoting, `DBL_EPSILON·100` singularity threshold) in double.
/// Returns the 2×3 matrix row-major, or `None` for collinear points (OpenCV returns zeros).
pub(crate) fn get_affine_transform(src: [[f32; 2]; 3], dst: [[f32; 2]; 3]) -> Option<[f64; 6]> {
    let mut a = [0.0f64; 36];
    let mut b = [0.0f64; 6];
    for i in 0..3 {
        let j = i * 12;
        let k = i * 12 + 6;
        a[j] = src[i][0] as f64;
        a[k + 3] = src[i][0] as f64;
        a[j + 1] = src[i][1] as f64;
        a[k + 4] = src[i][1] as f64;
        a[j + 2] = 1.0;
        a[k + 5] = 1.0;
        b[i * 2] = dst[i][0] as f64;
        b[i * 2 + 1] = dst[i][1] as f64;
    }
    lu_solve(&mut a, &mut b, 6).then_some(b)
}

/// OpenCV 4.10's `LUImpl` for one right-hand side, in place; false when singular.
fn lu_solve(a: &mut [f64], b: &mut [f64], m: usize) -> bool {
    let eps = f64::EPSILON * 100.0;
    for i in 0..m {
        let mut k = i;
        for j in i + 1..m {
            if a[j * m + i].abs() > a[k * m + i].abs() {
                k = j;
            }
        }
        if a[k * m + i].abs() < eps {
            return false;
        }
        if k != i {
            for j in i..m {
                a.swap(i * m + j, k * m + j);
            }
            b.swap(i, k);
        }
        let d = -1.0 / a[i * m + i];
        for j in i + 1..m {
            let alpha = a[j * m + i] * d;
            for k in i + 1..m {
                a[j * m + k] += alpha * a[i * m + k];
            }
            b[j] += alpha * b[i];
        }
    }
    for i in (0..m).rev() {
        let mut s = b[i];
        for k in i + 1..m {
            s -= a[i * m + k] * b[k];
        }
        // 4.10 divides here (later versions multiply by a stored reciprocal).
        b[i] = s / a[i * m + i];
    }
    true
}

/// `saturate_cast<int>(double)`: round half to even (the SSE2 conversion), saturated.
fn saturate_round(v: f64) -> i32 {
    let r = v.round_ties_even();
    if r >= i32::MAX as f64 {
        i32::MAX
    } else if r <= i32::MIN as f64 {
        i32::MIN
    } else {
        r as i32
    }
}

/// `cv2.warpAffine(image, m, (W, H), flags=INTER_LINEAR, borderMode=BORDER_REFLECT_101)` for a
/// float32 H×W×C image: the matrix is inverted as OpenCV does, source coordinates are computed
/// in fixed point (10 fractional bits, rounded to 1/32 of a pixel), and each output is
/// `((v00·w00 + v01·w01) + v10·w10) + v11·w11` in float32 with the tabulated weights.
pub(crate) fn warp_affine_linear_f32(image: &Array3<f32>, matrix: [f64; 6]) -> Array3<f32> {
    const INTER_BITS: i32 = 5;
    const INTER_TAB_SIZE: i32 = 1 << INTER_BITS;
    const AB_BITS: i32 = 10;
    const AB_SCALE: f64 = (1 << AB_BITS) as f64;
    const ROUND_DELTA: i32 = (1 << AB_BITS) / INTER_TAB_SIZE / 2;

    let (height, width, channels) = (image.height, image.width, image.channels);
    let mut m = matrix;
    // Forward map → inverse map (flags without WARP_INVERSE_MAP).
    let det = m[0] * m[4] - m[1] * m[3];
    let d = if det != 0.0 { 1.0 / det } else { 0.0 };
    let (a11, a22) = (m[4] * d, m[0] * d);
    m[0] = a11;
    m[1] *= -d;
    m[3] *= -d;
    m[4] = a22;
    let b1 = -m[0] * m[2] - m[1] * m[5];
    let b2 = -m[3] * m[2] - m[4] * m[5];
    m[2] = b1;
    m[5] = b2;

    let adelta: Vec<i32> = (0..width)
        .map(|x| saturate_round(m[0] * x as f64 * AB_SCALE))
        .collect();
    let bdelta: Vec<i32> = (0..width)
        .map(|x| saturate_round(m[3] * x as f64 * AB_SCALE))
        .collect();
    // BilinearTab_f: products of (1 − i/32, i/32) pairs, exact in float32.
    let weights = |fx: i32, fy: i32| -> [f32; 4] {
        let scale = 1.0f32 / INTER_TAB_SIZE as f32;
        let (x1, y1) = (fx as f32 * scale, fy as f32 * scale);
        let (x0, y0) = (1.0 - x1, 1.0 - y1);
        [y0 * x0, y0 * x1, y1 * x0, y1 * x1]
    };
    let saturate_short = |v: i32| v.clamp(i16::MIN as i32, i16::MAX as i32) as i64;

    let mut out = Array3::filled(height, width, channels, 0.0f32);
    for y in 0..height {
        let x0 = saturate_round((m[1] * y as f64 + m[2]) * AB_SCALE).wrapping_add(ROUND_DELTA);
        let y0 = saturate_round((m[4] * y as f64 + m[5]) * AB_SCALE).wrapping_add(ROUND_DELTA);
        for x in 0..width {
            let xf = x0.wrapping_add(adelta[x]) >> (AB_BITS - INTER_BITS);
            let yf = y0.wrapping_add(bdelta[x]) >> (AB_BITS - INTER_BITS);
            let sx = saturate_short(xf >> INTER_BITS);
            let sy = saturate_short(yf >> INTER_BITS);
            let w = weights(xf & (INTER_TAB_SIZE - 1), yf & (INTER_TAB_SIZE - 1));
            let (sx0, sx1) = (reflect101(sx, width), reflect101(sx + 1, width));
            let (sy0, sy1) = (reflect101(sy, height), reflect101(sy + 1, height));
            for ch in 0..channels {
                let v0 = image.get(sy0, sx0, ch);
                let v1 = image.get(sy0, sx1, ch);
                let v2 = image.get(sy1, sx0, ch);
                let v3 = image.get(sy1, sx1, ch);
                out.set(y, x, ch, v0 * w[0] + v1 * w[1] + v2 * w[2] + v3 * w[3]);
            }
        }
    }
    out
}

/// The defocus kernel of both references: `disk(radius, alias_blur)`, a float32 disk of
/// ones over a 17×17 grid (radius ≤ 8) or a `(2r+1)²` grid, normalised by its count, then
/// `cv2.GaussianBlur` with a 3×3 (radius ≤ 8) or 5×5 kernel of σ = `alias_blur`. Returns the
/// side and the row-major weights.
pub(crate) fn disk_kernel(radius: f64, alias_blur: f64) -> (usize, Vec<f32>) {
    // L = np.arange(-8, 9) or np.arange(-radius, radius + 1).
    let (first, size, ksize) = if radius <= 8.0 {
        (-8.0, 17usize, 3)
    } else {
        (-radius, (2.0 * radius + 1.0).ceil() as usize, 5)
    };
    let coordinate = |i: usize| first + i as f64;
    let r2 = radius * radius;
    let mut disk: Vec<f32> = Vec::with_capacity(size * size);
    for row in 0..size {
        for col in 0..size {
            let (x, y) = (coordinate(col), coordinate(row));
            disk.push(if x * x + y * y <= r2 { 1.0 } else { 0.0 });
        }
    }
    // np.sum of float32 ones and zeros is exact; the division is float32.
    let count = disk.iter().filter(|&&v| v != 0.0).count() as f32;
    for v in &mut disk {
        *v /= count;
    }
    (
        size,
        gaussian_blur_small_f32(&disk, size, size, ksize, alias_blur),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect101_mirrors_without_repeating_the_edge() {
        let got: Vec<usize> = (-5..9).map(|p| reflect101(p, 4)).collect();
        assert_eq!(got, vec![1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]);
        assert_eq!(reflect101(-7, 1), 0);
    }

    #[test]
    fn sigma_zero_uses_the_binomial_tables() {
        assert_eq!(gaussian_kernel_f32(3, 0.0), vec![0.25, 0.5, 0.25]);
        let k = gaussian_kernel_f32(9, 0.0);
        assert_eq!(k.len(), 9);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn lu_solves_a_known_system() {
        let m = get_affine_transform(
            [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]],
            [[2.0, 3.0], [4.0, 3.0], [2.0, 6.0]],
        )
        .unwrap();
        assert_eq!(m, [2.0, 0.0, 2.0, 0.0, 3.0, 3.0]);
        assert!(
            get_affine_transform(
                [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]],
                [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]
            )
            .is_none()
        );
    }

    #[test]
    fn identity_warp_is_the_identity() {
        let image = Array3 {
            height: 3,
            width: 4,
            channels: 3,
            data: (0..36).map(|v| v as f32 / 7.0).collect(),
        };
        let out = warp_affine_linear_f32(&image, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(out, image);
    }

    #[test]
    fn grouped_correlation_matches_a_direct_sum() {
        let (size, kernel) = disk_kernel(4.0, 0.5);
        let plane: Vec<u8> = (0..15 * 22).map(|i| ((i * 37) % 256) as u8).collect();
        let ours = correlate_unit_u8(&plane, 15, 22, &kernel, size);
        let unit: Vec<f64> = plane.iter().map(|&v| v as f64 / 255.0).collect();
        let k64: Vec<f64> = kernel.iter().map(|&v| v as f64).collect();
        let direct = filter2d_f64_small(&unit, 15, 22, &k64, size);
        for (a, b) in ours.iter().zip(&direct) {
            assert!((a - b).abs() < 1e-14, "{a} vs {b}");
        }
    }
}
