//! Shared helpers of rtb-detection's tests: golden fixtures and closeness.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

/// The tensors of one golden file.
pub struct Golden {
    pub name: &'static str,
    pub tensors: HashMap<String, Tensor>,
}

impl Golden {
    pub fn load(name: &'static str) -> Self {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(format!("{name}.safetensors"));
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        Self { name, tensors }
    }

    pub fn get(&self, key: &str) -> Tensor {
        self.tensors
            .get(key)
            .unwrap_or_else(|| panic!("{}: missing {key}", self.name))
            .clone()
    }
}

/// Largest |a − e| / (atol + rtol·|e|) over the elements; ≤ 1 passes.
pub fn assert_close(what: &str, actual: &Tensor, expected: &Tensor, rtol: f64, atol: f64) {
    assert_eq!(actual.dims(), expected.dims(), "{what}: shapes differ");
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
    for (i, (x, y)) in a.iter().zip(&e).enumerate() {
        assert!(
            (x - y).abs() <= atol + rtol * y.abs(),
            "{what}: element {i}: {x} vs expected {y}"
        );
    }
}

/// Largest relative error max|a − e| / max|e|.
pub fn relative_error(actual: &Tensor, expected: &Tensor) -> f64 {
    let diff = (actual.to_dtype(DType::F64).unwrap() - expected.to_dtype(DType::F64).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let scale = expected
        .to_dtype(DType::F64)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    diff / scale.max(f64::MIN_POSITIVE)
}
