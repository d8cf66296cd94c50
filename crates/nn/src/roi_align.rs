//! RoIAlign (He et al. 2017, "Mask R-CNN") with a backward to the features, equal to
//! `torchvision.ops.roi_align`, and the multi-level pooler of FPN detectors.
//!
//! Semantics follow torchvision's CPU kernel exactly: a RoI `[batch, x1, y1, x2, y2]` in image
//! coordinates is scaled by `spatial_scale` and, when `aligned`, shifted by half a pixel; each
//! of the `output_size` bins averages a `grid_h × grid_w` lattice of bilinear samples
//! (`sampling_ratio`, or `ceil(roi_size / output_size)` when it is ≤ 0); a sample further than
//! one pixel outside the map contributes zero but still counts in the average; without
//! `aligned`, RoIs are at least one pixel wide. Arithmetic runs in the features' dtype.
//!
//! Bilinear weights factor into a row weight times a column weight, so each RoI is computed as
//! "mix the rows it touches, then the columns", which is also what makes the backward cheap.
//!
//! Devices: on the CPU a custom op (forward parallel over RoIs × channels, backward parallel
//! over feature planes); on any other device (CUDA) the same linear map is expressed with
//! candle ops (`index_select` of the touched cells, two batched matmuls with per-RoI weight
//! matrices built on the host), whose gradients candle derives itself
//! ([`roi_align_with_candle_ops`]; also callable on the CPU, where tests compare both paths).
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use rtb_nn::roi_align::{roi_align, RoiAlignConfig};
//! let features = Tensor::arange(0f32, 16., &Device::Cpu).unwrap().reshape((1, 1, 4, 4)).unwrap();
//! let rois = Tensor::new(&[[0f32, 0., 0., 4., 4.]], &Device::Cpu).unwrap();
//! let cfg = RoiAlignConfig::new(2, 2).with_sampling_ratio(1).with_aligned(true);
//! let pooled = roi_align(&features, &rois, &cfg).unwrap();
//! assert_eq!(pooled.dims(), &[1, 1, 2, 2]);
//! // The bin centres are (0.5, 0.5) … (2.5, 2.5) in aligned pixel coordinates.
//! let v: Vec<f32> = pooled.flatten_all().unwrap().to_vec1().unwrap();
//! assert_eq!(v, vec![2.5, 4.5, 10.5, 12.5]);
//! ```

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::error::{NnError, invalid, shape_error};
use crate::real::Real;

const OP: &str = "roi_align";

/// Settings of [`roi_align`], named as in torchvision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoiAlignConfig {
    /// Output height and width (`pooled_h`, `pooled_w`).
    pub output_size: (usize, usize),
    /// Factor from image coordinates to feature coordinates (`1 / stride`).
    pub spatial_scale: f64,
    /// Samples per bin along each axis; ≤ 0 means adaptive: `ceil(roi_size / output_size)`.
    pub sampling_ratio: i32,
    /// Shift by −0.5 pixel so that sample positions are pixel centres (Detectron2's and
    /// mmdet's default; torchvision's default is `false`).
    pub aligned: bool,
}

impl RoiAlignConfig {
    /// `output_h × output_w`, spatial scale 1, adaptive sampling, not aligned (torchvision's
    /// defaults apart from `sampling_ratio = -1`, which means the same as 0).
    pub fn new(output_h: usize, output_w: usize) -> Self {
        Self {
            output_size: (output_h, output_w),
            spatial_scale: 1.0,
            sampling_ratio: 0,
            aligned: false,
        }
    }

    /// Sets the factor from image to feature coordinates.
    pub fn with_spatial_scale(mut self, spatial_scale: f64) -> Self {
        self.spatial_scale = spatial_scale;
        self
    }

    /// Sets the samples per bin and axis (≤ 0: adaptive).
    pub fn with_sampling_ratio(mut self, sampling_ratio: i32) -> Self {
        self.sampling_ratio = sampling_ratio;
        self
    }

    /// Sets the half-pixel alignment.
    pub fn with_aligned(mut self, aligned: bool) -> Self {
        self.aligned = aligned;
        self
    }

    fn validate(&self) -> Result<()> {
        let (oh, ow) = self.output_size;
        if oh == 0 || ow == 0 {
            return Err(invalid(
                OP,
                format!("output_size must be positive, got ({oh}, {ow})"),
            ));
        }
        if !(self.spatial_scale.is_finite() && self.spatial_scale > 0.0) {
            return Err(invalid(
                OP,
                format!(
                    "spatial_scale must be finite and positive, got {}",
                    self.spatial_scale
                ),
            ));
        }
        Ok(())
    }
}

/// Pools `features` `[N, C, H, W]` over `rois` `[K, 5]` (`batch_index, x1, y1, x2, y2` in image
/// coordinates) into `[K, C, output_h, output_w]`, with a gradient to `features` (none to the
/// RoIs, as in torchvision).
///
/// `features` must be f32 or f64, or a half type (autocast), which is pooled in f32 and
/// returned in its own type, as torchvision's autocast rule for RoIAlign does; `rois` are
/// converted to the features' dtype. A batch index outside `0..N` is an error.
pub fn roi_align(features: &Tensor, rois: &Tensor, cfg: &RoiAlignConfig) -> Result<Tensor> {
    if crate::autocast::is_half(features.dtype()) {
        let pooled = roi_align(&crate::autocast::widen(features)?, rois, cfg)?;
        return pooled.to_dtype(features.dtype());
    }
    validate_inputs(features, rois, cfg)?;
    let rois = rois.to_dtype(features.dtype())?.contiguous()?;
    match features.device() {
        Device::Cpu => features
            .contiguous()?
            .apply_op2(&rois, RoiAlignForward { cfg: *cfg }),
        _ => roi_align_with_candle_ops(features, &rois, cfg),
    }
}

fn validate_inputs(features: &Tensor, rois: &Tensor, cfg: &RoiAlignConfig) -> Result<()> {
    cfg.validate()?;
    let dims = features.dims();
    if dims.len() != 4 || dims[2] == 0 || dims[3] == 0 {
        return Err(shape_error(
            OP,
            "features",
            "[N, C, H, W] with H, W ≥ 1",
            dims,
        ));
    }
    let rdims = rois.dims();
    if rdims.len() != 2 || rdims[1] != 5 {
        return Err(shape_error(
            OP,
            "rois",
            "[K, 5] (batch_index, x1, y1, x2, y2)",
            rdims,
        ));
    }
    if !matches!(features.dtype(), DType::F32 | DType::F64) {
        return Err(NnError::DType {
            op: OP,
            arg: "features",
            got: features.dtype(),
            supported: "f32, f64",
        }
        .into());
    }
    if !rois.dtype().is_float() {
        return Err(NnError::DType {
            op: OP,
            arg: "rois",
            got: rois.dtype(),
            supported: "a float dtype",
        }
        .into());
    }
    Ok(())
}

/// One axis of one RoI: the distinct feature rows (or columns) it reads and, for each output
/// position along the axis, the weighted taps into those cells (bilinear weights summed over
/// the samples of the bin).
#[derive(Debug)]
struct AxisTaps<T> {
    cells: Vec<usize>,
    /// `Some(first)` when `cells` is `first, first + 1, …` (no gaps).
    contiguous_from: Option<usize>,
    offsets: Vec<usize>,
    taps: Vec<(usize, T)>,
}

impl<T: Real> AxisTaps<T> {
    fn taps(&self, position: usize) -> &[(usize, T)] {
        &self.taps[self.offsets[position]..self.offsets[position + 1]]
    }

    /// Samples `start + p·bin + (i + 0.5)·bin / grid` for `p < pooled`, `i < grid`, with
    /// torchvision's bilinear rules along an axis of `len` cells.
    fn new(start: T, bin: T, grid: i64, pooled: usize, len: usize) -> Self {
        let len_t = T::from_f64(len as f64);
        let grid_t = T::from_f64(grid as f64);
        let mut raw: Vec<Vec<(usize, T)>> = Vec::with_capacity(pooled);
        for p in 0..pooled {
            let mut bin_taps: Vec<(usize, T)> = Vec::new();
            let p_t = T::from_f64(p as f64);
            for i in 0..grid.max(0) {
                let offset = T::from_f64(i as f64 + 0.5) * bin / grid_t;
                let mut coord = start + p_t * bin + offset;
                // A sample more than one cell outside the map contributes nothing.
                if coord < -T::one() || coord > len_t {
                    continue;
                }
                if coord <= T::zero() {
                    coord = T::zero();
                }
                let mut low = coord.trunc_i64() as usize;
                let high;
                if low >= len - 1 {
                    low = len - 1;
                    high = len - 1;
                    coord = T::from_f64(low as f64);
                } else {
                    high = low + 1;
                }
                let frac = coord - T::from_f64(low as f64);
                bin_taps.push((low, T::one() - frac));
                bin_taps.push((high, frac));
            }
            bin_taps.sort_by_key(|&(cell, _)| cell);
            let mut merged: Vec<(usize, T)> = Vec::with_capacity(bin_taps.len());
            for (cell, weight) in bin_taps {
                match merged.last_mut() {
                    Some(last) if last.0 == cell => last.1 += weight,
                    _ => merged.push((cell, weight)),
                }
            }
            raw.push(merged);
        }
        let mut cells: Vec<usize> = raw.iter().flatten().map(|&(cell, _)| cell).collect();
        cells.sort_unstable();
        cells.dedup();
        let mut offsets = Vec::with_capacity(pooled + 1);
        let mut taps = Vec::new();
        offsets.push(0);
        for bin_taps in raw {
            for (cell, weight) in bin_taps {
                let compact = cells.partition_point(|&c| c < cell);
                taps.push((compact, weight));
            }
            offsets.push(taps.len());
        }
        let contiguous_from = match (cells.first(), cells.last()) {
            (Some(&first), Some(&last)) if last - first + 1 == cells.len() => Some(first),
            _ => None,
        };
        Self {
            cells,
            contiguous_from,
            offsets,
            taps,
        }
    }
}

/// Everything about one RoI that does not depend on the channel.
#[derive(Debug)]
struct RoiGeometry<T> {
    batch: usize,
    rows: AxisTaps<T>,
    cols: AxisTaps<T>,
    /// Number of samples per bin (at least 1), the divisor of the average.
    count: T,
}

impl<T: Real> RoiGeometry<T> {
    fn new(roi: &[T], n: usize, h: usize, w: usize, cfg: &RoiAlignConfig) -> Result<Self> {
        let batch_f = roi[0].to_f64();
        if !(batch_f.is_finite() && batch_f >= 0.0 && (batch_f as usize) < n) {
            return Err(invalid(
                OP,
                format!("RoI batch index {batch_f} is outside 0..{n} (features have N = {n})"),
            ));
        }
        let batch = batch_f as usize;
        let scale = T::from_f64(cfg.spatial_scale);
        let offset = if cfg.aligned {
            T::from_f64(0.5)
        } else {
            T::zero()
        };
        let start_w = roi[1] * scale - offset;
        let start_h = roi[2] * scale - offset;
        let end_w = roi[3] * scale - offset;
        let end_h = roi[4] * scale - offset;
        let mut roi_w = end_w - start_w;
        let mut roi_h = end_h - start_h;
        if !cfg.aligned {
            roi_w = roi_w.max_of(T::one());
            roi_h = roi_h.max_of(T::one());
        }
        let (oh, ow) = cfg.output_size;
        let bin_h = roi_h / T::from_f64(oh as f64);
        let bin_w = roi_w / T::from_f64(ow as f64);
        let (grid_h, grid_w) = if cfg.sampling_ratio > 0 {
            (cfg.sampling_ratio as i64, cfg.sampling_ratio as i64)
        } else {
            (
                (roi_h / T::from_f64(oh as f64)).ceil().trunc_i64(),
                (roi_w / T::from_f64(ow as f64)).ceil().trunc_i64(),
            )
        };
        if !(start_w.is_finite() && start_h.is_finite() && roi_w.is_finite() && roi_h.is_finite()) {
            return Err(invalid(
                OP,
                format!(
                    "RoI [{}, {}, {}, {}] is not finite",
                    roi[1].to_f64(),
                    roi[2].to_f64(),
                    roi[3].to_f64(),
                    roi[4].to_f64()
                ),
            ));
        }
        let count = T::from_f64((grid_h * grid_w).max(1) as f64);
        Ok(Self {
            batch,
            rows: AxisTaps::new(start_h, bin_h, grid_h, oh, h),
            cols: AxisTaps::new(start_w, bin_w, grid_w, ow, w),
            count,
        })
    }
}

fn geometries<T: Real>(
    rois: &[T],
    (n, h, w): (usize, usize, usize),
    cfg: &RoiAlignConfig,
) -> Result<Vec<RoiGeometry<T>>> {
    rois.par_chunks(5)
        .map(|roi| RoiGeometry::new(roi, n, h, w, cfg))
        .collect()
}

fn forward_cpu<T: Real>(
    features: &[T],
    (n, c, h, w): (usize, usize, usize, usize),
    rois: &[T],
    cfg: &RoiAlignConfig,
) -> Result<Vec<T>> {
    let geoms = geometries(rois, (n, h, w), cfg)?;
    let (oh, ow) = cfg.output_size;
    let mut out = vec![T::zero(); geoms.len() * c * oh * ow];
    out.par_chunks_mut(oh * ow).enumerate().for_each_init(
        Vec::new,
        |row_mix: &mut Vec<T>, (idx, out_plane)| {
            let geom = &geoms[idx / c];
            let channel = idx % c;
            let plane = &features[(geom.batch * c + channel) * h * w..][..h * w];
            row_mix.resize(geom.cols.cells.len(), T::zero());
            for ph in 0..oh {
                row_mix.fill(T::zero());
                for &(row_idx, wy) in geom.rows.taps(ph) {
                    let row = &plane[geom.rows.cells[row_idx] * w..][..w];
                    match geom.cols.contiguous_from {
                        // The usual case: a run of adjacent columns, which vectorises.
                        Some(first) => {
                            let run = &row[first..first + row_mix.len()];
                            for (mixed, &value) in row_mix.iter_mut().zip(run) {
                                *mixed += wy * value;
                            }
                        }
                        None => {
                            for (mixed, &col) in row_mix.iter_mut().zip(&geom.cols.cells) {
                                *mixed += wy * row[col];
                            }
                        }
                    }
                }
                for pw in 0..ow {
                    let mut acc = T::zero();
                    for &(col_idx, wx) in geom.cols.taps(pw) {
                        acc += wx * row_mix[col_idx];
                    }
                    out_plane[ph * ow + pw] = acc / geom.count;
                }
            }
        },
    );
    Ok(out)
}

fn backward_cpu<T: Real>(
    grad_out: &[T],
    (n, c, h, w): (usize, usize, usize, usize),
    rois: &[T],
    cfg: &RoiAlignConfig,
) -> Result<Vec<T>> {
    let geoms = geometries(rois, (n, h, w), cfg)?;
    let (oh, ow) = cfg.output_size;
    let mut by_batch: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (k, geom) in geoms.iter().enumerate() {
        by_batch[geom.batch].push(k);
    }
    let mut grad = vec![T::zero(); n * c * h * w];
    // Each feature plane is written by one task only, so no atomics are needed.
    grad.par_chunks_mut(h * w).enumerate().for_each_init(
        Vec::new,
        |col_mix: &mut Vec<T>, (plane_idx, plane)| {
            let (batch, channel) = (plane_idx / c, plane_idx % c);
            for &k in &by_batch[batch] {
                let geom = &geoms[k];
                let go = &grad_out[(k * c + channel) * oh * ow..][..oh * ow];
                col_mix.resize(geom.cols.cells.len(), T::zero());
                for ph in 0..oh {
                    col_mix.fill(T::zero());
                    for pw in 0..ow {
                        let g = go[ph * ow + pw] / geom.count;
                        for &(col_idx, wx) in geom.cols.taps(pw) {
                            col_mix[col_idx] += wx * g;
                        }
                    }
                    for &(row_idx, wy) in geom.rows.taps(ph) {
                        let row = &mut plane[geom.rows.cells[row_idx] * w..][..w];
                        match geom.cols.contiguous_from {
                            Some(first) => {
                                let run = &mut row[first..first + col_mix.len()];
                                for (value, &mixed) in run.iter_mut().zip(col_mix.iter()) {
                                    *value += wy * mixed;
                                }
                            }
                            None => {
                                for (&mixed, &col) in col_mix.iter().zip(&geom.cols.cells) {
                                    row[col] += wy * mixed;
                                }
                            }
                        }
                    }
                }
            }
        },
    );
    Ok(grad)
}

fn contiguous_slice<'a, T>(data: &'a [T], layout: &Layout, arg: &'static str) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => Err(invalid(OP, format!("{arg} must be contiguous"))),
    }
}

#[derive(Debug, Clone, Copy)]
struct RoiAlignForward {
    cfg: RoiAlignConfig,
}

impl CustomOp2 for RoiAlignForward {
    fn name(&self) -> &'static str {
        "roi_align"
    }

    fn cpu_fwd(
        &self,
        features: &CpuStorage,
        features_layout: &Layout,
        rois: &CpuStorage,
        rois_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = features_layout.shape().dims4()?;
        let k = rois_layout.shape().dims2()?.0;
        let (oh, ow) = self.cfg.output_size;
        let shape = Shape::from((k, dims.1, oh, ow));
        let storage = match (features, rois) {
            (CpuStorage::F32(f), CpuStorage::F32(r)) => CpuStorage::F32(forward_cpu(
                contiguous_slice(f, features_layout, "features")?,
                dims,
                contiguous_slice(r, rois_layout, "rois")?,
                &self.cfg,
            )?),
            (CpuStorage::F64(f), CpuStorage::F64(r)) => CpuStorage::F64(forward_cpu(
                contiguous_slice(f, features_layout, "features")?,
                dims,
                contiguous_slice(r, rois_layout, "rois")?,
                &self.cfg,
            )?),
            _ => {
                return Err(NnError::DType {
                    op: OP,
                    arg: "features",
                    got: features.dtype(),
                    supported: "f32, f64 (rois of the same dtype)",
                }
                .into());
            }
        };
        Ok((storage, shape))
    }

    fn bwd(
        &self,
        features: &Tensor,
        rois: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // candle's backward detaches gradients (no second order), so the adjoint needs no
        // backward of its own.
        let grad = grad_res.contiguous()?.apply_op2_no_bwd(
            rois,
            &RoiAlignBackward {
                cfg: self.cfg,
                feature_dims: features.dims4()?,
            },
        )?;
        Ok((Some(grad), None))
    }
}

/// The adjoint of [`RoiAlignForward`]: maps `[K, C, oh, ow]` gradients to `[N, C, H, W]`.
#[derive(Debug, Clone, Copy)]
struct RoiAlignBackward {
    cfg: RoiAlignConfig,
    feature_dims: (usize, usize, usize, usize),
}

impl CustomOp2 for RoiAlignBackward {
    fn name(&self) -> &'static str {
        "roi_align_backward"
    }

    fn cpu_fwd(
        &self,
        grad: &CpuStorage,
        grad_layout: &Layout,
        rois: &CpuStorage,
        rois_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let storage = match (grad, rois) {
            (CpuStorage::F32(g), CpuStorage::F32(r)) => CpuStorage::F32(backward_cpu(
                contiguous_slice(g, grad_layout, "grad")?,
                self.feature_dims,
                contiguous_slice(r, rois_layout, "rois")?,
                &self.cfg,
            )?),
            (CpuStorage::F64(g), CpuStorage::F64(r)) => CpuStorage::F64(backward_cpu(
                contiguous_slice(g, grad_layout, "grad")?,
                self.feature_dims,
                contiguous_slice(r, rois_layout, "rois")?,
                &self.cfg,
            )?),
            _ => {
                return Err(NnError::DType {
                    op: "roi_align_backward",
                    arg: "grad",
                    got: grad.dtype(),
                    supported: "f32, f64 (rois of the same dtype)",
                }
                .into());
            }
        };
        Ok((storage, Shape::from(self.feature_dims)))
    }
}

/// Upper bound on the elements of the gathered cells per chunk of RoIs in
/// [`roi_align_with_candle_ops`] (64 Mi elements: 256 MiB in f32).
const GATHER_CHUNK_ELEMENTS: usize = 1 << 26;

/// [`roi_align`] expressed with candle ops only, so it runs (with gradients) on any device.
///
/// The RoI tables are built on the host (the `[K, 5]` RoIs are copied there); each RoI's
/// touched cells are gathered with `index_select` and mixed by two batched matmuls. Results
/// equal [`roi_align`]'s up to summation order.
pub fn roi_align_with_candle_ops(
    features: &Tensor,
    rois: &Tensor,
    cfg: &RoiAlignConfig,
) -> Result<Tensor> {
    validate_inputs(features, rois, cfg)?;
    match features.dtype() {
        DType::F32 => gather_path::<f32>(features, rois, cfg),
        _ => gather_path::<f64>(features, rois, cfg),
    }
}

fn gather_path<T: Real>(features: &Tensor, rois: &Tensor, cfg: &RoiAlignConfig) -> Result<Tensor> {
    let (n, c, h, w) = features.dims4()?;
    let (oh, ow) = cfg.output_size;
    let device = features.device();
    let host_rois: Vec<T> = rois
        .to_device(&Device::Cpu)?
        .to_dtype(T::DTYPE)?
        .flatten_all()?
        .to_vec1()?;
    let geoms = geometries(&host_rois, (n, h, w), cfg)?;
    if geoms.is_empty() {
        return Tensor::zeros((0, c, oh, ow), features.dtype(), device);
    }
    let max_rows = geoms
        .iter()
        .map(|g| g.rows.cells.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let max_cols = geoms
        .iter()
        .map(|g| g.cols.cells.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let chunk = (GATHER_CHUNK_ELEMENTS / (max_rows * max_cols * c.max(1))).max(1);
    // Rows of this matrix are feature cells (b, y, x); columns are channels.
    let cells = features.permute((0, 2, 3, 1))?.reshape((n * h * w, c))?;
    let mut pooled = Vec::new();
    for group in geoms.chunks(chunk) {
        let k = group.len();
        let mut index = vec![0u32; k * max_rows * max_cols];
        let mut row_weights = vec![T::zero(); k * oh * max_rows];
        let mut col_weights = vec![T::zero(); k * ow * max_cols];
        for (i, geom) in group.iter().enumerate() {
            for (r, &y) in geom.rows.cells.iter().enumerate() {
                for (q, &x) in geom.cols.cells.iter().enumerate() {
                    index[(i * max_rows + r) * max_cols + q] =
                        ((geom.batch * h + y) * w + x) as u32;
                }
            }
            for ph in 0..oh {
                for &(r, wy) in geom.rows.taps(ph) {
                    // The average's divisor is folded into the row weights.
                    row_weights[(i * oh + ph) * max_rows + r] += wy / geom.count;
                }
            }
            for pw in 0..ow {
                for &(q, wx) in geom.cols.taps(pw) {
                    col_weights[(i * ow + pw) * max_cols + q] += wx;
                }
            }
        }
        let index = Tensor::from_vec(index, k * max_rows * max_cols, device)?;
        let row_weights = Tensor::from_vec(row_weights, (k, oh, max_rows), device)?;
        let col_weights = Tensor::from_vec(col_weights, (k, ow, max_cols), device)?;
        let gathered = cells
            .index_select(&index, 0)?
            .reshape((k, max_rows, max_cols * c))?;
        let rows_mixed = row_weights
            .matmul(&gathered)?
            .reshape((k * oh, max_cols, c))?;
        let col_weights = col_weights
            .unsqueeze(1)?
            .broadcast_as((k, oh, ow, max_cols))?
            .contiguous()?
            .reshape((k * oh, ow, max_cols))?;
        let mixed = col_weights.matmul(&rows_mixed)?.reshape((k, oh, ow, c))?;
        pooled.push(mixed.permute((0, 3, 1, 2))?.contiguous()?);
    }
    Tensor::cat(&pooled, 0)
}

/// How RoIs are assigned to pyramid levels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LevelMapper {
    /// mmdetection's `SingleRoIExtractor.map_roi_levels`:
    /// `floor(log2(sqrt(w·h) / finest_scale + 1e-6))`, clamped to `0..levels-1`
    /// (`finest_scale` is 56 in mmdet's configs). Level 0 is the first feature map.
    Mmdet {
        /// Scale of RoIs that map to level 1's lower bound, halved (56).
        finest_scale: f64,
    },
    /// torchvision's `LevelMapper` (FPN paper eq. 1):
    /// `floor(k0 + log2(sqrt(w·h) / canonical_scale) + 1e-6)`, clamped to
    /// `log2(first stride)..=log2(last stride)`, minus `log2(first stride)`.
    ///
    /// With strides 4..32 the two rules agree except at exact boundaries and at the clamping:
    /// torchvision puts RoIs smaller than 112 pixels on level 0 and from 448 up on level 3 like
    /// mmdet, but its ε is added outside the logarithm.
    Torchvision {
        /// Level of a RoI of `canonical_scale` (4).
        canonical_level: f64,
        /// Canonical RoI size (224).
        canonical_scale: f64,
    },
}

impl Default for LevelMapper {
    /// mmdetection's rule with `finest_scale = 56`, as the paper's Mask R-CNN uses.
    fn default() -> Self {
        LevelMapper::Mmdet { finest_scale: 56.0 }
    }
}

impl LevelMapper {
    /// The level (index into `strides`) of each box `[x1, y1, x2, y2]`; computed in `T` as the
    /// references do in the RoIs' dtype.
    fn levels<T: Real>(&self, boxes: &[[T; 4]], strides: &[f64]) -> Vec<usize> {
        let last = strides.len() as i64 - 1;
        let eps = T::from_f64(1e-6);
        boxes
            .iter()
            .map(|b| {
                let scale = ((b[2] - b[0]) * (b[3] - b[1])).sqrt();
                let level = match *self {
                    LevelMapper::Mmdet { finest_scale } => {
                        (scale / T::from_f64(finest_scale) + eps).log2().floor()
                    }
                    LevelMapper::Torchvision {
                        canonical_level,
                        canonical_scale,
                    } => {
                        let k_min = strides[0].log2().round();
                        (T::from_f64(canonical_level)
                            + (scale / T::from_f64(canonical_scale)).log2()
                            + eps)
                            .floor()
                            - T::from_f64(k_min)
                    }
                };
                // NaN (degenerate boxes) falls to level 0 like a tiny box.
                let level = if level.to_f64().is_nan() {
                    0
                } else {
                    level.to_f64().clamp(-1e9, 1e9) as i64
                };
                level.clamp(0, last) as usize
            })
            .collect()
    }
}

/// Multi-level RoI pooling of FPN detectors (mmdet's `SingleRoIExtractor` with `RoIAlign`,
/// torchvision's `MultiScaleRoIAlign`): each RoI is pooled from the level its size maps to,
/// with `spatial_scale = 1 / stride` of that level.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiScaleRoiAlign {
    /// Output size, sampling ratio and alignment; `spatial_scale` is replaced per level.
    pub roi_align: RoiAlignConfig,
    /// Stride of each feature map, finest first (e.g. `[4, 8, 16, 32]`).
    pub strides: Vec<f64>,
    /// The level rule.
    pub mapper: LevelMapper,
}

impl MultiScaleRoiAlign {
    /// mmdet's Mask R-CNN box extractor: 7×7, sampling 0, aligned, strides 4..32, mmdet's
    /// level rule.
    pub fn mmdet_box() -> Self {
        Self {
            roi_align: RoiAlignConfig::new(7, 7).with_aligned(true),
            strides: vec![4.0, 8.0, 16.0, 32.0],
            mapper: LevelMapper::default(),
        }
    }

    /// mmdet's Mask R-CNN mask extractor: as [`Self::mmdet_box`] with 14×14 output.
    pub fn mmdet_mask() -> Self {
        let mut pooler = Self::mmdet_box();
        pooler.roi_align.output_size = (14, 14);
        pooler
    }

    /// The level index of each RoI `[K, 5]`.
    pub fn levels(&self, rois: &Tensor) -> Result<Vec<usize>> {
        let rdims = rois.dims();
        if rdims.len() != 2 || rdims[1] != 5 {
            return Err(shape_error(
                "multi_scale_roi_align",
                "rois",
                "[K, 5] (batch_index, x1, y1, x2, y2)",
                rdims,
            ));
        }
        if self.strides.is_empty() {
            return Err(invalid(
                "multi_scale_roi_align",
                "strides must name at least one level",
            ));
        }
        let host = rois.to_device(&Device::Cpu)?;
        Ok(if rois.dtype() == DType::F64 {
            let v: Vec<Vec<f64>> = host.to_vec2()?;
            let boxes: Vec<[f64; 4]> = v.iter().map(|r| [r[1], r[2], r[3], r[4]]).collect();
            self.mapper.levels(&boxes, &self.strides)
        } else {
            let v: Vec<Vec<f32>> = host.to_dtype(DType::F32)?.to_vec2()?;
            let boxes: Vec<[f32; 4]> = v.iter().map(|r| [r[1], r[2], r[3], r[4]]).collect();
            self.mapper.levels(&boxes, &self.strides)
        })
    }

    /// Pools `rois` `[K, 5]` from `features` (one `[N, C, H_l, W_l]` map per stride) into
    /// `[K, C, oh, ow]`, in the order of `rois`; differentiable with respect to every level.
    pub fn forward(&self, features: &[Tensor], rois: &Tensor) -> Result<Tensor> {
        if features.len() != self.strides.len() {
            return Err(invalid(
                "multi_scale_roi_align",
                format!(
                    "got {} feature maps for {} strides",
                    features.len(),
                    self.strides.len()
                ),
            ));
        }
        let levels = self.levels(rois)?;
        let first = &features[0];
        let c = first.dims().get(1).copied().unwrap_or(0);
        for (l, f) in features.iter().enumerate() {
            let dims = f.dims();
            if dims.len() != 4 || dims[1] != c || dims[0] != first.dims()[0] {
                return Err(shape_error(
                    "multi_scale_roi_align",
                    "features",
                    format!(
                        "[N, C, H, W] with the N and C of level 0 ({:?}) at level {l}",
                        first.dims()
                    ),
                    dims,
                ));
            }
        }
        let device = rois.device();
        let (oh, ow) = self.roi_align.output_size;
        let mut pieces = Vec::new();
        let mut order: Vec<u32> = Vec::with_capacity(levels.len());
        for (l, (feature, stride)) in features.iter().zip(&self.strides).enumerate() {
            let members: Vec<u32> = (0..levels.len() as u32)
                .filter(|&i| levels[i as usize] == l)
                .collect();
            if members.is_empty() {
                continue;
            }
            let index = Tensor::new(members.as_slice(), device)?;
            let level_rois = rois.index_select(&index, 0)?;
            let cfg = self.roi_align.with_spatial_scale(1.0 / stride);
            pieces.push(roi_align(feature, &level_rois, &cfg)?);
            order.extend(members);
        }
        if pieces.is_empty() {
            return Tensor::zeros((0, c, oh, ow), first.dtype(), first.device());
        }
        // `order[j]` is the RoI at position j of the concatenation; invert it.
        let mut inverse = vec![0u32; order.len()];
        for (position, &roi) in order.iter().enumerate() {
            inverse[roi as usize] = position as u32;
        }
        let stacked = Tensor::cat(&pieces, 0)?;
        let inverse = Tensor::new(inverse.as_slice(), stacked.device())?;
        stacked.index_select(&inverse, 0)
    }
}
