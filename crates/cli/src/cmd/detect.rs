//! `rtb detect`: run a Mask R-CNN on every image of a folder and write one COCO results JSON
//! (boxes `[x, y, w, h]`, scores, category ids, masks as compressed RLE binarised at 0.5)
//! that `rtb coco-eval` and pycocotools read. The detector is either a trained run (`--run`:
//! an `rtb train coco` or `rtb cell` run's `config.json` and newest checkpoint) or a
//! checkpoint people already have (`--arch … --weights FILE`: torchvision's
//! `maskrcnn_resnet50_fpn` state dict or an mmdetection Mask R-CNN checkpoint, `.pth` or
//! safetensors; the flavor, class count and head widths are read from it). Inference is
//! mmdet's: keep-ratio resize to the test scale, normalise, pad to 32, detections and pasted
//! masks at the original size. An image's id is its file stem when that is a number (COCO's
//! `000000000139.jpg` is 139), else its 1-based position in name order.

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use candle_core::{DType, Device, Tensor};
use rtb_coco::{
    CocoConfig, CocoSplit, CocoTask, ImageInfo, Split, build_task, to_results, transforms,
};
use rtb_coco_eval::{CocoGt, DetectionResult, ResultsWriter};
use rtb_detection::image_batch::ImageBatch;
use rtb_detection::import::{detector_config, import_detector};
use rtb_detection::mask_rcnn::MaskRcnn;
use rtb_train::{Checkpointer, DeviceChoice, RunDir, TrainTask};

use super::weights::ArchArgs;

/// Arguments of `rtb detect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A trained run (config.json and checkpoints/ of `rtb train coco` or `rtb cell`).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["weights", "arch", "config"])]
    run: Option<PathBuf>,
    /// With `--weights`: the backbone, a registered architecture (`rtb arch list`).
    #[arg(long)]
    arch: Option<String>,
    /// With `--weights`: the backbone as an architecture config JSON (as `rtb weights
    /// import --config`).
    #[arg(long, value_name = "JSON", conflicts_with = "arch")]
    config: Option<PathBuf>,
    /// A Mask R-CNN checkpoint: torchvision's `maskrcnn_resnet50_fpn` state dict or an
    /// mmdetection checkpoint (.pth or safetensors), with `--arch` for its backbone.
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// With `--weights`: a COCO instances JSON whose categories, sorted by id, are the
    /// checkpoint's classes. Default: COCO 2017's 80 ids for an 80-class head, id = class + 1
    /// for torchvision's 90 (91 with background).
    #[arg(long, value_name = "JSON")]
    categories: Option<PathBuf>,
    /// With `--weights`: the test scale `LONG,SHORT` (mmdet's COCO: 1333,800).
    #[arg(long, value_delimiter = ',', default_values_t = [1333u32, 800])]
    scale: Vec<u32>,
    /// The folder of images (.jpg, .jpeg, .png; not recursive).
    #[arg(value_name = "IMAGES_DIR")]
    images: PathBuf,
    /// The COCO results JSON to write (written to a temporary name, then renamed).
    #[arg(long, value_name = "FILE")]
    output: PathBuf,
    /// cpu, cuda or cuda:N (default: the run's; the CPU for --weights).
    #[arg(long)]
    device: Option<DeviceChoice>,
}

/// COCO 2017's 80 category ids in order: the classes of mmdetection's COCO heads.
const COCO_80: [i64; 80] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90,
];

/// What runs the images: a trained run's task, or an imported checkpoint.
enum Detector {
    Run(Box<CocoTask>),
    Imported {
        model: Box<MaskRcnn>,
        cat_ids: Vec<i64>,
        device: Device,
    },
}

impl Detector {
    fn results(&self, batch: &ImageBatch, id: i64) -> anyhow::Result<Vec<DetectionResult>> {
        match self {
            Detector::Run(task) => Ok(task.results(batch, &[id])?),
            Detector::Imported {
                model,
                cat_ids,
                device,
            } => {
                let batch = ImageBatch {
                    tensor: batch.tensor.to_device(device)?,
                    ..batch.clone()
                };
                let detections = model.forward(&batch)?;
                let mut out = Vec::new();
                for det in &detections {
                    out.extend(to_results(det, id, cat_ids)?);
                }
                Ok(out)
            }
        }
    }
}

/// The trained run's task and its test scale.
fn from_run(
    run_dir: &Path,
    device: Option<DeviceChoice>,
) -> anyhow::Result<(Detector, (u32, u32))> {
    let run = RunDir::new(run_dir);
    let mut cfg: CocoConfig = run.read_config()?;
    if let Some(device) = device {
        cfg.device = device;
    }
    // The category ids come from the dataset the run was trained on.
    let split = CocoSplit::open(&cfg.data_dir, Split::Val)
        .with_context(|| format!("the categories of {}'s dataset", run_dir.display()))?;
    let mut task = build_task(&cfg, split.cat_ids().to_vec())?;
    let record = run
        .checkpointer()
        .latest()?
        .with_context(|| format!("{}: no checkpoint (train it first)", run_dir.display()))?;
    let device: Device = cfg.device.device()?;
    let checkpoint = Checkpointer::load(&record.path, &device)?;
    task.load_state_tensors(&checkpoint.model)?;
    Ok((Detector::Run(Box::new(task)), cfg.test.scale))
}

/// An imported torchvision or mmdetection checkpoint over `--arch`.
fn from_checkpoint(args: &Args, path: &Path) -> anyhow::Result<(Detector, (u32, u32))> {
    let arch = ArchArgs {
        arch: args.arch.clone(),
        config: args.config.clone(),
    }
    .resolve()?
    .with_num_classes(None)?;
    let file = rtb_models::weights::read_weights(path, None)?;
    let weights =
        import_detector(file.tensors).with_context(|| format!("importing {}", path.display()))?;
    let cfg = detector_config(&weights).with_context(|| path.display().to_string())?;
    let source = path.display().to_string();
    rtb_models::check_state_dict(&arch, &source, &weights.backbone)?;
    let cat_ids = match &args.categories {
        Some(json) => {
            let gt = CocoGt::from_path(json)?;
            let mut ids = gt.category_ids();
            ids.sort_unstable();
            ids
        }
        None if cfg.num_classes == COCO_80.len() => COCO_80.to_vec(),
        None => (1..=cfg.num_classes as i64).collect(),
    };
    if cat_ids.len() != cfg.num_classes {
        bail!(
            "{}: {} classes, but {} categories were given",
            path.display(),
            cfg.num_classes,
            cat_ids.len()
        );
    }
    let device: Device = args.device.unwrap_or_default().device()?;
    let backbone = arch.build(&weights.backbone_var_builder(DType::F32, &device))?;
    let model = MaskRcnn::new(
        &cfg,
        backbone,
        &weights.heads_var_builder(DType::F32, &device),
    )?;
    tracing::info!(
        "{}: {:?} Mask R-CNN, {} classes",
        path.display(),
        weights.flavor,
        cfg.num_classes
    );
    let scale = match args.scale[..] {
        [long, short] => (long, short),
        _ => bail!("--scale takes LONG,SHORT, got {:?}", args.scale),
    };
    Ok((
        Detector::Imported {
            model: Box::new(model),
            cat_ids,
            device,
        },
        scale,
    ))
}

fn image_id(path: &Path, position: usize) -> i64 {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(position as i64 + 1)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (detector, scale) = match (&args.run, &args.weights) {
        (Some(run), _) => from_run(run, args.device)?,
        (None, Some(weights)) => from_checkpoint(&args, weights)?,
        (None, None) => bail!("give --run RUN_DIR, or --arch NAME with --weights FILE"),
    };

    let images = super::images_in(&args.images)?;
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
        let (resized, _) =
            transforms::resize_image(&image, scale).with_context(|| path.display().to_string())?;
        let (w, h) = (resized.width() as usize, resized.height() as usize);
        let xs = Tensor::from_vec(transforms::normalize(&resized), (3, h, w), &Device::Cpu)?;
        let batch = ImageBatch::from_images(&[xs], 32)?
            .with_original_sizes(vec![(info.height as usize, info.width as usize)])?;
        for result in detector.results(&batch, id)? {
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
