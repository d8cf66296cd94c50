//! `rtb eval imagenet`: top-1 / top-5 of a backbone's classifier on the ImageNet validation
//! set, and on ImageNet-C (the released folders or generated on the fly), with CE, mCE,
//! relative mCE and the drop (rtb-imagenet).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use candle_core::DType;
use rtb_corruption::{Corruption, Corruptor, Flavor, FrostTextures, Severity};
use rtb_imagenet::{
    CSource, EvalOptions, EvalTransform, GenerateC, ImageNetResults, Interpolation, ReleasedC,
    ValSet,
};
use rtb_train::DeviceChoice;

use super::eval::parse_corruptions;
use super::train::{Renderer, resolve_arch};

/// Arguments of `rtb eval imagenet`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A named architecture (resnet50, swin_t, …) or a JSON architecture file.
    #[arg(long)]
    pub arch: String,
    /// Weights with a 1000-class classifier (safetensors or PyTorch, any known layout).
    #[arg(long)]
    pub weights: PathBuf,
    /// The validation images: val/<wnid>/ folders, or a flat folder with --labels.
    #[arg(long, value_name = "DIR")]
    pub val: PathBuf,
    /// Labels of a flat folder: val.txt (`<file> <index>`) or Kaggle's LOC_val_solution.csv.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// The released ImageNet-C: <DIR>/<corruption>/<severity>/<wnid>/*.JPEG.
    #[arg(long, value_name = "DIR", conflicts_with = "generate_c")]
    pub imagenet_c: Option<PathBuf>,
    /// Generate ImageNet-C on the fly (imagenet-c flavor, per-image seeds, JPEG quality 85).
    #[arg(long)]
    pub generate_c: bool,
    /// Skip the JPEG round trip (quality 85) that the released files went through.
    #[arg(long, requires = "generate_c")]
    pub no_jpeg: bool,
    /// Comma-separated corruption names, `benchmark` (the 15) or `all` (the 19). Default:
    /// the 15 when generating, those present in --imagenet-c otherwise.
    #[arg(long, value_delimiter = ',')]
    pub corruptions: Vec<String>,
    /// Comma-separated severities (default 1..5, or those present in --imagenet-c).
    #[arg(long, value_delimiter = ',')]
    pub severities: Vec<u8>,
    /// Evaluate only the first N images (of the clean set and of each ImageNet-C folder).
    #[arg(long, value_name = "N")]
    pub images: Option<usize>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Seed of the generated corruptions and of the bootstrap resamples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Paired bootstrap replicates of top-1 per condition, for the 95 % interval of the
    /// clean accuracy and the drop (0: none).
    #[arg(long, default_value_t = 0)]
    pub bootstrap: usize,
    /// timm's crop_pct: the resize size is floor(224 / crop_pct) (0.875: 256).
    #[arg(long, default_value_t = 0.875)]
    pub crop_pct: f64,
    /// bilinear (ResNets, torchvision) or bicubic (timm's Swin).
    #[arg(long, default_value = "bilinear")]
    pub interpolation: String,
    /// Decoding threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// The frost textures' folder (default: RTB_FROST_DIR or the rtb cache).
    #[arg(long, value_name = "DIR")]
    pub frost_dir: Option<PathBuf>,
    /// Write the results as JSON here.
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
}

fn parse_severities(values: &[u8]) -> anyhow::Result<Option<Vec<Severity>>> {
    if values.is_empty() {
        return Ok(None);
    }
    values
        .iter()
        .map(|&s| Severity::new(s).with_context(|| format!("--severities: {s} is not in 1..=5")))
        .collect::<anyhow::Result<Vec<_>>>()
        .map(Some)
}

/// Which corrupted images to evaluate, as the command line or the study step asks.
#[derive(Debug, Clone)]
pub enum CorruptedImages {
    /// Clean top-1 only.
    None,
    /// The released folders.
    Released(PathBuf),
    /// Generated on the fly, with or without the released files' JPEG round trip.
    Generate {
        /// The JPEG quality-85 round trip.
        jpeg: bool,
    },
}

/// Everything one ImageNet evaluation needs besides the model.
#[derive(Debug, Clone)]
pub struct ImageNetRun {
    /// The validation folder.
    pub val: PathBuf,
    /// Labels of a flat folder.
    pub labels: Option<PathBuf>,
    /// The corrupted images.
    pub corrupted: CorruptedImages,
    /// Chosen corruptions (`None`: the 15, or those present in the released folders).
    pub corruptions: Option<Vec<Corruption>>,
    /// Chosen severities (`None`: 1..5, or those every chosen corruption has).
    pub severities: Option<Vec<Severity>>,
    /// The evaluation transform.
    pub transform: EvalTransform,
    /// The first N images only.
    pub images: Option<usize>,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Decoding threads.
    pub workers: usize,
    /// Seed of generated corruptions and of the bootstrap resamples.
    pub seed: u64,
    /// Paired bootstrap replicates per condition (0: none).
    pub bootstrap: usize,
    /// Frost textures.
    pub frost_dir: Option<PathBuf>,
}

/// Evaluates `model` (with a 1000-class classifier) as `run` says, on `device`.
pub fn evaluate(
    model: &dyn rtb_models::Backbone,
    run: &ImageNetRun,
    device: &candle_core::Device,
) -> anyhow::Result<ImageNetResults> {
    let val = ValSet::open(&run.val, run.labels.as_deref())?;
    tracing::info!(
        "{}: {} images of {} classes",
        run.val.display(),
        val.len(),
        val.classes().len()
    );
    let (source, corruptions, severities) = match &run.corrupted {
        CorruptedImages::Released(dir) => {
            let released = ReleasedC::open(dir)?;
            let corruptions = run
                .corruptions
                .clone()
                .unwrap_or_else(|| released.present().keys().copied().collect());
            // By default, the severities every chosen corruption has.
            let severities = run.severities.clone().unwrap_or_else(|| {
                Severity::ALL
                    .into_iter()
                    .filter(|s| corruptions.iter().all(|c| released.has(*c, *s)))
                    .collect()
            });
            (Some(CSource::Released(released)), corruptions, severities)
        }
        CorruptedImages::Generate { jpeg } => {
            let corruptions = run
                .corruptions
                .clone()
                .unwrap_or_else(|| Corruption::BENCHMARK.to_vec());
            let mut corruptor = Corruptor::new(Flavor::ImageNetC);
            if corruptions.contains(&Corruption::Frost) {
                let dir = run
                    .frost_dir
                    .clone()
                    .or_else(rtb_fetch::frost_dir)
                    .ok_or(rtb_corruption::CorruptionError::FrostTexturesNotConfigured)?;
                let textures = FrostTextures::new(&dir);
                textures.verify()?;
                corruptor = corruptor.with_frost_textures(textures);
            }
            let generate = GenerateC {
                corruptor,
                seed: run.seed,
                jpeg_quality: jpeg.then_some(rtb_imagenet::imagenet_c::RELEASED_JPEG_QUALITY),
            };
            (
                Some(CSource::Generated(generate)),
                corruptions,
                run.severities
                    .clone()
                    .unwrap_or_else(|| Severity::ALL.to_vec()),
            )
        }
        CorruptedImages::None => (None, Vec::new(), Vec::new()),
    };
    let opts = EvalOptions {
        transform: run.transform.clone(),
        batch_size: run.batch_size,
        workers: run.workers,
        corruptions,
        severities,
        max_images: run.images,
        bootstrap: run.bootstrap,
        bootstrap_seed: run.seed,
    };
    let mut renderer = Renderer::default();
    Ok(rtb_imagenet::evaluate(
        model,
        &val,
        source.as_ref(),
        &opts,
        device,
        &mut renderer,
    )?)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let interpolation: Interpolation = args.interpolation.parse()?;
    let transform = EvalTransform::from_crop_pct(224, args.crop_pct, interpolation)?;
    let device = args.device.device()?;

    let (arch, name) = resolve_arch(&args.arch)?;
    let canonical = rtb_models::read_canonical(&arch, &args.weights, None)?;
    let arch = arch.with_classifier_of(&canonical.tensors)?;
    let model = rtb_models::from_state_dict(
        &arch,
        &args.weights.display().to_string(),
        canonical.tensors,
        DType::F32,
        &device,
    )?;
    let run = ImageNetRun {
        val: args.val.clone(),
        labels: args.labels.clone(),
        corrupted: match (&args.imagenet_c, args.generate_c) {
            (Some(dir), _) => CorruptedImages::Released(dir.clone()),
            (None, true) => CorruptedImages::Generate {
                jpeg: !args.no_jpeg,
            },
            (None, false) => CorruptedImages::None,
        },
        corruptions: parse_corruptions(&args.corruptions)?,
        severities: parse_severities(&args.severities)?,
        transform,
        images: args.images,
        batch_size: args.batch_size,
        workers: args.workers,
        seed: args.seed,
        bootstrap: args.bootstrap,
        frost_dir: args.frost_dir.clone(),
    };
    let results = evaluate(model.as_ref(), &run, &device)?;
    print_table(&name, &results);
    if let Some(path) = &args.json {
        let mut text = results.to_json();
        text.push('\n');
        rtb_train::write_atomically(path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".into(), |v| format!("{:.2}", 100.0 * v))
}

fn print_table(name: &str, results: &ImageNetResults) {
    println!(
        "{name}: {} clean images, {}",
        results.clean.images,
        match &results.corrupted_source {
            None => "no corruptions".to_string(),
            Some(source) => serde_json::to_string(source).unwrap_or_default(),
        }
    );
    println!("{:<24} {:>8} {:>8}", "", "top-1 %", "top-5 %");
    println!(
        "{:<24} {:>8.2} {:>8.2}",
        "clean (accuracy)",
        100.0 * results.clean.top1_accuracy(),
        100.0 * results.clean.top5_accuracy()
    );
    if !results.conditions.is_empty() {
        println!(
            "{:<24} {:>8} {:>8}",
            "corruption severity", "err-1 %", "err-5 %"
        );
        for c in &results.conditions {
            println!(
                "{:<24} {:>8.2} {:>8.2}",
                format!("{} {}", c.corruption, c.severity),
                100.0 * c.top1_error,
                100.0 * c.top5_error
            );
        }
        println!(
            "{:<24} {:>8} {:>8} {:>8}",
            "corruption", "err-1 %", "CE %", "rel CE %"
        );
        for c in &results.corruptions {
            println!(
                "{:<24} {:>8.2} {:>8} {:>8}",
                c.corruption,
                100.0 * c.mean_top1_error,
                percent(c.ce),
                percent(c.relative_ce)
            );
        }
    }
    let complete = "(needs the 15 benchmark corruptions at severities 1..5)";
    match (results.mce, results.relative_mce, results.drop_percent) {
        (Some(mce), Some(rel), Some(drop)) => println!(
            "mCE {:.2} %  relative mCE {:.2} %  drop {:.2} %",
            100.0 * mce,
            100.0 * rel,
            drop
        ),
        _ if results.conditions.is_empty() => {}
        _ => println!("mCE, relative mCE and drop: n/a {complete}"),
    }
    // The replicates' 95 % intervals (their table holds only full corruptions).
    let table = results.metric_table();
    if let Some(replicates) = &table.replicates {
        let clean = rtb_results::Interval::percentile_95(&replicates.clean);
        println!(
            "bootstrap ({} replicates, seed {}): clean top-1 95 % interval [{:.2}, {:.2}] %",
            replicates.count(),
            replicates.seed,
            100.0 * clean.low,
            100.0 * clean.high
        );
        if let Ok(Some(intervals)) = table.intervals() {
            println!(
                "drop 95 % interval [{:.2}, {:.2}] %",
                intervals.drop_percent.low, intervals.drop_percent.high
            );
        }
    }
}
