//! A per-feature bias: `xs + bias` for `xs` `[..., C]` and `bias` `[C]` ([`bias_add`]: a linear
//! layer's bias, a table broadcast over a batch), or along any dimension ([`bias_add_at`]: a
//! convolution's `[N, C, H, W]` output, channels at dimension 1).
//!
//! candle's `broadcast_add` derives the bias gradient as a sum over the other dimensions,
//! which its CPU reduction walks element by element with an index division per element: in a
//! small Swin's training step the linear layers' bias gradients alone cost more than their
//! matrix products. On the CPU (f32, f64) these are kernels whose backward sums the gradient's
//! contiguous runs directly; elsewhere they are `broadcast_add`.

use candle_core::{DType, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use crate::ops::{CpuKernel1, CpuKernel2, kernel_op, shape_error, sum_in_order};

/// Rows per rayon task (of `C` elements each): enough work to amortise scheduling.
const ELEMENTS_PER_TASK: usize = 1 << 14;

/// `xs + bias` with `bias` of shape `[C]` broadcast over every leading index of `xs`
/// `[..., C]`; gradients for both (the bias's is the sum of the rows of the output's).
pub fn bias_add(xs: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if xs.rank() == 0 {
        return Err(shape_error(
            "bias_add",
            format!(
                "bias {:?} needs an input of shape [..., C], got a scalar",
                bias.dims()
            ),
        ));
    }
    bias_add_at(xs, bias, xs.rank() - 1)
}

/// `xs + bias` with `bias` of shape `[C]` along dimension `dim` of `xs` (`xs.dims()[dim] ==
/// C`) and broadcast over every other; gradients for both (the bias's sums the output's
/// gradient over every dimension but `dim`). A convolution's bias is `bias_add_at(ys, bias, 1)`.
pub fn bias_add_at(xs: &Tensor, bias: &Tensor, dim: usize) -> Result<Tensor> {
    let bias = &channel_param("bias_add", "bias", xs, bias, dim)?;
    let dims = xs.dims();
    if on_cpu_kernel(xs, bias) {
        return xs.contiguous()?.apply_op2(
            &bias.contiguous()?,
            BiasAdd {
                shape: xs.shape().clone(),
                features: dims[dim],
                inner: dims[dim + 1..].iter().product(),
            },
        );
    }
    let mut broadcast = vec![1; dims.len()];
    broadcast[dim] = dims[dim];
    xs.broadcast_add(&bias.reshape(broadcast)?)
}

/// `xs * scale` with `scale` of shape `[C]` along dimension `dim` of `xs` and broadcast over
/// every other; gradients for both. An eval-mode BatchNorm's per-channel scale: candle's
/// broadcast multiply derives the scale's gradient as a sum over the other dimensions, which
/// its CPU backend computes element by element with index arithmetic (a tenth of a Mask R-CNN
/// training step); here it sums each channel's contiguous runs of `grad · xs` in a fixed order
/// (the bias kernel's).
pub fn scale_at(xs: &Tensor, scale: &Tensor, dim: usize) -> Result<Tensor> {
    let scale = &channel_param("scale_at", "scale", xs, scale, dim)?;
    let dims = xs.dims();
    if on_cpu_kernel(xs, scale) {
        return xs.contiguous()?.apply_op2(
            &scale.contiguous()?,
            ChannelScale {
                shape: xs.shape().clone(),
                dim,
                features: dims[dim],
                inner: dims[dim + 1..].iter().product(),
            },
        );
    }
    let mut broadcast = vec![1; dims.len()];
    broadcast[dim] = dims[dim];
    xs.broadcast_mul(&scale.reshape(broadcast)?)
}

/// Checks that `param` is `[C]` with `C` dimension `dim` of `xs` (an error naming `op`, the
/// parameter and both shapes) and returns it in the activations' type (autocast).
fn channel_param(
    op: &'static str,
    name: &str,
    xs: &Tensor,
    param: &Tensor,
    dim: usize,
) -> Result<Tensor> {
    let dims = xs.dims();
    if dim >= dims.len() || param.dims() != [dims[dim]] {
        return Err(shape_error(
            op,
            format!(
                "{name} {:?} must be [C] with C dimension {dim} of the input {:?}",
                param.dims(),
                dims
            ),
        ));
    }
    crate::autocast::to_compute(param, xs)
}

/// Whether the channel kernels run (the CPU, f32 or f64, the parameter of the same type).
fn on_cpu_kernel(xs: &Tensor, param: &Tensor) -> bool {
    xs.device().is_cpu()
        && matches!(xs.dtype(), DType::F32 | DType::F64)
        && param.dtype() == xs.dtype()
}

/// `op(x, param[c])` for every `x` of `xs` viewed as `[outer, features, inner]`: whole runs of
/// `inner` per parallel task, one parameter value per run.
fn map_runs<T: WithDType>(
    xs: &[T],
    param: &[T],
    features: usize,
    inner: usize,
    op: impl Fn(T, T) -> T + Sync,
) -> Vec<T> {
    let mut out = vec![T::from_f64(0.0); xs.len()];
    let per_task = run_task_len(inner);
    out.par_chunks_mut(per_task)
        .zip(xs.par_chunks(per_task))
        .enumerate()
        .for_each(|(task, (dst, src))| {
            let first_run = task * (per_task / inner);
            for (k, (dst, src)) in dst
                .chunks_exact_mut(inner)
                .zip(src.chunks_exact(inner))
                .enumerate()
            {
                let p = param[(first_run + k) % features];
                for (d, &x) in dst.iter_mut().zip(src) {
                    *d = op(x, p);
                }
            }
        });
    out
}

/// `xs` viewed as `[outer, features, inner]` times `scale[features]`.
#[derive(Debug, Clone)]
struct ChannelScale {
    shape: Shape,
    dim: usize,
    features: usize,
    inner: usize,
}

impl CpuKernel2 for ChannelScale {
    const OP: &'static str = "scale_at";
    fn run<T: WithDType>(&self, xs: &[T], scale: &[T]) -> Result<(Vec<T>, Shape)> {
        let features = self.features.max(1);
        let out = map_runs(xs, scale, features, self.inner.max(1), |x, s| x * s);
        Ok((out, self.shape.clone()))
    }
}

kernel_op!(2, ChannelScale {
    fn bwd(
        &self,
        xs: &Tensor,
        scale: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let mut broadcast = vec![1; self.shape.rank()];
        broadcast[self.dim] = self.features;
        let grad_xs = grad.broadcast_mul(&scale.reshape(broadcast)?)?;
        let grad_scale = (&grad * xs)?.apply_op1_no_bwd(&RowSum {
            features: self.features,
            inner: self.inner,
        })?;
        Ok((Some(grad_xs), Some(grad_scale)))
    }
});

/// The sum of the rows of a CPU tensor `[..., C]` (f32 or f64): `[C]`, no gradient (a bias's
/// gradient from its output's).
pub(crate) fn row_sum(grad: &Tensor) -> Result<Tensor> {
    let features = grad.dims().last().copied().unwrap_or(0);
    grad.contiguous()?
        .apply_op1_no_bwd(&RowSum { features, inner: 1 })
}

/// `xs` viewed as `[outer, features, inner]` plus `bias[features]`.
#[derive(Debug, Clone)]
struct BiasAdd {
    shape: Shape,
    features: usize,
    inner: usize,
}

/// Sums a `[outer, C, inner]` gradient over `outer` and `inner` into `[C]`, in a fixed order
/// (per-task partial sums in f64, added in task order) so the bytes do not depend on
/// scheduling.
#[derive(Debug, Clone)]
struct RowSum {
    features: usize,
    inner: usize,
}

/// Elements per rayon task over runs of `run` contiguous elements (rows of `C`, or runs of
/// `inner` in `[outer, C, inner]` data): whole runs, enough work to amortise scheduling.
fn run_task_len(run: usize) -> usize {
    (ELEMENTS_PER_TASK / run).max(1) * run
}

impl CpuKernel2 for BiasAdd {
    const OP: &'static str = "bias_add";
    fn run<T: WithDType>(&self, xs: &[T], bias: &[T]) -> Result<(Vec<T>, Shape)> {
        let features = self.features.max(1);
        if self.inner > 1 {
            let out = map_runs(xs, bias, features, self.inner, |x, b| x + b);
            return Ok((out, self.shape.clone()));
        }
        // Rows of `features`: the bias added element by element, no index arithmetic.
        let mut out = vec![T::from_f64(0.0); xs.len()];
        let per_task = run_task_len(features);
        out.par_chunks_mut(per_task)
            .zip(xs.par_chunks(per_task))
            .for_each(|(dst, src)| {
                for (dst, src) in dst
                    .chunks_exact_mut(features)
                    .zip(src.chunks_exact(features))
                {
                    for ((d, &x), &b) in dst.iter_mut().zip(src).zip(bias) {
                        *d = x + b;
                    }
                }
            });
        Ok((out, self.shape.clone()))
    }
}

impl CpuKernel1 for RowSum {
    const OP: &'static str = "bias_add_backward";
    fn run<T: WithDType>(&self, grad: &[T]) -> Result<(Vec<T>, Shape)> {
        let features = self.features.max(1);
        let partials: Vec<Vec<f64>> = if self.inner > 1 {
            let inner = self.inner;
            let per_task = run_task_len(inner);
            grad.par_chunks(per_task)
                .enumerate()
                .map(|(task, runs)| {
                    let first_run = task * (per_task / inner);
                    let mut sums = vec![0f64; features];
                    for (k, run) in runs.chunks_exact(inner).enumerate() {
                        sums[(first_run + k) % features] +=
                            run.iter().map(|g| g.to_f64()).sum::<f64>();
                    }
                    sums
                })
                .collect()
        } else {
            let per_task = run_task_len(features);
            grad.par_chunks(per_task)
                .map(|rows| {
                    let mut sums = vec![0f64; features];
                    for row in rows.chunks_exact(features) {
                        for (s, g) in sums.iter_mut().zip(row) {
                            *s += g.to_f64();
                        }
                    }
                    sums
                })
                .collect()
        };
        let totals = sum_in_order(&partials, features);
        Ok((
            totals.into_iter().map(T::from_f64).collect(),
            Shape::from(self.features),
        ))
    }
}

kernel_op!(2, BiasAdd {
    fn bwd(
        &self,
        _xs: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let bias_grad = grad.apply_op1_no_bwd(&RowSum {
            features: self.features,
            inner: self.inner,
        })?;
        Ok((Some(grad), Some(bias_grad)))
    }
});

kernel_op!(1, RowSum);
