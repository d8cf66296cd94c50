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
    /// ImageNet validation images: a published backbone's own top-1 (Figure 1's first bar).
    #[arg(long, value_name = "DIR")]
    imagenet_val: Option<std::path::PathBuf>,
    /// Labels of a flat ImageNet validation folder.
    #[arg(long, value_name = "FILE", requires = "imagenet_val")]
    imagenet_labels: Option<std::path::PathBuf>,
    /// The released ImageNet-C folder, or `generate`: the backbone's ImageNet-C drop.
    #[arg(long, value_name = "DIR|generate", requires = "imagenet_val")]
    imagenet_c: Option<String>,
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
            bootstrap: preset.evaluation.bootstrap,
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
    let source = match &args.imagenet_val {
        Some(val) => Some(imagenet_table(&args, &preset, entry, &arch, &weights, val)?),
        None => None,
    };
    BackboneRecord {
        preset: preset.name.clone(),
        backbone: spec.name.clone(),
        paper_row: spec.paper_row.clone().or_else(|| entry.paper_row.clone()),
        description: spec.description.clone(),
        source_task: "imagenet".into(),
        source,
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

/// The imported backbone's top-1 on the user's ImageNet validation set, clean and under the
/// preset's corruptions and severities (released ImageNet-C or generated), as the source
/// table of `backbone.json`.
fn imagenet_table(
    args: &Args,
    preset: &rtb_study::Preset,
    entry: &rtb_study::weights::BackboneEntry,
    arch: &rtb_models::ArchConfig,
    weights: &std::path::Path,
    val: &std::path::Path,
) -> anyhow::Result<rtb_results::MetricTable> {
    use crate::cmd::imagenet::{CorruptedImages, ImageNetRun};
    let device = device_choice(args.device).device()?;
    let canonical = rtb_models::read_canonical(arch, weights, None)?;
    let arch = arch.with_classifier_of(&canonical.tensors)?;
    let source_name = weights.display().to_string();
    let model = rtb_models::from_state_dict(
        &arch,
        &source_name,
        canonical.tensors,
        candle_core::DType::F32,
        &device,
    )?;
    let (interpolation, crop_pct) = entry
        .imagenet_eval
        .as_ref()
        .map_or(("bilinear", 0.875), |e| {
            (e.interpolation.as_str(), e.crop_pct)
        });
    let transform = rtb_imagenet::EvalTransform::from_crop_pct(
        224,
        crop_pct,
        interpolation.parse::<rtb_imagenet::Interpolation>()?,
    )?;
    let corruptions = preset
        .corruptions()
        .iter()
        .map(|name| name.parse::<rtb_corruption::Corruption>())
        .collect::<Result<Vec<_>, _>>()?;
    let severities = preset
        .evaluation
        .severities
        .iter()
        .map(|&s| {
            rtb_corruption::Severity::new(s)
                .with_context(|| format!("preset evaluation.severities: {s} is not in 1..=5"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let run = ImageNetRun {
        val: val.to_path_buf(),
        labels: args.imagenet_labels.clone(),
        corrupted: match args.imagenet_c.as_deref() {
            None => CorruptedImages::None,
            Some("generate") => CorruptedImages::Generate { jpeg: true },
            Some(dir) => CorruptedImages::Released(dir.into()),
        },
        corruptions: Some(corruptions),
        severities: Some(severities),
        transform,
        images: preset.evaluation.images,
        batch_size: 64,
        workers: args.workers,
        seed: preset.evaluation.seed,
        bootstrap: preset.evaluation.bootstrap,
        frost_dir: args.step.frost_dir(),
    };
    let results = crate::cmd::imagenet::evaluate(model.as_ref(), &run, &device)?;
    let table = results.metric_table();
    tracing::info!(
        "{}: ImageNet top-1 {:.2} % ({} images){}",
        args.backbone,
        100.0 * table.clean,
        results.clean.images,
        results
            .mce
            .map(|m| format!(", mCE {:.1} %", 100.0 * m))
            .unwrap_or_default()
    );
    Ok(table)
}
