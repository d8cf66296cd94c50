//! The COCO cell behind the study's task interface: [`CocoCell`] turns a resolved
//! [`CellSpec`] into a [`CocoConfig`], trains and evaluates it into `metrics.json`.
//!
//! The task's `image_size` is the short edge of the train and test scales, the long edge
//! 1333 / 800 of it (mmdet's (1333, 800) at 800). The engine comes from the preset (a
//! family's table for Swin's AdamW); a short schedule is already applied by the CLI.
//! Options: `scale` and `test_scale` (`[long, short]`), `flip_ratio` (default 0.5),
//! `fpn_channels`, `box_representation`, `mask_conv_channels`, `rpn_samples`,
//! `roi_samples` (detector sizes, mmdet's by default), `accumulate` (micro-batches per step,
//! default 1), `group_aspect_ratio` (default true), `eval_batch_size` (default 1),
//! `keep_results` (a COCO results JSON per condition in `<run>/results/`, default false).

use rtb_models::ArchConfig;
use rtb_results::{CellMetrics, Task};
use rtb_train::{CellError, CellSpec, CellTask, Observer};

use crate::config::{CocoConfig, CocoEvalConfig};
use crate::dataset::{CocoSplit, Split};
use crate::pipeline::{evaluate, train};

/// The options a COCO cell takes in a preset's `options` table.
pub const CELL_OPTIONS: [&str; 12] = [
    "scale",
    "test_scale",
    "flip_ratio",
    "fpn_channels",
    "box_representation",
    "mask_conv_channels",
    "rpn_samples",
    "roi_samples",
    "accumulate",
    "group_aspect_ratio",
    "eval_batch_size",
    "keep_results",
];

/// The COCO task's cell runner.
#[derive(Debug, Clone, Copy, Default)]
pub struct CocoCell;

/// mmdet's (1333, 800) scaled to a short edge of `side`.
pub fn default_scale(side: u32) -> (u32, u32) {
    (((u64::from(side) * 1333).div_ceil(800)) as u32, side)
}

/// The [`CocoConfig`] of a cell (options as the module documents; other keys are errors).
pub fn config_from_cell(spec: &CellSpec) -> Result<CocoConfig, CellError> {
    spec.check_options(Task::Coco, &CELL_OPTIONS)?;
    let arch: ArchConfig = serde_json::from_value(spec.arch.clone())
        .map_err(|err| format!("not an rtb-models architecture config: {err}"))?;
    // The class count is the instances file's (80 for COCO, K for the shapes world).
    let split = CocoSplit::open(&spec.data_dir, Split::Train)?;
    let mut cfg = CocoConfig::new(
        arch,
        &spec.backbone,
        spec.weights.clone(),
        spec.regime,
        spec.data_dir.clone(),
        split.cat_ids().len(),
    );
    let side = u32::try_from(spec.image_size).map_err(|_| "image_size is too large")?;
    cfg.preset = spec.preset.clone();
    cfg.train.scale = spec.option("scale")?.unwrap_or(default_scale(side));
    cfg.test.scale = spec.option("test_scale")?.unwrap_or(default_scale(side));
    if let Some(ratio) = spec.option::<f64>("flip_ratio")? {
        cfg.train.flip_ratio = ratio;
    }
    let model = &mut cfg.model;
    for (key, slot) in [
        ("fpn_channels", &mut model.fpn_channels),
        ("box_representation", &mut model.box_representation),
        ("mask_conv_channels", &mut model.mask_conv_channels),
        ("rpn_samples", &mut model.rpn_samples),
        ("roi_samples", &mut model.roi_samples),
    ] {
        if let Some(v) = spec.option::<usize>(key)? {
            *slot = v;
        }
    }
    cfg.accumulate = spec.option("accumulate")?.unwrap_or(1);
    if let Some(group) = spec.bool_option("group_aspect_ratio")? {
        cfg.group_aspect_ratio = group;
    }
    cfg.batch_size = spec.batch_size;
    cfg.workers = spec.workers;
    cfg.seed = spec.seed;
    cfg.device = spec.device;
    cfg.engine = spec.engine.clone();
    cfg.eval = CocoEvalConfig {
        corruptions: spec.eval.corruptions.clone(),
        severities: spec.eval.severities.clone(),
        seed: spec.eval.seed,
        images: spec.eval.images,
        frost_dir: spec.eval.frost_dir.clone(),
        batch_size: spec.option("eval_batch_size")?.unwrap_or(1),
        bootstrap: spec.eval.bootstrap,
        keep_results: spec.bool_option("keep_results")?.unwrap_or(false),
    };
    cfg.validate()?;
    Ok(cfg)
}

impl CellTask for CocoCell {
    fn task(&self) -> Task {
        Task::Coco
    }

    fn run(&self, spec: &CellSpec, observer: &mut dyn Observer) -> Result<CellMetrics, CellError> {
        let cfg = config_from_cell(spec)?;
        train(&cfg, &spec.run_dir, observer)?;
        Ok(evaluate(&spec.run_dir, None, observer)?)
    }
}
