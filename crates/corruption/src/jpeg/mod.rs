//! JPEG as libjpeg-turbo computes it, in pure Rust and bit for bit.
//!
//! jpeg_compression saves the image with Pillow (`quality=q`, 4:2:0, ISLOW DCT, standard
//! tables) and reads it back (ISLOW IDCT, fancy up-sampling). The entropy-coding step between the
//! two is lossless, so [`round_trip`] goes straight from the quantised coefficients to the
//! decoder: colour conversion, down-sampling, forward DCT and quantisation exactly as
//! libjpeg-turbo's encoder (including its reciprocal-multiply quantiser and edge padding), then
//! dequantisation, inverse DCT, up-sampling and colour conversion exactly as its decoder. The
//! result equals `np.array(Image.open(saved))` byte for byte (the golden tests check it against
//! Pillow 13 at every severity and several sizes) and skips the Huffman coding both ways.
//!
//! [`file`] decodes whole JFIF files (baseline and progressive Huffman, 4:4:4 and 4:2:0) with
//! the same decoder back end: it is how the frost textures are read, equal to `cv2.imread`.

mod dct;
pub(crate) mod file;

use image::RgbImage;

use crate::{Flavor, Severity};

/// The jpeg_compression corruption: the quality per flavor.
pub(crate) fn apply(image: &RgbImage, severity: Severity, flavor: Flavor) -> RgbImage {
    let table = match flavor {
        Flavor::ImageCorruptions | Flavor::ImageNetC => [25, 18, 15, 10, 7],
        Flavor::CifarC => [80, 65, 58, 50, 40],
    };
    let (width, height) = (image.width() as usize, image.height() as usize);
    let out = round_trip(image.as_raw(), height, width, table[severity.index()]);
    RgbImage::from_raw(image.width(), image.height(), out).expect("JPEG keeps the size")
}

pub(crate) use dct::{forward_dct_islow, inverse_dct_islow};

/// The natural (row-major) position of the k-th coefficient in zig-zag order.
pub(crate) const ZIGZAG_TO_NATURAL: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// The IJG luminance table (JPEG Annex K), natural order.
const STD_LUMINANCE: [u32; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];

/// The IJG chrominance table, natural order.
const STD_CHROMINANCE: [u32; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
];

/// `jpeg_set_quality(quality, force_baseline=TRUE)`: one scaled table.
fn scaled_table(base: &[u32; 64], quality: u32) -> [u16; 64] {
    let quality = quality.clamp(1, 100);
    let scale = if quality < 50 {
        5000 / quality
    } else {
        200 - quality * 2
    };
    base.map(|b| ((b * scale + 50) / 100).clamp(1, 255) as u16)
}

/// libjpeg-turbo's quantiser for one divisor: `(|x| + correction) · reciprocal >> shift`, which
/// it uses instead of a division (`compute_reciprocal` in jcdctmgr.c).
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
struct Reciprocal {
    reciprocal: u32,
    correction: u32,
    shift: u32,
}

#[cfg(test)]
impl Reciprocal {
    fn new(divisor: u16) -> Self {
        if divisor <= 1 {
            return Self {
                reciprocal: 1,
                correction: 0,
                shift: 0,
            };
        }
        let divisor = divisor as u32;
        let b = 31 - divisor.leading_zeros();
        let mut r = 16 + b;
        let mut fq = (1u64 << r) / divisor as u64;
        let fr = (1u64 << r) % divisor as u64;
        let mut c = divisor / 2;
        if fr == 0 {
            fq >>= 1;
            r -= 1;
        } else if fr <= (divisor / 2) as u64 {
            c += 1;
        } else {
            fq += 1;
        }
        Self {
            reciprocal: fq as u32,
            correction: c,
            shift: r,
        }
    }

    #[cfg(test)]
    fn quantize(self, value: i32) -> i16 {
        let magnitude = value.unsigned_abs();
        let q = ((magnitude + self.correction).wrapping_mul(self.reciprocal) >> self.shift) as i32;
        (if value < 0 { -q } else { q }) as i16
    }
}

/// The same quantiser as one multiply and a fixed shift, which vectorises: for every divisor
/// libjpeg-turbo can use (8·q, q ≤ 255) and every magnitude the forward DCT produces
/// (< 2¹⁵), `⌊n · ⌈2³²/d⌉ / 2³²⌋` equals the reciprocal method (tested exhaustively below).
#[derive(Debug, Clone, Copy)]
struct FastQuantizer {
    multiplier: u64,
    correction: u32,
}

impl FastQuantizer {
    fn new(divisor: u16) -> Self {
        let divisor = divisor.max(1) as u64;
        Self {
            multiplier: (1u64 << 32).div_ceil(divisor),
            correction: (divisor / 2) as u32,
        }
    }

    #[inline(always)]
    fn quantize(self, value: i32) -> i16 {
        let magnitude = (value.unsigned_abs() + self.correction) as u64;
        let q = ((magnitude * self.multiplier) >> 32) as i32;
        (if value < 0 { -q } else { q }) as i16
    }
}

/// A decoded component's samples before up-sampling: whole 8×8 blocks.
pub(crate) struct Plane {
    /// Samples per row (a multiple of 8).
    pub stride: usize,
    pub samples: Vec<u8>,
    /// `ceil(image_width · h / max_h)`: the columns that hold image data.
    pub width: usize,
    /// `ceil(image_height · v / max_v)`.
    pub height: usize,
}

/// Quantised DCT coefficients of one component, natural order, blocks in raster order.
pub(crate) struct Coefficients {
    pub blocks_wide: usize,
    pub blocks_high: usize,
    pub blocks: Vec<[i16; 64]>,
    pub quant: [u16; 64],
    pub width: usize,
    pub height: usize,
}

impl Coefficients {
    /// Dequantises and inverse-transforms every block.
    pub(crate) fn to_plane(&self) -> Plane {
        let stride = self.blocks_wide * 8;
        let rows = self.blocks_high * 8;
        let mut samples = vec![0u8; stride * rows];
        let mut out = [0u8; 64];
        for by in 0..self.blocks_high {
            for bx in 0..self.blocks_wide {
                inverse_dct_islow(
                    &self.blocks[by * self.blocks_wide + bx],
                    &self.quant,
                    &mut out,
                );
                for row in 0..8 {
                    let start = (by * 8 + row) * stride + bx * 8;
                    samples[start..start + 8].copy_from_slice(&out[row * 8..row * 8 + 8]);
                }
            }
        }
        Plane {
            stride,
            samples,
            width: self.width,
            height: self.height,
        }
    }
}

/// How the chroma planes relate to the luma plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subsampling {
    /// 4:4:4.
    None,
    /// 4:2:0 (chroma halved both ways).
    Half,
}

/// libjpeg's `h2v2_fancy_upsample` (triangle filter; neighbours outside the component's data
/// repeat its edge, as libjpeg-turbo's SIMD code and context rows do), or plain pixel
/// replication when the component is at most 2 samples wide (libjpeg then skips the fancy
/// path). Returns `out_height × out_width` samples.
fn upsample_h2v2(plane: &Plane, out_height: usize, out_width: usize) -> Vec<u8> {
    let mut out = vec![0u8; out_height * out_width];
    let (width, height) = (plane.width, plane.height);
    let at = |row: usize, col: usize| plane.samples[row * plane.stride + col] as i32;
    if width <= 2 {
        for y in 0..out_height {
            for x in 0..out_width {
                out[y * out_width + x] = at(y / 2, x / 2) as u8;
            }
        }
        return out;
    }
    let mut colsum = vec![0i32; width];
    for y in 0..out_height {
        let row = y / 2;
        let neighbour = if y % 2 == 0 {
            row.saturating_sub(1)
        } else {
            (row + 1).min(height - 1)
        };
        for (x, sum) in colsum.iter_mut().enumerate() {
            *sum = 3 * at(row, x) + at(neighbour, x);
        }
        let dst = &mut out[y * out_width..(y + 1) * out_width];
        for x in 0..width {
            let this = colsum[x];
            let last = colsum[x.saturating_sub(1)];
            let next = colsum[(x + 1).min(width - 1)];
            if 2 * x < out_width {
                dst[2 * x] = ((this * 3 + last + 8) >> 4) as u8;
            }
            if 2 * x + 1 < out_width {
                dst[2 * x + 1] = ((this * 3 + next + 7) >> 4) as u8;
            }
        }
    }
    out
}

/// The decoder's YCbCr → RGB tables (`build_ycc_rgb_table` in jdcolor.c).
struct YccToRgb {
    cr_r: [i32; 256],
    cb_b: [i32; 256],
    cr_g: [i32; 256],
    cb_g: [i32; 256],
}

const SCALEBITS: u32 = 16;
const ONE_HALF: i64 = 1 << (SCALEBITS - 1);

const fn fix(x: f64) -> i64 {
    (x * (1i64 << SCALEBITS) as f64 + 0.5) as i64
}

impl YccToRgb {
    fn get() -> &'static YccToRgb {
        static TABLES: std::sync::OnceLock<YccToRgb> = std::sync::OnceLock::new();
        TABLES.get_or_init(|| {
            let mut t = YccToRgb {
                cr_r: [0; 256],
                cb_b: [0; 256],
                cr_g: [0; 256],
                cb_g: [0; 256],
            };
            for i in 0..256 {
                let x = i as i64 - 128;
                t.cr_r[i] = ((fix(1.40200) * x + ONE_HALF) >> SCALEBITS) as i32;
                t.cb_b[i] = ((fix(1.77200) * x + ONE_HALF) >> SCALEBITS) as i32;
                // Kept unshifted: G sums both before the shift.
                t.cr_g[i] = (-fix(0.71414) * x) as i32;
                t.cb_g[i] = (-fix(0.34414) * x + ONE_HALF) as i32;
            }
            t
        })
    }
}

/// Up-samples the chroma and converts to interleaved RGB (`height × width × 3`).
pub(crate) fn planes_to_rgb(
    planes: &[Plane; 3],
    subsampling: Subsampling,
    height: usize,
    width: usize,
) -> Vec<u8> {
    let chroma: [Vec<u8>; 2] = match subsampling {
        Subsampling::None => [1, 2].map(|c| crop(&planes[c], height, width)),
        Subsampling::Half => [1, 2].map(|c| upsample_h2v2(&planes[c], height, width)),
    };
    let tables = YccToRgb::get();
    let mut out = vec![0u8; height * width * 3];
    for y in 0..height {
        let luma = &planes[0].samples[y * planes[0].stride..y * planes[0].stride + width];
        let cb = &chroma[0][y * width..(y + 1) * width];
        let cr = &chroma[1][y * width..(y + 1) * width];
        let dst = &mut out[y * width * 3..(y + 1) * width * 3];
        for x in 0..width {
            let yy = luma[x] as i32;
            let (cb, cr) = (cb[x] as usize, cr[x] as usize);
            dst[3 * x] = (yy + tables.cr_r[cr]).clamp(0, 255) as u8;
            dst[3 * x + 1] =
                (yy + ((tables.cb_g[cb] + tables.cr_g[cr]) >> SCALEBITS)).clamp(0, 255) as u8;
            dst[3 * x + 2] = (yy + tables.cb_b[cb]).clamp(0, 255) as u8;
        }
    }
    out
}

fn crop(plane: &Plane, height: usize, width: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(height * width);
    for y in 0..height {
        out.extend_from_slice(&plane.samples[y * plane.stride..y * plane.stride + width]);
    }
    out
}

/// The encoder's RGB → YCbCr tables (`rgb_ycc_start` in jccolor.c): eight columns of 256
/// entries, the rounding terms folded into the blue (Y, Cb) and red (Cr) columns.
struct RgbToYcc([[i32; 256]; 8]);

impl RgbToYcc {
    fn get() -> &'static RgbToYcc {
        static TABLES: std::sync::OnceLock<RgbToYcc> = std::sync::OnceLock::new();
        TABLES.get_or_init(|| {
            const CBCR_OFFSET: i64 = 128 << SCALEBITS;
            let column = |f: &dyn Fn(i64) -> i64| -> [i32; 256] {
                std::array::from_fn(|i| f(i as i64) as i32)
            };
            RgbToYcc([
                column(&|i| fix(0.29900) * i),
                column(&|i| fix(0.58700) * i),
                column(&|i| fix(0.11400) * i + ONE_HALF),
                column(&|i| -fix(0.16874) * i),
                column(&|i| -fix(0.33126) * i),
                column(&|i| fix(0.50000) * i + CBCR_OFFSET + ONE_HALF - 1),
                column(&|i| -fix(0.41869) * i),
                column(&|i| -fix(0.08131) * i),
            ])
        })
    }

    /// One pixel: (Y, Cb, Cr). Cr's red term is the same column as Cb's blue term.
    #[inline(always)]
    fn convert(&self, r: u8, g: u8, b: u8) -> (u8, u8, u8) {
        let t = &self.0;
        let (r, g, b) = (r as usize, g as usize, b as usize);
        let y = (t[0][r] + t[1][g] + t[2][b]) >> SCALEBITS;
        let cb = (t[3][r] + t[4][g] + t[5][b]) >> SCALEBITS;
        let cr = (t[5][r] + t[6][g] + t[7][b]) >> SCALEBITS;
        (y as u8, cb as u8, cr as u8)
    }
}

/// The encoder's RGB → YCbCr (`rgb_ycc_convert` in jccolor.c) for one pixel.
#[cfg(test)]
fn rgb_to_ycc(r: i64, g: i64, b: i64) -> (u8, u8, u8) {
    RgbToYcc::get().convert(r as u8, g as u8, b as u8)
}

/// Forward DCT and quantisation of every 8×8 block of a padded plane.
fn encode_plane(
    samples: &[u8],
    stride: usize,
    blocks_wide: usize,
    blocks_high: usize,
    quant: &[u16; 64],
) -> Vec<[i16; 64]> {
    let divisors: [FastQuantizer; 64] = std::array::from_fn(|i| FastQuantizer::new(quant[i] << 3));
    let mut blocks = Vec::with_capacity(blocks_wide * blocks_high);
    let mut work = [0i32; 64];
    for by in 0..blocks_high {
        for bx in 0..blocks_wide {
            for row in 0..8 {
                let start = (by * 8 + row) * stride + bx * 8;
                for col in 0..8 {
                    work[row * 8 + col] = samples[start + col] as i32 - 128;
                }
            }
            forward_dct_islow(&mut work);
            blocks.push(std::array::from_fn(|i| divisors[i].quantize(work[i])));
        }
    }
    blocks
}

/// Encodes an RGB image as Pillow does for `save(f, 'JPEG', quality=quality)` (4:2:0, standard
/// tables scaled by the quality, baseline-limited) and returns the quantised coefficients of
/// Y, Cb and Cr.
pub(crate) fn encode_420(
    pixels: &[u8],
    height: usize,
    width: usize,
    quality: u32,
) -> [Coefficients; 3] {
    let luma_quant = scaled_table(&STD_LUMINANCE, quality);
    let chroma_quant = scaled_table(&STD_CHROMINANCE, quality);
    // Plane sizes the encoder pads to (see the module docs of jcprepct.c / jcsample.c):
    // luma to whole blocks, chroma to whole blocks of the half-size plane, both down to the
    // bottom of the last MCU row, every pad replicating the last real column / row.
    let mcus_wide = width.div_ceil(16);
    let mcus_high = height.div_ceil(16);
    let luma_blocks_wide = width.div_ceil(8);
    let luma_blocks_high = height.div_ceil(8);
    let luma_stride = luma_blocks_wide * 8;
    let full_rows = mcus_high * 16;
    let chroma_stride = mcus_wide * 8;
    let chroma_full_width = chroma_stride * 2;

    let mut luma = vec![0u8; luma_stride * full_rows];
    let mut cb_full = vec![0u8; chroma_full_width * full_rows];
    let mut cr_full = vec![0u8; chroma_full_width * full_rows];
    let tables = RgbToYcc::get();
    for y in 0..full_rows {
        let src_y = y.min(height - 1);
        let src = &pixels[src_y * width * 3..(src_y + 1) * width * 3];
        if y < height {
            let luma_row = &mut luma[y * luma_stride..y * luma_stride + width];
            let cb_row = &mut cb_full[y * chroma_full_width..y * chroma_full_width + width];
            let cr_row = &mut cr_full[y * chroma_full_width..y * chroma_full_width + width];
            for (x, px) in src.chunks_exact(3).enumerate() {
                let (yy, cb, cr) = tables.convert(px[0], px[1], px[2]);
                luma_row[x] = yy;
                cb_row[x] = cb;
                cr_row[x] = cr;
            }
            let last = luma[y * luma_stride + width - 1];
            luma[y * luma_stride + width..(y + 1) * luma_stride].fill(last);
            for plane in [&mut cb_full, &mut cr_full] {
                let last = plane[y * chroma_full_width + width - 1];
                plane[y * chroma_full_width + width..(y + 1) * chroma_full_width].fill(last);
            }
        } else {
            luma.copy_within(
                (height - 1) * luma_stride..height * luma_stride,
                y * luma_stride,
            );
            for plane in [&mut cb_full, &mut cr_full] {
                plane.copy_within(
                    (height - 1) * chroma_full_width..height * chroma_full_width,
                    y * chroma_full_width,
                );
            }
        }
    }
    // h2v2 down-sampling with the alternating 1, 2 bias over the (even-padded) rows; rows past
    // ceil(H/2) repeat the last down-sampled row.
    let chroma_rows_real = height.div_ceil(2);
    let chroma_rows = mcus_high * 8;
    let downsample = |full: &[u8]| -> Vec<u8> {
        let mut out = vec![0u8; chroma_stride * chroma_rows];
        for y in 0..chroma_rows {
            let source_row = y.min(chroma_rows_real - 1);
            let (r0, r1) = (2 * source_row, 2 * source_row + 1);
            let row0 = &full[r0 * chroma_full_width..(r0 + 1) * chroma_full_width];
            let row1 = &full[r1 * chroma_full_width..(r1 + 1) * chroma_full_width];
            let dst = &mut out[y * chroma_stride..(y + 1) * chroma_stride];
            let mut bias = 1u32;
            for (x, d) in dst.iter_mut().enumerate() {
                let sum = row0[2 * x] as u32
                    + row0[2 * x + 1] as u32
                    + row1[2 * x] as u32
                    + row1[2 * x + 1] as u32;
                *d = ((sum + bias) >> 2) as u8;
                bias ^= 3;
            }
        }
        out
    };
    let cb = downsample(&cb_full);
    let cr = downsample(&cr_full);
    let chroma_width = width.div_ceil(2);
    [
        Coefficients {
            blocks: encode_plane(
                &luma,
                luma_stride,
                luma_blocks_wide,
                luma_blocks_high,
                &luma_quant,
            ),
            blocks_wide: luma_blocks_wide,
            blocks_high: luma_blocks_high,
            quant: luma_quant,
            width,
            height,
        },
        Coefficients {
            blocks: encode_plane(&cb, chroma_stride, mcus_wide, mcus_high, &chroma_quant),
            blocks_wide: mcus_wide,
            blocks_high: mcus_high,
            quant: chroma_quant,
            width: chroma_width,
            height: chroma_rows_real,
        },
        Coefficients {
            blocks: encode_plane(&cr, chroma_stride, mcus_wide, mcus_high, &chroma_quant),
            blocks_wide: mcus_wide,
            blocks_high: mcus_high,
            quant: chroma_quant,
            width: chroma_width,
            height: chroma_rows_real,
        },
    ]
}

/// `np.array(Image.open(saved))` after `Image.fromarray(rgb).save(saved, 'JPEG',
/// quality=quality)`.
pub(crate) fn round_trip(pixels: &[u8], height: usize, width: usize, quality: u32) -> Vec<u8> {
    let [y, cb, cr] = encode_420(pixels, height, width, quality);
    let planes = [y.to_plane(), cb.to_plane(), cr.to_plane()];
    planes_to_rgb(&planes, Subsampling::Half, height, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_scaling_follows_ijg() {
        // Quality 50 is the base table; quality 7 scales by 5000/7 = 714 % and caps at 255.
        assert_eq!(
            scaled_table(&STD_LUMINANCE, 50),
            STD_LUMINANCE.map(|v| v as u16)
        );
        let q7 = scaled_table(&STD_LUMINANCE, 7);
        assert_eq!(q7[0], 114);
        assert_eq!(q7[63], 255);
        assert_eq!(scaled_table(&STD_CHROMINANCE, 80)[0], 7);
    }

    #[test]
    fn reciprocal_quantiser_equals_rounded_division() {
        // libjpeg-turbo's reciprocal trick must give (|x| + q/2) / q with the sign restored.
        for q in [8u16, 16, 24, 88, 136, 792, 2040] {
            let r = Reciprocal::new(q);
            for x in -4096i32..=4096 {
                let expected = (x.unsigned_abs() as i32 + q as i32 / 2) / q as i32;
                let expected = if x < 0 { -expected } else { expected };
                assert_eq!(r.quantize(x) as i32, expected, "x = {x}, q = {q}");
            }
        }
    }

    #[test]
    fn fast_quantiser_equals_libjpeg_turbo_reciprocals_everywhere() {
        for q in 1u16..=255 {
            let divisor = q << 3;
            let (slow, fast) = (Reciprocal::new(divisor), FastQuantizer::new(divisor));
            for x in -32767i32..=32767 {
                assert_eq!(fast.quantize(x), slow.quantize(x), "x = {x}, q = {q}");
            }
        }
    }

    #[test]
    fn encoder_colour_conversion_matches_known_values() {
        assert_eq!(rgb_to_ycc(0, 0, 0), (0, 128, 128));
        assert_eq!(rgb_to_ycc(255, 255, 255), (255, 128, 128));
        assert_eq!(rgb_to_ycc(255, 0, 0), (76, 85, 255));
    }

    #[test]
    fn flat_images_survive_the_round_trip() {
        for (h, w) in [(1, 1), (2, 3), (9, 17), (16, 16), (33, 7)] {
            let pixels = vec![120u8; h * w * 3];
            let out = round_trip(&pixels, h, w, 25);
            assert_eq!(out.len(), pixels.len());
            assert!(out.iter().all(|&v| v.abs_diff(120) <= 1), "{h}×{w}");
        }
    }
}
