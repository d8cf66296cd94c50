//! The paths rtb-nn's public ops take on a device other than the CPU (CUDA): candle's own
//! kernels where candle has a correct one for the op's configuration, with candle's backward,
//! and reductions that stay on the device instead of copying to the host on every call.
//!
//! The CPU keeps its own kernels (bit for bit as before); each public op dispatches here at its
//! top when its tensor is not on the CPU. The functions are public so that tests can run them
//! on the CPU against the CPU kernels, gradients included: candle's CPU and CUDA backends
//! implement the same ops, so that checks the composition; the device's numerics are then
//! `rtb device-check`'s part (a). ARCHITECTURE.md has the op-by-op table.

use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};

use crate::conv::Conv2dConfig;

/// Whether candle's `Tensor::conv2d` expresses `cfg`: it takes one stride, padding and dilation
/// for both axes.
pub fn candle_conv2d_supported(cfg: &Conv2dConfig) -> bool {
    cfg.stride.0 == cfg.stride.1
        && cfg.padding.0 == cfg.padding.1
        && cfg.dilation.0 == cfg.dilation.1
}

/// [`crate::conv::conv2d`] through candle's convolution (on CUDA: im2col + cuBLAS, or cuDNN
/// with candle's `cudnn` feature) and candle's backward (a transposed convolution for the
/// input, a convolution for the weight). `cfg` must pass [`candle_conv2d_supported`].
pub fn conv2d_candle(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: &Conv2dConfig,
) -> Result<Tensor> {
    let ys = xs.conv2d(
        weight,
        cfg.padding.0,
        cfg.stride.0,
        cfg.dilation.0,
        cfg.groups,
    )?;
    match bias {
        Some(bias) => ys.broadcast_add(&bias.reshape((1, bias.elem_count(), 1, 1))?),
        None => Ok(ys),
    }
}

/// [`crate::clip::clip_grad_norm`] with the norm reduced on the device: one host copy per call
/// (the returned total) instead of one per parameter; the scaling stays on the device.
pub fn clip_grad_norm_on_device(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let mut squares: Option<Tensor> = None;
    for var in vars {
        if let Some(g) = grads.get(var.as_tensor()) {
            // Per-tensor norms in the gradient's dtype, as PyTorch computes them; summed in f64.
            let norm = g.sqr()?.sum_all()?.sqrt()?.to_dtype(DType::F64)?;
            let square = norm.sqr()?;
            squares = Some(match squares {
                Some(acc) => (acc + square)?,
                None => square,
            });
        }
    }
    let Some(squares) = squares else {
        return Ok(0.0);
    };
    let total = squares.sqrt()?;
    // min(1, max_norm / (total + 1e-6)) with NaN propagating, as torch.clamp does.
    let ratio = ((total.clone() + 1e-6)?.recip()? * max_norm)?;
    let over = ratio.gt(1.0)?;
    let coefficient = over.where_cond(&ratio.ones_like()?, &ratio)?;
    for var in vars {
        let clipped = match grads.get(var.as_tensor()) {
            Some(g) => g
                .detach()
                .broadcast_mul(&coefficient.to_dtype(g.dtype())?)?,
            None => continue,
        };
        grads.insert(var.as_tensor(), clipped);
    }
    total.to_scalar::<f64>()
}

/// Class-index targets made safe to gather on the device without checking their range on the
/// host: `(safe, poison)`, where `safe` replaces ignored and out-of-range targets by 0 and
/// `poison` is 0 where the target was valid or ignored and NaN where it was out of range.
/// Adding `poison` to the per-element losses makes a bad target show as a NaN loss (PyTorch's
/// CUDA kernel asserts on the device instead) rather than copying the targets' range to the
/// host on every call, which would stall the device's queue.
pub fn cross_entropy_targets_on_device(
    targets: &Tensor,
    valid: &Tensor,
    n_classes: usize,
    float: DType,
) -> Result<(Tensor, Tensor)> {
    let zeros = targets.zeros_like()?;
    let in_range = targets.ge(0i64)?.mul(&targets.lt(n_classes as i64)?)?;
    let usable = valid.mul(&in_range)?;
    let safe = usable.where_cond(targets, &zeros)?;
    let bad = valid.mul(&in_range.eq(0u8)?)?;
    let nan = Tensor::full(f32::NAN, bad.shape(), bad.device())?.to_dtype(float)?;
    let poison = bad.where_cond(&nan, &nan.zeros_like()?)?;
    Ok((safe, poison))
}
