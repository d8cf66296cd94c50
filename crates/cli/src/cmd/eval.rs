//! `rtb eval <task>`: evaluate a trained run clean and under corruptions, writing
//! `<RUN_DIR>/metrics.json` (the results store's format) and printing the table.

use std::path::PathBuf;
use std::process::ExitCode;

use rtb_cifar::{CifarCSource, EvalOverrides};
use rtb_corruption::Corruption;
use rtb_train::DeviceChoice;

use super::train::Renderer;

/// Tasks `rtb eval` knows.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Top-1 on the CIFAR-10 test set, clean and per corruption × severity (CIFAR-10-C).
    Cifar(CifarArgs),
    /// Top-1 / top-5 of a classifier on ImageNet val and ImageNet-C (mCE, relative mCE).
    Imagenet(super::imagenet::Args),
    /// mIoU (aAcc, mAcc) of a segmentation run on its validation split, clean and per
    /// corruption × severity.
    Ade(AdeArgs),
    /// Box AP (and mask AP) of a detection run on its validation split, clean and per
    /// corruption × severity.
    Coco(CocoArgs),
}

/// Arguments of `rtb eval coco`.
#[derive(Debug, clap::Args)]
pub struct CocoArgs {
    /// The run directory written by `rtb train coco` or `rtb cell`.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Comma-separated corruption names, `all` or `benchmark` (default: the run's config).
    #[arg(long, value_delimiter = ',')]
    pub corruptions: Vec<String>,
    /// Comma-separated severities (default: the run's config).
    #[arg(long, value_delimiter = ',')]
    pub severities: Vec<u8>,
    /// Evaluate the first N validation images.
    #[arg(long)]
    pub images: Option<usize>,
    /// Keep a COCO results JSON per condition in <RUN_DIR>/results/.
    #[arg(long)]
    pub keep_results: bool,
    /// The frost textures' folder (default: RTB_FROST_DIR or the rtb cache).
    #[arg(long, value_name = "DIR")]
    pub frost_dir: Option<PathBuf>,
}

fn run_coco(args: CocoArgs) -> anyhow::Result<ExitCode> {
    let cfg: rtb_coco::CocoConfig = rtb_train::RunDir::new(&args.run).read_config()?;
    let mut eval = cfg.eval.clone();
    if let Some(corruptions) = parse_corruptions(&args.corruptions)? {
        eval.corruptions = corruptions;
    }
    if !args.severities.is_empty() {
        eval.severities = args.severities;
    }
    if args.images.is_some() {
        eval.images = args.images;
    }
    eval.keep_results |= args.keep_results;
    eval.frost_dir = args
        .frost_dir
        .or(eval.frost_dir)
        .or_else(rtb_fetch::frost_dir);
    let mut renderer = Renderer::default();
    let metrics = rtb_coco::evaluate(&args.run, Some(&eval), &mut renderer)?;
    println!("{}  box AP (mask AP)", metrics.cell);
    let mask = metrics.secondary.get("mask_ap");
    println!(
        "{:<20} {:>8.4} ({:.4})",
        "clean",
        metrics.primary.clean,
        mask.map_or(f64::NAN, |m| m.clean)
    );
    for (corruption, values) in &metrics.primary.corrupted {
        let row: Vec<String> = values.iter().map(|v| format!("{v:.4}")).collect();
        println!("{:<20} {}", corruption.name(), row.join(" "));
    }
    match metrics.primary.robustness() {
        Ok(r) => println!(
            "mPC {:.4}  rPC {:.4}  drop {:.2} %",
            r.mpc, r.rpc, r.drop_percent
        ),
        Err(err) => println!("mPC / rPC not computed: {err}"),
    }
    println!(
        "wrote {}",
        args.run.join(rtb_results::METRICS_FILE).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `rtb eval ade`.
#[derive(Debug, clap::Args)]
pub struct AdeArgs {
    /// The run directory written by `rtb train ade` or `rtb cell`.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Comma-separated corruption names, `all` or `benchmark` (default: the run's config).
    #[arg(long, value_delimiter = ',')]
    pub corruptions: Vec<String>,
    /// Comma-separated severities (default: the run's config).
    #[arg(long, value_delimiter = ',')]
    pub severities: Vec<u8>,
    /// Evaluate the first N validation images.
    #[arg(long)]
    pub images: Option<usize>,
    /// The frost textures' folder (default: RTB_FROST_DIR or the rtb cache).
    #[arg(long, value_name = "DIR")]
    pub frost_dir: Option<PathBuf>,
}

fn run_ade(args: AdeArgs) -> anyhow::Result<ExitCode> {
    let cfg: rtb_ade::AdeConfig = rtb_train::RunDir::new(&args.run).read_config()?;
    let mut eval = cfg.eval.clone();
    if let Some(corruptions) = parse_corruptions(&args.corruptions)? {
        eval.corruptions = corruptions;
    }
    if !args.severities.is_empty() {
        eval.severities = args.severities;
    }
    if args.images.is_some() {
        eval.images = args.images;
    }
    eval.frost_dir = args
        .frost_dir
        .or(eval.frost_dir)
        .or_else(rtb_fetch::frost_dir);
    let mut renderer = Renderer::default();
    let metrics = rtb_ade::evaluate(&args.run, Some(&eval), &mut renderer)?;
    println!("{}  mIoU", metrics.cell);
    println!("{:<20} {:>8.4}", "clean", metrics.primary.clean);
    for (corruption, values) in &metrics.primary.corrupted {
        let row: Vec<String> = values.iter().map(|v| format!("{v:.4}")).collect();
        println!("{:<20} {}", corruption.name(), row.join(" "));
    }
    match metrics.primary.robustness() {
        Ok(r) => println!(
            "mPC {:.4}  rPC {:.4}  drop {:.2} %",
            r.mpc, r.rpc, r.drop_percent
        ),
        Err(err) => println!("mPC / rPC not computed: {err}"),
    }
    println!(
        "wrote {}",
        args.run.join(rtb_results::METRICS_FILE).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `rtb eval cifar`.
#[derive(Debug, clap::Args)]
pub struct CifarArgs {
    /// The run directory written by `rtb train cifar`.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Comma-separated corruption names, `all` (the 19, default) or `benchmark` (the 15).
    #[arg(long, value_delimiter = ',')]
    pub corruptions: Vec<String>,
    /// Comma-separated severities (default 1..5; a subset is recorded under info, not in the
    /// table).
    #[arg(long, value_delimiter = ',')]
    pub severities: Vec<u8>,
    /// Read the released CIFAR-10-C from this folder (<corruption>.npy, labels.npy) instead
    /// of generating it.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["generate_dir", "on_the_fly"])]
    pub cifar_c: Option<PathBuf>,
    /// Generate CIFAR-10-C (cifar-c flavor, per-image seeds) into this cache folder
    /// (default: <data>/rtb-cifar-10-c-seed<seed>).
    #[arg(long, value_name = "DIR", conflicts_with = "on_the_fly")]
    pub generate_dir: Option<PathBuf>,
    /// Corrupt while loading, caching nothing.
    #[arg(long)]
    pub on_the_fly: bool,
    /// The frost textures' folder (default: RTB_FROST_DIR or the rtb cache).
    #[arg(long, value_name = "DIR")]
    pub frost_dir: Option<PathBuf>,
    /// Evaluation batch size.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Data-loader threads.
    #[arg(long)]
    pub workers: Option<usize>,
    /// cpu, cuda or cuda:N.
    #[arg(long)]
    pub device: Option<DeviceChoice>,
}

/// `--corruptions` as the evaluation commands take it: names, `all` (the 19) or `benchmark`
/// (the 15); `None` when empty.
pub(crate) fn parse_corruptions(names: &[String]) -> anyhow::Result<Option<Vec<Corruption>>> {
    match names {
        [] => Ok(None),
        [one] if one == "all" => Ok(Some(Corruption::ALL.to_vec())),
        [one] if one == "benchmark" => Ok(Some(Corruption::BENCHMARK.to_vec())),
        names => names
            .iter()
            .map(|n| n.trim().parse::<Corruption>().map_err(anyhow::Error::from))
            .collect::<anyhow::Result<Vec<_>>>()
            .map(Some),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args {
        Args::Cifar(args) => run_cifar(args),
        Args::Imagenet(args) => super::imagenet::run(args),
        Args::Ade(args) => run_ade(args),
        Args::Coco(args) => run_coco(args),
    }
}

fn run_cifar(args: CifarArgs) -> anyhow::Result<ExitCode> {
    let source = if let Some(dir) = args.cifar_c {
        Some(CifarCSource::Released { dir })
    } else if args.on_the_fly {
        Some(CifarCSource::OnTheFly)
    } else {
        args.generate_dir
            .map(|dir| CifarCSource::Generate { dir: Some(dir) })
    };
    let overrides = EvalOverrides {
        corruptions: parse_corruptions(&args.corruptions)?,
        severities: (!args.severities.is_empty()).then_some(args.severities),
        source,
        batch_size: args.batch,
        workers: args.workers,
        device: args.device,
        frost_dir: args.frost_dir,
    };
    let mut renderer = Renderer::default();
    let metrics = rtb_cifar::evaluate(&args.run, &overrides, &mut renderer)?;
    println!("{}  top-1", metrics.cell);
    println!("{:<20} {:>8.4}", "clean", metrics.primary.clean);
    for (corruption, values) in &metrics.primary.corrupted {
        let row: Vec<String> = values.iter().map(|v| format!("{v:.4}")).collect();
        println!("{:<20} {}", corruption.name(), row.join(" "));
    }
    match metrics.primary.robustness() {
        Ok(r) => println!(
            "mPC {:.4}  rPC {:.4}  drop {:.2} %",
            r.mpc, r.rpc, r.drop_percent
        ),
        Err(err) => println!("mPC / rPC not computed: {err}"),
    }
    println!(
        "wrote {}",
        args.run.join(rtb_results::METRICS_FILE).display()
    );
    Ok(ExitCode::SUCCESS)
}
