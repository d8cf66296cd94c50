//! The ADE20K cell behind the study's task interface: [`AdeCell`] turns a resolved
//! [`CellSpec`] into an [`AdeConfig`], trains and evaluates it into `metrics.json`.
//!
//! The task's `image_size` is the training crop (512 in mmseg's configs); the train
//! pipeline's base scale and the test scale default to `(4 × image_size, image_size)`, mmseg's
//! (2048, 512) at 512. Options: `scale` and `test_scale` (`[long, short]`), `photometric`
//! (bool, default true), `channels` and `auxiliary_channels` (head widths, default 512 and
//! 256), `num_classes` (default: the lines of `<data>/classes.txt` if it exists, else
//! ADE20K's 150), `eval_batch_size` (default 1).

use rtb_models::ArchConfig;
use rtb_results::{CellMetrics, Task};
use rtb_segmentation::UperNetConfig;
use rtb_train::{CellError, CellOptions, CellSpec, CellTask, CostQuery, HeadMacs, Observer};

use crate::config::{AdeConfig, AdeEvalConfig};
use crate::error::AdeTaskError;
use crate::pipeline::{evaluate, train};

/// The options an ADE20K cell takes in a preset's `options` table.
pub const CELL_OPTIONS: [&str; 7] = [
    "scale",
    "test_scale",
    "photometric",
    "channels",
    "auxiliary_channels",
    "num_classes",
    "eval_batch_size",
];

/// The ADE20K task's cell runner.
#[derive(Debug, Clone, Copy, Default)]
pub struct AdeCell;

/// The class count of a dataset root: the lines of `classes.txt` (the shapes world's export)
/// or ADE20K's 150.
pub fn dataset_classes(root: &std::path::Path) -> Result<usize, AdeTaskError> {
    let path = root.join("classes.txt");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.lines().filter(|l| !l.trim().is_empty()).count()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            Ok(rtb_ade_eval::ADE20K_CLASSES.len())
        }
        Err(source) => Err(AdeTaskError::Io { path, source }),
    }
}

/// The [`AdeConfig`] of a cell (options as the module documents; other keys are errors).
pub fn config_from_cell(spec: &CellSpec) -> Result<AdeConfig, CellError> {
    spec.check_options(Task::Ade20k, &CELL_OPTIONS)?;
    let arch: ArchConfig = serde_json::from_value(spec.arch.clone())
        .map_err(|err| format!("not an rtb-models architecture config: {err}"))?;
    let num_classes = match spec.option::<usize>("num_classes")? {
        Some(n) => n,
        None => dataset_classes(&spec.data_dir)?,
    };
    let mut cfg = AdeConfig::new(
        arch,
        &spec.backbone,
        spec.weights.clone(),
        spec.regime,
        spec.data_dir.clone(),
        num_classes,
    );
    let side = u32::try_from(spec.image_size).map_err(|_| "image_size is too large")?;
    let default_scale = (4 * side, side);
    cfg.preset = spec.preset.clone();
    cfg.train.crop_size = (side, side);
    cfg.train.scale = spec.option("scale")?.unwrap_or(default_scale);
    cfg.test.scale = spec.option("test_scale")?.unwrap_or(default_scale);
    if spec.bool_option("photometric")? == Some(false) {
        cfg.train.photometric = None;
    }
    cfg.model = heads_from_options(spec.options(), num_classes)?;
    cfg.batch_size = spec.batch_size;
    cfg.workers = spec.workers;
    cfg.seed = spec.seed;
    cfg.device = spec.device;
    cfg.precision = spec.precision;
    cfg.engine = spec.engine.clone();
    cfg.eval = AdeEvalConfig {
        corruptions: spec.eval.corruptions.clone(),
        severities: spec.eval.severities.clone(),
        seed: spec.eval.seed,
        images: spec.eval.images,
        frost_dir: spec.eval.frost_dir.clone(),
        batch_size: spec.option("eval_batch_size")?.unwrap_or(1),
        bootstrap: spec.eval.bootstrap,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// mmseg's ADE20K UperNet for `num_classes` classes with the options' head widths
/// (`channels`, `auxiliary_channels`).
fn heads_from_options(
    options: CellOptions<'_>,
    num_classes: usize,
) -> Result<UperNetConfig, CellError> {
    let mut model = UperNetConfig::ade20k().with_num_classes(num_classes);
    if let Some(channels) = options.get::<usize>("channels")? {
        model.channels = channels;
    }
    if let (Some(channels), Some(aux)) = (
        options.get::<usize>("auxiliary_channels")?,
        model.auxiliary.as_mut(),
    ) {
        aux.channels = channels;
    }
    Ok(model)
}

impl CellTask for AdeCell {
    fn task(&self) -> Task {
        Task::Ade20k
    }

    fn run(&self, spec: &CellSpec, observer: &mut dyn Observer) -> Result<CellMetrics, CellError> {
        let cfg = config_from_cell(spec)?;
        train(&cfg, &spec.run_dir, observer)?;
        Ok(evaluate(&spec.run_dir, None, observer)?)
    }

    /// UperNet's decode and auxiliary heads on an `image_size²` image (the training crop; a
    /// square image at the test scale), in training and evaluation alike: inference runs
    /// the auxiliary head too.
    fn head_macs(&self, query: &CostQuery) -> Result<HeadMacs, CellError> {
        let options = CellOptions(&query.options);
        options.check(Task::Ade20k, &CELL_OPTIONS)?;
        let backbone = ArchConfig::from_json(query.arch.clone())?.build_for_shapes()?;
        let num_classes = match options.get::<usize>("num_classes")? {
            Some(n) => n,
            None => query
                .num_classes
                .unwrap_or(rtb_ade_eval::ADE20K_CLASSES.len()),
        };
        let model = heads_from_options(options, num_classes)?;
        let side = query.image_size;
        let macs = model
            .head_macs(&backbone.out_channels(), &backbone.strides(), (side, side))
            .total();
        Ok(HeadMacs {
            train: macs,
            eval: macs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cell's heads are the options' widths over the backbone's C2..C5: resnet_tiny
    /// (C2..C5 of 16, 32, 32, 64 at strides 4..32) under 16 / 8-channel heads on 64² is
    /// what rtb-segmentation counts for those shapes, and the class count comes from the
    /// options first, then the query, then ADE20K's 150.
    #[test]
    fn head_macs_follow_the_options() {
        let arch = ArchConfig::from_name("resnet_tiny").unwrap();
        let mut query = CostQuery {
            arch: serde_json::to_value(&arch).unwrap(),
            image_size: 64,
            options: serde_json::json!({"channels": 16, "auxiliary_channels": 8})
                .as_object()
                .cloned()
                .unwrap(),
            num_classes: Some(5),
        };
        let heads = UperNetConfig::tiny();
        let want = heads
            .head_macs(&[16, 32, 32, 64], &[4, 8, 16, 32], (64, 64))
            .total();
        assert_eq!(
            AdeCell.head_macs(&query).unwrap(),
            HeadMacs {
                train: want,
                eval: want
            }
        );
        query.num_classes = None;
        let ade = heads
            .with_num_classes(150)
            .head_macs(&[16, 32, 32, 64], &[4, 8, 16, 32], (64, 64))
            .total();
        assert_eq!(AdeCell.head_macs(&query).unwrap().eval, ade);
        query
            .options
            .insert("num_classes".into(), serde_json::json!(5));
        assert_eq!(AdeCell.head_macs(&query).unwrap().eval, want);
        query
            .options
            .insert("augment".into(), serde_json::json!(true));
        let err = AdeCell.head_macs(&query).unwrap_err().to_string();
        assert!(err.contains("\"augment\""), "{err}");
    }
}
