//! `rtb cell`: train and evaluate one cell of a preset (backbone × task × regime) in one
//! process, into `<runs>/<preset>/<backbone>/<task>/<regime>/`. The backbone comes from its
//! backbone step (`backbone.safetensors`); `metrics.json`, written last and atomically, marks
//! the cell finished. A cell killed while training resumes from its newest checkpoint.
//!
//! This module knows no task: it resolves the preset into an rtb-train `CellSpec` (the
//! shortened schedule applied here, once) and calls the runner that `crate::tasks` registers
//! for the task.

use std::process::ExitCode;

use anyhow::{Context, bail};
use rtb_corruption::Corruption;
use rtb_results::{CellId, Task};
use rtb_study::{CudaPrecision, DeviceKind, Schedule};
use rtb_train::{CellEval, CellSpec, DeviceChoice, Precision};

use crate::study::{LogObserver, StepArgs, arch_of, engine_of};

/// Arguments of `rtb cell`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    step: StepArgs,
    /// The backbone's name in the preset.
    #[arg(long)]
    backbone: String,
    /// The task (`cifar10`, `ade20k`, `coco`).
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
    let regime = task
        .regime(args.regime, args.schedule)
        .with_context(|| format!("task {} has no {} schedule", args.task, args.regime))?;
    let cell = CellId::new(&preset.name, &backbone.name, args.task, args.regime)?;
    let what = format!("{}: {cell}", args.step.preset.display());
    let Some(runner) = crate::tasks::runner(args.task) else {
        bail!(
            "{what}: this build of rtb has no {} task yet; remove it from the preset or run \
             with --only task=cifar10",
            args.task
        );
    };
    let weights = layout.backbone_weights(&backbone.name);
    if !weights.is_file() {
        bail!(
            "{what}: {} is missing: run the backbone step first (rtb backbone --backbone {})",
            weights.display(),
            backbone.name
        );
    }
    let arch = arch_of(&backbone.arch, &what)?;
    let mut engine = engine_of(regime.engine_of(arch.family()), regime.epochs, &what)?;
    if let Some(images) = regime.train_images {
        rtb_train::short_schedule(&mut engine, images, regime.batch_size);
    }
    let options = match rtb_study::table_to_json(&regime.options) {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    let spec = CellSpec {
        preset: preset.name.clone(),
        backbone: backbone.name.clone(),
        arch: serde_json::to_value(&arch)?,
        weights: Some(weights),
        regime: args.regime,
        data_dir: crate::tasks::data_dir(args.task, &preset.data, &layout.data),
        image_size: task.image_size,
        batch_size: regime.batch_size,
        seed: regime.seed,
        engine,
        options,
        eval: CellEval {
            corruptions: preset
                .corruptions()
                .iter()
                .map(|name| name.parse::<Corruption>())
                .collect::<Result<_, _>>()?,
            severities: preset.evaluation.severities.clone(),
            seed: preset.evaluation.seed,
            bootstrap: preset.evaluation.bootstrap,
            images: preset.evaluation.images,
            frost_dir: args.step.frost_dir(),
        },
        device: match args.device {
            DeviceKind::Cpu => DeviceChoice::Cpu,
            DeviceKind::Cuda => DeviceChoice::Cuda(0),
        },
        precision: cell_precision(args.device, preset.precision),
        workers: args.workers,
        run_dir: cell.dir(&layout.runs),
    };
    let started = std::time::Instant::now();
    let mut observer = LogObserver::default();
    let metrics = runner
        .run(&spec, &mut observer)
        .map_err(|err| anyhow::anyhow!(err))
        .with_context(|| what.clone())?;
    let robustness = metrics.primary.robustness().ok();
    tracing::info!(
        "{cell}: {} {:.2} %, drop {} ({:.1} s)",
        args.task.metric(),
        100.0 * metrics.primary.clean,
        robustness.map_or("n/a".into(), |r| format!("{:.2} %", r.drop_percent)),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// The preset's precision applies on CUDA; the CPU computes in f32.
fn cell_precision(device: DeviceKind, preset: CudaPrecision) -> Precision {
    match (device, preset) {
        (DeviceKind::Cuda, CudaPrecision::Bf16) => Precision::Bf16,
        _ => Precision::F32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_autocast_applies_on_cuda_only() {
        assert_eq!(
            cell_precision(DeviceKind::Cuda, CudaPrecision::Bf16),
            Precision::Bf16
        );
        assert_eq!(
            cell_precision(DeviceKind::Cpu, CudaPrecision::Bf16),
            Precision::F32
        );
        assert_eq!(
            cell_precision(DeviceKind::Cuda, CudaPrecision::F32),
            Precision::F32
        );
    }
}
