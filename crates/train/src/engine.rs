//! The loop. A task opts in by implementing [`TrainTask`] (a train step that returns a loss,
//! plus its state for checkpoints) and, for evaluation, [`EvalTask`]; the [`Trainer`] owns
//! the optimizer, the schedule, clipping, logging, checkpoints, resume and the evaluation
//! hook, and knows no concrete model or dataset.
//!
//! Regimes are the task's business: in the fixed-feature regime a task runs its frozen
//! backbone without a gradient graph and reports only its head's variables from
//! [`TrainTask::trainable_vars`]; in the full-network regime it reports every variable. The
//! optimizer holds exactly what the task reports, grouped by [`crate::GroupsConfig`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Tensor, Var};
use rtb_nn::clip::clip_grad_norm;

use crate::checkpoint::{
    Checkpoint, CheckpointRecord, CheckpointingStrategy, KeepLast, TrainProgress,
};
use crate::config::EngineConfig;
use crate::data::{Collate, DataLoader, Dataset};
use crate::error::{Result, TrainError};
use crate::metric::Metric;
use crate::observe::{Event, LogRecord, MetricsLog, Observer, StepRecord};
use crate::run::RunDir;
use crate::seed::{Stream, derive_seed};

/// Where one training step stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepContext {
    /// Iterations completed before this one (0-based index of this step).
    pub iteration: usize,
    /// 0-based epoch.
    pub epoch: usize,
    /// 0-based batch index within the epoch.
    pub batch_in_epoch: usize,
    /// Seed of this step's random draws inside the model (DropPath): derived from the run
    /// seed and the iteration, so a resumed run draws the same.
    pub seed: u64,
    /// The base learning rate of this step.
    pub learning_rate: f64,
}

/// What a train step returns.
#[derive(Debug, Clone)]
pub struct TrainOutput {
    /// The scalar loss to minimise, with its gradient graph.
    pub loss: Tensor,
    /// Samples in the batch (for samples per second).
    pub items: usize,
    /// Named loss parts or other scalars to log (`classifier`, `rpn_box`, …).
    pub parts: Vec<(String, f64)>,
}

/// A task that trains.
pub trait TrainTask {
    /// What the data loader hands to a step.
    type Batch;

    /// The variables to train, with unique names (the optimizer's state is keyed by them).
    fn trainable_vars(&self) -> Vec<(String, Var)>;

    /// [`trainable_vars`](TrainTask::trainable_vars) with what each one is, so parameter
    /// groups find norms, biases and position tables by kind rather than by name (`None`:
    /// by name; the default for every variable).
    fn trainable_roles(&self) -> Vec<(String, Var, Option<rtb_nn::optim::ParamRole>)> {
        self.trainable_vars()
            .into_iter()
            .map(|(name, var)| (name, var, None))
            .collect()
    }

    /// Every tensor that makes up the model's state (trainable variables and buffers such as
    /// BatchNorm running statistics), for checkpoints.
    fn state_tensors(&self) -> Result<BTreeMap<String, Tensor>>;

    /// Restores state produced by [`TrainTask::state_tensors`].
    fn load_state_tensors(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()>;

    /// One forward pass in training mode; the engine runs the backward pass and the update.
    fn train_step(&mut self, batch: Self::Batch, ctx: &StepContext) -> Result<TrainOutput>;
}

/// A task that evaluates: a batch in, plain outputs for a [`Metric`] out.
pub trait EvalTask {
    /// What the data loader hands to a step.
    type Batch;
    /// What a metric takes.
    type Output;

    /// One forward pass in inference mode (no gradient graph).
    fn eval_step(&self, batch: Self::Batch) -> Result<Self::Output>;
}

/// Copies `state[name]` into each variable of `vars` (shape-checked, converted to the
/// variable's dtype and device); an error names the first missing or mismatched key.
pub fn assign_vars(vars: &[(String, Var)], state: &BTreeMap<String, Tensor>) -> Result<()> {
    for (name, var) in vars {
        let tensor = state
            .get(name)
            .ok_or_else(|| TrainError::Task(format!("state has no tensor {name:?}")))?;
        if tensor.dims() != var.dims() {
            return Err(TrainError::Task(format!(
                "state tensor {name:?} has shape {:?}, the model has {:?}",
                tensor.dims(),
                var.dims()
            )));
        }
        var.set(&tensor.to_dtype(var.dtype())?.to_device(var.device())?)?;
    }
    Ok(())
}

/// Runs `task` over every batch of `loader` in order and feeds `metric`; reports
/// [`Event::Phase`] progress under `phase`.
pub fn evaluate<E, D, C, M>(
    task: &E,
    loader: &DataLoader<D, C>,
    metric: &mut M,
    observer: &mut dyn Observer,
    phase: &str,
) -> Result<()>
where
    E: EvalTask<Batch = C::Batch>,
    D: Dataset + 'static,
    C: Collate<D::Sample> + 'static,
    M: Metric<Input = E::Output>,
{
    let total = loader.num_batches();
    for (done, batch) in loader.epoch(0).enumerate() {
        let output = task.eval_step(batch?)?;
        metric.update(&output);
        observer.on_event(&Event::Phase {
            name: phase.to_string(),
            done: done + 1,
            total,
        });
    }
    Ok(())
}

/// What [`Trainer::fit`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct FitSummary {
    /// Iterations completed (the whole run's, including those before a resume).
    pub iterations: usize,
    /// The checkpoint this process resumed from.
    pub resumed_from: Option<PathBuf>,
    /// The newest checkpoint written.
    pub last_checkpoint: Option<PathBuf>,
    /// Loss of the last step run by this process.
    pub last_loss: Option<f64>,
    /// Mean samples per second over this process's steps.
    pub items_per_second: Option<f64>,
}

/// The evaluation hook: called after epoch `epoch` (0-based) with the task; returns named
/// values to log.
pub type EvalHook<'h, T> = dyn FnMut(usize, &mut T) -> Result<Vec<(String, f64)>> + 'h;

/// The training loop of one run directory.
pub struct Trainer<'o> {
    cfg: EngineConfig,
    run: RunDir,
    seed: u64,
    strategy: Box<dyn CheckpointingStrategy>,
    observer: &'o mut dyn Observer,
    metadata: BTreeMap<String, String>,
}

impl std::fmt::Debug for Trainer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("cfg", &self.cfg)
            .field("run", &self.run)
            .field("seed", &self.seed)
            .field("strategy", &self.strategy)
            .finish()
    }
}

impl<'o> Trainer<'o> {
    /// A trainer for `run` with seed `seed` (the step seeds derive from it; the loader has
    /// its own seed in its config) keeping the last `cfg.checkpoint.keep_last` checkpoints.
    pub fn new(
        cfg: EngineConfig,
        run: RunDir,
        seed: u64,
        observer: &'o mut dyn Observer,
    ) -> Result<Self> {
        cfg.validate()?;
        let keep = cfg.checkpoint.keep_last;
        Ok(Self {
            cfg,
            run,
            seed,
            strategy: Box::new(KeepLast(keep)),
            observer,
            metadata: BTreeMap::new(),
        })
    }

    /// Replaces the checkpointing strategy.
    pub fn with_strategy(mut self, strategy: Box<dyn CheckpointingStrategy>) -> Self {
        self.strategy = strategy;
        self
    }

    /// Adds string metadata to every checkpoint (a task name, a config digest).
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Iterations this run stops after, for a loader with `iterations_per_epoch` batches
    /// (every epoch, or `max_iters` if smaller).
    pub fn total_iterations(&self, iterations_per_epoch: usize) -> usize {
        let all = self.cfg.epochs * iterations_per_epoch;
        self.cfg.max_iters.map_or(all, |max| max.min(all))
    }

    /// Trains `task` on `loader`, resuming from the newest checkpoint of the run directory if
    /// there is one, and calls `eval` after the epochs the config names.
    pub fn fit<T, D, C>(
        &mut self,
        task: &mut T,
        loader: &DataLoader<D, C>,
        mut eval: Option<&mut EvalHook<'_, T>>,
    ) -> Result<FitSummary>
    where
        T: TrainTask<Batch = C::Batch>,
        D: Dataset + 'static,
        C: Collate<D::Sample> + 'static,
    {
        let started = Instant::now();
        let per_epoch = loader.num_batches();
        if per_epoch == 0 {
            return Err(TrainError::config(
                "loader",
                format!(
                    "{} samples make no batch of {} (drop_last)",
                    loader.dataset().len(),
                    loader.config().batch_size
                ),
            ));
        }
        let total = self.total_iterations(per_epoch);
        let vars = task.trainable_roles();
        if vars.is_empty() {
            return Err(TrainError::Task(
                "the task reports no trainable variables".into(),
            ));
        }
        let var_list: Vec<Var> = vars.iter().map(|(_, v, _)| v.clone()).collect();
        let device = var_list[0].device().clone();
        let mut optimizer = self.cfg.optimizer.build(self.cfg.groups.build(vars))?;
        // The schedule spans every epoch unless the config gives its length: `max_iters`
        // alone stops a run early without changing its learning rates, so an interrupted run
        // and a whole one agree.
        let span = self
            .cfg
            .schedule_iters
            .unwrap_or(self.cfg.epochs * per_epoch)
            .max(1);
        let schedule = self.cfg.schedule.resolve(self.cfg.optimizer.lr(), span)?;
        let checkpointer = self.run.checkpointer();

        let mut progress = TrainProgress {
            iteration: 0,
            epoch: 0,
            batch_in_epoch: 0,
            seed: self.seed,
        };
        let mut resumed_from = None;
        if let Some(record) = checkpointer.latest()? {
            let checkpoint = crate::Checkpointer::load(&record.path, &device)?;
            let bad = |message: String| TrainError::Checkpoint {
                path: record.path.clone(),
                message,
            };
            if checkpoint.progress.seed != self.seed {
                return Err(bad(format!(
                    "written by a run with seed {}, this run has seed {}: use another directory",
                    checkpoint.progress.seed, self.seed
                )));
            }
            task.load_state_tensors(&checkpoint.model)
                .map_err(|err| bad(format!("model: {err}")))?;
            optimizer
                .load_state_tensors(&checkpoint.optimizer)
                .map_err(|err| bad(format!("optimizer: {err}")))?;
            progress = checkpoint.progress;
            tracing::info!(
                "resuming {} at iteration {} (epoch {}, batch {})",
                self.run.root().display(),
                progress.iteration,
                progress.epoch,
                progress.batch_in_epoch
            );
            resumed_from = Some(record.path);
        }
        let mut log = MetricsLog::open(
            &self.run.log_path(),
            resumed_from.as_ref().map(|_| progress.iteration),
        )?;
        self.observer.on_event(&Event::TrainingStarted {
            total_iterations: total,
            start_iteration: progress.iteration,
            iterations_per_epoch: per_epoch,
            resumed_from: resumed_from.clone(),
        });

        let mut last_saved = resumed_from.as_ref().map(|_| progress.iteration);
        let mut last_checkpoint = resumed_from.clone();
        let mut last_loss = None;
        let (mut items_total, mut busy_total) = (0usize, 0f64);
        let (mut window_items, mut window_start) = (0usize, Instant::now());
        while progress.iteration < total {
            let epoch = progress.epoch;
            let (mut loss_sum, mut loss_count) = (0f64, 0usize);
            for batch in loader.epoch_from(epoch, progress.batch_in_epoch) {
                if progress.iteration >= total {
                    break;
                }
                let step_started = Instant::now();
                let batch = batch?;
                let lr = schedule.lr(progress.iteration, epoch);
                optimizer.set_learning_rate(lr);
                let ctx = StepContext {
                    iteration: progress.iteration,
                    epoch,
                    batch_in_epoch: progress.batch_in_epoch,
                    seed: derive_seed(self.seed, Stream::Step, &[progress.iteration as u64]),
                    learning_rate: lr,
                };
                let output = task.train_step(batch, &ctx)?;
                if output.loss.rank() != 0 {
                    return Err(TrainError::Task(format!(
                        "the train step returned a loss of shape {:?}, not a scalar",
                        output.loss.dims()
                    )));
                }
                let loss = output.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                if !loss.is_finite() {
                    return Err(TrainError::NonFiniteLoss {
                        value: loss,
                        iteration: progress.iteration,
                        epoch,
                    });
                }
                let mut grads = output.loss.backward()?;
                let grad_norm = match self.cfg.clip_grad_norm {
                    Some(max_norm) => Some(clip_grad_norm(&mut grads, &var_list, max_norm)?),
                    None => None,
                };
                optimizer.step(&grads)?;
                drop(grads);

                progress.iteration += 1;
                progress.batch_in_epoch += 1;
                if progress.batch_in_epoch == per_epoch {
                    progress.epoch += 1;
                    progress.batch_in_epoch = 0;
                }
                loss_sum += loss;
                loss_count += 1;
                last_loss = Some(loss);
                items_total += output.items;
                busy_total += step_started.elapsed().as_secs_f64();
                window_items += output.items;
                let window_seconds = window_start.elapsed().as_secs_f64();
                let record = StepRecord {
                    iteration: progress.iteration,
                    epoch,
                    loss,
                    lr,
                    items_per_second: window_items as f64 / window_seconds.max(1e-9),
                    parts: output.parts,
                    grad_norm,
                };
                if progress.iteration.is_multiple_of(self.cfg.log_every)
                    || progress.iteration == total
                {
                    log.write(&LogRecord::Train(record.clone()))?;
                    window_items = 0;
                    window_start = Instant::now();
                }
                self.observer.on_event(&Event::Step(record));
                if self
                    .cfg
                    .checkpoint
                    .every_iters
                    .is_some_and(|every| progress.iteration.is_multiple_of(every))
                {
                    last_checkpoint = Some(self.save(task, &*optimizer, progress)?.path);
                    last_saved = Some(progress.iteration);
                }
            }
            let epoch_done = progress.epoch > epoch;
            if !epoch_done {
                // Stopped by max_iters inside the epoch.
                break;
            }
            self.observer.on_event(&Event::EpochFinished {
                epoch,
                mean_loss: loss_sum / loss_count.max(1) as f64,
            });
            let epochs_done = epoch + 1;
            if let (Some(every), Some(hook)) = (self.cfg.eval_every_epochs, eval.as_mut())
                && (epochs_done.is_multiple_of(every) || progress.iteration == total)
            {
                let values = hook(epoch, task)?;
                log.write(&LogRecord::Eval {
                    iteration: progress.iteration,
                    epoch,
                    values: values.clone(),
                })?;
                self.observer.on_event(&Event::Evaluated { epoch, values });
            }
            if (epochs_done.is_multiple_of(self.cfg.checkpoint.every_epochs)
                || progress.iteration == total)
                && last_saved != Some(progress.iteration)
            {
                last_checkpoint = Some(self.save(task, &*optimizer, progress)?.path);
                last_saved = Some(progress.iteration);
            }
        }
        if last_saved != Some(progress.iteration) {
            last_checkpoint = Some(self.save(task, &*optimizer, progress)?.path);
        }
        self.observer.on_event(&Event::TrainingFinished {
            iterations: progress.iteration,
            seconds: started.elapsed().as_secs_f64(),
        });
        Ok(FitSummary {
            iterations: progress.iteration,
            resumed_from,
            last_checkpoint,
            last_loss,
            items_per_second: (busy_total > 0.0).then(|| items_total as f64 / busy_total),
        })
    }

    fn save<T: TrainTask>(
        &mut self,
        task: &T,
        optimizer: &dyn rtb_nn::optim::Optimizer,
        progress: TrainProgress,
    ) -> Result<CheckpointRecord> {
        let checkpointer = self.run.checkpointer();
        let record = checkpointer.save(&Checkpoint {
            progress,
            model: task.state_tensors()?,
            optimizer: optimizer.state_tensors()?,
            metadata: self.metadata.clone(),
        })?;
        let on_disk = checkpointer.list()?;
        for old in self.strategy.to_remove(&on_disk) {
            if old.path != record.path {
                checkpointer.remove(&old)?;
            }
        }
        self.observer.on_event(&Event::CheckpointSaved {
            iteration: progress.iteration,
            path: record.path.clone(),
        });
        Ok(record)
    }
}
