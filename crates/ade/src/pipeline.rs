//! The two entry points a CLI or the task interface calls: [`train`] (writes `config.json`
//! first, then checkpoints and `metrics.jsonl`; resumes from the newest checkpoint) and
//! [`evaluate`] (mIoU, aAcc and mAcc clean and under every corruption × severity into
//! `metrics.json`, written atomically once every condition is done).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rtb_ade_eval::{AdeDataset, PerImageAreas, Split};
use rtb_corruption::{Corruption, Corruptor, Flavor, FrostTextures};
use rtb_results::{CellId, CellMetrics, METRICS_FILE, MetricTable, Replicates, Resampler, Task};
use rtb_train::{
    Checkpointer, CorruptionSpec, DataLoader, Dataset, FitSummary, LoaderConfig, Observer, RunDir,
    TrainTask, Trainer, evaluate as run_eval,
};
use serde_json::Value;

use crate::config::AdeConfig;
use crate::dataset::{
    AdeTest, AdeTestBatch, AdeTestSample, AdeTrain, LabelSpec, collate_test, collate_train,
};
use crate::error::AdeTaskError;
use crate::task::{AdeTask, IouMetric};

/// Builds the task of `cfg` (backbone weights read, heads initialised from the seed).
pub fn build_task(cfg: &AdeConfig) -> Result<AdeTask, AdeTaskError> {
    let device = cfg.device.device()?;
    cfg.precision.check(&device)?;
    AdeTask::build(
        &cfg.model,
        &cfg.arch,
        cfg.weights.as_deref(),
        cfg.regime,
        cfg.seed,
        (cfg.precision.compute_dtype(), &device),
    )
}

fn label_spec(cfg: &AdeConfig) -> LabelSpec {
    LabelSpec::reduced(cfg.model.num_classes)
}

/// Trains a cell into `run_dir`, resuming from its newest checkpoint if there is one (bit
/// for bit on the CPU: every draw derives from the seed and the position).
pub fn train(
    cfg: &AdeConfig,
    run_dir: &Path,
    observer: &mut dyn Observer,
) -> Result<FitSummary, AdeTaskError> {
    train_task(cfg, run_dir, observer).map(|(_, summary)| summary)
}

/// [`train`], also returning the trained task.
pub fn train_task(
    cfg: &AdeConfig,
    run_dir: &Path,
    observer: &mut dyn Observer,
) -> Result<(AdeTask, FitSummary), AdeTaskError> {
    cfg.validate()?;
    let run = RunDir::new(run_dir);
    run.claim(cfg, |existing, ours| {
        existing.engine.max_iters = ours.engine.max_iters;
        existing.workers = ours.workers;
        existing.eval = ours.eval.clone();
    })?;
    let data = Arc::new(AdeDataset::open(&cfg.data_dir, Split::Training)?);
    tracing::info!(
        "ADE20K layout in {}: {} training images, {} classes",
        cfg.data_dir.display(),
        data.len(),
        cfg.model.num_classes
    );
    let train = AdeTrain::new(data, label_spec(cfg), cfg.train.clone())?;
    let loader = DataLoader::new(
        train,
        collate_train as fn(_) -> _,
        LoaderConfig {
            batch_size: cfg.batch_size,
            shuffle: true,
            // BatchNorm on the 1×1 pooling branch cannot take a batch of one.
            drop_last: true,
            workers: cfg.workers,
            prefetch: 2,
            seed: cfg.seed,
        },
    )?;
    let mut task = build_task(cfg)?;
    let summary = Trainer::new(cfg.engine.clone(), run, cfg.seed, observer)?
        .with_metadata("task", "ade20k")
        .fit(&mut task, &loader, None)?;
    Ok((task, summary))
}

/// The first `count` samples of a dataset (the preset's evaluation image cap).
#[derive(Debug, Clone)]
struct First<D> {
    inner: D,
    count: usize,
}

impl<D: Dataset> Dataset for First<D> {
    type Sample = D::Sample;

    fn len(&self) -> usize {
        self.inner.len().min(self.count)
    }

    fn get(&self, index: usize, seed: u64) -> rtb_train::Result<D::Sample> {
        self.inner.get(index, seed)
    }
}

fn collate_eval(samples: Vec<AdeTestSample>) -> rtb_train::Result<AdeTestBatch> {
    collate_test(samples, 1)
}

/// The corruptor of the evaluation (imagecorruptions, any size), with the frost textures
/// when frost is evaluated.
fn corruptor(cfg: &AdeConfig) -> Result<Corruptor, AdeTaskError> {
    let corruptor = Corruptor::new(Flavor::ImageCorruptions);
    if !cfg.eval.corruptions.contains(&Corruption::Frost) {
        return Ok(corruptor);
    }
    let dir = cfg.eval.frost_dir.clone().ok_or_else(|| {
        AdeTaskError::config(
            "eval.frost_dir",
            "frost is evaluated but no frost textures folder is known (cargo xtask assets)",
        )
    })?;
    let textures = FrostTextures::new(dir);
    textures
        .verify()
        .map_err(|err| AdeTaskError::config("eval.frost_dir", err.to_string()))?;
    Ok(corruptor.with_frost_textures(textures))
}

/// Evaluates the newest checkpoint of the run in `run_dir` (settings from its `config.json`,
/// evaluation settings replaced by `eval` when given) and writes `<run_dir>/metrics.json`.
pub fn evaluate(
    run_dir: &Path,
    eval: Option<&crate::config::AdeEvalConfig>,
    observer: &mut dyn Observer,
) -> Result<CellMetrics, AdeTaskError> {
    let run = RunDir::new(run_dir);
    let mut cfg: AdeConfig = run.read_config()?;
    if let Some(eval) = eval {
        cfg.eval = eval.clone();
    }
    cfg.validate()?;
    let mut task = build_task(&cfg)?;
    let record = run
        .checkpointer()
        .latest()?
        .ok_or_else(|| AdeTaskError::Missing {
            path: run.root().join(rtb_train::CHECKPOINT_DIR),
            hint: "the run has no checkpoint: train it first".into(),
        })?;
    let checkpoint = Checkpointer::load(&record.path, task.device())?;
    task.load_state_tensors(&checkpoint.model)?;
    let mut metrics = evaluate_task(&task, &cfg, observer)?;
    metrics
        .info
        .insert("checkpoint_iteration".into(), record.iteration.into());
    let mut text = metrics.to_json();
    text.push('\n');
    rtb_train::write_atomically(&run.root().join(METRICS_FILE), text.as_bytes())?;
    Ok(metrics)
}

/// The three tables of one evaluation: mIoU (primary), aAcc and mAcc.
struct Tables {
    miou: MetricTable,
    a_acc: MetricTable,
    m_acc: MetricTable,
}

/// Evaluates `task` on the validation split of `cfg`, clean and under every corruption ×
/// severity of `cfg.eval` (per-image seeds, corrupted at full resolution before the resize);
/// returns the cell's metrics (not written).
pub fn evaluate_task(
    task: &AdeTask,
    cfg: &AdeConfig,
    observer: &mut dyn Observer,
) -> Result<CellMetrics, AdeTaskError> {
    let severities = cfg.eval.severities()?;
    let data = Arc::new(AdeDataset::open(&cfg.data_dir, Split::Validation)?);
    let test = AdeTest::new(data.clone(), label_spec(cfg), cfg.test)?;
    let count = cfg.eval.images.unwrap_or(usize::MAX);
    let corruptor = corruptor(cfg)?;
    let run_condition = |set: AdeTest, phase: &str, observer: &mut dyn Observer| {
        let loader = DataLoader::new(
            First { inner: set, count },
            collate_eval as fn(_) -> _,
            LoaderConfig {
                batch_size: cfg.eval.batch_size,
                shuffle: false,
                drop_last: false,
                workers: cfg.workers,
                prefetch: 2,
                seed: 0,
            },
        )?;
        let mut metric = IouMetric::new(cfg.model.num_classes)?;
        if cfg.eval.bootstrap > 0 {
            metric = metric.with_per_image()?;
        }
        run_eval(task, &loader, &mut metric, observer, phase)?;
        metric.finish_per_image()
    };
    let (clean_areas, clean_images) = run_condition(test.clone(), "clean", observer)?;
    let clean = clean_areas.metrics();
    tracing::info!("clean mIoU {:.4}", clean.m_iou);
    // The same resamples of the evaluated images for every condition (a paired bootstrap);
    // a replicate re-sums the images' areas with their multiplicities.
    let evaluated = data.len().min(count);
    let resampler = Resampler::new(cfg.eval.seed, evaluated, cfg.eval.bootstrap);
    let counts = resampler.all_counts();
    let replicates_of = |images: Option<PerImageAreas>| -> Result<[Vec<f64>; 3], AdeTaskError> {
        let mut out: [Vec<f64>; 3] = Default::default();
        if let Some(images) = images {
            resampler.check_len("evaluated images", images.len())?;
            for counts in &counts {
                let m = images.weighted(counts)?.metrics();
                out[0].push(m.m_iou);
                out[1].push(m.a_acc);
                out[2].push(m.m_acc);
            }
        }
        Ok(out)
    };
    let [miou_clean, a_acc_clean, m_acc_clean] = replicates_of(clean_images)?;
    let mut replicates = [
        Replicates::new(&resampler, miou_clean),
        Replicates::new(&resampler, a_acc_clean),
        Replicates::new(&resampler, m_acc_clean),
    ];
    let table = |clean: f64| MetricTable {
        clean,
        corrupted: BTreeMap::new(),
        replicates: None,
    };
    let mut tables = Tables {
        miou: table(clean.m_iou),
        a_acc: table(clean.a_acc),
        m_acc: table(clean.m_acc),
    };
    let mut partial = serde_json::Map::new();
    for &corruption in &cfg.eval.corruptions {
        let mut rows = [[f64::NAN; 5]; 3];
        let mut row_replicates: [[Vec<f64>; 5]; 3] = Default::default();
        for &severity in &severities {
            let spec = CorruptionSpec {
                corruptor: corruptor.clone(),
                corruption,
                severity,
                seed: cfg.eval.seed,
            };
            let phase = format!("{corruption} s{severity}");
            let (areas, images) =
                run_condition(test.clone().with_corruption(spec), &phase, observer)?;
            let m = areas.metrics();
            let s = severity.index();
            rows[0][s] = m.m_iou;
            rows[1][s] = m.a_acc;
            rows[2][s] = m.m_acc;
            for (k, values) in replicates_of(images)?.into_iter().enumerate() {
                row_replicates[k][s] = values;
            }
        }
        if severities.len() == 5 {
            tables.miou.corrupted.insert(corruption, rows[0]);
            tables.a_acc.corrupted.insert(corruption, rows[1]);
            tables.m_acc.corrupted.insert(corruption, rows[2]);
            for (k, values) in row_replicates.into_iter().enumerate() {
                replicates[k].corrupted.insert(corruption, values);
            }
        } else {
            let values: serde_json::Map<String, Value> = severities
                .iter()
                .map(|s| (s.get().to_string(), Value::from(rows[0][s.index()])))
                .collect();
            partial.insert(corruption.name().to_string(), Value::Object(values));
        }
    }
    let mut info: BTreeMap<String, Value> = BTreeMap::new();
    info.insert("flavor".into(), "imagecorruptions".into());
    info.insert("eval_seed".into(), cfg.eval.seed.into());
    info.insert("images".into(), data.len().min(count).into());
    info.insert("num_classes".into(), cfg.model.num_classes.into());
    info.insert(
        "test_scale".into(),
        serde_json::json!([cfg.test.scale.0, cfg.test.scale.1]),
    );
    info.insert("inference".into(), "whole".into());
    info.insert(
        "constant_baseline_miou".into(),
        constant_baseline(clean_areas.label_area()).into(),
    );
    info.insert("seed".into(), cfg.seed.into());
    if !partial.is_empty() {
        info.insert("partial_severities".into(), Value::Object(partial));
    }
    if cfg.eval.bootstrap > 0 {
        let [miou, a_acc, m_acc] = replicates;
        tables.miou.replicates = Some(miou);
        tables.a_acc.replicates = Some(a_acc);
        tables.m_acc.replicates = Some(m_acc);
    }
    let mut secondary = BTreeMap::new();
    secondary.insert("aacc".to_string(), tables.a_acc);
    secondary.insert("macc".to_string(), tables.m_acc);
    Ok(CellMetrics {
        cell: CellId::new(&cfg.preset, &cfg.backbone_name, Task::Ade20k, cfg.regime)?,
        primary: tables.miou,
        secondary,
        info,
    })
}

/// The clean mIoU of the best constant prediction (the most frequent labelled class at every
/// pixel): its IoU is its share of the labelled pixels, every other present class scores 0,
/// absent classes are NaN and left out. What a segmenter that learned nothing but the class
/// prior reaches (ignored pixels — ADE20K's "other", the shapes world's background — count
/// for nothing).
pub fn constant_baseline(label_area: &[u64]) -> f64 {
    let total: u64 = label_area.iter().sum();
    let present = label_area.iter().filter(|&&a| a > 0).count();
    match label_area.iter().max() {
        Some(&most) if total > 0 => most as f64 / total as f64 / present as f64,
        _ => f64::NAN,
    }
}
