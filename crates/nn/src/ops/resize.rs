//! Bilinear and nearest resizing of `[N, C, H, W]` tensors, equal to PyTorch's
//! `F.interpolate(mode="bilinear" | "nearest", size=...)`.
//!
//! Bilinear resizing is separable and linear: `Y = A_h · X · A_wᵀ` with one interpolation
//! matrix per axis, two non-zeros per row. The CPU runs that directly (a parallel kernel per
//! image plane, its backward the transposed kernel); other devices multiply by the dense
//! matrices ([`resize_bilinear_composed`]), whose backward is two more matmuls.
//! Nearest resizing is an `index_select` per axis (an integer factor is a broadcast), so candle
//! supplies both directions.

use candle_core::{Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use crate::ops::{CpuKernel1, dims4, kernel_op, shape_error};

/// Source taps and weights of linear interpolation along one axis (PyTorch's
/// `area_pixel_compute_source_index` with the index and weight clamped to the input).
#[derive(Debug, Clone, PartialEq)]
struct AxisTaps {
    low: Vec<usize>,
    high: Vec<usize>,
    low_weight: Vec<f64>,
    high_weight: Vec<f64>,
}

impl AxisTaps {
    fn new(in_len: usize, out_len: usize, align_corners: bool) -> Self {
        let mut taps = Self {
            low: Vec::with_capacity(out_len),
            high: Vec::with_capacity(out_len),
            low_weight: Vec::with_capacity(out_len),
            high_weight: Vec::with_capacity(out_len),
        };
        // PyTorch computes the scale and source position in the input's float type.
        let scale = if align_corners {
            if out_len > 1 {
                (in_len as f32 - 1.0) / (out_len as f32 - 1.0)
            } else {
                0.0
            }
        } else {
            in_len as f32 / out_len as f32
        };
        for dst in 0..out_len {
            let src = if align_corners {
                scale * dst as f32
            } else {
                (scale * (dst as f32 + 0.5) - 0.5).max(0.0)
            };
            let low = (src.floor() as usize).min(in_len - 1);
            let high_weight = (src - low as f32).clamp(0.0, 1.0);
            taps.low.push(low);
            taps.high.push((low + 1).min(in_len - 1));
            taps.high_weight.push(high_weight as f64);
            taps.low_weight.push(1.0 - high_weight as f64);
        }
        taps
    }

    /// The dense `[out_len, in_len]` interpolation matrix.
    fn matrix(&self, in_len: usize) -> Vec<f64> {
        let mut m = vec![0.0; self.low.len() * in_len];
        for (dst, row) in m.chunks_exact_mut(in_len).enumerate() {
            row[self.low[dst]] += self.low_weight[dst];
            row[self.high[dst]] += self.high_weight[dst];
        }
        m
    }

    fn typed<T: WithDType>(weights: &[f64]) -> Vec<T> {
        weights.iter().map(|&w| T::from_f64(w)).collect()
    }
}

/// Both axes of one bilinear resize.
#[derive(Debug, Clone)]
struct BilinearGeometry {
    /// `(N, C)`: the op's tensors are `[N, C, H, W]` with no reshape around it, so candle's
    /// backward does not add gradient copies for reshape nodes.
    lead: (usize, usize),
    in_size: (usize, usize),
    out_size: (usize, usize),
    rows: AxisTaps,
    cols: AxisTaps,
}

impl BilinearGeometry {
    fn new(
        lead: (usize, usize),
        in_size: (usize, usize),
        out_size: (usize, usize),
        align_corners: bool,
    ) -> Self {
        Self {
            lead,
            in_size,
            out_size,
            rows: AxisTaps::new(in_size.0, out_size.0, align_corners),
            cols: AxisTaps::new(in_size.1, out_size.1, align_corners),
        }
    }
}

/// The forward kernel: `[N, C, H, W]` → `[N, C, Ho, Wo]`.
#[derive(Debug, Clone)]
struct Bilinear(BilinearGeometry);

/// Its adjoint: `[N, C, Ho, Wo]` → `[N, C, H, W]`.
#[derive(Debug, Clone)]
struct BilinearAdjoint(BilinearGeometry);

impl CpuKernel1 for Bilinear {
    const OP: &'static str = "resize_bilinear";
    fn run<T: WithDType>(&self, xs: &[T]) -> Result<(Vec<T>, Shape)> {
        let g = &self.0;
        let (h, w) = g.in_size;
        let (ho, wo) = g.out_size;
        let (ry0, ry1) = (
            AxisTaps::typed::<T>(&g.rows.low_weight),
            AxisTaps::typed::<T>(&g.rows.high_weight),
        );
        let (cx0, cx1) = (
            AxisTaps::typed::<T>(&g.cols.low_weight),
            AxisTaps::typed::<T>(&g.cols.high_weight),
        );
        let planes = xs.len() / (h * w);
        let mut out = vec![T::from_f64(0.0); planes * ho * wo];
        out.par_chunks_mut(ho * wo)
            .zip(xs.par_chunks(h * w))
            .for_each(|(dst, src)| {
                for (oy, dst_row) in dst.chunks_exact_mut(wo).enumerate() {
                    let top = &src[g.rows.low[oy] * w..(g.rows.low[oy] + 1) * w];
                    let bottom = &src[g.rows.high[oy] * w..(g.rows.high[oy] + 1) * w];
                    let (a0, a1) = (ry0[oy], ry1[oy]);
                    for (ox, d) in dst_row.iter_mut().enumerate() {
                        let (x0, x1) = (g.cols.low[ox], g.cols.high[ox]);
                        let (b0, b1) = (cx0[ox], cx1[ox]);
                        *d = a0 * (b0 * top[x0] + b1 * top[x1])
                            + a1 * (b0 * bottom[x0] + b1 * bottom[x1]);
                    }
                }
            });
        Ok((out, Shape::from((g.lead.0, g.lead.1, ho, wo))))
    }
}

impl CpuKernel1 for BilinearAdjoint {
    const OP: &'static str = "resize_bilinear_backward";
    fn run<T: WithDType>(&self, grad: &[T]) -> Result<(Vec<T>, Shape)> {
        let g = &self.0;
        let (h, w) = g.in_size;
        let (ho, wo) = g.out_size;
        let (ry0, ry1) = (
            AxisTaps::typed::<T>(&g.rows.low_weight),
            AxisTaps::typed::<T>(&g.rows.high_weight),
        );
        let (cx0, cx1) = (
            AxisTaps::typed::<T>(&g.cols.low_weight),
            AxisTaps::typed::<T>(&g.cols.high_weight),
        );
        let planes = grad.len() / (ho * wo);
        let mut out = vec![T::from_f64(0.0); planes * h * w];
        // Separable: spread each gradient row along W into a scratch row, then add that row
        // into the two input rows it came from (contiguous, vectorisable adds).
        out.par_chunks_mut(h * w)
            .zip(grad.par_chunks(ho * wo))
            .for_each_init(
                || vec![T::from_f64(0.0); w],
                |row, (dst, src)| {
                    for (oy, src_row) in src.chunks_exact(wo).enumerate() {
                        row.fill(T::from_f64(0.0));
                        for (ox, &gv) in src_row.iter().enumerate() {
                            row[g.cols.low[ox]] += cx0[ox] * gv;
                            row[g.cols.high[ox]] += cx1[ox] * gv;
                        }
                        let (y0, y1) = (g.rows.low[oy], g.rows.high[oy]);
                        let (a0, a1) = (ry0[oy], ry1[oy]);
                        for (d, &r) in dst[y0 * w..(y0 + 1) * w].iter_mut().zip(row.iter()) {
                            *d += a0 * r;
                        }
                        for (d, &r) in dst[y1 * w..(y1 + 1) * w].iter_mut().zip(row.iter()) {
                            *d += a1 * r;
                        }
                    }
                },
            );
        Ok((out, Shape::from((g.lead.0, g.lead.1, h, w))))
    }
}

kernel_op!(1, Bilinear {
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad_res
            .contiguous()?
            .apply_op1(BilinearAdjoint(self.0.clone()))?;
        Ok(Some(grad))
    }
});

kernel_op!(1, BilinearAdjoint {
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            grad_res.contiguous()?.apply_op1(Bilinear(self.0.clone()))?,
        ))
    }
});

fn check_resize(
    op: &'static str,
    xs: &Tensor,
    size: (usize, usize),
) -> Result<(usize, usize, usize, usize)> {
    let dims = dims4(op, xs)?;
    if size.0 == 0 || size.1 == 0 || dims.2 == 0 || dims.3 == 0 {
        return Err(shape_error(
            op,
            format!(
                "cannot resize {:?} to {size:?}: sizes must be positive",
                xs.dims()
            ),
        ));
    }
    Ok(dims)
}

/// Bilinear resize of `[N, C, H, W]` to `[N, C, out_h, out_w]`, equal to PyTorch's
/// `F.interpolate(xs, size=(out_h, out_w), mode="bilinear", align_corners=align_corners)`.
/// Differentiable on every device; the CPU runs a direct kernel.
pub fn resize_bilinear(
    xs: &Tensor,
    (out_h, out_w): (usize, usize),
    align_corners: bool,
) -> Result<Tensor> {
    const OP: &str = "resize_bilinear";
    let (n, c, h, w) = check_resize(OP, xs, (out_h, out_w))?;
    if !xs.device().is_cpu() {
        return resize_bilinear_composed(xs, (out_h, out_w), align_corners);
    }
    if (h, w) == (out_h, out_w) {
        // PyTorch copies the input when the size does not change (weights are exactly 1).
        return Ok(xs.clone());
    }
    let geometry = BilinearGeometry::new((n, c), (h, w), (out_h, out_w), align_corners);
    xs.contiguous()?.apply_op1(Bilinear(geometry))
}

/// The same resize as two products with dense interpolation matrices,
/// `A_h · X · A_wᵀ`: runs on any device, and candle derives the backward.
pub fn resize_bilinear_composed(
    xs: &Tensor,
    (out_h, out_w): (usize, usize),
    align_corners: bool,
) -> Result<Tensor> {
    let (_, _, h, w) = check_resize("resize_bilinear", xs, (out_h, out_w))?;
    let rows = AxisTaps::new(h, out_h, align_corners).matrix(h);
    let cols = AxisTaps::new(w, out_w, align_corners).matrix(w);
    let a_h = Tensor::from_vec(rows, (out_h, h), xs.device())?.to_dtype(xs.dtype())?;
    let a_w_t = Tensor::from_vec(cols, (out_w, w), xs.device())?
        .to_dtype(xs.dtype())?
        .t()?;
    a_h.broadcast_matmul(&xs.broadcast_matmul(&a_w_t)?)
}

/// Source indices of PyTorch's legacy `"nearest"` mode along one axis:
/// `min(floor(dst · in/out), in − 1)`, computed in f32 as PyTorch does.
fn nearest_indices(in_len: usize, out_len: usize) -> Vec<u32> {
    let scale = in_len as f32 / out_len as f32;
    (0..out_len)
        .map(|dst| ((dst as f32 * scale).floor() as usize).min(in_len - 1) as u32)
        .collect()
}

/// Nearest resize of `[N, C, H, W]` to `[N, C, out_h, out_w]`, equal to PyTorch's
/// `F.interpolate(xs, size=(out_h, out_w), mode="nearest")`. Integer upscaling factors are a
/// broadcast (the backward sums each block); other sizes use `index_select` per axis.
pub fn resize_nearest(xs: &Tensor, (out_h, out_w): (usize, usize)) -> Result<Tensor> {
    let (n, c, h, w) = check_resize("resize_nearest", xs, (out_h, out_w))?;
    if out_h % h == 0 && out_w % w == 0 {
        let (fh, fw) = (out_h / h, out_w / w);
        return xs
            .reshape((n, c, h, 1, w, 1))?
            .broadcast_as((n, c, h, fh, w, fw))?
            .reshape((n, c, out_h, out_w));
    }
    let device = xs.device();
    let rows = Tensor::new(nearest_indices(h, out_h), device)?;
    let cols = Tensor::new(nearest_indices(w, out_w), device)?;
    xs.index_select(&rows, 2)?.index_select(&cols, 3)
}

/// Nearest ×2 upsampling (`F.interpolate(xs, scale_factor=2, mode="nearest")`), as used by
/// FPN top-down paths.
pub fn upsample_nearest2x(xs: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = dims4("upsample_nearest2x", xs)?;
    resize_nearest(xs, (2 * h, 2 * w))
}
