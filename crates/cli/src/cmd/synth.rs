//! `rtb synth`: writes one export of the synthetic shapes world (rtb-synth).

use std::path::PathBuf;
use std::process::ExitCode;

use rtb_synth::{SynthConfig, write_ade, write_cifar, write_coco, write_source};

/// Which export to write.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    /// CIFAR-10 binaries of 32×32 single-shape images.
    Cifar,
    /// COCO instances: train2017/, val2017/, annotations/instances_*.json.
    Coco,
    /// The ADE20K layout: images/ and annotations/ with 8-bit PNG label maps.
    Ade,
    /// The pretraining source task: train.bin, val.bin, classes.txt.
    Source,
}

/// Arguments of `rtb synth`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which export.
    #[arg(long, value_enum)]
    kind: Kind,
    /// Output folder (created).
    #[arg(long)]
    out: PathBuf,
    /// World seed; the same seed writes the same bytes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Training images (the held-out split gets a fifth as many, at least one). Default: the
    /// mini preset's counts.
    #[arg(long)]
    count: Option<usize>,
    /// Number of shape classes (1..=10).
    #[arg(long, default_value_t = 10)]
    num_classes: usize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut config = SynthConfig::mini()
        .with_seed(args.seed)
        .with_num_classes(args.num_classes);
    if let Some(count) = args.count {
        let held_out = (count / 5).max(1);
        config.cifar.train = count;
        config.cifar.test = held_out;
        config.coco.train = count;
        config.coco.val = held_out;
        config.ade.train = count;
        config.ade.val = held_out;
        config.source.train = count;
        config.source.val = held_out;
    }
    let start = std::time::Instant::now();
    let what = match args.kind {
        Kind::Cifar => {
            let summary = write_cifar(&config, &args.out)?;
            format!(
                "CIFAR-10 binaries: {} training + {} test images",
                summary.train_batches.iter().sum::<usize>(),
                summary.test
            )
        }
        Kind::Coco => {
            let summary = write_coco(&config, &args.out)?;
            format!(
                "COCO instances: {} + {} images, {} + {} annotations ({} + {} crowds)",
                config.coco.train,
                config.coco.val,
                summary.annotations.0,
                summary.annotations.1,
                summary.crowds.0,
                summary.crowds.1
            )
        }
        Kind::Ade => {
            let summary = write_ade(&config, &args.out)?;
            format!(
                "ADE20K layout: {} training + {} validation images",
                summary.images.0, summary.images.1
            )
        }
        Kind::Source => {
            write_source(&config, &args.out)?;
            format!(
                "source task: {} + {} images of {}×{}",
                config.source.train, config.source.val, config.source.size, config.source.size
            )
        }
    };
    println!(
        "{what} in {} ({:.1} s)",
        args.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
