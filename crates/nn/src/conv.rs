//! 2-D convolution whose backward is two matrix products and a col2im.
//!
//! candle's own `conv2d` backward goes through `conv_transpose2d`, a plain loop on the CPU and
//! a naive kernel on CUDA (3.5–8× slower than PyTorch on 2 cores). Here the convolution is
//! written as `Y[n] = W · cols(X[n])` with `cols` the im2col matrix `[C·kh·kw, Ho·Wo]`:
//! candle's matmul (gemm on the CPU, cuBLAS on CUDA) then gives both
//! `dW = Σₙ dY[n] · cols(X[n])ᵀ` and `dcols = Wᵀ · dY[n]`, and col2im (the adjoint of im2col)
//! turns `dcols` into `dX`. A 1×1 convolution with stride 1 and no padding skips im2col: its
//! `cols` is the input itself.
//!
//! im2col and col2im are a pair of CPU `CustomOp1`s (parallel over image planes with rayon),
//! each the other's backward. On other devices im2col is composed from `narrow`/`reshape`/
//! `stack`, whose backward candle derives (that composition is [`im2col_composed`]).
//!
//! On the CPU (f32, f64) the convolution is one fused op that keeps only its input and weight
//! for the backward, recomputing im2col there; its backward skips the gradient of an argument
//! that no variable depends on (the image fed to a stem, a frozen weight). Small images go
//! through it in chunks whose im2col matrices sit side by side, so that each product has
//! enough columns to run at the GEMM kernels' speed. The composed path used elsewhere keeps `cols` alive until the backward pass (kh·kw times the input's size).
//! [`conv2d_grads`] runs the backward kernels alone.

use crate::ops::float_slices;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, DType, Layout, Module, Result, Shape, Tensor, WithDType,
};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;

use crate::ops::gemm::{GemmScalar, MatRef, gemm_threaded};
use crate::ops::{CpuKernel1, dims4, shape_error, strided_narrow};

/// Stride, padding, dilation and groups of a convolution (PyTorch's meaning and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// Step between windows, `(along H, along W)`.
    pub stride: (usize, usize),
    /// Zeros added on both sides, `(along H, along W)`.
    pub padding: (usize, usize),
    /// Spacing between kernel taps, `(along H, along W)`.
    pub dilation: (usize, usize),
    /// Number of channel groups; input and output channels must both be divisible by it.
    pub groups: usize,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Self {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

impl Conv2dConfig {
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
    /// Channel groups.
    pub fn with_groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
}

/// Everything im2col needs to know about one convolution's windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Im2ColGeometry {
    /// Input channels.
    pub channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Kernel size `(kh, kw)`.
    pub kernel: (usize, usize),
    /// Stride `(sh, sw)`.
    pub stride: (usize, usize),
    /// Padding `(ph, pw)`.
    pub padding: (usize, usize),
    /// Dilation `(dh, dw)`.
    pub dilation: (usize, usize),
    /// Output height.
    pub out_height: usize,
    /// Output width.
    pub out_width: usize,
}

/// Output length of a convolution or pooling along one axis (floor mode), or `None` when the
/// dilated kernel does not fit in the padded input.
pub(crate) fn conv_out_len(
    len: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Option<usize> {
    let span = dilation * (kernel - 1) + 1;
    let padded = len + 2 * padding;
    (padded >= span).then(|| (padded - span) / stride + 1)
}

/// Runs `$body` with `$wo` and `$stride` bound to the output row width and horizontal stride,
/// as constants for the common small shapes: with them known at compile time the row copies
/// of im2col / col2im unroll (a call to memcpy per row of 2–16 values cost more than the copy
/// itself, BENCHMARKS.md), other shapes take the same code with run-time values.
macro_rules! with_row_shape {
    ($shape:expr, |$wo:ident, $stride:ident| $body:expr) => {
        with_row_shape!(@arms $shape, $wo, $stride, $body;
            (1, 1), (2, 1), (4, 1), (7, 1), (8, 1), (14, 1), (16, 1), (28, 1), (32, 1),
            (1, 2), (2, 2), (4, 2), (7, 2), (8, 2), (14, 2), (16, 2), (28, 2), (32, 2))
    };
    (@arms $shape:expr, $wo:ident, $stride:ident, $body:expr; $(($w:literal, $s:literal)),*) => {
        match $shape {
            $(($w, $s) => {
                let ($wo, $stride): (usize, usize) = ($w, $s);
                $body
            })*
            ($wo, $stride) => $body,
        }
    };
}

impl Im2ColGeometry {
    /// Geometry of a convolution over an `[N, channels, height, width]` input.
    pub fn new(
        channels: usize,
        (height, width): (usize, usize),
        kernel: (usize, usize),
        cfg: &Conv2dConfig,
    ) -> Result<Self> {
        let bad = |what: &str| {
            shape_error(
                "im2col",
                format!(
                    "{what}: input [_, {channels}, {height}, {width}], kernel {kernel:?}, {cfg:?}"
                ),
            )
        };
        if kernel.0 == 0
            || kernel.1 == 0
            || cfg.stride.0 == 0
            || cfg.stride.1 == 0
            || cfg.dilation.0 == 0
            || cfg.dilation.1 == 0
        {
            return Err(bad("kernel, stride and dilation must be positive"));
        }
        let out_height = conv_out_len(
            height,
            kernel.0,
            cfg.stride.0,
            cfg.padding.0,
            cfg.dilation.0,
        )
        .ok_or_else(|| bad("the kernel is larger than the padded input"))?;
        let out_width = conv_out_len(width, kernel.1, cfg.stride.1, cfg.padding.1, cfg.dilation.1)
            .ok_or_else(|| bad("the kernel is larger than the padded input"))?;
        Ok(Self {
            channels,
            height,
            width,
            kernel,
            stride: cfg.stride,
            padding: cfg.padding,
            dilation: cfg.dilation,
            out_height,
            out_width,
        })
    }

    fn taps(&self) -> usize {
        self.kernel.0 * self.kernel.1
    }

    fn out_len(&self) -> usize {
        self.out_height * self.out_width
    }

    /// The input's size with its zero border.
    fn padded_size(&self) -> (usize, usize) {
        (
            self.height + 2 * self.padding.0,
            self.width + 2 * self.padding.1,
        )
    }

    /// `plane` with its zero border, built in `scratch` (`plane` itself without padding).
    fn padded<'a, T: WithDType>(&self, plane: &'a [T], scratch: &'a mut Vec<T>) -> &'a [T] {
        if self.padding == (0, 0) {
            return plane;
        }
        let (hp, wp) = self.padded_size();
        scratch.clear();
        scratch.resize(hp * wp, T::from_f64(0.0));
        for (y, row) in plane.chunks_exact(self.width).enumerate() {
            let start = (y + self.padding.0) * wp + self.padding.1;
            scratch[start..start + self.width].copy_from_slice(row);
        }
        scratch
    }

    /// Fills the `[taps, Ho·Wo]` block of one input plane: tap row `r` is
    /// `block[r·row_stride..][..Ho·Wo]` (`row_stride` is `Ho·Wo` for a block of its own, wider
    /// when several images' blocks sit side by side). `scratch` holds the padded plane.
    fn im2col_plane<T: WithDType>(
        &self,
        plane: &[T],
        block: &mut [T],
        row_stride: usize,
        scratch: &mut Vec<T>,
    ) {
        if self.out_len() == 0 {
            return;
        }
        let src_width = self.padded_size().1;
        let src = self.padded(plane, scratch);
        with_row_shape!((self.out_width, self.stride.1), |wo, stride| {
            self.im2col_rows(src, src_width, block, row_stride, wo, stride)
        });
    }

    /// The rows of [`Self::im2col_plane`] from the padded plane `src` (`src_width` wide), for
    /// output rows `wo` wide read at horizontal stride `stride`.
    #[inline(always)]
    fn im2col_rows<T: Copy>(
        &self,
        src: &[T],
        src_width: usize,
        block: &mut [T],
        row_stride: usize,
        wo: usize,
        stride: usize,
    ) {
        let (kh, kw) = self.kernel;
        let ho = self.out_height;
        for ki in 0..kh {
            for kj in 0..kw {
                let rows = &mut block[(ki * kw + kj) * row_stride..][..ho * wo];
                for (oy, row) in rows.chunks_exact_mut(wo).enumerate() {
                    let start = (oy * self.stride.0 + ki * self.dilation.0) * src_width
                        + kj * self.dilation.1;
                    if stride == 1 {
                        row.copy_from_slice(&src[start..start + wo]);
                    } else {
                        let src = &src[start..start + (wo - 1) * stride + 1];
                        for (t, out) in row.iter_mut().enumerate() {
                            *out = src[t * stride];
                        }
                    }
                }
            }
        }
    }

    /// Adds the `[taps, Ho·Wo]` block of one plane (tap row `r` at `block[r·row_stride..]`)
    /// back into that plane (the adjoint of [`Self::im2col_plane`]); `scratch` holds the
    /// padded sums.
    fn col2im_plane<T: WithDType>(
        &self,
        block: &[T],
        plane: &mut [T],
        row_stride: usize,
        scratch: &mut Vec<T>,
    ) {
        if self.out_len() == 0 {
            return;
        }
        let (hp, wp) = self.padded_size();
        let padded = self.padding != (0, 0);
        let acc: &mut [T] = if padded {
            scratch.clear();
            scratch.resize(hp * wp, T::from_f64(0.0));
            scratch
        } else {
            plane
        };
        with_row_shape!((self.out_width, self.stride.1), |wo, stride| {
            self.col2im_rows(block, acc, wp, row_stride, wo, stride)
        });
        if padded {
            for (y, row) in plane.chunks_exact_mut(self.width).enumerate() {
                let start = (y + self.padding.0) * wp + self.padding.1;
                for (d, &v) in row.iter_mut().zip(&scratch[start..start + self.width]) {
                    *d += v;
                }
            }
        }
    }

    /// The rows of [`Self::col2im_plane`], added into the padded plane `acc` (`acc_width`
    /// wide).
    #[inline(always)]
    fn col2im_rows<T: WithDType>(
        &self,
        block: &[T],
        acc: &mut [T],
        acc_width: usize,
        row_stride: usize,
        wo: usize,
        stride: usize,
    ) {
        let (kh, kw) = self.kernel;
        let ho = self.out_height;
        for ki in 0..kh {
            for kj in 0..kw {
                let rows = &block[(ki * kw + kj) * row_stride..][..ho * wo];
                for (oy, row) in rows.chunks_exact(wo).enumerate() {
                    let start = (oy * self.stride.0 + ki * self.dilation.0) * acc_width
                        + kj * self.dilation.1;
                    let dst = &mut acc[start..start + (wo - 1) * stride + 1];
                    for (t, &v) in row.iter().enumerate() {
                        dst[t * stride] += v;
                    }
                }
            }
        }
    }
}

/// im2col as a CPU op: `[N, C, H, W]` → `[N, C·kh·kw, Ho·Wo]`, rows ordered `(c, ki, kj)`.
#[derive(Debug, Clone, Copy)]
struct Im2Col(Im2ColGeometry);

/// col2im as a CPU op: `[N, C·kh·kw, Ho·Wo]` → `[N, C, H, W]`, summing overlapping taps.
#[derive(Debug, Clone, Copy)]
struct Col2Im(Im2ColGeometry);

impl CpuKernel1 for Im2Col {
    const OP: &'static str = "im2col";
    fn run<T: WithDType>(&self, xs: &[T]) -> Result<(Vec<T>, Shape)> {
        let g = &self.0;
        let plane_len = g.height * g.width;
        let block_len = g.taps() * g.out_len();
        let planes = xs.len() / plane_len.max(1);
        let mut out = vec![T::from_f64(0.0); planes * block_len];
        if block_len > 0 {
            out.par_chunks_mut(block_len)
                .zip(xs.par_chunks(plane_len.max(1)))
                .for_each_init(Vec::new, |scratch, (block, plane)| {
                    g.im2col_plane(plane, block, g.out_len(), scratch)
                });
        }
        let n = planes / g.channels.max(1);
        Ok((out, Shape::from((n, g.channels * g.taps(), g.out_len()))))
    }
}

impl CpuKernel1 for Col2Im {
    const OP: &'static str = "col2im";
    fn run<T: WithDType>(&self, cols: &[T]) -> Result<(Vec<T>, Shape)> {
        let g = &self.0;
        let plane_len = g.height * g.width;
        let block_len = g.taps() * g.out_len();
        let planes = cols.len() / block_len.max(1);
        let mut out = vec![T::from_f64(0.0); planes * plane_len];
        if plane_len > 0 && block_len > 0 {
            out.par_chunks_mut(plane_len)
                .zip(cols.par_chunks(block_len))
                .for_each_init(Vec::new, |scratch, (plane, block)| {
                    g.col2im_plane(block, plane, g.out_len(), scratch)
                });
        }
        let n = planes / g.channels.max(1);
        Ok((out, Shape::from((n, g.channels, g.height, g.width))))
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }
    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        self.dispatch(storage, layout)
    }
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.contiguous()?.apply_op1(Col2Im(self.0))?))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im"
    }
    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        self.dispatch(storage, layout)
    }
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.contiguous()?.apply_op1(Im2Col(self.0))?))
    }
}

fn check_geometry_input(op: &'static str, xs: &Tensor, geometry: &Im2ColGeometry) -> Result<()> {
    let (_, c, h, w) = dims4(op, xs)?;
    if (c, h, w) != (geometry.channels, geometry.height, geometry.width) {
        return Err(shape_error(
            op,
            format!(
                "input shape {:?} does not match the geometry's [_, {}, {}, {}]",
                xs.dims(),
                geometry.channels,
                geometry.height,
                geometry.width
            ),
        ));
    }
    Ok(())
}

/// im2col: `[N, C, H, W]` → `[N, C·kh·kw, Ho·Wo]` with rows ordered `(c, ki, kj)` (the order of
/// a PyTorch weight `[O, C, kh, kw]` flattened to `[O, C·kh·kw]`). Differentiable; the CPU
/// runs a parallel kernel, other devices [`im2col_composed`].
pub fn im2col(xs: &Tensor, geometry: &Im2ColGeometry) -> Result<Tensor> {
    check_geometry_input("im2col", xs, geometry)?;
    if xs.device().is_cpu() {
        xs.contiguous()?.apply_op1(Im2Col(*geometry))
    } else {
        im2col_composed(xs, geometry)
    }
}

/// col2im, the adjoint of [`im2col`]: `[N, C·kh·kw, Ho·Wo]` → `[N, C, H, W]`, overlapping
/// taps summed. Differentiable (its backward is im2col). CPU only.
pub fn col2im(cols: &Tensor, geometry: &Im2ColGeometry) -> Result<Tensor> {
    let expected = (geometry.channels * geometry.taps(), geometry.out_len());
    match cols.dims() {
        &[_, k, l] if (k, l) == expected => {}
        dims => {
            return Err(shape_error(
                "col2im",
                format!("expected [N, {}, {}], got {dims:?}", expected.0, expected.1),
            ));
        }
    }
    if !cols.device().is_cpu() {
        candle_core::bail!("col2im: only the CPU has a col2im kernel; use im2col's backward");
    }
    cols.contiguous()?.apply_op1(Col2Im(*geometry))
}

/// im2col from `pad_with_zeros`, strided `narrow`s and `stack`: runs on any device and candle
/// derives its backward (a col2im) from those ops.
pub fn im2col_composed(xs: &Tensor, geometry: &Im2ColGeometry) -> Result<Tensor> {
    check_geometry_input("im2col", xs, geometry)?;
    let g = geometry;
    let n = xs.dim(0)?;
    let padded = xs
        .pad_with_zeros(2, g.padding.0, g.padding.0)?
        .pad_with_zeros(3, g.padding.1, g.padding.1)?;
    let mut taps = Vec::with_capacity(g.taps());
    for ki in 0..g.kernel.0 {
        let rows = strided_narrow(&padded, 2, ki * g.dilation.0, g.out_height, g.stride.0)?;
        for kj in 0..g.kernel.1 {
            taps.push(strided_narrow(
                &rows,
                3,
                kj * g.dilation.1,
                g.out_width,
                g.stride.1,
            )?);
        }
    }
    Tensor::stack(&taps, 2)?.reshape((n, g.channels * g.taps(), g.out_len()))
}

/// 2-D convolution, PyTorch's `F.conv2d(xs, weight, bias, stride, padding, dilation, groups)`.
///
/// `xs` is `[N, C, H, W]`, `weight` `[O, C/groups, kh, kw]`, `bias` `[O]`; the result is
/// `[N, O, Ho, Wo]`. Input and weight gradients come from matrix products and col2im (see the
/// module docs); on the CPU (f32, f64) one fused op runs im2col per image (per chunk of
/// small images) into a reused buffer and calls the GEMM kernels directly, so nothing but the input and weight is kept for
/// the backward. Other devices and dtypes use [`conv2d_composed`]. Shapes that do not fit give
/// an error naming them. Second derivatives are not supported on the CPU path.
pub fn conv2d(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: &Conv2dConfig,
) -> Result<Tensor> {
    let (weight, bias) = (
        crate::autocast::to_compute(weight, xs)?,
        crate::autocast::to_compute_opt(bias, xs)?,
    );
    let (weight, bias) = (&weight, bias.as_ref());
    let plan = ConvPlan::new(xs, weight, bias, cfg)?;
    if !xs.device().is_cpu() && crate::cuda_paths::candle_conv2d_supported(cfg) {
        return crate::cuda_paths::conv2d_candle(xs, weight, bias, cfg);
    }
    if !(xs.device().is_cpu() && matches!(xs.dtype(), DType::F32 | DType::F64)) {
        return conv2d_composed(xs, weight, bias, cfg);
    }
    let ys = xs
        .contiguous()?
        .apply_op2(&weight.contiguous()?, ConvCpu(plan))?;
    match bias {
        Some(bias) => crate::ops::bias::bias_add_at(&ys, bias, 1),
        None => Ok(ys),
    }
}

/// The gradients of [`conv2d`] (without its bias) with respect to the input and the weight,
/// given the gradient `grad_out` of its output: `(dX, dW)`, as PyTorch's
/// `torch.nn.grad.conv2d_input` and `conv2d_weight` give them. On the CPU (f32, f64) these are
/// the kernels that [`conv2d`]'s backward runs, without autograd; elsewhere they come from
/// autograd over [`conv2d_composed`]. `grad_out` must have the output's shape; shapes that do
/// not fit give an error naming them.
pub fn conv2d_grads(
    xs: &Tensor,
    weight: &Tensor,
    grad_out: &Tensor,
    cfg: &Conv2dConfig,
) -> Result<(Tensor, Tensor)> {
    let plan = ConvPlan::new(xs, weight, None, cfg)?;
    let out_shape = plan.out_shape();
    if grad_out.shape() != &out_shape {
        return Err(shape_error(
            "conv2d_grads",
            format!(
                "grad_out shape {:?} is not the output shape {:?} of input {:?} and weight {:?}",
                grad_out.dims(),
                out_shape.dims(),
                xs.dims(),
                weight.dims()
            ),
        ));
    }
    if xs.device().is_cpu() && matches!(xs.dtype(), DType::F32 | DType::F64) {
        let (xs, weight) = (xs.contiguous()?, weight.contiguous()?);
        let grad = grad_out.contiguous()?;
        let grad_xs = grad.apply_op2_no_bwd(&weight, &ConvGradInput(plan))?;
        let grad_w = xs.apply_op2_no_bwd(&grad, &ConvGradWeight(plan))?;
        return Ok((grad_xs, grad_w));
    }
    let xs_var = candle_core::Var::from_tensor(&xs.detach())?;
    let weight_var = candle_core::Var::from_tensor(&weight.detach())?;
    let ys = conv2d_composed(xs_var.as_tensor(), weight_var.as_tensor(), None, cfg)?;
    let grads = (ys * grad_out.detach())?.sum_all()?.backward()?;
    let grad_of = |var: &candle_core::Var| {
        grads
            .get(var.as_tensor())
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg("conv2d_grads: no gradient".into()))
    };
    Ok((grad_of(&xs_var)?, grad_of(&weight_var)?))
}

/// Up to this many output channels per group, the weight gradient is computed as
/// `dWᵀ = cols · dYᵀ` (and transposed), above it as `dW = dY · colsᵀ`. Measured on eight
/// ResNet-50 convolutions (batch 8, 2 threads, dX + dW): the transposed order is 3–6% faster
/// at 64 output channels, equal at 128, and up to 3× slower at 256 and more (BENCHMARKS.md).
const TRANSPOSED_WEIGHT_GRAD_MAX_OUT: usize = 128;

/// Images whose outputs have fewer positions than this are batched into one product with at
/// least this many columns (see `ConvPlan::chunk_len`).
const CHUNK_COLUMNS: usize = 512;

/// The most elements a chunk's im2col (or output) matrix may hold: 4 MiB of f32.
const CHUNK_MAX_ELEMENTS: usize = 1 << 20;

/// Shapes of one convolution, validated.
#[derive(Debug, Clone, Copy)]
struct ConvPlan {
    batch: usize,
    out_channels: usize,
    groups: usize,
    geometry: Im2ColGeometry,
    /// 1×1, stride 1, no padding: the input is its own im2col matrix.
    pointwise: bool,
}

impl ConvPlan {
    fn new(
        xs: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        cfg: &Conv2dConfig,
    ) -> Result<Self> {
        const OP: &str = "conv2d";
        let (n, c, h, w) = dims4(OP, xs)?;
        let (o, c_per_group, kh, kw) = match weight.dims() {
            &[o, cg, kh, kw] => (o, cg, kh, kw),
            dims => {
                return Err(shape_error(
                    OP,
                    format!("weight must be [O, C/groups, kh, kw], got {dims:?}"),
                ));
            }
        };
        let groups = cfg.groups;
        if groups == 0 || c != c_per_group * groups || o % groups != 0 {
            return Err(shape_error(
                OP,
                format!(
                    "input {:?} and weight {:?} do not agree with groups = {groups} \
                 (need C = weight.dim(1)·groups and O divisible by groups)",
                    xs.dims(),
                    weight.dims()
                ),
            ));
        }
        if let Some(bias) = bias
            && bias.dims() != [o]
        {
            return Err(shape_error(
                OP,
                format!(
                    "bias {:?} does not match weight {:?} (expected [{o}])",
                    bias.dims(),
                    weight.dims()
                ),
            ));
        }
        let geometry = Im2ColGeometry::new(c, (h, w), (kh, kw), cfg).map_err(|_| {
            shape_error(
                OP,
                format!(
                    "kernel {:?} does not fit input {:?} with {cfg:?}",
                    weight.dims(),
                    xs.dims()
                ),
            )
        })?;
        Ok(Self {
            batch: n,
            out_channels: o,
            groups,
            geometry,
            pointwise: kh == 1 && kw == 1 && cfg.stride == (1, 1) && cfg.padding == (0, 0),
        })
    }
}

/// The convolution composed from [`im2col`] (or [`im2col_composed`] off the CPU) and candle's
/// matmul, whose backward candle derives: runs on any device and dtype. The graph keeps the
/// im2col matrix (kh·kw times the input) until the backward pass.
pub fn conv2d_composed(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: &Conv2dConfig,
) -> Result<Tensor> {
    let plan = ConvPlan::new(xs, weight, bias, cfg)?;
    let (n, c, h, w) = xs.dims4()?;
    let (o, c_per_group, kh, kw) = weight.dims4()?;
    let groups = plan.groups;
    let geometry = plan.geometry;
    let (ho, wo) = (geometry.out_height, geometry.out_width);
    let out_len = ho * wo;
    let pointwise = plan.pointwise;
    // [N, C·kh·kw, Ho·Wo]
    let cols = if pointwise {
        xs.reshape((n, c, h * w))?
    } else {
        im2col(xs, &geometry)?
    };
    let ys = if groups == 1 {
        // One gemm per image against the shared weight (a stride-0 batch, no copy).
        let w2 = weight.reshape((o, c * kh * kw))?;
        w2.broadcast_left(n)?.matmul(&cols)?
    } else {
        // Groups become the batch of the matmul: [G, K/G, N·L] against [G, O/G, K/G].
        let k_per_group = c_per_group * kh * kw;
        let o_per_group = o / groups;
        let cols = cols
            .reshape((n, groups, k_per_group, out_len))?
            .permute((1, 2, 0, 3))?
            .contiguous()?
            .reshape((groups, k_per_group, n * out_len))?;
        let w3 = weight.reshape((groups, o_per_group, k_per_group))?;
        w3.matmul(&cols)?
            .reshape((groups, o_per_group, n, out_len))?
            .permute((2, 0, 1, 3))?
            .contiguous()?
    };
    let ys = ys.reshape((n, o, ho, wo))?;
    match bias {
        Some(bias) => ys.broadcast_add(&bias.reshape((1, o, 1, 1))?),
        None => Ok(ys),
    }
}

/// A convolution layer with PyTorch's parameter names (`weight`, and `bias` when present).
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    cfg: Conv2dConfig,
}

impl Conv2d {
    /// A layer with a bias, weights from `vb` (`weight` `[out, in/groups, k, k]`, `bias`
    /// `[out]`), initialised like PyTorch (uniform ±1/√fan_in) when `vb` creates them.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        cfg: Conv2dConfig,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        let mut layer = Self::new_no_bias(in_channels, out_channels, kernel_size, cfg, vb)?;
        let bound = layer.init_bound();
        layer.bias = Some(vb.get_with_hints(
            out_channels,
            "bias",
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?);
        Ok(layer)
    }

    /// A layer without a bias (`weight` only).
    pub fn new_no_bias(
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        cfg: Conv2dConfig,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        if cfg.groups == 0
            || !in_channels.is_multiple_of(cfg.groups)
            || !out_channels.is_multiple_of(cfg.groups)
        {
            return Err(shape_error(
                "Conv2d",
                format!(
                    "{in_channels} input and {out_channels} output channels are not divisible \
                     by groups = {}",
                    cfg.groups
                ),
            ));
        }
        let fan_in = (in_channels / cfg.groups * kernel_size * kernel_size) as f64;
        let bound = 1.0 / fan_in.sqrt();
        let weight = vb.get_with_hints(
            (
                out_channels,
                in_channels / cfg.groups,
                kernel_size,
                kernel_size,
            ),
            "weight",
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?;
        Ok(Self {
            weight,
            bias: None,
            cfg,
        })
    }

    /// A layer from given tensors (`weight` `[O, C/groups, kh, kw]`, `bias` `[O]`).
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>, cfg: Conv2dConfig) -> Self {
        Self { weight, bias, cfg }
    }

    fn init_bound(&self) -> f64 {
        let dims = self.weight.dims();
        let fan_in: usize = dims[1..].iter().product();
        1.0 / (fan_in as f64).sqrt()
    }

    /// The weight `[O, C/groups, kh, kw]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias `[O]`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Stride, padding, dilation and groups.
    pub fn config(&self) -> &Conv2dConfig {
        &self.cfg
    }
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        conv2d(xs, &self.weight, self.bias.as_ref(), &self.cfg)
    }
}

/// The fused CPU convolution: `(xs, weight)` → `ys` without bias.
#[derive(Debug, Clone, Copy)]
struct ConvCpu(ConvPlan);

/// `(grad_ys, weight)` → `grad_xs`.
#[derive(Debug, Clone, Copy)]
struct ConvGradInput(ConvPlan);

/// `(xs, grad_ys)` → `grad_weight`.
#[derive(Debug, Clone, Copy)]
struct ConvGradWeight(ConvPlan);

impl ConvPlan {
    fn in_channels(&self) -> usize {
        self.geometry.channels
    }
    fn image_len(&self) -> usize {
        self.geometry.channels * self.geometry.height * self.geometry.width
    }
    fn out_len(&self) -> usize {
        self.geometry.out_len()
    }
    /// Rows of one group's im2col matrix (`C/G·kh·kw`).
    fn group_k(&self) -> usize {
        self.in_channels() / self.groups * self.geometry.taps()
    }
    fn group_out(&self) -> usize {
        self.out_channels / self.groups
    }

    /// Rows of the whole im2col matrix of one image (`C·kh·kw`).
    fn cols_rows(&self) -> usize {
        self.in_channels() * self.geometry.taps()
    }

    /// How many images one chunk holds. A chunk's im2col matrices sit side by side
    /// (`[C·kh·kw, n·L]`), so the products of small images get enough columns to run at the
    /// GEMM kernels' speed instead of paying their per-call cost once per image; large images
    /// (`L ≥ CHUNK_COLUMNS`) go one at a time, as before.
    fn chunk_len(&self, images: usize) -> usize {
        let l = self.out_len().max(1);
        let wanted = CHUNK_COLUMNS.div_ceil(l);
        let per_image = (self.cols_rows().max(self.out_channels) * l).max(1);
        let fits = (CHUNK_MAX_ELEMENTS / per_image).max(1);
        wanted.min(fits).min(images).max(1)
    }

    /// The batch split into contiguous parts, one per rayon thread when there are at least as
    /// many images as threads (whole images per thread, single-threaded kernels: no
    /// synchronisation until the end), else one part whose kernels use every thread. The flag
    /// says whether the kernels inside a part should be parallel.
    fn parts(&self) -> (Vec<std::ops::Range<usize>>, bool) {
        let threads = rayon::current_num_threads();
        if threads > 1 && self.batch >= threads {
            let per_thread = self.batch.div_ceil(threads);
            let parts = (0..self.batch)
                .step_by(per_thread)
                .map(|start| start..(start + per_thread).min(self.batch))
                .collect();
            (parts, false)
        } else {
            (std::iter::once(0..self.batch).collect(), true)
        }
    }

    /// Runs `run(part, out, parallel)` for each part of [`Self::parts`], `out` being the part's
    /// images' share of `outputs` (`per_image` elements each): the parts on their own threads
    /// with single-threaded kernels, or the one part with parallel kernels.
    fn for_each_part<T: Send>(
        &self,
        outputs: &mut [T],
        per_image: usize,
        run: impl Fn(std::ops::Range<usize>, &mut [T], bool) -> Result<()> + Sync,
    ) -> Result<()> {
        let (parts, parallel) = self.parts();
        let mut shares = Vec::with_capacity(parts.len());
        let mut rest = outputs;
        for part in parts {
            let (share, tail) = rest.split_at_mut(part.len() * per_image);
            shares.push((part, share));
            rest = tail;
        }
        if parallel {
            shares
                .into_iter()
                .try_for_each(|(part, share)| run(part, share, true))
        } else {
            shares
                .into_par_iter()
                .try_for_each(|(part, share)| run(part, share, false))
        }
    }

    /// im2col of `images` (consecutive images of `xs`) into `cols`, laid out `[C·kh·kw, n·L]`
    /// with image `j` in columns `j·L..(j+1)·L`. Returns the matrix: `xs` itself for one image
    /// of a pointwise convolution. Parallel over channels when `parallel` and one image.
    fn gather_cols<'a, T: WithDType>(
        &self,
        xs: &'a [T],
        images: std::ops::Range<usize>,
        cols: &'a mut [T],
        parallel: bool,
    ) -> &'a [T] {
        let g = &self.geometry;
        let (plane, l, taps) = (g.height * g.width, g.out_len(), g.taps());
        let width = images.len() * l;
        let image_at = |index: usize| &xs[index * self.image_len()..][..self.image_len()];
        if images.len() == 1 {
            let image = image_at(images.start);
            if self.pointwise {
                return image;
            }
            let cols = &mut cols[..self.cols_rows() * l];
            if parallel {
                cols.par_chunks_mut(taps * l)
                    .zip(image.par_chunks(plane))
                    .for_each_init(Vec::new, |scratch, (block, plane)| {
                        g.im2col_plane(plane, block, l, scratch)
                    });
            } else {
                let mut scratch = Vec::new();
                for (block, plane) in cols
                    .chunks_exact_mut(taps * l)
                    .zip(image.chunks_exact(plane))
                {
                    g.im2col_plane(plane, block, l, &mut scratch);
                }
            }
            return cols;
        }
        let cols = &mut cols[..self.cols_rows() * width];
        let mut scratch = Vec::new();
        for (j, index) in images.enumerate() {
            for (channel, plane) in image_at(index).chunks_exact(plane).enumerate() {
                let block = &mut cols[channel * taps * width + j * l..];
                g.im2col_plane(plane, block, width, &mut scratch);
            }
        }
        cols
    }

    /// The output gradients of `images` as one `[O, n·L]` matrix (image `j` in columns
    /// `j·L..(j+1)·L`): `grad` itself for one image, else copied into `scratch`.
    fn gather_grad<'a, T: WithDType>(
        &self,
        grad: &'a [T],
        images: std::ops::Range<usize>,
        scratch: &'a mut [T],
    ) -> &'a [T] {
        let (l, o) = (self.out_len(), self.out_channels);
        if images.len() == 1 {
            return &grad[images.start * o * l..][..o * l];
        }
        let width = images.len() * l;
        let scratch = &mut scratch[..o * width];
        for (j, index) in images.enumerate() {
            let image = &grad[index * o * l..][..o * l];
            for (channel, row) in image.chunks_exact(l).enumerate() {
                scratch[channel * width + j * l..][..l].copy_from_slice(row);
            }
        }
        scratch
    }

    /// Whether some dimension other than the batch is empty (no channels, no pixels, no
    /// outputs): every result is then zeros or empty, and the per-image loops would chunk by 0.
    fn is_degenerate(&self) -> bool {
        self.image_len() == 0 || self.out_channels * self.out_len() == 0
    }

    fn forward<T: WithDType + GemmScalar>(&self, xs: &[T], weight: &[T]) -> Result<Vec<T>> {
        let out_image = self.out_channels * self.out_len();
        let mut ys = vec![T::ZERO; self.batch * out_image];
        if self.is_degenerate() {
            return Ok(ys);
        }
        self.for_each_part(&mut ys, out_image, |part, out, parallel| {
            self.forward_part(xs, weight, part, out, parallel)
        })?;
        Ok(ys)
    }

    /// `Y[n] = W · cols(X[n])` for the images of `part` into `ys` (those images' outputs).
    fn forward_part<T: WithDType + GemmScalar>(
        &self,
        xs: &[T],
        weight: &[T],
        part: std::ops::Range<usize>,
        ys: &mut [T],
        parallel: bool,
    ) -> Result<()> {
        let (l, kg, og, o) = (
            self.out_len(),
            self.group_k(),
            self.group_out(),
            self.out_channels,
        );
        let chunk = self.chunk_len(part.len());
        let mut cols = vec![T::ZERO; self.cols_rows() * chunk * l];
        let mut wide = if chunk > 1 {
            vec![T::ZERO; o * chunk * l]
        } else {
            Vec::new()
        };
        for start in part.clone().step_by(chunk) {
            let images = start..(start + chunk).min(part.end);
            let (n, width) = (images.len(), images.len() * l);
            let out = &mut ys[(start - part.start) * o * l..][..n * o * l];
            let cols = self.gather_cols(xs, images, &mut cols, parallel);
            // One image writes its output in place; a chunk writes `[O, n·L]` and scatters it.
            let dst: &mut [T] = if n == 1 { &mut *out } else { &mut wide };
            for g in 0..self.groups {
                gemm_threaded(
                    &mut dst[g * og * width..(g + 1) * og * width],
                    false,
                    MatRef::row_major(&weight[g * og * kg..(g + 1) * og * kg], og, kg),
                    MatRef::row_major(&cols[g * kg * width..(g + 1) * kg * width], kg, width),
                    parallel,
                )?;
            }
            if n > 1 {
                for (j, image) in out.chunks_exact_mut(o * l).enumerate() {
                    for (channel, row) in image.chunks_exact_mut(l).enumerate() {
                        row.copy_from_slice(&wide[channel * width + j * l..][..l]);
                    }
                }
            }
        }
        Ok(())
    }

    fn grad_input<T: WithDType + GemmScalar>(&self, grad: &[T], weight: &[T]) -> Result<Vec<T>> {
        let image_len = self.image_len();
        let mut grad_xs = vec![T::ZERO; self.batch * image_len];
        if self.is_degenerate() {
            return Ok(grad_xs);
        }
        self.for_each_part(&mut grad_xs, image_len, |part, out, parallel| {
            self.grad_input_part(grad, weight, part, out, parallel)
        })?;
        Ok(grad_xs)
    }

    /// `dX[n] = col2im(Wᵀ · dY[n])` for the images of `part` into `grad_xs` (those images'
    /// input gradients); products and col2im spread over rayon's threads when `parallel`.
    fn grad_input_part<T: WithDType + GemmScalar>(
        &self,
        grad: &[T],
        weight: &[T],
        part: std::ops::Range<usize>,
        grad_xs: &mut [T],
        parallel: bool,
    ) -> Result<()> {
        let g = &self.geometry;
        let (l, kg, og) = (self.out_len(), self.group_k(), self.group_out());
        let (plane, taps) = (g.height * g.width, g.taps());
        let chunk = self.chunk_len(part.len());
        let mut dcols = vec![T::ZERO; self.cols_rows() * chunk * l];
        let mut dy_scratch = if chunk > 1 {
            vec![T::ZERO; self.out_channels * chunk * l]
        } else {
            Vec::new()
        };
        for start in part.clone().step_by(chunk) {
            let images = start..(start + chunk).min(part.end);
            let (n, width) = (images.len(), images.len() * l);
            let out =
                &mut grad_xs[(start - part.start) * self.image_len()..][..n * self.image_len()];
            let dy = self.gather_grad(grad, images, &mut dy_scratch);
            // A single image of a pointwise convolution is its own im2col matrix.
            let in_place = self.pointwise && n == 1;
            let dst: &mut [T] = if in_place {
                &mut *out
            } else {
                &mut dcols[..self.cols_rows() * width]
            };
            for group in 0..self.groups {
                // dcols_g = W_gᵀ · dY_g
                let lhs =
                    MatRef::row_major(&weight[group * og * kg..(group + 1) * og * kg], og, kg).t();
                let rhs =
                    MatRef::row_major(&dy[group * og * width..(group + 1) * og * width], og, width);
                gemm_threaded(
                    &mut dst[group * kg * width..(group + 1) * kg * width],
                    false,
                    lhs,
                    rhs,
                    parallel,
                )?;
            }
            if in_place {
                continue;
            }
            for (j, image) in out.chunks_exact_mut(self.image_len()).enumerate() {
                let one_plane = |scratch: &mut Vec<T>, (channel, plane): (usize, &mut [T])| {
                    plane.fill(T::ZERO);
                    let block = &dcols[channel * taps * width + j * l..];
                    g.col2im_plane(block, plane, width, scratch);
                };
                if parallel && n == 1 {
                    image
                        .par_chunks_mut(plane)
                        .enumerate()
                        .for_each_init(Vec::new, one_plane);
                } else {
                    let mut scratch = Vec::new();
                    for item in image.chunks_exact_mut(plane).enumerate() {
                        one_plane(&mut scratch, item);
                    }
                }
            }
        }
        Ok(())
    }

    fn grad_weight<T: WithDType + GemmScalar>(&self, xs: &[T], grad: &[T]) -> Result<Vec<T>> {
        let weight_len = self.out_channels * self.group_k();
        if self.is_degenerate() {
            return Ok(vec![T::ZERO; weight_len]);
        }
        let (parts, parallel) = self.parts();
        if parallel {
            let mut grad_w = vec![T::ZERO; weight_len];
            for part in parts {
                self.grad_weight_part(part, xs, grad, &mut grad_w, true)?;
            }
            return Ok(grad_w);
        }
        // dW is small and a sum over the images: each thread sums its own part of the batch
        // with single-threaded products, then the partial sums are added. Splitting each
        // product across threads instead synchronises them once per chunk for a small output.
        let partials = parts
            .into_par_iter()
            .map(|part| {
                let mut grad_w = vec![T::ZERO; weight_len];
                self.grad_weight_part(part, xs, grad, &mut grad_w, false)?;
                Ok(grad_w)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut partials = partials.into_iter();
        let mut grad_w = partials.next().unwrap_or_else(|| vec![T::ZERO; weight_len]);
        for partial in partials {
            for (sum, value) in grad_w.iter_mut().zip(partial) {
                *sum += value;
            }
        }
        Ok(grad_w)
    }

    /// Adds `dY[n] · cols(X[n])ᵀ` for each image `n` in `part` into `grad_w`, a chunk of images
    /// per product; products and im2col spread over rayon's threads when `parallel`.
    fn grad_weight_part<T: WithDType + GemmScalar>(
        &self,
        part: std::ops::Range<usize>,
        xs: &[T],
        grad: &[T],
        grad_w: &mut [T],
        parallel: bool,
    ) -> Result<()> {
        let (l, kg, og) = (self.out_len(), self.group_k(), self.group_out());
        let chunk = self.chunk_len(part.len());
        let mut cols = vec![T::ZERO; self.cols_rows() * chunk * l];
        let mut dy_scratch = if chunk > 1 {
            vec![T::ZERO; self.out_channels * chunk * l]
        } else {
            Vec::new()
        };
        let mut transposed = if og > TRANSPOSED_WEIGHT_GRAD_MAX_OUT {
            Vec::new()
        } else {
            vec![T::ZERO; kg * og]
        };
        for start in part.clone().step_by(chunk) {
            let images = start..(start + chunk).min(part.end);
            let width = images.len() * l;
            let dy = self.gather_grad(grad, images.clone(), &mut dy_scratch);
            let cols = self.gather_cols(xs, images, &mut cols, parallel);
            for group in 0..self.groups {
                let dy =
                    MatRef::row_major(&dy[group * og * width..(group + 1) * og * width], og, width);
                let cols = MatRef::row_major(
                    &cols[group * kg * width..(group + 1) * kg * width],
                    kg,
                    width,
                );
                let block = &mut grad_w[group * og * kg..(group + 1) * og * kg];
                if og > TRANSPOSED_WEIGHT_GRAD_MAX_OUT {
                    gemm_threaded(block, true, dy, cols.t(), parallel)?;
                    continue;
                }
                // dWᵀ = cols · dYᵀ, then added transposed: faster for few output channels.
                gemm_threaded(&mut transposed, false, cols, dy.t(), parallel)?;
                for (k, row) in transposed.chunks_exact(og).enumerate() {
                    for (o, &value) in row.iter().enumerate() {
                        block[o * kg + k] += value;
                    }
                }
            }
        }
        Ok(())
    }

    fn out_shape(&self) -> Shape {
        Shape::from((
            self.batch,
            self.out_channels,
            self.geometry.out_height,
            self.geometry.out_width,
        ))
    }
    fn in_shape(&self) -> Shape {
        Shape::from((
            self.batch,
            self.geometry.channels,
            self.geometry.height,
            self.geometry.width,
        ))
    }
    fn weight_shape(&self) -> Shape {
        Shape::from((
            self.out_channels,
            self.geometry.channels / self.groups,
            self.geometry.kernel.0,
            self.geometry.kernel.1,
        ))
    }
}

impl CustomOp2 for ConvCpu {
    fn name(&self) -> &'static str {
        "conv2d"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = float_slices!("conv2d", (s1, l1), (s2, l2); |xs, w| self.0.forward(xs, w)?);
        Ok((out, self.0.out_shape()))
    }
    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad_res.contiguous()?;
        // An argument that no variable depends on needs no gradient: candle would store it
        // and never read it.
        let grad_xs = if xs.track_op() {
            Some(grad.apply_op2_no_bwd(weight, &ConvGradInput(self.0))?)
        } else {
            None
        };
        let grad_w = if weight.track_op() {
            Some(xs.apply_op2_no_bwd(&grad, &ConvGradWeight(self.0))?)
        } else {
            None
        };
        Ok((grad_xs, grad_w))
    }
}

impl CustomOp2 for ConvGradInput {
    fn name(&self) -> &'static str {
        "conv2d_grad_input"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = float_slices!("conv2d_grad_input", (s1, l1), (s2, l2); |g, w| self
            .0
            .grad_input(g, w)?);
        Ok((out, self.0.in_shape()))
    }
}

impl CustomOp2 for ConvGradWeight {
    fn name(&self) -> &'static str {
        "conv2d_grad_weight"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = float_slices!("conv2d_grad_weight", (s1, l1), (s2, l2); |xs, g| self
            .0
            .grad_weight(xs, g)?);
        Ok((out, self.0.weight_shape()))
    }
}
