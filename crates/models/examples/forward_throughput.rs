//! Forward throughput and peak memory of a backbone on seeded random weights, the rtb side of
//! `tests/golden/bench_torch.py` (same batch, size, warm-up and repetitions):
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo run --release -p rtb-models --example forward_throughput -- resnet50 16 224 3
//! ```
//!
//! Arguments: architecture name, batch, side, timed repetitions. Prints images per second and
//! the process's peak resident memory (VmHWM). Run one architecture per process so the peak
//! belongs to it.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rtb_models::init::trainable_builder;
use rtb_models::{ArchConfig, Mode};

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map(String::as_str).unwrap_or("resnet50");
    let batch: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(16);
    let side: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(224);
    let reps: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(3);
    let arch = ArchConfig::from_name(name).ok_or(format!("unknown architecture {name}"))?;
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let model = arch.build(&trainable_builder(
        &varmap,
        Default::default(),
        0,
        DType::F32,
        &device,
    ))?;
    // Plain tensors, as a fixed-feature or inference run holds them.
    let xs = Tensor::randn(0f32, 1.0, (batch, 3, side, side), &device)?;
    model.forward(&xs, Mode::Inference)?; // warm-up
    let started = Instant::now();
    for _ in 0..reps {
        model.forward(&xs, Mode::Inference)?;
    }
    let seconds = started.elapsed().as_secs_f64() / reps as f64;
    println!(
        "{name} batch {batch} {side}x{side}: {:.3} s/batch, {:.2} img/s, peak RSS {:.0} MiB",
        seconds,
        batch as f64 / seconds,
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    Ok(())
}
