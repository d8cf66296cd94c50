//! `rtb-train`: the training engine shared by rtb's tasks (CIFAR-10 classification, COCO
//! detection, ADE20K segmentation).
//!
//! - A task opts in by implementing [`TrainTask`] (a train step returning a loss; its
//!   trainable variables; its state for checkpoints) and [`EvalTask`] (an inference step
//!   returning plain outputs for a [`Metric`]). Metrics never see models.
//! - [`Trainer::fit`] runs the loop: optimizer and per-group lr / decay ([`EngineConfig`],
//!   [`OptimizerConfig`], [`GroupsConfig`]), the learning rate set every iteration
//!   ([`ScheduleConfig`]), gradient clipping, the JSONL log ([`MetricsLog`]), atomic
//!   checkpoints ([`Checkpointer`]) pruned by a separate [`CheckpointingStrategy`]
//!   ([`KeepLast`]), the evaluation hook, and resume: a run restarted on the same directory
//!   continues bit for bit on the CPU, because every random draw derives from the seed and the
//!   position ([`seed`]), and the position is in the checkpoint.
//! - [`DataLoader`]: indexable [`Dataset`]s, worker threads, prefetching, per-epoch
//!   shuffling from a seed (same order for any worker count), per-sample seeds for
//!   augmentation, and [`Corrupted`] datasets that apply an rtb-corruption corruption with a
//!   per-image seed while loading.
//! - Progress goes to an [`Observer`] as [`Event`]s; the library never prints.
//! - [`RunDir`]: `config.json` (the resolved config and seed, written first),
//!   `checkpoints/`, `metrics.jsonl`.
//! - [`DeviceChoice`] / [`Precision`]: CPU by default, CUDA with the `cuda` feature, f32 or
//!   bf16 autocast (CUDA only; f32 weights, `rtb_nn::autocast`).
//!
//! - [`CellTask`] / [`CellSpec`] ([`cell`]): the one task interface of the study; a task
//!   crate trains and evaluates a resolved cell into `metrics.json`, and the CLI dispatches
//!   to it without task-specific code.
//!
//! Architecture invariant: this crate knows no concrete model, dataset or file format of a
//! dataset. It depends on rtb-nn (optimizers, schedules, clipping), rtb-corruption (for
//! [`Corrupted`]) and rtb-results (layer 1: the cell identity and `CellMetrics` that the task
//! interface returns); never on rtb-models, a task crate or the CLI.
//!
//! ```
//! use std::collections::BTreeMap;
//! use candle_core::{Device, Tensor, Var};
//! use rtb_train::*;
//!
//! // y = 3x, learned by one weight.
//! struct Points;
//! impl Dataset for Points {
//!     type Sample = (f32, f32);
//!     fn len(&self) -> usize { 8 }
//!     fn get(&self, i: usize, _seed: u64) -> Result<(f32, f32)> { Ok((i as f32, 3.0 * i as f32)) }
//! }
//! struct Line { w: Var }
//! impl TrainTask for Line {
//!     type Batch = (Tensor, Tensor);
//!     fn trainable_vars(&self) -> Vec<(String, Var)> { vec![("w".into(), self.w.clone())] }
//!     fn state_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
//!         Ok([("w".to_string(), self.w.as_tensor().copy()?)].into())
//!     }
//!     fn load_state_tensors(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
//!         assign_vars(&self.trainable_vars(), state)
//!     }
//!     fn train_step(&mut self, (x, y): (Tensor, Tensor), _ctx: &StepContext) -> Result<TrainOutput> {
//!         let loss = (x.broadcast_mul(self.w.as_tensor())? - y)?.sqr()?.mean_all()?;
//!         Ok(TrainOutput { loss, items: x.dim(0)?, parts: vec![] })
//!     }
//! }
//! let collate = |samples: Vec<(f32, f32)>| -> Result<(Tensor, Tensor)> {
//!     let (x, y): (Vec<f32>, Vec<f32>) = samples.into_iter().unzip();
//!     Ok((Tensor::new(x, &Device::Cpu)?, Tensor::new(y, &Device::Cpu)?))
//! };
//! let loader = DataLoader::new(Points, collate,
//!     LoaderConfig { batch_size: 4, shuffle: true, workers: 1, ..Default::default() })?;
//! let dir = tempfile::tempdir().unwrap();
//! let cfg = EngineConfig {
//!     epochs: 20,
//!     optimizer: OptimizerConfig::Sgd { lr: 0.01, momentum: 0.5, weight_decay: 0.0, nesterov: false },
//!     schedule: ScheduleConfig { decay: DecayConfig::Fixed, ..Default::default() },
//!     ..Default::default()
//! };
//! let mut task = Line { w: Var::new(0f32, &Device::Cpu)? };
//! let summary = Trainer::new(cfg, RunDir::new(dir.path()), 0, &mut NullObserver)?
//!     .fit(&mut task, &loader, None)?;
//! assert_eq!(summary.iterations, 40);
//! assert!((task.w.as_tensor().to_scalar::<f32>()? - 3.0).abs() < 1e-3);
//! # Ok::<(), TrainError>(())
//! ```
#![deny(missing_docs)]

pub mod cell;
mod checkpoint;
mod config;
mod data;
mod device;
mod engine;
mod error;
mod metric;
mod observe;
mod run;
pub mod seed;

pub use cell::{
    CellError, CellEval, CellOptions, CellSpec, CellTask, CostQuery, HeadMacs, short_schedule,
};
pub use checkpoint::{
    CHECKPOINT_FORMAT, Checkpoint, CheckpointRecord, Checkpointer, CheckpointingStrategy, KeepLast,
    TrainProgress,
};
pub use config::{
    CheckpointConfig, DecayConfig, EngineConfig, GroupKey, GroupsConfig, OptimizerConfig,
    ScheduleConfig,
};
pub use data::{
    Batches, Collate, Corrupted, CorruptibleSample, CorruptionSpec, DataLoader, Dataset,
    DatasetExt, LoaderConfig, Mapped,
};
pub use device::{DeviceChoice, Precision};
pub use engine::{
    EvalHook, EvalTask, FitSummary, StepContext, TrainOutput, TrainTask, Trainer, assign_vars,
    evaluate,
};
pub use error::{Result, TrainError};
pub use metric::{Accuracy, ClassPredictions, Mean, Metric, SampleCorrectness};
pub use observe::{Event, LogRecord, MetricsLog, NullObserver, Observer, Recorder, StepRecord};
pub use run::{CHECKPOINT_DIR, CONFIG_FILE, LOG_FILE, RunDir, write_atomically};
