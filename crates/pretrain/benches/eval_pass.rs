//! One evaluation pass over the corrupted source task (the mini preset's: 15 corruptions × 5
//! severities of 250 validation images at 32 px, plus the clean set), against
//! `eval_pass_torch.py` (the same forward passes in PyTorch) on the same machine.
//!
//! What is timed is what `rtb backbone` does after corrupting: every set through the backbone
//! in inference mode in batches of 100 (as `rtb backbone`), the arg-max of the logits and the
//! per-image correctness ([`rtb_pretrain::correctness`]). The corrupted sets are made once per
//! preset and cached (`source-c`); their cost is the corruption benchmarks' (rtb-corruption).
//! Random weights and random pixels: the work does not depend on them.
//!
//! `cargo bench -p rtb-pretrain --bench eval_pass [-- CASE…]` with cases `resnet_mini` and
//! `swin_mini`; `RTB_BENCH_PASSES` sets the timed passes (default 1, after an untimed one).
#![allow(clippy::print_stdout)]

use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use candle_core::Device;
use rtb_models::ArchConfig;
use rtb_pretrain::{Images, PretrainTask, correctness};
use rtb_train::seed::SplitMix64;

const SETS: usize = 1 + 15 * 5;
const IMAGES: usize = 250;
const BATCH: usize = 100;

fn images(seed: u64) -> Images {
    let mut rng = SplitMix64::new(seed);
    Images {
        side: 32,
        num_classes: 10,
        labels: (0..IMAGES).map(|i| (i % 10) as u8).collect(),
        rgb: (0..IMAGES * 32 * 32 * 3)
            .map(|_| (rng.uniform() * 256.0) as u8)
            .collect(),
    }
}

fn run(arch: &str, passes: usize) {
    let config = ArchConfig::from_name(arch).unwrap();
    let task = PretrainTask::new(&config, 10, 0, None, &Device::Cpu).unwrap();
    let sets: Vec<Images> = (0..SETS as u64).map(images).collect();
    let mut seconds = 0.0;
    for pass in 0..=passes {
        let started = Instant::now();
        let mut correct = 0.0;
        for set in &sets {
            correct += correctness(&task, set, BATCH).unwrap().iter().sum::<f64>();
        }
        std::hint::black_box(correct);
        if pass > 0 {
            seconds += started.elapsed().as_secs_f64();
        }
    }
    let images = (passes * SETS * IMAGES) as f64;
    println!(
        "{arch:<12} {SETS} sets of {IMAGES} images, batch {BATCH}: {:8.2} img/s ({:.3} s/pass)",
        images / seconds,
        seconds / passes as f64
    );
}

fn main() {
    // As the `rtb` binary runs (see rtb-cifar's train_step bench).
    if std::env::var_os(rtb_nn::cpu::CANDLE_THREADS_VARIABLE).is_none() {
        // SAFETY: the first statement of `main`, before any other thread exists.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var(rtb_nn::cpu::CANDLE_THREADS_VARIABLE, "1");
        }
    }
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let passes: usize = std::env::var("RTB_BENCH_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for arch in ["resnet_mini", "swin_mini"] {
        if wanted.is_empty() || wanted.iter().any(|w| w == arch) {
            rtb_nn::cpu::on_compute_pool(|| run(arch, passes)).unwrap();
        }
    }
}
