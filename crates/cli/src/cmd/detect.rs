//! `rtb detect`: run a trained Mask R-CNN (an `rtb train coco` or `rtb cell` run: its
//! `config.json` and newest checkpoint) on every image of a folder and write one COCO results
//! JSON (boxes `[x, y, w, h]`, scores, category ids, masks as compressed RLE binarised at
//! 0.5) that `rtb coco-eval` and pycocotools read. Inference is mmdet's: keep-ratio resize to
//! the run's test scale, normalise, pad to 32, detections and pasted masks at the original
//! size. An image's id is its file stem when that is a number (COCO's `000000000139.jpg` is
//! 139), else its 1-based position in name order.

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use candle_core::{Device, Tensor};
use rtb_coco::{CocoConfig, CocoSplit, ImageInfo, Split, build_task, transforms};
use rtb_coco_eval::ResultsWriter;
use rtb_detection::image_batch::ImageBatch;
use rtb_train::{Checkpointer, DeviceChoice, RunDir, TrainTask};

/// Arguments of `rtb detect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The trained run (config.json and checkpoints/ of `rtb train coco` or `rtb cell`).
    #[arg(long, value_name = "RUN_DIR")]
    run: PathBuf,
    /// The folder of images (.jpg, .jpeg, .png; not recursive).
    #[arg(value_name = "IMAGES_DIR")]
    images: PathBuf,
    /// The COCO results JSON to write (written to a temporary name, then renamed).
    #[arg(long, value_name = "FILE")]
    output: PathBuf,
    /// cpu, cuda or cuda:N (default: the run's).
    #[arg(long)]
    device: Option<DeviceChoice>,
}

fn images_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        })
        .collect();
    out.sort();
    if out.is_empty() {
        bail!("{}: no .jpg, .jpeg or .png images", dir.display());
    }
    Ok(out)
}

fn image_id(path: &Path, position: usize) -> i64 {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(position as i64 + 1)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let run = RunDir::new(&args.run);
    let mut cfg: CocoConfig = run.read_config()?;
    if let Some(device) = args.device {
        cfg.device = device;
    }
    // The category ids come from the dataset the run was trained on.
    let split = CocoSplit::open(&cfg.data_dir, Split::Val)
        .with_context(|| format!("the categories of {}'s dataset", args.run.display()))?;
    let mut task = build_task(&cfg, split.cat_ids().to_vec())?;
    let record = run
        .checkpointer()
        .latest()?
        .with_context(|| format!("{}: no checkpoint (train it first)", args.run.display()))?;
    let device: Device = cfg.device.device()?;
    let checkpoint = Checkpointer::load(&record.path, &device)?;
    task.load_state_tensors(&checkpoint.model)?;

    let images = images_in(&args.images)?;
    let mut temporary = args.output.as_os_str().to_owned();
    temporary.push(".part");
    let temporary = PathBuf::from(temporary);
    let file = std::fs::File::create(&temporary)
        .with_context(|| format!("creating {}", temporary.display()))?;
    let mut writer = ResultsWriter::new(BufWriter::new(file))?;
    let bar = crate::progress::bar(images.len() as u64, "detecting");
    let mut seen = std::collections::HashSet::new();
    for (position, path) in images.iter().enumerate() {
        let id = image_id(path, position);
        if !seen.insert(id) {
            bail!(
                "{}: image id {id} is taken by another image",
                path.display()
            );
        }
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let image = rtb_corruption::decode_rgb(&bytes)
            .map_err(|message| anyhow::anyhow!("{}: cannot decode: {message}", path.display()))?;
        let info = ImageInfo {
            id,
            file_name: String::new(),
            width: image.width(),
            height: image.height(),
        };
        let (resized, _) = transforms::resize_image(&image, cfg.test.scale)
            .with_context(|| path.display().to_string())?;
        let (w, h) = (resized.width() as usize, resized.height() as usize);
        let xs = Tensor::from_vec(transforms::normalize(&resized), (3, h, w), &Device::Cpu)?;
        let batch = ImageBatch::from_images(&[xs], 32)?
            .with_original_sizes(vec![(info.height as usize, info.width as usize)])?;
        for result in task.results(&batch, &[id])? {
            writer.write(&result)?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let written = writer.written();
    let buffered = writer.finish()?;
    let file = buffered
        .into_inner()
        .map_err(|err| anyhow::anyhow!("writing {}: {}", temporary.display(), err.error()))?;
    file.sync_all()?;
    std::fs::rename(&temporary, &args.output)
        .with_context(|| format!("renaming {}", temporary.display()))?;
    tracing::info!(
        "{written} detections on {} images in {}",
        images.len(),
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
