//! The one task interface of the study: a task crate turns a resolved [`CellSpec`] into a
//! trained and evaluated cell (`config.json`, checkpoints, `metrics.json`) by implementing
//! [`CellTask`]. The CLI resolves a preset into a `CellSpec` — architecture, weights, data
//! folder, the engine config with a shortened schedule already applied, task options,
//! evaluation settings — and calls the runner registered for the task; it holds no
//! task-specific code, and the next task adds one `CellTask` implementation and one line in
//! the CLI's table.
//!
//! This lives in rtb-train because the spec names the engine's [`EngineConfig`],
//! [`DeviceChoice`] and [`Observer`]; the results it returns are rtb-results' [`CellMetrics`]
//! (layer 1, serde only), the one type the report reads. The architecture travels as JSON (an
//! rtb-models `ArchConfig` value), since the engine knows no model.

use std::path::PathBuf;

use rtb_corruption::Corruption;
use rtb_results::{CellId, CellMetrics, Regime, Task};
use serde_json::{Map, Value};

use crate::config::EngineConfig;
use crate::device::DeviceChoice;
use crate::observe::Observer;

/// How a cell is evaluated: the preset's `[evaluation]` table, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct CellEval {
    /// Corruptions to evaluate (the preset's list, or the 15 benchmark ones).
    pub corruptions: Vec<Corruption>,
    /// Severities (1..=5).
    pub severities: Vec<u8>,
    /// Seed of the per-image corruption seeds and of the bootstrap resamples.
    pub seed: u64,
    /// Paired bootstrap replicates per condition for the confidence intervals (0: none);
    /// tasks draw them with `rtb_results::Resampler::new(seed, images, bootstrap)`.
    pub bootstrap: usize,
    /// Evaluate at most this many images per condition (`None`: the whole split), for tasks
    /// that evaluate a subset (ADE20K, COCO); CIFAR-10 evaluates its whole test split.
    pub images: Option<usize>,
    /// The frost textures' folder, if one is known.
    pub frost_dir: Option<PathBuf>,
}

/// One cell of a preset, resolved: everything a task crate needs to train and evaluate it.
#[derive(Debug, Clone, PartialEq)]
pub struct CellSpec {
    /// The preset's name (the first level of the results store).
    pub preset: String,
    /// The backbone's name in the preset.
    pub backbone: String,
    /// The architecture: an rtb-models `ArchConfig` as its JSON value.
    pub arch: Value,
    /// The backbone's weights (`backbone.safetensors` of its backbone step).
    pub weights: Option<PathBuf>,
    /// The regime.
    pub regime: Regime,
    /// The task's data folder (a CIFAR binary folder, an ADE20K root, …).
    pub data_dir: PathBuf,
    /// The task's input side (`image_size` of the preset's task table).
    pub image_size: usize,
    /// Training batch size.
    pub batch_size: usize,
    /// The run seed.
    pub seed: u64,
    /// The engine config, resolved: epochs, optimizer, schedule, groups, checkpoints, and for
    /// a shortened schedule `max_iters = schedule_iters =` its length ([`short_schedule`]).
    pub engine: EngineConfig,
    /// Task-specific settings (the preset's `options` table as JSON); a task rejects keys it
    /// does not know ([`CellSpec::check_options`]).
    pub options: Map<String, Value>,
    /// Evaluation settings.
    pub eval: CellEval,
    /// Where to compute.
    pub device: DeviceChoice,
    /// The activations' type (bf16 autocast only on CUDA).
    pub precision: crate::device::Precision,
    /// Loader worker threads.
    pub workers: usize,
    /// The cell's run directory (`runs/<preset>/<backbone>/<task>/<regime>/`).
    pub run_dir: PathBuf,
}

/// What a cell runner returns on failure: the task crate's own error, boxed (the CLI prints
/// its chain).
pub type CellError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl CellSpec {
    /// The cell's identity in the results store for `task`.
    pub fn cell_id(&self, task: Task) -> Result<CellId, CellError> {
        Ok(CellId::new(
            &self.preset,
            &self.backbone,
            task,
            self.regime,
        )?)
    }

    /// The task options ([`CellOptions`]).
    pub fn options(&self) -> CellOptions<'_> {
        CellOptions(&self.options)
    }

    /// An error if the options hold a key outside `known`, naming it and what `task` takes.
    pub fn check_options(&self, task: Task, known: &[&str]) -> Result<(), CellError> {
        self.options().check(task, known)
    }

    /// The boolean option `key`, if set; an error names a value of another type.
    pub fn bool_option(&self, key: &str) -> Result<Option<bool>, CellError> {
        self.options().bool(key)
    }

    /// The option `key` deserialised as `T`, if set; an error names the key.
    pub fn option<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, CellError> {
        self.options().get(key)
    }
}

/// A task's options (the preset's `options` table as JSON), read by key.
#[derive(Debug, Clone, Copy)]
pub struct CellOptions<'a>(pub &'a Map<String, Value>);

impl CellOptions<'_> {
    /// An error if the options hold a key outside `known`, naming it and what `task` takes.
    pub fn check(&self, task: Task, known: &[&str]) -> Result<(), CellError> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(format!(
                "unknown option {unknown:?} ({task} takes {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
            .into()),
            None => Ok(()),
        }
    }

    /// The boolean option `key`, if set; an error names a value of another type.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, CellError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(format!("option {key:?} is a boolean, got {other}").into()),
        }
    }

    /// The option `key` deserialised as `T`, if set; an error names the key.
    pub fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CellError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(value) => serde_json::from_value(value.clone())
                .map(Some)
                .map_err(|err| format!("option {key:?}: {err}").into()),
        }
    }
}

/// What the study's cost estimate asks of a task about one cell: its model at the task's
/// input size, before any data exists.
#[derive(Debug, Clone, PartialEq)]
pub struct CostQuery {
    /// The backbone: an rtb-models `ArchConfig` as its JSON value.
    pub arch: Value,
    /// The task's input side (`image_size` of the preset's task table).
    pub image_size: usize,
    /// The regime's task options, as [`CellSpec::options`].
    pub options: Map<String, Value>,
    /// The dataset's class count where the preset knows it (the synthetic world's);
    /// `None`: the task's real dataset's (80 for COCO, 150 for ADE20K, 10 for CIFAR-10).
    pub num_classes: Option<usize>,
}

/// Forward multiply-accumulates of one image through a cell's task heads (everything but
/// the backbone, which rtb-models' registry counts), as the cell runs them.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct HeadMacs {
    /// In a training step's forward pass (on its sampled RoIs, with auxiliary heads).
    pub train: f64,
    /// In an evaluation pass.
    pub eval: f64,
}

/// Applies a shortened schedule to `engine`: `epochs × ⌈train_images / batch_size⌉`
/// iterations in all (capped by an existing `max_iters`), with the learning-rate schedule
/// complete over that length (`max_iters = schedule_iters =` the length).
pub fn short_schedule(engine: &mut EngineConfig, train_images: usize, batch_size: usize) {
    let per_epoch = train_images.div_ceil(batch_size.max(1)).max(1);
    let cap = per_epoch * engine.epochs;
    let length = engine.max_iters.map_or(cap, |m| m.min(cap));
    engine.max_iters = Some(length);
    engine.schedule_iters = Some(length);
}

/// A task crate's cell runner: trains the cell of `spec` into `spec.run_dir` (resuming from
/// its newest checkpoint), evaluates it clean and under every corruption × severity, and
/// writes `metrics.json` atomically, only when complete. A finished cell is one whose
/// `metrics.json` exists; the orchestrator skips it without calling the runner.
pub trait CellTask: Send + Sync {
    /// The task this runner owns.
    fn task(&self) -> Task;

    /// Trains and evaluates the cell; returns what was written to `metrics.json`.
    fn run(&self, spec: &CellSpec, observer: &mut dyn Observer) -> Result<CellMetrics, CellError>;

    /// The task heads' multiply-accumulates per image at the query's input size, from the
    /// same options [`run`](Self::run) reads (not measured): the study's cost estimate adds
    /// them to the backbone's.
    fn head_macs(&self, query: &CostQuery) -> Result<HeadMacs, CellError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(options: &Value) -> CellSpec {
        CellSpec {
            preset: "p".into(),
            backbone: "b".into(),
            arch: Value::String("resnet_tiny".into()),
            weights: None,
            regime: Regime::Fixed,
            data_dir: "data".into(),
            image_size: 32,
            batch_size: 4,
            seed: 0,
            engine: EngineConfig {
                epochs: 3,
                ..EngineConfig::default()
            },
            options: options.as_object().cloned().unwrap_or_default(),
            eval: CellEval {
                corruptions: vec![],
                severities: vec![1],
                seed: 0,
                bootstrap: 0,
                images: None,
                frost_dir: None,
            },
            device: DeviceChoice::Cpu,
            precision: crate::device::Precision::F32,
            workers: 1,
            run_dir: "run".into(),
        }
    }

    #[test]
    fn options_are_checked_by_name_and_type() {
        let s = spec(&serde_json::json!({"augment": true, "crop": 64}));
        assert_eq!(s.bool_option("augment").unwrap(), Some(true));
        assert_eq!(s.bool_option("missing").unwrap(), None);
        assert!(
            s.bool_option("crop")
                .unwrap_err()
                .to_string()
                .contains("\"crop\"")
        );
        assert_eq!(s.option::<u32>("crop").unwrap(), Some(64));
        let err = s
            .check_options(Task::Cifar10, &["augment"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"crop\"") && err.contains("cifar10 takes augment"),
            "{err}"
        );
        assert!(s.check_options(Task::Cifar10, &["augment", "crop"]).is_ok());
    }

    #[test]
    fn a_short_schedule_is_complete_over_its_length() {
        let mut engine = spec(&Value::Null).engine;
        short_schedule(&mut engine, 10, 4);
        assert_eq!(
            (engine.max_iters, engine.schedule_iters),
            (Some(9), Some(9))
        );
        let mut capped = EngineConfig {
            epochs: 3,
            max_iters: Some(5),
            ..EngineConfig::default()
        };
        short_schedule(&mut capped, 10, 4);
        assert_eq!(
            (capped.max_iters, capped.schedule_iters),
            (Some(5), Some(5))
        );
    }
}
