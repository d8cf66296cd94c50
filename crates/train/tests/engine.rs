//! The loop end to end on a toy task: resume is bit-identical, checkpoints are pruned, the log
//! and the events tell the same story, and bad configurations and losses are errors.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use rtb_train::seed::SplitMix64;
use rtb_train::*;

/// Sample `i`: a 4-vector with per-sample seeded noise (the "augmentation") and a target.
struct Noisy;

impl Dataset for Noisy {
    type Sample = (Vec<f32>, f32);
    fn len(&self) -> usize {
        22
    }
    fn get(&self, index: usize, seed: u64) -> Result<(Vec<f32>, f32)> {
        let mut rng = SplitMix64::new(seed);
        let x: Vec<f32> = (0..4)
            .map(|k| ((index * 4 + k) as f32 * 0.37).sin() + 0.05 * rng.uniform() as f32)
            .collect();
        let y = x[0] * 2.0 - x[1] + 0.5 * x[3];
        Ok((x, y))
    }
}

fn collate(samples: Vec<(Vec<f32>, f32)>) -> Result<(Tensor, Tensor)> {
    let n = samples.len();
    let (xs, ys): (Vec<Vec<f32>>, Vec<f32>) = samples.into_iter().unzip();
    let xs = Tensor::from_vec(xs.concat(), (n, 4), &Device::Cpu)?;
    Ok((xs, Tensor::new(ys, &Device::Cpu)?))
}

/// A two-layer net with a running statistic (a buffer that is state but never trained) and a
/// step-seeded mask (what DropPath does), so that every kind of state has to survive a resume.
struct Toy {
    w1: Var,
    w2: Var,
    running: Var,
}

impl Toy {
    fn new() -> Self {
        let device = Device::Cpu;
        let w1: Vec<f32> = (0..32).map(|i| ((i as f32) * 0.7).cos() * 0.3).collect();
        Self {
            w1: Var::from_tensor(&Tensor::from_vec(w1, (4, 8), &device).unwrap()).unwrap(),
            w2: Var::zeros((8, 1), DType::F32, &device).unwrap(),
            running: Var::zeros(8, DType::F32, &device).unwrap(),
        }
    }
}

impl TrainTask for Toy {
    type Batch = (Tensor, Tensor);

    fn trainable_vars(&self) -> Vec<(String, Var)> {
        vec![
            ("layer1.weight".into(), self.w1.clone()),
            ("layer2.weight".into(), self.w2.clone()),
        ]
    }

    fn state_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        Ok([
            ("layer1.weight".to_string(), self.w1.as_tensor().copy()?),
            ("layer2.weight".to_string(), self.w2.as_tensor().copy()?),
            ("running".to_string(), self.running.as_tensor().copy()?),
        ]
        .into())
    }

    fn load_state_tensors(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        let mut all = self.trainable_vars();
        all.push(("running".into(), self.running.clone()));
        assign_vars(&all, state)
    }

    fn train_step(&mut self, (xs, ys): (Tensor, Tensor), ctx: &StepContext) -> Result<TrainOutput> {
        let mut rng = SplitMix64::new(ctx.seed);
        let mask: Vec<f32> = (0..8)
            .map(|_| if rng.uniform() < 0.8 { 1.25 } else { 0.0 })
            .collect();
        let mask = Tensor::new(mask, &Device::Cpu)?;
        let hidden = xs.matmul(self.w1.as_tensor())?.tanh()?;
        let batch_mean = hidden.mean(0)?.detach();
        self.running
            .set(&((self.running.as_tensor() * 0.9)? + (batch_mean * 0.1)?)?)?;
        let hidden = hidden.broadcast_mul(&mask)?;
        let pred = hidden.matmul(self.w2.as_tensor())?.squeeze(1)?;
        let loss = (pred - ys)?.sqr()?.mean_all()?;
        Ok(TrainOutput {
            loss,
            items: xs.dim(0)?,
            parts: vec![("mse".into(), 0.0)],
        })
    }
}

type CollateFn = fn(Vec<(Vec<f32>, f32)>) -> Result<(Tensor, Tensor)>;

fn loader(workers: usize) -> DataLoader<Noisy, CollateFn> {
    DataLoader::new(
        Noisy,
        collate as CollateFn,
        LoaderConfig {
            batch_size: 4,
            shuffle: true,
            workers,
            prefetch: 1,
            seed: 3,
            drop_last: false,
        },
    )
    .unwrap()
}

fn config(max_iters: Option<usize>) -> EngineConfig {
    EngineConfig {
        epochs: 3,
        max_iters,
        optimizer: OptimizerConfig::Sgd {
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 1e-3,
            nesterov: false,
        },
        schedule: ScheduleConfig {
            decay: DecayConfig::Cosine { min_lr: 0.0 },
            warmup_iters: 3,
            warmup_ratio: 0.1,
        },
        clip_grad_norm: Some(5.0),
        log_every: 2,
        checkpoint: CheckpointConfig {
            every_iters: Some(4),
            every_epochs: 1,
            keep_last: 2,
        },
        ..EngineConfig::default()
    }
}

fn bytes(task: &Toy) -> Vec<Vec<u8>> {
    task.state_tensors()
        .unwrap()
        .values()
        .map(|t| {
            t.flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        })
        .collect()
}

#[test]
fn two_n_steps_equal_n_steps_resume_and_n_steps() {
    // 6 batches per epoch (22 samples, batch 4), 3 epochs: 18 iterations; stop at 9, inside
    // epoch 1, between two checkpoints (every 4 iterations) so the resume starts mid-epoch.
    let whole_dir = tempfile::tempdir().unwrap();
    let mut whole = Toy::new();
    let mut events = Recorder::default();
    let summary = Trainer::new(config(None), RunDir::new(whole_dir.path()), 7, &mut events)
        .unwrap()
        .fit(&mut whole, &loader(2), None)
        .unwrap();
    assert_eq!(summary.iterations, 18);
    assert!(summary.resumed_from.is_none());

    let split_dir = tempfile::tempdir().unwrap();
    let mut first = Toy::new();
    let summary = Trainer::new(
        config(Some(9)),
        RunDir::new(split_dir.path()),
        7,
        &mut NullObserver,
    )
    .unwrap()
    .fit(&mut first, &loader(0), None)
    .unwrap();
    assert_eq!(summary.iterations, 9);
    assert!(
        summary
            .last_checkpoint
            .unwrap()
            .ends_with("checkpoint-00000009.safetensors")
    );
    // A new process: fresh (different) weights, the state comes from the checkpoint. Another
    // worker count must not matter either.
    let mut second = Toy::new();
    let summary = Trainer::new(
        config(None),
        RunDir::new(split_dir.path()),
        7,
        &mut NullObserver,
    )
    .unwrap()
    .fit(&mut second, &loader(3), None)
    .unwrap();
    assert_eq!(summary.iterations, 18);
    assert!(summary.resumed_from.is_some());
    assert_eq!(
        bytes(&second),
        bytes(&whole),
        "resumed run differs from the whole run"
    );
    assert_ne!(
        bytes(&Toy::new()),
        bytes(&whole),
        "training changed nothing"
    );

    // Both logs list the same train records (apart from the measured speed).
    let strip = |records: Vec<LogRecord>| -> Vec<(usize, u64, u64)> {
        records
            .into_iter()
            .filter_map(|r| match r {
                LogRecord::Train(s) => Some((s.iteration, s.loss.to_bits(), s.lr.to_bits())),
                LogRecord::Eval { .. } => None,
            })
            .collect()
    };
    let whole_log = strip(MetricsLog::read(&whole_dir.path().join(LOG_FILE)).unwrap());
    let mut split_log = strip(MetricsLog::read(&split_dir.path().join(LOG_FILE)).unwrap());
    // The stopped run logged its last step (9) as well.
    assert_eq!(split_log.iter().filter(|r| r.0 == 9).count(), 1);
    split_log.retain(|r| r.0 != 9);
    assert_eq!(whole_log, split_log);
    assert_eq!(whole_log.len(), 9);

    // Keep-last-2 pruned the older checkpoints.
    let kept: Vec<usize> = RunDir::new(whole_dir.path())
        .checkpointer()
        .list()
        .unwrap()
        .iter()
        .map(|r| r.iteration)
        .collect();
    assert_eq!(kept, [16, 18]);

    // Events: start, 18 steps, 3 epochs, and the checkpoints.
    let steps = events
        .events
        .iter()
        .filter(|e| matches!(e, Event::Step(_)))
        .count();
    let epochs = events
        .events
        .iter()
        .filter(|e| matches!(e, Event::EpochFinished { .. }))
        .count();
    assert_eq!((steps, epochs), (18, 3));
    assert!(matches!(
        events.events[0],
        Event::TrainingStarted {
            total_iterations: 18,
            ..
        }
    ));

    // A finished run resumed again does nothing.
    let mut again = Toy::new();
    let summary = Trainer::new(
        config(None),
        RunDir::new(split_dir.path()),
        7,
        &mut NullObserver,
    )
    .unwrap()
    .fit(&mut again, &loader(1), None)
    .unwrap();
    assert_eq!(summary.iterations, 18);
    assert_eq!(bytes(&again), bytes(&whole));
}

#[test]
fn the_eval_hook_runs_after_the_configured_epochs_and_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut task = Toy::new();
    let cfg = EngineConfig {
        eval_every_epochs: Some(2),
        ..config(None)
    };
    let mut calls = Vec::new();
    let mut hook = |epoch: usize, task: &mut Toy| -> Result<Vec<(String, f64)>> {
        calls.push(epoch);
        let norm = task.w2.as_tensor().sqr()?.sum_all()?.to_scalar::<f32>()?;
        Ok(vec![("w2_norm".into(), f64::from(norm))])
    };
    Trainer::new(cfg, RunDir::new(dir.path()), 1, &mut NullObserver)
        .unwrap()
        .fit(&mut task, &loader(1), Some(&mut hook))
        .unwrap();
    // After epoch 2 (index 1) and after the last epoch.
    assert_eq!(calls, [1, 2]);
    let evals = MetricsLog::read(&dir.path().join(LOG_FILE))
        .unwrap()
        .into_iter()
        .filter(|r| matches!(r, LogRecord::Eval { .. }))
        .count();
    assert_eq!(evals, 2);
}

#[test]
fn a_checkpoint_of_another_seed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Trainer::new(
        config(Some(4)),
        RunDir::new(dir.path()),
        1,
        &mut NullObserver,
    )
    .unwrap()
    .fit(&mut Toy::new(), &loader(0), None)
    .unwrap();
    let err = Trainer::new(config(None), RunDir::new(dir.path()), 2, &mut NullObserver)
        .unwrap()
        .fit(&mut Toy::new(), &loader(0), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checkpoint-00000004") && err.contains("seed 1"),
        "{err}"
    );
}

#[test]
fn a_diverging_loss_is_an_error_with_its_iteration() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EngineConfig {
        optimizer: OptimizerConfig::Sgd {
            lr: 1e6,
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        },
        clip_grad_norm: None,
        schedule: ScheduleConfig {
            decay: DecayConfig::Fixed,
            ..ScheduleConfig::default()
        },
        ..config(None)
    };
    let err = Trainer::new(cfg, RunDir::new(dir.path()), 1, &mut NullObserver)
        .unwrap()
        .fit(&mut Toy::new(), &loader(0), None)
        .unwrap_err();
    assert!(matches!(err, TrainError::NonFiniteLoss { .. }), "{err}");
}

/// Regression: `--schedule short` capped the iterations with `max_iters` alone, so a short
/// run stopped near the peak learning rate of a schedule spread over the whole run.
#[test]
fn a_short_run_with_its_own_schedule_length_decays_to_the_end() {
    let last_lr = |schedule_iters: Option<usize>| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EngineConfig {
            schedule_iters,
            log_every: 1,
            ..config(Some(6))
        };
        let summary = Trainer::new(cfg, RunDir::new(dir.path()), 3, &mut NullObserver)
            .unwrap()
            .fit(&mut Toy::new(), &loader(1), None)
            .unwrap();
        assert_eq!(summary.iterations, 6);
        let lrs: Vec<f64> = MetricsLog::read(&dir.path().join(LOG_FILE))
            .unwrap()
            .into_iter()
            .filter_map(|r| match r {
                LogRecord::Train(s) => Some(s.lr),
                LogRecord::Eval { .. } => None,
            })
            .collect();
        assert_eq!(lrs.len(), 6);
        *lrs.last().unwrap()
    };
    // Spread over 18 iterations, the 6th is still near the peak (0.05).
    let cut = last_lr(None);
    assert!(cut > 0.035, "{cut}");
    // A complete cosine over 6 iterations (3 of them warmup) ends near zero.
    let complete = last_lr(Some(6));
    assert!(complete < 0.01, "{complete}");
}
