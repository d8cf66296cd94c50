//! Shared helpers of the integration tests: fixture paths and tolerance checks.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

/// A file under `tests/golden/`.
pub fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// All tensors of a golden safetensors file.
pub fn load(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(golden(name), &Device::Cpu).expect("golden fixture")
}

/// `max |a − b| / max |b|` (the error relative to the reference's scale).
pub fn relative_error(actual: &Tensor, expected: &Tensor) -> f64 {
    assert_eq!(actual.dims(), expected.dims(), "shapes differ");
    let a = actual.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
    let b = expected
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap();
    let diff = (a - &b)
        .unwrap()
        .abs()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let scale = b.abs().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap();
    if scale == 0.0 { diff } else { diff / scale }
}

/// Asserts `relative_error ≤ tol` with a message naming `what`.
pub fn assert_close(what: &str, actual: &Tensor, expected: &Tensor, tol: f64) {
    let err = relative_error(actual, expected);
    assert!(err <= tol, "{what}: relative error {err:.3e} > {tol:.0e}");
}

/// A model of `arch` with trainable f32 variables holding the weights of fixture `weights`.
pub fn trainable(
    arch: &rtb_models::ArchConfig,
    weights: &str,
) -> (candle_nn::VarMap, Box<dyn rtb_models::Backbone>) {
    let canonical = rtb_models::read_canonical(arch, &golden(weights), None).unwrap();
    let varmap = candle_nn::VarMap::new();
    let vb = rtb_models::init::trainable_builder(
        &varmap,
        canonical.tensors.into_iter().collect(),
        0,
        DType::F32,
        &Device::Cpu,
    );
    let model = arch.build(&vb).unwrap();
    (varmap, model)
}
