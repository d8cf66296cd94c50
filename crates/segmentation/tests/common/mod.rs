//! Shared helpers of the integration tests: fixture paths, the tiny model, tolerance checks.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use rtb_models::{ArchConfig, SwinConfig};
use rtb_segmentation::UperNetConfig;

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

/// The fixtures' backbone: transformers' tiny SwinBackbone (rtb's dense Swin rule).
pub fn swin_arch() -> ArchConfig {
    ArchConfig::from(SwinConfig::tiny().into_dense(0.0))
}

/// The fixtures' heads without dropout (transformers has none).
pub fn tiny_no_dropout() -> UperNetConfig {
    let mut cfg = UperNetConfig::tiny();
    cfg.dropout = 0.0;
    if let Some(aux) = cfg.auxiliary.as_mut() {
        aux.dropout = 0.0;
    }
    cfg
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

/// Asserts `relative_error ≤ tol` with a message naming `what`; prints and returns the
/// error (`--nocapture` shows the measured parity).
#[allow(clippy::print_stderr)]
pub fn assert_close(what: &str, actual: &Tensor, expected: &Tensor, tol: f64) -> f64 {
    let err = relative_error(actual, expected);
    assert!(err <= tol, "{what}: relative error {err:.3e} > {tol:.0e}");
    eprintln!("{what}: relative error {err:.3e}");
    err
}
