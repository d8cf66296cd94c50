//! Bilinear/nearest resize, max pooling and adaptive average pooling against PyTorch
//! (outputs and gradients, f32) and against central differences (f64), on both the CPU
//! kernels and the device-generic compositions.

mod ops_support;

use candle_core::{DType, Device, Tensor};
use ops_support::{
    Golden, assert_close, assert_error_mentions, assert_gradcheck, grads_of, uniform,
};
use rtb_nn::ops::pool::{MaxPool2dConfig, adaptive_avg_pool2d, max_pool2d, max_pool2d_composed};
use rtb_nn::ops::resize::{
    resize_bilinear, resize_bilinear_composed, resize_nearest, upsample_nearest2x,
};

/// f32 tolerances for ops that combine at most a few dozen terms.
const RTOL: f64 = 1e-5;
const ATOL: f64 = 1e-6;

type Op = fn(&Tensor, &[f64]) -> candle_core::Result<Tensor>;
type UnaryOp = fn(&Tensor) -> candle_core::Result<Tensor>;

/// Runs `op` on every case of a golden file whose name passes `filter` and compares the
/// output and the input gradient with PyTorch's.
fn check_family(
    family: &'static str,
    filter: impl Fn(&str) -> bool,
    op: Op,
    tol: (f64, f64),
) -> usize {
    let golden = Golden::load(family);
    let mut checked = 0;
    for case in golden.cases().into_iter().filter(|c| filter(c)) {
        let cfg = golden.cfg(&case);
        let (y, grads) = grads_of(
            |t| op(&t[0], &cfg),
            &[golden.get(&case, "x")],
            &golden.get(&case, "gy"),
        );
        assert_close(
            &format!("{family}/{case} y"),
            &y,
            &golden.get(&case, "y"),
            tol.0,
            tol.1,
        );
        let gx = grads[0]
            .as_ref()
            .unwrap_or_else(|| panic!("{family}/{case}: no gradient"));
        assert_close(
            &format!("{family}/{case} gx"),
            gx,
            &golden.get(&case, "gx"),
            tol.0,
            tol.1,
        );
        checked += 1;
    }
    assert!(checked > 0, "{family}: no case matched");
    checked
}

fn bilinear(x: &Tensor, c: &[f64]) -> candle_core::Result<Tensor> {
    resize_bilinear(x, (c[0] as usize, c[1] as usize), c[2] != 0.0)
}

fn bilinear_composed(x: &Tensor, c: &[f64]) -> candle_core::Result<Tensor> {
    resize_bilinear_composed(x, (c[0] as usize, c[1] as usize), c[2] != 0.0)
}

#[test]
fn bilinear_align_corners_false_matches_torch() {
    check_family("bilinear", |c| c.ends_with("_ac0"), bilinear, (RTOL, ATOL));
    check_family(
        "bilinear",
        |c| c.ends_with("_ac0"),
        bilinear_composed,
        (RTOL, ATOL),
    );
}

#[test]
fn bilinear_align_corners_true_matches_torch() {
    check_family("bilinear", |c| c.ends_with("_ac1"), bilinear, (RTOL, ATOL));
    check_family(
        "bilinear",
        |c| c.ends_with("_ac1"),
        bilinear_composed,
        (RTOL, ATOL),
    );
}

#[test]
fn bilinear_gradcheck() {
    for (i, (h, w, oh, ow)) in [(4, 5, 7, 9), (7, 6, 3, 4), (3, 3, 1, 5), (1, 2, 3, 3)]
        .into_iter()
        .enumerate()
    {
        for align_corners in [false, true] {
            let x = uniform(&[2, 2, h, w], i as u64, 1.0);
            assert_gradcheck(
                "resize_bilinear",
                |t| resize_bilinear(&t[0], (oh, ow), align_corners),
                std::slice::from_ref(&x),
            );
            assert_gradcheck(
                "resize_bilinear_composed",
                |t| resize_bilinear_composed(&t[0], (oh, ow), align_corners),
                &[x],
            );
        }
    }
}

#[test]
fn nearest_matches_torch() {
    check_family(
        "nearest",
        |_| true,
        |x, c| resize_nearest(x, (c[0] as usize, c[1] as usize)),
        (0.0, 1e-6),
    );
    let golden = Golden::load("nearest");
    let x = golden.get("x2", "x");
    assert_close(
        "upsample_nearest2x",
        &upsample_nearest2x(&x).unwrap(),
        &golden.get("x2", "y"),
        0.0,
        0.0,
    );
}

#[test]
fn nearest_gradcheck() {
    let x = uniform(&[1, 2, 3, 4], 5, 1.0);
    assert_gradcheck(
        "upsample_nearest2x",
        |t| upsample_nearest2x(&t[0]),
        std::slice::from_ref(&x),
    );
    assert_gradcheck(
        "resize_nearest 5x7",
        |t| resize_nearest(&t[0], (5, 7)),
        std::slice::from_ref(&x),
    );
    assert_gradcheck(
        "resize_nearest down",
        |t| resize_nearest(&t[0], (2, 3)),
        &[x],
    );
}

fn max_cfg(c: &[f64]) -> MaxPool2dConfig {
    let u = |i: usize| c[i] as usize;
    MaxPool2dConfig {
        kernel: (u(0), u(1)),
        stride: (u(2), u(3)),
        padding: (u(4), u(5)),
        dilation: (u(6), u(7)),
        ceil_mode: c[8] != 0.0,
    }
}

#[test]
fn max_pool_matches_torch_including_ties() {
    let n = check_family(
        "max_pool",
        |_| true,
        |x, c| max_pool2d(x, &max_cfg(c)),
        (0.0, 1e-6),
    );
    assert!(n >= 12);
}

#[test]
fn max_pool_composed_matches_torch_including_ties() {
    check_family(
        "max_pool",
        |_| true,
        |x, c| max_pool2d_composed(x, &max_cfg(c)),
        (0.0, 1e-6),
    );
}

#[test]
fn max_pool_3x3_s2_p1_gradcheck() {
    let cfg = MaxPool2dConfig::new(3).with_stride(2).with_padding(1);
    let x = uniform(&[2, 2, 7, 8], 11, 1.0);
    assert_gradcheck(
        "max_pool2d 3x3 s2 p1",
        |t| max_pool2d(&t[0], &cfg),
        std::slice::from_ref(&x),
    );
    assert_gradcheck(
        "max_pool2d_composed 3x3 s2 p1",
        |t| max_pool2d_composed(&t[0], &cfg),
        &[x],
    );
}

#[test]
fn max_pool_2x2_s2_gradcheck() {
    for ceil_mode in [false, true] {
        let cfg = MaxPool2dConfig::new(2).with_ceil_mode(ceil_mode);
        let x = uniform(&[1, 3, 7, 6], 12, 1.0);
        assert_gradcheck(
            "max_pool2d 2x2 s2",
            |t| max_pool2d(&t[0], &cfg),
            std::slice::from_ref(&x),
        );
        assert_gradcheck(
            "max_pool2d_composed 2x2 s2",
            |t| max_pool2d_composed(&t[0], &cfg),
            &[x],
        );
    }
}

#[test]
fn max_pool_ceil_mode_and_dilation_gradcheck() {
    let cfg = MaxPool2dConfig::new(3)
        .with_stride(2)
        .with_padding(1)
        .with_dilation(2)
        .with_ceil_mode(true);
    let x = uniform(&[1, 2, 8, 9], 13, 1.0);
    assert_gradcheck("max_pool2d dilated ceil", |t| max_pool2d(&t[0], &cfg), &[x]);
}

#[test]
fn max_pool_gradient_goes_to_the_first_of_tied_maxima() {
    // A window of equal values: PyTorch gives the whole gradient to the first element.
    let x = Tensor::ones((1, 1, 2, 2), DType::F32, &Device::Cpu).unwrap();
    let gy = Tensor::new(&[[[[3f32]]]], &Device::Cpu).unwrap();
    for op in [max_pool2d, max_pool2d_composed] {
        let (_, g) = grads_of(
            |t| op(&t[0], &MaxPool2dConfig::new(2)),
            std::slice::from_ref(&x),
            &gy,
        );
        let g: Vec<f32> = g[0]
            .as_ref()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(g, vec![3.0, 0.0, 0.0, 0.0]);
    }
}

#[test]
fn adaptive_avg_pool_matches_torch() {
    check_family(
        "adaptive_avg_pool",
        |_| true,
        |x, c| adaptive_avg_pool2d(x, (c[0] as usize, c[1] as usize)),
        (RTOL, ATOL),
    );
}

#[test]
fn adaptive_avg_pool_gradcheck() {
    for (i, out) in [(3, 2), (1, 1), (6, 7), (4, 4)].into_iter().enumerate() {
        let x = uniform(&[2, 2, 5, 7], 20 + i as u64, 1.0);
        assert_gradcheck(
            "adaptive_avg_pool2d",
            |t| adaptive_avg_pool2d(&t[0], out),
            &[x],
        );
    }
}

#[test]
fn f64_and_f32_paths_agree() {
    // Every op above on f32 equals its f64 evaluation (one expectation over dtypes).
    let x64 = uniform(&[2, 3, 9, 7], 30, 2.0);
    let x32 = x64.to_dtype(DType::F32).unwrap();
    let ops: [(&str, UnaryOp); 5] = [
        ("bilinear", |x| resize_bilinear(x, (5, 11), false)),
        ("bilinear_ac", |x| resize_bilinear(x, (13, 4), true)),
        ("nearest", |x| resize_nearest(x, (4, 10))),
        ("max_pool", |x| {
            max_pool2d(x, &MaxPool2dConfig::new(3).with_stride(2).with_padding(1))
        }),
        ("adaptive", |x| adaptive_avg_pool2d(x, (4, 3))),
    ];
    for (name, op) in ops {
        assert_close(name, &op(&x32).unwrap(), &op(&x64).unwrap(), 1e-5, 1e-6);
    }
}

#[test]
fn resize_and_pool_shape_errors_name_the_shapes() {
    let x3 = Tensor::zeros((3, 4, 5), DType::F32, &Device::Cpu).unwrap();
    assert_error_mentions(
        resize_bilinear(&x3, (2, 2), false),
        &["resize_bilinear", "[3, 4, 5]"],
    );
    assert_error_mentions(resize_nearest(&x3, (2, 2)), &["[3, 4, 5]"]);
    assert_error_mentions(adaptive_avg_pool2d(&x3, (2, 2)), &["[3, 4, 5]"]);
    assert_error_mentions(max_pool2d(&x3, &MaxPool2dConfig::new(2)), &["[3, 4, 5]"]);
    let x = Tensor::zeros((1, 1, 4, 5), DType::F32, &Device::Cpu).unwrap();
    assert_error_mentions(
        resize_bilinear(&x, (0, 2), false),
        &["[1, 1, 4, 5]", "(0, 2)"],
    );
    assert_error_mentions(adaptive_avg_pool2d(&x, (2, 0)), &["[1, 1, 4, 5]"]);
    assert_error_mentions(max_pool2d(&x, &MaxPool2dConfig::new(7)), &["(4, 5)"]);
    assert_error_mentions(
        max_pool2d(&x, &MaxPool2dConfig::new(2).with_padding(2)),
        &["padding", "(4, 5)"],
    );
}
