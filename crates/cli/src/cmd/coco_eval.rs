//! `rtb coco-eval`: COCO box or mask AP of a results file against an instances file, equal to
//! pycocotools 2.0.11 (the same 12 numbers, printed in the same 12 lines).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use rtb_coco_eval::{CocoEval, CocoGt, Detections, EvalReport, IouType, Params};

/// Arguments of `rtb coco-eval`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Ground truth: a COCO instances JSON file (e.g. instances_val2017.json).
    #[arg(long, value_name = "GT.json")]
    gt: PathBuf,
    /// Detections: a COCO results JSON file (a list of {image_id, category_id, score, bbox
    /// and/or segmentation}).
    #[arg(long, value_name = "DT.json")]
    dt: PathBuf,
    /// Compare boxes (bbox) or masks (segm).
    #[arg(long, default_value = "bbox", value_parser = parse_iou_type)]
    iou_type: IouType,
    /// Also write the stats as JSON: {"iou_type", "stats" (12 numbers), "lines", ...}.
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

fn parse_iou_type(text: &str) -> Result<IouType, String> {
    text.parse()
}

/// The names of pycocotools' 12 stats, in order.
const STAT_NAMES: [&str; 12] = [
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
];

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(threads) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .context("cannot start the worker threads")?;
    }
    let started = Instant::now();
    let gt = CocoGt::from_path(&args.gt)?;
    tracing::info!(
        "loaded {} ({} images, {} annotations, {} categories) in {:.2}s",
        args.gt.display(),
        gt.images().len(),
        gt.annotations().len(),
        gt.categories().len(),
        started.elapsed().as_secs_f64()
    );
    let loaded = Instant::now();
    let dt = Detections::from_path(&args.dt, &gt)?;
    tracing::info!(
        "loaded {} ({} results) in {:.2}s",
        args.dt.display(),
        dt.len(),
        loaded.elapsed().as_secs_f64()
    );
    let evaluating = Instant::now();
    let report = CocoEval::new(&gt, &dt, Params::new(args.iou_type)).run()?;
    tracing::info!(
        "evaluated {} in {:.2}s ({:.2}s in all)",
        args.iou_type,
        evaluating.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    for warning in &report.warnings {
        tracing::warn!("{warning}");
    }
    print!("{}", report.summary);
    if let Some(path) = &args.json {
        write_json(path, &args, &gt, &dt, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write_json(
    path: &Path,
    args: &Args,
    gt: &CocoGt,
    dt: &Detections,
    report: &EvalReport,
) -> anyhow::Result<()> {
    let stats = report.summary.stats;
    let named: serde_json::Map<String, serde_json::Value> = STAT_NAMES
        .iter()
        .zip(stats)
        .map(|(name, value)| (name.to_string(), serde_json::Value::from(value)))
        .collect();
    let value = serde_json::json!({
        "iou_type": args.iou_type.as_str(),
        "stats": stats.to_vec(),
        "named": named,
        "lines": report.summary.lines(),
        "gt": args.gt.display().to_string(),
        "dt": args.dt.display().to_string(),
        "images": gt.images().len(),
        "annotations": gt.annotations().len(),
        "detections": dt.len(),
        "warnings": report.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "reference": "pycocotools 2.0.11",
    });
    let text = serde_json::to_string_pretty(&value)? + "\n";
    // Written next to the target and renamed, so a partial file is never left under its name.
    let mut partial = path.as_os_str().to_owned();
    partial.push(".part");
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, text)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
