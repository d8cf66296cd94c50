//! The device paths of `rtb_nn::cuda_paths`, run on the CPU (candle's CPU backend has the same
//! ops as its CUDA one): equal to rtb-nn's CPU kernels, forward and gradients, and
//! gradient-checked in f64, so the composition (candle's convolution and its backward,
//! the device-side clipping and target checks) is right before a GPU runs
//! it. `rtb device-check` then compares the device's numerics.

mod ops_support;

use candle_core::{DType, Device, Tensor, Var};
use ops_support::{assert_close, assert_gradcheck, grads_of, uniform};
use rtb_nn::conv::{Conv2dConfig, conv2d};
use rtb_nn::cuda_paths::{
    candle_conv2d_supported, clip_grad_norm_on_device, conv2d_candle,
    cross_entropy_targets_on_device,
};
use rtb_nn::ops::pool::{MaxPool2dConfig, max_pool2d};

/// The convolutions the models use (ResNet stem, 3×3, strided 1×1, Swin's patch embedding,
/// grouped and dilated).
fn conv_cases() -> Vec<(&'static str, Conv2dConfig, [usize; 4], [usize; 4])> {
    let base = Conv2dConfig::default();
    vec![
        ("3x3 p1", base.with_padding(1), [2, 6, 9, 9], [8, 6, 3, 3]),
        (
            "7x7 s2 p3",
            base.with_stride(2).with_padding(3),
            [2, 3, 15, 15],
            [4, 3, 7, 7],
        ),
        ("1x1 s2", base.with_stride(2), [2, 8, 9, 9], [4, 8, 1, 1]),
        (
            "4x4 s4 patch",
            base.with_stride(4),
            [1, 3, 16, 16],
            [6, 3, 4, 4],
        ),
        (
            "3x3 d2 g2",
            base.with_padding(2).with_dilation(2).with_groups(2),
            [2, 4, 8, 8],
            [6, 2, 3, 3],
        ),
    ]
}

#[test]
fn candle_conv2d_equals_the_cpu_kernel_forward_and_backward() {
    for (name, cfg, x_dims, w_dims) in conv_cases() {
        assert!(candle_conv2d_supported(&cfg), "{name}");
        let xs = uniform(&x_dims, 1, 1.0).to_dtype(DType::F32).unwrap();
        let w = uniform(&w_dims, 2, 0.5).to_dtype(DType::F32).unwrap();
        let b = uniform(&[w_dims[0]], 3, 0.5).to_dtype(DType::F32).unwrap();
        let want = conv2d(&xs, &w, Some(&b), &cfg).unwrap();
        let gy = uniform(want.dims(), 4, 1.0).to_dtype(DType::F32).unwrap();
        let (y0, g0) = grads_of(
            |t| conv2d(&t[0], &t[1], Some(&t[2]), &cfg),
            &[xs.clone(), w.clone(), b.clone()],
            &gy,
        );
        let (y1, g1) = grads_of(
            |t| conv2d_candle(&t[0], &t[1], Some(&t[2]), &cfg),
            &[xs, w, b],
            &gy,
        );
        assert_close(&format!("{name} forward"), &y1, &y0, 1e-5, 1e-5);
        for (i, (a, e)) in g1.iter().zip(&g0).enumerate() {
            let (a, e) = (a.as_ref().unwrap(), e.as_ref().unwrap());
            assert_close(&format!("{name} grad {i}"), a, e, 1e-4, 1e-5);
        }
    }
}

#[test]
fn candle_conv2d_passes_the_gradient_check_in_f64() {
    for (name, cfg, x_dims, w_dims) in conv_cases() {
        let xs = uniform(&x_dims, 5, 1.0);
        let w = uniform(&w_dims, 6, 0.5);
        let b = uniform(&[w_dims[0]], 7, 0.5);
        assert_gradcheck(
            name,
            |t| conv2d_candle(&t[0], &t[1], Some(&t[2]), &cfg),
            &[xs, w, b],
        );
    }
}

#[test]
fn asymmetric_convolutions_are_left_to_the_composition() {
    let cfg = Conv2dConfig {
        stride: (1, 2),
        ..Conv2dConfig::default()
    };
    assert!(!candle_conv2d_supported(&cfg));
}

/// Why max pooling stays on the composition on CUDA: candle 0.11.1's `max_pool2d` backward,
/// even for non-overlapping windows (the only case it accepts), multiplies the gradient by the
/// fraction of maxima in each window instead of dividing by their count, so a unique maximum
/// of a 2×2 window receives a quarter of its gradient. If a candle upgrade fixes this, this test
/// fails and candle's pooling kernel can become the CUDA path.
#[test]
fn candle_max_pool_backward_scales_the_gradient_by_the_window_area() {
    let xs = uniform(&[2, 3, 8, 12], 8, 1.0)
        .to_dtype(DType::F32)
        .unwrap();
    let cfg = MaxPool2dConfig::new(2);
    let gy = uniform(&[2, 3, 4, 6], 9, 1.0).to_dtype(DType::F32).unwrap();
    let (y0, g0) = grads_of(|t| max_pool2d(&t[0], &cfg), std::slice::from_ref(&xs), &gy);
    let (y1, g1) = grads_of(|t| t[0].max_pool2d(2), &[xs], &gy);
    assert_close("max pool forward", &y1, &y0, 0.0, 0.0);
    let quarter = (g0[0].as_ref().unwrap() * 0.25).unwrap();
    assert_close(
        "candle's max pool grad",
        g1[0].as_ref().unwrap(),
        &quarter,
        1e-6,
        0.0,
    );
}

#[test]
fn clipping_on_the_device_equals_the_host_reduction() {
    for max_norm in [0.5, 1e6] {
        let run = |on_device: bool| {
            let a = Var::new(&[[1f32, -2.0, 3.0], [0.5, 4.0, -1.0]], &Device::Cpu).unwrap();
            let b = Var::new(&[7f32, -0.25], &Device::Cpu).unwrap();
            let unused = Var::new(&[1f32], &Device::Cpu).unwrap();
            let loss = (a.as_tensor().sqr().unwrap().sum_all().unwrap()
                + (b.as_tensor() * 3.0).unwrap().sum_all().unwrap())
            .unwrap();
            let mut grads = loss.backward().unwrap();
            let vars = [a.clone(), b.clone(), unused];
            let total = if on_device {
                clip_grad_norm_on_device(&mut grads, &vars, max_norm).unwrap()
            } else {
                rtb_nn::clip::clip_grad_norm(&mut grads, &vars, max_norm).unwrap()
            };
            let ga = grads.get(a.as_tensor()).unwrap().clone();
            let gb = grads.get(b.as_tensor()).unwrap().clone();
            (total, ga, gb)
        };
        let (t0, a0, b0) = run(false);
        let (t1, a1, b1) = run(true);
        assert!((t0 - t1).abs() <= 1e-9 * t0, "{t0} vs {t1}");
        assert_close("clipped a", &a1, &a0, 1e-6, 0.0);
        assert_close("clipped b", &b1, &b0, 1e-6, 0.0);
    }
}

#[test]
fn device_targets_are_safe_to_gather_and_poison_only_out_of_range_ones() {
    let targets = Tensor::new(&[0i64, 4, 255, 5, -1, 2], &Device::Cpu).unwrap();
    let valid = targets.ne(255f64).unwrap();
    let (safe, poison) = cross_entropy_targets_on_device(&targets, &valid, 5, DType::F32).unwrap();
    assert_eq!(safe.to_vec1::<i64>().unwrap(), vec![0, 4, 0, 0, 0, 2]);
    let poison = poison.to_vec1::<f32>().unwrap();
    let is_nan: Vec<bool> = poison.iter().map(|v| v.is_nan()).collect();
    assert_eq!(is_nan, vec![false, false, false, true, true, false]);
    assert!(poison.iter().filter(|v| !v.is_nan()).all(|v| *v == 0.0));
}
