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
use rtb_train::{CellError, CellOptions, CellSpec, CellTask, CostQuery, HeadMacs, Observer};

use crate::config::{CocoConfig, CocoEvalConfig, DetectorConfig};
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
    cfg.model = detector_from_options(spec.options(), cfg.model.num_classes)?;
    cfg.accumulate = spec.option("accumulate")?.unwrap_or(1);
    if let Some(group) = spec.bool_option("group_aspect_ratio")? {
        cfg.group_aspect_ratio = group;
    }
    cfg.batch_size = spec.batch_size;
    cfg.workers = spec.workers;
    cfg.seed = spec.seed;
    cfg.device = spec.device;
    cfg.precision = spec.precision;
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

/// mmdet's Mask R-CNN R50-FPN sizes for `num_classes` classes with the options' widths and
/// sample counts.
fn detector_from_options(
    options: CellOptions<'_>,
    num_classes: usize,
) -> Result<DetectorConfig, CellError> {
    let mut model = DetectorConfig::mask_rcnn(num_classes);
    for (key, slot) in [
        ("fpn_channels", &mut model.fpn_channels),
        ("box_representation", &mut model.box_representation),
        ("mask_conv_channels", &mut model.mask_conv_channels),
        ("rpn_samples", &mut model.rpn_samples),
        ("roi_samples", &mut model.roi_samples),
    ] {
        if let Some(v) = options.get::<usize>(key)? {
            *slot = v;
        }
    }
    Ok(model)
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

    /// Mask R-CNN's FPN, RPN and RoI heads on an `image_size²` image (the scales' short
    /// edge; COCO's images are wider, which the backbone's count does not see either), with
    /// rtb-detection's bounds on the RoIs: the sampled ones and their positives in training,
    /// every kept proposal and 100 detections in evaluation.
    fn head_macs(&self, query: &CostQuery) -> Result<HeadMacs, CellError> {
        let options = CellOptions(&query.options);
        options.check(Task::Coco, &CELL_OPTIONS)?;
        let backbone = ArchConfig::from_json(query.arch.clone())?.build_for_shapes()?;
        let model = detector_from_options(options, query.num_classes.unwrap_or(80))?;
        let detector = model.to_mask_rcnn()?;
        let side = query.image_size;
        let macs = detector.head_macs(&backbone.out_channels(), &backbone.strides(), (side, side));
        Ok(HeadMacs {
            train: macs.train(),
            eval: macs.test(),
        })
    }
}

#[cfg(test)]
mod tests {
    use rtb_detection::Flavor;
    use rtb_detection::mask_rcnn::MaskRcnnConfig;

    use super::*;

    /// The cell's detector is the options' widths and samples over the backbone's C2..C5:
    /// resnet_tiny (16, 32, 32, 64 at strides 4..32) under the mini preset's slim heads is
    /// what rtb-detection counts for those shapes; COCO's 80 classes without a count.
    #[test]
    fn head_macs_follow_the_options() {
        let arch = ArchConfig::from_name("resnet_tiny").unwrap();
        let mut query = CostQuery {
            arch: serde_json::to_value(&arch).unwrap(),
            image_size: 128,
            options: serde_json::json!({
                "fpn_channels": 32, "box_representation": 64, "mask_conv_channels": 16,
                "rpn_samples": 128, "roi_samples": 128
            })
            .as_object()
            .cloned()
            .unwrap(),
            num_classes: Some(4),
        };
        let count = |classes: usize| {
            let mut cfg = MaskRcnnConfig::new(Flavor::Mmdet, classes).with_widths(32, 64, 16);
            cfg.roi_sampler.num = 128;
            cfg.head_macs(&[16, 32, 32, 64], &[4, 8, 16, 32], (128, 128))
        };
        let macs = CocoCell.head_macs(&query).unwrap();
        assert_eq!(
            macs,
            HeadMacs {
                train: count(4).train(),
                eval: count(4).test()
            }
        );
        query.num_classes = None;
        assert_eq!(CocoCell.head_macs(&query).unwrap().eval, count(80).test());
        query
            .options
            .insert("channels".into(), serde_json::json!(8));
        let err = CocoCell.head_macs(&query).unwrap_err().to_string();
        assert!(err.contains("\"channels\""), "{err}");
    }
}
