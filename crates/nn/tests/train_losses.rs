//! Losses against torch.nn.functional (fixtures from `tests/golden/train/make_golden.py`),
//! gradient checks and error cases.

mod train_common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use rtb_nn::gradcheck::{GradCheck, check_gradients};
use rtb_nn::loss::{
    BceWithLogitsOptions, CrossEntropyOptions, Reduction, binary_cross_entropy_with_logits,
    cross_entropy, l1_loss, smooth_l1_loss,
};
use train_common::{assert_close, fixture, get};

fn reduction(name: &str) -> Reduction {
    match name {
        "mean" => Reduction::Mean,
        "sum" => Reduction::Sum,
        _ => Reduction::None,
    }
}

fn tolerance(dtype: &str) -> (f64, f64) {
    if dtype == "f32" {
        (2e-5, 2e-6)
    } else {
        (1e-11, 1e-13)
    }
}

/// Evaluates `loss_fn` at the fixture's input, compares the loss and the gradient of
/// `sum(loss · proj)` with torch's.
fn check(
    fx: &HashMap<String, Tensor>,
    key: &str,
    dtype: &str,
    input: &Tensor,
    loss_fn: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) {
    let (rtol, atol) = tolerance(dtype);
    let var = Var::from_tensor(input).unwrap();
    let loss = loss_fn(var.as_tensor()).unwrap();
    let want = get(fx, &format!("{key}.loss"));
    let loss = if want.rank() == 0 {
        loss.reshape(()).unwrap()
    } else {
        loss
    };
    assert_close(&format!("{key} loss"), &loss, want, rtol, atol);
    let grads = (loss * get(fx, &format!("{key}.proj")))
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let grad = grads.get(var.as_tensor()).expect("no gradient");
    assert_close(
        &format!("{key} grad"),
        grad,
        get(fx, &format!("{key}.grad")),
        rtol,
        atol,
    );
}

#[test]
fn cross_entropy_matches_torch_on_nc_and_nchw() {
    let fx = fixture("losses.safetensors");
    for dtype in ["f32", "f64"] {
        for (shape, ignore, reductions) in [
            ("ce2d", -100i64, &["mean", "sum", "none"][..]),
            ("ce4d", 255, &["mean", "none"][..]),
        ] {
            let logits = get(&fx, &format!("{dtype}.{shape}.logits"));
            let targets = get(&fx, &format!("{dtype}.{shape}.targets"));
            let weight = get(&fx, &format!("{dtype}.{shape}.weight"));
            for red in reductions {
                for weighted in [false, true] {
                    let mut opts = CrossEntropyOptions::default()
                        .with_ignore_index(ignore)
                        .with_reduction(reduction(red));
                    if weighted {
                        opts = opts.with_weight(weight.clone());
                    }
                    let key = format!(
                        "{dtype}.{shape}.{red}.{}",
                        if weighted { "w" } else { "nw" }
                    );
                    check(&fx, &key, dtype, logits, |x| {
                        cross_entropy(x, targets, &opts)
                    });
                }
            }
        }
    }
}

#[test]
fn bce_with_logits_matches_torch_and_stays_finite_at_100() {
    let fx = fixture("losses.safetensors");
    for dtype in ["f32", "f64"] {
        let logits = get(&fx, &format!("{dtype}.bce.logits"));
        let targets = get(&fx, &format!("{dtype}.bce.targets"));
        for variant in ["plain", "weight", "pos_weight"] {
            for red in ["mean", "none"] {
                let opts = BceWithLogitsOptions {
                    weight: (variant == "weight")
                        .then(|| get(&fx, &format!("{dtype}.bce.weight")).clone()),
                    pos_weight: (variant == "pos_weight")
                        .then(|| get(&fx, &format!("{dtype}.bce.pos_weight")).clone()),
                    reduction: reduction(red),
                };
                let key = format!("{dtype}.bce.{variant}.{red}");
                check(&fx, &key, dtype, logits, |x| {
                    binary_cross_entropy_with_logits(x, targets, &opts)
                });
            }
        }
    }
    // ±100 in f32: finite loss and gradient σ(x) − z.
    let x = Var::new(&[100f32, -100., 0.0], &Device::Cpu).unwrap();
    let z = Tensor::new(&[0f32, 1., 0.25], &Device::Cpu).unwrap();
    let opts = BceWithLogitsOptions {
        reduction: Reduction::Sum,
        ..Default::default()
    };
    let loss = binary_cross_entropy_with_logits(x.as_tensor(), &z, &opts).unwrap();
    let value = loss.to_scalar::<f32>().unwrap();
    assert!(
        (value - (200.0 + std::f32::consts::LN_2)).abs() < 1e-3,
        "{value}"
    );
    let grad: Vec<f32> = loss
        .backward()
        .unwrap()
        .get(x.as_tensor())
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(grad[..2], [1.0, -1.0]);
    assert!((grad[2] - 0.25).abs() < 1e-6, "{grad:?}");
}

#[test]
fn l1_and_smooth_l1_match_torch() {
    let fx = fixture("losses.safetensors");
    for dtype in ["f32", "f64"] {
        let pred = get(&fx, &format!("{dtype}.reg.pred"));
        let target = get(&fx, &format!("{dtype}.reg.target"));
        for red in ["mean", "sum", "none"] {
            check(&fx, &format!("{dtype}.l1.{red}"), dtype, pred, |x| {
                l1_loss(x, target, reduction(red))
            });
            for (name, beta) in [("b1", 1.0), ("b05", 0.5), ("b0", 0.0)] {
                check(
                    &fx,
                    &format!("{dtype}.smooth_l1_{name}.{red}"),
                    dtype,
                    pred,
                    |x| smooth_l1_loss(x, target, beta, reduction(red)),
                );
            }
        }
    }
}

#[test]
fn losses_gradcheck() {
    let dev = Device::Cpu;
    let logits = Tensor::randn(0f64, 2.0, (2, 3, 2, 3), &dev).unwrap();
    let targets = Tensor::new(
        &[[[0u32, 2, 255], [1, 1, 0]], [[2, 255, 1], [0, 0, 2]]],
        &dev,
    )
    .unwrap();
    let weight = Tensor::new(&[0.5f64, 2.0, 1.0], &dev).unwrap();
    let opts = CrossEntropyOptions::default()
        .with_ignore_index(255)
        .with_weight(weight);
    let report = check_gradients(
        |xs| cross_entropy(&xs[0], &targets, &opts),
        &[logits],
        &GradCheck::default(),
    )
    .unwrap();
    assert!(report.passed(), "cross_entropy: {report}");

    // Logits include exactly 0, where candle's relu/abs derivatives meet.
    let x = Tensor::new(&[[0f64, 1.5, -2.0], [30.0, -0.3, 0.0]], &dev).unwrap();
    let z = Tensor::new(&[[0.2f64, 1.0, 0.0], [0.5, 0.9, 1.0]], &dev).unwrap();
    let pos = Tensor::new(&[2.0f64, 0.5, 1.0], &dev).unwrap();
    let opts = BceWithLogitsOptions {
        pos_weight: Some(pos),
        reduction: Reduction::None,
        ..Default::default()
    };
    let report = check_gradients(
        |xs| binary_cross_entropy_with_logits(&xs[0], &z, &opts),
        &[x],
        &GradCheck::default(),
    )
    .unwrap();
    assert!(report.passed(), "bce: {report}");

    let pred = Tensor::new(&[[0.3f64, -1.2, 2.5], [0.05, 0.7, -0.45]], &dev).unwrap();
    let target = Tensor::zeros((2, 3), DType::F64, &dev).unwrap();
    let report = check_gradients(
        |xs| smooth_l1_loss(&xs[0], &target, 0.5, Reduction::None),
        std::slice::from_ref(&pred),
        &GradCheck::default(),
    )
    .unwrap();
    assert!(report.passed(), "smooth_l1: {report}");
    let report = check_gradients(
        |xs| l1_loss(&xs[0], &target, Reduction::Mean),
        &[pred],
        &GradCheck::default(),
    )
    .unwrap();
    assert!(report.passed(), "l1: {report}");
}

#[test]
fn cross_entropy_of_all_ignored_targets_is_nan_as_in_torch() {
    let dev = Device::Cpu;
    let logits = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
    let targets = Tensor::new(&[255u32, 255], &dev).unwrap();
    let opts = CrossEntropyOptions::default().with_ignore_index(255);
    let loss = cross_entropy(&logits, &targets, &opts).unwrap();
    assert!(loss.to_scalar::<f32>().unwrap().is_nan());
    let per = cross_entropy(&logits, &targets, &opts.with_reduction(Reduction::None)).unwrap();
    assert_eq!(per.to_vec1::<f32>().unwrap(), vec![0.0, 0.0]);
}

#[test]
fn losses_reject_bad_shapes_and_targets() {
    let dev = Device::Cpu;
    let logits = Tensor::zeros((2, 3, 4), DType::F32, &dev).unwrap();
    let targets = Tensor::zeros((2, 3), DType::U32, &dev).unwrap();
    let err = cross_entropy(&logits, &targets, &CrossEntropyOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("[2, 4]") && err.contains("[2, 3]"), "{err}");
    let logits = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
    let targets = Tensor::new(&[1u32, 3], &dev).unwrap();
    let err = cross_entropy(&logits, &targets, &CrossEntropyOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("target 3 is out of bounds for 3 classes"),
        "{err}"
    );
    let opts =
        CrossEntropyOptions::default().with_weight(Tensor::ones(4, DType::F32, &dev).unwrap());
    let err = cross_entropy(&logits, &Tensor::new(&[1u32, 0], &dev).unwrap(), &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("weight") && err.contains("[4]"), "{err}");
    let a = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
    let b = Tensor::zeros((3, 2), DType::F32, &dev).unwrap();
    for err in [
        l1_loss(&a, &b, Reduction::Mean).unwrap_err().to_string(),
        smooth_l1_loss(&a, &b, 1.0, Reduction::Mean)
            .unwrap_err()
            .to_string(),
        binary_cross_entropy_with_logits(&a, &b, &BceWithLogitsOptions::default())
            .unwrap_err()
            .to_string(),
    ] {
        assert!(err.contains("[2, 3]") && err.contains("[3, 2]"), "{err}");
    }
    let err = smooth_l1_loss(&a, &a, -1.0, Reduction::Mean)
        .unwrap_err()
        .to_string();
    assert!(err.contains("beta"), "{err}");
}
