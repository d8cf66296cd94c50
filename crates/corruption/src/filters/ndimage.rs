//! Ports of the `scipy.ndimage` 1.13 routines the corruptions call: `correlate1d`,
//! `gaussian_filter` (as scikit-image 0.20's `gaussian` calls it), `zoom` with `order=1`, and
//! `map_coordinates` with `order=1`, plus the two `clipped_zoom` helpers built on `zoom`.
//!
//! scipy works on lines of doubles: every 1-D pass reads the input line into a double buffer
//! (extended at both ends by the boundary mode), computes in double and stores the result in
//! the output's dtype, so a float32 image is rounded to float32 between the row pass and the
//! column pass. The ports keep the per-element operation order of scipy's C loops, so the
//! results are equal bit for bit; the loops run over whole rows instead of scipy's line
//! buffers, which changes nothing per element and lets the compiler vectorise them.
//!
//! Arrays are [`Array3`] in H×W×C order. A 2-D plane is an `Array3` with one channel. The
//! channel axis is never filtered or interpolated across: the 3-channel cases correspond to
//! scikit-image's `channel_axis=-1` and to scipy's zoom factor 1 on the last axis.

use super::Real;
use crate::array::Array3;

/// How values beyond the edge of a line are made up (`scipy.ndimage` `mode`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    /// `d c b a | a b c d | d c b a` (half-sample symmetric).
    Reflect,
    /// `d c b | a b c d | c b a` (whole-sample symmetric).
    Mirror,
    /// `a a a | a b c d | d d d`.
    Nearest,
    /// `a b c d | a b c d | a b c d` (no corruption uses it; ported and tested with the rest).
    #[allow(dead_code)]
    Wrap,
    /// `k k k | a b c d | k k k` with the given `cval`.
    Constant(f64),
}

/// The index that `scipy.ndimage`'s line extension (`NI_ExtendLine`) reads for position `p`
/// of a line of `n ≥ 1` values, or `None` where the constant is used.
pub(crate) fn extend_index(p: isize, n: usize, mode: Mode) -> Option<usize> {
    let len = n as isize;
    if (0..len).contains(&p) {
        return Some(p as usize);
    }
    let index = match mode {
        Mode::Nearest => p.clamp(0, len - 1),
        Mode::Wrap => p.rem_euclid(len),
        Mode::Reflect => {
            let m = p.rem_euclid(2 * len);
            if m < len { m } else { 2 * len - 1 - m }
        }
        Mode::Mirror => {
            if len == 1 {
                0
            } else {
                let m = p.rem_euclid(2 * len - 2);
                if m < len { m } else { 2 * len - 2 - m }
            }
        }
        Mode::Constant(_) => return None,
    };
    Some(index as usize)
}

/// The axis a 1-D filter runs along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // See correlate1d.
pub(crate) enum Axis {
    /// Down the columns (numpy axis 0).
    Rows,
    /// Along the rows (numpy axis 1).
    Cols,
}

/// How `NI_Correlate1D` evaluates a filter: it tests the weights for symmetry (to within
/// `DBL_EPSILON`) and then pairs the taps, which changes the rounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Symmetry {
    Symmetric,
    Antisymmetric,
    General,
}

fn symmetry_of(weights: &[f64]) -> Symmetry {
    let size = weights.len();
    if size.is_multiple_of(2) {
        return Symmetry::General;
    }
    let center = size / 2;
    if (1..=center).all(|i| (weights[center + i] - weights[center - i]).abs() <= f64::EPSILON) {
        return Symmetry::Symmetric;
    }
    if (1..=center).all(|i| (weights[center + i] + weights[center - i]).abs() <= f64::EPSILON) {
        return Symmetry::Antisymmetric;
    }
    Symmetry::General
}

/// Combines `taps.len()` shifted views of the same lines exactly as `NI_Correlate1D` does
/// for one output element. `taps[t]` is the slice whose element `k` is the input at offset
/// `t − size1` from output element `k`.
fn correlate_taps(taps: &[&[f64]], weights: &[f64], symmetry: Symmetry, out: &mut [f64]) {
    let size = weights.len();
    let size1 = size / 2;
    let size2 = size - size1 - 1;
    match symmetry {
        Symmetry::Symmetric | Symmetry::Antisymmetric => {
            let center = taps[size1];
            let w0 = weights[size1];
            for (o, &c) in out.iter_mut().zip(center) {
                *o = c * w0;
            }
            // jj = −size1 … −1: (iline[jj] ± iline[−jj]) · fw[jj].
            for j in (1..=size1).rev() {
                let left = taps[size1 - j];
                let right = taps[size1 + j];
                let w = weights[size1 - j];
                if symmetry == Symmetry::Symmetric {
                    for ((o, &a), &b) in out.iter_mut().zip(left).zip(right) {
                        *o += (a + b) * w;
                    }
                } else {
                    for ((o, &a), &b) in out.iter_mut().zip(left).zip(right) {
                        *o += (a - b) * w;
                    }
                }
            }
        }
        Symmetry::General => {
            // oline = iline[size2]·fw[size2], then jj = −size1 … size2 − 1.
            let last = taps[size1 + size2];
            let w_last = weights[size1 + size2];
            for (o, &c) in out.iter_mut().zip(last) {
                *o = c * w_last;
            }
            for t in 0..size1 + size2 {
                let w = weights[t];
                for (o, &a) in out.iter_mut().zip(taps[t]) {
                    *o += a * w;
                }
            }
        }
    }
}

/// `scipy.ndimage.correlate1d(input, weights, axis, mode=mode, origin=0)` with the output in
/// the input's dtype. Channels are independent lines.
///
/// The general form (any weights, either axis, whole arrays), tested against scipy; the
/// corruptions use its row-streaming Gaussian specialisation [`gaussian_filter_rows`].
#[allow(dead_code)]
pub(crate) fn correlate1d<T: Real>(
    input: &Array3<T>,
    weights: &[f64],
    axis: Axis,
    mode: Mode,
) -> Array3<T> {
    let (height, width, channels) = (input.height, input.width, input.channels);
    let mut output = Array3::filled(height, width, channels, T::from_f64(0.0));
    if input.data.is_empty() || weights.is_empty() {
        output.data.copy_from_slice(&input.data);
        return output;
    }
    let symmetry = symmetry_of(weights);
    let size1 = weights.len() / 2;
    let size2 = weights.len() - size1 - 1;
    let cval = match mode {
        Mode::Constant(value) => value,
        _ => 0.0,
    };
    let row_len = width * channels;
    match axis {
        Axis::Rows => {
            // Every source row as doubles once; the taps of output row r are rows r−size1 …
            // r+size2, extended by the mode.
            let rows: Vec<f64> = input.data.iter().map(|v| v.to_f64()).collect();
            let constant_row = vec![cval; row_len];
            let mut acc = vec![0.0; row_len];
            let mut taps: Vec<&[f64]> = Vec::with_capacity(weights.len());
            for r in 0..height {
                taps.clear();
                for t in 0..weights.len() {
                    let p = r as isize + t as isize - size1 as isize;
                    taps.push(match extend_index(p, height, mode) {
                        Some(i) => &rows[i * row_len..(i + 1) * row_len],
                        None => &constant_row,
                    });
                }
                correlate_taps(&taps, weights, symmetry, &mut acc);
                for (o, &v) in output.data[r * row_len..(r + 1) * row_len]
                    .iter_mut()
                    .zip(&acc)
                {
                    *o = T::from_f64(v);
                }
            }
        }
        Axis::Cols => {
            // One extended row (all channels interleaved); tap t of element k is
            // extended[k + t·channels].
            let ext_len = (width + size1 + size2) * channels;
            let mut extended = vec![0.0; ext_len];
            let mut acc = vec![0.0; row_len];
            for r in 0..height {
                let row = &input.data[r * row_len..(r + 1) * row_len];
                for e in 0..width + size1 + size2 {
                    let p = e as isize - size1 as isize;
                    let dst = &mut extended[e * channels..(e + 1) * channels];
                    match extend_index(p, width, mode) {
                        Some(c) => {
                            for (d, s) in dst.iter_mut().zip(&row[c * channels..(c + 1) * channels])
                            {
                                *d = s.to_f64();
                            }
                        }
                        None => dst.fill(cval),
                    }
                }
                let taps: Vec<&[f64]> = (0..weights.len())
                    .map(|t| &extended[t * channels..t * channels + row_len])
                    .collect();
                correlate_taps(&taps, weights, symmetry, &mut acc);
                for (o, &v) in output.data[r * row_len..(r + 1) * row_len]
                    .iter_mut()
                    .zip(&acc)
                {
                    *o = T::from_f64(v);
                }
            }
        }
    }
    output
}

/// scipy's `_gaussian_kernel1d(sigma, 0, radius)`: `exp(−0.5/σ² · x²)` for
/// `x = −radius … radius` with numpy's `exp`, divided by numpy's pairwise sum.
pub(crate) fn gaussian_kernel1d(sigma: f64, radius: usize) -> Vec<f64> {
    let sigma2 = sigma * sigma;
    let factor = -0.5 / sigma2;
    let r = radius as i64;
    let phi: Vec<f64> = (-r..=r)
        .map(|x| super::npmath::exp(factor * (x * x) as f64))
        .collect();
    let sum = super::npmath::pairwise_sum(&phi);
    phi.iter().map(|&v| v / sum).collect()
}

/// The kernel radius `int(truncate · σ + 0.5)` of `gaussian_filter1d`.
pub(crate) fn gaussian_radius(sigma: f64, truncate: f64) -> usize {
    let radius = truncate * sigma + 0.5;
    if radius > 0.0 { radius as usize } else { 0 }
}

/// `skimage.filters.gaussian(image, sigma, mode=mode, truncate=truncate)` on a float image,
/// i.e. `scipy.ndimage.gaussian_filter` with `sigma = (sigma_rows, sigma_cols[, 0])`: a row
/// pass then a column pass, each skipped when its σ ≤ 1e-15, each rounded to `T` (scikit-image
/// keeps float32 input float32). `mode` is scikit-image's default `Mode::Nearest` unless the
/// caller says otherwise; `truncate` is 4.0 by default (elastic uses 3).
///
/// For a 3-channel image this is `channel_axis=-1`; for a plane (one channel) it is the 2-D
/// call. The caller converts integer images first (`x / 255.` in float64).
pub(crate) fn gaussian_filter<T: Real>(
    input: &Array3<T>,
    sigma: [f64; 2],
    mode: Mode,
    truncate: f64,
) -> Array3<T> {
    let source = T::widen(&input.data);
    let row_len = input.width * input.channels;
    let mut data = Vec::with_capacity(input.data.len());
    gaussian_filter_rows(
        &source,
        [input.height, input.width, input.channels],
        sigma,
        mode,
        truncate,
        |_, row| data.extend(row.iter().map(|&v| T::from_f64(v))),
        T::round_trip,
    );
    debug_assert_eq!(data.len(), input.height * row_len);
    Array3 {
        height: input.height,
        width: input.width,
        channels: input.channels,
        data,
    }
}

/// The separable Gaussian of [`gaussian_filter`], streamed one output row at a time: for each
/// row `r` the row pass (down the columns) gives one intermediate row, which is rounded with
/// `round` (to the output dtype, as scipy stores its first pass) and then filtered along the
/// row; `sink(r, values)` receives the finished row as doubles, before the final rounding to
/// the output dtype (the caller does that, or fuses it with its own conversion).
///
/// Per element the arithmetic is scipy's; only the traversal differs, which keeps the
/// working set to a few rows.
pub(crate) fn gaussian_filter_rows(
    source: &[f64],
    shape: [usize; 3],
    sigma: [f64; 2],
    mode: Mode,
    truncate: f64,
    mut sink: impl FnMut(usize, &[f64]),
    round: fn(f64) -> f64,
) {
    let [height, width, channels] = shape;
    let row_len = width * channels;
    debug_assert_eq!(source.len(), height * row_len);
    // scipy skips axes with σ ≤ 1e-15 (NaN is skipped too).
    let kernel = |s: f64| -> Option<Vec<f64>> {
        if s.is_nan() || s <= 1e-15 {
            return None;
        }
        // gaussian_filter1d reverses the kernel (`[::-1]`); kept for fidelity.
        let mut w = gaussian_kernel1d(s, gaussian_radius(s, truncate));
        w.reverse();
        Some(w)
    };
    let row_weights = kernel(sigma[0]);
    let col_weights = kernel(sigma[1]);
    let cval = match mode {
        Mode::Constant(value) => value,
        _ => 0.0,
    };
    let constant_row = vec![cval; row_len];
    let mut vertical = vec![0.0; row_len];
    let mut horizontal = vec![0.0; row_len];
    let (col_size1, col_size2) = col_weights
        .as_ref()
        .map_or((0, 0), |w| (w.len() / 2, w.len() - w.len() / 2 - 1));
    let mut extended = vec![0.0; (width + col_size1 + col_size2) * channels];
    let mut taps: Vec<&[f64]> = Vec::new();
    for r in 0..height {
        let source_row = &source[r * row_len..(r + 1) * row_len];
        let after_rows: &[f64] = match &row_weights {
            Some(weights) => {
                let size1 = weights.len() / 2;
                taps.clear();
                for t in 0..weights.len() {
                    let p = r as isize + t as isize - size1 as isize;
                    taps.push(match extend_index(p, height, mode) {
                        Some(i) => &source[i * row_len..(i + 1) * row_len],
                        None => &constant_row,
                    });
                }
                correlate_taps(&taps, weights, symmetry_of(weights), &mut vertical);
                for v in vertical.iter_mut() {
                    *v = round(*v);
                }
                &vertical
            }
            None => source_row,
        };
        match &col_weights {
            Some(weights) => {
                for e in 0..width + col_size1 + col_size2 {
                    let p = e as isize - col_size1 as isize;
                    let dst = &mut extended[e * channels..(e + 1) * channels];
                    match extend_index(p, width, mode) {
                        Some(c) => {
                            dst.copy_from_slice(&after_rows[c * channels..(c + 1) * channels])
                        }
                        None => dst.fill(cval),
                    }
                }
                let taps: Vec<&[f64]> = (0..weights.len())
                    .map(|t| &extended[t * channels..t * channels + row_len])
                    .collect();
                correlate_taps(&taps, weights, symmetry_of(weights), &mut horizontal);
                sink(r, &horizontal);
            }
            None => sink(r, after_rows),
        }
    }
}

/// `map_coordinate` of `ni_interpolation.c`: maps a coordinate outside `[0, len − 1]` back
/// inside according to the mode; `-1` means "use the constant".
fn map_coordinate(input: f64, len: usize, mode: Mode) -> f64 {
    let len_i = len as i64;
    let mut x = input;
    if x < 0.0 {
        match mode {
            Mode::Mirror => {
                if len <= 1 {
                    x = 0.0;
                } else {
                    let sz2 = 2 * len_i - 2;
                    x = (sz2 * ((-x / sz2 as f64) as i64)) as f64 + x;
                    x = if x <= (1 - len_i) as f64 {
                        x + sz2 as f64
                    } else {
                        -x
                    };
                }
            }
            Mode::Reflect => {
                if len <= 1 {
                    x = 0.0;
                } else {
                    let sz2 = 2 * len_i;
                    if x < -(sz2 as f64) {
                        x = (sz2 * ((-x / sz2 as f64) as i64)) as f64 + x;
                    }
                    x = if x < -(len_i as f64) {
                        x + sz2 as f64
                    } else {
                        (if x > -1e-15 { 1e-15 } else { -x }) - 1.0
                    };
                }
            }
            Mode::Wrap => {
                if len <= 1 {
                    x = 0.0;
                } else {
                    let sz = len_i - 1;
                    x += (sz * ((-x / sz as f64) as i64 + 1)) as f64;
                }
            }
            Mode::Nearest => x = 0.0,
            Mode::Constant(_) => x = -1.0,
        }
    } else if x > (len_i - 1) as f64 {
        match mode {
            Mode::Mirror => {
                if len <= 1 {
                    x = 0.0;
                } else {
                    let sz2 = 2 * len_i - 2;
                    x -= (sz2 * ((x / sz2 as f64) as i64)) as f64;
                    if x >= len_i as f64 {
                        x = sz2 as f64 - x;
                    }
                }
            }
            Mode::Reflect => {
                if len <= 1 {
                    x = 0.0;
                } else {
                    let sz2 = 2 * len_i;
                    x -= (sz2 * ((x / sz2 as f64) as i64)) as f64;
                    if x >= len_i as f64 {
                        x = sz2 as f64 - x - 1.0;
                    }
                }
            }
            Mode::Wrap => {
                if len <= 1 {
                    x = 0.0;
                } else {
                    let sz = len_i - 1;
                    x -= (sz * ((x / sz as f64) as i64)) as f64;
                }
            }
            Mode::Nearest => x = (len_i - 1) as f64,
            Mode::Constant(_) => x = -1.0,
        }
    }
    x
}

/// The boundary mode scipy uses for the taps of a spline at the edge: constant and wrap fall
/// back to mirror.
fn spline_mode(mode: Mode) -> Mode {
    match mode {
        Mode::Constant(_) | Mode::Wrap => Mode::Mirror,
        other => other,
    }
}

/// The two taps and weights of order-1 interpolation at one coordinate along one axis, or
/// `None` where scipy uses the constant.
#[derive(Debug, Clone, Copy)]
struct LinearTaps {
    index: [usize; 2],
    weight: [f64; 2],
}

fn linear_taps(coordinate: f64, len: usize, mode: Mode) -> Option<LinearTaps> {
    // Inside [0, len − 1) no mode applies and both taps are in range: the common case.
    if coordinate >= 0.0 && coordinate < (len as f64 - 1.0) {
        let floor = super::npmath::floor(coordinate);
        let start = floor as usize;
        let w0 = 1.0 - (coordinate - floor);
        return Some(LinearTaps {
            index: [start, start + 1],
            weight: [w0, 1.0 - w0],
        });
    }
    let cc = if mode == Mode::Nearest {
        coordinate
    } else {
        map_coordinate(coordinate, len, mode)
    };
    if !(cc > -1.0 || mode == Mode::Nearest) {
        return None;
    }
    let floor = super::npmath::floor(cc);
    let start = floor as i64;
    let edge = start < 0 || start + 1 >= len as i64;
    let tap = |k: i64| -> usize {
        let idx = start + k;
        if edge {
            map_coordinate(idx as f64, len, spline_mode(mode)) as i64 as usize
        } else {
            idx as usize
        }
    };
    // get_spline_interpolation_weights, order 1: w0 = 1 − (x − floor x), w1 = 1 − w0.
    let frac = cc - floor;
    let w0 = 1.0 - frac;
    let w1 = 1.0 - w0;
    Some(LinearTaps {
        index: [tap(0), tap(1)],
        weight: [w0, w1],
    })
}

/// The order-1 taps of `scipy.ndimage.zoom` (mode `constant`) for output samples
/// `first .. first + count` along an axis of `len` input samples starting at `offset` in the
/// array actually indexed (a crop of it is what the reference zooms); `None` is the constant 0.
fn zoom_axis_taps(
    len: usize,
    offset: usize,
    out_len: usize,
    first: usize,
    count: usize,
) -> Vec<Option<LinearTaps>> {
    let ratio = zoom_ratio(len, out_len);
    (first..first + count)
        .map(|k| {
            linear_taps(k as f64 * ratio, len, Mode::Constant(0.0)).map(|mut taps| {
                taps.index[0] += offset;
                taps.index[1] += offset;
                taps
            })
        })
        .collect()
}

/// Evaluates scipy's order-1 interpolation at every (row taps × column taps) point of `input`,
/// calling `emit(r, c, channel, value)` in row-major order (with 0 where scipy uses the
/// constant). Per value the sum is scipy's: `t += (v·w_row)·w_col` over the footprint in
/// order, the channel axis contributing weight 1 and exact zeros.
fn interpolate_grid<T: Real>(
    input: &Array3<T>,
    rows: &[Option<LinearTaps>],
    cols: &[Option<LinearTaps>],
    mut emit: impl FnMut(usize, usize, usize, f64),
) {
    let channels = input.channels;
    let stride = input.width * channels;
    let data = &input.data;
    for (r, rt) in rows.iter().enumerate() {
        let Some(rt) = rt else {
            for c in 0..cols.len() {
                for ch in 0..channels {
                    emit(r, c, ch, 0.0);
                }
            }
            continue;
        };
        // The two source rows, sliced once per output row (fewer bounds checks per tap).
        let upper = &data[rt.index[0] * stride..][..stride];
        let lower = &data[rt.index[1] * stride..][..stride];
        let (wy0, wy1) = (rt.weight[0], rt.weight[1]);
        for (c, ct) in cols.iter().enumerate() {
            let Some(ct) = ct else {
                for ch in 0..channels {
                    emit(r, c, ch, 0.0);
                }
                continue;
            };
            let (c0, c1) = (ct.index[0] * channels, ct.index[1] * channels);
            let corners = [
                &upper[c0..c0 + channels],
                &upper[c1..c1 + channels],
                &lower[c0..c0 + channels],
                &lower[c1..c1 + channels],
            ];
            let weights = [wy0, wy1, ct.weight[0], ct.weight[1]];
            for ch in 0..channels {
                emit(r, c, ch, bilinear_scipy_order(corners, weights, ch));
            }
        }
    }
}

/// `scipy.ndimage.zoom(input, (zoom, zoom, 1), order=1)` (mode `constant`, `cval=0`,
/// `grid_mode=False`): output size `round(n·zoom)` (Python's `round`, ties to even), corner
/// aligned (`x_in = x_out · (n_in − 1)/(n_out − 1)`); an output coordinate that rounding puts
/// beyond the last input sample is the constant 0, as in scipy.
///
/// Only the window `rows × cols` starting at output (`row0`, `col0`) is computed (callers crop
/// the zoomed image right away); pass the full output size to get the whole array.
pub(crate) fn zoom_order1_window<T: Real>(
    input: &Array3<T>,
    zoom: f64,
    window: ZoomWindow,
) -> Array3<T> {
    let region = CropRegion {
        top: 0,
        left: 0,
        rows: input.height,
        cols: input.width,
    };
    zoom_region(input, region, zoom, window)
}

/// A rectangle of an array.
#[derive(Debug, Clone, Copy)]
struct CropRegion {
    top: usize,
    left: usize,
    rows: usize,
    cols: usize,
}

/// `zoom(input[region], (zoom, zoom, 1), order=1)[window]` without copying the crop.
fn zoom_region<T: Real>(
    input: &Array3<T>,
    region: CropRegion,
    zoom: f64,
    window: ZoomWindow,
) -> Array3<T> {
    let (rows, cols, row_taps, col_taps) = zoom_plan(region, zoom, window);
    let channels = input.channels;
    let mut output = Array3::filled(rows, cols, channels, T::from_f64(0.0));
    interpolate_grid(input, &row_taps, &col_taps, |r, c, ch, v| {
        output.data[(r * cols + c) * channels + ch] = T::from_f64(v);
    });
    output
}

type AxisTaps = Vec<Option<LinearTaps>>;

/// The window actually covered (clipped to the zoomed size) and its taps.
fn zoom_plan(
    region: CropRegion,
    zoom: f64,
    window: ZoomWindow,
) -> (usize, usize, AxisTaps, AxisTaps) {
    let (out_h, out_w) = zoom_output_size(region.rows, region.cols, zoom);
    let rows = window.rows.min(out_h.saturating_sub(window.row0));
    let cols = window.cols.min(out_w.saturating_sub(window.col0));
    let row_taps = zoom_axis_taps(region.rows, region.top, out_h, window.row0, rows);
    let col_taps = zoom_axis_taps(region.cols, region.left, out_w, window.col0, cols);
    (rows, cols, row_taps, col_taps)
}

/// Which part of a zoomed image to compute.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ZoomWindow {
    pub row0: usize,
    pub col0: usize,
    pub rows: usize,
    pub cols: usize,
}

/// The output size of `scipy.ndimage.zoom` for factor `zoom` on both spatial axes.
pub(crate) fn zoom_output_size(height: usize, width: usize, zoom: f64) -> (usize, usize) {
    let size = |n: usize| {
        let s = super::npmath::round_half_even(n as f64 * zoom);
        if s > 0.0 { s as usize } else { 0 }
    };
    (size(height), size(width))
}

/// `(n_in − 1)/(n_out − 1)`, or 1 where the output has a single sample.
fn zoom_ratio(n_in: usize, n_out: usize) -> f64 {
    if n_out > 1 {
        (n_in as f64 - 1.0) / (n_out as f64 - 1.0)
    } else {
        1.0
    }
}

/// `scipy.ndimage.zoom(input, (zoom, zoom, 1), order=1)`, the whole output.
pub(crate) fn zoom_order1<T: Real>(input: &Array3<T>, zoom: f64) -> Array3<T> {
    let (out_h, out_w) = zoom_output_size(input.height, input.width, zoom);
    zoom_order1_window(
        input,
        zoom,
        ZoomWindow {
            row0: 0,
            col0: 0,
            rows: out_h,
            cols: out_w,
        },
    )
}

/// Which reference's `clipped_zoom` to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClippedZoom {
    /// imagecorruptions: crop `ceil(n/z)` per axis at `(n − ch)//2`, zoom, and keep the
    /// top-left `H×W` (its callers slice `[:H, :W]`).
    ImageCorruptions,
    /// The ImageNet-C / CIFAR-10-C code: the same crop, then trim the zoomed image centrally
    /// (`trim = (zoomed − n)//2`). The original uses the height for both axes (its images are
    /// square); this port uses each axis's own size, which is the same on square images.
    ImageNetC,
}

/// `clipped_zoom(img, zoom)` followed by the callers' crop to the input size: the zoomed
/// centre of `img` as an array of at most `H×W` (smaller only if the zoomed crop is smaller,
/// which the references handle by adding into the top-left corner).
pub(crate) fn clipped_zoom<T: Real>(img: &Array3<T>, zoom: f64, variant: ClippedZoom) -> Array3<T> {
    let (region, window) = clipped_zoom_geometry(img.height, img.width, zoom, variant);
    zoom_region(img, region, zoom, window)
}

/// `sum[:h, :w] += clipped_zoom(img, zoom)` in float32, the accumulation of zoom_blur,
/// without materialising the zoomed layer.
pub(crate) fn accumulate_clipped_zoom(
    sum: &mut Array3<f32>,
    img: &Array3<f32>,
    zoom: f64,
    variant: ClippedZoom,
) {
    let (region, window) = clipped_zoom_geometry(img.height, img.width, zoom, variant);
    let (_, _, row_taps, col_taps) = zoom_plan(region, zoom, window);
    let (width, channels) = (sum.width, sum.channels);
    interpolate_grid(img, &row_taps, &col_taps, |r, c, ch, v| {
        sum.data[(r * width + c) * channels + ch] += v as f32;
    });
}

/// The crop that `clipped_zoom` zooms and the window of the zoomed crop its callers keep.
fn clipped_zoom_geometry(
    height: usize,
    width: usize,
    zoom: f64,
    variant: ClippedZoom,
) -> (CropRegion, ZoomWindow) {
    let crop_size = |n: usize| -> usize {
        let c = (n as f64 / zoom).ceil();
        (if c > 0.0 { c as usize } else { 0 }).min(n)
    };
    let (ch_h, ch_w) = (crop_size(height), crop_size(width));
    let region = CropRegion {
        top: (height - ch_h) / 2,
        left: (width - ch_w) / 2,
        rows: ch_h,
        cols: ch_w,
    };
    let (zh, zw) = zoom_output_size(ch_h, ch_w, zoom);
    let (row0, col0) = match variant {
        ClippedZoom::ImageCorruptions => (0, 0),
        ClippedZoom::ImageNetC => (zh.saturating_sub(height) / 2, zw.saturating_sub(width) / 2),
    };
    let window = ZoomWindow {
        row0,
        col0,
        rows: height,
        cols: width,
    };
    (region, window)
}

/// `img[top:top+rows, left:left+cols]` as a new array.
pub(crate) fn crop<T: Copy>(
    img: &Array3<T>,
    top: usize,
    left: usize,
    rows: usize,
    cols: usize,
) -> Array3<T> {
    let channels = img.channels;
    let mut data = Vec::with_capacity(rows * cols * channels);
    for r in top..top + rows {
        let start = img.offset(r, left, 0);
        data.extend_from_slice(&img.data[start..start + cols * channels]);
    }
    Array3 {
        height: rows,
        width: cols,
        channels,
        data,
    }
}

/// Channel `ch` of a bilinear sample from its four corner pixels (row 0 col 0, row 0 col 1,
/// row 1 col 0, row 1 col 1) and weights `[row 0, row 1, col 0, col 1]`, summed in scipy's
/// footprint order, term by term: `t += (v·w_row)·w_col` (the results are compared bit for
/// bit with scipy).
#[inline(always)]
fn bilinear_scipy_order<T: Real>(corners: [&[T]; 4], weights: [f64; 4], ch: usize) -> f64 {
    let [wy0, wy1, wx0, wx1] = weights;
    let mut t = 0.0;
    t += corners[0][ch].to_f64() * wy0 * wx0;
    t += corners[1][ch].to_f64() * wy0 * wx1;
    t += corners[2][ch].to_f64() * wy1 * wx0;
    t += corners[3][ch].to_f64() * wy1 * wx1;
    t
}

/// `scipy.ndimage.map_coordinates(image, (rows, cols, channel), order=1, mode=mode)` for an
/// H×W×C image sampled at one (row, column) per output pixel and every channel at its own
/// index (the indexing of the elastic transform). Output pixel `p` (row-major) samples
/// `coordinate(p)`, so callers need not materialise the coordinate arrays; the output has
/// the input's shape and dtype.
pub(crate) fn map_coordinates_order1_with<T: Real>(
    image: &Array3<T>,
    mode: Mode,
    coordinate: impl Fn(usize) -> (f64, f64),
) -> Array3<T> {
    let (height, width, channels) = (image.height, image.width, image.channels);
    let cval = match mode {
        Mode::Constant(value) => value,
        _ => 0.0,
    };
    let stride = width * channels;
    let data = &image.data;
    let mut out = Vec::with_capacity(data.len());
    for p in 0..height * width {
        let (row, col) = coordinate(p);
        match linear_taps(row, height, mode).zip(linear_taps(col, width, mode)) {
            Some((rt, ct)) => {
                let (r0, r1) = (rt.index[0] * stride, rt.index[1] * stride);
                let (c0, c1) = (ct.index[0] * channels, ct.index[1] * channels);
                let corners = [
                    &data[r0 + c0..][..channels],
                    &data[r0 + c1..][..channels],
                    &data[r1 + c0..][..channels],
                    &data[r1 + c1..][..channels],
                ];
                let weights = [rt.weight[0], rt.weight[1], ct.weight[0], ct.weight[1]];
                for ch in 0..channels {
                    out.push(T::from_f64(bilinear_scipy_order(corners, weights, ch)));
                }
            }
            None => out.extend(std::iter::repeat_n(T::from_f64(cval), channels)),
        }
    }
    Array3 {
        height,
        width,
        channels,
        data: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_follows_ni_extend_line() {
        // scipy: reflect "dcba|abcd|dcba", mirror "dcb|abcd|cba", wrap "abcd|abcd|abcd".
        let n = 4;
        let read =
            |mode| -> Vec<Option<usize>> { (-6..10).map(|p| extend_index(p, n, mode)).collect() };
        let some = |v: &[usize]| v.iter().map(|&i| Some(i)).collect::<Vec<_>>();
        assert_eq!(
            read(Mode::Reflect),
            some(&[2, 3, 3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0, 0, 1])
        );
        assert_eq!(
            read(Mode::Mirror),
            some(&[0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2, 3])
        );
        assert_eq!(
            read(Mode::Wrap),
            some(&[2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
        );
        assert_eq!(
            read(Mode::Nearest),
            some(&[0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 3, 3, 3, 3, 3, 3])
        );
        assert_eq!(extend_index(-1, 4, Mode::Constant(0.5)), None);
        assert_eq!(extend_index(-3, 1, Mode::Mirror), Some(0));
        assert_eq!(extend_index(5, 1, Mode::Reflect), Some(0));
    }

    #[test]
    fn gaussian_kernel_is_normalised_and_symmetric() {
        let k = gaussian_kernel1d(1.5, gaussian_radius(1.5, 4.0));
        assert_eq!(k.len(), 13);
        for i in 0..6 {
            assert_eq!(k[i], k[12 - i]);
        }
        assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(gaussian_radius(0.05, 4.0), 0);
        assert_eq!(gaussian_radius(2.24, 3.0), 7);
    }

    #[test]
    fn zero_sigma_returns_the_input() {
        let a = Array3 {
            height: 2,
            width: 2,
            channels: 1,
            data: vec![0.1f64, 0.2, 0.3, 0.4],
        };
        assert_eq!(gaussian_filter(&a, [0.0, 0.0], Mode::Nearest, 4.0), a);
    }

    #[test]
    fn zoom_sizes_round_half_to_even() {
        assert_eq!(zoom_output_size(5, 7, 1.1), (6, 8));
        // 2.5 → 2 and 3.5 → 4 under Python's round.
        assert_eq!(zoom_output_size(5, 7, 0.5), (2, 4));
    }

    #[test]
    fn map_coordinate_reflects_like_scipy() {
        assert_eq!(map_coordinate(-0.25, 4, Mode::Reflect), -0.75);
        assert_eq!(map_coordinate(4.5, 4, Mode::Reflect), 2.5);
        assert_eq!(map_coordinate(-3.0, 4, Mode::Mirror), 3.0);
        assert_eq!(map_coordinate(7.0, 4, Mode::Constant(0.0)), -1.0);
    }
}
