//! Top-1 / top-5 evaluation of a backbone with logits on the clean validation set and on
//! ImageNet-C, with images decoded and transformed in rtb-train's data loader (worker
//! threads, batches in order), and the results as a serialisable [`ImageNetResults`].
//!
//! With `bootstrap` replicates asked for ([`EvalOptions::bootstrap`]), every condition keeps
//! each image's top-1 outcome and the paired bootstrap of rtb-results resamples them:
//! [`Resampler`] draws B resamples of the evaluated images from the seed, the same for every
//! condition (a released ImageNet-C folder must hold the clean set's images, which pairing
//! checks by key), and replicate `b` of a condition is its top-1 accuracy on resample `b`,
//! an image drawn twice counting twice. They travel in [`ImageNetResults::replicates`] into
//! the [`MetricTable`] (a backbone's source table), from which the report's intervals come.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use image::RgbImage;
use rtb_corruption::{Corruption, Severity};
use rtb_models::{Backbone, Mode};
use rtb_results::{MetricTable, Replicates, Resampler};
use rtb_train::{
    Corrupted, CorruptibleSample, CorruptionSpec, DataLoader, Dataset, DatasetExt, Event,
    LoaderConfig, Observer, TrainError,
};
use serde::{Deserialize, Serialize};

use crate::dataset::{ValSet, load_rgb};
use crate::error::{ImageNetError, Result};
use crate::imagenet_c::{
    ALEXNET_CLEAN_TOP1_ERROR, CSource, CSourceInfo, GenerateC, alexnet_top1_errors,
    corruption_error, mean_over_benchmark, relative_corruption_error,
};
use crate::synsets::NUM_CLASSES;
use crate::transform::{EvalTransform, center_crop};

/// Correct predictions among the images seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TopKCounts {
    /// Images evaluated.
    pub images: usize,
    /// Images whose label is the highest logit.
    pub top1_correct: usize,
    /// Images whose label is among the five highest logits.
    pub top5_correct: usize,
}

impl TopKCounts {
    /// Top-1 accuracy as a fraction (0 when no image was seen).
    pub fn top1_accuracy(&self) -> f64 {
        ratio(self.top1_correct, self.images)
    }

    /// Top-5 accuracy as a fraction.
    pub fn top5_accuracy(&self) -> f64 {
        ratio(self.top5_correct, self.images)
    }

    /// Top-1 error as a fraction (1 − top-1 accuracy; NaN when no image was seen).
    pub fn top1_error(&self) -> f64 {
        if self.images == 0 {
            f64::NAN
        } else {
            1.0 - self.top1_accuracy()
        }
    }

    /// Top-5 error as a fraction.
    pub fn top5_error(&self) -> f64 {
        if self.images == 0 {
            f64::NAN
        } else {
            1.0 - self.top5_accuracy()
        }
    }

    /// Adds the counts of one row of logits and its label (see [`rank_of_label`]).
    pub fn add(&mut self, logits: &[f32], label: usize) {
        let rank = rank_of_label(logits, label);
        self.images += 1;
        self.top1_correct += usize::from(rank < 1);
        self.top5_correct += usize::from(rank < 5);
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The 0-based rank of `label` when the logits are sorted in decreasing order with ties
/// broken by the lower index first (so rank 0 is `argmax` as `Tensor.max(1)` returns it):
/// the number of classes with a higher logit plus the number of lower-index classes with an
/// equal one. A label outside the row ranks last.
pub fn rank_of_label(logits: &[f32], label: usize) -> usize {
    let Some(&target) = logits.get(label) else {
        return logits.len();
    };
    logits
        .iter()
        .enumerate()
        .filter(|&(j, &v)| v > target || (v == target && j < label))
        .count()
}

/// Top-1 and top-5 counts of one severity of one corruption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionResult {
    /// The corruption's name.
    pub corruption: String,
    /// The severity, 1..5.
    pub severity: u8,
    /// The counts.
    pub counts: TopKCounts,
    /// Top-1 error (fraction).
    pub top1_error: f64,
    /// Top-5 error (fraction).
    pub top5_error: f64,
}

/// One corruption over the severities evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorruptionSummary {
    /// The corruption's name.
    pub corruption: String,
    /// The severities evaluated.
    pub severities: Vec<u8>,
    /// Mean top-1 error over those severities.
    pub mean_top1_error: f64,
    /// Mean top-5 error over those severities.
    pub mean_top5_error: f64,
    /// CE over those severities (`None` for the extras, which have no AlexNet numbers).
    pub ce: Option<f64>,
    /// Relative CE over those severities.
    pub relative_ce: Option<f64>,
}

/// Everything one ImageNet / ImageNet-C evaluation measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageNetResults {
    /// The architecture evaluated.
    pub model: String,
    /// The clean images' transform.
    pub transform: EvalTransform,
    /// Clean counts.
    pub clean: TopKCounts,
    /// Clean top-1 error (fraction).
    pub clean_top1_error: f64,
    /// Clean top-5 error (fraction).
    pub clean_top5_error: f64,
    /// Where corrupted images came from (`None`: clean only).
    pub corrupted_source: Option<CSourceInfo>,
    /// Every corruption × severity evaluated, in corruption then severity order.
    pub conditions: Vec<ConditionResult>,
    /// Per corruption: mean errors, CE and relative CE.
    pub corruptions: Vec<CorruptionSummary>,
    /// mCE over the 15 benchmark corruptions (each at all five severities), else `None`.
    pub mce: Option<f64>,
    /// Relative mCE, under the same condition.
    pub relative_mce: Option<f64>,
    /// The drop in the paper's sense, 1 − mPC / clean top-1, in percent (rtb-results'
    /// `MetricTable::robustness`), under the same condition.
    pub drop_percent: Option<f64>,
    /// Paired bootstrap replicates of top-1 accuracy (clean, and each corruption evaluated
    /// at all five severities), when asked for; they go into [`metric_table`](Self::metric_table)
    /// (a backbone's `backbone.json`), not into this struct's JSON.
    #[serde(skip)]
    pub replicates: Option<Replicates>,
}

impl ImageNetResults {
    /// Assembles the results and derives the summaries from counts.
    pub fn from_counts(
        model: impl Into<String>,
        transform: EvalTransform,
        clean: TopKCounts,
        corrupted_source: Option<CSourceInfo>,
        conditions: &BTreeMap<(Corruption, Severity), TopKCounts>,
    ) -> Self {
        let clean_error = clean.top1_error();
        let mut by_corruption: BTreeMap<Corruption, Vec<(Severity, TopKCounts)>> = BTreeMap::new();
        for (&(c, s), &counts) in conditions {
            by_corruption.entry(c).or_default().push((s, counts));
        }
        let mut corruptions = Vec::new();
        let mut ce = BTreeMap::new();
        let mut relative = BTreeMap::new();
        for (&corruption, rows) in &by_corruption {
            let mut errors = [None; 5];
            for (s, counts) in rows {
                errors[s.index()] = Some(counts.top1_error());
            }
            let n = rows.len() as f64;
            let alexnet = alexnet_top1_errors(corruption);
            let ce_c = alexnet.and_then(|a| corruption_error(&errors, &a));
            let rel_c = alexnet.and_then(|a| {
                relative_corruption_error(&errors, clean_error, &a, ALEXNET_CLEAN_TOP1_ERROR)
            });
            if rows.len() == 5 {
                if let Some(v) = ce_c {
                    ce.insert(corruption, v);
                }
                if let Some(v) = rel_c {
                    relative.insert(corruption, v);
                }
            }
            corruptions.push(CorruptionSummary {
                corruption: corruption.name().to_string(),
                severities: rows.iter().map(|(s, _)| s.get()).collect(),
                mean_top1_error: rows.iter().map(|(_, c)| c.top1_error()).sum::<f64>() / n,
                mean_top5_error: rows.iter().map(|(_, c)| c.top5_error()).sum::<f64>() / n,
                ce: ce_c,
                relative_ce: rel_c,
            });
        }
        let mut results = Self {
            model: model.into(),
            transform,
            clean,
            clean_top1_error: clean_error,
            clean_top5_error: clean.top5_error(),
            corrupted_source,
            conditions: conditions
                .iter()
                .map(|(&(c, s), &counts)| ConditionResult {
                    corruption: c.name().to_string(),
                    severity: s.get(),
                    counts,
                    top1_error: counts.top1_error(),
                    top5_error: counts.top5_error(),
                })
                .collect(),
            corruptions,
            mce: mean_over_benchmark(&ce),
            relative_mce: mean_over_benchmark(&relative),
            drop_percent: None,
            replicates: None,
        };
        results.drop_percent = results
            .metric_table()
            .robustness()
            .ok()
            .map(|r| r.drop_percent);
        results
    }

    /// Top-1 accuracy (a fraction, as every rtb `MetricTable`) clean and per corruption;
    /// only corruptions evaluated at all five severities enter the table.
    pub fn metric_table(&self) -> MetricTable {
        let mut rows: BTreeMap<Corruption, [Option<f64>; 5]> = BTreeMap::new();
        for condition in &self.conditions {
            let (Ok(c), Some(s)) = (
                condition.corruption.parse::<Corruption>(),
                Severity::new(condition.severity),
            ) else {
                continue;
            };
            rows.entry(c).or_insert([None; 5])[s.index()] = Some(condition.counts.top1_accuracy());
        }
        let corrupted: BTreeMap<Corruption, [f64; 5]> = rows
            .into_iter()
            .filter_map(|(c, row)| {
                let full = row.iter().all(Option::is_some);
                full.then(|| (c, row.map(|v| v.unwrap_or(f64::NAN))))
            })
            .collect();
        // The replicates of the conditions in the table, and only those.
        let replicates = self.replicates.as_ref().map(|r| Replicates {
            corrupted: r
                .corrupted
                .iter()
                .filter(|(c, _)| corrupted.contains_key(c))
                .map(|(c, rows)| (*c, rows.clone()))
                .collect(),
            ..r.clone()
        });
        MetricTable {
            clean: self.clean.top1_accuracy(),
            corrupted,
            replicates,
        }
    }

    /// Adds paired bootstrap replicates of top-1 accuracy from each condition's per-image
    /// outcomes (`clean`, and `conditions` keyed as the counts were): B = `resampler`'s
    /// replicates; corruptions not evaluated at all five severities get none.
    pub fn with_replicates(
        mut self,
        resampler: &Resampler,
        clean: &[bool],
        conditions: &BTreeMap<(Corruption, Severity), Vec<bool>>,
    ) -> Result<Self> {
        let replicates_of = |outcomes: &[bool]| {
            let values: Vec<f64> = outcomes.iter().map(|&c| f64::from(u8::from(c))).collect();
            resampler.mean_replicates(&values)
        };
        let mut replicates = Replicates::new(resampler, replicates_of(clean)?);
        let mut rows: BTreeMap<Corruption, [Vec<f64>; 5]> = BTreeMap::new();
        for (&(corruption, severity), outcomes) in conditions {
            rows.entry(corruption).or_default()[severity.index()] = replicates_of(outcomes)?;
        }
        let b = resampler.replicates;
        replicates.corrupted = rows
            .into_iter()
            .filter(|(_, rows)| rows.iter().all(|row| row.len() == b))
            .collect();
        self.replicates = (b > 0).then_some(replicates);
        Ok(self)
    }

    /// Pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("results serialise to JSON")
    }
}

/// How to evaluate.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The clean images' transform (its crop is also the size of generated corrupted images).
    pub transform: EvalTransform,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Decoding threads (0: decode in the calling thread).
    pub workers: usize,
    /// Corruptions to evaluate (with a released source: those present among them).
    pub corruptions: Vec<Corruption>,
    /// Severities to evaluate.
    pub severities: Vec<Severity>,
    /// Evaluate only the first `n` images (in the set's order) of the clean set and of each
    /// released folder, which list the same images in the same order when complete.
    pub max_images: Option<usize>,
    /// Paired bootstrap replicates of top-1 accuracy per condition (0: none).
    pub bootstrap: usize,
    /// The seed of the bootstrap resamples (a preset's evaluation seed).
    pub bootstrap_seed: u64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            transform: EvalTransform::timm_default(),
            batch_size: 64,
            workers: 2,
            corruptions: Corruption::BENCHMARK.to_vec(),
            severities: Severity::ALL.to_vec(),
            max_images: None,
            bootstrap: 0,
            bootstrap_seed: 0,
        }
    }
}

/// One image ready for the network: `[3, S, S]` normalised values and the label.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Planar normalised values.
    pub values: Vec<f32>,
    /// The class index.
    pub label: usize,
}

/// A batch of prepared images (values concatenated).
#[derive(Debug, Clone)]
pub struct PreparedBatch {
    /// `[N, 3, S, S]` values.
    pub values: Vec<f32>,
    /// The labels.
    pub labels: Vec<usize>,
}

fn collate(samples: Vec<Prepared>) -> rtb_train::Result<PreparedBatch> {
    let mut batch = PreparedBatch {
        values: Vec::with_capacity(samples.iter().map(|s| s.values.len()).sum()),
        labels: Vec::with_capacity(samples.len()),
    };
    for sample in samples {
        batch.values.extend_from_slice(&sample.values);
        batch.labels.push(sample.label);
    }
    Ok(batch)
}

fn data_err(index: usize, err: &ImageNetError) -> TrainError {
    TrainError::Data {
        index,
        message: err.to_string(),
    }
}

/// Clean images: decode, resize, crop, normalise.
#[derive(Debug, Clone)]
pub struct CleanImages {
    set: Arc<ValSet>,
    transform: EvalTransform,
}

impl CleanImages {
    /// The images of `set` through `transform`.
    pub fn new(set: Arc<ValSet>, transform: EvalTransform) -> Self {
        Self { set, transform }
    }
}

impl Dataset for CleanImages {
    type Sample = Prepared;

    fn len(&self) -> usize {
        self.set.len()
    }

    fn get(&self, index: usize, _seed: u64) -> rtb_train::Result<Prepared> {
        let item = &self.set.images()[index];
        let prepare = || -> Result<Prepared> {
            let image = load_rgb(&item.path)?;
            Ok(Prepared {
                values: self.transform.apply(&image)?,
                label: item.label,
            })
        };
        prepare().map_err(|e| data_err(index, &e))
    }
}

/// Released ImageNet-C images: decode, then only `ToTensor` + `Normalize` (an image larger
/// than the crop is centre-cropped as `CenterCrop` would; a smaller one is an error).
#[derive(Debug, Clone)]
pub struct ReleasedImages {
    set: Arc<ValSet>,
    transform: EvalTransform,
}

impl ReleasedImages {
    /// The images of one released corruption × severity folder.
    pub fn new(set: Arc<ValSet>, transform: EvalTransform) -> Self {
        Self { set, transform }
    }
}

impl Dataset for ReleasedImages {
    type Sample = Prepared;

    fn len(&self) -> usize {
        self.set.len()
    }

    fn get(&self, index: usize, _seed: u64) -> rtb_train::Result<Prepared> {
        let item = &self.set.images()[index];
        let prepare = || -> Result<Prepared> {
            let image = load_rgb(&item.path)?;
            let side = self.transform.crop;
            if image.width() < side || image.height() < side {
                return Err(ImageNetError::layout(
                    &item.path,
                    format!(
                        "a {}×{} image in an ImageNet-C folder: expected {side}×{side}",
                        image.width(),
                        image.height()
                    ),
                ));
            }
            let image = if image.dimensions() == (side, side) {
                image
            } else {
                center_crop(&image, side)
            };
            Ok(Prepared {
                values: self.transform.normalize(&image),
                label: item.label,
            })
        };
        prepare().map_err(|e| data_err(index, &e))
    }
}

/// A clean evaluation crop (8-bit) with its seed key, as the corruption step takes it.
#[derive(Debug, Clone)]
pub struct KeyedCrop {
    /// The crop.
    pub image: RgbImage,
    /// `<wnid>/<file name>`.
    pub key: PathBuf,
    /// The class index.
    pub label: usize,
}

impl CorruptibleSample for KeyedCrop {
    fn image_mut(&mut self) -> &mut RgbImage {
        &mut self.image
    }
    fn seed_key(&self) -> PathBuf {
        self.key.clone()
    }
}

/// Clean images as 8-bit evaluation crops (decode, resize, crop), before corruption.
#[derive(Debug, Clone)]
pub struct CleanCrops {
    set: Arc<ValSet>,
    transform: EvalTransform,
}

impl CleanCrops {
    /// The crops of `set` under `transform`.
    pub fn new(set: Arc<ValSet>, transform: EvalTransform) -> Self {
        Self { set, transform }
    }
}

impl Dataset for CleanCrops {
    type Sample = KeyedCrop;

    fn len(&self) -> usize {
        self.set.len()
    }

    fn get(&self, index: usize, _seed: u64) -> rtb_train::Result<KeyedCrop> {
        let item = &self.set.images()[index];
        let prepare = || -> Result<KeyedCrop> {
            let image = load_rgb(&item.path)?;
            Ok(KeyedCrop {
                image: self.transform.crop_u8(&image)?,
                key: item.key.clone(),
                label: item.label,
            })
        };
        prepare().map_err(|e| data_err(index, &e))
    }
}

/// The generated ImageNet-C image of one clean image: its evaluation crop, corrupted with the
/// per-image seed, then the optional JPEG round trip (see [`crate::imagenet_c`]).
pub fn generate_one(
    generate: &GenerateC,
    crop: &RgbImage,
    key: &std::path::Path,
    corruption: Corruption,
    severity: Severity,
) -> Result<RgbImage> {
    let mut rng = rtb_corruption::RandomState::new(rtb_corruption::image_seed(
        generate.seed,
        key,
        corruption,
        severity,
    ));
    let corrupted = generate
        .corruptor
        .corrupt(crop, corruption, severity, &mut rng)?;
    Ok(match generate.jpeg_quality {
        Some(quality) => rtb_corruption::jpeg_round_trip(&corrupted, quality),
        None => corrupted,
    })
}

/// One condition's top-k counts and each image's top-1 outcome, in the dataset's order (what
/// a bootstrap replicate resamples).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConditionScores {
    /// The counts.
    pub counts: TopKCounts,
    /// Whether image `i`'s label is its highest logit.
    pub top1_correct: Vec<bool>,
}

/// Runs `model` over every batch of `dataset` and counts top-1 / top-5 hits, reporting
/// [`Event::Phase`] `phase` after each batch.
pub fn count_topk<D>(
    model: &dyn Backbone,
    dataset: D,
    opts: &EvalOptions,
    device: &Device,
    observer: &mut dyn Observer,
    phase: &str,
) -> Result<ConditionScores>
where
    D: Dataset<Sample = Prepared> + 'static,
{
    let side = opts.transform.crop as usize;
    let loader = DataLoader::new(
        dataset,
        collate,
        LoaderConfig {
            batch_size: opts.batch_size,
            shuffle: false,
            drop_last: false,
            workers: opts.workers,
            prefetch: 2,
            seed: 0,
        },
    )?;
    let total = loader.num_batches();
    let mut scores = ConditionScores::default();
    for (done, batch) in loader.epoch(0).enumerate() {
        let batch = batch?;
        let n = batch.labels.len();
        let xs = Tensor::from_vec(batch.values, (n, 3, side, side), device)?;
        let out = model.forward(&xs, Mode::Inference)?;
        let logits = out.logits.ok_or_else(|| ImageNetError::Model {
            model: model.arch_name(),
            message: "the configuration has no classifier, so there are no logits".into(),
        })?;
        let rows = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        for (row, &label) in rows.iter().zip(&batch.labels) {
            let before = scores.counts.top1_correct;
            scores.counts.add(row, label);
            scores
                .top1_correct
                .push(scores.counts.top1_correct > before);
        }
        observer.on_event(&Event::Phase {
            name: phase.to_string(),
            done: done + 1,
            total,
        });
    }
    Ok(scores)
}

fn check_model(model: &dyn Backbone) -> Result<()> {
    match model.num_classes() {
        Some(NUM_CLASSES) => Ok(()),
        other => Err(ImageNetError::Model {
            model: model.arch_name(),
            message: match other {
                Some(n) => format!("has {n} classes; ImageNet needs a 1000-class classifier"),
                None => "has no classifier; ImageNet needs 1000-class logits".into(),
            },
        }),
    }
}

fn limit(set: ValSet, opts: &EvalOptions) -> ValSet {
    match opts.max_images {
        Some(n) => set.truncated(n),
        None => set,
    }
}

fn check_options(opts: &EvalOptions) -> Result<()> {
    if opts.batch_size == 0 {
        return Err(ImageNetError::config("batch_size", "must be at least 1"));
    }
    if opts.max_images == Some(0) {
        return Err(ImageNetError::config("max_images", "must be at least 1"));
    }
    Ok(())
}

/// Evaluates `model` (1000-class logits) on the clean images of `val`.
pub fn evaluate_clean(
    model: &dyn Backbone,
    val: &ValSet,
    opts: &EvalOptions,
    device: &Device,
    observer: &mut dyn Observer,
) -> Result<TopKCounts> {
    Ok(score_clean(model, val, opts, device, observer)?.counts)
}

fn score_clean(
    model: &dyn Backbone,
    val: &ValSet,
    opts: &EvalOptions,
    device: &Device,
    observer: &mut dyn Observer,
) -> Result<ConditionScores> {
    check_model(model)?;
    check_options(opts)?;
    let set = Arc::new(limit(val.clone(), opts));
    count_topk(
        model,
        CleanImages::new(set, opts.transform.clone()),
        opts,
        device,
        observer,
        "clean",
    )
}

/// A released folder pairs with the clean set when it holds the same images in the same
/// order (both are sorted by `<wnid>/<file name>`); the bootstrap resamples image indices.
fn check_paired(clean: &ValSet, folder: &ValSet, dir: &std::path::Path) -> Result<()> {
    let differs = clean
        .images()
        .iter()
        .zip(folder.images())
        .find(|(a, b)| a.key != b.key);
    if clean.len() == folder.len() && differs.is_none() {
        return Ok(());
    }
    let first = differs
        .map(|(a, b)| {
            format!(
                "; {} where the clean set has {}",
                b.key.display(),
                a.key.display()
            )
        })
        .unwrap_or_default();
    let detail = format!(
        "{} images, the clean set {}{first}",
        folder.len(),
        clean.len()
    );
    Err(ImageNetError::layout(
        dir,
        format!(
            "bootstrap replicates pair each image with its clean counterpart, but this folder \
             holds other images ({detail}); evaluate without bootstrap or complete the folder"
        ),
    ))
}

/// Evaluates `model` on the clean images of `val` and, when `corrupted` is given, on every
/// corruption × severity of `opts` from that source (a released folder contributes the
/// conditions it has among them; asking for one it lacks is an error naming the folder).
pub fn evaluate(
    model: &dyn Backbone,
    val: &ValSet,
    corrupted: Option<&CSource>,
    opts: &EvalOptions,
    device: &Device,
    observer: &mut dyn Observer,
) -> Result<ImageNetResults> {
    let clean = score_clean(model, val, opts, device, observer)?;
    let mut conditions = BTreeMap::new();
    let mut outcomes = BTreeMap::new();
    let set = Arc::new(limit(val.clone(), opts));
    if let Some(source) = corrupted {
        for &corruption in &opts.corruptions {
            for &severity in &opts.severities {
                let phase = format!("{corruption} s{severity}");
                let counts = match source {
                    CSource::Released(released) => {
                        let folder = Arc::new(limit(released.set(corruption, severity)?, opts));
                        if opts.bootstrap > 0 {
                            check_paired(&set, &folder, &released.dir(corruption, severity))?;
                        }
                        count_topk(
                            model,
                            ReleasedImages::new(folder, opts.transform.clone()),
                            opts,
                            device,
                            observer,
                            &phase,
                        )?
                    }
                    CSource::Generated(generate) => {
                        let spec = CorruptionSpec {
                            corruptor: generate.corruptor.clone(),
                            corruption,
                            severity,
                            seed: generate.seed,
                        };
                        let transform = opts.transform.clone();
                        let quality = generate.jpeg_quality;
                        let dataset =
                            Corrupted::new(CleanCrops::new(set.clone(), transform.clone()), spec)
                                .map(
                                    move |crop: KeyedCrop, _, _| -> rtb_train::Result<Prepared> {
                                        let image = match quality {
                                            Some(q) => {
                                                rtb_corruption::jpeg_round_trip(&crop.image, q)
                                            }
                                            None => crop.image,
                                        };
                                        Ok(Prepared {
                                            values: transform.normalize(&image),
                                            label: crop.label,
                                        })
                                    },
                                );
                        count_topk(model, dataset, opts, device, observer, &phase)?
                    }
                };
                conditions.insert((corruption, severity), counts.counts);
                outcomes.insert((corruption, severity), counts.top1_correct);
            }
        }
    }
    let results = ImageNetResults::from_counts(
        model.arch_name(),
        opts.transform.clone(),
        clean.counts,
        corrupted.map(CSource::info),
        &conditions,
    );
    if opts.bootstrap == 0 {
        return Ok(results);
    }
    let resampler = Resampler::new(opts.bootstrap_seed, set.len(), opts.bootstrap);
    results.with_replicates(&resampler, &clean.top1_correct, &outcomes)
}
