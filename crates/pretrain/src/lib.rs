//! `rtb-pretrain`: the small backbones of the offline presets, pretrained on the synthetic
//! source task (rtb-synth's 64×64 shapes) the way the paper's backbones were trained on
//! ImageNet — a regular one, two robustified by augmentation, and a Swin — then evaluated on
//! the source task clean and under every corruption × severity.
//!
//! - [`Augment`]: `standard` (crop + flip), `noise` (ANT-like: Gaussian, uniform or speckle
//!   noise of random σ on a fraction of the images), `augmix` (AugMix chains of PIL-like
//!   operations mixed with Dirichlet/Beta weights, optionally the Jensen–Shannon loss).
//! - [`PretrainTask`]: the backbone with its own classifier, trained from seeded weights by
//!   rtb-train's engine (checkpoints, bit-identical resume).
//! - [`generate_source_c`]: the corrupted validation sets, cached once per preset.
//! - [`pretrain`]: the whole step behind `rtb backbone`: train into `<backbone>/pretrain/`,
//!   write `backbone.safetensors` (canonical names, classifier included, as an ImageNet
//!   checkpoint would be), evaluate, and write `backbone.json` last (its presence marks the
//!   step finished).
//!
//! Depends on rtb-models, rtb-train, rtb-synth, rtb-corruption and rtb-results; never on a
//! downstream task crate, the CLI or the orchestrator.
//!
//! ```
//! use rtb_pretrain::Augment;
//! // The AugMix recipe with the consistency loss yields three views per image.
//! let augment: Augment = serde_json::from_str(r#"{"kind": "augmix", "jsd": true}"#)?;
//! let rgb = vec![128u8; 16 * 16 * 3];
//! let views = augment.apply(&rgb, 16, 42);
//! assert_eq!(views.len(), 3);
//! assert_eq!(views[0].len(), 3 * 16 * 16);
//! // Same seed, same bytes.
//! assert_eq!(views, augment.apply(&rgb, 16, 42));
//! # Ok::<(), serde_json::Error>(())
//! ```
#![deny(missing_docs)]

mod augment;
mod data;
mod error;
mod task;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use rtb_models::ArchConfig;
use rtb_results::{BackboneRecord, MetricTable, Replicates, Resampler};
use rtb_train::{DataLoader, DeviceChoice, EngineConfig, LoaderConfig, Observer, RunDir, Trainer};
use serde::{Deserialize, Serialize};

pub use augment::{Augment, Draws, NoiseKind, Op, apply_op, augmix, crop_flip};
pub use data::{
    Batch, Images, MEAN, STD, Sample, SourceCSpec, TrainSet, batch_tensor, collate,
    generate_source_c, image_key, normalize_planar, source_c_file,
};
pub use error::{PretrainError, Result};
pub use task::{PretrainTask, argmax, jensen_shannon};

/// Where the source task's files live inside a preset's data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePaths {
    /// `train.bin`.
    pub train: PathBuf,
    /// `val.bin`.
    pub val: PathBuf,
    /// The source-C folder.
    pub corrupted: PathBuf,
}

impl SourcePaths {
    /// `<data>/source/{train,val}.bin` and `<data>/source-c/`.
    pub fn in_data_dir(data: &Path) -> Self {
        Self {
            train: data.join("source").join("train.bin"),
            val: data.join("source").join("val.bin"),
            corrupted: data.join("source-c"),
        }
    }
}

/// One backbone's pretraining: what `config.json` of `<backbone>/pretrain/` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    /// The preset.
    pub preset: String,
    /// The backbone's name in the results store.
    pub backbone_name: String,
    /// The paper's row it stands for.
    pub paper_row: Option<String>,
    /// One line for the report.
    pub description: String,
    /// The source task's name (`shapes64`).
    pub source_task: String,
    /// The architecture (its classifier is sized to the source task's classes).
    pub arch: ArchConfig,
    /// The source task's files.
    pub source: SourcePaths,
    /// The recipe.
    pub augment: Augment,
    /// Images per batch.
    pub batch_size: usize,
    /// Loader worker threads.
    pub workers: usize,
    /// The run seed (initial weights, data order, augmentation, DropPath).
    pub seed: u64,
    /// Device.
    pub device: DeviceChoice,
    /// Epochs, optimizer, schedule, checkpoints.
    pub engine: EngineConfig,
    /// The source-task evaluation.
    pub eval: SourceCSpec,
    /// Evaluation batch size.
    pub eval_batch_size: usize,
    /// Frost textures' folder (for the frost corruption).
    pub frost_dir: Option<PathBuf>,
    /// Paired bootstrap replicates of the source-task evaluation (0: none), resampled from
    /// `eval.seed`.
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
}

fn default_bootstrap() -> usize {
    rtb_results::DEFAULT_REPLICATES
}

impl PretrainConfig {
    /// Checks the values the pipeline relies on.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size < 2 {
            return Err(PretrainError::Config {
                field: "batch_size".into(),
                message: "needs at least 2 images (BatchNorm statistics)".into(),
            });
        }
        if self.eval_batch_size == 0 {
            return Err(PretrainError::Config {
                field: "eval_batch_size".into(),
                message: "must be at least 1".into(),
            });
        }
        self.augment
            .validate()
            .map_err(|message| PretrainError::Config {
                field: "augment".into(),
                message,
            })?;
        self.engine.validate()?;
        self.eval.corruptions()?;
        self.eval.severities()?;
        self.eval.flavor()?;
        rtb_results::CellId::new(
            &self.preset,
            &self.backbone_name,
            rtb_results::Task::Cifar10,
            rtb_results::Regime::Fixed,
        )?;
        Ok(())
    }
}

/// What [`pretrain`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Pretrained {
    /// `backbone.safetensors`.
    pub weights: PathBuf,
    /// `backbone.json`.
    pub record: PathBuf,
    /// The source-task table.
    pub table: MetricTable,
}

/// Writes `config.json` or checks that the existing one is the same run.
fn claim(run: &RunDir, cfg: &PretrainConfig) -> Result<()> {
    if run.config_path().exists() {
        let existing: PretrainConfig = run.read_config()?;
        if &existing != cfg {
            return Err(PretrainError::Config {
                field: run.config_path().display().to_string(),
                message: "the run directory was made with another configuration; remove it \
                          (or use --no-resume) to start over"
                    .into(),
            });
        }
        return Ok(());
    }
    run.write_config(cfg)?;
    Ok(())
}

/// Top-1 of `task` on `images`, in batches of `batch_size`.
pub fn accuracy(task: &PretrainTask, images: &Images, batch_size: usize) -> Result<f64> {
    let correct = correctness(task, images, batch_size)?;
    Ok(correct.iter().sum::<f64>() / correct.len() as f64)
}

/// Per-image top-1 correctness (1.0 or 0.0) of `task` on `images`, in their order; an error
/// for an empty set.
pub fn correctness(task: &PretrainTask, images: &Images, batch_size: usize) -> Result<Vec<f64>> {
    if images.is_empty() {
        return Err(PretrainError::Config {
            field: "eval".into(),
            message: "no images to evaluate".into(),
        });
    }
    let mut correct = Vec::with_capacity(images.len());
    let mut start = 0;
    while start < images.len() {
        let end = (start + batch_size).min(images.len());
        let batch = batch_tensor(images, start..end, &Device::Cpu)?;
        let predicted = argmax(&task.logits(&batch)?)?;
        correct.extend(
            predicted
                .iter()
                .zip(&images.labels[start..end])
                .map(|(p, l)| f64::from(u8::from(*p == u32::from(*l)))),
        );
        start = end;
    }
    Ok(correct)
}

/// Evaluates `task` on the clean validation images and on every corrupted set of `files`
/// (each the same images as `val`, corrupted), with `bootstrap` paired replicates per
/// condition resampled from `seed` (none for 0).
pub fn evaluate_source(
    task: &PretrainTask,
    val: &Images,
    files: &BTreeMap<(rtb_corruption::Corruption, rtb_corruption::Severity), PathBuf>,
    batch_size: usize,
    (seed, bootstrap): (u64, usize),
    progress: &mut dyn FnMut(usize, usize),
) -> Result<MetricTable> {
    let resampler = Resampler::new(seed, val.len(), bootstrap);
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    let clean_values = correctness(task, val, batch_size)?;
    let mut replicates = Replicates::new(&resampler, resampler.mean_replicates(&clean_values)?);
    let mut corrupted: BTreeMap<rtb_corruption::Corruption, [f64; 5]> = BTreeMap::new();
    let total = files.len();
    for (done, ((corruption, severity), path)) in files.iter().enumerate() {
        let images = Images::read(path)?;
        let values = correctness(task, &images, batch_size)?;
        corrupted.entry(*corruption).or_insert([f64::NAN; 5])[severity.index()] = mean(&values);
        replicates.corrupted.entry(*corruption).or_default()[severity.index()] =
            resampler.mean_replicates(&values)?;
        progress(done + 1, total);
    }
    // Only corruptions at all five severities have replicates to pair.
    replicates
        .corrupted
        .retain(|_, rows| rows.iter().all(|row| row.len() == bootstrap));
    Ok(MetricTable {
        clean: mean(&clean_values),
        corrupted,
        replicates: (bootstrap > 0).then_some(replicates),
    })
}

/// Saves `tensors` as safetensors atomically (temporary name, then rename).
pub fn save_weights(tensors: &BTreeMap<String, Tensor>, path: &Path) -> Result<()> {
    let io = |source| PretrainError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = path.with_extension("safetensors.tmp");
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<Result<_>>()?;
    candle_core::safetensors::save(&map, &tmp)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Pretrains the backbone of `cfg` in `run_dir` (resuming from its newest checkpoint),
/// writes `backbone_dir/backbone.safetensors`, evaluates it on the source task and writes
/// `<runs>/<preset>/<backbone>/backbone.json` last. `runs` is the results store root.
pub fn pretrain(
    cfg: &PretrainConfig,
    runs: &Path,
    observer: &mut dyn Observer,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Pretrained> {
    cfg.validate()?;
    let backbone_dir = runs.join(&cfg.preset).join(&cfg.backbone_name);
    let run = RunDir::new(backbone_dir.join("pretrain"));
    claim(&run, cfg)?;
    let device = cfg.device.device()?;
    let train = Arc::new(Images::read(&cfg.source.train)?);
    let val = Images::read(&cfg.source.val)?;
    if train.side != val.side || train.num_classes != val.num_classes {
        return Err(PretrainError::Data {
            path: cfg.source.val.clone(),
            message: format!(
                "{}×{} images of {} classes, the training split has {}×{} of {}",
                val.side, val.side, val.num_classes, train.side, train.side, train.num_classes
            ),
        });
    }
    let mut task = PretrainTask::new(
        &cfg.arch,
        train.num_classes,
        rtb_train::seed::derive_seed(cfg.seed, rtb_train::seed::Stream::Init, &[0]),
        cfg.augment.jsd_weight(),
        &device,
    )?;
    let loader = DataLoader::new(
        TrainSet {
            images: train.clone(),
            augment: cfg.augment.clone(),
        },
        collate,
        LoaderConfig {
            batch_size: cfg.batch_size,
            shuffle: true,
            // BatchNorm in train mode needs more than one image per batch.
            drop_last: true,
            workers: cfg.workers,
            prefetch: 2,
            seed: cfg.seed,
        },
    )?;
    Trainer::new(cfg.engine.clone(), run, cfg.seed, observer)?
        .with_metadata("task", "pretrain")
        .fit(&mut task, &loader, None)?;

    let weights = backbone_dir
        .join(rtb_results::BACKBONE_FILE)
        .with_file_name("backbone.safetensors");
    save_weights(&task.weights(), &weights)?;

    let files = generate_source_c(
        &val,
        &cfg.source.corrupted,
        &cfg.eval,
        cfg.frost_dir.as_deref(),
        &mut |done, total| progress("corrupting", done, total),
    )?;
    let val = cfg.eval.images.map_or(val.clone(), |n| val.truncated(n));
    let table = evaluate_source(
        &task,
        &val,
        &files,
        cfg.eval_batch_size,
        (cfg.eval.seed, cfg.bootstrap),
        &mut |done, total| progress("evaluating", done, total),
    )?;
    let record = BackboneRecord {
        preset: cfg.preset.clone(),
        backbone: cfg.backbone_name.clone(),
        paper_row: cfg.paper_row.clone(),
        description: cfg.description.clone(),
        source_task: cfg.source_task.clone(),
        source: Some(table.clone()),
        published: None,
    }
    .write(runs)?;
    Ok(Pretrained {
        weights,
        record,
        table,
    })
}
