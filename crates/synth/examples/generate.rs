//! Writes the four exports of a preset and times each.
//!
//! `cargo run --release -p rtb-synth --example generate -- OUT_DIR [mini|tiny] [SEED]`
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Instant;

use rtb_synth::{SynthConfig, write_ade, write_cifar, write_coco, write_source};

fn main() -> Result<(), rtb_synth::SynthError> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "synth-out".to_string()));
    let mut config = match args.next().as_deref() {
        Some("tiny") => SynthConfig::tiny(),
        _ => SynthConfig::mini(),
    };
    if let Some(seed) = args.next().and_then(|s| s.parse().ok()) {
        config = config.with_seed(seed);
    }
    let start = Instant::now();
    write_cifar(&config, &out.join("cifar"))?;
    let n = config.cifar.train + config.cifar.test;
    println!(
        "cifar  {n:>6} images 32×32   {:.2} s",
        start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    write_source(&config, &out.join("source"))?;
    let n = config.source.train + config.source.val;
    let side = config.source.size;
    println!(
        "source {n:>6} images {side}×{side}   {:.2} s",
        start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    write_coco(&config, &out.join("coco"))?;
    let n = config.coco.train + config.coco.val;
    println!(
        "coco   {n:>6} scenes {}×{} {:.2} s",
        config.coco.width,
        config.coco.height,
        start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    write_ade(&config, &out.join("ade"))?;
    let n = config.ade.train + config.ade.val;
    println!(
        "ade    {n:>6} scenes {}×{} {:.2} s",
        config.ade.width,
        config.ade.height,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
