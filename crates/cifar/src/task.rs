//! The CIFAR-10 task as the engine sees it: datasets of [`CifarSample`]s, a collate function
//! building [`CifarBatch`]es, and [`CifarTask`] implementing the engine's train and eval steps.

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{D, DType, Device, Tensor, Var};
use rtb_nn::loss::{CrossEntropyOptions, cross_entropy};
use rtb_train::{
    ClassPredictions, DataLoader, Dataset, EvalTask, Event, LoaderConfig, Observer, StepContext,
    TrainOutput, TrainTask,
};

use crate::binary::CifarImages;
use crate::error::Result;
use crate::model::Classifier;
use crate::transform::{augment, normalize, to_model_input};

/// One loaded sample.
#[derive(Debug, Clone)]
pub struct CifarSample {
    /// Index in its set.
    pub index: usize,
    /// Interleaved 32×32 RGB bytes (augmented for training); `None` when the task trains on
    /// cached features.
    pub pixels: Option<Vec<u8>>,
    /// The label.
    pub label: u8,
}

/// A batch: normalised 32×32 images on the CPU (upsampled on the device by the task).
#[derive(Debug, Clone)]
pub struct CifarBatch {
    /// Indices of the samples in their set.
    pub indices: Vec<usize>,
    /// `[N, 3, 32, 32]` f32, ImageNet-normalised; `None` for cached features.
    pub images: Option<Tensor>,
    /// Labels.
    pub labels: Vec<u32>,
}

/// Labelled images as a dataset, with optional augmentation (seeded per sample).
#[derive(Debug, Clone)]
pub struct ImageSet {
    images: Arc<CifarImages>,
    augment: bool,
    with_pixels: bool,
}

impl ImageSet {
    /// Images as they are (evaluation).
    pub fn plain(images: Arc<CifarImages>) -> Self {
        Self {
            images,
            augment: false,
            with_pixels: true,
        }
    }

    /// Training images: augmented when `augment`; without pixels when `with_pixels` is false
    /// (the task looks its cached features up by index).
    pub fn training(images: Arc<CifarImages>, augment: bool, with_pixels: bool) -> Self {
        Self {
            images,
            augment,
            with_pixels,
        }
    }
}

impl Dataset for ImageSet {
    type Sample = CifarSample;

    fn len(&self) -> usize {
        self.images.len()
    }

    fn get(&self, index: usize, seed: u64) -> rtb_train::Result<CifarSample> {
        let pixels = self.with_pixels.then(|| {
            let rgb = self.images.image_bytes(index);
            if self.augment {
                augment(rgb, seed)
            } else {
                rgb.to_vec()
            }
        });
        Ok(CifarSample {
            index,
            pixels,
            label: self.images.labels[index],
        })
    }
}

/// Builds a [`CifarBatch`] (normalisation runs in the loader's workers).
// The engine's `Collate` hands batches over by value.
#[allow(clippy::needless_pass_by_value)]
pub fn collate(samples: Vec<CifarSample>) -> rtb_train::Result<CifarBatch> {
    let images = if samples.iter().all(|s| s.pixels.is_some()) && !samples.is_empty() {
        let views: Vec<&[u8]> = samples.iter().filter_map(|s| s.pixels.as_deref()).collect();
        Some(normalize(&views)?)
    } else {
        None
    };
    Ok(CifarBatch {
        indices: samples.iter().map(|s| s.index).collect(),
        images,
        labels: samples.iter().map(|s| u32::from(s.label)).collect(),
    })
}

/// The collate function's type.
pub type CollateFn = fn(Vec<CifarSample>) -> rtb_train::Result<CifarBatch>;

/// A loader over `dataset` with [`collate`].
pub fn loader<S: Dataset<Sample = CifarSample> + 'static>(
    dataset: S,
    cfg: LoaderConfig,
) -> Result<DataLoader<S, CollateFn>> {
    Ok(DataLoader::new(dataset, collate as CollateFn, cfg)?)
}

/// The classifier with its input pipeline, as the engine trains and evaluates it.
#[derive(Debug)]
pub struct CifarTask {
    model: Classifier,
    image_size: usize,
    device: Device,
    dtype: DType,
    cached_features: Option<Tensor>,
}

impl CifarTask {
    /// A task around `model`, feeding it `image_size`² inputs of `dtype` on `device` (a half
    /// type over an f32 model is autocast, `rtb_nn::autocast`).
    pub fn new(model: Classifier, image_size: usize, device: Device, dtype: DType) -> Self {
        Self {
            model,
            image_size,
            device,
            dtype,
            cached_features: None,
        }
    }

    /// The model.
    pub fn model(&self) -> &Classifier {
        &self.model
    }

    /// The device the model and its inputs live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn inputs(&self, images: &Tensor) -> Result<Tensor> {
        to_model_input(images, self.image_size, &self.device, self.dtype)
    }

    /// Computes the backbone's pooled features of every image of `train` (no augmentation,
    /// inference mode) and trains the head on them from now on. Only valid in the
    /// fixed-feature regime without augmentation, where they do not change between epochs.
    pub fn cache_features(
        &mut self,
        train: Arc<CifarImages>,
        batch_size: usize,
        workers: usize,
        observer: &mut dyn Observer,
    ) -> Result<()> {
        let loader = loader(
            ImageSet::plain(train),
            LoaderConfig {
                batch_size,
                shuffle: false,
                drop_last: false,
                workers,
                prefetch: 2,
                seed: 0,
            },
        )?;
        let total = loader.num_batches();
        let mut parts = Vec::with_capacity(total);
        for (done, batch) in loader.epoch(0).enumerate() {
            let batch = batch?;
            let images = batch.images.as_ref().expect("plain sets carry pixels");
            let features = self
                .model
                .pooled(&self.inputs(images)?, rtb_models::Mode::Inference)?;
            parts.push(features.detach());
            observer.on_event(&Event::Phase {
                name: "caching features".into(),
                done: done + 1,
                total,
            });
        }
        self.cached_features = Some(Tensor::cat(&parts, 0)?);
        Ok(())
    }

    fn logits_train(&self, batch: &CifarBatch, ctx: &StepContext) -> Result<Tensor> {
        match (&batch.images, &self.cached_features) {
            (None, Some(cache)) => {
                let indices: Vec<u32> = batch.indices.iter().map(|&i| i as u32).collect();
                let rows = Tensor::new(indices, cache.device())?;
                self.model.head(&cache.index_select(&rows, 0)?)
            }
            (Some(images), _) => self.model.forward_train(&self.inputs(images)?, ctx.seed),
            (None, None) => Err(crate::error::CifarError::config(
                "batch",
                "a batch without images needs cached features",
            )),
        }
    }
}

impl TrainTask for CifarTask {
    type Batch = CifarBatch;

    fn trainable_vars(&self) -> Vec<(String, Var)> {
        self.model.trainable_vars()
    }

    fn trainable_roles(&self) -> Vec<(String, Var, Option<rtb_nn::optim::ParamRole>)> {
        self.model.trainable_roles()
    }

    fn state_tensors(&self) -> rtb_train::Result<BTreeMap<String, Tensor>> {
        Ok(self.model.state_tensors()?)
    }

    fn load_state_tensors(&mut self, state: &BTreeMap<String, Tensor>) -> rtb_train::Result<()> {
        Ok(self.model.load_state_tensors(state)?)
    }

    fn train_step(
        &mut self,
        batch: CifarBatch,
        ctx: &StepContext,
    ) -> rtb_train::Result<TrainOutput> {
        let logits = self.logits_train(&batch, ctx)?.to_dtype(DType::F32)?;
        let targets = Tensor::new(batch.labels.as_slice(), logits.device())?;
        let loss = cross_entropy(&logits, &targets, &CrossEntropyOptions::default())?;
        let predicted: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
        let correct = predicted
            .iter()
            .zip(&batch.labels)
            .filter(|(p, t)| p == t)
            .count();
        Ok(TrainOutput {
            loss,
            items: batch.labels.len(),
            parts: vec![(
                "train_top1".into(),
                correct as f64 / batch.labels.len().max(1) as f64,
            )],
        })
    }
}

impl EvalTask for CifarTask {
    type Batch = CifarBatch;
    type Output = ClassPredictions;

    fn eval_step(&self, batch: CifarBatch) -> rtb_train::Result<ClassPredictions> {
        let images = batch
            .images
            .as_ref()
            .ok_or_else(|| rtb_train::TrainError::Task("evaluation batches need images".into()))?;
        let logits = self.model.forward_eval(&self.inputs(images)?)?;
        let predicted: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
        Ok(ClassPredictions {
            predicted,
            targets: batch.labels,
        })
    }
}
