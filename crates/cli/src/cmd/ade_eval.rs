//! `rtb ade-eval`: mIoU / mAcc / aAcc of a folder of predicted label maps against ADE20K-style
//! ground truth, equal to mmsegmentation's IoUMetric.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use rtb_ade_eval::{EvalConfig, Metrics, class_names, evaluate_dirs, mmseg_round};

/// Arguments of `rtb ade-eval`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder of ground-truth PNGs (e.g. ADEChallengeData2016/annotations/validation); searched
    /// recursively.
    #[arg(long)]
    gt: PathBuf,
    /// Folder of predicted PNGs (8-bit class indices 0..num_classes−1), named like the ground
    /// truth (same relative paths).
    #[arg(long)]
    pred: PathBuf,
    /// Number of classes (ADE20K: 150; 150 also selects ADE20K's class names).
    #[arg(long, default_value_t = 150)]
    num_classes: usize,
    /// ADE20K's convention for the ground truth: 0 is ignored, k becomes class k − 1.
    #[arg(long)]
    reduce_zero_label: bool,
    /// Label value left out of every count.
    #[arg(long, default_value_t = 255)]
    ignore_index: u8,
    /// Also write the metrics as JSON (fractions in [0, 1], null for NaN).
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = EvalConfig::new(args.num_classes)
        .with_ignore_index(Some(args.ignore_index))
        .with_reduce_zero_label(args.reduce_zero_label);
    config.validate()?;
    let files = count_pngs(&args.gt);
    let bar = crate::progress::bar(files, "ade-eval");
    let evaluation = evaluate_dirs(&args.gt, &args.pred, config, &|| bar.inc(1))?;
    bar.finish_and_clear();
    if !evaluation.unmatched_predictions.is_empty() {
        tracing::warn!(
            "{} prediction(s) have no ground truth and were not evaluated, e.g. {}",
            evaluation.unmatched_predictions.len(),
            evaluation.unmatched_predictions[0].display()
        );
    }
    tracing::info!("evaluated {} label maps", evaluation.files);
    let metrics = evaluation.accumulator.metrics();
    let names = class_names(args.num_classes);
    print!("{}", table(&names, &metrics));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&json_report(&names, &metrics))?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The per-class table and the summary, as mmseg prints them (values are round(100·x, 2)).
fn table(names: &[String], metrics: &Metrics) -> String {
    let shown = |fraction: f64| {
        let value = mmseg_round(fraction);
        if value.is_nan() {
            "nan".to_string()
        } else {
            format!("{value:.2}")
        }
    };
    let width = names.iter().map(|n| n.len()).max().unwrap_or(5).max(5);
    let mut out = String::from("per class results:\n");
    out += &format!("{:<width$}  {:>7}  {:>7}\n", "Class", "IoU", "Acc");
    for (name, (&iou, &acc)) in names.iter().zip(metrics.iou.iter().zip(&metrics.acc)) {
        out += &format!("{name:<width$}  {:>7}  {:>7}\n", shown(iou), shown(acc));
    }
    out += "Summary:\n";
    out += &format!("{:>7}  {:>7}  {:>7}\n", "aAcc", "mIoU", "mAcc");
    out += &format!(
        "{:>7}  {:>7}  {:>7}\n",
        shown(metrics.a_acc),
        shown(metrics.m_iou),
        shown(metrics.m_acc)
    );
    out
}

fn json_report(names: &[String], metrics: &Metrics) -> serde_json::Value {
    let number = |value: f64| {
        if value.is_nan() {
            serde_json::Value::Null
        } else {
            serde_json::Value::from(value)
        }
    };
    let per_class: Vec<serde_json::Value> = names
        .iter()
        .zip(metrics.iou.iter().zip(&metrics.acc))
        .map(|(name, (&iou, &acc))| {
            serde_json::json!({"name": name, "iou": number(iou), "acc": number(acc)})
        })
        .collect();
    serde_json::json!({
        "aAcc": number(metrics.a_acc),
        "mIoU": number(metrics.m_iou),
        "mAcc": number(metrics.m_acc),
        "per_class": per_class,
    })
}

/// For the progress bar only; a folder that cannot be read shows an empty bar and the
/// evaluation reports the error.
fn count_pngs(root: &std::path::Path) -> u64 {
    let mut count = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("png"))
            {
                count += 1;
            }
        }
    }
    count
}
