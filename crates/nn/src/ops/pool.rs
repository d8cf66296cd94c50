//! Max pooling with padding and ceil mode, and adaptive average pooling, equal to PyTorch's
//! `F.max_pool2d` and `F.adaptive_avg_pool2d`.
//!
//! candle's `max_pool2d` has no padding or ceil mode and a backward only when kernel equals
//! stride, so the ResNet stem (3×3, stride 2, padding 1) cannot train with it. Here the CPU
//! runs a direct kernel whose backward recomputes each window's argmax and routes the gradient
//! to it, breaking ties as PyTorch does (the first maximum in row-major window order wins; a NaN
//! wins over numbers). Other devices stack the windows with strided `narrow`s and take
//! `argmax` + `gather` ([`max_pool2d_composed`]).
//!
//! Adaptive average pooling is linear and separable: `Y = P_h · X · P_wᵀ` with PyTorch's bins
//! (`[⌊i·in/out⌋, ⌈(i+1)·in/out⌉)`) as averaging matrices, on every device.

use candle_core::{Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use crate::ops::{CpuKernel1, CpuKernel2, dims4, kernel_op, shape_error, strided_narrow};

/// Kernel, stride, padding, dilation and ceil mode of a max pooling (PyTorch's meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2dConfig {
    /// Window size `(kh, kw)`.
    pub kernel: (usize, usize),
    /// Step between windows `(sh, sw)`.
    pub stride: (usize, usize),
    /// Implicit −∞ padding on both sides `(ph, pw)`; at most half the kernel.
    pub padding: (usize, usize),
    /// Spacing between window taps `(dh, dw)`.
    pub dilation: (usize, usize),
    /// Round the output size up instead of down (windows that start inside the input or the
    /// left padding are kept).
    pub ceil_mode: bool,
}

impl MaxPool2dConfig {
    /// A square window with stride equal to the window, no padding, floor mode.
    pub fn new(kernel: usize) -> Self {
        Self {
            kernel: (kernel, kernel),
            stride: (kernel, kernel),
            padding: (0, 0),
            dilation: (1, 1),
            ceil_mode: false,
        }
    }
    /// The same stride along both axes.
    pub fn with_stride(mut self, stride: usize) -> Self {
        self.stride = (stride, stride);
        self
    }
    /// The same padding along both axes.
    pub fn with_padding(mut self, padding: usize) -> Self {
        self.padding = (padding, padding);
        self
    }
    /// The same dilation along both axes.
    pub fn with_dilation(mut self, dilation: usize) -> Self {
        self.dilation = (dilation, dilation);
        self
    }
    /// Ceil mode on or off.
    pub fn with_ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.ceil_mode = ceil_mode;
        self
    }

    /// Output length along one axis, PyTorch's `pooling_output_shape`.
    fn out_len(
        len: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
        ceil_mode: bool,
    ) -> Option<usize> {
        let span = dilation * (kernel - 1) + 1;
        let padded = len + 2 * padding;
        if padded < span {
            return None;
        }
        let extra = if ceil_mode { stride - 1 } else { 0 };
        let mut out = (padded - span + extra) / stride + 1;
        // The last window must start inside the input or its left padding.
        if ceil_mode && (out - 1) * stride >= len + padding {
            out -= 1;
        }
        Some(out)
    }

    /// Output `(Ho, Wo)` for an input of `(h, w)`, or an error naming the shapes.
    pub fn output_size(&self, (h, w): (usize, usize)) -> Result<(usize, usize)> {
        let bad = |what: &str| {
            shape_error(
                "max_pool2d",
                format!("{what}: input spatial size ({h}, {w}), {self:?}"),
            )
        };
        let (kh, kw) = self.kernel;
        if kh == 0 || kw == 0 || self.stride.0 == 0 || self.stride.1 == 0 {
            return Err(bad("kernel and stride must be positive"));
        }
        if self.dilation.0 == 0 || self.dilation.1 == 0 {
            return Err(bad("dilation must be positive"));
        }
        // PyTorch's rule: the padding is at most half the (undilated) kernel.
        if self.padding.0 > kh / 2 || self.padding.1 > kw / 2 {
            return Err(bad("padding must be at most half of the kernel size"));
        }
        let ho = Self::out_len(
            h,
            kh,
            self.stride.0,
            self.padding.0,
            self.dilation.0,
            self.ceil_mode,
        )
        .ok_or_else(|| bad("the window is larger than the padded input"))?;
        let wo = Self::out_len(
            w,
            kw,
            self.stride.1,
            self.padding.1,
            self.dilation.1,
            self.ceil_mode,
        )
        .ok_or_else(|| bad("the window is larger than the padded input"))?;
        Ok((ho, wo))
    }
}

/// A max pooling over planes of `(h, w)`.
#[derive(Debug, Clone, Copy)]
struct MaxPool {
    cfg: MaxPool2dConfig,
    /// `(N, C)` of the `[N, C, H, W]` tensors (no reshape around the op).
    lead: (usize, usize),
    in_size: (usize, usize),
    out_size: (usize, usize),
}

impl MaxPool {
    /// Calls `visit(out_index, in_index_of_max)` for every output of one plane; the index is
    /// `None` for a window with no input element (impossible with valid padding).
    fn argmax_plane<T: WithDType>(
        &self,
        plane: &[T],
        mut visit: impl FnMut(usize, Option<usize>, T),
    ) {
        let (h, w) = self.in_size;
        let (ho, wo) = self.out_size;
        let c = &self.cfg;
        let neg_inf = T::from_f64(f64::NEG_INFINITY);
        for oy in 0..ho {
            let y0 = (oy * c.stride.0) as isize - c.padding.0 as isize;
            for ox in 0..wo {
                let x0 = (ox * c.stride.1) as isize - c.padding.1 as isize;
                let mut best = neg_inf;
                let mut best_index = None;
                for ki in 0..c.kernel.0 {
                    let iy = y0 + (ki * c.dilation.0) as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    let row = iy as usize * w;
                    for kj in 0..c.kernel.1 {
                        let ix = x0 + (kj * c.dilation.1) as isize;
                        if ix < 0 || ix >= w as isize {
                            continue;
                        }
                        let index = row + ix as usize;
                        let value = plane[index];
                        // PyTorch's rule: strictly greater wins (first max kept), NaN wins.
                        #[allow(clippy::eq_op)]
                        let is_nan = value != value;
                        if best_index.is_none() || value > best || is_nan {
                            best = value;
                            best_index = Some(index);
                            if is_nan {
                                break;
                            }
                        }
                    }
                    #[allow(clippy::eq_op)]
                    if best != best {
                        break;
                    }
                }
                visit(oy * wo + ox, best_index, best);
            }
        }
    }
}

impl CpuKernel1 for MaxPool {
    const OP: &'static str = "max_pool2d";
    fn run<T: WithDType>(&self, xs: &[T]) -> Result<(Vec<T>, Shape)> {
        let (h, w) = self.in_size;
        let (ho, wo) = self.out_size;
        let planes = xs.len() / (h * w);
        let mut out = vec![T::from_f64(0.0); planes * ho * wo];
        out.par_chunks_mut(ho * wo)
            .zip(xs.par_chunks(h * w))
            .for_each(|(dst, src)| {
                self.argmax_plane(src, |o, _, value| dst[o] = value);
            });
        Ok((out, Shape::from((self.lead.0, self.lead.1, ho, wo))))
    }
}

/// The backward: `(xs, grad_ys)` → `grad_xs`.
#[derive(Debug, Clone, Copy)]
struct MaxPoolBackward(MaxPool);

impl CpuKernel2 for MaxPoolBackward {
    const OP: &'static str = "max_pool2d_backward";
    fn run<T: WithDType>(&self, xs: &[T], grad: &[T]) -> Result<(Vec<T>, Shape)> {
        let (h, w) = self.0.in_size;
        let (ho, wo) = self.0.out_size;
        let planes = xs.len() / (h * w);
        let mut out = vec![T::from_f64(0.0); planes * h * w];
        out.par_chunks_mut(h * w)
            .zip(xs.par_chunks(h * w).zip(grad.par_chunks(ho * wo)))
            .for_each(|(dst, (src, g))| {
                self.0.argmax_plane(src, |o, index, _| {
                    if let Some(index) = index {
                        dst[index] += g[o];
                    }
                });
            });
        Ok((out, Shape::from((self.0.lead.0, self.0.lead.1, h, w))))
    }
}

kernel_op!(1, MaxPool {
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = arg.apply_op2_no_bwd(&grad_res.contiguous()?, &MaxPoolBackward(*self))?;
        Ok(Some(grad))
    }
});

kernel_op!(2, MaxPoolBackward);

/// Max pooling of `[N, C, H, W]`, equal to PyTorch's
/// `F.max_pool2d(xs, kernel, stride, padding, dilation, ceil_mode)`, including which input
/// receives the gradient when a window has ties (the first in row-major order).
pub fn max_pool2d(xs: &Tensor, cfg: &MaxPool2dConfig) -> Result<Tensor> {
    let (n, c, h, w) = dims4("max_pool2d", xs)?;
    let (ho, wo) = cfg.output_size((h, w))?;
    if !xs.device().is_cpu() {
        // Not candle's max_pool2d even for kernel = stride: its backward (0.11.1) multiplies
        // the gradient by the fraction of maxima in a window instead of dividing by their
        // count, so a unique maximum gets 1/k² of its gradient (tests/cuda_paths.rs).
        return max_pool2d_composed(xs, cfg);
    }
    let op = MaxPool {
        cfg: *cfg,
        lead: (n, c),
        in_size: (h, w),
        out_size: (ho, wo),
    };
    xs.contiguous()?.apply_op1(op)
}

/// Pads `dim` with a constant on both sides.
fn pad_with_value(
    xs: &Tensor,
    dim: usize,
    left: usize,
    right: usize,
    value: f64,
) -> Result<Tensor> {
    if left == 0 && right == 0 {
        return Ok(xs.clone());
    }
    let mut parts = Vec::with_capacity(3);
    let mut dims = xs.dims().to_vec();
    if left > 0 {
        dims[dim] = left;
        parts.push(Tensor::full(value, dims.as_slice(), xs.device())?.to_dtype(xs.dtype())?);
    }
    parts.push(xs.clone());
    if right > 0 {
        dims[dim] = right;
        parts.push(Tensor::full(value, dims.as_slice(), xs.device())?.to_dtype(xs.dtype())?);
    }
    Tensor::cat(&parts, dim)
}

/// The same pooling from −∞ padding, strided `narrow`s, `argmax` and `gather`: runs on any
/// device and candle derives the backward. Ties go to the index `argmax` picks (the first on
/// the CPU).
pub fn max_pool2d_composed(xs: &Tensor, cfg: &MaxPool2dConfig) -> Result<Tensor> {
    let (n, c, h, w) = dims4("max_pool2d", xs)?;
    let (ho, wo) = cfg.output_size((h, w))?;
    // Ceil mode can let the last window run past the right padding: pad further with −∞.
    let need_h = (ho - 1) * cfg.stride.0 + cfg.dilation.0 * (cfg.kernel.0 - 1) + 1;
    let need_w = (wo - 1) * cfg.stride.1 + cfg.dilation.1 * (cfg.kernel.1 - 1) + 1;
    let right_h = need_h.saturating_sub(h + cfg.padding.0).max(cfg.padding.0);
    let right_w = need_w.saturating_sub(w + cfg.padding.1).max(cfg.padding.1);
    let padded = pad_with_value(xs, 2, cfg.padding.0, right_h, f64::NEG_INFINITY)?;
    let padded = pad_with_value(&padded, 3, cfg.padding.1, right_w, f64::NEG_INFINITY)?;
    let mut windows = Vec::with_capacity(cfg.kernel.0 * cfg.kernel.1);
    for ki in 0..cfg.kernel.0 {
        let rows = strided_narrow(&padded, 2, ki * cfg.dilation.0, ho, cfg.stride.0)?;
        for kj in 0..cfg.kernel.1 {
            windows.push(strided_narrow(
                &rows,
                3,
                kj * cfg.dilation.1,
                wo,
                cfg.stride.1,
            )?);
        }
    }
    let stacked = Tensor::stack(&windows, 2)?.contiguous()?;
    let best = stacked.argmax_keepdim(2)?;
    stacked.gather(&best, 2)?.reshape((n, c, ho, wo))
}

/// PyTorch's adaptive-pooling bins along one axis as an `[out, in]` averaging matrix.
fn adaptive_matrix(in_len: usize, out_len: usize) -> Vec<f64> {
    let mut m = vec![0.0; out_len * in_len];
    for (i, row) in m.chunks_exact_mut(in_len).enumerate() {
        let start = i * in_len / out_len;
        let end = ((i + 1) * in_len).div_ceil(out_len);
        let weight = 1.0 / (end - start) as f64;
        row[start..end].fill(weight);
    }
    m
}

/// Adaptive average pooling of `[N, C, H, W]` to `[N, C, out_h, out_w]`, equal to PyTorch's
/// `F.adaptive_avg_pool2d` (bins may overlap or, when upsampling, repeat). Differentiable on
/// every device.
pub fn adaptive_avg_pool2d(xs: &Tensor, (out_h, out_w): (usize, usize)) -> Result<Tensor> {
    let (n, c, h, w) = dims4("adaptive_avg_pool2d", xs)?;
    if out_h == 0 || out_w == 0 || h == 0 || w == 0 {
        return Err(shape_error(
            "adaptive_avg_pool2d",
            format!(
                "cannot pool {:?} to {:?}: sizes must be positive",
                xs.dims(),
                (out_h, out_w)
            ),
        ));
    }
    if (out_h, out_w) == (1, 1) {
        // Global pooling: a plain mean reads the input once.
        return xs.mean_keepdim((2, 3));
    }
    let device = xs.device();
    let p_h =
        Tensor::from_vec(adaptive_matrix(h, out_h), (out_h, h), device)?.to_dtype(xs.dtype())?;
    let p_w_t = Tensor::from_vec(adaptive_matrix(w, out_w), (out_w, w), device)?
        .to_dtype(xs.dtype())?
        .t()?;
    let ys = p_h.broadcast_matmul(&xs.broadcast_matmul(&p_w_t)?)?;
    debug_assert_eq!(ys.dims(), &[n, c, out_h, out_w]);
    Ok(ys)
}
