//! Evaluating a folder of predictions against a folder of ground-truth PNGs, in parallel.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::io_error;
use crate::{AdeError, EvalConfig, IouAccumulator, read_label_png};

/// What [`evaluate_dirs`] found.
#[derive(Debug, Clone)]
pub struct DirEvaluation {
    /// The summed areas over every ground-truth file.
    pub accumulator: IouAccumulator,
    /// Number of ground-truth/prediction pairs evaluated.
    pub files: usize,
    /// Prediction PNGs with no ground truth of the same relative path (not evaluated).
    pub unmatched_predictions: Vec<PathBuf>,
}

/// Evaluates every `*.png` under `gt_dir` (recursively) against the PNG with the same
/// relative path under `pred_dir`. Ground truth holds stored values (reduce_zero_label is
/// applied if `config` says so); predictions hold class indices. Files are read and counted
/// in parallel (rayon); `on_file` is called once per finished pair (for progress bars).
///
/// Errors name the file: a missing prediction, a size mismatch, a non-8-bit PNG, a value out
/// of range. When several files are bad, the first one in sorted order is reported.
pub fn evaluate_dirs(
    gt_dir: &Path,
    pred_dir: &Path,
    config: EvalConfig,
    on_file: &(dyn Fn() + Sync),
) -> Result<DirEvaluation, AdeError> {
    config.validate()?;
    let gt_files = list_pngs(gt_dir)?;
    if gt_files.is_empty() {
        return Err(AdeError::Empty {
            path: gt_dir.to_path_buf(),
            what: ".png",
        });
    }
    for relative in &gt_files {
        let expected = pred_dir.join(relative);
        if !expected.is_file() {
            return Err(AdeError::Missing {
                path: gt_dir.join(relative),
                missing: "prediction",
                expected,
            });
        }
    }
    let empty = IouAccumulator::new(config)?;
    // Every thread keeps going after an error (so the reported one does not depend on
    // scheduling) but stops counting; the lowest-indexed error wins.
    let (accumulator, error) = gt_files
        .par_iter()
        .enumerate()
        .fold(
            || (empty.clone(), None::<(usize, AdeError)>),
            |(mut acc, error), (index, relative)| {
                let error = error.or_else(|| {
                    evaluate_pair(&mut acc, &gt_dir.join(relative), &pred_dir.join(relative))
                        .err()
                        .map(|err| (index, err))
                });
                on_file();
                (acc, error)
            },
        )
        .reduce(
            || (empty.clone(), None),
            |(mut left, left_error), (right, right_error)| {
                left.merge(&right)
                    .expect("accumulators built from one config merge");
                let error = match (left_error, right_error) {
                    (Some(l), Some(r)) => Some(if l.0 <= r.0 { l } else { r }),
                    (l, r) => l.or(r),
                };
                (left, error)
            },
        );
    if let Some((_, err)) = error {
        return Err(err);
    }
    let gt_set: std::collections::HashSet<&PathBuf> = gt_files.iter().collect();
    let unmatched_predictions = list_pngs(pred_dir)?
        .into_iter()
        .filter(|relative| !gt_set.contains(relative))
        .map(|relative| pred_dir.join(relative))
        .collect();
    Ok(DirEvaluation {
        accumulator,
        files: gt_files.len(),
        unmatched_predictions,
    })
}

/// Reads one ground-truth/prediction pair and adds it; errors name the file at fault.
pub fn evaluate_pair(
    acc: &mut IouAccumulator,
    gt_path: &Path,
    pred_path: &Path,
) -> Result<(), AdeError> {
    let label = read_label_png(gt_path)?;
    let pred = read_label_png(pred_path)?;
    if label.size() != pred.size() {
        return Err(AdeError::SizeMismatch {
            path: pred_path.to_path_buf(),
            width: pred.width(),
            height: pred.height(),
            other_path: gt_path.to_path_buf(),
            other_width: label.width(),
            other_height: label.height(),
        });
    }
    acc.add(label.data(), pred.data()).map_err(|err| {
        let path = match err {
            AdeError::PredictionOutOfRange { .. } => pred_path,
            _ => gt_path,
        };
        err.in_file(path)
    })
}

/// Relative paths of the `*.png` files under `root`, sorted.
fn list_pngs(root: &Path) -> Result<Vec<PathBuf>, AdeError> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io_error(&dir))? {
            let path = entry.map_err(io_error(&dir))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("png"))
            {
                let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
                found.push(relative);
            }
        }
    }
    found.sort();
    Ok(found)
}
