//! The two entry points a CLI or an orchestrator calls: [`train`] (writes `config.json`
//! first, then checkpoints and `metrics.jsonl`; resumes when the run directory has a
//! checkpoint) and [`evaluate`] (clean and corrupted top-1 into `metrics.json`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rtb_corruption::{Corruption, Severity};
use rtb_results::{CellId, CellMetrics, METRICS_FILE, MetricTable, Replicates, Resampler, Task};
use rtb_train::{
    Checkpointer, ClassPredictions, Corrupted, CorruptionSpec, DatasetExt, EvalTask, FitSummary,
    LoaderConfig, Observer, RunDir, SampleCorrectness, TrainTask, Trainer, evaluate as run_eval,
};
use serde_json::Value;

use crate::binary::{Cifar10, CifarImages};
use crate::cifar_c::{self, CifarC, GenerateOptions, TestImages};
use crate::config::{CifarCSource, CifarConfig};
use crate::error::{CifarError, Result};
use crate::model::Classifier;
use crate::task::{CifarBatch, CifarSample, CifarTask, ImageSet, loader};

/// Builds the task of `cfg` for `num_classes` classes (weights read, head initialised).
pub fn build_task(cfg: &CifarConfig, num_classes: usize) -> Result<CifarTask> {
    let device = cfg.device.device()?;
    cfg.precision.check(&device)?;
    let dtype = cfg.precision.compute_dtype();
    let model = Classifier::build(
        &cfg.arch,
        cfg.weights.as_deref(),
        cfg.regime,
        num_classes,
        cfg.seed,
        rtb_nn::autocast::param_dtype(dtype),
        &device,
    )?;
    Ok(CifarTask::new(model, cfg.image_size, device, dtype))
}

/// Trains a cell into `run_dir`, resuming from its newest checkpoint if there is one.
pub fn train(cfg: &CifarConfig, run_dir: &Path, observer: &mut dyn Observer) -> Result<FitSummary> {
    train_task(cfg, run_dir, observer).map(|(_, summary)| summary)
}

/// [`train`], also returning the trained task (for inspection and further evaluation).
pub fn train_task(
    cfg: &CifarConfig,
    run_dir: &Path,
    observer: &mut dyn Observer,
) -> Result<(CifarTask, FitSummary)> {
    cfg.validate()?;
    let run = RunDir::new(run_dir);
    // Where a run stops and how many threads load its data do not change its numbers.
    run.claim(cfg, |existing, ours| {
        existing.engine.max_iters = ours.engine.max_iters;
        existing.workers = ours.workers;
    })?;
    let data = Cifar10::load(&cfg.data_dir)?;
    tracing::info!(
        "CIFAR from {}: {} training and {} test images, {} classes",
        data.dir.display(),
        data.train.len(),
        data.test.len(),
        data.classes.len()
    );
    let mut task = build_task(cfg, data.classes.len())?;
    let train_images = Arc::new(data.train);
    let cached = cfg.uses_feature_cache();
    if cached {
        task.cache_features(
            train_images.clone(),
            cfg.eval.batch_size,
            cfg.workers,
            observer,
        )?;
    }
    let loader = loader(
        ImageSet::training(train_images, cfg.augment, !cached),
        LoaderConfig {
            batch_size: cfg.batch_size,
            shuffle: true,
            // BatchNorm in train mode cannot take a last batch of one image.
            drop_last: cfg.regime == rtb_results::Regime::Full,
            workers: cfg.workers,
            prefetch: 2,
            seed: cfg.seed,
        },
    )?;
    let summary = Trainer::new(cfg.engine.clone(), run, cfg.seed, observer)?
        .with_metadata("task", "cifar10")
        .fit(&mut task, &loader, None)?;
    Ok((task, summary))
}

/// Overrides of the evaluation settings in a run's `config.json`.
#[derive(Debug, Clone, Default)]
pub struct EvalOverrides {
    /// Corruptions to evaluate.
    pub corruptions: Option<Vec<Corruption>>,
    /// Severities to evaluate.
    pub severities: Option<Vec<u8>>,
    /// Source of corrupted images.
    pub source: Option<CifarCSource>,
    /// Batch size.
    pub batch_size: Option<usize>,
    /// Worker threads.
    pub workers: Option<usize>,
    /// Device.
    pub device: Option<rtb_train::DeviceChoice>,
    /// Frost textures' folder.
    pub frost_dir: Option<PathBuf>,
}

fn accuracy_of<E, S>(
    task: &E,
    dataset: S,
    cfg: &CifarConfig,
    observer: &mut dyn Observer,
    phase: &str,
) -> Result<Vec<f64>>
where
    E: EvalTask<Batch = CifarBatch, Output = ClassPredictions>,
    S: rtb_train::Dataset<Sample = CifarSample> + 'static,
{
    let loader = loader(
        dataset,
        LoaderConfig {
            batch_size: cfg.eval.batch_size,
            shuffle: false,
            drop_last: false,
            workers: cfg.workers,
            prefetch: 2,
            seed: 0,
        },
    )?;
    let mut correct = SampleCorrectness::default();
    run_eval(task, &loader, &mut correct, observer, phase)?;
    Ok(correct.values())
}

/// Top-1 of per-image correctness values, and their bootstrap replicates (empty without
/// bootstrap).
fn scored(values: &[f64], resampler: &Resampler) -> Result<(f64, Vec<f64>)> {
    let top1 = values.iter().sum::<f64>() / values.len().max(1) as f64;
    let replicates = resampler.mean_replicates(values)?;
    Ok((top1, replicates))
}

/// Evaluates the newest checkpoint of the run in `run_dir` on the clean test set and under
/// every configured corruption × severity, and writes `<run_dir>/metrics.json` (rtb-results'
/// format; mPC, rPC and the drops are derived there). Corruptions evaluated at only some
/// severities are recorded in the `info` map (`partial_severities`), not in the table.
pub fn evaluate(
    run_dir: &Path,
    overrides: &EvalOverrides,
    observer: &mut dyn Observer,
) -> Result<CellMetrics> {
    let run = RunDir::new(run_dir);
    let mut cfg: CifarConfig = run.read_config()?;
    if let Some(corruptions) = &overrides.corruptions {
        cfg.eval.corruptions = corruptions.clone();
    }
    if let Some(severities) = &overrides.severities {
        cfg.eval.severities = severities.clone();
    }
    if let Some(source) = &overrides.source {
        cfg.eval.source = source.clone();
    }
    if let Some(batch) = overrides.batch_size {
        cfg.eval.batch_size = batch;
    }
    if let Some(workers) = overrides.workers {
        cfg.workers = workers;
    }
    if let Some(device) = overrides.device {
        cfg.device = device;
    }
    if let Some(dir) = &overrides.frost_dir {
        cfg.eval.frost_dir = Some(dir.clone());
    }
    cfg.validate()?;
    let (classes, test) = Cifar10::load_test(&cfg.data_dir)?;
    let mut task = build_task(&cfg, classes.len())?;
    let record = run
        .checkpointer()
        .latest()?
        .ok_or_else(|| CifarError::Missing {
            path: run.root().join(rtb_train::CHECKPOINT_DIR),
            hint: "the run has no checkpoint: train it first (rtb train cifar)".into(),
        })?;
    // The task's device: one device per process.
    let checkpoint = Checkpointer::load(&record.path, task.device())?;
    task.load_state_tensors(&checkpoint.model)?;
    let mut metrics = evaluate_task(&task, &cfg, &Arc::new(test), observer)?;
    metrics
        .info
        .insert("checkpoint_iteration".into(), record.iteration.into());
    let mut text = metrics.to_json();
    text.push('\n');
    rtb_train::write_atomically(&run.root().join(METRICS_FILE), text.as_bytes())?;
    Ok(metrics)
}

/// Evaluates any classifier of CIFAR batches on `test`, clean and under the corruptions and
/// severities of `cfg.eval`, from the source it names; returns the cell's metrics (not
/// written). Corruptions evaluated at only some severities go to `info.partial_severities`.
pub fn evaluate_task<E>(
    task: &E,
    cfg: &CifarConfig,
    test: &Arc<CifarImages>,
    observer: &mut dyn Observer,
) -> Result<CellMetrics>
where
    E: EvalTask<Batch = CifarBatch, Output = ClassPredictions>,
{
    let severities = cfg.eval.severities()?;
    // The same resamples of the test images for every condition (a paired bootstrap).
    let resampler = Resampler::new(cfg.eval.seed, test.len(), cfg.eval.bootstrap);
    let (clean, clean_replicates) = scored(
        &accuracy_of(task, ImageSet::plain(test.clone()), cfg, observer, "clean")?,
        &resampler,
    )?;
    tracing::info!("clean top-1 {:.4}", clean);
    let frost_dir = cfg.eval.frost_dir.clone().or_else(rtb_fetch::frost_dir);
    enum Images {
        Folder(CifarC),
        OnTheFly(rtb_corruption::Corruptor),
    }
    let images = match &cfg.eval.source {
        CifarCSource::Generate { .. } => Images::Folder(cifar_c::generate(
            test,
            &cfg.generated_cifar_c_dir(),
            &GenerateOptions {
                corruptions: cfg.eval.corruptions.clone(),
                seed: cfg.eval.seed,
                frost_dir: frost_dir.clone(),
                workers: cfg.workers.max(1),
            },
            observer,
        )?),
        CifarCSource::Released { dir } => Images::Folder(CifarC::open(dir)?),
        CifarCSource::OnTheFly => Images::OnTheFly(cifar_c::cifar_corruptor(
            frost_dir.as_deref(),
            cfg.eval.corruptions.contains(&Corruption::Frost),
        )?),
    };

    let mut table = MetricTable {
        clean,
        corrupted: BTreeMap::new(),
        replicates: None,
    };
    let mut replicates = Replicates::new(&resampler, clean_replicates);
    let mut partial = serde_json::Map::new();
    for &corruption in &cfg.eval.corruptions {
        let sets: Option<[CifarImages; 5]> = match &images {
            Images::Folder(folder) => Some(folder.load(corruption)?),
            Images::OnTheFly(_) => None,
        };
        let mut row = [f64::NAN; 5];
        let mut row_replicates: [Vec<f64>; 5] = Default::default();
        for &severity in &severities {
            let phase = format!("{corruption} s{severity}");
            let values = match &images {
                Images::Folder(_) => {
                    // Loaded above for every folder source.
                    let set = sets
                        .as_ref()
                        .map(|sets| sets[severity.index()].clone())
                        .unwrap_or_default();
                    accuracy_of(task, ImageSet::plain(Arc::new(set)), cfg, observer, &phase)?
                }
                Images::OnTheFly(corruptor) => {
                    let spec = CorruptionSpec {
                        corruptor: corruptor.clone(),
                        corruption,
                        severity,
                        seed: cfg.eval.seed,
                    };
                    let dataset = Corrupted::new(TestImages(test.clone()), spec).map(
                        |sample, _, _| -> rtb_train::Result<CifarSample> {
                            Ok(CifarSample {
                                index: sample.index,
                                pixels: Some(sample.image.into_raw()),
                                label: sample.label,
                            })
                        },
                    );
                    accuracy_of(task, dataset, cfg, observer, &phase)?
                }
            };
            let (value, value_replicates) = scored(&values, &resampler)?;
            row[severity.index()] = value;
            row_replicates[severity.index()] = value_replicates;
        }
        if severities.len() == 5 {
            table.corrupted.insert(corruption, row);
            replicates.corrupted.insert(corruption, row_replicates);
        } else {
            let values: serde_json::Map<String, Value> = severities
                .iter()
                .map(|s: &Severity| (s.get().to_string(), Value::from(row[s.index()])))
                .collect();
            partial.insert(corruption.name().to_string(), Value::Object(values));
        }
    }

    let mut info: BTreeMap<String, Value> = BTreeMap::new();
    info.insert("flavor".into(), "cifar-c".into());
    info.insert(
        "source".into(),
        serde_json::to_value(&cfg.eval.source).expect("sources serialise"),
    );
    info.insert("eval_seed".into(), cfg.eval.seed.into());
    info.insert("images".into(), test.len().into());
    info.insert("image_size".into(), cfg.image_size.into());
    info.insert("seed".into(), cfg.seed.into());
    if !partial.is_empty() {
        info.insert("partial_severities".into(), Value::Object(partial));
    }
    if cfg.eval.bootstrap > 0 {
        table.replicates = Some(replicates);
    }
    let metrics = CellMetrics {
        cell: CellId::new(&cfg.preset, &cfg.backbone_name, Task::Cifar10, cfg.regime)?,
        primary: table,
        secondary: BTreeMap::new(),
        info,
    };
    Ok(metrics)
}
