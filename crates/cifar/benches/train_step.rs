//! Training-step throughput (images/s) of the CIFAR transfer task, against
//! `train_step_torch.py` (the same steps in PyTorch) on the same machine.
//!
//! A step is what the engine runs per batch: 32×32 normalised images upsampled (bilinear) to
//! the input size on the device, the backbone (train mode for the full network, inference for
//! fixed features), the linear head, cross-entropy, backward, SGD with momentum 0.9 and weight
//! decay 5e-4. The first step is a warm-up outside the timing.
//!
//! `cargo bench -p rtb-cifar --bench train_step [-- CASE…]` with cases `mini32` (the mini
//! preset's ResNet at 32 px, batch 64, full network), `swinmini32` (the mini preset's Swin,
//! likewise), `r50full` (ResNet-50 at 224, batch 8,
//! full network) and `r50fixed` (ResNet-50 at 224, batch 8, fixed features). `RTB_BENCH_STEPS`
//! sets the timed steps (default 5). The steps run as the `rtb` binary runs them (mimalloc,
//! `rtb_nn::cpu::on_compute_pool`, `CANDLE_NUM_THREADS=1` unless set); `RTB_BENCH_HANDOFF=1`
//! runs them from the main thread instead.
#![allow(clippy::print_stdout)]

use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use candle_core::{DType, Device, Tensor};
use rtb_cifar::{CifarBatch, CifarTask, Classifier};
use rtb_models::ArchConfig;
use rtb_results::Regime;
use rtb_train::seed::SplitMix64;
use rtb_train::{GroupsConfig, OptimizerConfig, StepContext, TrainTask};

struct Case {
    name: &'static str,
    arch: &'static str,
    regime: Regime,
    image_size: usize,
    batch: usize,
}

const CASES: [Case; 4] = [
    Case {
        name: "mini32",
        arch: "resnet_mini",
        regime: Regime::Full,
        image_size: 32,
        batch: 64,
    },
    Case {
        name: "swinmini32",
        arch: "swin_mini",
        regime: Regime::Full,
        image_size: 32,
        batch: 64,
    },
    Case {
        name: "r50full",
        arch: "resnet50",
        regime: Regime::Full,
        image_size: 224,
        batch: 8,
    },
    Case {
        name: "r50fixed",
        arch: "resnet50",
        regime: Regime::Fixed,
        image_size: 224,
        batch: 8,
    },
];

fn batch(size: usize, seed: u64) -> CifarBatch {
    let mut rng = SplitMix64::new(seed);
    let values: Vec<f32> = (0..size * 3 * 32 * 32)
        .map(|_| (rng.uniform() as f32 - 0.5) * 4.0)
        .collect();
    CifarBatch {
        indices: (0..size).collect(),
        images: Some(Tensor::from_vec(values, (size, 3, 32, 32), &Device::Cpu).unwrap()),
        labels: (0..size).map(|i| (i % 10) as u32).collect(),
    }
}

fn run(case: &Case, steps: usize) {
    let arch = ArchConfig::from_name(case.arch).unwrap();
    let model =
        Classifier::build(&arch, None, case.regime, 10, 0, DType::F32, &Device::Cpu).unwrap();
    let mut task = CifarTask::new(model, case.image_size, Device::Cpu, DType::F32);
    let optimizer_cfg = OptimizerConfig::Sgd {
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 5e-4,
        nesterov: false,
    };
    let mut optimizer = optimizer_cfg
        .build(GroupsConfig::default().build(task.trainable_roles()))
        .unwrap();
    let mut seconds = 0.0;
    for step in 0..=steps {
        let input = batch(case.batch, step as u64);
        let started = Instant::now();
        let ctx = StepContext {
            iteration: step,
            epoch: 0,
            batch_in_epoch: step,
            seed: step as u64,
            learning_rate: 0.01,
        };
        let output = task.train_step(input, &ctx).unwrap();
        let grads = output.loss.backward().unwrap();
        optimizer.step(&grads).unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        if step > 0 {
            seconds += elapsed;
        }
    }
    let images = (steps * case.batch) as f64;
    println!(
        "{:<9} {:>10} {:?} {}px batch {:>3}: {:8.2} img/s ({:.3} s/step)",
        case.name,
        case.arch,
        case.regime,
        case.image_size,
        case.batch,
        images / seconds,
        seconds / steps as f64
    );
}

fn main() {
    // As the `rtb` binary runs: no second (candle) pool unless CANDLE_NUM_THREADS is set, the
    // steps on a compute-pool worker unless RTB_BENCH_HANDOFF is set (each op handed to the
    // pool from outside, as before rtb_nn::cpu).
    if std::env::var_os(rtb_nn::cpu::CANDLE_THREADS_VARIABLE).is_none() {
        // SAFETY: the first statement of `main`, before any other thread exists.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var(rtb_nn::cpu::CANDLE_THREADS_VARIABLE, "1");
        }
    }
    let handoff = std::env::var_os("RTB_BENCH_HANDOFF").is_some();
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let steps: usize = std::env::var("RTB_BENCH_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    for case in &CASES {
        if wanted.is_empty() || wanted.iter().any(|w| w == case.name) {
            if handoff {
                run(case, steps);
            } else {
                rtb_nn::cpu::on_compute_pool(|| run(case, steps)).unwrap();
            }
        }
    }
}
