//! Resizes equal to mmcv's `imresize` / `imrescale` with the cv2 backend (OpenCV 4.10).
//!
//! - [`rescale_size`]: mmcv's keep-ratio rule (`mmcv/image/geometric.py`, `rescale_size` and
//!   `_scale_size`): factor = min(long_max / long, short_max / short), new size =
//!   `int(w·f + 0.5)`, `int(h·f + 0.5)`.
//! - [`resize_linear`]: `cv2.resize(…, INTER_LINEAR)` on 8-bit images, OpenCV's fixed-point
//!   path (`modules/imgproc/src/resize.cpp`: `resizeGeneric_`, `HResizeLinear`,
//!   `VResizeLinearVec_32s8u`): source positions `(d + 0.5)·scale − 0.5` in float, 11-bit
//!   coefficients rounded half to even, a horizontal pass into 32-bit sums, then the vertical
//!   pass of the vector kernel, `((S0 >> 4)·b0 >> 16) + ((S1 >> 4)·b1 >> 16) + 2 >> 2`.
//!   OpenCV 4.10's x86 build takes that vector formula for every pixel of a row (the golden
//!   test found no pixel that follows the scalar `(S0·b0 + S1·b1 + 2^21) >> 22` instead).
//! - [`resize_nearest`]: `cv2.resize(…, INTER_NEAREST)`: source index
//!   `min(floor(d · (1 / (dst / src))), src − 1)` in double precision.

/// A resize that cannot be done: a side of 0 pixels, or a buffer of the wrong length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resize: {message}")]
pub struct ResizeError {
    /// What is wrong, with the sizes involved.
    pub message: String,
}

impl ResizeError {
    fn new(message: String) -> Self {
        Self { message }
    }
}

/// The fixed-point scale of OpenCV's linear resize coefficients (`INTER_RESIZE_COEF_BITS` =
/// 11).
const COEF_SCALE: f32 = 2048.0;

/// mmcv's `rescale_size(old_size, scale)` for a `(long, short)` scale such as `(2048, 512)`:
/// the size `(width, height)` that fits inside the scale's long and short edges with the
/// aspect ratio kept, and the factor used. Errors when a side would be 0.
pub fn rescale_size(
    width: u32,
    height: u32,
    scale: (u32, u32),
) -> Result<((u32, u32), f64), ResizeError> {
    if width == 0 || height == 0 || scale.0 == 0 || scale.1 == 0 {
        return Err(ResizeError::new(format!(
            "cannot rescale a {width}×{height} image to scale {}×{}",
            scale.0, scale.1
        )));
    }
    let max_long = f64::from(scale.0.max(scale.1));
    let max_short = f64::from(scale.0.min(scale.1));
    let long = f64::from(width.max(height));
    let short = f64::from(width.min(height));
    let factor = (max_long / long).min(max_short / short);
    // Python's int() truncates toward zero; both terms are positive.
    let new_width = (f64::from(width) * factor + 0.5) as u32;
    let new_height = (f64::from(height) * factor + 0.5) as u32;
    if new_width == 0 || new_height == 0 {
        return Err(ResizeError::new(format!(
            "rescaling a {width}×{height} image to scale {}×{} leaves a side of 0 pixels",
            scale.0, scale.1
        )));
    }
    Ok(((new_width, new_height), factor))
}

/// One output coordinate's source index and 11-bit coefficients, as `resizeGeneric_` computes
/// them for INTER_LINEAR.
#[derive(Debug, Clone, Copy)]
struct Tap {
    /// The first source pixel (−1 at the top edge of the vertical axis).
    start: i64,
    w0: i32,
    w1: i32,
}

/// `saturate_cast<short>(float)`: round half to even.
fn round_coef(x: f32) -> i32 {
    x.round_ties_even() as i32
}

/// The taps of one axis. `clamp_edges` is the horizontal rule (positions outside the image
/// take the edge pixel with weight 1); the vertical axis keeps the fraction and clamps the
/// row indices instead.
fn linear_taps(src: usize, dst: usize, clamp_edges: bool) -> Vec<Tap> {
    let inv_scale = dst as f64 / src as f64;
    let scale = 1.0 / inv_scale;
    (0..dst)
        .map(|d| {
            let pos = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut start = pos.floor() as i64;
            let mut frac = pos - start as f32;
            if clamp_edges {
                if start < 0 {
                    start = 0;
                    frac = 0.0;
                }
                if start >= src as i64 - 1 {
                    start = src as i64 - 1;
                    frac = 0.0;
                }
            }
            Tap {
                // Vertical taps may start at −1; the row index is clamped where it is used.
                start,
                w0: round_coef((1.0 - frac) * COEF_SCALE),
                w1: round_coef(frac * COEF_SCALE),
            }
        })
        .collect()
}

/// `cv2.resize(src, (dst_width, dst_height), interpolation=cv2.INTER_LINEAR)` on an 8-bit
/// image of `channels` interleaved channels, row-major. `src.len()` must be
/// `width · height · channels`.
pub fn resize_linear(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    dst_width: usize,
    dst_height: usize,
) -> Result<Vec<u8>, ResizeError> {
    check_buffer(src, width, height, channels, dst_width, dst_height)?;
    if (width, height) == (dst_width, dst_height) {
        return Ok(src.to_vec());
    }
    let cn = channels;
    let xtaps = linear_taps(width, dst_width, true);
    let ytaps = linear_taps(height, dst_height, false);
    let row_len = dst_width * cn;

    // Horizontal pass of one source row into 32-bit sums (weights sum to 2048).
    // Byte offsets of each output column's two source pixels (the second clamped: its weight
    // is 0 at the right edge).
    let xoffsets: Vec<(usize, usize, i32, i32)> = xtaps
        .iter()
        .map(|tap| {
            // Horizontal starts are clamped into the image by linear_taps.
            let sx = tap.start as usize;
            (sx * cn, (sx + 1).min(width - 1) * cn, tap.w0, tap.w1)
        })
        .collect();
    let horizontal = |y: usize, out: &mut [i32]| {
        let row = &src[y * width * cn..(y + 1) * width * cn];
        if cn == 3 {
            for (o, &(a, b, w0, w1)) in out.chunks_exact_mut(3).zip(&xoffsets) {
                let (pa, pb) = (&row[a..a + 3], &row[b..b + 3]);
                o[0] = i32::from(pa[0]) * w0 + i32::from(pb[0]) * w1;
                o[1] = i32::from(pa[1]) * w0 + i32::from(pb[1]) * w1;
                o[2] = i32::from(pa[2]) * w0 + i32::from(pb[2]) * w1;
            }
        } else {
            for (o, &(a, b, w0, w1)) in out.chunks_exact_mut(cn).zip(&xoffsets) {
                for c in 0..cn {
                    o[c] = i32::from(row[a + c]) * w0 + i32::from(row[b + c]) * w1;
                }
            }
        }
    };

    let mut dst = vec![0u8; dst_height * row_len];
    // Two horizontally resized rows, by source row: consecutive output rows share them.
    let mut slots: [(usize, Vec<i32>); 2] = [
        (usize::MAX, vec![0; row_len]),
        (usize::MAX, vec![0; row_len]),
    ];
    for (dy, tap) in ytaps.iter().enumerate() {
        let start = tap.start;
        let r0 = start.clamp(0, height as i64 - 1) as usize;
        let r1 = (start + 1).clamp(0, height as i64 - 1) as usize;
        let i0 = match slots.iter().position(|s| s.0 == r0) {
            Some(i) => i,
            None => {
                // Keep the slot that holds r1, if any.
                let i = usize::from(slots[0].0 == r1);
                horizontal(r0, &mut slots[i].1);
                slots[i].0 = r0;
                i
            }
        };
        let i1 = match slots.iter().position(|s| s.0 == r1) {
            Some(i) => i,
            None => {
                let i = 1 - i0;
                horizontal(r1, &mut slots[i].1);
                slots[i].0 = r1;
                i
            }
        };
        let (b0, b1) = (tap.w0, tap.w1);
        let out = &mut dst[dy * row_len..(dy + 1) * row_len];
        for ((o, &s0), &s1) in out.iter_mut().zip(&slots[i0].1).zip(&slots[i1].1) {
            // v_pack saturates (s >> 4) to i16 (it never exceeds 255·2048 / 16 = 32640);
            // v_mul_hi keeps the high half of the 32-bit product, an arithmetic shift.
            let v = (((s0 >> 4) * b0) >> 16) + (((s1 >> 4) * b1) >> 16);
            *o = ((v + 2) >> 2).clamp(0, 255) as u8;
        }
    }
    Ok(dst)
}

/// `cv2.resize(src, (dst_width, dst_height), interpolation=cv2.INTER_NEAREST)` on a map of
/// `channels` interleaved 8-bit channels (label maps: 1).
pub fn resize_nearest(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    dst_width: usize,
    dst_height: usize,
) -> Result<Vec<u8>, ResizeError> {
    check_buffer(src, width, height, channels, dst_width, dst_height)?;
    let cn = channels;
    let inverse = |src: usize, dst: usize| 1.0 / (dst as f64 / src as f64);
    let (ifx, ify) = (inverse(width, dst_width), inverse(height, dst_height));
    let xs: Vec<usize> = (0..dst_width)
        .map(|x| ((x as f64 * ifx).floor() as usize).min(width - 1))
        .collect();
    let mut dst = Vec::with_capacity(dst_width * dst_height * cn);
    for y in 0..dst_height {
        let sy = ((y as f64 * ify).floor() as usize).min(height - 1);
        let row = &src[sy * width * cn..(sy + 1) * width * cn];
        for &sx in &xs {
            dst.extend_from_slice(&row[sx * cn..(sx + 1) * cn]);
        }
    }
    Ok(dst)
}

fn check_buffer(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    dst_width: usize,
    dst_height: usize,
) -> Result<(), ResizeError> {
    if width == 0 || height == 0 || dst_width == 0 || dst_height == 0 || channels == 0 {
        return Err(ResizeError::new(format!(
            "cannot resize {width}×{height}×{channels} to {dst_width}×{dst_height}: \
                 every size must be positive"
        )));
    }
    if src.len() != width * height * channels {
        return Err(ResizeError::new(format!(
            "a buffer of {} bytes is not {width}×{height}×{channels}",
            src.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_size_follows_mmcv() {
        // (683, 512) fits (2048, 512) at factor 1; a portrait image is limited by its short side.
        assert_eq!(rescale_size(683, 512, (2048, 512)).unwrap().0, (683, 512));
        assert_eq!(rescale_size(512, 683, (2048, 512)).unwrap().0, (512, 683));
        // A very long image is limited by the long side: 4000×500 → factor 2048/4000.
        assert_eq!(rescale_size(4000, 500, (2048, 512)).unwrap().0, (2048, 256));
        assert_eq!(rescale_size(3, 5, (2048, 512)).unwrap().0, (512, 853));
        assert!(rescale_size(0, 5, (2048, 512)).is_err());
    }

    #[test]
    fn identity_and_constant_images() {
        let src: Vec<u8> = (0..4 * 3 * 3).map(|v| v as u8).collect();
        assert_eq!(resize_linear(&src, 4, 3, 3, 4, 3).unwrap(), src);
        // A constant image stays constant at any size (weights sum to 2048).
        let flat = vec![77u8; 5 * 7 * 3];
        for (w, h) in [(3, 2), (11, 13), (5, 7), (1, 1), (40, 9)] {
            let out = resize_linear(&flat, 5, 7, 3, w, h).unwrap();
            assert!(out.iter().all(|&v| v == 77), "{w}×{h}");
        }
        assert!(resize_linear(&flat, 5, 7, 3, 0, 2).is_err());
        assert!(resize_linear(&flat[1..], 5, 7, 3, 2, 2).is_err());
    }

    #[test]
    fn nearest_takes_floor_positions() {
        let src = [0u8, 1, 2, 3];
        assert_eq!(resize_nearest(&src, 4, 1, 1, 2, 1).unwrap(), [0, 2]);
        assert_eq!(
            resize_nearest(&src, 4, 1, 1, 8, 1).unwrap(),
            [0, 0, 1, 1, 2, 2, 3, 3]
        );
        assert_eq!(resize_nearest(&src, 2, 2, 1, 1, 1).unwrap(), [0]);
    }
}
