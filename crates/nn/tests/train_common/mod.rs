//! Shared helpers of the `train_*` parity tests: fixture loading and tolerant comparison.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

/// Loads `tests/golden/train/<name>` (made by `make_golden.py`).
pub fn fixture(name: &str) -> HashMap<String, Tensor> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/train")
        .join(name);
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// The tensor stored under `key`.
pub fn get<'a>(fixture: &'a HashMap<String, Tensor>, key: &str) -> &'a Tensor {
    fixture
        .get(key)
        .unwrap_or_else(|| panic!("fixture has no key {key:?}"))
}

/// Asserts equal shapes and |got − want| ≤ atol + rtol·|want| everywhere (NaN only where
/// expected NaN), naming the worst element.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, rtol: f64, atol: f64) {
    assert_eq!(got.dims(), want.dims(), "{what}: shapes differ");
    let g: Vec<f64> = got
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let w: Vec<f64> = want
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
        if a.is_nan() || b.is_nan() {
            assert!(a.is_nan() && b.is_nan(), "{what}[{i}]: got {a}, want {b}");
            continue;
        }
        let excess = (a - b).abs() - (atol + rtol * b.abs());
        if excess > 0.0 && worst.is_none_or(|(_, e)| excess > e) {
            worst = Some((i, excess));
        }
    }
    if let Some((i, _)) = worst {
        panic!(
            "{what}: element {i} got {} want {} (rtol {rtol}, atol {atol})",
            g[i], w[i]
        );
    }
}
