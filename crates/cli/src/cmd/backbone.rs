//! `rtb backbone`: obtain one backbone of a preset. A pretrained backbone (mini and tiny
//! presets) is trained on the synthetic source task and evaluated there clean and under every
//! corruption × severity (rtb-pretrain); a published one (paper preset) is fetched from the
//! weights manifest and imported. Either way the step ends with
//! `<runs>/<preset>/<backbone>/backbone.safetensors` and, written last,
//! `backbone.json`. Rerunning a step that was killed resumes from its last checkpoint.

use std::process::ExitCode;

use anyhow::Context;
use rtb_results::{BackboneRecord, Published};
use rtb_study::DeviceKind;
use rtb_study::weights::WeightsManifest;
use rtb_train::DeviceChoice;

use crate::study::{LogObserver, StepArgs, arch_of, engine_of, source_c_spec};

/// Arguments of `rtb backbone`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    step: StepArgs,
    /// The backbone's name in the preset.
    #[arg(long)]
    backbone: String,
    /// Where to compute.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
    /// The weights manifest (published backbones).
    #[arg(long, default_value = "weights/backbones.toml")]
    manifest: std::path::PathBuf,
    /// A checkpoint downloaded by hand (published backbones that cannot be fetched directly).
    #[arg(long = "from", value_name = "FILE")]
    from: Option<std::path::PathBuf>,
    /// Use manifest entries marked unverified.
    #[arg(long)]
    allow_unverified: bool,
    /// Loader worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

fn device_choice(device: DeviceKind) -> DeviceChoice {
    match device {
        DeviceKind::Cpu => DeviceChoice::Cpu,
        DeviceKind::Cuda => DeviceChoice::Cuda(0),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (preset, layout) = args.step.load()?;
    let spec = preset.backbone(&args.backbone)?;
    let what = format!("{}: backbone {:?}", args.step.preset.display(), spec.name);
    let arch = arch_of(&spec.arch, &what)?;
    let started = std::time::Instant::now();
    if let Some(pretrain) = &spec.pretrain {
        let source = preset
            .source
            .as_ref()
            .context("the preset has no [source] table")?;
        let augment: rtb_pretrain::Augment =
            serde_json::from_value(rtb_study::table_to_json(&pretrain.augment))
                .with_context(|| format!("{what}: pretrain.augment"))?;
        let cfg = rtb_pretrain::PretrainConfig {
            preset: preset.name.clone(),
            backbone_name: spec.name.clone(),
            paper_row: spec.paper_row.clone(),
            description: spec.description.clone(),
            source_task: source.name.clone(),
            arch,
            source: rtb_pretrain::SourcePaths::in_data_dir(&layout.data),
            augment,
            batch_size: pretrain.batch_size,
            workers: args.workers,
            seed: pretrain.seed,
            device: device_choice(args.device),
            engine: engine_of(
                &pretrain.engine,
                pretrain.epochs,
                &format!("{what}: pretrain"),
            )?,
            eval: source_c_spec(&preset)?,
            eval_batch_size: 100,
            frost_dir: args.step.frost_dir(),
        };
        let bar = crate::progress::bar(0, &format!("{} source-task evaluation", spec.name));
        let done = rtb_pretrain::pretrain(
            &cfg,
            &layout.runs,
            &mut LogObserver::default(),
            &mut |_, done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            },
        )?;
        bar.finish_and_clear();
        let robustness = done.table.robustness().ok();
        tracing::info!(
            "{}: source top-1 {:.2} %, corruption drop {} ({:.1} s)",
            spec.name,
            100.0 * done.table.clean,
            robustness.map_or("n/a".into(), |r| format!("{:.2} %", r.drop_percent)),
            started.elapsed().as_secs_f64()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let name = spec
        .weights
        .as_ref()
        .context("the backbone has neither pretrain nor weights")?;
    let manifest = WeightsManifest::load(&args.manifest)?;
    let entry = manifest.get(name)?;
    let path =
        crate::cmd::weights_fetch::fetch_entry(entry, args.from.as_deref(), args.allow_unverified)?;
    let weights = layout.backbone_weights(&spec.name);
    crate::cmd::weights_fetch::import_entry(entry, &path, &weights)?;
    BackboneRecord {
        preset: preset.name.clone(),
        backbone: spec.name.clone(),
        paper_row: spec.paper_row.clone().or_else(|| entry.paper_row.clone()),
        description: spec.description.clone(),
        source_task: "imagenet".into(),
        source: None,
        published: Some(Published {
            imagenet_top1: entry.published.imagenet_top1,
            imagenet_c_mce: entry.published.imagenet_c_mce,
            source: entry.published.source.clone(),
        }),
    }
    .write(&layout.runs)?;
    tracing::info!(
        "{}: {} imported to {}",
        spec.name,
        path.display(),
        weights.display()
    );
    Ok(ExitCode::SUCCESS)
}
