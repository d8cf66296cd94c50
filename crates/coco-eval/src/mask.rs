//! Run-length encoded masks, computed exactly as pycocotools' `maskApi.c` (2.0.11) does.
//!
//! A mask of `height × width` pixels is stored column-major (Fortran order, as pycocotools
//! does): `counts` alternate runs of 0s and 1s and always start with a run of 0s (possibly of
//! length 0). Every [`Rle`] built by this module is valid: its counts sum to
//! `height × width`, so the algorithms below never read past a run.
//!
//! The integer arithmetic (32-bit unsigned counts, `int` pixel coordinates, truncating
//! float-to-int casts) follows the C code, so that areas, boxes and IoUs are bit-identical to
//! pycocotools on every input it accepts.

use std::fmt;

/// What is wrong with a mask, a run-length encoding or a polygon.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    /// The run lengths do not add up to `height × width`.
    #[error("RLE counts sum to {sum} but size {height}x{width} has {pixels} pixels")]
    CountsSum {
        /// Sum of the run lengths.
        sum: u64,
        /// Mask height.
        height: u32,
        /// Mask width.
        width: u32,
        /// `height × width`.
        pixels: u64,
    },
    /// A compressed RLE string holds a byte outside the codec's alphabet (`'0'..='o'`).
    #[error("compressed RLE string has byte {byte:#04x} at position {position}, outside '0'..='o'")]
    CompressedByte {
        /// Offset of the bad byte.
        position: usize,
        /// The byte.
        byte: u8,
    },
    /// A compressed RLE string ends in the middle of a run length.
    #[error("compressed RLE string ends inside a run length (at position {position})")]
    CompressedTruncated {
        /// Length of the string.
        position: usize,
    },
    /// A compressed run length uses more characters than any 32-bit count needs.
    #[error(
        "compressed RLE string has a run length longer than 7 characters at position {position}"
    )]
    CompressedTooLong {
        /// Offset where the run length starts.
        position: usize,
    },
    /// A dense mask buffer does not hold `height × width` bytes.
    #[error("mask buffer holds {len} bytes, expected {height}x{width} = {expected}")]
    BufferLength {
        /// Bytes given.
        len: usize,
        /// Mask height.
        height: u32,
        /// Mask width.
        width: u32,
        /// `height × width`.
        expected: u64,
    },
    /// Masks of different sizes cannot be merged.
    #[error("cannot merge masks of sizes {first:?} and {other:?}")]
    MergeSize {
        /// `[height, width]` of the first mask.
        first: [u32; 2],
        /// `[height, width]` of the mask that differs.
        other: [u32; 2],
    },
    /// A segmentation given as polygons has no polygon.
    #[error("segmentation is an empty list of polygons")]
    NoPolygon,
    /// A polygon has fewer than three points or an odd number of coordinates.
    #[error(
        "polygon {part} has {len} coordinates; a polygon needs an even number, at least 6 (3 points)"
    )]
    PolygonLength {
        /// Index of the polygon in the segmentation.
        part: usize,
        /// Number of coordinates it has.
        len: usize,
    },
    /// Polygons are rasterised at the image's size, which the ground truth does not give.
    #[error(
        "image {image_id} has no height/width in the ground truth, needed to rasterise polygons"
    )]
    NoImageSize {
        /// The image id.
        image_id: i64,
    },
}

/// A run-length encoded binary mask (column-major, first run counts 0s).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Rle {
    height: u32,
    width: u32,
    counts: Vec<u32>,
}

impl fmt::Debug for Rle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rle")
            .field("size", &[self.height, self.width])
            .field("counts", &self.counts)
            .finish()
    }
}

fn check_sum(counts: &[u32], height: u32, width: u32) -> Result<(), MaskError> {
    let sum: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    let pixels = u64::from(height) * u64::from(width);
    if sum == pixels {
        Ok(())
    } else {
        Err(MaskError::CountsSum {
            sum,
            height,
            width,
            pixels,
        })
    }
}

/// `(int)x` as x86-64 computes it: truncation toward zero, and `INT_MIN` for NaN or values
/// out of range (the C cast is undefined there; `cvttsd2si` returns the "integer indefinite").
#[inline]
fn c_int(x: f64) -> i32 {
    if x.is_nan() || x >= 2_147_483_648.0 || x <= -2_147_483_649.0 {
        i32::MIN
    } else {
        x as i32
    }
}

impl Rle {
    /// An RLE from uncompressed run lengths; they must sum to `height × width`.
    pub fn new(height: u32, width: u32, counts: Vec<u32>) -> Result<Self, MaskError> {
        check_sum(&counts, height, width)?;
        Ok(Self {
            height,
            width,
            counts,
        })
    }

    /// The empty `0 × 0` mask (what merging no masks gives).
    pub fn empty() -> Self {
        Self {
            height: 0,
            width: 0,
            counts: Vec::new(),
        }
    }

    /// Mask height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Mask width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// `[height, width]`, the order of COCO's `size` field.
    pub fn size(&self) -> [u32; 2] {
        [self.height, self.width]
    }

    /// The run lengths.
    pub fn counts(&self) -> &[u32] {
        &self.counts
    }

    /// The run lengths, by value.
    pub fn into_counts(self) -> Vec<u32> {
        self.counts
    }

    /// Encodes a dense mask stored column-major (`mask[x * height + y]`), as `rleEncode`.
    ///
    /// Like maskApi.c a new run starts whenever the byte value changes, so masks should hold
    /// only 0 and 1.
    pub fn encode(mask: &[u8], height: u32, width: u32) -> Result<Self, MaskError> {
        let expected = u64::from(height) * u64::from(width);
        if mask.len() as u64 != expected {
            return Err(MaskError::BufferLength {
                len: mask.len(),
                height,
                width,
                expected,
            });
        }
        let mut counts = Vec::new();
        let mut previous = 0u8;
        let mut run = 0u32;
        for &value in mask {
            if value != previous {
                counts.push(run);
                run = 0;
                previous = value;
            }
            run += 1;
        }
        counts.push(run);
        Ok(Self {
            height,
            width,
            counts,
        })
    }

    /// Encodes a dense mask stored row-major (`mask[y * width + x]`, the layout of images).
    pub fn encode_row_major(mask: &[u8], height: u32, width: u32) -> Result<Self, MaskError> {
        let expected = u64::from(height) * u64::from(width);
        if mask.len() as u64 != expected {
            return Err(MaskError::BufferLength {
                len: mask.len(),
                height,
                width,
                expected,
            });
        }
        let (h, w) = (height as usize, width as usize);
        let mut column_major = vec![0u8; mask.len()];
        for y in 0..h {
            for x in 0..w {
                column_major[x * h + y] = mask[y * w + x];
            }
        }
        Self::encode(&column_major, height, width)
    }

    /// The dense mask, column-major (`mask[x * height + y]`), values 0 and 1.
    pub fn decode(&self) -> Vec<u8> {
        let pixels = u64::from(self.height) * u64::from(self.width);
        let mut mask = Vec::with_capacity(pixels as usize);
        let mut value = 0u8;
        for &run in &self.counts {
            mask.resize(mask.len() + run as usize, value);
            value ^= 1;
        }
        mask
    }

    /// The dense mask, row-major (`mask[y * width + x]`).
    pub fn decode_row_major(&self) -> Vec<u8> {
        let column_major = self.decode();
        let (h, w) = (self.height as usize, self.width as usize);
        let mut mask = vec![0u8; column_major.len()];
        for x in 0..w {
            for y in 0..h {
                mask[y * w + x] = column_major[x * h + y];
            }
        }
        mask
    }

    /// Number of foreground pixels (`rleArea`, 32-bit like pycocotools' `uint`).
    pub fn area(&self) -> u32 {
        area_of(&self.counts)
    }

    /// The bounding box `[x, y, width, height]` of the foreground (`rleToBbox`, with the
    /// February 2021 fix for runs that cross columns).
    pub fn to_bbox(&self) -> [f64; 4] {
        bbox_of(&self.counts, self.height, self.width)
    }

    /// The compressed string form (`rleToString`): 5 bits per character from `'0'`, 0x20 marks
    /// a continuation, 0x10 the sign; counts from the fourth on are stored as the difference
    /// to the count two places earlier.
    pub fn to_compressed(&self) -> String {
        let mut out = String::with_capacity(self.counts.len() * 2);
        for (index, &count) in self.counts.iter().enumerate() {
            let mut value = i64::from(count);
            if index > 2 {
                value -= i64::from(self.counts[index - 2]);
            }
            loop {
                let mut chunk = (value & 0x1f) as u8;
                value >>= 5;
                let more = if chunk & 0x10 != 0 {
                    value != -1
                } else {
                    value != 0
                };
                if more {
                    chunk |= 0x20;
                }
                out.push(char::from(chunk + 48));
                if !more {
                    break;
                }
            }
        }
        out
    }

    /// Parses the compressed string form (`rleFrString`) and checks the counts against the size.
    pub fn from_compressed(counts: &str, height: u32, width: u32) -> Result<Self, MaskError> {
        let mut decoded = Vec::new();
        decode_compressed_into(counts.as_bytes(), &mut decoded)?;
        Self::new(height, width, decoded)
    }

    /// Rasterises a polygon `[x0, y0, x1, y1, …]` (`rleFrPoly`): the boundary is traced on a
    /// 5× finer grid and pixels whose centres fall inside are set. Odd trailing coordinates are
    /// ignored, as in pycocotools (`int(len(poly) / 2)` points).
    pub fn from_polygon(xy: &[f64], height: u32, width: u32) -> Self {
        let counts = polygon_counts(xy, height, width);
        Self {
            height,
            width,
            counts,
        }
    }

    /// Rasterises a box `[x, y, width, height]` (`rleFrBbox`: the box as a 4-point polygon).
    pub fn from_bbox(bbox: [f64; 4], height: u32, width: u32) -> Self {
        let [xs, ys, bw, bh] = bbox;
        let (xe, ye) = (xs + bw, ys + bh);
        Self::from_polygon(&[xs, ys, xs, ye, xe, ye, xe, ys], height, width)
    }

    /// Union (or intersection) of masks of one size (`rleMerge`). No masks give
    /// [`Rle::empty`].
    pub fn merge(rles: &[Rle], intersect: bool) -> Result<Self, MaskError> {
        let Some(first) = rles.first() else {
            return Ok(Self::empty());
        };
        for other in &rles[1..] {
            if other.size() != first.size() {
                return Err(MaskError::MergeSize {
                    first: first.size(),
                    other: other.size(),
                });
            }
        }
        let mut merged = first.counts.clone();
        let mut scratch = Vec::new();
        for other in &rles[1..] {
            merge_pair(&merged, &other.counts, intersect, &mut scratch);
            std::mem::swap(&mut merged, &mut scratch);
        }
        Ok(Self {
            height: first.height,
            width: first.width,
            counts: merged,
        })
    }
}

/// Area of raw counts (sum of the odd runs), wrapping at 32 bits as maskApi.c does.
pub(crate) fn area_of(counts: &[u32]) -> u32 {
    counts
        .iter()
        .skip(1)
        .step_by(2)
        .fold(0u32, |acc, &c| acc.wrapping_add(c))
}

/// `rleToBbox`, fed one run length at a time.
struct BoxAccumulator {
    h: u32,
    xs: u32,
    ys: u32,
    xe: u32,
    ye: u32,
    cc: u32,
    runs: usize,
}

impl BoxAccumulator {
    fn new(height: u32, width: u32) -> Self {
        Self {
            h: height,
            xs: width,
            ys: height,
            xe: 0,
            ye: 0,
            cc: 0,
            runs: 0,
        }
    }

    #[inline]
    fn push(&mut self, count: u32) {
        let j = self.runs;
        self.runs += 1;
        let start = self.cc;
        self.cc = self.cc.wrapping_add(count);
        // Even runs are background; a valid RLE with a non-empty run has h > 0.
        if j.is_multiple_of(2) || count == 0 || self.h == 0 {
            return;
        }
        let h = self.h;
        let y_start = start % h;
        let x_start = (start - y_start) / h;
        let last = self.cc.wrapping_sub(1);
        let y_end = last % h;
        let x_end = (last - y_end) / h;
        self.xs = self.xs.min(x_start);
        self.xe = self.xe.max(x_end);
        if x_start < x_end {
            self.ys = 0;
            self.ye = h.wrapping_sub(1);
        } else {
            self.ys = self.ys.min(y_start);
            self.ye = self.ye.max(y_end);
        }
    }

    fn finish(&self) -> [f64; 4] {
        // maskApi.c rounds the number of runs down to even (a trailing background run does not
        // matter) and returns zeros when nothing is left.
        if self.runs < 2 {
            return [0.0; 4];
        }
        [
            f64::from(self.xs),
            f64::from(self.ys),
            f64::from(self.xe.wrapping_sub(self.xs).wrapping_add(1)),
            f64::from(self.ye.wrapping_sub(self.ys).wrapping_add(1)),
        ]
    }
}

/// `rleToBbox` on raw counts.
pub(crate) fn bbox_of(counts: &[u32], height: u32, width: u32) -> [f64; 4] {
    let mut accumulator = BoxAccumulator::new(height, width);
    for &count in counts {
        accumulator.push(count);
    }
    accumulator.finish()
}

/// Area and box of a compressed RLE (`maskUtils.area`, `maskUtils.toBbox`), checked against its
/// size, in one pass without storing the run lengths.
pub(crate) fn compressed_area_and_box(
    text: &[u8],
    height: u32,
    width: u32,
) -> Result<(u32, [f64; 4]), MaskError> {
    let mut accumulator = BoxAccumulator::new(height, width);
    let mut area = 0u32;
    let mut sum = 0u64;
    for_each_compressed_count(text, |count| {
        if accumulator.runs % 2 == 1 {
            area = area.wrapping_add(count);
        }
        sum += u64::from(count);
        accumulator.push(count);
    })?;
    let pixels = u64::from(height) * u64::from(width);
    if sum != pixels {
        return Err(MaskError::CountsSum {
            sum,
            height,
            width,
            pixels,
        });
    }
    Ok((area, accumulator.finish()))
}

/// `rleFrString` into `out` (cleared first). Fails on bytes outside the alphabet and on a
/// string that ends inside a run length, where the C code would read past the terminator.
pub(crate) fn decode_compressed_into(bytes: &[u8], out: &mut Vec<u32>) -> Result<(), MaskError> {
    out.clear();
    for_each_compressed_count(bytes, |count| out.push(count))
}

/// Calls `sink` with each run length of a compressed RLE string.
#[inline]
fn for_each_compressed_count(bytes: &[u8], mut sink: impl FnMut(u32)) -> Result<(), MaskError> {
    // Counts from the fourth on are deltas to the count two places earlier.
    let (mut before_last, mut last) = (0u32, 0u32);
    let mut index = 0usize;
    let mut position = 0usize;
    while position < bytes.len() {
        let start = position;
        let mut value: i64 = 0;
        let mut shift = 0u32;
        loop {
            let Some(&byte) = bytes.get(position) else {
                return Err(MaskError::CompressedTruncated { position });
            };
            if !(48..=111).contains(&byte) {
                return Err(MaskError::CompressedByte { position, byte });
            }
            if shift >= 35 {
                return Err(MaskError::CompressedTooLong { position: start });
            }
            let chunk = i64::from(byte - 48);
            value |= (chunk & 0x1f) << shift;
            position += 1;
            shift += 5;
            if chunk & 0x20 == 0 {
                if chunk & 0x10 != 0 {
                    value |= -1i64 << shift;
                }
                break;
            }
        }
        if index > 2 {
            value += i64::from(before_last);
        }
        // maskApi.c stores `(uint) x`: the low 32 bits.
        let count = value as u32;
        sink(count);
        before_last = last;
        last = count;
        index += 1;
    }
    Ok(())
}

/// Records the y-boundary crossings of consecutive upsampled boundary points (the second
/// stage of `rleFrPoly`), fed one point at a time.
struct Tracer {
    previous: Option<(i32, i32)>,
    boundary: Vec<u32>,
    /// `w - 1`.
    x_max: i64,
    /// `h`.
    h: i64,
    /// `(int) h`.
    h_int: i32,
}

const POLY_SCALE: f64 = 5.0;

impl Tracer {
    #[inline]
    fn visit(&mut self, (u, v): (i32, i32)) {
        if let Some((pu, pv)) = self.previous
            && u != pu
        {
            // maskApi.c: xd = (u' + .5) / 5 - .5 must be an integer in [0, w - 1], and
            // y = ceil(clamp((min(v) + .5) / 5 - .5, 0, h)). Both are (n - 2) / 5 exactly; for
            // 32-bit n the float expression is an integer exactly when n ≡ 2 (mod 5) (other
            // residues sit 0.2 or more from an integer), so integer arithmetic gives the same
            // x and y without the float work.
            let column = i64::from(if u < pu { u } else { u - 1 }) - 2;
            if column >= 0 && column % 5 == 0 && column / 5 <= self.x_max {
                self.record(column / 5, v.min(pv));
            }
        }
        self.previous = Some((u, v));
    }

    /// Records the crossing at pixel column `x` whose upper upsampled row is `row_up`.
    #[inline]
    fn record(&mut self, x: i64, row_up: i32) {
        let row = i64::from(row_up) - 2;
        let y = if row <= 0 {
            0
        } else {
            ((row + 4) / 5).min(self.h)
        };
        self.boundary
            .push((x as i32).wrapping_mul(self.h_int).wrapping_add(y as i32) as u32);
    }
}

/// Smallest `d` in `lo..=hi` where the monotone predicate holds: galloping from `lo` (the
/// answer is usually a step or two away), then bisecting.
fn first_true(lo: i64, hi: i64, predicate: impl Fn(i64) -> bool) -> Option<i64> {
    if lo > hi {
        return None;
    }
    let mut step = 1i64;
    let mut below = lo - 1;
    let mut probe = lo;
    loop {
        if predicate(probe) {
            break;
        }
        if probe == hi {
            return None;
        }
        below = probe;
        probe = (probe + step).min(hi);
        step *= 2;
    }
    let (mut lo, mut hi) = (below + 1, probe);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if predicate(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(lo)
}

/// `rleFrPoly` on raw coordinates; returns the counts.
///
/// maskApi.c lists every point of the 5× upsampled outline and then scans consecutive pairs
/// for column changes. Only pairs whose upsampled column lies in `0..=5·width` can be
/// recorded, and along steep edges only the points where the column changes matter, so this
/// version visits exactly those pairs (found by binary search on the monotone column) and gives
/// the same counts in time proportional to the image instead of the coordinates.
fn polygon_counts(xy: &[f64], height: u32, width: u32) -> Vec<u32> {
    if width == 0 {
        // No pixels; maskApi.c's unsigned `w - 1` would wrap and emit counts past the end.
        return vec![0];
    }
    let k = xy.len() / 2;
    let h = u64::from(height);
    let w = u64::from(width);
    let mut xs_up: Vec<i32> = Vec::with_capacity(k + 1);
    let mut ys_up: Vec<i32> = Vec::with_capacity(k + 1);
    for j in 0..k {
        xs_up.push(c_int(POLY_SCALE * xy[2 * j] + 0.5));
        ys_up.push(c_int(POLY_SCALE * xy[2 * j + 1] + 0.5));
    }
    if k > 0 {
        xs_up.push(xs_up[0]);
        ys_up.push(ys_up[0]);
    }
    let mut tracer = Tracer {
        previous: None,
        boundary: Vec::new(),
        x_max: w as i64 - 1,
        h: h as i64,
        h_int: height as i32,
    };
    // Columns that can be recorded: u in [2, 5w - 2]; keep a margin.
    let (u_lo, u_hi) = (0i64, 5 * w as i64);
    let in_range = |u: i32| (u_lo..=u_hi).contains(&i64::from(u));
    for j in 0..k {
        let (mut xs, mut xe) = (i64::from(xs_up[j]), i64::from(xs_up[j + 1]));
        let (mut ys, mut ye) = (i64::from(ys_up[j]), i64::from(ys_up[j + 1]));
        let dx = (xe - xs).abs();
        let dy = (ys - ye).abs();
        let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
        if flip {
            std::mem::swap(&mut xs, &mut xe);
            std::mem::swap(&mut ys, &mut ye);
        }
        if dx >= dy {
            // One column per point. The pair (last point of the previous edge, first point)
            // goes through the general check; inside the edge consecutive columns differ by
            // one, so a pair is recorded only where the smaller column is 5x + 2 for a pixel
            // column x in 0..w: visit just those pairs.
            let slope = (ye - ys) as f64 / dx as f64;
            let row = |d: i64| {
                let t = if flip { dx - d } else { d };
                c_int(ys as f64 + slope * t as f64 + 0.5)
            };
            let column = |d: i64| (if flip { dx - d } else { d } + xs) as i32;
            tracer.visit((column(0), row(0)));
            if dx > 0 {
                let x_lo = (-(2 - xs).div_euclid(5)).max(0);
                let x_hi = (xe - 3).div_euclid(5).min(w as i64 - 1);
                for x in x_lo..=x_hi {
                    let smaller = 5 * x + 2;
                    let d = if flip {
                        xs + dx - smaller
                    } else {
                        smaller + 1 - xs
                    };
                    tracer.record(x, row(d).min(row(d - 1)));
                }
                tracer.previous = Some((column(dx), row(dx)));
            }
        } else {
            // One row per point; the column changes at most dx times.
            let slope = (xe - xs) as f64 / dy as f64;
            let point = |d: i64| {
                let t = if flip { dy - d } else { d };
                (c_int(xs as f64 + slope * t as f64 + 0.5), (t + ys) as i32)
            };
            let column = |d: i64| point(d).0;
            let increasing = column(dy) >= column(0);
            let mut d = 0i64;
            let first = point(0);
            tracer.visit(first);
            let mut current = first.0;
            while d < dy {
                let next = if in_range(current) {
                    if increasing {
                        first_true(d + 1, dy, |x| column(x) > current)
                    } else {
                        first_true(d + 1, dy, |x| column(x) < current)
                    }
                } else if increasing && i64::from(current) < u_lo {
                    first_true(d + 1, dy, |x| i64::from(column(x)) >= u_lo)
                } else if !increasing && i64::from(current) > u_hi {
                    first_true(d + 1, dy, |x| i64::from(column(x)) <= u_hi)
                } else {
                    None
                };
                let Some(next) = next else {
                    tracer.previous = Some(point(dy));
                    break;
                };
                if next - 1 > d {
                    tracer.previous = Some(point(next - 1));
                }
                let p = point(next);
                tracer.visit(p);
                current = p.0;
                d = next;
            }
        }
    }
    let mut boundary = tracer.boundary;
    boundary.push((h * w) as u32);
    boundary.sort_unstable();
    let mut previous_value = 0u32;
    for value in boundary.iter_mut() {
        let current = *value;
        *value = current.wrapping_sub(previous_value);
        previous_value = current;
    }
    let mut counts = Vec::with_capacity(boundary.len());
    counts.push(boundary[0]);
    let mut j = 1;
    while j < boundary.len() {
        if boundary[j] > 0 {
            counts.push(boundary[j]);
            j += 1;
        } else {
            j += 1;
            if j < boundary.len() {
                let last = counts.len() - 1;
                counts[last] = counts[last].wrapping_add(boundary[j]);
                j += 1;
            }
        }
    }
    counts
}

/// One step of `rleMerge`: `out = a ∪ b` (or `a ∩ b`).
fn merge_pair(a: &[u32], b: &[u32], intersect: bool, out: &mut Vec<u32>) {
    out.clear();
    if a.is_empty() || b.is_empty() {
        // Only a 0-pixel mask has no runs; its union or intersection is itself.
        out.extend_from_slice(a);
        return;
    }
    let (mut ca, mut cb) = (a[0], b[0]);
    let (mut va, mut vb, mut v) = (false, false, false);
    let (mut ia, mut ib) = (1usize, 1usize);
    let mut cc = 0u32;
    loop {
        let c = ca.min(cb);
        cc = cc.wrapping_add(c);
        ca -= c;
        if ca == 0 && ia < a.len() {
            ca = a[ia];
            ia += 1;
            va = !va;
        }
        cb -= c;
        if cb == 0 && ib < b.len() {
            cb = b[ib];
            ib += 1;
            vb = !vb;
        }
        let remaining = u64::from(ca) + u64::from(cb);
        let previous = v;
        v = if intersect { va && vb } else { va || vb };
        if v != previous || remaining == 0 {
            out.push(cc);
            cc = 0;
        }
        if remaining == 0 {
            break;
        }
    }
}

/// Intersection and union of two equal-size RLEs (`rleIou`'s inner walk).
pub(crate) fn intersection_union(dt: &[u32], gt: &[u32]) -> (u32, u32) {
    if dt.is_empty() || gt.is_empty() {
        return (0, 0);
    }
    let (mut ca, mut cb) = (dt[0], gt[0]);
    let (mut va, mut vb) = (false, false);
    let (mut ia, mut ib) = (1usize, 1usize);
    let (mut inter, mut union) = (0u32, 0u32);
    loop {
        let c = ca.min(cb);
        if va || vb {
            union = union.wrapping_add(c);
            if va && vb {
                inter = inter.wrapping_add(c);
            }
        }
        ca -= c;
        if ca == 0 && ia < dt.len() {
            ca = dt[ia];
            ia += 1;
            va = !va;
        }
        cb -= c;
        if cb == 0 && ib < gt.len() {
            cb = gt[ib];
            ib += 1;
            vb = !vb;
        }
        if u64::from(ca) + u64::from(cb) == 0 {
            break;
        }
    }
    (inter, union)
}

/// Box IoU of `bbIou` for one pair of `[x, y, w, h]` boxes; against a crowd region the union
/// is the detection's area.
#[inline]
pub fn bbox_iou(dt: [f64; 4], gt: [f64; 4], gt_is_crowd: bool) -> f64 {
    let gt_area = gt[2] * gt[3];
    let dt_area = dt[2] * dt[3];
    let w = (dt[2] + dt[0]).min(gt[2] + gt[0]) - dt[0].max(gt[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (dt[3] + dt[1]).min(gt[3] + gt[1]) - dt[1].max(gt[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let inter = w * h;
    let union = if gt_is_crowd {
        dt_area
    } else {
        dt_area + gt_area - inter
    };
    inter / union
}

/// Mask IoU of `rleIou` for one pair, given both boxes (from [`Rle::to_bbox`]) and the
/// detection's area. Masks of different sizes give −1, as in pycocotools.
#[inline]
pub(crate) fn rle_iou_with_boxes(
    dt: &Rle,
    dt_box: [f64; 4],
    dt_area: u32,
    gt: &Rle,
    gt_box: [f64; 4],
    gt_is_crowd: bool,
) -> f64 {
    // maskApi.c only walks the runs where the boxes overlap.
    if bbox_iou(dt_box, gt_box, gt_is_crowd) <= 0.0 {
        return 0.0;
    }
    if dt.size() != gt.size() {
        return -1.0;
    }
    let (inter, mut union) = intersection_union(&dt.counts, &gt.counts);
    if inter == 0 {
        union = 1;
    } else if gt_is_crowd {
        union = dt_area;
    }
    f64::from(inter) / f64::from(union)
}

/// Mask IoUs (`maskUtils.iou` on RLEs): `result[d * gts.len() + g]` for detection `d` and
/// ground truth `g`; crowd regions use the detection's area as the union.
///
/// # Panics
/// Never; `gt_is_crowd` shorter than `gts` counts the missing entries as not crowd.
pub fn rle_iou(dts: &[Rle], gts: &[Rle], gt_is_crowd: &[bool]) -> Vec<f64> {
    let dt_boxes: Vec<[f64; 4]> = dts.iter().map(Rle::to_bbox).collect();
    let gt_boxes: Vec<[f64; 4]> = gts.iter().map(Rle::to_bbox).collect();
    let mut out = Vec::with_capacity(dts.len() * gts.len());
    for (dt, &dt_box) in dts.iter().zip(&dt_boxes) {
        let dt_area = dt.area();
        for (g, (gt, &gt_box)) in gts.iter().zip(&gt_boxes).enumerate() {
            let crowd = gt_is_crowd.get(g).copied().unwrap_or(false);
            out.push(rle_iou_with_boxes(dt, dt_box, dt_area, gt, gt_box, crowd));
        }
    }
    out
}

/// Box IoUs (`maskUtils.iou` on boxes): `result[d * gts.len() + g]`.
pub fn bbox_ious(dts: &[[f64; 4]], gts: &[[f64; 4]], gt_is_crowd: &[bool]) -> Vec<f64> {
    let mut out = Vec::with_capacity(dts.len() * gts.len());
    for &dt in dts {
        for (g, &gt) in gts.iter().enumerate() {
            let crowd = gt_is_crowd.get(g).copied().unwrap_or(false);
            out.push(bbox_iou(dt, gt, crowd));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// maskApi.c's `rleFrPoly`, line by line (every upsampled point stored), to check the
    /// clipped version against on polygons far outside the image.
    fn naive_polygon_counts(xy: &[f64], height: u32, width: u32) -> Vec<u32> {
        let k = xy.len() / 2;
        let (h, w) = (u64::from(height), u64::from(width));
        let mut x: Vec<i64> = (0..k)
            .map(|j| i64::from(c_int(5.0 * xy[2 * j] + 0.5)))
            .collect();
        let mut y: Vec<i64> = (0..k)
            .map(|j| i64::from(c_int(5.0 * xy[2 * j + 1] + 0.5)))
            .collect();
        x.push(x[0]);
        y.push(y[0]);
        let (mut u, mut v) = (Vec::new(), Vec::new());
        for j in 0..k {
            let (mut xs, mut xe, mut ys, mut ye) = (x[j], x[j + 1], y[j], y[j + 1]);
            let dx = (xe - xs).abs();
            let dy = (ys - ye).abs();
            let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
            if flip {
                std::mem::swap(&mut xs, &mut xe);
                std::mem::swap(&mut ys, &mut ye);
            }
            let s = if dx >= dy {
                (ye - ys) as f64 / dx as f64
            } else {
                (xe - xs) as f64 / dy as f64
            };
            if dx >= dy {
                for d in 0..=dx {
                    let t = if flip { dx - d } else { d };
                    u.push((t + xs) as i32);
                    v.push(c_int(ys as f64 + s * t as f64 + 0.5));
                }
            } else {
                for d in 0..=dy {
                    let t = if flip { dy - d } else { d };
                    v.push((t + ys) as i32);
                    u.push(c_int(xs as f64 + s * t as f64 + 0.5));
                }
            }
        }
        let mut a = Vec::new();
        for j in 1..u.len() {
            if u[j] != u[j - 1] {
                let xd = f64::from(if u[j] < u[j - 1] { u[j] } else { u[j] - 1 });
                let xd = (xd + 0.5) / 5.0 - 0.5;
                if xd.floor() != xd || xd < 0.0 || xd > (w - 1) as f64 {
                    continue;
                }
                let yd = f64::from(if v[j] < v[j - 1] { v[j] } else { v[j - 1] });
                let mut yd = (yd + 0.5) / 5.0 - 0.5;
                if yd < 0.0 {
                    yd = 0.0;
                } else if yd > h as f64 {
                    yd = h as f64;
                }
                let yd = yd.ceil();
                a.push((xd as i32 * height as i32 + yd as i32) as u32);
            }
        }
        a.push((h * w) as u32);
        a.sort_unstable();
        let mut p = 0;
        for value in a.iter_mut() {
            let t = *value;
            *value -= p;
            p = t;
        }
        let mut b = vec![a[0]];
        let mut j = 1;
        while j < a.len() {
            if a[j] > 0 {
                b.push(a[j]);
                j += 1;
            } else {
                j += 1;
                if j < a.len() {
                    *b.last_mut().unwrap() += a[j];
                    j += 1;
                }
            }
        }
        b
    }

    #[test]
    fn clipped_polygon_tracing_equals_the_line_by_line_port() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        for case in 0..3000 {
            let height = 1 + (next() * 40.0) as u32;
            let width = 1 + (next() * 40.0) as u32;
            let points = 3 + (next() * 8.0) as usize;
            // Mostly around the image, sometimes far outside it, sometimes on the grid.
            let spread = [5.0, 60.0, 400.0][case % 3];
            let mut xy = Vec::new();
            for _ in 0..points {
                for size in [width, height] {
                    let mut value = (next() - 0.3) * spread + f64::from(size) * next();
                    if next() < 0.3 {
                        value = (value * 2.0).round() / 2.0;
                    }
                    xy.push(value);
                }
            }
            assert_eq!(
                polygon_counts(&xy, height, width),
                naive_polygon_counts(&xy, height, width),
                "polygon {xy:?} on {height}x{width}"
            );
        }
    }

    #[test]
    fn huge_polygons_rasterise_quickly() {
        // A box 400 million pixels wide: maskApi.c would walk 2e9 points per edge.
        let rle = Rle::from_bbox([-2e8, -2e8, 4e8, 4e8], 30, 20);
        assert_eq!(rle.area(), 600);
        // Beyond the int range the upsampled coordinates saturate to INT_MIN on x86-64, as in
        // maskApi.c's cast: the polygon collapses to a point and the mask is empty.
        let rle = Rle::from_bbox([-1e9, -1e9, 2e9, 2e9], 30, 20);
        assert_eq!(rle.area(), 0);
    }

    #[test]
    fn encode_decode_round_trip() {
        let mask = [0u8, 1, 1, 0, 0, 1];
        let rle = Rle::encode(&mask, 3, 2).unwrap();
        assert_eq!(rle.counts(), &[1, 2, 2, 1]);
        assert_eq!(rle.decode(), mask);
        assert_eq!(rle.area(), 3);
    }

    #[test]
    fn compressed_round_trip_with_negative_deltas() {
        let rle = Rle::new(100, 100, vec![5000, 3, 1000, 1, 3996]).unwrap();
        let text = rle.to_compressed();
        assert_eq!(Rle::from_compressed(&text, 100, 100).unwrap(), rle);
    }

    #[test]
    fn counts_must_cover_the_image() {
        assert!(matches!(
            Rle::new(2, 2, vec![1, 2]),
            Err(MaskError::CountsSum { sum: 3, .. })
        ));
    }

    #[test]
    fn truncated_compressed_string_is_an_error() {
        // 'P' = 48 + 0x20: a continuation with nothing after it.
        assert!(matches!(
            Rle::from_compressed("P", 1, 1),
            Err(MaskError::CompressedTruncated { .. })
        ));
        assert!(matches!(
            Rle::from_compressed("1 ", 1, 1),
            Err(MaskError::CompressedByte { byte: b' ', .. })
        ));
    }

    #[test]
    fn crowd_union_is_detection_area() {
        let iou = bbox_iou([0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 100.0, 100.0], true);
        assert_eq!(iou, 0.5);
    }
}
