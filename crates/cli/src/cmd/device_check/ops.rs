//! Part (a): every rtb-nn op on small shapes, run on the CPU and on the checked device from the
//! same inputs; forward outputs and input gradients compared.

use candle_core::{DType, Device, Tensor, Var};
use rtb_nn::conv::{Conv2dConfig, conv2d};
use rtb_nn::deconv::conv_transpose2d;
use rtb_nn::loss::{
    BceWithLogitsOptions, CrossEntropyOptions, Reduction, binary_cross_entropy_with_logits,
    cross_entropy, l1_loss, smooth_l1_loss,
};
use rtb_nn::ops::activation::{gelu, log_softmax, softmax};
use rtb_nn::ops::attention::window_attention;
use rtb_nn::ops::bias::bias_add;
use rtb_nn::ops::drop_path::DropPath;
use rtb_nn::ops::gather::{RowMap, gather_rows};
use rtb_nn::ops::linear::linear;
use rtb_nn::ops::norm::{BatchNorm2d, BatchNormConfig, layer_norm, layer_norm2d};
use rtb_nn::ops::pool::{MaxPool2dConfig, adaptive_avg_pool2d, max_pool2d};
use rtb_nn::ops::resize::{resize_bilinear, resize_nearest, upsample_nearest2x};
use rtb_nn::roi_align::{MultiScaleRoiAlign, RoiAlignConfig, roi_align};

use super::{OpResult, max_abs, max_abs_diff, randn};

/// What one op check returns: named tensors (outputs, gradients), compared by name.
type Outputs = Vec<(&'static str, Tensor)>;

/// One op: its name, the bound on `max |device − cpu| / max(1, max |cpu|)` in f32, whether it
/// runs under autocast, and the function that runs it on a device with activations of a
/// dtype (weights, targets and boxes stay f32, as under autocast).
struct OpCheck {
    name: &'static str,
    bound: f64,
    half: bool,
    run: fn(&Device, DType) -> candle_core::Result<Outputs>,
}

/// f32 on another device sums in another order; 1e-4 of the output's scale is far above that
/// and far below any real error (a wrong index or a missing term).
const F32_BOUND: f64 = 1e-4;

/// The bound of a half-precision run against f32, in units of the type's rounding (bf16
/// keeps 8 significant bits, f16 11): bf16 8 units (0.031; candle's CUDA kernels accumulate
/// bf16 sums in f32), f16 32 units (0.016; candle's CPU reductions accumulate f16 in f16, and
/// a bias gradient over a few hundred positions measured 0.0086). Far below a wrong index or a
/// missing term either way.
pub(super) fn half_bound(dtype: DType) -> f64 {
    match dtype {
        DType::BF16 => 8.0 * 2f64.powi(-8),
        DType::F16 => 32.0 * 2f64.powi(-11),
        _ => 0.0,
    }
}

/// Forward outputs and gradients of `inputs` for `loss = Σ out · r` with a fixed random `r`, so
/// every output element's gradient path is exercised with a distinct weight (summed in f32
/// whatever the output's type).
fn with_grads(
    out: &Tensor,
    inputs: &[(&'static str, &Var)],
    seed: u64,
) -> candle_core::Result<Outputs> {
    let r = randn(out.dims(), seed, out.device())?;
    let loss = (out.to_dtype(DType::F32)? * r)?.sum_all()?;
    let grads = loss.backward()?;
    let mut outputs = vec![("out", out.clone())];
    for (name, var) in inputs {
        let g = grads
            .get(var.as_tensor())
            .cloned()
            .unwrap_or(var.as_tensor().zeros_like()?);
        outputs.push((name, g));
    }
    Ok(outputs)
}

/// A weight (f32).
fn var(dims: &[usize], seed: u64, device: &Device) -> candle_core::Result<Var> {
    Var::from_tensor(&randn(dims, seed, device)?)
}

/// An activation in `dtype` (the same values as [`var`] before rounding).
fn act(dims: &[usize], seed: u64, device: &Device, dtype: DType) -> candle_core::Result<Var> {
    Var::from_tensor(&randn(dims, seed, device)?.to_dtype(dtype)?)
}

fn conv(
    device: &Device,
    dtype: DType,
    cfg: Conv2dConfig,
    x: &[usize],
    w: &[usize],
) -> candle_core::Result<Outputs> {
    let xs = act(x, 1, device, dtype)?;
    let weight = var(w, 2, device)?;
    let bias = var(&[w[0]], 3, device)?;
    let out = conv2d(
        xs.as_tensor(),
        weight.as_tensor(),
        Some(bias.as_tensor()),
        &cfg,
    )?;
    with_grads(
        &out,
        &[("grad_x", &xs), ("grad_w", &weight), ("grad_b", &bias)],
        4,
    )
}

fn checks() -> Vec<OpCheck> {
    vec![
        OpCheck {
            name: "conv2d 3x3 s1 p1",
            bound: F32_BOUND,
            half: true,
            run: |d, dt| {
                conv(
                    d,
                    dt,
                    Conv2dConfig::default().with_padding(1),
                    &[2, 8, 12, 12],
                    &[16, 8, 3, 3],
                )
            },
        },
        OpCheck {
            name: "conv2d 7x7 s2 p3 (stem)",
            bound: F32_BOUND,
            half: true,
            run: |d, dt| {
                let cfg = Conv2dConfig::default().with_stride(2).with_padding(3);
                conv(d, dt, cfg, &[2, 3, 20, 20], &[8, 3, 7, 7])
            },
        },
        OpCheck {
            name: "conv2d 1x1 s2",
            bound: F32_BOUND,
            half: true,
            run: |d, dt| {
                conv(
                    d,
                    dt,
                    Conv2dConfig::default().with_stride(2),
                    &[2, 16, 10, 10],
                    &[8, 16, 1, 1],
                )
            },
        },
        OpCheck {
            name: "conv2d 3x3 dilation 2 groups 2",
            bound: F32_BOUND,
            half: true,
            run: |d, dt| {
                let cfg = Conv2dConfig::default()
                    .with_padding(2)
                    .with_dilation(2)
                    .with_groups(2);
                conv(d, dt, cfg, &[2, 8, 11, 11], &[8, 4, 3, 3])
            },
        },
        OpCheck {
            name: "conv_transpose2d 2x2 s2",
            bound: F32_BOUND,
            half: true,
            run: |d, dt| {
                let xs = act(&[2, 8, 7, 7], 1, d, dt)?;
                let w = var(&[8, 4, 2, 2], 2, d)?;
                let b = var(&[4], 3, d)?;
                let out = conv_transpose2d(xs.as_tensor(), w.as_tensor(), Some(b.as_tensor()), 2)?;
                with_grads(&out, &[("grad_x", &xs), ("grad_w", &w), ("grad_b", &b)], 4)
            },
        },
        OpCheck {
            name: "max_pool2d 3x3 s2 p1",
            bound: F32_BOUND,
            half: true,
            run: |d, dt| {
                let xs = act(&[2, 4, 13, 13], 1, d, dt)?;
                let cfg = MaxPool2dConfig::new(3).with_stride(2).with_padding(1);
                let out = max_pool2d(xs.as_tensor(), &cfg)?;
                with_grads(&out, &[("grad_x", &xs)], 2)
            },
        },
        OpCheck {
            name: "adaptive_avg_pool2d 10x10->3x3",
            bound: F32_BOUND,
            half: true,
            run: |d, dt| {
                let xs = act(&[2, 4, 10, 10], 1, d, dt)?;
                let out = adaptive_avg_pool2d(xs.as_tensor(), (3, 3))?;
                with_grads(&out, &[("grad_x", &xs)], 2)
            },
        },
        OpCheck {
            name: "resize_bilinear 7x9->14x18",
            bound: F32_BOUND,
            half: true,
            run: |d, dt| {
                let xs = act(&[2, 4, 7, 9], 1, d, dt)?;
                let out = resize_bilinear(xs.as_tensor(), (14, 18), false)?;
                with_grads(&out, &[("grad_x", &xs)], 2)
            },
        },
        OpCheck {
            name: "resize_nearest 6x6->9x12, upsample 2x",
            bound: F32_BOUND,
            half: true,
            run: |d, dt| {
                let xs = act(&[2, 4, 6, 6], 1, d, dt)?;
                let a = resize_nearest(xs.as_tensor(), (9, 12))?;
                let b = upsample_nearest2x(xs.as_tensor())?;
                let out = Tensor::cat(&[a.flatten_all()?, b.flatten_all()?], 0)?;
                with_grads(&out, &[("grad_x", &xs)], 2)
            },
        },
        OpCheck {
            name: "layer_norm (last dim)",
            bound: F32_BOUND,
            half: true,
            run: |d, dt| {
                let xs = act(&[2, 10, 16], 1, d, dt)?;
                let w = var(&[16], 2, d)?;
                let b = var(&[16], 3, d)?;
                let out = layer_norm(
                    xs.as_tensor(),
                    Some(w.as_tensor()),
                    Some(b.as_tensor()),
                    1e-5,
                )?;
                with_grads(&out, &[("grad_x", &xs), ("grad_w", &w), ("grad_b", &b)], 4)
            },
        },
        OpCheck {
            name: "layer_norm2d (channels)",
            bound: F32_BOUND,
            half: true,
            run: |d, dt| {
                let xs = act(&[2, 8, 6, 6], 1, d, dt)?;
                let w = var(&[8], 2, d)?;
                let b = var(&[8], 3, d)?;
                let out = layer_norm2d(
                    xs.as_tensor(),
                    Some(w.as_tensor()),
                    Some(b.as_tensor()),
                    1e-6,
                )?;
                with_grads(&out, &[("grad_x", &xs), ("grad_w", &w), ("grad_b", &b)], 4)
            },
        },
        OpCheck {
            name: "batch_norm2d (train, running stats)",
            bound: F32_BOUND,
            half: true,
            run: |d, dt| {
                let xs = act(&[4, 6, 5, 5], 1, d, dt)?;
                let w = var(&[6], 2, d)?;
                let b = var(&[6], 3, d)?;
                let bn = BatchNorm2d::from_tensors(
                    Some(w.as_tensor().clone()),
                    Some(b.as_tensor().clone()),
                    Tensor::zeros(6, DType::F32, d)?,
                    Tensor::ones(6, DType::F32, d)?,
                    BatchNormConfig::default(),
                )?;
                let out = bn.forward_train(xs.as_tensor())?;
                let mut outputs =
                    with_grads(&out, &[("grad_x", &xs), ("grad_w", &w), ("grad_b", &b)], 4)?;
                outputs.push(("running_mean", bn.running_mean().clone()));
                outputs.push(("running_var", bn.running_var().clone()));
                let eval = bn.forward_eval(xs.as_tensor())?;
                outputs.push(("eval_out", eval));
                Ok(outputs)
            },
        },
        OpCheck {
            name: "gelu, softmax, log_softmax",
            bound: F32_BOUND,
            half: true,
            run: |d, dt| {
                let xs = act(&[4, 7, 9], 1, d, dt)?;
                let out = Tensor::cat(
                    &[
                        gelu(xs.as_tensor())?.flatten_all()?,
                        softmax(xs.as_tensor(), 2)?.flatten_all()?,
                        log_softmax(xs.as_tensor(), 1)?.flatten_all()?,
                    ],
                    0,
                )?;
                with_grads(&out, &[("grad_x", &xs)], 2)
            },
        },
        OpCheck {
            name: "linear, bias_add",
            bound: F32_BOUND,
            half: true,
            run: |d, dt| {
                let xs = act(&[3, 5, 12], 1, d, dt)?;
                let w = var(&[7, 12], 2, d)?;
                let b = var(&[7], 3, d)?;
                let ys = linear(xs.as_tensor(), w.as_tensor(), Some(b.as_tensor()))?;
                let out = bias_add(&ys, b.as_tensor())?;
                with_grads(&out, &[("grad_x", &xs), ("grad_w", &w), ("grad_b", &b)], 4)
            },
        },
        OpCheck {
            name: "gather_rows, window_attention (masked)",
            bound: F32_BOUND,
            half: true,
            run: |d, dt| {
                // 4 windows of 4 tokens, 2 heads of 3 channels, masks for 2 windows per image.
                let qkv = act(&[4, 4, 18], 1, d, dt)?;
                let bias = var(&[2, 4, 4], 2, d)?;
                let mask = (randn(&[2, 4, 4], 3, d)?.ge(0.0)?.to_dtype(DType::F32)? * -100.0)?;
                let map: Vec<Option<usize>> =
                    (0..5).map(|t| (t < 4).then_some((t + 1) % 4)).collect();
                let map = RowMap::new(&map, 4)?;
                let attn =
                    window_attention(qkv.as_tensor(), bias.as_tensor(), Some(&mask), 2, 0.5)?;
                let out = gather_rows(&attn, &map)?;
                with_grads(&out, &[("grad_qkv", &qkv), ("grad_bias", &bias)], 4)
            },
        },
        OpCheck {
            name: "drop_path (seeded)",
            bound: F32_BOUND,
            half: true,
            run: |d, dt| {
                let xs = act(&[8, 3, 4], 1, d, dt)?;
                let out = DropPath::new(0.3)?.forward_train(xs.as_tensor(), 17)?;
                with_grads(&out, &[("grad_x", &xs)], 2)
            },
        },
        OpCheck {
            name: "roi_align 7x7 aligned, sampling 2",
            bound: F32_BOUND,
            half: true,
            run: |d, dt| {
                let features = act(&[2, 4, 16, 20], 1, d, dt)?;
                let rois = rois(d)?;
                let cfg = RoiAlignConfig::new(7, 7)
                    .with_spatial_scale(0.5)
                    .with_sampling_ratio(2)
                    .with_aligned(true);
                let out = roi_align(features.as_tensor(), &rois, &cfg)?;
                with_grads(&out, &[("grad_features", &features)], 2)
            },
        },
        OpCheck {
            name: "multi-level RoIAlign (mmdet box, adaptive)",
            bound: F32_BOUND,
            half: true,
            run: |d, dt| {
                let levels = [
                    act(&[2, 4, 32, 40], 1, d, dt)?,
                    act(&[2, 4, 16, 20], 2, d, dt)?,
                    act(&[2, 4, 8, 10], 3, d, dt)?,
                    act(&[2, 4, 4, 5], 4, d, dt)?,
                ];
                let features: Vec<Tensor> = levels.iter().map(|v| v.as_tensor().clone()).collect();
                // Boxes from 10 to 120 pixels: every level is used.
                let rois = Tensor::from_vec(
                    vec![
                        0f32, 2.0, 3.0, 12.0, 13.0, //
                        1.0, 10.0, 4.0, 70.0, 60.0, //
                        0.0, 5.0, 5.0, 125.0, 120.0, //
                        1.0, 30.0, 40.0, 60.0, 66.0,
                    ],
                    (4, 5),
                    d,
                )?;
                let out = MultiScaleRoiAlign::mmdet_box().forward(&features, &rois)?;
                with_grads(
                    &out,
                    &[
                        ("grad_p2", &levels[0]),
                        ("grad_p3", &levels[1]),
                        ("grad_p4", &levels[2]),
                        ("grad_p5", &levels[3]),
                    ],
                    5,
                )
            },
        },
        OpCheck {
            name: "box_iou, nms, batched_nms",
            bound: 0.0,
            half: false,
            run: |d, _| {
                let (boxes, scores) = boxes_scores(d)?;
                let iou = rtb_nn::boxes::box_iou(&boxes, &boxes)?;
                let keep = rtb_nn::nms::nms(&boxes, &scores, 0.5)?;
                let ids = Tensor::from_vec((0..40u32).map(|i| i % 3).collect::<Vec<_>>(), 40, d)?;
                let batched = rtb_nn::nms::batched_nms(&boxes, &scores, &ids, 0.5)?;
                // IoU is compared with the f32 bound below through a rounded copy: the indices
                // must be identical, the IoU values equal to 1e-6.
                let iou = (iou * 1e5)?.round()?;
                Ok(vec![
                    ("iou_x1e5_rounded", iou),
                    ("nms_keep", keep.to_dtype(DType::F32)?),
                    ("batched_nms_keep", batched.to_dtype(DType::F32)?),
                ])
            },
        },
        OpCheck {
            name: "cross_entropy NCHW ignore 255",
            bound: F32_BOUND,
            half: true,
            run: |d, dt| {
                let logits = act(&[2, 5, 6, 7], 1, d, dt)?;
                let labels: Vec<i64> = (0..2 * 6 * 7)
                    .map(|i| if i % 11 == 0 { 255 } else { (i * 7 % 5) as i64 })
                    .collect();
                let targets = Tensor::from_vec(labels, (2, 6, 7), d)?;
                let opts = CrossEntropyOptions::default().with_ignore_index(255);
                let out = cross_entropy(logits.as_tensor(), &targets, &opts)?;
                with_grads(&out, &[("grad_logits", &logits)], 2)
            },
        },
        OpCheck {
            name: "bce_with_logits, l1, smooth_l1",
            bound: F32_BOUND,
            half: true,
            run: |d, dt| {
                let xs = act(&[6, 9], 1, d, dt)?;
                let target = randn(&[6, 9], 2, d)?;
                let probs = candle_nn::ops::sigmoid(&target)?;
                let bce = binary_cross_entropy_with_logits(
                    xs.as_tensor(),
                    &probs,
                    &BceWithLogitsOptions::default(),
                )?;
                let l1 = l1_loss(xs.as_tensor(), &target, Reduction::Sum)?;
                let smooth = smooth_l1_loss(xs.as_tensor(), &target, 1.0 / 9.0, Reduction::Mean)?;
                let out = Tensor::stack(&[bce, l1, smooth], 0)?;
                with_grads(&out, &[("grad_x", &xs)], 3)
            },
        },
        OpCheck {
            name: "clip_grad_norm",
            bound: F32_BOUND,
            half: false,
            run: |d, _| {
                let a = var(&[5, 7], 1, d)?;
                let b = var(&[11], 2, d)?;
                let loss = ((a.as_tensor().sqr()?.sum_all()? * 3.0)? + b.as_tensor().sum_all()?)?;
                let mut grads = loss.backward()?;
                let total = rtb_nn::clip::clip_grad_norm(&mut grads, &[a.clone(), b.clone()], 1.0)?;
                let ga = grads.get(a.as_tensor()).cloned().unwrap_or(a.zeros_like()?);
                let gb = grads.get(b.as_tensor()).cloned().unwrap_or(b.zeros_like()?);
                Ok(vec![
                    ("total_norm", Tensor::new(&[total as f32], d)?),
                    ("clipped_a", ga),
                    ("clipped_b", gb),
                ])
            },
        },
    ]
}

/// RoIs `[K, 5]` (batch index, x1, y1, x2, y2) inside a 40×32 image.
fn rois(device: &Device) -> candle_core::Result<Tensor> {
    Tensor::from_vec(
        vec![
            0f32, 1.0, 2.0, 20.0, 15.0, //
            1.0, 5.5, 3.25, 38.0, 30.0, //
            0.0, 10.0, 10.0, 12.0, 11.0, //
            1.0, 0.0, 0.0, 39.0, 31.0,
        ],
        (4, 5),
        device,
    )
}

/// 40 overlapping boxes and distinct scores, drawn from fixed seeds.
fn boxes_scores(device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let r = randn(&[40, 4], 9, &Device::Cpu)?.to_vec2::<f32>()?;
    let boxes: Vec<f32> = r
        .iter()
        .flat_map(|v| {
            let x = 20.0 + 10.0 * v[0];
            let y = 20.0 + 10.0 * v[1];
            let w = 8.0 + 3.0 * v[2].abs();
            let h = 8.0 + 3.0 * v[3].abs();
            [x, y, x + w, y + h]
        })
        .collect();
    let scores: Vec<f32> = (0..40).map(|i| ((i * 17) % 40) as f32 / 40.0).collect();
    Ok((
        Tensor::from_vec(boxes, (40, 4), device)?,
        Tensor::from_vec(scores, 40, device)?,
    ))
}

/// Runs every op on the CPU in f32 and on `device` with activations of `dtype`: f32, or a half
/// type (autocast) for the ops that run under it, against a bound of [`half_bound`].
pub fn run(device: &Device, dtype: DType) -> Vec<OpResult> {
    checks()
        .into_iter()
        .filter(|check| dtype == DType::F32 || check.half)
        .map(|check| compare(&check, device, dtype))
        .collect()
}

fn compare(check: &OpCheck, device: &Device, dtype: DType) -> OpResult {
    let bound = check.bound.max(half_bound(dtype));
    let outcome = (|| -> candle_core::Result<(f64, f64, Vec<String>)> {
        let reference = (check.run)(&Device::Cpu, DType::F32)?;
        let tested = (check.run)(device, dtype)?;
        let mut worst = 0f64;
        let mut scale = 0f64;
        let mut names = Vec::new();
        for ((name, want), (_, got)) in reference.iter().zip(&tested) {
            let want = want.to_dtype(DType::F32)?;
            let got = got.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
            if want.dims() != got.dims() {
                return Err(candle_core::Error::Msg(format!(
                    "{name}: shape {:?} on the device, {:?} on the CPU",
                    got.dims(),
                    want.dims()
                )));
            }
            let s = max_abs(&want)?.max(1.0);
            let diff = max_abs_diff(&want, &got)? / s;
            if diff > worst || names.is_empty() {
                worst = worst.max(diff);
                scale = s;
            }
            names.push((*name).to_string());
        }
        Ok((worst, scale, names))
    })();
    match outcome {
        Ok((rel_diff, scale, compared)) => OpResult {
            name: check.name.to_string(),
            dtype: dtype_name(dtype),
            compared,
            max_rel_diff: rel_diff,
            scale,
            bound,
            pass: rel_diff <= bound,
            error: None,
        },
        Err(err) => OpResult {
            name: check.name.to_string(),
            dtype: dtype_name(dtype),
            compared: Vec::new(),
            max_rel_diff: f64::NAN,
            scale: f64::NAN,
            bound,
            pass: false,
            error: Some(err.to_string()),
        },
    }
}

/// `f32`, `bf16`, `f16`.
pub(super) fn dtype_name(dtype: DType) -> String {
    format!("{dtype:?}").to_lowercase()
}
