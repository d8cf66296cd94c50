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

use super::{Args, ModelResult, Part, Size, max_abs, max_abs_diff, randn};

/// The seed of every model's weights.
const WEIGHT_SEED: u64 = 0x00DE_71CE;
/// The seed of the checked training step's random draws (DropPath, dropout, samplers).
const STEP_SEED: u64 = 7;
/// Learning rate of the plain SGD update inside the timed steps (its value does not matter).
const LR: f64 = 1e-4;

/// A model with its inputs for one batch size, on one device.
trait CheckModel {
    /// Makes (deterministic) inputs of `batch` images on the model's device.
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
            reference_batch: 2,
            throughput_batch: if paper { 4 } else { 2 },
            loss_bound: DEEP_F32_BOUND,
            eval_bound: DEEP_F32_BOUND,
        },
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
    batch: Option<(Tensor, Tensor)>,
}

impl CheckModel for Classifier {
    fn prepare(&mut self, batch: usize) -> anyhow::Result<()> {
        let xs = images(batch, self.image, &self.device)?;
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
    batch: Option<(Tensor, Tensor)>,
}

impl CheckModel for Segmenter {
    fn prepare(&mut self, batch: usize) -> anyhow::Result<()> {
        let xs = images(batch, self.image, &self.device)?;
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
        let xs = images(batch, self.image, &self.device)?;
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

/// Builds the model of `part` on `device` from the seeded weights.
fn build(
    part: Part,
    spec: &Spec,
    size: Size,
    device: &Device,
) -> anyhow::Result<(Box<dyn CheckModel>, VarMap)> {
    let varmap = VarMap::new();
    let vb = trainable_builder(&varmap, HashMap::new(), WEIGHT_SEED, DType::F32, device);
    let model: Box<dyn CheckModel> = match part {
        Part::CifarResnet50 | Part::CifarSwinT => Box::new(Classifier {
            backbone: arch(spec.arch, Some(10))?.build(&vb)?,
            image: spec.image,
            device: device.clone(),
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

/// One training step: loss, backward, gradient norm; the loss value and the norm.
fn step(model: &dyn CheckModel, vars: &[Var]) -> anyhow::Result<(f64, f64)> {
    let loss = model.train_loss(STEP_SEED)?;
    let grads = loss.backward()?;
    let norm = grad_norm(&grads, vars)?;
    let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    Ok((value, norm))
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

/// Runs part `part` (a model) on the CPU and on `device`.
pub fn run(part: Part, args: &Args, device: &Device) -> ModelResult {
    let spec = spec(part, args);
    let mut result = ModelResult {
        name: format!("{} {}", spec.task, spec.arch),
        image_size: [spec.image.0, spec.image.1],
        reference_batch: spec.reference_batch,
        loss_bound: spec.loss_bound,
        eval_bound: spec.eval_bound,
        throughput_batch: spec.throughput_batch,
        ..ModelResult::default()
    };
    match run_inner(part, &spec, args, device, &mut result) {
        Ok(()) => {
            let within = |diff: Option<f64>, bound: f64| diff.is_none_or(|d| d <= bound);
            result.pass = within(result.loss_rel_diff, spec.loss_bound)
                && within(result.grad_norm_rel_diff, spec.loss_bound)
                && within(result.eval_rel_diff, spec.eval_bound);
        }
        Err(err) => {
            result.pass = false;
            result.error = Some(format!("{err:#}"));
        }
    }
    result
}

fn run_inner(
    part: Part,
    spec: &Spec,
    args: &Args,
    device: &Device,
    result: &mut ModelResult,
) -> anyhow::Result<()> {
    let (mut model, varmap) = build(part, spec, args.size, device)?;
    let vars = sorted_vars(&varmap);
    if !args.no_reference {
        let (mut cpu_model, cpu_varmap) = build(part, spec, args.size, &Device::Cpu)?;
        let cpu_vars = sorted_vars(&cpu_varmap);
        cpu_model.prepare(spec.reference_batch)?;
        model.prepare(spec.reference_batch)?;
        // Evaluation first: the training step updates BatchNorm's running statistics.
        let want = cpu_model.eval_outputs()?;
        let got = model.eval_outputs()?;
        let mut worst = 0f64;
        for (w, g) in want.iter().zip(&got) {
            let g = g.to_device(&Device::Cpu)?;
            worst = worst.max(max_abs_diff(w, &g)? / max_abs(w)?.max(1.0));
        }
        result.eval_rel_diff = Some(worst);
        let (cpu_loss, cpu_norm) = step(cpu_model.as_ref(), &cpu_vars)?;
        let (dev_loss, dev_norm) = step(model.as_ref(), &vars)?;
        result.cpu_loss = Some(cpu_loss);
        result.device_loss = Some(dev_loss);
        result.loss_rel_diff = Some(rel(dev_loss, cpu_loss));
        result.cpu_grad_norm = Some(cpu_norm);
        result.device_grad_norm = Some(dev_norm);
        result.grad_norm_rel_diff = Some(rel(dev_norm, cpu_norm));
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
