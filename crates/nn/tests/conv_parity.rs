//! conv2d (im2col/col2im + GEMM) against PyTorch's F.conv2d outputs and gradients, against
//! central differences, and its building blocks against each other.

mod ops_support;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use ops_support::{
    Golden, assert_close, assert_error_mentions, assert_gradcheck, grads_of, max_abs, uniform,
};
use rtb_nn::conv::{
    Conv2d, Conv2dConfig, Im2ColGeometry, col2im, conv2d, conv2d_composed, conv2d_grads, im2col,
    im2col_composed,
};

fn cfg_of(c: &[f64]) -> Conv2dConfig {
    Conv2dConfig {
        stride: (c[0] as usize, c[1] as usize),
        padding: (c[2] as usize, c[3] as usize),
        dilation: (c[4] as usize, c[5] as usize),
        groups: c[6] as usize,
    }
}

/// f32 tolerances: outputs and gradients are sums of up to a few hundred products.
const RTOL: f64 = 1e-5;
const ATOL: f64 = 2e-5;

type ConvFn = fn(&Tensor, &Tensor, Option<&Tensor>, &Conv2dConfig) -> candle_core::Result<Tensor>;

#[test]
fn conv2d_matches_torch_outputs_and_gradients() {
    let golden = Golden::load("conv2d");
    for case in golden.cases() {
        let c = golden.cfg(&case);
        let cfg = cfg_of(&c);
        let has_bias = c[7] != 0.0;
        let mut inputs = vec![golden.get(&case, "x"), golden.get(&case, "weight")];
        if has_bias {
            inputs.push(golden.get(&case, "bias"));
        }
        for (path, op) in [("cpu", conv2d as ConvFn), ("composed", conv2d_composed)] {
            let (y, grads) = grads_of(
                |xs| op(&xs[0], &xs[1], xs.get(2), &cfg),
                &inputs,
                &golden.get(&case, "gy"),
            );
            assert_close(
                &format!("{path} {case} y"),
                &y,
                &golden.get(&case, "y"),
                RTOL,
                ATOL,
            );
            let names = ["gx", "gweight", "gbias"];
            for (i, g) in grads.iter().enumerate() {
                let g = g
                    .as_ref()
                    .unwrap_or_else(|| panic!("{case}: no gradient for input {i}"));
                assert_close(
                    &format!("{path} {case} {}", names[i]),
                    g,
                    &golden.get(&case, names[i]),
                    RTOL,
                    ATOL,
                );
            }
        }
    }
}

#[test]
fn conv2d_grads_match_torch_gradients() {
    let golden = Golden::load("conv2d");
    for case in golden.cases() {
        let cfg = cfg_of(&golden.cfg(&case));
        let (x, w, gy) = (
            golden.get(&case, "x"),
            golden.get(&case, "weight"),
            golden.get(&case, "gy"),
        );
        let (gx, gw) = conv2d_grads(&x, &w, &gy, &cfg).unwrap();
        assert_close(
            &format!("{case} gx"),
            &gx,
            &golden.get(&case, "gx"),
            RTOL,
            ATOL,
        );
        assert_close(
            &format!("{case} gweight"),
            &gw,
            &golden.get(&case, "gweight"),
            RTOL,
            ATOL,
        );
        let wrong = Tensor::zeros(1, gy.dtype(), &Device::Cpu).unwrap();
        assert_error_mentions(conv2d_grads(&x, &w, &wrong, &cfg), &["grad_out", "[1]"]);
    }
}

/// The kernels give each thread whole images when the batch has at least one per thread, and
/// otherwise spread each image's products across threads; small images are batched into
/// chunks whose im2col matrices sit side by side (chunks of 6 at 10×10, cut short at the end
/// of a thread's share; one image per chunk when the chunk's matrix would be too large); the
/// weight gradient's product order depends on the output channels. Every combination gives
/// the same output and gradients.
#[test]
fn conv2d_does_not_depend_on_the_thread_count_or_chunking() {
    let cases = [
        // (batch, in, out, kernel, size, config): uneven splits, both product orders.
        (5, 4, 6, 3, 7, Conv2dConfig::default().with_padding(1)),
        (13, 3, 5, 3, 10, Conv2dConfig::default().with_padding(1)),
        (
            37,
            5,
            3,
            3,
            4,
            Conv2dConfig::default().with_stride(2).with_padding(1),
        ),
        (3, 150, 4, 3, 20, Conv2dConfig::default().with_padding(1)),
        (7, 6, 4, 1, 6, Conv2dConfig::default()),
        (3, 8, 130, 3, 5, Conv2dConfig::default().with_padding(1)),
        (
            4,
            4,
            6,
            3,
            9,
            Conv2dConfig::default()
                .with_stride(2)
                .with_padding(2)
                .with_dilation(2)
                .with_groups(2),
        ),
    ];
    for (seed, (batch, c_in, c_out, kernel, size, cfg)) in cases.into_iter().enumerate() {
        let seed = 10 * seed as u64;
        let x = uniform(&[batch, c_in, size, size], seed + 1, 1.0);
        let w = uniform(&[c_out, c_in / cfg.groups, kernel, kernel], seed + 2, 0.5);
        let y = conv2d(&x, &w, None, &cfg).unwrap();
        let gy = uniform(y.dims(), seed + 3, 1.0);
        let grads_with = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    let y = conv2d(&x, &w, None, &cfg).unwrap();
                    let (gx, gw) = conv2d_grads(&x, &w, &gy, &cfg).unwrap();
                    (y, gx, gw)
                })
        };
        let (y1, gx1, gw1) = grads_with(1);
        let y_composed = conv2d_composed(&x, &w, None, &cfg).unwrap();
        assert_close(
            &format!("case {seed} y vs composed"),
            &y1,
            &y_composed,
            1e-12,
            1e-12,
        );
        for threads in [2, 3, 8] {
            let (y, gx, gw) = grads_with(threads);
            let case = format!("case {seed}, {threads} threads");
            assert_close(&format!("{case} y"), &y, &y1, 1e-12, 1e-12);
            assert_close(&format!("{case} gx"), &gx, &gx1, 1e-12, 1e-12);
            assert_close(&format!("{case} gw"), &gw, &gw1, 1e-12, 1e-12);
        }
        let (gx_composed, gw_composed) = grads_of(
            |t| conv2d_composed(&t[0], &t[1], None, &cfg),
            &[x.clone(), w.clone()],
            &gy,
        )
        .1
        .into_iter()
        .map(Option::unwrap)
        .collect::<Vec<_>>()
        .try_into()
        .map(|[a, b]: [Tensor; 2]| (a, b))
        .unwrap();
        assert_close("gx vs composed", &gx1, &gx_composed, 1e-12, 1e-12);
        assert_close("gw vs composed", &gw1, &gw_composed, 1e-12, 1e-12);
    }
}

/// The image fed to a network, or a frozen weight, gets no gradient computed for it; the
/// other argument's gradient is unchanged.
#[test]
fn conv2d_backward_skips_arguments_that_need_no_gradient() {
    let cfg = Conv2dConfig::default().with_padding(1);
    let x = uniform(&[2, 3, 6, 5], 1, 1.0);
    let w = uniform(&[4, 3, 3, 3], 2, 0.5);
    let gy = uniform(&[2, 4, 6, 5], 3, 1.0);
    let (gx, gw) = conv2d_grads(&x, &w, &gy, &cfg).unwrap();

    let w_var = candle_core::Var::from_tensor(&w).unwrap();
    let y = conv2d(&x, w_var.as_tensor(), None, &cfg).unwrap();
    let grads = (y * &gy).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&x).is_none(), "the plain input got a gradient");
    assert_close(
        "weight grad",
        grads.get(w_var.as_tensor()).unwrap(),
        &gw,
        1e-6,
        1e-6,
    );

    let x_var = candle_core::Var::from_tensor(&x).unwrap();
    let y = conv2d(x_var.as_tensor(), &w, None, &cfg).unwrap();
    let grads = (y * &gy).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&w).is_none(), "the frozen weight got a gradient");
    assert_close(
        "input grad",
        grads.get(x_var.as_tensor()).unwrap(),
        &gx,
        1e-6,
        1e-6,
    );
}

#[test]
fn conv2d_gradcheck_over_configs() {
    let configs = [
        (
            "k3s1p1",
            (2, 3, 5, 6),
            (4, 3, 3, 3),
            Conv2dConfig::default().with_padding(1),
        ),
        (
            "k3s2p1",
            (1, 2, 7, 6),
            (3, 2, 3, 3),
            Conv2dConfig::default().with_stride(2).with_padding(1),
        ),
        (
            "k3_dil2",
            (1, 2, 7, 7),
            (2, 2, 3, 3),
            Conv2dConfig::default().with_dilation(2).with_padding(1),
        ),
        (
            "groups2",
            (2, 4, 5, 5),
            (4, 2, 3, 3),
            Conv2dConfig::default().with_groups(2).with_padding(1),
        ),
        (
            "depthwise",
            (1, 3, 5, 4),
            (3, 1, 3, 3),
            Conv2dConfig::default().with_groups(3).with_padding(1),
        ),
        ("k1", (2, 3, 4, 5), (2, 3, 1, 1), Conv2dConfig::default()),
        (
            "k1s2",
            (2, 3, 5, 5),
            (2, 3, 1, 1),
            Conv2dConfig::default().with_stride(2),
        ),
        (
            "k2x3_s2x1_p1x0",
            (1, 2, 6, 5),
            (3, 2, 2, 3),
            Conv2dConfig {
                stride: (2, 1),
                padding: (1, 0),
                ..Default::default()
            },
        ),
    ];
    for (i, (name, xs, ws, cfg)) in configs.into_iter().enumerate() {
        let x = uniform(&[xs.0, xs.1, xs.2, xs.3], 10 + i as u64, 1.0);
        let w = uniform(&[ws.0, ws.1, ws.2, ws.3], 100 + i as u64, 0.5);
        let b = uniform(&[ws.0], 1000 + i as u64, 0.5);
        assert_gradcheck(
            name,
            |t| conv2d(&t[0], &t[1], Some(&t[2]), &cfg),
            &[x.clone(), w.clone(), b.clone()],
        );
        assert_gradcheck(
            name,
            |t| conv2d_composed(&t[0], &t[1], Some(&t[2]), &cfg),
            &[x, w, b],
        );
    }
}

#[test]
fn im2col_cpu_kernel_equals_composed_im2col_and_col2im_is_its_adjoint() {
    let x = uniform(&[2, 3, 7, 6], 7, 1.0);
    for cfg in [
        Conv2dConfig::default().with_padding(1),
        Conv2dConfig::default()
            .with_stride(2)
            .with_padding(2)
            .with_dilation(2),
        Conv2dConfig {
            stride: (1, 3),
            padding: (0, 1),
            ..Default::default()
        },
    ] {
        let g = Im2ColGeometry::new(3, (7, 6), (3, 2), &cfg).unwrap();
        let fast = im2col(&x, &g).unwrap();
        let composed = im2col_composed(&x, &g).unwrap();
        assert_close(&format!("im2col {cfg:?}"), &fast, &composed, 0.0, 0.0);
        // <im2col(x), c> = <x, col2im(c)> for any c.
        let c = uniform(fast.dims(), 9, 1.0);
        let lhs = (fast * &c)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let back = col2im(&c, &g).unwrap();
        let rhs = (&x * back)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(
            (lhs - rhs).abs() < 1e-10 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
        assert_gradcheck(
            "im2col_composed",
            |t| im2col_composed(&t[0], &g),
            std::slice::from_ref(&x),
        );
        assert_gradcheck("im2col", |t| im2col(&t[0], &g), std::slice::from_ref(&x));
    }
}

#[test]
fn conv2d_f32_equals_candle_conv2d_forward() {
    // candle's forward is correct (only its backward is slow): a second, independent reference.
    let x = uniform(&[2, 8, 9, 10], 3, 1.0)
        .to_dtype(DType::F32)
        .unwrap();
    let w = uniform(&[6, 8, 3, 3], 4, 0.3).to_dtype(DType::F32).unwrap();
    let ours = conv2d(
        &x,
        &w,
        None,
        &Conv2dConfig::default().with_stride(2).with_padding(1),
    )
    .unwrap();
    let candle = x.conv2d(&w, 1, 2, 1, 1).unwrap();
    assert_close("conv2d vs candle", &ours, &candle, 1e-5, 1e-5);
    // Non-contiguous inputs are accepted (made contiguous first).
    let xt = x
        .transpose(2, 3)
        .unwrap()
        .contiguous()
        .unwrap()
        .transpose(2, 3)
        .unwrap();
    let again = conv2d(
        &xt,
        &w,
        None,
        &Conv2dConfig::default().with_stride(2).with_padding(1),
    )
    .unwrap();
    assert_close("non-contiguous input", &again, &ours, 0.0, 0.0);
}

#[test]
fn conv2d_module_uses_torch_key_names_and_trains() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    let layer = Conv2d::new(
        4,
        6,
        3,
        Conv2dConfig::default().with_padding(1),
        &vb.pp("conv"),
    )
    .unwrap();
    let mut keys: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        vec!["conv.bias".to_string(), "conv.weight".to_string()]
    );
    assert_eq!(layer.weight().dims(), &[6, 4, 3, 3]);
    // PyTorch's default init bound is 1/sqrt(fan_in) = 1/6.
    let max = max_abs(layer.weight());
    assert!(max <= 1.0 / 6.0 && max > 0.05, "weight bound {max}");
    let x = uniform(&[1, 4, 5, 5], 1, 1.0);
    let y = layer.forward(&x).unwrap();
    let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    for var in varmap.all_vars() {
        assert!(
            grads.get(&var).is_some(),
            "no gradient for a Conv2d parameter"
        );
    }
    let no_bias = Conv2d::new_no_bias(4, 2, 1, Conv2dConfig::default(), &vb.pp("proj")).unwrap();
    assert!(no_bias.bias().is_none());
}

#[test]
fn candle_linear_matches_torch_linear() {
    // candle_nn::Linear's gradients are correct (checked here), so rtb-nn has no wrapper.
    let golden = Golden::load("linear");
    for case in golden.cases() {
        let inputs = [
            golden.get(&case, "x"),
            golden.get(&case, "weight"),
            golden.get(&case, "bias"),
        ];
        let (y, grads) = grads_of(
            |t| candle_nn::Linear::new(t[1].clone(), Some(t[2].clone())).forward(&t[0]),
            &inputs,
            &golden.get(&case, "gy"),
        );
        assert_close(
            &format!("{case} y"),
            &y,
            &golden.get(&case, "y"),
            1e-5,
            1e-6,
        );
        for (g, name) in grads.iter().zip(["gx", "gweight", "gbias"]) {
            assert_close(
                &format!("{case} {name}"),
                g.as_ref().unwrap(),
                &golden.get(&case, name),
                1e-5,
                1e-6,
            );
        }
    }
    for (i, shape) in [vec![3, 4], vec![2, 3, 4]].into_iter().enumerate() {
        let x = uniform(&shape, 40 + i as u64, 1.0);
        let w = uniform(&[5, 4], 50, 1.0);
        let b = uniform(&[5], 60, 1.0);
        assert_gradcheck(
            "candle_nn::Linear",
            |t| candle_nn::Linear::new(t[1].clone(), Some(t[2].clone())).forward(&t[0]),
            &[x, w, b],
        );
    }
}

#[test]
fn conv2d_shape_mismatches_are_errors_naming_the_shapes() {
    let x = Tensor::zeros((1, 3, 5, 5), DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::zeros((4, 2, 3, 3), DType::F32, &Device::Cpu).unwrap();
    assert_error_mentions(
        conv2d(&x, &w, None, &Conv2dConfig::default()),
        &["conv2d", "[1, 3, 5, 5]", "[4, 2, 3, 3]"],
    );
    let w = Tensor::zeros((4, 3, 7, 7), DType::F32, &Device::Cpu).unwrap();
    assert_error_mentions(
        conv2d(&x, &w, None, &Conv2dConfig::default()),
        &["conv2d", "[4, 3, 7, 7]", "[1, 3, 5, 5]"],
    );
    assert_error_mentions(
        conv2d_composed(&x, &w, None, &Conv2dConfig::default()),
        &["conv2d", "[4, 3, 7, 7]", "[1, 3, 5, 5]"],
    );
    let w = Tensor::zeros((4, 3, 3, 3), DType::F32, &Device::Cpu).unwrap();
    let b = Tensor::zeros(5, DType::F32, &Device::Cpu).unwrap();
    assert_error_mentions(
        conv2d(&x, &w, Some(&b), &Conv2dConfig::default()),
        &["bias", "[5]"],
    );
    let x3 = Tensor::zeros((3, 5, 5), DType::F32, &Device::Cpu).unwrap();
    assert_error_mentions(
        conv2d(&x3, &w, None, &Conv2dConfig::default()),
        &["[3, 5, 5]"],
    );
    assert_error_mentions(
        conv2d(&x, &w, None, &Conv2dConfig::default().with_stride(0)),
        &["conv2d"],
    );
    assert_error_mentions(
        conv2d(&x, &w, None, &Conv2dConfig::default().with_groups(2)),
        &["groups = 2"],
    );
}

/// Empty dimensions (no channels, no output channels, no rows, no images) give zeros or empty
/// tensors of the right shapes, forward and backward, instead of a panic.
#[test]
fn conv2d_with_empty_dimensions_gives_zeros_or_empty_tensors() {
    let cfg = Conv2dConfig::default().with_padding(1);
    for (x_dims, w_dims, y_dims) in [
        ([2, 0, 5, 5], [4, 0, 3, 3], [2, 4, 5, 5]),
        ([2, 3, 5, 5], [0, 3, 3, 3], [2, 0, 5, 5]),
        ([2, 3, 0, 5], [4, 3, 1, 1], [2, 4, 2, 7]),
        ([0, 3, 5, 5], [4, 3, 3, 3], [0, 4, 5, 5]),
    ] {
        let x = candle_core::Var::ones(&x_dims, DType::F32, &Device::Cpu).unwrap();
        let w = candle_core::Var::ones(&w_dims, DType::F32, &Device::Cpu).unwrap();
        let y = conv2d(x.as_tensor(), w.as_tensor(), None, &cfg).unwrap();
        assert_eq!(y.dims(), y_dims, "{x_dims:?} * {w_dims:?}");
        let sum_abs = |t: &Tensor| {
            t.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert_eq!(sum_abs(&y), 0.0);
        let grads = y.sum_all().unwrap().backward().unwrap();
        let (gx, gw) = (grads.get(x.as_tensor()), grads.get(w.as_tensor()));
        let (gx, gw) = (gx.unwrap(), gw.unwrap());
        assert_eq!((gx.dims(), gw.dims()), (&x_dims[..], &w_dims[..]));
        assert_eq!(sum_abs(gx) + sum_abs(gw), 0.0, "{x_dims:?} * {w_dims:?}");
    }
}
