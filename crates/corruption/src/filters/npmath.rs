//! numpy's own arithmetic where it differs from the C library: `np.exp` on float64 arrays,
//! `np.sum`'s pairwise summation, `np.arange` for floats and Python's `round`.
//!
//! The kernels of `scipy.ndimage.gaussian_filter` and of imagecorruptions' motion blur are
//! built with `np.exp`. numpy 1.26 wheels on x86-64 machines with AVX-512 (Skylake-X and
//! later) evaluate it with Intel SVML's `__svml_exp8` (the 4-ulp variant), which differs from
//! glibc's `exp` in about a quarter of all arguments. A weight that is one ulp off moves a sum
//! of the kind `v/255 · Σw` across a truncation boundary, so [`exp`] reproduces SVML's
//! algorithm step by step (read from the instructions of the shipped binary; the constants
//! are the bit patterns of its data table). Machines without AVX-512 run numpy's scalar
//! fallback (glibc); the golden fixtures of this crate come from an AVX-512 machine, which is
//! what most servers are.

/// `np.exp(x)` for one float64, exactly as numpy 1.26 computes it on AVX-512 machines.
///
/// SVML's algorithm: `x = (m + j/16)·ln 2 + r` with `m + j/16 = x/ln 2` rounded toward zero on
/// a 1/16 grid, `exp(r) − 1` by a degree-6 polynomial, then `2^(j/16)` from a table and
/// `2^m` by scaling. Arguments with `|x| ≥ 707.7` (overflow or subnormal results) take SVML's
/// scalar "rare" path; there this function falls back to the C library, which agrees wherever
/// the result is representable as a normal number.
pub(crate) fn exp(x: f64) -> f64 {
    // Table 2^(j/16), j = 0..15, rounded to double.
    const TWO_POW_J16: [u64; 16] = [
        0x3ff0_0000_0000_0000,
        0x3ff0_b558_6cf9_890f,
        0x3ff1_72b8_3c7d_517b,
        0x3ff2_387a_6e75_6238,
        0x3ff3_06fe_0a31_b715,
        0x3ff3_dea6_4c12_3422,
        0x3ff4_bfda_d536_2a27,
        0x3ff5_ab07_dd48_5429,
        0x3ff6_a09e_667f_3bcd,
        0x3ff7_a114_73eb_0187,
        0x3ff8_ace5_422a_a0db,
        0x3ff9_c491_82a3_f090,
        0x3ffa_e89f_995a_d3ad,
        0x3ffc_199b_dd85_529c,
        0x3ffd_5818_dcfb_a487,
        0x3ffe_a4af_a2a4_90da,
    ];
    const INV_LN2: u64 = 0x3ff7_1547_652b_82fe;
    // 1.5·2^48 plus 1023·16 ulps: adding it rounds x/ln2 to the 1/16 grid and leaves 16·N in
    // the low mantissa bits.
    const SHIFTER: u64 = 0x42f8_0000_0000_3ff0;
    const LN2_HI: u64 = 0x3fe6_2e42_fefa_39ef;
    const LN2_LO: u64 = 0x3c7a_bc9e_3b39_803f;
    const C6: u64 = 0x3f57_2eb5_ef0d_213d;
    const C5: u64 = 0x3f81_1066_03d9_7c00;
    const C4: u64 = 0x3fa5_5556_4bb4_f5f0;
    const C3: u64 = 0x3fc5_5555_54b5_08a2;
    const C2: u64 = 0x3fe0_0000_0000_2622;
    const RARE_THRESHOLD: u64 = 0x4086_1da0_4cba_fe44;

    let f = f64::from_bits;
    if x.is_nan() || x.abs() >= f(RARE_THRESHOLD) {
        return x.exp();
    }
    let shifter = f(SHIFTER);
    // vfmadd213pd {rz-sae}: the fused product-sum rounded toward zero. The sum is positive, so
    // toward zero is down: step one ulp down when the round-to-nearest result is above the
    // exact value (the residual of a second fused operation has the exact sign).
    let mut shifted = x.mul_add(f(INV_LN2), shifter);
    if x.mul_add(f(INV_LN2), shifter - shifted) < 0.0 {
        shifted = f(shifted.to_bits() - 1);
    }
    let index = (shifted.to_bits() & 15) as usize;
    let n = shifted - shifter;
    let r = (-n).mul_add(f(LN2_HI), x);
    let r = (-f(LN2_LO)).mul_add(n, r);
    // SVML masks bit 62 of r (a no-op for |r| < 2, kept for fidelity).
    let r = f(r.to_bits() & 0xbfff_ffff_ffff_ffff);
    let r2 = r * r;
    let high = r.mul_add(f(C6), f(C5));
    let mid = r.mul_add(f(C4), f(C3));
    let r3 = r2 * r;
    let low = r2.mul_add(f(C2), r);
    let poly = r2.mul_add(high, mid);
    let poly = r3.mul_add(poly, low);
    let table = f(TWO_POW_J16[index]);
    let mantissa = table.mul_add(poly, table);
    scale_by_power_of_two(mantissa, n.floor() as i32)
}

/// `value · 2^exponent` without intermediate rounding for normal results (vscalefpd).
fn scale_by_power_of_two(value: f64, exponent: i32) -> f64 {
    // Two exact power-of-two factors keep every intermediate a normal double for the
    // exponents this path sees (−1022 − 53 .. 1023).
    let half = exponent / 2;
    value * power_of_two(half) * power_of_two(exponent - half)
}

/// 2^e for −1022 ≤ e ≤ 1023, built from its bits.
fn power_of_two(e: i32) -> f64 {
    f64::from_bits(((1023 + e) as u64) << 52)
}

/// `np.sum` of a contiguous float64 array: numpy's pairwise summation (blocks of 128 summed
/// with eight accumulators, halves summed recursively).
pub(crate) fn pairwise_sum(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 8 {
        let mut sum = 0.0;
        for &v in values {
            sum += v;
        }
        sum
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&values[..8]);
        let mut i = 8;
        while i < n - (n % 8) {
            for (j, acc) in r.iter_mut().enumerate() {
                *acc += values[i + j];
            }
            i += 8;
        }
        let mut sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            sum += values[i];
            i += 1;
        }
        sum
    } else {
        let mut half = n / 2;
        half -= half % 8;
        pairwise_sum(&values[..half]) + pairwise_sum(&values[half..])
    }
}

/// `np.arange(start, stop, step)` for floats: `ceil((stop − start)/step)` values, the i-th being
/// `start + i·delta` with `delta = (start + step) − start` (numpy fills from the first two).
pub(crate) fn arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let length = ((stop - start) / step).ceil();
    if length.is_nan() || length <= 0.0 {
        return Vec::new();
    }
    let length = length as usize;
    let delta = (start + step) - start;
    (0..length)
        .map(|i| {
            if i == 0 {
                start
            } else {
                start + i as f64 * delta
            }
        })
        .collect()
}

/// `floor(x)` without a library call on targets without SSE4.1 (exact: a truncation toward
/// zero corrected by one below zero).
#[inline]
pub(crate) fn floor(x: f64) -> f64 {
    if x.abs() < 4.5e15 {
        let t = (x as i64 as f64).copysign(x);
        if t > x { t - 1.0 } else { t }
    } else {
        x.floor()
    }
}

/// Python's `round(x)` for a float: to the nearest integer, ties to even.
pub(crate) fn round_half_even(x: f64) -> f64 {
    x.round_ties_even()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_close_to_the_c_library_and_exact_at_zero() {
        assert_eq!(exp(0.0), 1.0);
        for i in 0..2000 {
            let x = -50.0 + i as f64 * 0.0517;
            let ours = exp(x);
            let libm = x.exp();
            let ulps = (ours.to_bits() as i64 - libm.to_bits() as i64).abs();
            assert!(ulps <= 2, "x = {x}: {ours} vs {libm}");
        }
        assert_eq!(exp(-800.0), (-800.0f64).exp());
        assert!(exp(f64::NAN).is_nan());
    }

    #[test]
    fn pairwise_sum_orders_like_numpy() {
        // Below 8 values numpy adds left to right.
        assert_eq!(pairwise_sum(&[1e16, 1.0, -1e16]), 0.0);
        // From 8 on it keeps eight interleaved accumulators: elements 0 and 8 meet first, so
        // the 1.0 survives where a left-to-right sum loses it.
        let mut v = vec![0.0; 16];
        v[0] = 1e16;
        v[1] = 1.0;
        v[8] = -1e16;
        assert_eq!(pairwise_sum(&v), 1.0);
        assert_eq!(v.iter().fold(0.0, |a, b| a + b), 0.0);
    }

    #[test]
    fn floor_matches_the_library() {
        for x in [
            -2.5,
            -2.0,
            -0.5,
            -0.0,
            0.0,
            0.25,
            1.0,
            1e16,
            -1e16,
            3.999_999_999_999_999_6,
        ] {
            assert_eq!(floor(x).to_bits(), x.floor().to_bits(), "{x}");
        }
        assert!(floor(f64::NAN).is_nan());
    }

    #[test]
    fn arange_has_numpy_lengths() {
        assert_eq!(arange(1.0, 1.11, 0.01).len(), 12);
        assert_eq!(arange(1.0, 1.16, 0.01).len(), 16);
        assert_eq!(arange(1.0, 1.21, 0.02).len(), 11);
        assert_eq!(arange(1.0, 1.26, 0.02).len(), 13);
        assert_eq!(arange(1.0, 1.31, 0.03).len(), 11);
        assert_eq!(arange(1.0, 1.06, 0.01).len(), 7);
        assert_eq!(arange(1.0, 1.11, 0.01)[1], 1.01);
        assert!(arange(1.0, 1.0, 0.01).is_empty());
    }
}
