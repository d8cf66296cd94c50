//! conv_transpose2d with kernel = stride (three GEMMs, no col2im) against PyTorch's
//! F.conv_transpose2d outputs and gradients, against central differences, and its fused CPU
//! path against the composed one and against candle's own transposed convolution.

mod ops_support;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use ops_support::{
    Golden, assert_close, assert_error_mentions, assert_gradcheck, grads_of, uniform,
};
use rtb_nn::deconv::{
    ConvTranspose2d, conv_transpose2d, conv_transpose2d_composed, conv_transpose2d_grads,
};

const RTOL: f64 = 1e-5;
const ATOL: f64 = 2e-5;

type DeconvFn = fn(&Tensor, &Tensor, Option<&Tensor>, usize) -> candle_core::Result<Tensor>;

#[test]
fn conv_transpose2d_matches_torch_outputs_and_gradients() {
    let golden = Golden::load("conv_transpose2d");
    for case in golden.cases() {
        let c = golden.cfg(&case);
        let k = c[0] as usize;
        let mut inputs = vec![golden.get(&case, "x"), golden.get(&case, "weight")];
        if c[1] != 0.0 {
            inputs.push(golden.get(&case, "bias"));
        }
        for (path, op) in [
            ("cpu", conv_transpose2d as DeconvFn),
            ("composed", conv_transpose2d_composed),
        ] {
            let (y, grads) = grads_of(
                |xs| op(&xs[0], &xs[1], xs.get(2), k),
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
            for (i, name) in ["gx", "gweight", "gbias"]
                .iter()
                .enumerate()
                .take(inputs.len())
            {
                let g = grads[i]
                    .as_ref()
                    .unwrap_or_else(|| panic!("{path} {case}: no gradient for {name}"));
                assert_close(
                    &format!("{path} {case} {name}"),
                    g,
                    &golden.get(&case, name),
                    RTOL,
                    ATOL,
                );
            }
        }
        let (gx, gw) = conv_transpose2d_grads(
            &golden.get(&case, "x"),
            &golden.get(&case, "weight"),
            &golden.get(&case, "gy"),
            k,
        )
        .unwrap();
        assert_close(
            &format!("grads {case} gx"),
            &gx,
            &golden.get(&case, "gx"),
            RTOL,
            ATOL,
        );
        assert_close(
            &format!("grads {case} gweight"),
            &gw,
            &golden.get(&case, "gweight"),
            RTOL,
            ATOL,
        );
    }
}

#[test]
fn conv_transpose2d_passes_gradcheck_in_f64() {
    for (n, c, o, k, (h, w)) in [
        (2, 3, 4, 2, (3, 4)),
        (1, 2, 3, 3, (2, 2)),
        (3, 2, 2, 2, (1, 5)),
    ] {
        let x = uniform(&[n, c, h, w], 1, 1.0);
        let weight = uniform(&[c, o, k, k], 2, 1.0);
        let bias = uniform(&[o], 3, 1.0);
        assert_gradcheck(
            &format!("cpu n{n} c{c} o{o} k{k}"),
            |xs| conv_transpose2d(&xs[0], &xs[1], Some(&xs[2]), k),
            &[x.clone(), weight.clone(), bias.clone()],
        );
        assert_gradcheck(
            &format!("composed n{n} c{c} o{o} k{k}"),
            |xs| conv_transpose2d_composed(&xs[0], &xs[1], Some(&xs[2]), k),
            &[x, weight, bias],
        );
    }
}

/// candle's own (general, slow) transposed convolution agrees on the mask head's layout.
#[test]
fn conv_transpose2d_equals_candles_general_kernel() {
    let x = uniform(&[2, 5, 4, 3], 7, 1.0);
    let weight = uniform(&[5, 6, 2, 2], 8, 1.0);
    let ours = conv_transpose2d(&x, &weight, None, 2).unwrap();
    let candles = x.conv_transpose2d(&weight, 0, 0, 2, 1).unwrap();
    assert_close("candle", &ours, &candles, 1e-12, 1e-12);
}

/// The kernels split the batch over threads (whole images per thread) or thread each
/// product: both give the same numbers.
#[test]
fn conv_transpose2d_does_not_depend_on_the_thread_count() {
    let x = uniform(&[5, 4, 3, 3], 11, 1.0)
        .to_dtype(DType::F32)
        .unwrap();
    let weight = uniform(&[4, 3, 2, 2], 12, 1.0)
        .to_dtype(DType::F32)
        .unwrap();
    let gy = uniform(&[5, 3, 6, 6], 13, 1.0)
        .to_dtype(DType::F32)
        .unwrap();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let y = conv_transpose2d(&x, &weight, None, 2).unwrap();
            let (gx, gw) = conv_transpose2d_grads(&x, &weight, &gy, 2).unwrap();
            (y, gx, gw)
        })
    };
    let (y1, gx1, gw1) = run(1);
    for threads in [2, 3, 8] {
        let (y, gx, gw) = run(threads);
        assert_close(&format!("y {threads}"), &y, &y1, 1e-6, 1e-6);
        assert_close(&format!("gx {threads}"), &gx, &gx1, 1e-6, 1e-6);
        assert_close(&format!("gw {threads}"), &gw, &gw1, 1e-5, 1e-5);
    }
}

#[test]
fn conv_transpose2d_skips_the_gradient_of_a_constant_input() {
    let x = uniform(&[2, 3, 2, 2], 21, 1.0);
    let weight = candle_core::Var::from_tensor(&uniform(&[3, 2, 2, 2], 22, 1.0)).unwrap();
    let y = conv_transpose2d(&x, weight.as_tensor(), None, 2).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&x).is_none());
    assert!(grads.get(weight.as_tensor()).is_some());
}

#[test]
fn conv_transpose2d_handles_f16_through_the_composed_path() {
    let x = uniform(&[1, 2, 2, 2], 31, 1.0);
    let weight = uniform(&[2, 3, 2, 2], 32, 1.0);
    let want = conv_transpose2d(&x, &weight, None, 2).unwrap();
    let got = conv_transpose2d(
        &x.to_dtype(DType::F16).unwrap(),
        &weight.to_dtype(DType::F16).unwrap(),
        None,
        2,
    )
    .unwrap();
    assert_close("f16", &got.to_dtype(DType::F64).unwrap(), &want, 1e-2, 1e-2);
}

#[test]
fn conv_transpose2d_rejects_shapes_that_do_not_fit() {
    let x = Tensor::zeros((1, 3, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let w3 = Tensor::zeros((3, 2, 3, 3), DType::F32, &Device::Cpu).unwrap();
    assert_error_mentions(
        conv_transpose2d(&x, &w3, None, 2),
        &["kernel = stride", "[3, 2, 3, 3]"],
    );
    let w_bad_in = Tensor::zeros((4, 2, 2, 2), DType::F32, &Device::Cpu).unwrap();
    assert_error_mentions(
        conv_transpose2d(&x, &w_bad_in, None, 2),
        &["[4, 2, 2, 2]", "[1, 3, 4, 4]"],
    );
    let w = Tensor::zeros((3, 2, 2, 2), DType::F32, &Device::Cpu).unwrap();
    let bias = Tensor::zeros(5, DType::F32, &Device::Cpu).unwrap();
    assert_error_mentions(conv_transpose2d(&x, &w, Some(&bias), 2), &["bias", "[5]"]);
    let flat = Tensor::zeros((3, 4), DType::F32, &Device::Cpu).unwrap();
    assert_error_mentions(conv_transpose2d(&flat, &w, None, 2), &["[3, 4]"]);
    let wrong_grad = Tensor::zeros((1, 2, 4, 4), DType::F32, &Device::Cpu).unwrap();
    assert_error_mentions(
        conv_transpose2d_grads(&x, &w, &wrong_grad, 2),
        &["grad_out", "[1, 2, 8, 8]"],
    );
    // An empty batch is not an error.
    let empty = Tensor::zeros((0, 3, 4, 4), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(
        conv_transpose2d(&empty, &w, None, 2).unwrap().dims(),
        &[0, 2, 8, 8]
    );
}

#[test]
fn conv_transpose2d_layer_has_pytorch_names_and_shapes() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let layer = ConvTranspose2d::new(4, 3, 2, &vb.pp("mask_head.upsample")).unwrap();
    let mut names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        vec!["mask_head.upsample.bias", "mask_head.upsample.weight"]
    );
    assert_eq!(layer.weight().dims(), &[4, 3, 2, 2]);
    let x = Tensor::zeros((2, 4, 14, 14), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(layer.forward(&x).unwrap().dims(), &[2, 3, 28, 28]);
}
