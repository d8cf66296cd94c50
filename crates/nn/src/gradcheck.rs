//! A finite-difference gradient checker.
//!
//! candle records a graph for every op on a `Var`, but several of its ops silently produce no
//! gradient (or a wrong one). The only defence is to compare every backward pass with
//! numbers: [`check_gradients`] evaluates a function of some f64 tensors, reduces its output
//! to a scalar with a fixed random projection (so every output element's gradient matters),
//! and compares candle's analytic gradient with central differences.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use rtb_nn::gradcheck::{check_gradients, GradCheck};
//! let x = Tensor::new(&[[0.3f64, -1.2], [2.0, 0.5]], &Device::Cpu).unwrap();
//! let report = check_gradients(|xs| xs[0].sqr()?.sin(), &[x], &GradCheck::default()).unwrap();
//! assert!(report.passed(), "{report}");
//! ```

use std::fmt;

use candle_core::{DType, Result, Tensor, Var};

/// Settings of a gradient check.
#[derive(Debug, Clone)]
pub struct GradCheck {
    /// Step of the central difference.
    pub eps: f64,
    /// Relative tolerance: |analytic − numeric| ≤ atol + rtol·|numeric|.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// At most this many elements of each input are perturbed (spread evenly over the
    /// tensor, first and last included); the analytic gradient is still computed in full.
    pub max_elements_per_input: usize,
    /// Seed of the projection that reduces the output to a scalar.
    pub seed: u64,
}

impl Default for GradCheck {
    fn default() -> Self {
        Self {
            eps: 1e-6,
            rtol: 1e-5,
            atol: 1e-7,
            max_elements_per_input: 512,
            seed: 0x5eed,
        }
    }
}

/// The worst disagreement found for one input.
#[derive(Debug, Clone, PartialEq)]
pub struct InputReport {
    /// Index of the input.
    pub input: usize,
    /// Number of elements compared.
    pub checked: usize,
    /// Flat index of the worst element.
    pub worst_index: usize,
    /// Analytic gradient at the worst element.
    pub analytic: f64,
    /// Central-difference estimate at the worst element.
    pub numeric: f64,
    /// |analytic − numeric| − (atol + rtol·|numeric|) at the worst element; ≤ 0 means within
    /// tolerance.
    pub excess: f64,
    /// Whether candle produced any gradient for this input at all.
    pub has_gradient: bool,
}

/// The outcome of [`check_gradients`].
#[derive(Debug, Clone, PartialEq)]
pub struct GradCheckReport {
    /// One entry per input.
    pub inputs: Vec<InputReport>,
}

impl GradCheckReport {
    /// Whether every checked element of every input is within tolerance.
    pub fn passed(&self) -> bool {
        self.inputs.iter().all(|r| r.excess <= 0.0)
    }
}

impl fmt::Display for GradCheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.inputs {
            writeln!(
                f,
                "input {}: {} elements checked{}, worst at {}: analytic {:.9e}, numeric {:.9e} ({})",
                r.input,
                r.checked,
                if r.has_gradient {
                    ""
                } else {
                    " (NO GRADIENT from candle)"
                },
                r.worst_index,
                r.analytic,
                r.numeric,
                if r.excess <= 0.0 { "ok" } else { "FAIL" },
            )?;
        }
        Ok(())
    }
}

/// A deterministic projection vector in [−1, 1) (splitmix64), so that the scalar loss depends
/// on every output element with a distinct weight.
fn projection(len: usize, seed: u64) -> Vec<f64> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

fn indices_to_check(len: usize, max: usize) -> Vec<usize> {
    if len <= max || max <= 1 {
        return (0..len.min(max.max(1))).collect();
    }
    (0..max).map(|i| i * (len - 1) / (max - 1)).collect()
}

/// Compares candle's gradient of `f` at `inputs` with central differences.
///
/// `inputs` must be f64 tensors; the function may return a tensor of any shape. The scalar
/// checked is `sum(f(inputs) · w)` for a fixed projection `w`.
pub fn check_gradients<F>(f: F, inputs: &[Tensor], cfg: &GradCheck) -> Result<GradCheckReport>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    for (i, x) in inputs.iter().enumerate() {
        if x.dtype() != DType::F64 {
            candle_core::bail!(
                "gradient check: input {i} is {:?}; use f64 so differences are meaningful",
                x.dtype()
            );
        }
    }
    let vars = inputs
        .iter()
        .map(|x| Var::from_tensor(&x.copy()?))
        .collect::<Result<Vec<_>>>()?;
    let as_tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let out = f(&as_tensors)?;
    let weights = Tensor::from_vec(
        projection(out.elem_count(), cfg.seed),
        out.shape(),
        out.device(),
    )?;
    let loss = (out * &weights)?.sum_all()?;
    let grads = loss.backward()?;

    let scalar =
        |xs: &[Tensor]| -> Result<f64> { (f(xs)? * &weights)?.sum_all()?.to_scalar::<f64>() };

    let mut reports = Vec::with_capacity(inputs.len());
    for (input_idx, var) in vars.iter().enumerate() {
        let shape = var.shape().clone();
        let device = var.device().clone();
        let base: Vec<f64> = var.as_tensor().flatten_all()?.to_vec1()?;
        let (analytic, has_gradient) = match grads.get(var.as_tensor()) {
            Some(g) => (g.flatten_all()?.to_vec1::<f64>()?, true),
            None => (vec![0.0; base.len()], false),
        };
        let mut report = InputReport {
            input: input_idx,
            checked: 0,
            worst_index: 0,
            analytic: 0.0,
            numeric: 0.0,
            excess: f64::NEG_INFINITY,
            has_gradient,
        };
        for idx in indices_to_check(base.len(), cfg.max_elements_per_input) {
            let mut perturbed = base.clone();
            let mut evaluate = |delta: f64| -> Result<f64> {
                perturbed[idx] = base[idx] + delta;
                let mut xs: Vec<Tensor> = inputs.to_vec();
                xs[input_idx] = Tensor::from_slice(&perturbed, &shape, &device)?;
                scalar(&xs)
            };
            let plus = evaluate(cfg.eps)?;
            let minus = evaluate(-cfg.eps)?;
            let numeric = (plus - minus) / (2.0 * cfg.eps);
            let excess = (analytic[idx] - numeric).abs() - (cfg.atol + cfg.rtol * numeric.abs());
            report.checked += 1;
            if excess > report.excess || excess.is_nan() {
                report.worst_index = idx;
                report.analytic = analytic[idx];
                report.numeric = numeric;
                report.excess = if excess.is_nan() {
                    f64::INFINITY
                } else {
                    excess
                };
            }
        }
        // A missing gradient where the numeric one is zero everywhere is fine (the function
        // does not depend on this input); otherwise the excess above already fails.
        reports.push(report);
    }
    Ok(GradCheckReport { inputs: reports })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn passes_on_a_correct_gradient() {
        let x = Tensor::new(&[[0.3f64, -1.2, 0.7], [2.0, 0.5, -0.1]], &Device::Cpu).unwrap();
        let w = Tensor::new(&[[1.5f64], [-0.5], [0.25]], &Device::Cpu).unwrap();
        let report = check_gradients(
            |xs| xs[0].matmul(&xs[1])?.tanh(),
            &[x, w],
            &GradCheck::default(),
        )
        .unwrap();
        assert!(report.passed(), "{report}");
        assert_eq!(report.inputs.len(), 2);
        assert!(
            report
                .inputs
                .iter()
                .all(|r| r.has_gradient && r.checked > 0)
        );
    }

    #[test]
    fn fails_when_the_graph_is_cut() {
        // `detach` drops the gradient: the checker must notice.
        let x = Tensor::new(&[1.0f64, 2.0, 3.0], &Device::Cpu).unwrap();
        let report =
            check_gradients(|xs| xs[0].detach().sqr(), &[x], &GradCheck::default()).unwrap();
        assert!(!report.passed());
        assert!(!report.inputs[0].has_gradient);
        assert!(report.to_string().contains("NO GRADIENT"));
    }

    #[test]
    fn rejects_f32_inputs() {
        let x = Tensor::new(&[1.0f32], &Device::Cpu).unwrap();
        assert!(check_gradients(|xs| xs[0].sqr(), &[x], &GradCheck::default()).is_err());
    }

    #[test]
    fn samples_spread_over_large_inputs() {
        assert_eq!(indices_to_check(10, 3), vec![0, 4, 9]);
        assert_eq!(indices_to_check(3, 10), vec![0, 1, 2]);
    }
}
