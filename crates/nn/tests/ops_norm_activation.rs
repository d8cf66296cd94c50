//! Layer norms, BatchNorm2d, softmax, GELU and DropPath against PyTorch (outputs and
//! gradients, f32) and against central differences (f64).

mod ops_support;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use ops_support::{
    Golden, assert_close, assert_error_mentions, assert_gradcheck, grads_of, max_abs, uniform,
};
use rtb_nn::gradcheck::{GradCheck, check_gradients};
use rtb_nn::ops::activation::{gelu, gelu_composed, log_softmax, relu, softmax};
use rtb_nn::ops::drop_path::DropPath;
use rtb_nn::ops::norm::{
    BatchNorm2d, BatchNormConfig, LayerNorm, LayerNorm2d, layer_norm, layer_norm_composed,
    layer_norm2d, layer_norm2d_composed,
};

const RTOL: f64 = 1e-5;
const ATOL: f64 = 2e-6;

#[test]
fn layer_norm_matches_torch() {
    let golden = Golden::load("layer_norm");
    for case in golden.cases() {
        let cfg = golden.cfg(&case);
        let (eps, affine) = (cfg[0], cfg[1] != 0.0);
        let mut inputs = vec![golden.get(&case, "x")];
        if affine {
            inputs.push(golden.get(&case, "weight"));
            inputs.push(golden.get(&case, "bias"));
        }
        let channels_first = case == "ln2d";
        for composed in [false, true] {
            let (y, grads) = grads_of(
                |t| match (channels_first, composed) {
                    (true, false) => layer_norm2d(&t[0], t.get(1), t.get(2), eps),
                    (true, true) => layer_norm2d_composed(&t[0], t.get(1), t.get(2), eps),
                    (false, false) => layer_norm(&t[0], t.get(1), t.get(2), eps),
                    (false, true) => layer_norm_composed(&t[0], t.get(1), t.get(2), eps),
                },
                &inputs,
                &golden.get(&case, "gy"),
            );
            let what = format!("{case} (composed: {composed})");
            assert_close(
                &format!("{what} y"),
                &y,
                &golden.get(&case, "y"),
                RTOL,
                ATOL,
            );
            for (g, name) in grads.iter().zip(["gx", "gweight", "gbias"]) {
                assert_close(
                    &format!("{what} {name}"),
                    g.as_ref().unwrap(),
                    &golden.get(&case, name),
                    RTOL,
                    1e-5,
                );
            }
        }
    }
}

#[test]
fn layer_norm_gradcheck() {
    let x = uniform(&[2, 3, 6], 1, 2.0);
    let w = uniform(&[6], 2, 1.0);
    let b = uniform(&[6], 3, 1.0);
    assert_gradcheck(
        "layer_norm",
        |t| layer_norm(&t[0], Some(&t[1]), Some(&t[2]), 1e-5),
        &[x.clone(), w.clone(), b.clone()],
    );
    assert_gradcheck(
        "layer_norm_composed",
        |t| layer_norm_composed(&t[0], Some(&t[1]), Some(&t[2]), 1e-5),
        &[x.clone(), w, b],
    );
    assert_gradcheck(
        "layer_norm without affine",
        |t| layer_norm(&t[0], None, None, 1e-5),
        &[x],
    );
}

#[test]
fn layer_norm2d_gradcheck() {
    let x = uniform(&[2, 5, 3, 2], 4, 2.0);
    let w = uniform(&[5], 5, 1.0);
    let b = uniform(&[5], 6, 1.0);
    assert_gradcheck(
        "layer_norm2d",
        |t| layer_norm2d(&t[0], Some(&t[1]), Some(&t[2]), 1e-6),
        &[x.clone(), w.clone(), b.clone()],
    );
    assert_gradcheck(
        "layer_norm2d_composed",
        |t| layer_norm2d_composed(&t[0], Some(&t[1]), Some(&t[2]), 1e-6),
        &[x, w, b],
    );
}

#[test]
fn layer_norm_modules_use_torch_keys_and_defaults() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    let ln = LayerNorm::new(4, 1e-5, &vb.pp("norm")).unwrap();
    let ln2d = LayerNorm2d::new(3, 1e-6, &vb.pp("norm2d")).unwrap();
    let mut keys: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["norm.bias", "norm.weight", "norm2d.bias", "norm2d.weight"]
    );
    let x = uniform(&[2, 4], 7, 1.0);
    assert_close(
        "LayerNorm",
        &ln.forward(&x).unwrap(),
        &layer_norm(&x, None, None, 1e-5).unwrap(),
        1e-12,
        1e-12,
    );
    let x = uniform(&[1, 3, 2, 2], 8, 1.0);
    assert_close(
        "LayerNorm2d",
        &ln2d.forward(&x).unwrap(),
        &layer_norm2d(&x, None, None, 1e-6).unwrap(),
        1e-12,
        1e-12,
    );
}

fn batch_norm_from(golden: &Golden) -> BatchNorm2d {
    BatchNorm2d::from_tensors(
        Some(golden.get("bn", "weight")),
        Some(golden.get("bn", "bias")),
        golden.get("bn", "running_mean0"),
        golden.get("bn", "running_var0"),
        BatchNormConfig::default(),
    )
    .unwrap()
}

#[test]
fn batch_norm_train_and_eval_match_torch() {
    let golden = Golden::load("batch_norm");
    let cfg = golden.cfg("bn");
    assert_eq!(cfg, vec![1e-5, 0.1]);
    let inputs = [
        golden.get("bn", "x1"),
        golden.get("bn", "weight"),
        golden.get("bn", "bias"),
    ];
    let (y, grads) = grads_of(
        |t| {
            let bn = BatchNorm2d::from_tensors(
                Some(t[1].clone()),
                Some(t[2].clone()),
                golden.get("bn", "running_mean0"),
                golden.get("bn", "running_var0"),
                BatchNormConfig::default(),
            )?;
            bn.forward_train(&t[0])
        },
        &inputs,
        &golden.get("bn", "gy"),
    );
    assert_close("bn train y", &y, &golden.get("bn", "y1"), RTOL, 1e-5);
    for (g, name) in grads.iter().zip(["gx", "gweight", "gbias"]) {
        assert_close(
            &format!("bn {name}"),
            g.as_ref().unwrap(),
            &golden.get("bn", name),
            1e-4,
            1e-5,
        );
    }
    // Running statistics over two steps (momentum 0.1, unbiased variance), then eval.
    let bn = batch_norm_from(&golden);
    bn.forward_train(&golden.get("bn", "x1")).unwrap();
    assert_close(
        "running_mean1",
        bn.running_mean(),
        &golden.get("bn", "running_mean1"),
        RTOL,
        1e-6,
    );
    assert_close(
        "running_var1",
        bn.running_var(),
        &golden.get("bn", "running_var1"),
        RTOL,
        1e-6,
    );
    bn.forward_train(&golden.get("bn", "x2")).unwrap();
    assert_close(
        "running_mean2",
        bn.running_mean(),
        &golden.get("bn", "running_mean2"),
        RTOL,
        1e-6,
    );
    assert_close(
        "running_var2",
        bn.running_var(),
        &golden.get("bn", "running_var2"),
        RTOL,
        1e-6,
    );
    let y3 = bn.forward_eval(&golden.get("bn", "x3")).unwrap();
    assert_close("bn eval y", &y3, &golden.get("bn", "y3"), RTOL, 1e-5);
}

/// Regression: the running statistics are `Var`s, and they used to enter the eval-mode graph,
/// so a backward pass gave them gradients and kept the activations of the graph alive.
#[test]
fn batch_norm_running_statistics_never_receive_gradients() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    let bn = BatchNorm2d::new(2, BatchNormConfig::default(), &vb).unwrap();
    let x = uniform(&[2, 2, 3, 3], 21, 1.0);
    for train in [true, false] {
        let y = if train {
            bn.forward_train(&x).unwrap()
        } else {
            bn.forward_eval(&x).unwrap()
        };
        let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(bn.running_mean()).is_none(), "train={train}");
        assert!(grads.get(bn.running_var()).is_none(), "train={train}");
    }
}

#[test]
fn batch_norm_gradcheck() {
    let x = uniform(&[3, 2, 3, 2], 9, 2.0);
    let w = uniform(&[2], 10, 1.0);
    let b = uniform(&[2], 11, 1.0);
    let stats = (
        Tensor::zeros(2, DType::F64, &Device::Cpu).unwrap(),
        Tensor::ones(2, DType::F64, &Device::Cpu).unwrap(),
    );
    assert_gradcheck(
        "BatchNorm2d::forward_train",
        |t| {
            BatchNorm2d::from_tensors(
                Some(t[1].clone()),
                Some(t[2].clone()),
                stats.0.clone(),
                stats.1.clone(),
                BatchNormConfig::default(),
            )?
            .forward_train(&t[0])
        },
        &[x.clone(), w.clone(), b.clone()],
    );
    assert_gradcheck(
        "BatchNorm2d::forward_eval",
        |t| {
            BatchNorm2d::from_tensors(
                Some(t[1].clone()),
                Some(t[2].clone()),
                stats.0.clone(),
                stats.1.clone(),
                BatchNormConfig::default(),
            )?
            .forward_eval(&t[0])
        },
        &[x.clone(), w.clone(), b.clone()],
    );
    // candle_nn's BatchNorm, for the record: its train-mode gradient passes the same check.
    let report = check_gradients(
        |t| {
            let bn = candle_nn::BatchNorm::new(
                2,
                stats.0.clone(),
                stats.1.clone(),
                t[1].clone(),
                t[2].clone(),
                1e-5,
            )?;
            bn.forward_train(&t[0])
        },
        &[x, w, b],
        &GradCheck::default(),
    )
    .unwrap();
    assert!(report.passed(), "candle_nn::BatchNorm:\n{report}");
}

/// Batch norm composed from candle ops, the formula the fused CPU kernels replace.
fn batch_norm_composed(t: &[Tensor], eps: f64) -> candle_core::Result<Tensor> {
    let c = t[1].elem_count();
    let mean = t[0].mean_keepdim((0, 2, 3))?;
    let centered = t[0].broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim((0, 2, 3))?;
    centered
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .broadcast_mul(&t[1].reshape((1, c, 1, 1))?)?
        .broadcast_add(&t[2].reshape((1, c, 1, 1))?)
}

#[test]
fn fused_batch_norm_equals_the_composed_one_across_task_boundaries() {
    // 4900-element planes: three planes per rayon task, so tasks straddle channels and
    // batches. The reference runs in f64 so that its own f32 rounding does not count.
    let (n, c, h, w) = (3, 5, 70, 70);
    let inputs64 = [
        (uniform(&[n, c, h, w], 31, 3.0) + 1.5).unwrap(),
        uniform(&[c], 32, 1.0),
        uniform(&[c], 33, 1.0),
    ];
    let gy64 = uniform(&[n, c, h, w], 34, 1.0);
    let (expected, expected_grads) = grads_of(|t| batch_norm_composed(t, 1e-5), &inputs64, &gy64);
    let f32s = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
    let inputs: Vec<Tensor> = inputs64.iter().map(f32s).collect();
    let running = (
        Tensor::zeros(c, DType::F32, &Device::Cpu).unwrap(),
        Tensor::ones(c, DType::F32, &Device::Cpu).unwrap(),
    );
    let (y, grads) = grads_of(
        |t| {
            BatchNorm2d::from_tensors(
                Some(t[1].clone()),
                Some(t[2].clone()),
                running.0.clone(),
                running.1.clone(),
                BatchNormConfig::default(),
            )?
            .forward_train(&t[0])
        },
        &inputs,
        &f32s(&gy64),
    );
    let outputs = std::iter::once(Some(y)).chain(grads);
    let references = std::iter::once(Some(expected)).chain(expected_grads);
    for (name, (got, want)) in ["y", "dx", "dweight", "dbias"]
        .iter()
        .zip(outputs.zip(references))
    {
        let (got, want) = (got.unwrap(), want.unwrap());
        // Within 1e-5 of the reference's largest magnitude (at least 1).
        assert_close(name, &got, &want, 0.0, 1e-5 * max_abs(&want).max(1.0));
    }
}

#[test]
fn fused_batch_norm_without_affine_normalises() {
    let xs = (uniform(&[4, 3, 5, 7], 41, 2.0) + 4.0).unwrap();
    let cfg = BatchNormConfig {
        affine: false,
        ..BatchNormConfig::default()
    };
    let bn = BatchNorm2d::from_tensors(
        None,
        None,
        Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap(),
        Tensor::ones(3, DType::F64, &Device::Cpu).unwrap(),
        cfg,
    )
    .unwrap();
    let ys = bn.forward_train(&xs).unwrap();
    let zeros = Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap();
    let ones = Tensor::ones(3, DType::F64, &Device::Cpu).unwrap();
    assert_close("mean", &ys.mean((0, 2, 3)).unwrap(), &zeros, 0.0, 1e-12);
    let var = ys.sqr().unwrap().mean((0, 2, 3)).unwrap();
    assert_close("variance", &var, &ones, 0.0, 1e-4);
    // The running mean moved a tenth of the way to the batch mean (about 4).
    let batch = xs.mean((0, 2, 3)).unwrap();
    assert_close(
        "running mean",
        bn.running_mean(),
        &(batch * 0.1).unwrap(),
        0.0,
        1e-12,
    );
}

#[test]
fn batch_norm_module_keys_and_errors() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let bn = BatchNorm2d::new(3, BatchNormConfig::default(), &vb.pp("bn1")).unwrap();
    let mut keys: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "bn1.bias",
            "bn1.running_mean",
            "bn1.running_var",
            "bn1.weight"
        ]
    );
    // Running statistics live in the VarMap: a train step updates what would be saved.
    let x = Tensor::new(&[[[[1f32, 3.0]], [[2.0, 2.0]], [[0.0, 4.0]]]], &Device::Cpu).unwrap();
    bn.forward_train(&x).unwrap();
    let saved = varmap
        .data()
        .lock()
        .unwrap()
        .get("bn1.running_mean")
        .unwrap()
        .as_tensor()
        .to_vec1::<f32>()
        .unwrap();
    assert_close(
        "saved running_mean",
        &Tensor::new(saved, &Device::Cpu).unwrap(),
        &Tensor::new(&[0.2f32, 0.2, 0.2], &Device::Cpu).unwrap(),
        1e-6,
        1e-7,
    );
    let wrong = Tensor::zeros((1, 4, 2, 2), DType::F32, &Device::Cpu).unwrap();
    assert_error_mentions(bn.forward_train(&wrong), &["[1, 4, 2, 2]", "3 channels"]);
    let single = Tensor::zeros((1, 3, 1, 1), DType::F32, &Device::Cpu).unwrap();
    assert_error_mentions(
        bn.forward_train(&single),
        &["more than one value", "[1, 3, 1, 1]"],
    );
}

#[test]
fn softmax_and_log_softmax_match_torch() {
    let golden = Golden::load("activation");
    let mut checked = 0;
    for case in golden.cases().into_iter().filter(|c| c.contains("softmax")) {
        let dim = golden.cfg(&case)[0] as usize;
        let log = case.starts_with("log_");
        let (y, grads) = grads_of(
            |t| {
                if log {
                    log_softmax(&t[0], dim)
                } else {
                    softmax(&t[0], dim)
                }
            },
            &[golden.get(&case, "x")],
            &golden.get(&case, "gy"),
        );
        assert_close(
            &format!("{case} y"),
            &y,
            &golden.get(&case, "y"),
            RTOL,
            1e-6,
        );
        assert_close(
            &format!("{case} gx"),
            grads[0].as_ref().unwrap(),
            &golden.get(&case, "gx"),
            RTOL,
            1e-6,
        );
        checked += 1;
    }
    assert_eq!(checked, 6);
}

#[test]
fn softmax_gradcheck() {
    let x = uniform(&[2, 3, 4], 12, 3.0);
    for dim in 0..3 {
        assert_gradcheck("softmax", |t| softmax(&t[0], dim), std::slice::from_ref(&x));
        assert_gradcheck(
            "log_softmax",
            |t| log_softmax(&t[0], dim),
            std::slice::from_ref(&x),
        );
    }
}

#[test]
fn gelu_matches_torch() {
    let golden = Golden::load("activation");
    for op in [gelu, gelu_composed] {
        let (y, grads) = grads_of(
            |t| op(&t[0]),
            &[golden.get("gelu", "x")],
            &golden.get("gelu", "gy"),
        );
        assert_close("gelu y", &y, &golden.get("gelu", "y"), RTOL, 1e-6);
        assert_close(
            "gelu gx",
            grads[0].as_ref().unwrap(),
            &golden.get("gelu", "gx"),
            RTOL,
            1e-6,
        );
    }
}

/// The f32 kernel (Abramowitz & Stegun's erfc over a polynomial exponential, erf's Taylor
/// series near 0) against the f64 one on a dense grid of [−12, 12] and far out: Φ within
/// 1.8e-7 (the approximation's 0.75e-7 plus its evaluation in f32, whose polynomial has
/// alternating terms), so the output within 1.8e-7 |x| plus its rounding; the derivative
/// within 2e-7 (Φ's error and the rounding of Φ(x) + x φ(x), which cancel for negative x).
/// (PyTorch 2.15's f32 `F.gelu` on this grid: 2.8e-7 |x|, `golden/ops/gelu_error.py`.)
#[test]
fn gelu_in_f32_is_within_its_error_bound_of_f64() {
    let xs: Vec<f64> = (-12_288..=12_288)
        .map(|i| f64::from(i) / 1024.0)
        .chain([-1e4, -90.0, -30.0, 30.0, 90.0, 1e4])
        .collect();
    let x64 = Tensor::new(xs.as_slice(), &Device::Cpu).unwrap();
    let x32 = x64.to_dtype(DType::F32).unwrap();
    let ones = |t: &Tensor| t.ones_like().unwrap();
    let (y64, g64) = grads_of(|t| gelu(&t[0]), std::slice::from_ref(&x64), &ones(&x64));
    let (y32, g32) = grads_of(|t| gelu(&t[0]), std::slice::from_ref(&x32), &ones(&x32));
    let to_vec = |t: &Tensor| t.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
    let (y64, y32) = (to_vec(&y64), to_vec(&y32));
    let (g64, g32) = (
        to_vec(g64[0].as_ref().unwrap()),
        to_vec(g32[0].as_ref().unwrap()),
    );
    for (i, &x) in xs.iter().enumerate() {
        let y_bound = 1.8e-7 * x.abs() + 1.2e-7 * y64[i].abs() + 1e-30;
        assert!(
            (y32[i] - y64[i]).abs() <= y_bound,
            "gelu({x}) = {} in f32, {} in f64",
            y32[i],
            y64[i]
        );
        let g_bound = 2e-7 + 1.2e-7 * g64[i].abs();
        assert!(
            (g32[i] - g64[i]).abs() <= g_bound,
            "gelu'({x}) = {} in f32, {} in f64",
            g32[i],
            g64[i]
        );
    }
}

#[test]
fn gelu_gradcheck() {
    let x = uniform(&[3, 2, 7], 13, 5.0);
    assert_gradcheck("gelu", |t| gelu(&t[0]), std::slice::from_ref(&x));
    assert_gradcheck(
        "gelu_composed",
        |t| gelu_composed(&t[0]),
        std::slice::from_ref(&x),
    );
    // A non-contiguous input goes through the same kernel.
    assert_gradcheck("gelu transposed", |t| gelu(&t[0].transpose(0, 2)?), &[x]);
}

#[test]
fn drop_path_matches_timm_with_an_explicit_mask() {
    let golden = Golden::load("drop_path");
    let drop = DropPath::new(golden.cfg("p025")[0]).unwrap();
    let mask: Vec<bool> = golden
        .get("p025", "mask")
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|&m| m != 0.0)
        .collect();
    let (y, grads) = grads_of(
        |t| drop.forward_with_mask(&t[0], &mask),
        &[golden.get("p025", "x")],
        &golden.get("p025", "gy"),
    );
    assert_close("drop_path y", &y, &golden.get("p025", "y"), RTOL, 1e-7);
    assert_close(
        "drop_path gx",
        grads[0].as_ref().unwrap(),
        &golden.get("p025", "gx"),
        RTOL,
        1e-7,
    );
}

#[test]
fn drop_path_gradcheck_is_seeded_and_identity_in_eval() {
    let drop = DropPath::new(0.3).unwrap();
    let x = uniform(&[6, 2, 3], 14, 1.0);
    assert_gradcheck(
        "drop_path",
        |t| drop.forward_train(&t[0], 7),
        std::slice::from_ref(&x),
    );
    // Same seed, same mask; the mask is drawn per sample with rate ≈ drop_prob.
    assert_eq!(drop.keep_mask(6, 7), drop.keep_mask(6, 7));
    let kept = drop.keep_mask(10_000, 1).iter().filter(|&&k| k).count();
    assert!(
        (6_700..7_300).contains(&kept),
        "kept {kept} of 10000 at keep_prob 0.7"
    );
    let a = drop.forward_train(&x, 7).unwrap();
    let b = drop.forward_train(&x, 7).unwrap();
    assert_close("same seed", &a, &b, 0.0, 0.0);
    assert_close("eval", &drop.forward_eval(&x).unwrap(), &x, 0.0, 0.0);
    assert_error_mentions(
        drop.forward_with_mask(&x, &[true; 3]),
        &["3 samples", "[6, 2, 3]"],
    );
    assert_error_mentions(DropPath::new(1.0), &["[0, 1)"]);
}

#[test]
fn norm_shape_errors_name_the_shapes() {
    let x = Tensor::zeros((2, 3, 4), DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::ones(3, DType::F32, &Device::Cpu).unwrap();
    assert_error_mentions(
        layer_norm(&x, Some(&w), None, 1e-5),
        &["layer_norm", "[3]", "[2, 3, 4]"],
    );
    assert_error_mentions(
        layer_norm2d(&x, Some(&w), None, 1e-5),
        &["layer_norm2d", "[2, 3, 4]"],
    );
    let x4 = Tensor::zeros((2, 4, 2, 2), DType::F32, &Device::Cpu).unwrap();
    assert_error_mentions(
        layer_norm2d(&x4, None, Some(&w), 1e-5),
        &["bias", "[3]", "[2, 4, 2, 2]"],
    );
}

/// The fused ReLU equals candle's forward and gradient wherever the input is not 0, and, as
/// PyTorch's, passes no gradient at exactly 0 (candle's passes it).
#[test]
fn relu_matches_candle_and_passes_the_gradient_only_where_positive() {
    let x = uniform(&[2, 3, 4, 5], 7, 2.0);
    assert_gradcheck("relu", |t| relu(&t[0]), std::slice::from_ref(&x));
    let gy = uniform(x.dims(), 8, 1.0);
    for dtype in [DType::F64, DType::F32] {
        let (x, gy) = (x.to_dtype(dtype).unwrap(), gy.to_dtype(dtype).unwrap());
        let (y, grads) = grads_of(|t| relu(&t[0]), std::slice::from_ref(&x), &gy);
        let (y_candle, grads_candle) = grads_of(|t| t[0].relu(), std::slice::from_ref(&x), &gy);
        assert_close("relu y", &y, &y_candle, 0.0, 0.0);
        assert_close(
            "relu grad",
            grads[0].as_ref().unwrap(),
            grads_candle[0].as_ref().unwrap(),
            0.0,
            0.0,
        );
    }
    let zeros = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
    let ones = Tensor::ones(4, DType::F32, &Device::Cpu).unwrap();
    let (y, grads) = grads_of(|t| relu(&t[0]), std::slice::from_ref(&zeros), &ones);
    assert_eq!(y.to_vec1::<f32>().unwrap(), vec![0.0; 4]);
    assert_eq!(
        grads[0].as_ref().unwrap().to_vec1::<f32>().unwrap(),
        vec![0.0; 4]
    );
}
