//! The CIFAR-10 cell behind the study's task interface: [`CifarCell`] turns a resolved
//! [`CellSpec`] into a [`CifarConfig`] (options `augment` and `cache_features`), trains and
//! evaluates it into `metrics.json`.

use rtb_models::ArchConfig;
use rtb_results::{CellMetrics, Task};
use rtb_train::{CellError, CellSpec, CellTask, CostQuery, HeadMacs, Observer};

use crate::config::CifarConfig;
use crate::pipeline::{EvalOverrides, evaluate, train};

/// The options a CIFAR-10 cell takes in a preset's `options` table.
pub const CELL_OPTIONS: [&str; 2] = ["augment", "cache_features"];

/// The CIFAR-10 task's cell runner.
#[derive(Debug, Clone, Copy, Default)]
pub struct CifarCell;

/// The [`CifarConfig`] of a cell: `spec`'s architecture, weights, data folder, sizes, seed,
/// engine and evaluation, with the options `augment` and `cache_features` (other keys are
/// errors).
pub fn config_from_cell(spec: &CellSpec) -> Result<CifarConfig, CellError> {
    spec.check_options(Task::Cifar10, &CELL_OPTIONS)?;
    let arch: ArchConfig = serde_json::from_value(spec.arch.clone())
        .map_err(|err| format!("not an rtb-models architecture config: {err}"))?;
    let mut cfg = CifarConfig::new(
        arch,
        &spec.backbone,
        spec.weights.clone(),
        spec.regime,
        spec.data_dir.clone(),
    );
    cfg.preset = spec.preset.clone();
    cfg.image_size = spec.image_size;
    cfg.batch_size = spec.batch_size;
    cfg.workers = spec.workers;
    cfg.seed = spec.seed;
    cfg.device = spec.device;
    cfg.precision = spec.precision;
    cfg.engine = spec.engine.clone();
    if let Some(augment) = spec.bool_option("augment")? {
        cfg.augment = augment;
    }
    if let Some(cache) = spec.bool_option("cache_features")? {
        cfg.cache_features = cache;
    }
    cfg.eval.corruptions = spec.eval.corruptions.clone();
    cfg.eval.severities = spec.eval.severities.clone();
    cfg.eval.seed = spec.eval.seed;
    cfg.eval.bootstrap = spec.eval.bootstrap;
    cfg.eval.frost_dir = spec.eval.frost_dir.clone();
    cfg.validate()?;
    Ok(cfg)
}

impl CellTask for CifarCell {
    fn task(&self) -> Task {
        Task::Cifar10
    }

    fn run(&self, spec: &CellSpec, observer: &mut dyn Observer) -> Result<CellMetrics, CellError> {
        let cfg = config_from_cell(spec)?;
        train(&cfg, &spec.run_dir, observer)?;
        Ok(evaluate(
            &spec.run_dir,
            &EvalOverrides::default(),
            observer,
        )?)
    }

    /// The linear classifier over the pooled features (`features × classes`), in training
    /// and evaluation alike.
    fn head_macs(&self, query: &CostQuery) -> Result<HeadMacs, CellError> {
        rtb_train::CellOptions(&query.options).check(Task::Cifar10, &CELL_OPTIONS)?;
        let backbone = ArchConfig::from_json(query.arch.clone())?.build_for_shapes()?;
        let features = backbone.num_features().ok_or_else(|| {
            format!(
                "{} has no pooled features to classify",
                backbone.arch_name()
            )
        })?;
        let macs = (features * query.num_classes.unwrap_or(10)) as f64;
        Ok(HeadMacs {
            train: macs,
            eval: macs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// resnet_tiny pools 64 features (bottlenecks, C5 = 4 × 16): 640 MACs for 10 classes, 192
    /// for 3; an unknown option is refused as `run` refuses it.
    #[test]
    fn head_macs_count_the_linear_classifier() {
        let query = CostQuery {
            arch: serde_json::to_value(ArchConfig::from_name("resnet_tiny").unwrap()).unwrap(),
            image_size: 32,
            options: serde_json::Map::new(),
            num_classes: None,
        };
        let macs = CifarCell.head_macs(&query).unwrap();
        assert_eq!(
            macs,
            HeadMacs {
                train: 640.0,
                eval: 640.0
            }
        );
        let three = CostQuery {
            num_classes: Some(3),
            ..query.clone()
        };
        assert_eq!(CifarCell.head_macs(&three).unwrap().eval, 192.0);
        let mut bad = query.clone();
        bad.options.insert("scale".into(), serde_json::json!(2));
        let err = CifarCell.head_macs(&bad).unwrap_err().to_string();
        assert!(err.contains("\"scale\""), "{err}");
    }
}
