//! Mask R-CNN R50-FPN on the CPU against `mask_rcnn_torchvision.py` (torchvision's
//! `maskrcnn_resnet50_fpn`, the same sizes) on the same machine.
//!
//! - `infer`: one 800×1333 image, 91 classes (COCO's torchvision head), eval mode, detections
//!   and pasted masks at the image size; random weights (the speed does not depend on
//!   them except through the number of detections, which both sides cap at 100).
//!   Weights are drawn by rtb-models' seeded initialiser, the images are fixed patterns.
//! - `train`: one training step at batch 2 (two 800×1333 images, 4 boxes with masks each):
//!   the five losses, backward, SGD with momentum; full network with mmdet's frozen stem and
//!   stage 1 (torchvision's `trainable_backbone_layers=3` freezes the same).
//!
//! `cargo bench -p rtb-detection --bench mask_rcnn [-- infer|train]`; `RTB_BENCH_STEPS` sets
//! the timed iterations (default 3) after one untimed warm-up.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rtb_detection::Flavor;
use rtb_detection::image_batch::ImageBatch;
use rtb_detection::mask_rcnn::{MaskRcnn, MaskRcnnConfig};
use rtb_detection::roi_heads::GtInstances;
use rtb_models::init::trainable_builder;
use rtb_models::{Backbone, Freeze, ResNet, ResNetConfig};
use rtb_nn::optim::{Optimizer, ParamGroup, Sgd, SgdConfig};

const HEIGHT: usize = 800;
const WIDTH: usize = 1333;

fn model(flavor: Flavor) -> (MaskRcnn, VarMap) {
    let varmap = VarMap::new();
    let vb = trainable_builder(&varmap, HashMap::new(), 0, DType::F32, &Device::Cpu);
    let cfg = MaskRcnnConfig::new(flavor, 90);
    let mut backbone = ResNet::new(
        &ResNetConfig::resnet50().without_classifier(),
        &vb.pp(cfg.backbone_prefix()),
    )
    .expect("ResNet-50");
    backbone.set_freeze(Freeze::mmdet_resnet());
    let model = MaskRcnn::new(&cfg, Box::new(backbone), &vb).expect("Mask R-CNN");
    (model, varmap)
}

/// A normalised image of smooth patterns (deterministic in `seed`).
fn image(seed: u64) -> Tensor {
    let values: Vec<f32> = (0..3 * HEIGHT * WIDTH)
        .map(|i| ((i as f32 * 0.0137 + seed as f32).sin() + (i as f32 * 1e-5).cos()) * 0.9)
        .collect();
    Tensor::from_vec(values, (3, HEIGHT, WIDTH), &Device::Cpu).expect("image")
}

fn targets() -> GtInstances {
    let boxes: [[f32; 4]; 4] = [
        [100.0, 120.0, 400.0, 500.0],
        [600.0, 80.0, 900.0, 300.0],
        [300.0, 450.0, 1200.0, 780.0],
        [1000.0, 100.0, 1300.0, 400.0],
    ];
    let mut masks = vec![0u8; boxes.len() * HEIGHT * WIDTH];
    for (i, b) in boxes.iter().enumerate() {
        for y in b[1] as usize..b[3] as usize {
            for x in b[0] as usize..b[2] as usize {
                masks[i * HEIGHT * WIDTH + y * WIDTH + x] = 1;
            }
        }
    }
    let flat: Vec<f32> = boxes.iter().flatten().copied().collect();
    GtInstances {
        boxes: Tensor::from_vec(flat, (4, 4), &Device::Cpu).expect("boxes"),
        labels: vec![0, 5, 17, 42],
        masks: Tensor::from_vec(masks, (4, HEIGHT, WIDTH), &Device::Cpu).expect("masks"),
    }
}

fn infer(steps: usize) {
    let (model, _varmap) = model(Flavor::Torchvision);
    let batch = ImageBatch::from_images(&[image(0)], 32).expect("batch");
    let run = || {
        let dets = model.forward(&batch).expect("forward");
        dets[0].detections.labels.len()
    };
    let _ = run();
    let start = Instant::now();
    let mut detections = 0;
    for _ in 0..steps {
        detections = run();
    }
    let seconds = start.elapsed().as_secs_f64() / steps as f64;
    println!(
        "infer: {seconds:.3} s/image ({:.3} images/s), {detections} detections",
        1.0 / seconds
    );
}

fn train(steps: usize) {
    let (model, varmap) = model(Flavor::Torchvision);
    let batch = ImageBatch::from_images(&[image(0), image(1)], 32).expect("batch");
    let targets = vec![targets(), targets()];
    let params: Vec<(String, candle_core::Var)> = {
        let data = varmap.data().lock().expect("varmap");
        data.iter()
            .map(|(name, var)| (name.clone(), var.clone()))
            .collect()
    };
    let mut sgd = Sgd::new(
        vec![ParamGroup::new(params)],
        SgdConfig {
            lr: 0.02,
            momentum: 0.9,
            weight_decay: 1e-4,
            ..SgdConfig::default()
        },
    )
    .expect("sgd");
    let mut step = |seed: u64| {
        let losses = model.forward_train(&batch, &targets, seed).expect("losses");
        let total = losses.total().expect("total");
        let grads = total.backward().expect("backward");
        sgd.step(&grads).expect("step");
        total.to_scalar::<f32>().expect("loss")
    };
    let _ = step(0);
    let start = Instant::now();
    let mut loss = 0.0;
    for i in 0..steps {
        loss = step(i as u64 + 1);
    }
    let seconds = start.elapsed().as_secs_f64() / steps as f64;
    println!(
        "train: {seconds:.3} s/step of 2 images ({:.3} images/s), loss {loss:.4}",
        2.0 / seconds
    );
}

fn main() {
    let steps: usize = std::env::var("RTB_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let cases: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |name: &str| cases.is_empty() || cases.iter().any(|c| c == name);
    if want("infer") {
        infer(steps);
    }
    if want("train") {
        train(steps);
    }
}
