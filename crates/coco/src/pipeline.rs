//! The two entry points a CLI or the task interface calls: [`train`] (writes `config.json`
//! first, then checkpoints and `metrics.jsonl`; resumes from the newest checkpoint) and
//! [`evaluate`] (box AP primary, mask AP secondary, clean and under every corruption ×
//! severity, into `metrics.json`, written atomically once every condition is done).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rtb_coco_eval::{CocoEval, CocoGt, DetectionResult, Detections, IouType, Params};
use rtb_corruption::{Corruption, Corruptor, Flavor, FrostTextures};
use rtb_results::{CellId, CellMetrics, METRICS_FILE, MetricTable, Replicates, Resampler, Task};
use rtb_train::{
    Checkpointer, CorruptionSpec, DataLoader, Dataset, FitSummary, LoaderConfig, Observer, RunDir,
    Trainer, evaluate as run_eval,
};
use serde_json::Value;

use crate::config::{CocoConfig, CocoEvalConfig};
use crate::data::{CocoTest, CocoTrain, collate_test, collate_train};
use crate::dataset::{CocoSplit, Split};
use crate::error::CocoTaskError;
use crate::task::{CocoTask, DetectionCollector};

/// Builds the task of `cfg` for a dataset with categories `cat_ids` (backbone weights read,
/// heads initialised from the seed).
pub fn build_task(cfg: &CocoConfig, cat_ids: Vec<i64>) -> Result<CocoTask, CocoTaskError> {
    let device = cfg.device.device()?;
    cfg.precision.check(&device)?;
    CocoTask::build(
        &cfg.model,
        &cfg.arch,
        cfg.weights.as_deref(),
        cfg.regime,
        cfg.seed,
        cat_ids,
        cfg.accumulate,
        (cfg.precision.compute_dtype(), &device),
    )
}

/// Trains a cell into `run_dir`, resuming from its newest checkpoint if there is one (bit
/// for bit on the CPU: every draw derives from the seed and the position).
pub fn train(
    cfg: &CocoConfig,
    run_dir: &Path,
    observer: &mut dyn Observer,
) -> Result<FitSummary, CocoTaskError> {
    train_task(cfg, run_dir, observer).map(|(_, summary)| summary)
}

/// [`train`], also returning the trained task.
pub fn train_task(
    cfg: &CocoConfig,
    run_dir: &Path,
    observer: &mut dyn Observer,
) -> Result<(CocoTask, FitSummary), CocoTaskError> {
    cfg.validate()?;
    let run = RunDir::new(run_dir);
    run.claim(cfg, |existing, ours| {
        existing.engine.max_iters = ours.engine.max_iters;
        existing.workers = ours.workers;
        existing.eval = ours.eval.clone();
    })?;
    let split = Arc::new(CocoSplit::open(&cfg.data_dir, Split::Train)?);
    let train = CocoTrain::new(split.clone(), cfg.train);
    tracing::info!(
        "COCO layout in {}: {} training images with objects (of {}), {} categories, {} \
         annotations skipped as mmdet does",
        cfg.data_dir.display(),
        train.len(),
        split.len(),
        split.cat_ids().len(),
        split.skipped()
    );
    if train.is_empty() {
        return Err(CocoTaskError::config(
            "data_dir",
            format!(
                "{} has no training image with a usable object",
                split.annotations_path().display()
            ),
        ));
    }
    let groups = train.groups();
    let mut loader = DataLoader::new(
        train,
        collate_train as fn(_) -> _,
        LoaderConfig {
            batch_size: cfg.batch_size,
            shuffle: true,
            drop_last: false,
            workers: cfg.workers,
            prefetch: 2,
            seed: cfg.seed,
        },
    )?;
    if cfg.group_aspect_ratio {
        loader = loader.with_groups(groups)?;
    }
    let mut task = build_task(cfg, split.cat_ids().to_vec())?;
    let summary = Trainer::new(cfg.engine.clone(), run, cfg.seed, observer)?
        .with_metadata("task", "coco")
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

/// The corruptor of the evaluation (imagecorruptions, any size, as mmdetection's
/// `test_robustness`), with the frost textures when frost is evaluated.
fn corruptor(eval: &CocoEvalConfig) -> Result<Corruptor, CocoTaskError> {
    let corruptor = Corruptor::new(Flavor::ImageCorruptions);
    if !eval.corruptions.contains(&Corruption::Frost) {
        return Ok(corruptor);
    }
    let dir = eval.frost_dir.clone().ok_or_else(|| {
        CocoTaskError::config(
            "eval.frost_dir",
            "frost is evaluated but no frost textures folder is known (cargo xtask assets)",
        )
    })?;
    let textures = FrostTextures::new(dir);
    textures
        .verify()
        .map_err(|err| CocoTaskError::config("eval.frost_dir", err.to_string()))?;
    Ok(corruptor.with_frost_textures(textures))
}

/// Evaluates the newest checkpoint of the run in `run_dir` (settings from its `config.json`,
/// evaluation settings replaced by `eval` when given) and writes `<run_dir>/metrics.json`.
pub fn evaluate(
    run_dir: &Path,
    eval: Option<&CocoEvalConfig>,
    observer: &mut dyn Observer,
) -> Result<CellMetrics, CocoTaskError> {
    let run = RunDir::new(run_dir);
    let mut cfg: CocoConfig = run.read_config()?;
    if let Some(eval) = eval {
        cfg.eval = eval.clone();
    }
    cfg.validate()?;
    let split = Arc::new(CocoSplit::open(&cfg.data_dir, Split::Val)?);
    let mut task = build_task(&cfg, split.cat_ids().to_vec())?;
    let record = run
        .checkpointer()
        .latest()?
        .ok_or_else(|| CocoTaskError::Missing {
            path: run.root().join(rtb_train::CHECKPOINT_DIR),
            hint: "the run has no checkpoint: train it first".into(),
        })?;
    let checkpoint = Checkpointer::load(&record.path, task.device())?;
    rtb_train::TrainTask::load_state_tensors(&mut task, &checkpoint.model)?;
    let results_dir = cfg.eval.keep_results.then(|| run.root().join("results"));
    let mut metrics = evaluate_task(&task, &cfg, &split, results_dir.as_deref(), observer)?;
    metrics
        .info
        .insert("checkpoint_iteration".into(), record.iteration.into());
    let mut text = metrics.to_json();
    text.push('\n');
    rtb_train::write_atomically(&run.root().join(METRICS_FILE), text.as_bytes())?;
    Ok(metrics)
}

/// Box and mask AP of one evaluated condition, with their bootstrap replicates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CocoScores {
    /// Box AP (pycocotools' stats[0]).
    pub box_ap: f64,
    /// Mask AP (pycocotools' stats[0] of the segm evaluation).
    pub mask_ap: f64,
    /// Box AP of each bootstrap replicate.
    pub box_replicates: Vec<f64>,
    /// Mask AP of each bootstrap replicate.
    pub mask_replicates: Vec<f64>,
}

/// Box and mask AP (pycocotools' stats[0]) of `results` on the images `image_ids` of `gt`,
/// and the same over each resample of `weights` (image multiplicities in the order of the
/// sorted image ids, one vector per bootstrap replicate; the images are matched once and
/// re-accumulated per replicate). An evaluation without any detection scores 0 (pycocotools
/// cannot load an empty results list; nothing was found).
pub fn coco_ap(
    gt: &CocoGt,
    results: Vec<DetectionResult>,
    image_ids: &[i64],
    weights: &[Vec<u32>],
) -> Result<CocoScores, CocoTaskError> {
    if results.is_empty() {
        return Ok(CocoScores {
            box_replicates: vec![0.0; weights.len()],
            mask_replicates: vec![0.0; weights.len()],
            ..CocoScores::default()
        });
    }
    let detections = Detections::from_results(results, gt)?;
    let mut ap = [0.0; 2];
    let mut replicates: [Vec<f64>; 2] = Default::default();
    for (k, kind) in [IouType::Bbox, IouType::Segm].into_iter().enumerate() {
        let params = Params::new(kind).with_img_ids(image_ids.to_vec());
        let evaluation = CocoEval::new(gt, &detections, params).evaluate()?;
        // −1 (no ground truth in range) counts as nothing found.
        ap[k] = evaluation.accumulate().summarize()?.stats[0].max(0.0);
        replicates[k] = evaluation
            .weighted_stats(weights)?
            .iter()
            .map(|stats| stats[0].max(0.0))
            .collect();
    }
    let [box_replicates, mask_replicates] = replicates;
    Ok(CocoScores {
        box_ap: ap[0],
        mask_ap: ap[1],
        box_replicates,
        mask_replicates,
    })
}

/// Evaluates `task` on the validation images of `split`, clean and under every corruption ×
/// severity of `cfg.eval` (per-image seeds, corrupted at full resolution before the
/// resize); writes each condition's results JSON into `results_dir` if given; returns the
/// cell's metrics (not written).
pub fn evaluate_task(
    task: &CocoTask,
    cfg: &CocoConfig,
    split: &Arc<CocoSplit>,
    results_dir: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<CellMetrics, CocoTaskError> {
    let severities = cfg.eval.severities()?;
    let test = CocoTest::new(split.clone(), Split::Val.folder(), cfg.test);
    let count = cfg.eval.images.unwrap_or(usize::MAX).min(split.len());
    let image_ids: Vec<i64> = split.images()[..count].iter().map(|im| im.id).collect();
    // The same resamples of the evaluated images for every condition (a paired bootstrap);
    // a replicate re-accumulates the images' matches with their multiplicities, in the order
    // of the sorted image ids that COCOeval evaluates.
    let mut sorted_ids = image_ids.clone();
    sorted_ids.sort_unstable();
    sorted_ids.dedup();
    let resampler = Resampler::new(cfg.eval.seed, sorted_ids.len(), cfg.eval.bootstrap);
    let weights = resampler.all_counts();
    let corruptor = corruptor(&cfg.eval)?;
    if let Some(dir) = results_dir {
        std::fs::create_dir_all(dir).map_err(|source| CocoTaskError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let run_condition = |set: CocoTest, name: &str, observer: &mut dyn Observer| {
        let loader = DataLoader::new(
            First { inner: set, count },
            collate_test as fn(_) -> _,
            LoaderConfig {
                batch_size: cfg.eval.batch_size,
                shuffle: false,
                drop_last: false,
                workers: cfg.workers,
                prefetch: 2,
                seed: 0,
            },
        )?;
        let mut collector = DetectionCollector::new();
        run_eval(task, &loader, &mut collector, observer, name)?;
        let results = collector.into_results();
        if let Some(dir) = results_dir {
            rtb_coco_eval::write_results_file(dir.join(format!("{name}.json")), &results)?;
        }
        coco_ap(split.gt(), results, &image_ids, &weights)
    };
    let clean = run_condition(test.clone(), "clean", observer)?;
    tracing::info!(
        "clean box AP {:.4}, mask AP {:.4}",
        clean.box_ap,
        clean.mask_ap
    );
    let table = |clean: f64| MetricTable {
        clean,
        corrupted: BTreeMap::new(),
        replicates: None,
    };
    let (mut boxes, mut masks) = (table(clean.box_ap), table(clean.mask_ap));
    let mut box_replicates = Replicates::new(&resampler, clean.box_replicates);
    let mut mask_replicates = Replicates::new(&resampler, clean.mask_replicates);
    let mut partial = serde_json::Map::new();
    for &corruption in &cfg.eval.corruptions {
        let mut rows = [[f64::NAN; 5]; 2];
        let mut row_replicates: [[Vec<f64>; 5]; 2] = Default::default();
        for &severity in &severities {
            let spec = CorruptionSpec {
                corruptor: corruptor.clone(),
                corruption,
                severity,
                seed: cfg.eval.seed,
            };
            let name = format!("{corruption}-s{severity}");
            let scores = run_condition(test.clone().with_corruption(spec), &name, observer)?;
            let s = severity.index();
            rows[0][s] = scores.box_ap;
            rows[1][s] = scores.mask_ap;
            row_replicates[0][s] = scores.box_replicates;
            row_replicates[1][s] = scores.mask_replicates;
        }
        if severities.len() == 5 {
            boxes.corrupted.insert(corruption, rows[0]);
            masks.corrupted.insert(corruption, rows[1]);
            let [box_rows, mask_rows] = row_replicates;
            box_replicates.corrupted.insert(corruption, box_rows);
            mask_replicates.corrupted.insert(corruption, mask_rows);
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
    info.insert("images".into(), count.into());
    info.insert("num_classes".into(), cfg.model.num_classes.into());
    info.insert(
        "test_scale".into(),
        serde_json::json!([cfg.test.scale.0, cfg.test.scale.1]),
    );
    info.insert("metric".into(), "box AP (pycocotools stats[0])".into());
    info.insert("seed".into(), cfg.seed.into());
    if !partial.is_empty() {
        info.insert("partial_severities".into(), Value::Object(partial));
    }
    if cfg.eval.bootstrap > 0 {
        boxes.replicates = Some(box_replicates);
        masks.replicates = Some(mask_replicates);
    }
    let mut secondary = BTreeMap::new();
    secondary.insert("mask_ap".to_string(), masks);
    Ok(CellMetrics {
        cell: CellId::new(&cfg.preset, &cfg.backbone_name, Task::Coco, cfg.regime)?,
        primary: boxes,
        secondary,
        info,
    })
}
