//! Mixed precision without a global mode: the weights stay f32 (the master copy that the
//! optimizer updates and the checkpoints hold) and each op computes in the type of its
//! activations. Feed a model bf16 activations and every op with weights casts them to bf16
//! on the way in ([`to_compute`]); candle's `to_dtype` carries the gradient back to the f32
//! weight in f32. Norms reduce in f32 whatever their input, and the tasks cast logits to f32
//! before their losses, as PyTorch's autocast does.
//!
//! Half types take the candle compositions of each op (on the CPU too: candle's CPU backend
//! multiplies f16 but not bf16 matrices, so the CPU tests of this path use f16).
//!
//! ```
//! use candle_core::{DType, Device, Tensor, Var};
//! use rtb_nn::ops::linear::linear;
//! let weight = Var::ones((3, 4), DType::F32, &Device::Cpu).unwrap();
//! let xs = Tensor::ones((2, 4), DType::F16, &Device::Cpu).unwrap();
//! let ys = linear(&xs, weight.as_tensor(), None).unwrap();
//! assert_eq!(ys.dtype(), DType::F16);
//! let grads = ys.to_dtype(DType::F32).unwrap().sum_all().unwrap().backward().unwrap();
//! assert_eq!(grads.get(weight.as_tensor()).unwrap().dtype(), DType::F32);
//! ```

use candle_core::{DType, Result, Tensor};

/// Whether `dtype` is a 16-bit float (an autocast compute type).
pub fn is_half(dtype: DType) -> bool {
    matches!(dtype, DType::F16 | DType::BF16)
}

/// The type of the weights for activations of type `compute`: f32 for a half type (the
/// master copy), otherwise `compute` itself.
pub fn param_dtype(compute: DType) -> DType {
    if is_half(compute) {
        DType::F32
    } else {
        compute
    }
}

/// `tensor` (a weight) in the type of the activations `xs` when `xs` is a half type and
/// `tensor` is not; otherwise `tensor` itself, so an f32 / f64 mismatch stays the op's error.
pub fn to_compute(tensor: &Tensor, xs: &Tensor) -> Result<Tensor> {
    if is_half(xs.dtype()) && tensor.dtype() != xs.dtype() {
        tensor.to_dtype(xs.dtype())
    } else {
        Ok(tensor.clone())
    }
}

/// `xs` in f32 when it is a half type (what losses, norms and box geometry compute in under
/// autocast), otherwise `xs` itself.
pub fn widen(xs: &Tensor) -> Result<Tensor> {
    if is_half(xs.dtype()) {
        xs.to_dtype(DType::F32)
    } else {
        Ok(xs.clone())
    }
}

/// [`to_compute`] for an optional tensor.
pub fn to_compute_opt(tensor: Option<&Tensor>, xs: &Tensor) -> Result<Option<Tensor>> {
    tensor.map(|t| to_compute(t, xs)).transpose()
}

/// The gradient of each variable (the f32 master weights under autocast), in order; an error
/// names a variable without a gradient, or whose gradient is not in the variable's type.
pub fn master_gradients(
    vars: &[(String, candle_core::Var)],
    grads: &candle_core::backprop::GradStore,
) -> Result<Vec<Tensor>> {
    vars.iter()
        .map(|(name, var)| {
            let grad = grads
                .get(var.as_tensor())
                .ok_or_else(|| candle_core::Error::Msg(format!("{name}: no gradient")))?;
            if grad.dtype() != var.dtype() {
                candle_core::bail!(
                    "{name}: a {:?} gradient for a {:?} variable",
                    grad.dtype(),
                    var.dtype()
                );
            }
            Ok(grad.clone())
        })
        .collect()
}

/// How closely two sets of gradients agree (an autocast step against an f32 one): the cosine
/// of the angle between their concatenations, and the smallest cosine of one tensor pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    /// Cosine between the concatenated gradients (1: the same direction).
    pub overall: f64,
    /// The smallest per-tensor cosine, and the index of its pair.
    pub worst: (f64, usize),
}

/// The [`Agreement`] of the gradients `a[i]` and `b[i]` (pairs of the same shape; computed in
/// f64 on the host). A pair where either side is all zeros has cosine 1 if both are, else 0.
pub fn agreement(a: &[Tensor], b: &[Tensor]) -> Result<Agreement> {
    if a.len() != b.len() {
        candle_core::bail!("agreement: {} gradients against {}", a.len(), b.len());
    }
    let cosine = |dot: f64, x: f64, y: f64| match (x > 0.0, y > 0.0) {
        (true, true) => dot / (x.sqrt() * y.sqrt()),
        (false, false) => 1.0,
        _ => 0.0,
    };
    let (mut dot, mut norm_a, mut norm_b) = (0f64, 0f64, 0f64);
    let mut worst = (1f64, 0usize);
    for (i, (ga, gb)) in a.iter().zip(b).enumerate() {
        if ga.dims() != gb.dims() {
            candle_core::bail!(
                "agreement: gradient {i} has shapes {:?} and {:?}",
                ga.dims(),
                gb.dims()
            );
        }
        let va: Vec<f64> = ga.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let vb: Vec<f64> = gb.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let (mut d, mut x, mut y) = (0f64, 0f64, 0f64);
        for (u, v) in va.iter().zip(&vb) {
            d += u * v;
            x += u * u;
            y += v * v;
        }
        let c = cosine(d, x, y);
        if c < worst.0 {
            worst = (c, i);
        }
        dot += d;
        norm_a += x;
        norm_b += y;
    }
    Ok(Agreement {
        overall: cosine(dot, norm_a, norm_b),
        worst,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn agreement_is_the_cosine_overall_and_per_tensor() {
        let t = |v: &[f32]| Tensor::new(v, &Device::Cpu).unwrap();
        let a = [t(&[1.0, 0.0]), t(&[0.0, 0.0]), t(&[2.0, 2.0])];
        let b = [t(&[1.0, 0.0]), t(&[0.0, 0.0]), t(&[2.0, -2.0])];
        let got = agreement(&a, &b).unwrap();
        assert_eq!(got.worst, (0.0, 2));
        assert!((got.overall - 1.0 / 9.0).abs() < 1e-12, "{got:?}");
        assert_eq!(agreement(&a, &a).unwrap().overall, 1.0);
        assert!(agreement(&a[..1], &b[..2]).is_err());
        assert!(agreement(&[t(&[1.0])], &[t(&[1.0, 2.0])]).is_err());
        let zero_vs_one = agreement(&[t(&[0.0])], &[t(&[1.0])]).unwrap();
        assert_eq!(zero_vs_one.overall, 0.0);
    }

    #[test]
    fn master_gradients_name_a_missing_or_mistyped_gradient() {
        let w = candle_core::Var::ones(3, DType::F32, &Device::Cpu).unwrap();
        let unused = candle_core::Var::ones(2, DType::F32, &Device::Cpu).unwrap();
        let xs = Tensor::ones(3, DType::F16, &Device::Cpu).unwrap();
        let loss = (to_compute(w.as_tensor(), &xs).unwrap() * &xs)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let vars = vec![("w".to_string(), w.clone())];
        let got = master_gradients(&vars, &grads).unwrap();
        assert_eq!(got[0].dtype(), DType::F32);
        assert_eq!(got[0].to_vec1::<f32>().unwrap(), [1.0, 1.0, 1.0]);
        let with_unused = vec![("w".to_string(), w), ("unused".to_string(), unused)];
        let err = master_gradients(&with_unused, &grads)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unused: no gradient"), "{err}");
    }

    #[test]
    fn weights_follow_half_activations_only() {
        let w = Tensor::ones(3, DType::F32, &Device::Cpu).unwrap();
        let half = Tensor::ones(3, DType::F16, &Device::Cpu).unwrap();
        let double = Tensor::ones(3, DType::F64, &Device::Cpu).unwrap();
        assert_eq!(to_compute(&w, &half).unwrap().dtype(), DType::F16);
        assert_eq!(to_compute(&w, &double).unwrap().dtype(), DType::F32);
        assert_eq!(widen(&half).unwrap().dtype(), DType::F32);
        assert_eq!(widen(&double).unwrap().dtype(), DType::F64);
        assert_eq!(param_dtype(DType::BF16), DType::F32);
        assert_eq!(param_dtype(DType::F64), DType::F64);
    }
}
