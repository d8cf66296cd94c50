//! Shared helpers of the ops/conv tests: golden fixtures, closeness, gradient checks.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use rtb_nn::gradcheck::{GradCheck, check_gradients};

/// The tensors of one golden file, keyed `<case>.<tensor>`.
pub struct Golden {
    pub family: &'static str,
    tensors: HashMap<String, Tensor>,
}

impl Golden {
    pub fn load(family: &'static str) -> Self {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/ops")
            .join(format!("{family}.safetensors"));
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        Self { family, tensors }
    }

    /// Case names, sorted.
    pub fn cases(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tensors
            .keys()
            .filter_map(|k| k.split_once('.').map(|(case, _)| case.to_string()))
            .collect();
        names.sort();
        names.dedup();
        assert!(!names.is_empty(), "{}: no cases", self.family);
        names
    }

    pub fn get(&self, case: &str, name: &str) -> Tensor {
        self.tensors
            .get(&format!("{case}.{name}"))
            .unwrap_or_else(|| panic!("{}: missing {case}.{name}", self.family))
            .clone()
    }

    pub fn has(&self, case: &str, name: &str) -> bool {
        self.tensors.contains_key(&format!("{case}.{name}"))
    }

    pub fn cfg(&self, case: &str) -> Vec<f64> {
        self.get(case, "cfg").to_vec1::<f64>().unwrap()
    }
}

/// Asserts |a − e| ≤ atol + rtol·|e| elementwise (both converted to f64).
pub fn assert_close(what: &str, actual: &Tensor, expected: &Tensor, rtol: f64, atol: f64) {
    assert_eq!(
        actual.dims(),
        expected.dims(),
        "{what}: shape {:?} vs expected {:?}",
        actual.dims(),
        expected.dims()
    );
    let a: Vec<f64> = actual
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let e: Vec<f64> = expected
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let mut worst = (0usize, 0.0f64);
    for (i, (&x, &y)) in a.iter().zip(&e).enumerate() {
        let excess = (x - y).abs() - (atol + rtol * y.abs());
        if excess > worst.1 || x.is_nan() != y.is_nan() {
            worst = (i, excess.max(f64::MIN_POSITIVE));
        }
    }
    assert!(
        worst.1 <= 0.0,
        "{what}: element {} is {} but expected {} (rtol {rtol}, atol {atol})",
        worst.0,
        a[worst.0],
        e[worst.0]
    );
}

/// Gradient of sum(f(inputs) · gy) with respect to each input (f32 as in the fixtures).
pub fn grads_of<F>(f: F, inputs: &[Tensor], gy: &Tensor) -> (Tensor, Vec<Option<Tensor>>)
where
    F: Fn(&[Tensor]) -> candle_core::Result<Tensor>,
{
    let vars: Vec<candle_core::Var> = inputs
        .iter()
        .map(|t| candle_core::Var::from_tensor(t).unwrap())
        .collect();
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&tensors).unwrap();
    let loss = (&y * gy).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let g = tensors.iter().map(|t| grads.get(t).cloned()).collect();
    (y, g)
}

/// The largest magnitude in `t`, as f64.
pub fn max_abs(t: &Tensor) -> f64 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Deterministic values in [−scale, scale) (splitmix64), f64.
pub fn uniform(shape: &[usize], seed: u64, scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut state = seed;
    let data: Vec<f64> = (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
        })
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// Runs the gradient checker with default settings and asserts it passes with a gradient for
/// every input.
pub fn assert_gradcheck<F>(what: &str, f: F, inputs: &[Tensor])
where
    F: Fn(&[Tensor]) -> candle_core::Result<Tensor>,
{
    let report = check_gradients(f, inputs, &GradCheck::default()).unwrap();
    assert!(report.passed(), "{what}:\n{report}");
    assert!(
        report
            .inputs
            .iter()
            .all(|r| r.has_gradient && r.checked > 0),
        "{what}: an input got no gradient:\n{report}"
    );
}

/// Asserts that `result` is an error whose message contains every needle.
pub fn assert_error_mentions<T: std::fmt::Debug>(result: candle_core::Result<T>, needles: &[&str]) {
    match result {
        Ok(v) => panic!("expected an error mentioning {needles:?}, got Ok({v:?})"),
        Err(e) => {
            let message = e.to_string();
            for needle in needles {
                assert!(
                    message.contains(needle),
                    "error {message:?} does not mention {needle:?}"
                );
            }
        }
    }
}
