//! The "ISLOW" integer DCTs of libjpeg (Loeffler–Ligtenberg–Moschytz with 13-bit constants),
//! the ones Pillow and OpenCV run by default. Integer arithmetic, so the SIMD and the C
//! versions of libjpeg-turbo agree and so do we; the only SIMD-specific behaviour kept is the
//! final saturation (the SIMD IDCT clamps, where the C table would wrap far outside 0..255).

const CONST_BITS: i32 = 13;
const PASS1_BITS: i32 = 2;

const FIX_0_298631336: i32 = 2446;
const FIX_0_390180644: i32 = 3196;
const FIX_0_541196100: i32 = 4433;
const FIX_0_765366865: i32 = 6270;
const FIX_0_899976223: i32 = 7373;
const FIX_1_175875602: i32 = 9633;
const FIX_1_501321110: i32 = 12299;
const FIX_1_847759065: i32 = 15137;
const FIX_1_961570560: i32 = 16069;
const FIX_2_053119869: i32 = 16819;
const FIX_2_562915447: i32 = 20995;
const FIX_3_072711026: i32 = 25172;

#[inline]
fn descale(x: i32, n: i32) -> i32 {
    (x + (1 << (n - 1))) >> n
}

/// `jpeg_fdct_islow` in place on level-shifted samples; the output is scaled up by 8, as
/// libjpeg's quantiser expects (its divisors are the table entries times 8). Intermediate
/// values are stored as 16-bit `DCTELEM`s, as in libjpeg-turbo's 8-bit build.
pub(crate) fn forward_dct_islow(data: &mut [i32; 64]) {
    for row in data.chunks_exact_mut(8) {
        let tmp0 = row[0] + row[7];
        let tmp7 = row[0] - row[7];
        let tmp1 = row[1] + row[6];
        let tmp6 = row[1] - row[6];
        let tmp2 = row[2] + row[5];
        let tmp5 = row[2] - row[5];
        let tmp3 = row[3] + row[4];
        let tmp4 = row[3] - row[4];

        let tmp10 = tmp0 + tmp3;
        let tmp13 = tmp0 - tmp3;
        let tmp11 = tmp1 + tmp2;
        let tmp12 = tmp1 - tmp2;

        row[0] = ((tmp10 + tmp11) << PASS1_BITS) as i16 as i32;
        row[4] = ((tmp10 - tmp11) << PASS1_BITS) as i16 as i32;

        let z1 = (tmp12 + tmp13) * FIX_0_541196100;
        row[2] = descale(z1 + tmp13 * FIX_0_765366865, CONST_BITS - PASS1_BITS) as i16 as i32;
        row[6] = descale(z1 - tmp12 * FIX_1_847759065, CONST_BITS - PASS1_BITS) as i16 as i32;

        let (o4, o5, o6, o7) = odd_part(tmp4, tmp5, tmp6, tmp7);
        row[7] = descale(o4, CONST_BITS - PASS1_BITS) as i16 as i32;
        row[5] = descale(o5, CONST_BITS - PASS1_BITS) as i16 as i32;
        row[3] = descale(o6, CONST_BITS - PASS1_BITS) as i16 as i32;
        row[1] = descale(o7, CONST_BITS - PASS1_BITS) as i16 as i32;
    }
    for col in 0..8 {
        let at = |r: usize| data[r * 8 + col];
        let tmp0 = at(0) + at(7);
        let tmp7 = at(0) - at(7);
        let tmp1 = at(1) + at(6);
        let tmp6 = at(1) - at(6);
        let tmp2 = at(2) + at(5);
        let tmp5 = at(2) - at(5);
        let tmp3 = at(3) + at(4);
        let tmp4 = at(3) - at(4);

        let tmp10 = tmp0 + tmp3;
        let tmp13 = tmp0 - tmp3;
        let tmp11 = tmp1 + tmp2;
        let tmp12 = tmp1 - tmp2;

        data[col] = descale(tmp10 + tmp11, PASS1_BITS) as i16 as i32;
        data[4 * 8 + col] = descale(tmp10 - tmp11, PASS1_BITS) as i16 as i32;

        let z1 = (tmp12 + tmp13) * FIX_0_541196100;
        data[2 * 8 + col] =
            descale(z1 + tmp13 * FIX_0_765366865, CONST_BITS + PASS1_BITS) as i16 as i32;
        data[6 * 8 + col] =
            descale(z1 - tmp12 * FIX_1_847759065, CONST_BITS + PASS1_BITS) as i16 as i32;

        let (o4, o5, o6, o7) = odd_part(tmp4, tmp5, tmp6, tmp7);
        data[7 * 8 + col] = descale(o4, CONST_BITS + PASS1_BITS) as i16 as i32;
        data[5 * 8 + col] = descale(o5, CONST_BITS + PASS1_BITS) as i16 as i32;
        data[3 * 8 + col] = descale(o6, CONST_BITS + PASS1_BITS) as i16 as i32;
        data[8 + col] = descale(o7, CONST_BITS + PASS1_BITS) as i16 as i32;
    }
}

/// The odd part shared by both forward passes: returns the undescaled outputs 7, 5, 3, 1.
#[inline]
fn odd_part(tmp4: i32, tmp5: i32, tmp6: i32, tmp7: i32) -> (i32, i32, i32, i32) {
    let z1 = tmp4 + tmp7;
    let z2 = tmp5 + tmp6;
    let z3 = tmp4 + tmp6;
    let z4 = tmp5 + tmp7;
    let z5 = (z3 + z4) * FIX_1_175875602;

    let tmp4 = tmp4 * FIX_0_298631336;
    let tmp5 = tmp5 * FIX_2_053119869;
    let tmp6 = tmp6 * FIX_3_072711026;
    let tmp7 = tmp7 * FIX_1_501321110;
    let z1 = -z1 * FIX_0_899976223;
    let z2 = -z2 * FIX_2_562915447;
    let z3 = -z3 * FIX_1_961570560 + z5;
    let z4 = -z4 * FIX_0_390180644 + z5;

    (
        tmp4 + z1 + z3,
        tmp5 + z2 + z4,
        tmp6 + z2 + z3,
        tmp7 + z1 + z4,
    )
}

/// The odd part of the inverse transform on (in7, in5, in3, in1): returns tmp0..tmp3 after
/// accumulation, as jidctint.c names them.
#[inline]
fn inverse_odd(in7: i32, in5: i32, in3: i32, in1: i32) -> (i32, i32, i32, i32) {
    let z1 = in7 + in1;
    let z2 = in5 + in3;
    let z3 = in7 + in3;
    let z4 = in5 + in1;
    let z5 = (z3 + z4) * FIX_1_175875602;

    let tmp0 = in7 * FIX_0_298631336;
    let tmp1 = in5 * FIX_2_053119869;
    let tmp2 = in3 * FIX_3_072711026;
    let tmp3 = in1 * FIX_1_501321110;
    let z1 = -z1 * FIX_0_899976223;
    let z2 = -z2 * FIX_2_562915447;
    let z3 = -z3 * FIX_1_961570560 + z5;
    let z4 = -z4 * FIX_0_390180644 + z5;

    (
        tmp0 + z1 + z3,
        tmp1 + z2 + z4,
        tmp2 + z2 + z3,
        tmp3 + z1 + z4,
    )
}

/// `jpeg_idct_islow`: dequantises `coefficients` (natural order) with `quant` and writes the
/// 8×8 samples, level-shifted back and saturated to 0..=255.
pub(crate) fn inverse_dct_islow(coefficients: &[i16; 64], quant: &[u16; 64], out: &mut [u8; 64]) {
    let mut work = [0i32; 64];
    for col in 0..8 {
        let c = |r: usize| coefficients[r * 8 + col] as i32 * quant[r * 8 + col] as i32;
        if (1..8).all(|r| coefficients[r * 8 + col] == 0) {
            let dc = c(0) << PASS1_BITS;
            for r in 0..8 {
                work[r * 8 + col] = dc;
            }
            continue;
        }
        let (z2, z3) = (c(2), c(6));
        let z1 = (z2 + z3) * FIX_0_541196100;
        let tmp2 = z1 - z3 * FIX_1_847759065;
        let tmp3 = z1 + z2 * FIX_0_765366865;
        let (z2, z3) = (c(0), c(4));
        let tmp0 = (z2 + z3) << CONST_BITS;
        let tmp1 = (z2 - z3) << CONST_BITS;
        let tmp10 = tmp0 + tmp3;
        let tmp13 = tmp0 - tmp3;
        let tmp11 = tmp1 + tmp2;
        let tmp12 = tmp1 - tmp2;
        let (t0, t1, t2, t3) = inverse_odd(c(7), c(5), c(3), c(1));
        let shift = CONST_BITS - PASS1_BITS;
        work[col] = descale(tmp10 + t3, shift);
        work[7 * 8 + col] = descale(tmp10 - t3, shift);
        work[8 + col] = descale(tmp11 + t2, shift);
        work[6 * 8 + col] = descale(tmp11 - t2, shift);
        work[2 * 8 + col] = descale(tmp12 + t1, shift);
        work[5 * 8 + col] = descale(tmp12 - t1, shift);
        work[3 * 8 + col] = descale(tmp13 + t0, shift);
        work[4 * 8 + col] = descale(tmp13 - t0, shift);
    }
    let limit = |v: i32| (v + 128).clamp(0, 255) as u8;
    for (row, dst) in work.chunks_exact(8).zip(out.chunks_exact_mut(8)) {
        let shift = CONST_BITS + PASS1_BITS + 3;
        let (z2, z3) = (row[2], row[6]);
        let z1 = (z2 + z3) * FIX_0_541196100;
        let tmp2 = z1 - z3 * FIX_1_847759065;
        let tmp3 = z1 + z2 * FIX_0_765366865;
        let tmp0 = (row[0] + row[4]) << CONST_BITS;
        let tmp1 = (row[0] - row[4]) << CONST_BITS;
        let tmp10 = tmp0 + tmp3;
        let tmp13 = tmp0 - tmp3;
        let tmp11 = tmp1 + tmp2;
        let tmp12 = tmp1 - tmp2;
        let (t0, t1, t2, t3) = inverse_odd(row[7], row[5], row[3], row[1]);
        dst[0] = limit(descale(tmp10 + t3, shift));
        dst[7] = limit(descale(tmp10 - t3, shift));
        dst[1] = limit(descale(tmp11 + t2, shift));
        dst[6] = limit(descale(tmp11 - t2, shift));
        dst[2] = limit(descale(tmp12 + t1, shift));
        dst[5] = limit(descale(tmp12 - t1, shift));
        dst[3] = limit(descale(tmp13 + t0, shift));
        dst[4] = limit(descale(tmp13 - t0, shift));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dc_only_blocks_decode_flat() {
        let mut coefficients = [0i16; 64];
        coefficients[0] = 10;
        let mut quant = [1u16; 64];
        quant[0] = 16;
        let mut out = [0u8; 64];
        inverse_dct_islow(&coefficients, &quant, &mut out);
        // DC 160 → 160 / 8 = 20 above the centre.
        assert!(out.iter().all(|&v| v == 148), "{out:?}");
    }

    #[test]
    fn forward_then_inverse_is_nearly_identity_at_quality_100() {
        let mut data = [0i32; 64];
        for (i, v) in data.iter_mut().enumerate() {
            *v = ((i * 37) % 200) as i32 - 100;
        }
        let original = data;
        forward_dct_islow(&mut data);
        // The forward output is scaled by 8; dividing by 8 with rounding is quantiser 1.
        let coefficients: [i16; 64] = std::array::from_fn(|i| {
            let v = data[i];
            ((v.abs() + 4) / 8 * v.signum()) as i16
        });
        let mut out = [0u8; 64];
        inverse_dct_islow(&coefficients, &[1; 64], &mut out);
        for i in 0..64 {
            assert!((out[i] as i32 - 128 - original[i]).abs() <= 1, "sample {i}");
        }
    }
}
