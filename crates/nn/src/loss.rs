//! Losses equal to `torch.nn.functional`'s, built from candle ops with correct gradients.
//!
//! - [`cross_entropy`]: logits `[N, C]` or `[N, C, d1, …]` (e.g. `[N, C, H, W]`), integer
//!   targets `[N]` / `[N, d1, …]`, `ignore_index`, class weights; `Mean` is PyTorch's weighted
//!   mean `Σ w[yᵢ]·ℓᵢ / Σ w[yᵢ]` over non-ignored elements (NaN when every target is ignored,
//!   as in PyTorch). mmseg's decode heads by default average over *all* pixels, ignored ones
//!   counting as zero: use `Reduction::None` and `mean_all()` for that.
//! - [`binary_cross_entropy_with_logits`]: `w·[(1 + (p−1)·z)·softplus(−x) + (1 − z)·x]` written
//!   so that no intermediate overflows (logits of ±100 give finite losses and gradients) and
//!   the gradient is `w·(σ(x)·(1 + (p−1)·z) − p·z)` everywhere, including at `x = 0`.
//! - [`l1_loss`], [`smooth_l1_loss`] (PyTorch's `beta`; `beta = 0` is L1): gradients use
//!   `sign(0) = 0` as PyTorch does.
//!
//! Half-precision inputs (autocast) are computed in f32 and give an f32 loss, as PyTorch's
//! autocast runs its losses in f32: a mean over thousands of pixels summed in f16 or bf16
//! would lose most of its digits.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use rtb_nn::loss::{cross_entropy, CrossEntropyOptions};
//! let logits = Tensor::new(&[[2f32, 0.5, -1.0], [0.1, 0.2, 0.3]], &Device::Cpu).unwrap();
//! let targets = Tensor::new(&[0u32, 255], &Device::Cpu).unwrap();
//! let opts = CrossEntropyOptions::default().with_ignore_index(255);
//! let loss = cross_entropy(&logits, &targets, &opts).unwrap().to_scalar::<f32>().unwrap();
//! // Only the first row counts: −log softmax([2, 0.5, −1])[0].
//! assert!((loss - 0.241_311).abs() < 1e-5);
//! ```

use candle_core::{DType, Result, Tensor};

use crate::error::{NnError, invalid, shape_error};

/// How per-element losses are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// Per-element losses, the input's shape.
    None,
    /// The mean (for cross-entropy: the weighted mean over non-ignored elements).
    #[default]
    Mean,
    /// The sum.
    Sum,
}

/// Options of [`cross_entropy`].
#[derive(Debug, Clone, Default)]
pub struct CrossEntropyOptions {
    /// Targets equal to this value contribute nothing (PyTorch's default is −100; mmseg uses
    /// 255).
    pub ignore_index: Option<i64>,
    /// Per-class weights `[C]`, same dtype as the logits.
    pub weight: Option<Tensor>,
    /// Reduction.
    pub reduction: Reduction,
}

impl CrossEntropyOptions {
    /// Sets the ignored target value.
    pub fn with_ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = Some(ignore_index);
        self
    }

    /// Sets per-class weights `[C]`.
    pub fn with_weight(mut self, weight: Tensor) -> Self {
        self.weight = Some(weight);
        self
    }

    /// Sets the reduction.
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
}

/// `log_softmax` over `dim`, stable (the max is subtracted; it carries no gradient because
/// the result does not depend on it).
pub fn log_softmax(xs: &Tensor, dim: usize) -> Result<Tensor> {
    let max = xs.max_keepdim(dim)?.detach();
    let shifted = xs.broadcast_sub(&max)?;
    let log_sum = shifted.exp()?.sum_keepdim(dim)?.log()?;
    shifted.broadcast_sub(&log_sum)
}

/// `torch.nn.functional.cross_entropy(logits, targets, weight, ignore_index, reduction)`
/// for class-index targets.
pub fn cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    opts: &CrossEntropyOptions,
) -> Result<Tensor> {
    const OP: &str = "cross_entropy";
    let logits = &crate::autocast::widen(logits)?;
    let dims = logits.dims();
    if dims.len() < 2 {
        return Err(shape_error(OP, "logits", "[N, C] or [N, C, d1, …]", dims));
    }
    let n_classes = dims[1];
    let mut expected: Vec<usize> = vec![dims[0]];
    expected.extend_from_slice(&dims[2..]);
    if targets.dims() != expected.as_slice() {
        return Err(shape_error(
            OP,
            "targets",
            format!("{expected:?} (logits {dims:?} without the class dim)"),
            targets.dims(),
        ));
    }
    if targets.dtype().is_float() {
        return Err(NnError::DType {
            op: OP,
            arg: "targets",
            got: targets.dtype(),
            supported: "u8, u32, i64 class indices",
        }
        .into());
    }
    if let Some(weight) = &opts.weight
        && weight.dims() != [n_classes]
    {
        return Err(shape_error(
            OP,
            "weight",
            format!("[C] with C = {n_classes}"),
            weight.dims(),
        ));
    }
    let float = logits.dtype();
    let targets = targets.to_dtype(DType::I64)?;
    let valid = match opts.ignore_index {
        Some(ignore) => targets.ne(ignore as f64)?,
        None => targets.ones_like()?.to_dtype(DType::U8)?,
    };
    let (safe, poison) = if targets.device().is_cpu() {
        (valid.where_cond(&targets, &targets.zeros_like()?)?, None)
    } else {
        let (safe, poison) =
            crate::cuda_paths::cross_entropy_targets_on_device(&targets, &valid, n_classes, float)?;
        (safe, Some(poison))
    };
    if poison.is_none() && safe.elem_count() > 0 {
        let lowest = safe.flatten_all()?.min(0)?.to_scalar::<i64>()?;
        let highest = safe.flatten_all()?.max(0)?.to_scalar::<i64>()?;
        if lowest < 0 || highest >= n_classes as i64 {
            let bad = if lowest < 0 { lowest } else { highest };
            return Err(invalid(
                OP,
                format!("target {bad} is out of bounds for {n_classes} classes"),
            ));
        }
    }
    let log_probs = log_softmax(logits, 1)?;
    let picked = log_probs
        .gather(&safe.unsqueeze(1)?.contiguous()?, 1)?
        .squeeze(1)?;
    let valid_f = valid.to_dtype(float)?;
    let weights = match &opts.weight {
        Some(weight) => {
            let per = weight
                .to_dtype(float)?
                .index_select(&safe.flatten_all()?, 0)?
                .reshape(safe.shape())?;
            (per * &valid_f)?
        }
        None => valid_f,
    };
    let losses = (picked * &weights)?.neg()?;
    let losses = match poison {
        Some(poison) => (losses + poison)?,
        None => losses,
    };
    match opts.reduction {
        Reduction::None => Ok(losses),
        Reduction::Sum => losses.sum_all(),
        Reduction::Mean => losses.sum_all()? / weights.sum_all()?,
    }
}

fn check_same_shape(op: &'static str, input: &Tensor, target: &Tensor) -> Result<()> {
    if input.dims() != target.dims() {
        return Err(shape_error(
            op,
            "target",
            format!("the input's shape {:?}", input.dims()),
            target.dims(),
        ));
    }
    Ok(())
}

fn reduce(losses: Tensor, reduction: Reduction) -> Result<Tensor> {
    match reduction {
        Reduction::None => Ok(losses),
        Reduction::Sum => losses.sum_all(),
        Reduction::Mean => losses.mean_all(),
    }
}

/// `softplus(x) = log(1 + eˣ) = relu(x) + log(1 + e^−|x|)`: never overflows, and candle's
/// derivatives of `relu` and `abs` at 0 (both take the `x ≥ 0` branch) agree, so the gradient
/// at 0 is ½.
fn softplus(xs: &Tensor) -> Result<Tensor> {
    xs.relu()? + (xs.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// Options of [`binary_cross_entropy_with_logits`].
#[derive(Debug, Clone, Default)]
pub struct BceWithLogitsOptions {
    /// Per-element weights, broadcast to the input.
    pub weight: Option<Tensor>,
    /// Weight of positive examples, broadcast to the input (PyTorch's `pos_weight`).
    pub pos_weight: Option<Tensor>,
    /// Reduction.
    pub reduction: Reduction,
}

/// `torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, weight,
/// pos_weight=pos_weight, reduction)`; targets are probabilities of the logits' shape.
pub fn binary_cross_entropy_with_logits(
    logits: &Tensor,
    targets: &Tensor,
    opts: &BceWithLogitsOptions,
) -> Result<Tensor> {
    check_same_shape("binary_cross_entropy_with_logits", logits, targets)?;
    let logits = &crate::autocast::widen(logits)?;
    let targets = targets.to_dtype(logits.dtype())?;
    let sp = softplus(logits)?;
    // loss = lw·softplus(x) − x·(lw + z − 1) with lw = 1 + (p − 1)·z; lw = 1 without pos_weight.
    let losses = match &opts.pos_weight {
        None => (sp - (logits * &targets)?)?,
        Some(pos_weight) => {
            let lw = targets
                .broadcast_mul(&(pos_weight.to_dtype(logits.dtype())? - 1.0)?)?
                .affine(1.0, 1.0)?;
            let coeff = ((&lw + &targets)? - 1.0)?;
            ((&lw * &sp)? - (logits * coeff)?)?
        }
    };
    let losses = match &opts.weight {
        Some(weight) => losses.broadcast_mul(&weight.to_dtype(logits.dtype())?)?,
        None => losses,
    };
    reduce(losses, opts.reduction)
}

/// `|d|` with PyTorch's derivative `sign(d)` (0 at 0; candle's `abs` has +1 there).
fn abs_torch_grad(diff: &Tensor) -> Result<Tensor> {
    diff * diff.sign()?.detach()
}

/// `torch.nn.functional.l1_loss(input, target, reduction)`.
pub fn l1_loss(input: &Tensor, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
    check_same_shape("l1_loss", input, target)?;
    let (input, target) = (
        &crate::autocast::widen(input)?,
        &crate::autocast::widen(target)?,
    );
    reduce(abs_torch_grad(&(input - target)?)?, reduction)
}

/// `torch.nn.functional.smooth_l1_loss(input, target, reduction, beta)`:
/// `0.5·d²/beta` where `|d| < beta`, else `|d| − 0.5·beta`; `beta = 0` is L1.
pub fn smooth_l1_loss(
    input: &Tensor,
    target: &Tensor,
    beta: f64,
    reduction: Reduction,
) -> Result<Tensor> {
    check_same_shape("smooth_l1_loss", input, target)?;
    let (input, target) = (
        &crate::autocast::widen(input)?,
        &crate::autocast::widen(target)?,
    );
    if !(beta.is_finite() && beta >= 0.0) {
        return Err(invalid(
            "smooth_l1_loss",
            format!("beta must be finite and ≥ 0, got {beta}"),
        ));
    }
    let diff = (input - target)?;
    let abs = abs_torch_grad(&diff)?;
    if beta == 0.0 {
        return reduce(abs, reduction);
    }
    let quadratic = (diff.sqr()? * (0.5 / beta))?;
    let linear = (&abs - 0.5 * beta)?;
    let losses = abs.lt(beta)?.where_cond(&quadratic, &linear)?;
    reduce(losses, reduction)
}
