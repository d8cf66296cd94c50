//! Transposed convolution with kernel = stride (the mask head's 2×2 stride-2 upsampler).
//!
//! PyTorch's `F.conv_transpose2d(xs, weight, bias, stride=k)` with a `k×k` kernel, no padding,
//! no output padding, dilation 1 and one group maps every input pixel to its own `k×k` block
//! of the output: blocks never overlap. With `X[n]` an image as a `[C, H·W]` matrix and the
//! weight `[C, O, k, k]` as a `[C, O·k·k]` matrix `W`,
//!
//! - forward: `cols = Wᵀ · X[n]` (`[O·k·k, H·W]`), then each column's `O·k·k` values are
//!   placed into their block (`Y[o, i·k + a, j·k + b] = cols[(o, a, b), (i, j)]`);
//! - input gradient: `dX[n] = W · blocks(dY[n])`;
//! - weight gradient: `dW = Σₙ X[n] · blocks(dY[n])ᵀ`;
//!
//! where `blocks` gathers each block back into a column (the inverse of the placement). Three
//! GEMMs and two permutations, no col2im: unlike the general transposed convolution (which
//! candle runs as a plain loop on the CPU), nothing is summed across blocks.
//!
//! On the CPU (f32, f64) one `CustomOp2` runs the GEMMs directly (images split over rayon's
//! threads when the batch has at least one per thread, each product threaded otherwise) and
//! skips the gradient of an argument no variable depends on. Other devices and dtypes use
//! [`conv_transpose2d_composed`], a matmul and a permutation whose backward candle derives.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use rtb_nn::deconv::conv_transpose2d;
//! let dev = Device::Cpu;
//! // One channel in, one out, a 2×2 kernel of ones: each pixel becomes a 2×2 block.
//! let xs = Tensor::new(&[[[[1f32, 2.], [3., 4.]]]], &dev).unwrap();
//! let w = Tensor::ones((1, 1, 2, 2), candle_core::DType::F32, &dev).unwrap();
//! let ys = conv_transpose2d(&xs, &w, None, 2).unwrap();
//! assert_eq!(ys.dims(), &[1, 1, 4, 4]);
//! let rows: Vec<Vec<f32>> = ys.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
//! assert_eq!(rows[0], vec![1., 1., 2., 2.]);
//! assert_eq!(rows[3], vec![3., 3., 4., 4.]);
//! ```

use crate::ops::float_slices;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Module, Result, Shape, Tensor, WithDType};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;

use crate::ops::gemm::{GemmScalar, MatRef, gemm_threaded};
use crate::ops::{dims4, shape_error};

const OP: &str = "conv_transpose2d";

/// Shapes of one transposed convolution with kernel = stride, validated.
#[derive(Debug, Clone, Copy)]
struct DeconvPlan {
    batch: usize,
    in_channels: usize,
    out_channels: usize,
    height: usize,
    width: usize,
    /// Kernel size and stride.
    k: usize,
}

impl DeconvPlan {
    fn new(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>, stride: usize) -> Result<Self> {
        let (n, c, h, w) = dims4(OP, xs)?;
        let (wc, o, kh, kw) = match weight.dims() {
            &[wc, o, kh, kw] => (wc, o, kh, kw),
            dims => {
                return Err(shape_error(
                    OP,
                    format!("weight must be [C_in, C_out, k, k], got {dims:?}"),
                ));
            }
        };
        if wc != c {
            return Err(shape_error(
                OP,
                format!(
                    "weight {:?} has {wc} input channels, input {:?} has {c}",
                    weight.dims(),
                    xs.dims()
                ),
            ));
        }
        if stride == 0 || kh != stride || kw != stride {
            return Err(shape_error(
                OP,
                format!(
                    "only kernel = stride is supported (non-overlapping blocks): weight {:?}, \
                     stride {stride}",
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
        Ok(Self {
            batch: n,
            in_channels: c,
            out_channels: o,
            height: h,
            width: w,
            k: stride,
        })
    }

    fn hw(&self) -> usize {
        self.height * self.width
    }
    fn image_len(&self) -> usize {
        self.in_channels * self.hw()
    }
    /// Rows of one image's column matrix (`O·k·k`).
    fn rows(&self) -> usize {
        self.out_channels * self.k * self.k
    }
    fn out_image_len(&self) -> usize {
        self.rows() * self.hw()
    }
    fn is_degenerate(&self) -> bool {
        self.image_len() == 0 || self.out_image_len() == 0
    }
    fn in_shape(&self) -> Shape {
        Shape::from((self.batch, self.in_channels, self.height, self.width))
    }
    fn out_shape(&self) -> Shape {
        Shape::from((
            self.batch,
            self.out_channels,
            self.height * self.k,
            self.width * self.k,
        ))
    }
    fn weight_shape(&self) -> Shape {
        Shape::from((self.in_channels, self.out_channels, self.k, self.k))
    }

    /// Places `cols` (`[O·k·k, H·W]`) into the blocks of one output image `[O, H·k, W·k]`.
    fn place<T: Copy>(&self, cols: &[T], out: &mut [T]) {
        let (k, h, w, hw) = (self.k, self.height, self.width, self.hw());
        let row_len = w * k;
        for (o, plane) in out.chunks_exact_mut(h * k * row_len).enumerate() {
            for (y, row) in plane.chunks_exact_mut(row_len).enumerate() {
                let (i, a) = (y / k, y % k);
                let src = |b: usize| &cols[((o * k + a) * k + b) * hw + i * w..][..w];
                if k == 2 {
                    // The mask head's case: interleave two rows with contiguous writes.
                    for ((pair, &v0), &v1) in row.chunks_exact_mut(2).zip(src(0)).zip(src(1)) {
                        pair[0] = v0;
                        pair[1] = v1;
                    }
                    continue;
                }
                for b in 0..k {
                    for (j, &v) in src(b).iter().enumerate() {
                        row[j * k + b] = v;
                    }
                }
            }
        }
    }

    /// The inverse of [`Self::place`]: gathers the blocks of `out` into `cols`.
    fn gather<T: Copy>(&self, out: &[T], cols: &mut [T]) {
        let (k, h, w, hw) = (self.k, self.height, self.width, self.hw());
        let row_len = w * k;
        for (o, plane) in out.chunks_exact(h * k * row_len).enumerate() {
            for (y, row) in plane.chunks_exact(row_len).enumerate() {
                let (i, a) = (y / k, y % k);
                let start = |b: usize| ((o * k + a) * k + b) * hw + i * w;
                if k == 2 {
                    let (first, rest) = cols[start(0)..].split_at_mut(hw);
                    let (d0, d1) = (&mut first[..w], &mut rest[..w]);
                    for ((pair, v0), v1) in row.chunks_exact(2).zip(d0).zip(d1) {
                        *v0 = pair[0];
                        *v1 = pair[1];
                    }
                    continue;
                }
                for b in 0..k {
                    let dst = &mut cols[start(b)..][..w];
                    for (j, d) in dst.iter_mut().enumerate() {
                        *d = row[j * k + b];
                    }
                }
            }
        }
    }

    /// How many images each task handles: whole images per thread when the batch has at
    /// least one per thread (single-threaded products), else everything in one task with
    /// threaded products.
    fn split(&self) -> (usize, bool) {
        let threads = rayon::current_num_threads();
        if threads > 1 && self.batch >= threads {
            (self.batch.div_ceil(threads), false)
        } else {
            (self.batch.max(1), true)
        }
    }

    fn forward<T: WithDType + GemmScalar>(&self, xs: &[T], weight: &[T]) -> Result<Vec<T>> {
        let mut ys = vec![T::ZERO; self.batch * self.out_image_len()];
        if self.is_degenerate() {
            return Ok(ys);
        }
        let (per_task, threaded) = self.split();
        ys.par_chunks_mut(per_task * self.out_image_len())
            .zip(xs.par_chunks(per_task * self.image_len()))
            .try_for_each(|(ys, xs)| {
                let mut cols = vec![T::ZERO; self.out_image_len()];
                let wt = MatRef::row_major(weight, self.in_channels, self.rows()).t();
                for (out, image) in ys
                    .chunks_exact_mut(self.out_image_len())
                    .zip(xs.chunks_exact(self.image_len()))
                {
                    let x = MatRef::row_major(image, self.in_channels, self.hw());
                    gemm_threaded(&mut cols, false, wt, x, threaded)?;
                    self.place(&cols, out);
                }
                Ok::<(), candle_core::Error>(())
            })?;
        Ok(ys)
    }

    fn grad_input<T: WithDType + GemmScalar>(&self, grad: &[T], weight: &[T]) -> Result<Vec<T>> {
        let mut grad_xs = vec![T::ZERO; self.batch * self.image_len()];
        if self.is_degenerate() {
            return Ok(grad_xs);
        }
        let (per_task, threaded) = self.split();
        grad_xs
            .par_chunks_mut(per_task * self.image_len())
            .zip(grad.par_chunks(per_task * self.out_image_len()))
            .try_for_each(|(grad_xs, grad)| {
                let mut cols = vec![T::ZERO; self.out_image_len()];
                let w = MatRef::row_major(weight, self.in_channels, self.rows());
                for (gx, gy) in grad_xs
                    .chunks_exact_mut(self.image_len())
                    .zip(grad.chunks_exact(self.out_image_len()))
                {
                    self.gather(gy, &mut cols);
                    let dcols = MatRef::row_major(&cols, self.rows(), self.hw());
                    gemm_threaded(gx, false, w, dcols, threaded)?;
                }
                Ok::<(), candle_core::Error>(())
            })?;
        Ok(grad_xs)
    }

    fn grad_weight<T: WithDType + GemmScalar>(&self, xs: &[T], grad: &[T]) -> Result<Vec<T>> {
        let weight_len = self.in_channels * self.rows();
        if self.is_degenerate() {
            return Ok(vec![T::ZERO; weight_len]);
        }
        // dW is a sum over the images: each task sums its own share into a partial sum.
        let (per_task, threaded) = self.split();
        let partials = xs
            .par_chunks(per_task * self.image_len())
            .zip(grad.par_chunks(per_task * self.out_image_len()))
            .map(|(xs, grad)| {
                let mut grad_w = vec![T::ZERO; weight_len];
                let mut cols = vec![T::ZERO; self.out_image_len()];
                for (image, gy) in xs
                    .chunks_exact(self.image_len())
                    .zip(grad.chunks_exact(self.out_image_len()))
                {
                    self.gather(gy, &mut cols);
                    let x = MatRef::row_major(image, self.in_channels, self.hw());
                    let dcols = MatRef::row_major(&cols, self.rows(), self.hw()).t();
                    gemm_threaded(&mut grad_w, true, x, dcols, threaded)?;
                }
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
}

/// `(xs, weight)` → `ys` without bias.
#[derive(Debug, Clone, Copy)]
struct DeconvCpu(DeconvPlan);
/// `(grad_ys, weight)` → `grad_xs`.
#[derive(Debug, Clone, Copy)]
struct DeconvGradInput(DeconvPlan);
/// `(xs, grad_ys)` → `grad_weight`.
#[derive(Debug, Clone, Copy)]
struct DeconvGradWeight(DeconvPlan);

impl CustomOp2 for DeconvCpu {
    fn name(&self) -> &'static str {
        OP
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = float_slices!(OP, (s1, l1), (s2, l2); |xs, w| self.0.forward(xs, w)?);
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
        // An argument that no variable depends on needs no gradient.
        let grad_xs = if xs.track_op() {
            Some(grad.apply_op2_no_bwd(weight, &DeconvGradInput(self.0))?)
        } else {
            None
        };
        let grad_w = if weight.track_op() {
            Some(xs.apply_op2_no_bwd(&grad, &DeconvGradWeight(self.0))?)
        } else {
            None
        };
        Ok((grad_xs, grad_w))
    }
}

impl CustomOp2 for DeconvGradInput {
    fn name(&self) -> &'static str {
        "conv_transpose2d_grad_input"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = float_slices!(OP, (s1, l1), (s2, l2); |g, w| self.0.grad_input(g, w)?);
        Ok((out, self.0.in_shape()))
    }
}

impl CustomOp2 for DeconvGradWeight {
    fn name(&self) -> &'static str {
        "conv_transpose2d_grad_weight"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = float_slices!(OP, (s1, l1), (s2, l2); |xs, g| self.0.grad_weight(xs, g)?);
        Ok((out, self.0.weight_shape()))
    }
}

/// PyTorch's `F.conv_transpose2d(xs, weight, bias, stride)` for a kernel equal to the stride
/// (no padding, no output padding, dilation 1, one group).
///
/// `xs` is `[N, C_in, H, W]`, `weight` `[C_in, C_out, k, k]` (PyTorch's layout), `bias`
/// `[C_out]`, `stride` = `k`; the result is `[N, C_out, H·k, W·k]`. On the CPU (f32, f64) a
/// fused op with GEMM kernels for the forward and both gradients (module docs); elsewhere
/// [`conv_transpose2d_composed`]. A kernel other than `stride × stride`, or shapes that do not
/// agree, give an error naming the shapes. Second derivatives are not supported on the CPU
/// path.
pub fn conv_transpose2d(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
) -> Result<Tensor> {
    let (weight, bias) = (
        crate::autocast::to_compute(weight, xs)?,
        crate::autocast::to_compute_opt(bias, xs)?,
    );
    let (weight, bias) = (&weight, bias.as_ref());
    let plan = DeconvPlan::new(xs, weight, bias, stride)?;
    if !(xs.device().is_cpu()
        && matches!(xs.dtype(), DType::F32 | DType::F64)
        && weight.dtype() == xs.dtype())
    {
        return conv_transpose2d_composed(xs, weight, bias, stride);
    }
    let ys = xs
        .contiguous()?
        .apply_op2(&weight.contiguous()?, DeconvCpu(plan))?;
    match bias {
        Some(bias) => crate::ops::bias::bias_add_at(&ys, bias, 1),
        None => Ok(ys),
    }
}

/// [`conv_transpose2d`] composed from a matmul and a permutation, whose backward candle
/// derives: runs on any device and dtype.
pub fn conv_transpose2d_composed(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
) -> Result<Tensor> {
    let p = DeconvPlan::new(xs, weight, bias, stride)?;
    let (n, c, h, w, o, k) = (
        p.batch,
        p.in_channels,
        p.height,
        p.width,
        p.out_channels,
        p.k,
    );
    // [N·H·W, C] · [C, O·k·k] → [N, H, W, O, k, k] → [N, O, H, k, W, k].
    let rows = xs.permute((0, 2, 3, 1))?.reshape((n * h * w, c))?;
    let ys = rows
        .matmul(&weight.reshape((c, o * k * k))?)?
        .reshape(vec![n, h, w, o, k, k])?
        .permute(vec![0, 3, 1, 4, 2, 5])?
        .reshape((n, o, h * k, w * k))?;
    match bias {
        Some(bias) => ys.broadcast_add(&bias.reshape((1, o, 1, 1))?),
        None => Ok(ys),
    }
}

/// The gradients of [`conv_transpose2d`] (without its bias) with respect to the input and the
/// weight, given the gradient `grad_out` of its output: `(dX, dW)`. On the CPU (f32, f64)
/// these are the kernels the backward runs, without autograd; elsewhere autograd over
/// [`conv_transpose2d_composed`].
pub fn conv_transpose2d_grads(
    xs: &Tensor,
    weight: &Tensor,
    grad_out: &Tensor,
    stride: usize,
) -> Result<(Tensor, Tensor)> {
    let plan = DeconvPlan::new(xs, weight, None, stride)?;
    let out_shape = plan.out_shape();
    if grad_out.shape() != &out_shape {
        return Err(shape_error(
            OP,
            format!(
                "grad_out shape {:?} is not the output shape {:?} of input {:?} and weight {:?}",
                grad_out.dims(),
                out_shape.dims(),
                xs.dims(),
                weight.dims()
            ),
        ));
    }
    if xs.device().is_cpu()
        && matches!(xs.dtype(), DType::F32 | DType::F64)
        && weight.dtype() == xs.dtype()
        && grad_out.dtype() == xs.dtype()
    {
        let (xs, weight, grad) = (
            xs.contiguous()?,
            weight.contiguous()?,
            grad_out.contiguous()?,
        );
        let grad_xs = grad.apply_op2_no_bwd(&weight, &DeconvGradInput(plan))?;
        let grad_w = xs.apply_op2_no_bwd(&grad, &DeconvGradWeight(plan))?;
        return Ok((grad_xs, grad_w));
    }
    let xs_var = candle_core::Var::from_tensor(&xs.detach())?;
    let weight_var = candle_core::Var::from_tensor(&weight.detach())?;
    let ys = conv_transpose2d_composed(xs_var.as_tensor(), weight_var.as_tensor(), None, stride)?;
    let grads = (ys * grad_out.detach())?.sum_all()?.backward()?;
    let grad_of = |var: &candle_core::Var| {
        grads
            .get(var.as_tensor())
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg(format!("{OP}_grads: no gradient")))
    };
    Ok((grad_of(&xs_var)?, grad_of(&weight_var)?))
}

/// A transposed-convolution layer with kernel = stride and PyTorch's parameter names
/// (`weight` `[C_in, C_out, k, k]`, `bias` `[C_out]`), e.g. the mask head's
/// `ConvTranspose2d(256, 256, 2, stride=2)`.
#[derive(Debug, Clone)]
pub struct ConvTranspose2d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
}

impl ConvTranspose2d {
    /// A layer with a bias, weights from `vb`, initialised like PyTorch when `vb` creates
    /// them (uniform ±1/√fan_in with fan_in = `weight.size(1)·k·k` = `out_channels·k·k`, as
    /// PyTorch computes it for a transposed convolution's weight).
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        if stride == 0 {
            return Err(shape_error(OP, "ConvTranspose2d: stride must be positive"));
        }
        let bound = 1.0 / ((out_channels * stride * stride) as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let weight =
            vb.get_with_hints((in_channels, out_channels, stride, stride), "weight", init)?;
        let bias = vb.get_with_hints(out_channels, "bias", init)?;
        Ok(Self {
            weight,
            bias: Some(bias),
            stride,
        })
    }

    /// A layer from given tensors (`weight` `[C_in, C_out, k, k]`, `bias` `[C_out]`).
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>, stride: usize) -> Self {
        Self {
            weight,
            bias,
            stride,
        }
    }

    /// The weight `[C_in, C_out, k, k]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias `[C_out]`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The stride (= the kernel size).
    pub fn stride(&self) -> usize {
        self.stride
    }
}

impl Module for ConvTranspose2d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        conv_transpose2d(xs, &self.weight, self.bias.as_ref(), self.stride)
    }
}
