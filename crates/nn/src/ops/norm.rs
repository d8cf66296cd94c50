//! Layer norm (last dimension, and channels-first for `[N, C, H, W]`) and a batch norm that
//! trains, equal to PyTorch's `F.layer_norm`, timm's `LayerNorm2d` and `nn.BatchNorm2d`.
//!
//! candle's `LayerNorm` module takes a fused path with no backward on contiguous input (no
//! gradient reaches anything upstream, and no error is raised). On the CPU (f32, f64) both
//! norms run as fused kernels with explicit backwards (batch norm's in one fused kernel too:
//! composed, its strided reductions over `(0, 2, 3)` took most of a ResNet training step);
//! elsewhere they are composed from reductions and broadcasts whose backward candle derives.

use candle_core::{D, DType, Result, Shape, Tensor, Var, WithDType};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;

use crate::ops::{CpuKernel3, dims4, kernel_op, shape_error, sum_in_order, with_wide_simd};

/// A fused CPU layer norm over the middle axis of `[outer, features, inner]` (inner = 1 for
/// the last dimension, H·W for channels-first), with weight and bias. Its backward is composed
/// from tensor ops ([`affine_norm_backward`]).
#[derive(Debug, Clone, Copy)]
struct FusedNorm {
    outer: usize,
    features: usize,
    inner: usize,
    eps: f64,
}

impl CpuKernel3 for FusedNorm {
    const OP: &'static str = "layer_norm";

    fn run<T: WithDType>(&self, xs: &[T], weight: &[T], bias: &[T]) -> Vec<T> {
        let (c, inner) = (self.features, self.inner);
        let mut out = vec![T::from_f64(0.0); xs.len()];
        // Statistics in f64 per position; enough blocks per task to amortise scheduling.
        let block = c * inner;
        let per_task = (16_384 / block.max(1)).max(1) * block;
        let affine: Vec<(f64, f64)> = weight
            .iter()
            .zip(bias)
            .map(|(w, b)| (w.to_f64(), b.to_f64()))
            .collect();
        out.par_chunks_mut(per_task)
            .zip(xs.par_chunks(per_task))
            .for_each(|(dst, src)| {
                if inner == 1 {
                    let eps = self.eps;
                    with_wide_simd(RowsForward {
                        dst,
                        src,
                        affine: &affine,
                        eps,
                    });
                    return;
                }
                let mut mean = vec![0f64; inner];
                let mut m2 = vec![0f64; inner];
                for (dst, src) in dst.chunks_exact_mut(block).zip(src.chunks_exact(block)) {
                    position_stats(src, self.eps, &mut mean, &mut m2);
                    for (ch, (drow, srow)) in dst
                        .chunks_exact_mut(inner)
                        .zip(src.chunks_exact(inner))
                        .enumerate()
                    {
                        let (w, b) = (weight[ch].to_f64(), bias[ch].to_f64());
                        for (((d, &v), &m), &r) in drow.iter_mut().zip(srow).zip(&mean).zip(&m2) {
                            *d = T::from_f64((v.to_f64() - m) * r * w + b);
                        }
                    }
                }
            });
        out
    }
}

/// Mean and reciprocal standard deviation at each of the `mean.len()` positions of one
/// `[C, inner]` block (channel rows of `inner` values), in f64.
fn position_stats<T: WithDType>(block: &[T], eps: f64, mean: &mut [f64], rstd: &mut [f64]) {
    let inner = mean.len().max(1);
    let c = (block.len() / inner) as f64;
    mean.fill(0.0);
    rstd.fill(0.0);
    for row in block.chunks_exact(inner) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v.to_f64();
        }
    }
    for m in mean.iter_mut() {
        *m /= c;
    }
    for row in block.chunks_exact(inner) {
        for ((s, &m), &v) in rstd.iter_mut().zip(mean.iter()).zip(row) {
            let d = v.to_f64() - m;
            *s += d * d;
        }
    }
    for s in rstd.iter_mut() {
        *s = 1.0 / (*s / c + eps).sqrt();
    }
}

/// `Σ f(xᵢ)` over a row in f64 with four interleaved accumulators (a fixed order, so the same
/// bytes every run), which the compiler keeps in vector registers: a single running sum is a
/// chain of dependent additions, and the statistics of a transformer's short rows were most of
/// its layer norms' time.
#[inline(always)]
fn sum4(row: &[f64], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0f64; 4];
    let chunks = row.chunks_exact(4);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(v);
        }
    }
    let mut total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for &v in rest {
        total += f(v);
    }
    total
}

/// Copies one row into `buf` in f64 and returns its mean and reciprocal standard deviation.
#[inline(always)]
fn row_stats<T: WithDType>(row: &[T], buf: &mut [f64], eps: f64) -> (f64, f64) {
    for (b, v) in buf.iter_mut().zip(row) {
        *b = v.to_f64();
    }
    let n = row.len() as f64;
    let mean = sum4(buf, |v| v) / n;
    let var = sum4(buf, |v| (v - mean) * (v - mean)) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// [`forward_rows`] compiled for the CPU's widest vectors ([`with_wide_simd`]).
struct RowsForward<'a, T> {
    dst: &'a mut [T],
    src: &'a [T],
    affine: &'a [(f64, f64)],
    eps: f64,
}

impl<T: WithDType> pulp::WithSimd for RowsForward<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        forward_rows(self.dst, self.src, self.affine, self.eps);
    }
}

/// [`backward_rows`] compiled for the CPU's widest vectors ([`with_wide_simd`]).
struct RowsBackward<'a, T> {
    dst: &'a mut [T],
    src: &'a [T],
    grad: &'a [T],
    weight: &'a [f64],
    eps: f64,
    sums: &'a mut [f64],
}

impl<T: WithDType> pulp::WithSimd for RowsBackward<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        backward_rows(
            self.dst,
            self.src,
            self.grad,
            self.weight,
            self.eps,
            self.sums,
        );
    }
}

/// [`FusedNorm`] when the features are contiguous (`inner` = 1): row by row through one f64
/// row buffer (the last-dimension norm of a transformer, rows of a few dozen features).
#[inline(always)]
fn forward_rows<T: WithDType>(dst: &mut [T], src: &[T], affine: &[(f64, f64)], eps: f64) {
    let c = affine.len().max(1);
    let mut buf = vec![0f64; c];
    for (dst, src) in dst.chunks_exact_mut(c).zip(src.chunks_exact(c)) {
        let (mean, rstd) = row_stats(src, &mut buf, eps);
        for ((d, &v), &(w, b)) in dst.iter_mut().zip(&buf).zip(affine) {
            *d = T::from_f64((v - mean) * rstd * w + b);
        }
    }
}

/// [`FusedNormBackward`] row by row (`inner` = 1); adds `dw` and `db` into `sums`.
#[inline(always)]
fn backward_rows<T: WithDType>(
    dst: &mut [T],
    src: &[T],
    grad: &[T],
    weight: &[f64],
    eps: f64,
    sums: &mut [f64],
) {
    let c = weight.len().max(1);
    let (dw, db) = sums.split_at_mut(c);
    // The row, then its normalised values, and the weighted gradient, in f64.
    let mut buf = vec![0f64; c];
    let mut gw = vec![0f64; c];
    for ((dst, src), grad) in dst
        .chunks_exact_mut(c)
        .zip(src.chunks_exact(c))
        .zip(grad.chunks_exact(c))
    {
        let (mean, rstd) = row_stats(src, &mut buf, eps);
        for (b, (g, (w, (dw, (db, gw))))) in buf.iter_mut().zip(
            grad.iter().zip(
                weight
                    .iter()
                    .zip(dw.iter_mut().zip(db.iter_mut().zip(gw.iter_mut()))),
            ),
        ) {
            let normed = (*b - mean) * rstd;
            let g = g.to_f64();
            *b = normed;
            *gw = g * w;
            *dw += g * normed;
            *db += g;
        }
        let mean_gw = sum4(&gw, |v| v) / c as f64;
        let mean_gwn = gw.iter().zip(&buf).map(|(g, n)| g * n).sum::<f64>() / c as f64;
        for ((d, &normed), &gw) in dst.iter_mut().zip(&buf).zip(&gw) {
            *d = T::from_f64(rstd * (gw - mean_gw - normed * mean_gwn));
        }
    }
}

kernel_op!(3, FusedNorm {
    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let shape = (self.outer, self.features, self.inner);
        if xs.device().is_cpu() && matches!(xs.dtype(), DType::F32 | DType::F64) {
            // One fused pass: the composed backward's strided reductions over (0, 2) took a
            // fifth of a small Swin's training step.
            let op = FusedNormBackward(*self);
            let packed = xs.contiguous()?.apply_op3_no_bwd(
                &weight.contiguous()?,
                &grad.contiguous()?,
                &op,
            )?;
            let count = xs.elem_count();
            let gx = packed.narrow(0, 0, count)?.reshape(xs.shape())?;
            let gw = packed.narrow(0, count, self.features)?;
            let gb = packed.narrow(0, count + self.features, self.features)?;
            return Ok((Some(gx), Some(gw), Some(gb)));
        }
        let (gx, gw, gb) = affine_norm_backward(
            &xs.reshape(shape)?,
            &weight.reshape((1, self.features, 1))?,
            &grad.reshape(shape)?,
            self.eps,
        )?;
        Ok((Some(gx.reshape(xs.shape())?), Some(gw), Some(gb)))
    }
});

/// The backward of [`FusedNorm`] on the CPU: from `xs`, `weight` and the output's gradient,
/// one flat vector `[dx (xs's elements), dw (C), db (C)]`. Per-task partial sums of `dw`, `db`
/// are added in task order, so the result does not depend on the thread count's scheduling.
#[derive(Debug, Clone, Copy)]
struct FusedNormBackward(FusedNorm);

impl CpuKernel3 for FusedNormBackward {
    const OP: &'static str = "layer_norm_backward";

    fn out_shape(&self, first: &Shape) -> Shape {
        Shape::from(first.elem_count() + 2 * self.0.features)
    }

    fn run<T: WithDType>(&self, xs: &[T], weight: &[T], grad: &[T]) -> Vec<T> {
        let FusedNorm {
            features: c,
            inner,
            eps,
            ..
        } = self.0;
        let block = c * inner;
        let mut out = vec![T::from_f64(0.0); xs.len() + 2 * c];
        let (gx, tail) = out.split_at_mut(xs.len());
        let per_task = (16_384 / block.max(1)).max(1) * block.max(1);
        let weight: Vec<f64> = weight.iter().map(|w| w.to_f64()).collect();
        let partials: Vec<Vec<f64>> = gx
            .par_chunks_mut(per_task)
            .zip(xs.par_chunks(per_task).zip(grad.par_chunks(per_task)))
            .map(|(dst, (src, grad))| {
                // dw then db for this task's blocks.
                let mut sums = vec![0f64; 2 * c];
                if inner == 1 {
                    with_wide_simd(RowsBackward {
                        dst,
                        src,
                        grad,
                        weight: &weight,
                        eps,
                        sums: &mut sums,
                    });
                    return sums;
                }
                let mut mean = vec![0f64; inner];
                let mut rstd = vec![0f64; inner];
                let mut mean_gw = vec![0f64; inner];
                let mut mean_gwn = vec![0f64; inner];
                for ((dst, src), grad) in dst
                    .chunks_exact_mut(block)
                    .zip(src.chunks_exact(block))
                    .zip(grad.chunks_exact(block))
                {
                    position_stats(src, eps, &mut mean, &mut rstd);
                    mean_gw.fill(0.0);
                    mean_gwn.fill(0.0);
                    for (ch, (srow, grow)) in src
                        .chunks_exact(inner)
                        .zip(grad.chunks_exact(inner))
                        .enumerate()
                    {
                        let w = weight[ch];
                        let (mut dw, mut db) = (0f64, 0f64);
                        for p in 0..inner {
                            let normed = (srow[p].to_f64() - mean[p]) * rstd[p];
                            let g = grow[p].to_f64();
                            mean_gw[p] += g * w;
                            mean_gwn[p] += g * w * normed;
                            dw += g * normed;
                            db += g;
                        }
                        sums[ch] += dw;
                        sums[c + ch] += db;
                    }
                    for p in 0..inner {
                        mean_gw[p] /= c as f64;
                        mean_gwn[p] /= c as f64;
                    }
                    for (ch, ((drow, srow), grow)) in dst
                        .chunks_exact_mut(inner)
                        .zip(src.chunks_exact(inner))
                        .zip(grad.chunks_exact(inner))
                        .enumerate()
                    {
                        let w = weight[ch];
                        for p in 0..inner {
                            let normed = (srow[p].to_f64() - mean[p]) * rstd[p];
                            let g = grow[p].to_f64() * w;
                            drow[p] =
                                T::from_f64(rstd[p] * (g - mean_gw[p] - normed * mean_gwn[p]));
                        }
                    }
                }
                sums
            })
            .collect();
        let totals = sum_in_order(&partials, 2 * c);
        for (d, t) in tail.iter_mut().zip(totals) {
            *d = T::from_f64(t);
        }
        out
    }
}

kernel_op!(3, FusedNormBackward);

/// Gradients of `y = (x − mean)/√(var + eps) · w + b` over axis 1 of `[outer, C, inner]`:
/// `(dx, dw, db)`, composed from tensor ops (off the CPU).
fn affine_norm_backward(
    xs: &Tensor,
    weight: &Tensor,
    grad: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let mean = xs.mean_keepdim(1)?;
    let centered = xs.broadcast_sub(&mean)?;
    let rstd = (centered.sqr()?.mean_keepdim(1)? + eps)?.sqrt()?.recip()?;
    let normed = centered.broadcast_mul(&rstd)?;
    let grad_normed = grad.broadcast_mul(weight)?;
    let term1 = grad_normed.mean_keepdim(1)?;
    let term2 = (&grad_normed * &normed)?.mean_keepdim(1)?;
    let gx = grad_normed
        .broadcast_sub(&term1)?
        .sub(&normed.broadcast_mul(&term2)?)?
        .broadcast_mul(&rstd)?;
    let gw = (grad * &normed)?.sum((0, 2))?;
    let gb = grad.sum((0, 2))?;
    Ok((gx, gw, gb))
}

/// The fused CPU path, when it applies (CPU, f32/f64, weight and bias present).
fn fused_norm(
    xs: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
    (outer, features, inner): (usize, usize, usize),
) -> Result<Option<Tensor>> {
    let (Some(weight), Some(bias)) = (weight, bias) else {
        return Ok(None);
    };
    let dtype = xs.dtype();
    if !xs.device().is_cpu()
        || !matches!(dtype, DType::F32 | DType::F64)
        || weight.dtype() != dtype
        || bias.dtype() != dtype
    {
        return Ok(None);
    }
    let op = FusedNorm {
        outer,
        features,
        inner,
        eps,
    };
    Ok(Some(xs.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        op,
    )?))
}

fn check_affine(
    op: &'static str,
    xs: &Tensor,
    features: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
) -> Result<()> {
    for (name, t) in [("weight", weight), ("bias", bias)] {
        if let Some(t) = t
            && t.dims() != [features]
        {
            return Err(shape_error(
                op,
                format!(
                    "{name} {:?} does not match input {:?} (expected [{features}])",
                    t.dims(),
                    xs.dims()
                ),
            ));
        }
    }
    Ok(())
}

/// Normalises over `dim` (kept) with biased variance, like PyTorch; `affine_shape` reshapes
/// the per-feature weight and bias so they broadcast along `dim`.
fn normalize(
    xs: &Tensor,
    dim: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
    affine_shape: &[usize],
) -> Result<Tensor> {
    // Half-precision inputs are normalised in f32, as PyTorch's CPU kernels do.
    let internal = match xs.dtype() {
        DType::F16 | DType::BF16 => DType::F32,
        dtype => dtype,
    };
    let x = xs.to_dtype(internal)?;
    let mean = x.mean_keepdim(dim)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(dim)?;
    let normed = centered.broadcast_div(&(var + eps)?.sqrt()?)?;
    let normed = match weight {
        Some(w) => normed.broadcast_mul(&w.to_dtype(internal)?.reshape(affine_shape)?)?,
        None => normed,
    };
    let normed = match bias {
        Some(b) => normed.broadcast_add(&b.to_dtype(internal)?.reshape(affine_shape)?)?,
        None => normed,
    };
    normed.to_dtype(xs.dtype())
}

/// Layer norm over the last dimension, PyTorch's
/// `F.layer_norm(xs, (features,), weight, bias, eps)`.
pub fn layer_norm(
    xs: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    const OP: &str = "layer_norm";
    let rank = xs.rank();
    if rank == 0 {
        return Err(shape_error(
            OP,
            "input is a scalar; need at least one dimension",
        ));
    }
    let features = xs.dim(D::Minus1)?;
    check_affine(OP, xs, features, weight, bias)?;
    let outer = xs.elem_count() / features.max(1);
    if let Some(ys) = fused_norm(xs, weight, bias, eps, (outer, features, 1))? {
        return Ok(ys);
    }
    layer_norm_composed(xs, weight, bias, eps)
}

/// [`layer_norm`] composed from reductions and broadcasts (any device, dtype, and optional
/// affine parameters); candle derives its backward.
pub fn layer_norm_composed(
    xs: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let rank = xs.rank();
    if rank == 0 {
        return Err(shape_error(
            "layer_norm",
            "input is a scalar; need at least one dimension",
        ));
    }
    let features = xs.dim(D::Minus1)?;
    check_affine("layer_norm", xs, features, weight, bias)?;
    let mut affine_shape = vec![1; rank];
    affine_shape[rank - 1] = features;
    normalize(xs, rank - 1, weight, bias, eps, &affine_shape)
}

/// Channels-first layer norm of `[N, C, H, W]` over `C` at every pixel (timm/ConvNeXt's
/// `LayerNorm2d`, detectron2's `LayerNorm` for `[N, C, H, W]`).
pub fn layer_norm2d(
    xs: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    const OP: &str = "layer_norm2d";
    let (n, c, h, w) = dims4(OP, xs)?;
    check_affine(OP, xs, c, weight, bias)?;
    if let Some(ys) = fused_norm(xs, weight, bias, eps, (n, c, h * w))? {
        return Ok(ys);
    }
    layer_norm2d_composed(xs, weight, bias, eps)
}

/// [`layer_norm2d`] composed from reductions and broadcasts (any device and dtype).
pub fn layer_norm2d_composed(
    xs: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let (_, c, _, _) = dims4("layer_norm2d", xs)?;
    check_affine("layer_norm2d", xs, c, weight, bias)?;
    normalize(xs, 1, weight, bias, eps, &[1, c, 1, 1])
}

/// A layer-norm module over the last dimension with PyTorch's keys (`weight`, `bias`).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Weight (initialised to 1) and bias (0) of `features` elements from `vb`.
    pub fn new(features: usize, eps: f64, vb: &VarBuilder<'_>) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(features, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(features, "bias", Init::Const(0.0))?,
            eps,
        })
    }
}

impl candle_core::Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        layer_norm(xs, Some(&self.weight), Some(&self.bias), self.eps)
    }
}

/// The channels-first variant of [`LayerNorm`] for `[N, C, H, W]`.
#[derive(Debug, Clone)]
pub struct LayerNorm2d {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm2d {
    /// Weight (initialised to 1) and bias (0) of `channels` elements from `vb`.
    pub fn new(channels: usize, eps: f64, vb: &VarBuilder<'_>) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(channels, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(channels, "bias", Init::Const(0.0))?,
            eps,
        })
    }
}

impl candle_core::Module for LayerNorm2d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        layer_norm2d(xs, Some(&self.weight), Some(&self.bias), self.eps)
    }
}

/// Settings of a [`BatchNorm2d`] (PyTorch's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormConfig {
    /// Added to the variance before the square root.
    pub eps: f64,
    /// Weight of the new batch statistic in the running average:
    /// `running = (1 − momentum)·running + momentum·batch`.
    pub momentum: f64,
    /// Whether the layer has a learnable per-channel weight and bias.
    pub affine: bool,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        Self {
            eps: 1e-5,
            momentum: 0.1,
            affine: true,
        }
    }
}

/// Elements per rayon task in the fused batch-norm kernels: enough to amortise scheduling
/// when the planes are small (7×7 in ResNet's last stage).
const BN_TASK_ELEMENTS: usize = 16_384;

/// Per-channel batch statistics of a fused forward, kept for its backward.
#[derive(Debug, Clone)]
struct ChannelStats {
    mean: Vec<f64>,
    /// Biased variance (what normalises), for the running statistics.
    var: Vec<f64>,
    inv_std: Vec<f64>,
}

/// `[N, C, H·W]` geometry of a contiguous NCHW tensor.
#[derive(Debug, Clone, Copy)]
struct Planes {
    n: usize,
    c: usize,
    hw: usize,
}

impl Planes {
    /// Calls `f(channel, plane)` for every plane of every channel, channels in parallel.
    fn per_channel<T: WithDType, R: Send>(
        self,
        xs: &[T],
        f: impl Fn(usize, &mut dyn FnMut(&mut dyn FnMut(usize, &[T]))) -> R + Sync,
    ) -> Vec<R> {
        let Planes { n, c, hw } = self;
        (0..c)
            .into_par_iter()
            .map(|channel| {
                f(channel, &mut |visit: &mut dyn FnMut(usize, &[T])| {
                    for batch in 0..n {
                        let start = (batch * c + channel) * hw;
                        visit(batch, &xs[start..start + hw]);
                    }
                })
            })
            .collect()
    }

    /// Planes per rayon task.
    fn planes_per_task(self) -> usize {
        (BN_TASK_ELEMENTS / self.hw.max(1)).max(1)
    }
}

/// PyTorch's train-mode batch norm as one CPU op on `(x, weight, bias)`: batch mean and biased
/// variance per channel (accumulated in f64), `y = (x − mean)/√(var + eps)·w + b`, and a fused
/// backward. The composed version spends most of a ResNet training step in candle's strided
/// reductions over `(0, 2, 3)` and in full-size temporaries.
#[derive(Debug, Clone)]
struct FusedBatchNorm {
    planes: Planes,
    eps: f64,
    /// Filled by the forward, read by the caller (running statistics) and by the backward.
    stats: std::sync::Arc<std::sync::Mutex<Option<ChannelStats>>>,
}

impl FusedBatchNorm {
    fn statistics<T: WithDType>(&self, xs: &[T]) -> ChannelStats {
        let count = (self.planes.n * self.planes.hw) as f64;
        let eps = self.eps;
        let per = self.planes.per_channel(xs, |_, each| {
            let mut sum = 0f64;
            each(&mut |_, plane| sum += plane.iter().map(|v| v.to_f64()).sum::<f64>());
            let mean = sum / count;
            let mut squares = 0f64;
            each(&mut |_, plane| {
                squares += plane
                    .iter()
                    .map(|v| {
                        let d = v.to_f64() - mean;
                        d * d
                    })
                    .sum::<f64>();
            });
            (mean, squares / count)
        });
        ChannelStats {
            mean: per.iter().map(|p| p.0).collect(),
            var: per.iter().map(|p| p.1).collect(),
            inv_std: per.iter().map(|p| 1.0 / (p.1 + eps).sqrt()).collect(),
        }
    }
}

impl CpuKernel3 for FusedBatchNorm {
    const OP: &'static str = "batch_norm_train";

    fn run<T: WithDType>(&self, xs: &[T], weight: &[T], bias: &[T]) -> Vec<T> {
        let stats = self.statistics(xs);
        let Planes { c, hw, .. } = self.planes;
        let mut out = vec![T::from_f64(0.0); xs.len()];
        let per_task = self.planes.planes_per_task() * hw;
        out.par_chunks_mut(per_task)
            .zip(xs.par_chunks(per_task))
            .enumerate()
            .for_each(|(task, (dst, src))| {
                let first = task * self.planes.planes_per_task();
                for (k, (d, s)) in dst.chunks_mut(hw).zip(src.chunks(hw)).enumerate() {
                    let channel = (first + k) % c;
                    let scale = stats.inv_std[channel] * weight[channel].to_f64();
                    let shift = bias[channel].to_f64() - stats.mean[channel] * scale;
                    for (d, &v) in d.iter_mut().zip(s) {
                        *d = T::from_f64(v.to_f64() * scale + shift);
                    }
                }
            });
        *self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(stats);
        out
    }
}

kernel_op!(3, FusedBatchNorm {
    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let stats = self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let Some(stats) = stats else {
            candle_core::bail!("batch_norm_train: backward before forward");
        };
        let backward = FusedBatchNormBackward {
            planes: self.planes,
            stats,
            sums: std::sync::Arc::default(),
        };
        let grad_xs = xs.apply_op3_no_bwd(weight, &grad.contiguous()?, &backward)?;
        let sums = backward
            .sums
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some((sum_dy_xhat, sum_dy)) = sums else {
            candle_core::bail!("batch_norm_train: backward kernel did not run");
        };
        let channels = self.planes.c;
        let device = xs.device();
        let grad_weight =
            Tensor::from_vec(sum_dy_xhat, channels, device)?.to_dtype(weight.dtype())?;
        let grad_bias = Tensor::from_vec(sum_dy, channels, device)?.to_dtype(weight.dtype())?;
        Ok((Some(grad_xs), Some(grad_weight), Some(grad_bias)))
    }
});

/// Per-channel `(Σ dy·x̂, Σ dy)` of a fused backward.
type ChannelSums = (Vec<f64>, Vec<f64>);

/// The backward of [`FusedBatchNorm`] on `(x, weight, dy)`: returns `dx` and leaves the
/// per-channel `Σ dy·x̂` (the weight's gradient) and `Σ dy` (the bias's) in `sums`.
#[derive(Debug)]
struct FusedBatchNormBackward {
    planes: Planes,
    stats: ChannelStats,
    sums: std::sync::Arc<std::sync::Mutex<Option<ChannelSums>>>,
}

impl CpuKernel3 for FusedBatchNormBackward {
    const OP: &'static str = "batch_norm_train_backward";

    fn run<T: WithDType>(&self, xs: &[T], weight: &[T], grad: &[T]) -> Vec<T> {
        let Planes { n, c, hw } = self.planes;
        let stats = &self.stats;
        let per = self.planes.per_channel(xs, |channel, each| {
            let (mean, inv_std) = (stats.mean[channel], stats.inv_std[channel]);
            let (mut sum_dy, mut sum_dy_xhat) = (0f64, 0f64);
            each(&mut |batch, plane| {
                let start = (batch * c + channel) * hw;
                for (&x, &g) in plane.iter().zip(&grad[start..start + hw]) {
                    let g = g.to_f64();
                    sum_dy += g;
                    sum_dy_xhat += g * (x.to_f64() - mean) * inv_std;
                }
            });
            (sum_dy_xhat, sum_dy)
        });
        let count = (n * hw) as f64;
        let mut out = vec![T::from_f64(0.0); xs.len()];
        let per_task = self.planes.planes_per_task() * hw;
        out.par_chunks_mut(per_task)
            .zip(xs.par_chunks(per_task).zip(grad.par_chunks(per_task)))
            .enumerate()
            .for_each(|(task, (dst, (src, grad)))| {
                let first = task * self.planes.planes_per_task();
                for (k, (d, (s, g))) in dst
                    .chunks_mut(hw)
                    .zip(src.chunks(hw).zip(grad.chunks(hw)))
                    .enumerate()
                {
                    let channel = (first + k) % c;
                    let (mean, inv_std) = (stats.mean[channel], stats.inv_std[channel]);
                    let (sum_dy_xhat, sum_dy) = per[channel];
                    let scale = weight[channel].to_f64() * inv_std;
                    let (mean_dy, mean_dy_xhat) = (sum_dy / count, sum_dy_xhat / count);
                    for ((d, &x), &g) in d.iter_mut().zip(s).zip(g) {
                        let xhat = (x.to_f64() - mean) * inv_std;
                        *d = T::from_f64(scale * (g.to_f64() - mean_dy - xhat * mean_dy_xhat));
                    }
                }
            });
        *self
            .sums
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(per.into_iter().unzip());
        out
    }
}

kernel_op!(3, FusedBatchNormBackward);

/// Batch normalisation of `[N, C, H, W]` with PyTorch's semantics and keys (`weight`, `bias`,
/// `running_mean`, `running_var`).
///
/// [`forward_train`](Self::forward_train) normalises with the batch's mean and biased
/// variance and updates the running statistics with the unbiased variance, like
/// `nn.BatchNorm2d` in train mode; [`forward_eval`](Self::forward_eval) uses the running
/// statistics. The running statistics are `Var`s: built from a `VarMap`, they are saved with
/// it. They never receive a gradient, so an optimizer must skip variables without one.
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    running_mean: Var,
    running_var: Var,
    cfg: BatchNormConfig,
}

impl BatchNorm2d {
    /// A batch norm over `channels` with parameters and statistics from `vb` (created as
    /// weight 1, bias 0, mean 0, variance 1 when `vb` creates them).
    pub fn new(channels: usize, cfg: BatchNormConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        let (weight, bias) = if cfg.affine {
            (
                Some(vb.get_with_hints(channels, "weight", Init::Const(1.0))?),
                Some(vb.get_with_hints(channels, "bias", Init::Const(0.0))?),
            )
        } else {
            (None, None)
        };
        let running_mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
        let running_var = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
        Self::from_tensors(weight, bias, running_mean, running_var, cfg)
    }

    /// A batch norm from given tensors (all `[C]`). Running statistics that are already
    /// variables are shared, others are copied into new variables.
    // Owned like the other `from_tensors` constructors, so callers hand over what they loaded.
    #[allow(clippy::needless_pass_by_value)]
    pub fn from_tensors(
        weight: Option<Tensor>,
        bias: Option<Tensor>,
        running_mean: Tensor,
        running_var: Tensor,
        cfg: BatchNormConfig,
    ) -> Result<Self> {
        let channels = running_mean.elem_count();
        for (name, t) in [
            ("weight", weight.as_ref()),
            ("bias", bias.as_ref()),
            ("running_mean", Some(&running_mean)),
            ("running_var", Some(&running_var)),
        ] {
            if let Some(t) = t
                && t.dims() != [channels]
            {
                return Err(shape_error(
                    "BatchNorm2d",
                    format!("{name} has shape {:?}, expected [{channels}]", t.dims()),
                ));
            }
        }
        Ok(Self {
            weight,
            bias,
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            cfg,
        })
    }

    /// The running mean `[C]`.
    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }

    /// The running variance `[C]`.
    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }

    fn check_input(&self, xs: &Tensor) -> Result<(usize, usize, usize, usize)> {
        let dims = dims4("BatchNorm2d", xs)?;
        let channels = self.running_mean.elem_count();
        if dims.1 != channels {
            return Err(shape_error(
                "BatchNorm2d",
                format!("input {:?} does not have {channels} channels", xs.dims()),
            ));
        }
        Ok(dims)
    }

    fn affine(&self, normed: Tensor, channels: usize) -> Result<Tensor> {
        let normed = match &self.weight {
            Some(w) => normed.broadcast_mul(&w.reshape((1, channels, 1, 1))?)?,
            None => normed,
        };
        match &self.bias {
            Some(b) => normed.broadcast_add(&b.reshape((1, channels, 1, 1))?),
            None => Ok(normed),
        }
    }

    /// Train mode: batch statistics, and the running statistics updated in place.
    pub fn forward_train(&self, xs: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = self.check_input(xs)?;
        let count = n * h * w;
        if count < 2 {
            return Err(shape_error(
                "BatchNorm2d",
                format!(
                    "train mode needs more than one value per channel, input {:?}",
                    xs.dims()
                ),
            ));
        }
        if let Some((ys, mean, var)) = self.fused_train(xs, (n, c, h * w))? {
            self.update_running(&mean, &var, count)?;
            return Ok(ys);
        }
        // Half-precision activations (autocast) are normalised in f32 with the f32 weights and
        // return in their own type.
        let x = if crate::autocast::is_half(xs.dtype()) {
            xs.to_dtype(DType::F32)?
        } else {
            xs.clone()
        };
        let mean = x.mean_keepdim((0, 2, 3))?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim((0, 2, 3))?;
        let normed = centered.broadcast_div(&(&var + self.cfg.eps)?.sqrt()?)?;
        self.update_running(&mean.flatten_all()?, &var.flatten_all()?, count)?;
        self.affine(normed, c)?.to_dtype(xs.dtype())
    }

    /// The fused CPU path (f32 / f64 on the CPU): output, batch mean and biased variance.
    fn fused_train(
        &self,
        xs: &Tensor,
        (n, c, hw): (usize, usize, usize),
    ) -> Result<Option<(Tensor, Tensor, Tensor)>> {
        let dtype = xs.dtype();
        if !xs.device().is_cpu() || !matches!(dtype, DType::F32 | DType::F64) {
            return Ok(None);
        }
        let matching = |t: &Option<Tensor>| t.as_ref().is_none_or(|t| t.dtype() == dtype);
        if !matching(&self.weight) || !matching(&self.bias) {
            return Ok(None);
        }
        let weight = match &self.weight {
            Some(w) => w.contiguous()?,
            None => Tensor::ones(c, dtype, xs.device())?,
        };
        let bias = match &self.bias {
            Some(b) => b.contiguous()?,
            None => Tensor::zeros(c, dtype, xs.device())?,
        };
        let op = FusedBatchNorm {
            planes: Planes { n, c, hw },
            eps: self.cfg.eps,
            stats: std::sync::Arc::default(),
        };
        let stats = op.stats.clone();
        let ys = xs.contiguous()?.apply_op3(&weight, &bias, op)?;
        // Cloned, not taken: the backward reads them too.
        let stats = stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let Some(stats) = stats else {
            candle_core::bail!("batch_norm_train: the fused kernel did not run");
        };
        let mean = Tensor::from_vec(stats.mean, c, xs.device())?;
        let var = Tensor::from_vec(stats.var, c, xs.device())?;
        Ok(Some((ys, mean, var)))
    }

    /// `running ← (1 − momentum)·running + momentum·batch`, with the unbiased variance.
    fn update_running(&self, mean: &Tensor, var: &Tensor, count: usize) -> Result<()> {
        let m = self.cfg.momentum;
        let stat_dtype = self.running_mean.dtype();
        let batch_mean = mean.detach().to_dtype(stat_dtype)?;
        let unbiased = (var.detach().to_dtype(DType::F64)? * (count as f64 / (count - 1) as f64))?
            .to_dtype(stat_dtype)?;
        // The running statistics are state, not parameters: detached, so no graph reaches them.
        let new_mean = ((self.running_mean.as_tensor().detach() * (1.0 - m))? + (batch_mean * m)?)?;
        let new_var = ((self.running_var.as_tensor().detach() * (1.0 - m))? + (unbiased * m)?)?;
        self.running_mean.set(&new_mean)?;
        self.running_var.set(&new_var)
    }

    /// Eval mode: the running statistics, as one per-channel scale and shift.
    pub fn forward_eval(&self, xs: &Tensor) -> Result<Tensor> {
        self.check_input(xs)?;
        // Under autocast the scale and shift are formed in the weights' type and cast once.
        let dtype = match &self.weight {
            Some(w) if crate::autocast::is_half(xs.dtype()) => w.dtype(),
            _ => xs.dtype(),
        };
        // Detached: the running statistics must neither receive a gradient nor keep the
        // activations of a graph alive.
        let inv_std = (self.running_var.as_tensor().detach() + self.cfg.eps)?
            .sqrt()?
            .recip()?
            .to_dtype(dtype)?;
        let scale = match &self.weight {
            Some(w) => (w * &inv_std)?,
            None => inv_std,
        };
        let shift = (self.running_mean.as_tensor().detach().to_dtype(dtype)? * &scale)?.neg()?;
        let shift = match &self.bias {
            Some(b) => (b + shift)?,
            None => shift,
        };
        // Channel ops whose parameter gradients sum contiguous runs (candle's broadcast
        // backward reduces over (0, 2, 3) element by element); both cast under autocast.
        crate::ops::bias::bias_add_at(&crate::ops::bias::scale_at(xs, &scale, 1)?, &shift, 1)
    }
}
