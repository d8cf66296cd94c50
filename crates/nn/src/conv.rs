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
//! that no variable depends on (the image fed to a stem, a frozen weight). The composed path
//! used elsewhere keeps `cols` alive until the backward pass (kh·kw times the input's size).
//! [`conv2d_grads`] runs the backward kernels alone.

use crate::ops::float_pair;
use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, DType, Layout, Module, Result, Shape, Tensor, WithDType,
};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;

use crate::ops::gemm::{GemmScalar, MatRef, gemm, gemm_threaded};
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

    /// The range of output positions `o` along one axis for which
    /// `o·stride + tap·dilation − padding` lands inside `[0, len)`, and that input offset at
    /// `o = 0` (possibly negative).
    fn valid_range(
        len: usize,
        out_len: usize,
        tap: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
    ) -> (usize, usize, isize) {
        let shift = (tap * dilation) as isize - padding as isize;
        // First o with o·stride + shift ≥ 0.
        let lo = if shift >= 0 {
            0
        } else {
            ((-shift) as usize).div_ceil(stride)
        };
        // First o with o·stride + shift ≥ len.
        let hi = if (len as isize) <= shift {
            0
        } else {
            ((len as isize - shift) as usize).div_ceil(stride)
        };
        let lo = lo.min(out_len);
        (lo, hi.clamp(lo, out_len), shift)
    }

    /// Fills the `[taps, Ho·Wo]` block of one input plane.
    fn im2col_plane<T: WithDType>(&self, plane: &[T], block: &mut [T]) {
        let (kh, kw) = self.kernel;
        let (ho, wo) = (self.out_height, self.out_width);
        let zero = T::from_f64(0.0);
        for ki in 0..kh {
            let (ylo, yhi, yshift) = Self::valid_range(
                self.height,
                ho,
                ki,
                self.stride.0,
                self.padding.0,
                self.dilation.0,
            );
            for kj in 0..kw {
                let (xlo, xhi, xshift) = Self::valid_range(
                    self.width,
                    wo,
                    kj,
                    self.stride.1,
                    self.padding.1,
                    self.dilation.1,
                );
                let rows = &mut block[(ki * kw + kj) * ho * wo..(ki * kw + kj + 1) * ho * wo];
                for (oy, row) in rows.chunks_exact_mut(wo).enumerate() {
                    if oy < ylo || oy >= yhi || xlo >= xhi {
                        row.fill(zero);
                        continue;
                    }
                    let iy = (oy * self.stride.0) as isize + yshift;
                    let src = &plane[iy as usize * self.width..(iy as usize + 1) * self.width];
                    row[..xlo].fill(zero);
                    row[xhi..].fill(zero);
                    let first = (xlo * self.stride.1) as isize + xshift;
                    let first = first as usize;
                    if self.stride.1 == 1 {
                        row[xlo..xhi].copy_from_slice(&src[first..first + (xhi - xlo)]);
                    } else {
                        for (t, out) in row[xlo..xhi].iter_mut().enumerate() {
                            *out = src[first + t * self.stride.1];
                        }
                    }
                }
            }
        }
    }

    /// Adds the `[taps, Ho·Wo]` block of one plane back into that plane (the adjoint of
    /// [`Self::im2col_plane`]).
    fn col2im_plane<T: WithDType>(&self, block: &[T], plane: &mut [T]) {
        let (kh, kw) = self.kernel;
        let (ho, wo) = (self.out_height, self.out_width);
        for ki in 0..kh {
            let (ylo, yhi, yshift) = Self::valid_range(
                self.height,
                ho,
                ki,
                self.stride.0,
                self.padding.0,
                self.dilation.0,
            );
            for kj in 0..kw {
                let (xlo, xhi, xshift) = Self::valid_range(
                    self.width,
                    wo,
                    kj,
                    self.stride.1,
                    self.padding.1,
                    self.dilation.1,
                );
                if xlo >= xhi {
                    continue;
                }
                let rows = &block[(ki * kw + kj) * ho * wo..(ki * kw + kj + 1) * ho * wo];
                for (oy, row) in rows.chunks_exact(wo).enumerate().take(yhi).skip(ylo) {
                    let iy = (oy * self.stride.0) as isize + yshift;
                    let dst = &mut plane[iy as usize * self.width..(iy as usize + 1) * self.width];
                    let first = ((xlo * self.stride.1) as isize + xshift) as usize;
                    if self.stride.1 == 1 {
                        for (d, &v) in dst[first..first + (xhi - xlo)]
                            .iter_mut()
                            .zip(&row[xlo..xhi])
                        {
                            *d += v;
                        }
                    } else {
                        for (t, &v) in row[xlo..xhi].iter().enumerate() {
                            dst[first + t * self.stride.1] += v;
                        }
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
                .for_each(|(block, plane)| g.im2col_plane(plane, block));
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
                .for_each(|(plane, block)| g.col2im_plane(block, plane));
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
/// module docs); on the CPU (f32, f64) one fused op runs im2col per image into a reused
/// buffer and calls the GEMM kernels directly, so nothing but the input and weight is kept for
/// the backward. Other devices and dtypes use [`conv2d_composed`]. Shapes that do not fit give
/// an error naming them. Second derivatives are not supported on the CPU path.
pub fn conv2d(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: &Conv2dConfig,
) -> Result<Tensor> {
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
        Some(bias) => ys.broadcast_add(&bias.reshape((1, plan.out_channels, 1, 1))?),
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

    /// The im2col buffer of one image (`[C·kh·kw, L]`), or nothing for a pointwise
    /// convolution, whose input is its own im2col matrix.
    fn cols_scratch<T: WithDType>(&self) -> Vec<T> {
        if self.pointwise {
            Vec::new()
        } else {
            vec![T::from_f64(0.0); self.in_channels() * self.geometry.taps() * self.out_len()]
        }
    }

    /// im2col of one image into `cols` (`[C·kh·kw, L]`), parallel over channels when
    /// `parallel`.
    fn im2col_image<T: WithDType>(&self, image: &[T], cols: &mut [T], parallel: bool) {
        let g = &self.geometry;
        let plane = g.height * g.width;
        let block = g.taps() * g.out_len();
        if parallel {
            cols.par_chunks_mut(block)
                .zip(image.par_chunks(plane))
                .for_each(|(block, plane)| g.im2col_plane(plane, block));
        } else {
            for (block, plane) in cols.chunks_exact_mut(block).zip(image.chunks_exact(plane)) {
                g.im2col_plane(plane, block);
            }
        }
    }

    /// col2im of one image's `cols` into `image` (overwritten), parallel over channels when
    /// `parallel`.
    fn col2im_image<T: WithDType>(&self, cols: &[T], image: &mut [T], parallel: bool) {
        let g = &self.geometry;
        let plane = g.height * g.width;
        let block = g.taps() * g.out_len();
        let one_plane = |(plane, block): (&mut [T], &[T])| {
            plane.fill(T::from_f64(0.0));
            g.col2im_plane(block, plane);
        };
        if parallel {
            image
                .par_chunks_mut(plane)
                .zip(cols.par_chunks(block))
                .for_each(one_plane);
        } else {
            image
                .chunks_exact_mut(plane)
                .zip(cols.chunks_exact(block))
                .for_each(one_plane);
        }
    }

    /// Whether some dimension other than the batch is empty (no channels, no pixels, no
    /// outputs): every result is then zeros or empty, and the per-image loops would chunk by 0.
    fn is_degenerate(&self) -> bool {
        self.image_len() == 0 || self.out_channels * self.out_len() == 0
    }

    fn forward<T: WithDType + GemmScalar>(&self, xs: &[T], weight: &[T]) -> Result<Vec<T>> {
        let (l, kg, og) = (self.out_len(), self.group_k(), self.group_out());
        let mut ys = vec![T::ZERO; self.batch * self.out_channels * l];
        if self.is_degenerate() {
            return Ok(ys);
        }
        let mut cols = self.cols_scratch();
        for (image, out) in xs
            .chunks_exact(self.image_len())
            .zip(ys.chunks_exact_mut(self.out_channels * l))
        {
            let cols: &[T] = if self.pointwise {
                image
            } else {
                self.im2col_image(image, &mut cols, true);
                &cols
            };
            for g in 0..self.groups {
                gemm(
                    &mut out[g * og * l..(g + 1) * og * l],
                    false,
                    MatRef::row_major(&weight[g * og * kg..(g + 1) * og * kg], og, kg),
                    MatRef::row_major(&cols[g * kg * l..(g + 1) * kg * l], kg, l),
                )?;
            }
        }
        Ok(ys)
    }

    fn grad_input<T: WithDType + GemmScalar>(&self, grad: &[T], weight: &[T]) -> Result<Vec<T>> {
        let mut grad_xs = vec![T::ZERO; self.batch * self.image_len()];
        if self.is_degenerate() {
            return Ok(grad_xs);
        }
        let threads = rayon::current_num_threads();
        if threads > 1 && self.batch >= threads {
            // Whole images per thread, each with single-threaded products and col2im: no
            // synchronisation between threads until the end.
            let per_thread = self.batch.div_ceil(threads);
            grad_xs
                .par_chunks_mut(per_thread * self.image_len())
                .zip(grad.par_chunks(per_thread * self.out_channels * self.out_len()))
                .try_for_each(|(grad_xs, grad)| self.grad_input_of(grad, weight, grad_xs, false))?;
        } else {
            self.grad_input_of(grad, weight, &mut grad_xs, true)?;
        }
        Ok(grad_xs)
    }

    /// `dX[n] = col2im(Wᵀ · dY[n])` for the images of `grad` into `grad_xs`; each product and
    /// col2im spread over rayon's threads when `parallel`, else on this thread.
    fn grad_input_of<T: WithDType + GemmScalar>(
        &self,
        grad: &[T],
        weight: &[T],
        grad_xs: &mut [T],
        parallel: bool,
    ) -> Result<()> {
        let (l, kg, og) = (self.out_len(), self.group_k(), self.group_out());
        let mut cols = self.cols_scratch();
        for (g_out, g_in) in grad
            .chunks_exact(self.out_channels * l)
            .zip(grad_xs.chunks_exact_mut(self.image_len()))
        {
            let dcols: &mut [T] = if self.pointwise { g_in } else { &mut cols };
            for group in 0..self.groups {
                // dcols_g = W_gᵀ · dY_g
                let dst = &mut dcols[group * kg * l..(group + 1) * kg * l];
                let lhs =
                    MatRef::row_major(&weight[group * og * kg..(group + 1) * og * kg], og, kg).t();
                let rhs = MatRef::row_major(&g_out[group * og * l..(group + 1) * og * l], og, l);
                gemm_threaded(dst, false, lhs, rhs, parallel)?;
            }
            if !self.pointwise {
                self.col2im_image(&cols, g_in, parallel);
            }
        }
        Ok(())
    }

    fn grad_weight<T: WithDType + GemmScalar>(&self, xs: &[T], grad: &[T]) -> Result<Vec<T>> {
        let weight_len = self.out_channels * self.group_k();
        if self.is_degenerate() {
            return Ok(vec![T::ZERO; weight_len]);
        }
        let threads = rayon::current_num_threads();
        if threads <= 1 || self.batch < threads {
            let mut grad_w = vec![T::ZERO; weight_len];
            self.grad_weight_of(0..self.batch, xs, grad, &mut grad_w, true)?;
            return Ok(grad_w);
        }
        // dW is small and a sum over the images: each thread sums its own share of the batch
        // with single-threaded products, then the partial sums are added. Splitting each
        // product across threads instead synchronises them once per image for a small output.
        let per_thread = self.batch.div_ceil(threads);
        let partials = (0..self.batch.div_ceil(per_thread))
            .into_par_iter()
            .map(|part| {
                let images = part * per_thread..((part + 1) * per_thread).min(self.batch);
                let mut grad_w = vec![T::ZERO; weight_len];
                self.grad_weight_of(images, xs, grad, &mut grad_w, false)?;
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

    /// Adds `dY[n] · cols(X[n])ᵀ` for each image `n` in `images` into `grad_w`; each product
    /// and im2col spread over rayon's threads when `parallel`, else on this thread.
    fn grad_weight_of<T: WithDType + GemmScalar>(
        &self,
        images: std::ops::Range<usize>,
        xs: &[T],
        grad: &[T],
        grad_w: &mut [T],
        parallel: bool,
    ) -> Result<()> {
        let (l, kg, og) = (self.out_len(), self.group_k(), self.group_out());
        let mut cols = self.cols_scratch();
        let mut transposed = if og > TRANSPOSED_WEIGHT_GRAD_MAX_OUT {
            Vec::new()
        } else {
            vec![T::ZERO; kg * og]
        };
        for index in images {
            let image = &xs[index * self.image_len()..][..self.image_len()];
            let g_out = &grad[index * self.out_channels * l..][..self.out_channels * l];
            let cols: &[T] = if self.pointwise {
                image
            } else {
                self.im2col_image(image, &mut cols, parallel);
                &cols
            };
            for group in 0..self.groups {
                let dy = MatRef::row_major(&g_out[group * og * l..(group + 1) * og * l], og, l);
                let cols = MatRef::row_major(&cols[group * kg * l..(group + 1) * kg * l], kg, l);
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
        let out = float_pair!("conv2d", s1, l1, s2, l2, |xs, w| self.0.forward(xs, w)?);
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
        let out = float_pair!("conv2d_grad_input", s1, l1, s2, l2, |g, w| self
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
        let out = float_pair!("conv2d_grad_weight", s1, l1, s2, l2, |xs, g| self
            .0
            .grad_weight(xs, g)?);
        Ok((out, self.0.weight_shape()))
    }
}
