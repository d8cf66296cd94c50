//! ReLU with a one-pass backward, exact (erf) GELU and softmax, equal to PyTorch's `F.relu`,
//! `F.gelu` and `F.softmax`.
//!
//! candle's ReLU backward builds a zero tensor, compares, converts the mask to floats and
//! multiplies (four passes and three allocations per ReLU, a tenth of a small ResNet's CPU
//! step) and passes the gradient where the input is exactly 0; [`relu`]'s backward is one pass
//! over the output and the gradient and, as PyTorch's, passes it only where the output is
//! positive.
//!
//! candle's `gelu_erf` backward uses a rounded constant (0.398942 for 1/√(2π)), and its fused
//! `softmax_last_dim` has no backward at all. GELU here is a CPU kernel with a fused backward
//! (composed from `erf` elsewhere); softmax over the last dimension is a CPU kernel with a
//! fused backward too (the composition's seven passes were a tenth of a small Swin's step),
//! candle's differentiable composition (`candle_nn::ops::softmax`) elsewhere, so callers
//! never reach for candle's fused one.

use candle_core::{DType, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use crate::ops::{CpuKernel1, CpuKernel2, kernel_op, with_wide_simd};

const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
/// Elements per rayon task: large enough that scheduling is negligible.
const CHUNK: usize = 1 << 14;

fn gelu_f64(x: f64) -> f64 {
    0.5 * x * (1.0 + candle_core::cpu::erf::erf_f64(x * std::f64::consts::FRAC_1_SQRT_2))
}

fn gelu_grad_f64(x: f64) -> f64 {
    let cdf = 0.5 * (1.0 + candle_core::cpu::erf::erf_f64(x * std::f64::consts::FRAC_1_SQRT_2));
    cdf + x * FRAC_1_SQRT_2PI * (-0.5 * x * x).exp()
}

// f32 tensors are computed in f32 as PyTorch's CPU kernels do (f64 erf and exp were most of
// the GELU's time in a small Swin's step), without libm calls so the loops vectorise (libm's
// `erff` was a tenth of the small Swin's evaluation pass): Φ(x) = ½(1 + erf(x/√2)) from
// Abramowitz & Stegun 7.1.26's erfc (absolute error under 1.5e-7) taken as is for x < 0,
// so the tail does not cancel, and erf's Taylor series where |x/√2| < ½, where 1 − erfc
// would: within 1.8e-7 |x| of the exact GELU (PyTorch 2.15's f32 GELU: 2.8e-7 |x|, from
// tests/golden/ops/gelu_error.py).
const ERF_P: f32 = 0.327_591_1;
const ERF_A: [f32; 5] = [
    0.254_829_6,
    -0.284_496_74,
    1.421_413_7,
    -1.453_152_1,
    1.061_405_4,
];
/// erf(z) = 2/√π · z · Σ cₖ z²ᵏ, cₖ = (−1)ᵏ / (k! (2k + 1)), k = 0..6 (|z| < ½: remainder
/// under 1e-10).
const ERF_TAYLOR: [f32; 7] = [
    1.0,
    -1.0 / 3.0,
    1.0 / 10.0,
    -1.0 / 42.0,
    1.0 / 216.0,
    -1.0 / 1320.0,
    1.0 / 9360.0,
];
const FRAC_2_SQRT_PI: f32 = std::f32::consts::FRAC_2_SQRT_PI;

/// e^x in f32 for x ≤ 0 without a libm call: 2^n · p(r) with n = round(x / ln 2) and
/// r = x − n·ln 2 (ln 2 in two parts, Cody and Waite, so n·ln 2 is exact), p the degree-7
/// Taylor polynomial (|r| ≤ ln 2 / 2: relative error under 1e-8 before rounding).
/// Arguments are clamped to −87 (2⁻¹²⁶ is the smallest normal). No division and no
/// float-to-integer conversion (Rust's saturating `as` would not vectorise).
#[inline(always)]
pub(crate) fn exp_nonpositive_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 · 2²³ rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const INV_FACTORIAL_STEPS: [f32; 7] = [
        1.0,
        1.0 / 2.0,
        1.0 / 3.0,
        1.0 / 4.0,
        1.0 / 5.0,
        1.0 / 6.0,
        1.0 / 7.0,
    ];
    let x = x.clamp(-87.0, 0.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let n_int = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = x - n * LN2_HI - n * LN2_LO;
    // 1 + r(1 + r/2(1 + r/3(… (1 + r/7))))
    let mut p = 1.0;
    for &inv in INV_FACTORIAL_STEPS.iter().rev() {
        p = 1.0 + r * inv * p;
    }
    p * f32::from_bits(((n_int + 127) << 23) as u32)
}

/// `(Φ(x), e^(−x²/2))` in f32: the normal distribution function and the Gaussian factor
/// of its density.
#[inline(always)]
fn normal_cdf_f32(x: f32) -> (f32, f32) {
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let a = z.abs();
    let t = 1.0 / (1.0 + ERF_P * a);
    let mut poly = ERF_A[4];
    for &c in ERF_A[..4].iter().rev() {
        poly = poly * t + c;
    }
    let gauss = exp_nonpositive_f32(-a * a);
    // ½ erfc(|z|)
    let tail = 0.5 * poly * t * gauss;
    let wide = if z < 0.0 { tail } else { 1.0 - tail };
    let z2 = z * z;
    let mut series = ERF_TAYLOR[6];
    for &c in ERF_TAYLOR[..6].iter().rev() {
        series = series * z2 + c;
    }
    let near_zero = 0.5 + 0.5 * FRAC_2_SQRT_PI * z * series;
    (if a < 0.5 { near_zero } else { wide }, gauss)
}

#[inline(always)]
fn gelu_f32(x: f32) -> f32 {
    x * normal_cdf_f32(x).0
}

#[inline(always)]
fn gelu_grad_f32(x: f32) -> f32 {
    let (cdf, gauss) = normal_cdf_f32(x);
    cdf + x * FRAC_1_SQRT_2PI as f32 * gauss
}

/// GELU of one element, in the element's precision for f32 and in f64 otherwise.
#[inline(always)]
fn gelu_of<T: WithDType>(x: T) -> T {
    if T::DTYPE == DType::F32 {
        T::from_f64(f64::from(gelu_f32(x.to_f64() as f32)))
    } else {
        T::from_f64(gelu_f64(x.to_f64()))
    }
}

/// The GELU's derivative times `grad`, precision as [`gelu_of`].
#[inline(always)]
fn gelu_grad_of<T: WithDType>(x: T, grad: T) -> T {
    if T::DTYPE == DType::F32 {
        T::from_f64(f64::from(
            gelu_grad_f32(x.to_f64() as f32) * grad.to_f64() as f32,
        ))
    } else {
        T::from_f64(gelu_grad_f64(x.to_f64()) * grad.to_f64())
    }
}

/// One chunk of the GELU (in AVX2 where the CPU has it: [`with_wide_simd`]).
struct GeluRows<'a, T> {
    dst: &'a mut [T],
    src: &'a [T],
}

impl<T: WithDType> pulp::WithSimd for GeluRows<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for (d, &x) in self.dst.iter_mut().zip(self.src) {
            *d = gelu_of(x);
        }
    }
}

/// One chunk of the GELU's backward.
struct GeluGradRows<'a, T> {
    dst: &'a mut [T],
    src: &'a [T],
    grad: &'a [T],
}

impl<T: WithDType> pulp::WithSimd for GeluGradRows<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for ((d, &x), &g) in self.dst.iter_mut().zip(self.src).zip(self.grad) {
            *d = gelu_grad_of(x, g);
        }
    }
}

/// The elementwise ops keep the tensor's shape (no reshape nodes around them in the graph).
#[derive(Debug, Clone)]
struct Gelu(Shape);

#[derive(Debug, Clone)]
struct GeluBackward(Shape);

impl CpuKernel1 for Gelu {
    const OP: &'static str = "gelu";
    fn run<T: WithDType>(&self, xs: &[T]) -> Result<(Vec<T>, Shape)> {
        let mut out = vec![T::from_f64(0.0); xs.len()];
        out.par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK))
            .for_each(|(dst, src)| with_wide_simd(GeluRows { dst, src }));
        Ok((out, self.0.clone()))
    }
}

impl CpuKernel2 for GeluBackward {
    const OP: &'static str = "gelu_backward";
    fn run<T: WithDType>(&self, xs: &[T], grad: &[T]) -> Result<(Vec<T>, Shape)> {
        let mut out = vec![T::from_f64(0.0); xs.len()];
        out.par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK).zip(grad.par_chunks(CHUNK)))
            .for_each(|(dst, (src, grad))| with_wide_simd(GeluGradRows { dst, src, grad }));
        Ok((out, self.0.clone()))
    }
}

kernel_op!(1, Gelu {
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad_res.contiguous()?;
        let op = GeluBackward(arg.shape().clone());
        Ok(Some(arg.apply_op2_no_bwd(&grad, &op)?))
    }
});

kernel_op!(2, GeluBackward);

#[derive(Debug, Clone)]
struct Relu(Shape);

#[derive(Debug, Clone)]
struct ReluBackward(Shape);

impl CpuKernel1 for Relu {
    const OP: &'static str = "relu";
    fn run<T: WithDType>(&self, xs: &[T]) -> Result<(Vec<T>, Shape)> {
        let zero = T::from_f64(0.0);
        let mut out = vec![zero; xs.len()];
        out.par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK))
            .for_each(|(dst, src)| {
                for (d, &x) in dst.iter_mut().zip(src) {
                    // NaN stays NaN, as in PyTorch.
                    *d = if x < zero { zero } else { x };
                }
            });
        Ok((out, self.0.clone()))
    }
}

impl CpuKernel2 for ReluBackward {
    const OP: &'static str = "relu_backward";
    fn run<T: WithDType>(&self, ys: &[T], grad: &[T]) -> Result<(Vec<T>, Shape)> {
        let zero = T::from_f64(0.0);
        let mut out = vec![zero; ys.len()];
        out.par_chunks_mut(CHUNK)
            .zip(ys.par_chunks(CHUNK).zip(grad.par_chunks(CHUNK)))
            .for_each(|(dst, (src, g))| {
                for ((d, &y), &g) in dst.iter_mut().zip(src).zip(g) {
                    *d = if y > zero { g } else { zero };
                }
            });
        Ok((out, self.0.clone()))
    }
}

kernel_op!(1, Relu {
    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad_res.contiguous()?;
        let op = ReluBackward(res.shape().clone());
        Ok(Some(res.contiguous()?.apply_op2_no_bwd(&grad, &op)?))
    }
});

kernel_op!(2, ReluBackward);

/// `max(x, 0)`, any shape, PyTorch's `F.relu`: on the CPU a kernel whose backward passes the
/// gradient where the output is positive (one pass); elsewhere candle's `relu`.
pub fn relu(xs: &Tensor) -> Result<Tensor> {
    if !xs.device().is_cpu() {
        return xs.relu();
    }
    xs.contiguous()?.apply_op1(Relu(xs.shape().clone()))
}

/// Exact GELU, `x · Φ(x) = 0.5·x·(1 + erf(x/√2))` (PyTorch's `F.gelu` with
/// `approximate="none"`), any shape.
pub fn gelu(xs: &Tensor) -> Result<Tensor> {
    if !xs.device().is_cpu() {
        return gelu_composed(xs);
    }
    xs.contiguous()?.apply_op1(Gelu(xs.shape().clone()))
}

/// GELU composed from `erf`, whose derivative candle knows exactly: runs on any device.
pub fn gelu_composed(xs: &Tensor) -> Result<Tensor> {
    let cdf = ((xs * std::f64::consts::FRAC_1_SQRT_2)?.erf()? + 1.0)? * 0.5;
    xs * cdf?
}

/// Softmax along `dim` (PyTorch's `F.softmax(xs, dim)`), differentiable on every device: on
/// the CPU (f32, f64) along the last dimension a fused kernel with a one-pass backward
/// (`y·(g − Σ g·y)`), elsewhere [`softmax_composed`].
pub fn softmax<D: candle_core::shape::Dim>(xs: &Tensor, dim: D) -> Result<Tensor> {
    let axis = dim.to_index(xs.shape(), "softmax")?;
    if xs.device().is_cpu()
        && matches!(xs.dtype(), DType::F32 | DType::F64)
        && axis + 1 == xs.rank()
    {
        return xs
            .contiguous()?
            .apply_op1(SoftmaxLastDim(xs.shape().clone()));
    }
    softmax_composed(xs, dim)
}

/// [`softmax`] as candle's differentiable composition (max, exp, sum, divide); any device.
pub fn softmax_composed<D: candle_core::shape::Dim>(xs: &Tensor, dim: D) -> Result<Tensor> {
    candle_nn::ops::softmax(xs, dim)
}

/// Softmax over the last dimension of a contiguous tensor of this shape (max-subtracted,
/// sums in f64).
#[derive(Debug, Clone)]
struct SoftmaxLastDim(Shape);

#[derive(Debug, Clone)]
struct SoftmaxLastDimBackward(Shape);

/// Elements per softmax row: the last dimension (at least 1, so rows can be chunked).
fn row_len(shape: &Shape) -> usize {
    shape.dims().last().copied().unwrap_or(1).max(1)
}

impl CpuKernel1 for SoftmaxLastDim {
    const OP: &'static str = "softmax";
    fn run<T: WithDType>(&self, xs: &[T]) -> Result<(Vec<T>, Shape)> {
        let row = row_len(&self.0);
        let mut out = vec![T::from_f64(0.0); xs.len()];
        let per_task = (CHUNK / row).max(1) * row;
        out.par_chunks_mut(per_task)
            .zip(xs.par_chunks(per_task))
            .for_each(|(dst, src)| {
                for (dst, src) in dst.chunks_exact_mut(row).zip(src.chunks_exact(row)) {
                    let max = src
                        .iter()
                        .map(|v| v.to_f64())
                        .fold(f64::NEG_INFINITY, f64::max);
                    let mut sum = 0f64;
                    for (d, &v) in dst.iter_mut().zip(src) {
                        let e = (v.to_f64() - max).exp();
                        sum += e;
                        *d = T::from_f64(e);
                    }
                    let scale = 1.0 / sum;
                    for d in dst.iter_mut() {
                        *d = T::from_f64(d.to_f64() * scale);
                    }
                }
            });
        Ok((out, self.0.clone()))
    }
}

impl CpuKernel2 for SoftmaxLastDimBackward {
    const OP: &'static str = "softmax_backward";
    fn run<T: WithDType>(&self, ys: &[T], grad: &[T]) -> Result<(Vec<T>, Shape)> {
        let row = row_len(&self.0);
        let mut out = vec![T::from_f64(0.0); ys.len()];
        let per_task = (CHUNK / row).max(1) * row;
        out.par_chunks_mut(per_task)
            .zip(ys.par_chunks(per_task).zip(grad.par_chunks(per_task)))
            .for_each(|(dst, (ys, grad))| {
                for ((dst, ys), grad) in dst
                    .chunks_exact_mut(row)
                    .zip(ys.chunks_exact(row))
                    .zip(grad.chunks_exact(row))
                {
                    let dot: f64 = ys
                        .iter()
                        .zip(grad)
                        .map(|(y, g)| y.to_f64() * g.to_f64())
                        .sum();
                    for ((d, &y), &g) in dst.iter_mut().zip(ys).zip(grad) {
                        *d = T::from_f64(y.to_f64() * (g.to_f64() - dot));
                    }
                }
            });
        Ok((out, self.0.clone()))
    }
}

kernel_op!(1, SoftmaxLastDim {
    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad_res.contiguous()?;
        let op = SoftmaxLastDimBackward(res.shape().clone());
        Ok(Some(res.contiguous()?.apply_op2_no_bwd(&grad, &op)?))
    }
});

kernel_op!(2, SoftmaxLastDimBackward);

/// Log-softmax along `dim` (PyTorch's `F.log_softmax(xs, dim)`), differentiable.
pub fn log_softmax<D: candle_core::shape::Dim>(xs: &Tensor, dim: D) -> Result<Tensor> {
    candle_nn::ops::log_softmax(xs, dim)
}
