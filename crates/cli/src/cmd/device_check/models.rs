//! Parts (b) and (c): each task's model, one training step and one evaluation batch on the CPU
//! and on the device from the same seeded weights and inputs, then throughput on the device.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use rtb_detection::Flavor;
use rtb_detection::image_batch::ImageBatch;
use rtb_detection::mask_rcnn::{MaskRcnn, MaskRcnnConfig};
use rtb_detection::roi_heads::GtInstances;
use rtb_models::init::trainable_builder;
use rtb_models::{ArchConfig, Backbone, Freeze, Mode};
use rtb_nn::loss::{CrossEntropyOptions, cross_entropy};
use rtb_segmentation::{UperNet, UperNetConfig};

use super::ops::{dtype_name, half_bound};
use super::{Args, ModelResult, Part, Size, max_abs, max_abs_diff, randn};

/// The seed of every model's weights.
const WEIGHT_SEED: u64 = 0x00DE_71CE;
/// The seed of the checked training step's random draws (DropPath, dropout, samplers).
const STEP_SEED: u64 = 7;
/// Learning rate of the plain SGD update inside the timed steps (its value does not matter).
const LR: f64 = 1e-4;

/// A model with its inputs for one batch size, on one device, with f32 weights and
/// activations of the type it was built for (a half type: autocast).
trait CheckModel {
    /// Makes (deterministic) inputs of `batch` images on the model's device, in the
    /// activations' type.
    fn prepare(&mut self, batch: usize) -> anyhow::Result<()>;
    /// The training loss of the prepared batch (a scalar with its graph).
    fn train_loss(&self, seed: u64) -> anyhow::Result<Tensor>;
    /// The evaluation outputs of the prepared batch (compared across devices).
    fn eval_outputs(&self) -> anyhow::Result<Vec<Tensor>>;
    /// Runs the whole evaluation path of the prepared batch (timed).
    fn eval_full(&self) -> anyhow::Result<()> {
        self.eval_outputs().map(drop)
    }
}

/// What differs between the models: names, architecture, sizes and bounds.
struct Spec {
    task: &'static str,
    arch: &'static str,
    image: (usize, usize),
    reference_batch: usize,
    throughput_batch: usize,
    loss_bound: f64,
    eval_bound: f64,
}

/// f32 through a deep network on another device: the summation order differs in every
/// convolution and product, so values drift by about 1e-6 relative per layer.
const DEEP_F32_BOUND: f64 = 1e-3;
/// The smallest cosine between the device's gradients and the CPU's in f32 (1 up to the
/// summation order), and under autocast (BatchNorm over few values amplifies the rounding of
/// half-precision activations: 0.99 measured for the tiny ResNet in f16, as in PyTorch).
const F32_COSINE_BOUND: f64 = 0.99;
const HALF_COSINE_BOUND: f64 = 0.9;
/// Mask R-CNN picks proposals by ranking scores (top-k, NMS): a last-bit difference can swap a
/// proposal at the cut and change which RoIs are sampled, so its loss gets a looser bound.
const DETECTION_LOSS_BOUND: f64 = 5e-2;

fn spec(part: Part, args: &Args) -> Spec {
    let paper = args.size == Size::Paper;
    let cifar_batch = args.cifar_batch.unwrap_or(if paper { 64 } else { 4 });
    match part {
        Part::CifarResnet50 => Spec {
            task: "cifar",
            arch: if paper { "resnet50" } else { "resnet_tiny" },
            image: if paper { (224, 224) } else { (64, 64) },
            reference_batch: 2,
            throughput_batch: cifar_batch,
            loss_bound: DEEP_F32_BOUND,
            eval_bound: DEEP_F32_BOUND,
        },
        Part::CifarSwinT => Spec {
            task: "cifar",
            arch: if paper { "swin_t" } else { "swin_tiny" },
            image: if paper { (224, 224) } else { (96, 96) },
            reference_batch: 2,
            throughput_batch: cifar_batch,
            loss_bound: DEEP_F32_BOUND,
            eval_bound: DEEP_F32_BOUND,
        },
        Part::MaskRcnn => Spec {
            task: "mask r-cnn",
            arch: if paper { "resnet50" } else { "resnet_tiny" },
            image: if paper { (800, 1333) } else { (64, 80) },
            reference_batch: if paper { 1 } else { 2 },
            throughput_batch: 2,
            loss_bound: DETECTION_LOSS_BOUND,
            eval_bound: DEEP_F32_BOUND,
        },
        Part::Upernet | Part::Ops => Spec {
            task: "upernet",
            arch: if paper { "resnet50" } else { "resnet_tiny" },
            image: if paper { (512, 512) } else { (64, 64) },
            // Four, not two: the pooling branch's 1×1 BatchNorm normalises N values per channel,
            // and over two its output is ±1 whatever the input, so its input gradient would be
            // rounding noise on every device.
            reference_batch: 4,
            throughput_batch: if paper { 4 } else { 2 },
            loss_bound: DEEP_F32_BOUND,
            eval_bound: DEEP_F32_BOUND,
        },
    }
}

/// The gradient norm under autocast: reported against a loose bound, since rounding that
/// BatchNorm amplifies moves single tensors' gradients by tens of percent (in PyTorch too);
/// the cosine is the check.
const HALF_GRAD_NORM_BOUND: f64 = 0.25;

/// The bounds of a run with activations of `dtype` against the CPU's f32.
struct Bounds {
    loss: f64,
    grad_norm: f64,
    eval: f64,
    cosine: f64,
}

/// The spec's bounds in f32; under autocast the loss within [`half_bound`] and the
/// evaluation outputs within four times it (bf16 0.031 and 0.125, f16 0.016 and 0.0625).
fn bounds(spec: &Spec, dtype: DType) -> Bounds {
    if dtype == DType::F32 {
        let cosine = if spec.loss_bound > DEEP_F32_BOUND {
            HALF_COSINE_BOUND // the detector's sampled RoIs can differ (see DETECTION_LOSS_BOUND)
        } else {
            F32_COSINE_BOUND
        };
        return Bounds {
            loss: spec.loss_bound,
            grad_norm: spec.loss_bound,
            eval: spec.eval_bound,
            cosine,
        };
    }
    let half = half_bound(dtype);
    Bounds {
        loss: spec.loss_bound.max(half),
        grad_norm: HALF_GRAD_NORM_BOUND,
        eval: spec.eval_bound.max(4.0 * half),
        cosine: HALF_COSINE_BOUND,
    }
}

fn arch(name: &str, num_classes: Option<usize>) -> anyhow::Result<ArchConfig> {
    let arch = ArchConfig::from_name(name).with_context(|| format!("no architecture {name}"))?;
    Ok(arch.with_num_classes(num_classes)?)
}

/// Normalised-looking images `[N, 3, H, W]` from a seed.
fn images(batch: usize, (h, w): (usize, usize), device: &Device) -> candle_core::Result<Tensor> {
    randn(&[batch, 3, h, w], 11, device)
}

struct Classifier {
    backbone: Box<dyn Backbone>,
    image: (usize, usize),
    device: Device,
    dtype: DType,
    batch: Option<(Tensor, Tensor)>,
}

impl CheckModel for Classifier {
    fn prepare(&mut self, batch: usize) -> anyhow::Result<()> {
        let xs = images(batch, self.image, &self.device)?.to_dtype(self.dtype)?;
        let labels: Vec<i64> = (0..batch).map(|i| (i * 3 % 10) as i64).collect();
        let labels = Tensor::from_vec(labels, batch, &self.device)?;
        self.batch = Some((xs, labels));
        Ok(())
    }

    fn train_loss(&self, seed: u64) -> anyhow::Result<Tensor> {
        let (xs, labels) = self.batch.as_ref().context("no prepared batch")?;
        let out = self.backbone.forward(xs, Mode::Train { seed })?;
        let logits = out.logits.context("the classifier has no logits")?;
        Ok(cross_entropy(
            &logits,
            labels,
            &CrossEntropyOptions::default(),
        )?)
    }

    fn eval_outputs(&self) -> anyhow::Result<Vec<Tensor>> {
        let (xs, _) = self.batch.as_ref().context("no prepared batch")?;
        let out = self.backbone.forward(xs, Mode::Inference)?;
        Ok(vec![out.logits.context("the classifier has no logits")?])
    }
}

struct Segmenter {
    model: UperNet,
    image: (usize, usize),
    device: Device,
    dtype: DType,
    batch: Option<(Tensor, Tensor)>,
}

impl CheckModel for Segmenter {
    fn prepare(&mut self, batch: usize) -> anyhow::Result<()> {
        let xs = images(batch, self.image, &self.device)?.to_dtype(self.dtype)?;
        let classes = self.model.config().num_classes;
        let (h, w) = self.image;
        // Stripes of classes, with an ignored border as real crops have.
        let labels: Vec<u32> = (0..batch * h * w)
            .map(|i| {
                let (y, x) = ((i / w) % h, i % w);
                if y < 2 || x < 2 {
                    255
                } else {
                    ((x / 8 + y / 16 + i / (h * w)) % classes) as u32
                }
            })
            .collect();
        let labels = Tensor::from_vec(labels, (batch, h, w), &self.device)?;
        self.batch = Some((xs, labels));
        Ok(())
    }

    fn train_loss(&self, seed: u64) -> anyhow::Result<Tensor> {
        let (xs, labels) = self.batch.as_ref().context("no prepared batch")?;
        Ok(self.model.forward_train(xs, labels, seed)?.total)
    }

    fn eval_outputs(&self) -> anyhow::Result<Vec<Tensor>> {
        let (xs, _) = self.batch.as_ref().context("no prepared batch")?;
        Ok(vec![self.model.forward(xs)?])
    }
}

struct Detector {
    model: MaskRcnn,
    image: (usize, usize),
    device: Device,
    dtype: DType,
    batch: Option<(ImageBatch, Vec<GtInstances>)>,
}

impl Detector {
    /// Three boxes per image at fixed fractions of its size, with box-shaped masks.
    fn targets(&self, batch: usize) -> anyhow::Result<Vec<GtInstances>> {
        let (h, w) = self.image;
        let fractions = [
            [0.1, 0.1, 0.45, 0.5],
            [0.4, 0.3, 0.9, 0.8],
            [0.05, 0.6, 0.3, 0.95],
        ];
        let classes = self.model.config().num_classes;
        (0..batch)
            .map(|i| {
                let boxes: Vec<[usize; 4]> = fractions
                    .iter()
                    .map(|f| {
                        [
                            (f[0] * w as f64) as usize,
                            (f[1] * h as f64) as usize,
                            (f[2] * w as f64) as usize,
                            (f[3] * h as f64) as usize,
                        ]
                    })
                    .collect();
                let mut masks = vec![0u8; boxes.len() * h * w];
                for (k, b) in boxes.iter().enumerate() {
                    for y in b[1]..b[3] {
                        let row = k * h * w + y * w;
                        masks[row + b[0]..row + b[2]].fill(1);
                    }
                }
                let flat: Vec<f32> = boxes.iter().flat_map(|b| b.map(|v| v as f32)).collect();
                Ok(GtInstances {
                    boxes: Tensor::from_vec(flat, (boxes.len(), 4), &self.device)?,
                    labels: (0..boxes.len()).map(|k| (k + i) % classes).collect(),
                    masks: Tensor::from_vec(masks, (boxes.len(), h, w), &self.device)?,
                })
            })
            .collect()
    }
}

impl CheckModel for Detector {
    fn prepare(&mut self, batch: usize) -> anyhow::Result<()> {
        let xs = images(batch, self.image, &self.device)?.to_dtype(self.dtype)?;
        let list: Vec<Tensor> = (0..batch)
            .map(|i| xs.get(i))
            .collect::<candle_core::Result<_>>()?;
        let batch_images = ImageBatch::from_images(&list, 32)?;
        let targets = self.targets(batch)?;
        self.batch = Some((batch_images, targets));
        Ok(())
    }

    fn train_loss(&self, seed: u64) -> anyhow::Result<Tensor> {
        let (batch, targets) = self.batch.as_ref().context("no prepared batch")?;
        Ok(self.model.forward_train(batch, targets, seed)?.total()?)
    }

    /// The FPN's features: continuous in the weights, unlike the final detections, whose
    /// ranking cuts amplify last-bit differences (those are run in `eval_full`).
    fn eval_outputs(&self) -> anyhow::Result<Vec<Tensor>> {
        let (batch, _) = self.batch.as_ref().context("no prepared batch")?;
        let out = self
            .model
            .backbone
            .forward(&batch.tensor, Mode::Inference)?;
        Ok(self.model.fpn.forward(&out.features.levels)?)
    }

    fn eval_full(&self) -> anyhow::Result<()> {
        let (batch, _) = self.batch.as_ref().context("no prepared batch")?;
        self.model.forward(batch)?;
        Ok(())
    }
}

/// Builds the model of `part` on `device` from the seeded weights (f32), for activations of
/// `dtype`.
fn build(
    part: Part,
    spec: &Spec,
    size: Size,
    (device, dtype): (&Device, DType),
) -> anyhow::Result<(Box<dyn CheckModel>, VarMap)> {
    let varmap = VarMap::new();
    let vb = trainable_builder(&varmap, HashMap::new(), WEIGHT_SEED, DType::F32, device);
    let model: Box<dyn CheckModel> = match part {
        Part::CifarResnet50 | Part::CifarSwinT => Box::new(Classifier {
            backbone: arch(spec.arch, Some(10))?.build(&vb)?,
            image: spec.image,
            device: device.clone(),
            dtype,
            batch: None,
        }),
        Part::MaskRcnn => {
            let cfg = match size {
                Size::Paper => MaskRcnnConfig::new(Flavor::Mmdet, 80),
                Size::Small => MaskRcnnConfig::new(Flavor::Mmdet, 3).with_widths(16, 32, 8),
            };
            let mut backbone = arch(spec.arch, None)?.build(&vb.pp(cfg.backbone_prefix()))?;
            // mmdetection's ResNet recipe: stem and first stage frozen, BatchNorm in eval.
            backbone.set_freeze(Freeze::mmdet_resnet());
            Box::new(Detector {
                model: MaskRcnn::new(&cfg, backbone, &vb)?,
                image: spec.image,
                device: device.clone(),
                dtype,
                batch: None,
            })
        }
        Part::Upernet | Part::Ops => {
            let cfg = match size {
                Size::Paper => UperNetConfig::ade20k(),
                Size::Small => UperNetConfig::tiny(),
            };
            Box::new(Segmenter {
                model: UperNet::build(&cfg, &arch(spec.arch, None)?, &vb)?,
                image: spec.image,
                device: device.clone(),
                dtype,
                batch: None,
            })
        }
    };
    Ok((model, varmap))
}

/// The variables by name (a `VarMap` is a hash map: the gradient norm would otherwise sum in
/// a different order on each side).
fn sorted_vars(varmap: &VarMap) -> Vec<Var> {
    let data = varmap.data().lock().unwrap_or_else(|p| p.into_inner());
    let mut named: Vec<(&String, &Var)> = data.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    named.into_iter().map(|(_, v)| v.clone()).collect()
}

/// The global gradient norm of `vars`, reduced on the device (one host copy at the end).
fn grad_norm(grads: &candle_core::backprop::GradStore, vars: &[Var]) -> anyhow::Result<f64> {
    let mut squares: Option<Tensor> = None;
    for var in vars {
        if let Some(g) = grads.get(var.as_tensor()) {
            let s = g.sqr()?.sum_all()?;
            squares = Some(match squares {
                Some(acc) => (acc + s)?,
                None => s,
            });
        }
    }
    match squares {
        Some(s) => Ok(s.to_dtype(DType::F64)?.to_scalar::<f64>()?.sqrt()),
        None => Ok(0.0),
    }
}

/// One training step: loss, backward, gradient norm; the loss value, the norm and every
/// variable's gradient on the host (zeros where it has none).
fn step(model: &dyn CheckModel, vars: &[Var]) -> anyhow::Result<(f64, f64, Vec<Tensor>)> {
    let loss = model.train_loss(STEP_SEED)?;
    let grads = loss.backward()?;
    let norm = grad_norm(&grads, vars)?;
    let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let host = vars
        .iter()
        .map(|var| {
            let grad = match grads.get(var.as_tensor()) {
                Some(g) => g.clone(),
                None => var.as_tensor().zeros_like()?,
            };
            grad.to_device(&Device::Cpu)?.to_dtype(DType::F32)
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok((value, norm, host))
}

/// A timed training step with a plain SGD update, left on the device (no host copy).
fn sgd_step(model: &dyn CheckModel, vars: &[Var], seed: u64) -> anyhow::Result<()> {
    let loss = model.train_loss(seed)?;
    let grads = loss.backward()?;
    for var in vars {
        if let Some(g) = grads.get(var.as_tensor()) {
            var.set(&(var.as_tensor() - (g * LR)?)?)?;
        }
    }
    Ok(())
}

/// `(step seconds / images)` → images per second, timed with the device synchronised.
fn images_per_s(
    device: &Device,
    iters: usize,
    batch: usize,
    mut run: impl FnMut(u64) -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    run(0)?; // Warm-up: kernels load, allocator pools fill.
    device.synchronize()?;
    let start = Instant::now();
    for i in 0..iters {
        run(i as u64 + 1)?;
    }
    device.synchronize()?;
    let seconds = start.elapsed().as_secs_f64();
    Ok((iters * batch) as f64 / seconds.max(1e-9))
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-6)
}

/// The CPU's f32 step and evaluation batch: what every precision on the device is compared
/// with.
struct Reference {
    eval: Vec<Tensor>,
    loss: f64,
    grad_norm: f64,
    grads: Vec<Tensor>,
}

fn reference(part: Part, spec: &Spec, args: &Args) -> anyhow::Result<Reference> {
    let (mut model, varmap) = build(part, spec, args.size, (&Device::Cpu, DType::F32))?;
    let vars = sorted_vars(&varmap);
    model.prepare(spec.reference_batch)?;
    // Evaluation first: the training step updates BatchNorm's running statistics.
    let eval = model.eval_outputs()?;
    let (loss, grad_norm, grads) = step(model.as_ref(), &vars)?;
    Ok(Reference {
        eval,
        loss,
        grad_norm,
        grads,
    })
}

/// Runs part `part` (a model) on the CPU in f32 and on `device` in each precision of `args`.
pub fn run(part: Part, args: &Args, device: &Device) -> Vec<ModelResult> {
    let spec = spec(part, args);
    let reference = (!args.no_reference).then(|| reference(part, &spec, args));
    args.precisions()
        .into_iter()
        .map(|dtype| {
            let bounds = bounds(&spec, dtype);
            let mut result = ModelResult {
                name: format!("{} {}", spec.task, spec.arch),
                precision: dtype_name(dtype),
                image_size: [spec.image.0, spec.image.1],
                reference_batch: spec.reference_batch,
                loss_bound: bounds.loss,
                grad_norm_bound: bounds.grad_norm,
                eval_bound: bounds.eval,
                cosine_bound: bounds.cosine,
                throughput_batch: spec.throughput_batch,
                ..ModelResult::default()
            };
            let reference = match &reference {
                Some(Ok(r)) => Some(r),
                Some(Err(err)) => {
                    result.error = Some(format!("the CPU reference: {err:#}"));
                    return result;
                }
                None => None,
            };
            match run_one(part, &spec, args, (device, dtype), reference, &mut result) {
                Ok(()) => {
                    let within = |diff: Option<f64>, bound: f64| diff.is_none_or(|d| d <= bound);
                    result.pass = within(result.loss_rel_diff, bounds.loss)
                        && within(result.grad_norm_rel_diff, bounds.grad_norm)
                        && within(result.eval_rel_diff, bounds.eval)
                        && result.grad_cosine.is_none_or(|c| c >= bounds.cosine);
                }
                Err(err) => {
                    result.pass = false;
                    result.error = Some(format!("{err:#}"));
                }
            }
            result
        })
        .collect()
}

fn run_one(
    part: Part,
    spec: &Spec,
    args: &Args,
    (device, dtype): (&Device, DType),
    reference: Option<&Reference>,
    result: &mut ModelResult,
) -> anyhow::Result<()> {
    let (mut model, varmap) = build(part, spec, args.size, (device, dtype))?;
    let vars = sorted_vars(&varmap);
    if let Some(want) = reference {
        model.prepare(spec.reference_batch)?;
        let got = model.eval_outputs()?;
        let mut worst = 0f64;
        for (w, g) in want.eval.iter().zip(&got) {
            let g = g.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
            worst = worst.max(max_abs_diff(w, &g)? / max_abs(w)?.max(1.0));
        }
        result.eval_rel_diff = Some(worst);
        let (loss, norm, grads) = step(model.as_ref(), &vars)?;
        result.cpu_loss = Some(want.loss);
        result.device_loss = Some(loss);
        result.loss_rel_diff = Some(rel(loss, want.loss));
        result.cpu_grad_norm = Some(want.grad_norm);
        result.device_grad_norm = Some(norm);
        result.grad_norm_rel_diff = Some(rel(norm, want.grad_norm));
        let agreement = rtb_nn::autocast::agreement(&grads, &want.grads)?;
        result.grad_cosine = Some(agreement.overall);
        result.grad_min_cosine = Some(agreement.worst.0);
    }
    model.prepare(spec.throughput_batch)?;
    let iters = args.iters.max(1);
    result.train_images_per_s = Some(images_per_s(
        device,
        iters,
        spec.throughput_batch,
        |seed| sgd_step(model.as_ref(), &vars, seed),
    )?);
    result.eval_images_per_s = Some(images_per_s(device, iters, spec.throughput_batch, |_| {
        model.eval_full()
    })?);
    Ok(())
}
