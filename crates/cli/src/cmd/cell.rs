//! `rtb cell`: train and evaluate one cell of a preset (backbone × task × regime) in one
//! process, into `<runs>/<preset>/<backbone>/<task>/<regime>/`. The backbone comes from its
//! backbone step (`backbone.safetensors`); `metrics.json`, written last and atomically, marks
//! the cell finished. A cell killed while training resumes from its newest checkpoint.

use std::process::ExitCode;

use anyhow::{Context, bail};
use rtb_corruption::Corruption;
use rtb_results::{CellId, Task};
use rtb_study::{DataSpec, DeviceKind, Schedule};
use rtb_train::DeviceChoice;

use crate::study::{LogObserver, StepArgs, arch_of, engine_of, synthetic_cifar_dir};

/// Arguments of `rtb cell`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    step: StepArgs,
    /// The backbone's name in the preset.
    #[arg(long)]
    backbone: String,
    /// The task (`cifar10`; `coco` and `ade20k` once their task crates exist).
    #[arg(long)]
    task: Task,
    /// The regime (`fixed` or `full`).
    #[arg(long)]
    regime: rtb_results::Regime,
    /// Where to compute.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
    /// Which schedule of the preset.
    #[arg(long, default_value = "paper")]
    schedule: Schedule,
    /// Loader worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (preset, layout) = args.step.load()?;
    let backbone = preset.backbone(&args.backbone)?;
    let task = preset.task(args.task)?;
    let spec = task
        .regime(args.regime, args.schedule)
        .with_context(|| format!("task {} has no {} schedule", args.task, args.regime))?;
    let cell = CellId::new(&preset.name, &backbone.name, args.task, args.regime)?;
    let what = format!("{}: {cell}", args.step.preset.display());
    let weights = layout.backbone_weights(&backbone.name);
    if !weights.is_file() {
        bail!(
            "{what}: {} is missing: run the backbone step first (rtb backbone --backbone {})",
            weights.display(),
            backbone.name
        );
    }
    let arch = arch_of(&backbone.arch, &what)?;
    let started = std::time::Instant::now();
    match args.task {
        Task::Cifar10 => {
            let data_dir = match &preset.data {
                DataSpec::Synthetic(_) => synthetic_cifar_dir(&layout.data),
                DataSpec::Download { .. } => {
                    layout.data.join("cifar10").join(rtb_cifar::ARCHIVE_FOLDER)
                }
            };
            let mut cfg = rtb_cifar::CifarConfig::new(
                arch,
                &backbone.name,
                Some(weights),
                args.regime,
                data_dir,
            );
            cfg.preset = preset.name.clone();
            cfg.image_size = task.image_size;
            cfg.batch_size = spec.batch_size;
            cfg.workers = args.workers;
            cfg.seed = spec.seed;
            cfg.device = match args.device {
                DeviceKind::Cpu => DeviceChoice::Cpu,
                DeviceKind::Cuda => DeviceChoice::Cuda(0),
            };
            cfg.engine = engine_of(&spec.engine, spec.epochs, &what)?;
            if let Some(images) = spec.train_images {
                // A shortened schedule: epochs × ⌈images / batch⌉ iterations in all, with the
                // learning-rate schedule complete over that length.
                let per_epoch = images.div_ceil(spec.batch_size).max(1);
                let cap = per_epoch * spec.epochs;
                let length = cfg.engine.max_iters.map_or(cap, |m| m.min(cap));
                cfg.engine.max_iters = Some(length);
                cfg.engine.schedule_iters = Some(length);
            }
            let option = |key: &str| spec.options.get(key).and_then(toml::Value::as_bool);
            if let Some(augment) = option("augment") {
                cfg.augment = augment;
            }
            if let Some(cache) = option("cache_features") {
                cfg.cache_features = cache;
            }
            if let Some(unknown) = spec
                .options
                .keys()
                .find(|k| !["augment", "cache_features"].contains(&k.as_str()))
            {
                bail!("{what}: unknown option {unknown:?} (cifar10 takes augment, cache_features)");
            }
            cfg.eval.corruptions = preset
                .corruptions()
                .iter()
                .map(|name| name.parse::<Corruption>())
                .collect::<Result<_, _>>()?;
            cfg.eval.severities = preset.evaluation.severities.clone();
            cfg.eval.seed = preset.evaluation.seed;
            cfg.eval.frost_dir = args.step.frost_dir();
            let dir = cell.dir(&layout.runs);
            let mut observer = LogObserver::default();
            rtb_cifar::train(&cfg, &dir, &mut observer)?;
            let metrics =
                rtb_cifar::evaluate(&dir, &rtb_cifar::EvalOverrides::default(), &mut observer)?;
            let robustness = metrics.primary.robustness().ok();
            tracing::info!(
                "{cell}: top-1 {:.2} %, drop {} ({:.1} s)",
                100.0 * metrics.primary.clean,
                robustness.map_or("n/a".into(), |r| format!("{:.2} %", r.drop_percent)),
                started.elapsed().as_secs_f64()
            );
        }
        Task::Coco | Task::Ade20k => bail!(
            "{what}: this build of rtb has no {} task yet; remove it from the preset or run \
             with --only task=cifar10",
            args.task
        ),
    }
    Ok(ExitCode::SUCCESS)
}
