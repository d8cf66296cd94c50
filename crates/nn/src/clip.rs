//! Gradient clipping by global norm, `torch.nn.utils.clip_grad_norm_`'s semantics.
//!
//! The total norm is the 2-norm of all gradients together; every gradient is multiplied by
//! `min(1, max_norm / (total + 1e-6))`; the total norm before clipping is returned. As in
//! PyTorch (`error_if_nonfinite=False`), a non-finite total propagates into the gradients.
//!
//! ```
//! use candle_core::{Device, Var};
//! use rtb_nn::clip::clip_grad_norm;
//! let w = Var::new(&[3.0f32, 4.0], &Device::Cpu).unwrap();
//! let mut grads = w.as_tensor().sqr().unwrap().sum_all().unwrap().backward().unwrap();
//! let total = clip_grad_norm(&mut grads, &[w.clone()], 1.0).unwrap();
//! assert!((total - 10.0).abs() < 1e-5); // the gradient 2·w = (6, 8)
//! let g: Vec<f32> = grads.get(w.as_tensor()).unwrap().to_vec1().unwrap();
//! assert!((g[0] - 0.6).abs() < 1e-5 && (g[1] - 0.8).abs() < 1e-5);
//! ```

use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Var};

use crate::error::invalid;

/// Clips the gradients of `vars` in `grads` to a global 2-norm of `max_norm`; returns the norm
/// before clipping. Variables without a gradient are skipped.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    if max_norm.is_nan() || max_norm < 0.0 {
        return Err(invalid(
            "clip_grad_norm",
            format!("max_norm must be ≥ 0, got {max_norm}"),
        ));
    }
    if let Some(first) = vars.first()
        && !first.device().is_cpu()
    {
        return crate::cuda_paths::clip_grad_norm_on_device(grads, vars, max_norm);
    }
    let mut squares = 0f64;
    for var in vars {
        if let Some(g) = grads.get(var.as_tensor()) {
            // Per-tensor norms in the gradient's dtype, as PyTorch computes them.
            let norm = g.sqr()?.sum_all()?.sqrt()?.to_dtype(DType::F64)?;
            squares += norm.to_scalar::<f64>()?.powi(2);
        }
    }
    let total = squares.sqrt();
    let ratio = max_norm / (total + 1e-6);
    // Written so that NaN propagates, as torch.clamp does (f64::min would drop it).
    let coefficient = if ratio > 1.0 { 1.0 } else { ratio };
    for var in vars {
        let clipped = match grads.get(var.as_tensor()) {
            Some(g) => (g.detach() * coefficient)?,
            None => continue,
        };
        grads.insert(var.as_tensor(), clipped);
    }
    Ok(total)
}
