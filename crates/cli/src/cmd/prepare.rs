//! `rtb prepare`: the data step of a preset. Synthetic presets get the shapes world's source
//! task and CIFAR-format export (and its ADE20K layout when the preset has an ade20k task), the corrupted source validation sets and CIFAR-10-C (both
//! cached, so every backbone and cell evaluates on the same bytes); real-data presets
//! download their datasets with checksums and unpack zip archives beside them
//! (`<data>/<name>/<archive stem>/`). A marker file written last says the step is done.

use std::process::ExitCode;

use anyhow::Context;
use rtb_corruption::Corruption;
use rtb_study::{DataSpec, weights::DatasetsManifest};

use crate::study::{LogObserver, StepArgs, source_c_spec, synth_config, synthetic_cifar_dir};

/// Arguments of `rtb prepare`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    step: StepArgs,
    /// The datasets manifest (real-data presets).
    #[arg(long, default_value = "presets/datasets.toml")]
    datasets: std::path::PathBuf,
    /// Use dataset entries whose checksums are marked unverified.
    #[arg(long)]
    allow_unverified: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (preset, layout) = args.step.load()?;
    let started = std::time::Instant::now();
    match &preset.data {
        DataSpec::Synthetic(spec) => {
            let data = &layout.data;
            let config = synth_config(spec);
            let source = rtb_synth::write_source(&config, &data.join("source"))?;
            tracing::info!(
                "source task: {} + {} images of {}²",
                spec.source_train,
                spec.source_val,
                spec.source_size
            );
            let cifar_dir = synthetic_cifar_dir(data);
            rtb_synth::write_cifar(&config, &cifar_dir)?;
            tracing::info!(
                "CIFAR-format export: {} + {} images",
                spec.cifar_train,
                spec.cifar_test
            );
            if preset.task(rtb_results::Task::Ade20k).is_ok() {
                let ade_dir = crate::tasks::data_dir(rtb_results::Task::Ade20k, &preset.data, data);
                rtb_synth::write_ade(&config, &ade_dir)?;
                tracing::info!(
                    "ADE20K-layout export: {} + {} scenes of {}²",
                    spec.ade_train,
                    spec.ade_val,
                    spec.ade_size
                );
            }
            if preset.task(rtb_results::Task::Coco).is_ok() {
                let coco_dir = crate::tasks::data_dir(rtb_results::Task::Coco, &preset.data, data);
                let summary = rtb_synth::write_coco(&config, &coco_dir)?;
                tracing::info!(
                    "COCO export: {} + {} scenes of {}², {} + {} annotations",
                    spec.coco_train,
                    spec.coco_val,
                    spec.coco_size,
                    summary.annotations.0,
                    summary.annotations.1
                );
            }
            let frost = args.step.frost_dir();
            let val = rtb_pretrain::Images::read(&source.val)?;
            let bar = crate::progress::bar(0, "source-C");
            rtb_pretrain::generate_source_c(
                &val,
                &data.join("source-c"),
                &source_c_spec(&preset)?,
                frost.as_deref(),
                &mut |done, total| {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                },
            )?;
            bar.finish_and_clear();
            if preset.task(rtb_results::Task::Cifar10).is_ok() {
                let corruptions = preset
                    .corruptions()
                    .iter()
                    .map(|name| name.parse::<Corruption>())
                    .collect::<Result<Vec<_>, _>>()?;
                let (_, test) = rtb_cifar::Cifar10::load_test(&cifar_dir)?;
                rtb_cifar::cifar_c::generate(
                    &test,
                    &cifar_dir.join(format!("rtb-cifar-10-c-seed{}", preset.evaluation.seed)),
                    &rtb_cifar::GenerateOptions {
                        corruptions,
                        seed: preset.evaluation.seed,
                        frost_dir: frost,
                        workers: 2,
                    },
                    &mut LogObserver::default(),
                )?;
            }
        }
        DataSpec::Download { datasets } => {
            let manifest = DatasetsManifest::load(&args.datasets)?;
            for name in datasets {
                let entry = manifest.get(name)?;
                if !entry.verified && !args.allow_unverified {
                    anyhow::bail!(
                        "dataset {name:?} in {} is marked unverified (its checksums were not \
                         checked): pass --allow-unverified to download it anyway",
                        args.datasets.display()
                    );
                }
                let dir = layout.data.join(name);
                if name == "cifar10" {
                    let file = entry.files.first().context("cifar10 lists no file")?;
                    let sha256 = file
                        .sha256
                        .clone()
                        .context("cifar10's archive has no sha256 to check the download")?;
                    let bar = crate::progress::bytes(None, "cifar10");
                    let batches = rtb_cifar::download(
                        &rtb_cifar::ArchiveSource {
                            url: file.url.clone(),
                            sha256,
                        },
                        &dir,
                        &mut |p| {
                            if let Some(total) = p.total {
                                bar.set_length(total);
                            }
                            bar.set_position(p.done);
                        },
                    )?;
                    bar.finish_and_clear();
                    tracing::info!("CIFAR-10 in {}", batches.display());
                } else {
                    let fetcher = rtb_fetch::Fetcher::new();
                    for file in &entry.files {
                        let sha256 = file.sha256.as_deref().with_context(|| {
                            format!("{name}: {} has no sha256 to check the download", file.file)
                        })?;
                        let bar = crate::progress::bytes(file.bytes, &file.file);
                        fetcher.fetch(&file.url, sha256, &dir.join(&file.file), &mut |p| {
                            if let Some(total) = p.total {
                                bar.set_length(total);
                            }
                            bar.set_position(p.done);
                        })?;
                        bar.finish_and_clear();
                        // Zip archives are unpacked beside themselves, into a folder named
                        // after the archive that appears only once complete.
                        if let Some(stem) = file.file.strip_suffix(".zip") {
                            let bar = crate::progress::bar(0, &format!("unpacking {}", file.file));
                            let files = rtb_fetch::extract_zip(
                                &dir.join(&file.file),
                                &dir.join(stem),
                                &mut |done, total| {
                                    bar.set_length(total as u64);
                                    bar.set_position(done as u64);
                                },
                            )?;
                            bar.finish_and_clear();
                            if files > 0 {
                                tracing::info!("{}: {files} files unpacked", file.file);
                            }
                        }
                    }
                    tracing::info!("{name}: {} file(s) in {}", entry.files.len(), dir.display());
                }
            }
        }
    }
    let marker = layout.data_marker();
    let text = serde_json::to_string_pretty(&serde_json::json!({
        "preset": preset.name,
        "data": preset.data,
    }))?;
    rtb_train::write_atomically(&marker, text.as_bytes())?;
    tracing::info!(
        "data of preset {} ready in {} ({:.1} s)",
        preset.name,
        layout.data.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
