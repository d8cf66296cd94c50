//! Evaluates a folder of predictions against ADE20K annotations and prints mmseg's summary.
//!
//! `cargo run --release -p rtb-ade-eval --example ade_evaluate -- GT_DIR PRED_DIR`
//! (with no arguments it evaluates one of the crate's golden fixtures).
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use rtb_ade_eval::{ADE20K_CLASSES, EvalConfig, evaluate_dirs, mmseg_round};

fn main() -> Result<(), rtb_ade_eval::AdeError> {
    let mut args = std::env::args().skip(1).map(PathBuf::from);
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cases/blocky_ade_reduce");
    let gt = args.next().unwrap_or_else(|| fixture.join("gt"));
    let pred = args.next().unwrap_or_else(|| fixture.join("pred"));
    let evaluation = evaluate_dirs(&gt, &pred, EvalConfig::ade20k(), &|| {})?;
    let metrics = evaluation.accumulator.metrics();
    for (name, iou) in ADE20K_CLASSES
        .iter()
        .zip(&metrics.iou)
        .filter(|(_, iou)| !iou.is_nan())
        .take(5)
    {
        println!("{name:>12}: IoU {:.2}", mmseg_round(*iou));
    }
    println!(
        "{} images: aAcc {:.2}  mIoU {:.2}  mAcc {:.2}",
        evaluation.files,
        mmseg_round(metrics.a_acc),
        mmseg_round(metrics.m_iou),
        mmseg_round(metrics.m_acc)
    );
    Ok(())
}
