//! UperNet-R50 (ADE20K head: 512 channels, 150 classes, auxiliary FCN on C4) on the CPU
//! against `upernet_transformers.py` (transformers' `UperNetForSemanticSegmentation` with its
//! ResNet-50 backbone, the same sizes) on the same machine.
//!
//! - `infer`: one 512×512 image, logits upsampled to the image size (mmseg's `whole` test
//!   mode), no gradient graph;
//! - `train`: one full-network training step at batch 2 (512² crops, labels with ignored
//!   pixels): decode and auxiliary cross-entropy, backward, SGD with momentum.
//!
//! Weights come from rtb-models' seeded initialiser and the inputs are fixed patterns.
//! `cargo bench -p rtb-segmentation --bench upernet [-- infer|train]`; `RTB_BENCH_STEPS` sets
//! the timed iterations (default 3) after one untimed warm-up.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rtb_models::init::trainable_builder;
use rtb_models::{ArchConfig, ResNetConfig};
use rtb_nn::optim::{Optimizer, ParamGroup, Sgd, SgdConfig};
use rtb_segmentation::{Regime, UperNet, UperNetConfig};

const SIZE: usize = 512;

fn model() -> (UperNet, VarMap) {
    let varmap = VarMap::new();
    let vb = trainable_builder(&varmap, HashMap::new(), 0, DType::F32, &Device::Cpu);
    let arch = ArchConfig::from(ResNetConfig::resnet50().without_classifier());
    let mut model = UperNet::build(&UperNetConfig::ade20k(), &arch, &vb).expect("UperNet");
    model.set_regime(Regime::FullNetwork);
    (model, varmap)
}

/// `batch` normalised images of smooth patterns.
fn images(batch: usize) -> Tensor {
    let values: Vec<f32> = (0..batch * 3 * SIZE * SIZE)
        .map(|i| ((i as f32 * 0.0137).sin() + (i as f32 * 1e-5).cos()) * 0.9)
        .collect();
    Tensor::from_vec(values, (batch, 3, SIZE, SIZE), &Device::Cpu).expect("images")
}

/// Labels in 150 classes, one pixel in 16 ignored (255).
fn labels(batch: usize) -> Tensor {
    let values: Vec<u32> = (0..batch * SIZE * SIZE)
        .map(|i| {
            if i % 16 == 0 {
                255
            } else {
                ((i / 37) % 150) as u32
            }
        })
        .collect();
    Tensor::from_vec(values, (batch, SIZE, SIZE), &Device::Cpu).expect("labels")
}

fn infer(steps: usize) {
    let (model, _varmap) = model();
    let xs = images(1);
    let run = || model.forward(&xs).expect("forward");
    let _ = run();
    let start = Instant::now();
    for _ in 0..steps {
        let _ = run();
    }
    let seconds = start.elapsed().as_secs_f64() / steps as f64;
    println!(
        "infer: {seconds:.3} s/image ({:.3} images/s)",
        1.0 / seconds
    );
}

fn train(steps: usize) {
    let (model, _varmap) = model();
    let xs = images(2);
    let ys = labels(2);
    let mut sgd = Sgd::new(
        vec![ParamGroup::new(model.trainable_vars())],
        SgdConfig {
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 5e-4,
            ..SgdConfig::default()
        },
    )
    .expect("sgd");
    let mut step = |seed: u64| {
        let losses = model.forward_train(&xs, &ys, seed).expect("losses");
        let grads = losses.total.backward().expect("backward");
        sgd.step(&grads).expect("step");
        losses.total.to_scalar::<f32>().expect("loss")
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
