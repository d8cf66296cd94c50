//! COCO datasets on rtb-train's [`Dataset`] trait: [`CocoTrain`] (resized, flipped,
//! normalised images with their targets; flips drawn from the per-sample seed) and
//! [`CocoTest`] (optionally corrupted at full resolution, then resized), with their collates.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use image::RgbImage;
use rtb_detection::image_batch::ImageBatch;
use rtb_train::seed::SplitMix64;
use rtb_train::{CorruptibleSample, CorruptionSpec, Dataset, TrainError};

use crate::config::{TestPipeline, TrainPipeline};
use crate::dataset::{CocoSplit, ImageInfo, instance_mask};
use crate::error::CocoTaskError;
use crate::transforms::{Targets, normalize, resize_image, train_transform};

/// Decodes an image file (format from its content) to 8-bit RGB, with the pixels of
/// `cv2.imread` for JPEGs (rtb-corruption's libjpeg-turbo-exact decoder), and checks its size
/// against the instances file.
pub fn load_image(path: &Path, info: &ImageInfo) -> Result<RgbImage, CocoTaskError> {
    let bytes = std::fs::read(path).map_err(|source| CocoTaskError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let image = rtb_corruption::decode_rgb(&bytes).map_err(|message| CocoTaskError::Decode {
        path: path.to_path_buf(),
        message,
    })?;
    if image.dimensions() != (info.width, info.height) {
        return Err(CocoTaskError::SizeMismatch {
            path: path.to_path_buf(),
            image_id: info.id,
            width: image.width(),
            height: image.height(),
            expected_width: info.width,
            expected_height: info.height,
        });
    }
    Ok(image)
}

fn data_error(index: usize, err: &CocoTaskError) -> TrainError {
    TrainError::Data {
        index,
        message: err.to_string(),
    }
}

/// One training sample.
#[derive(Debug, Clone)]
pub struct CocoTrainSample {
    /// `[3, h, w]` f32, resized and normalised (padding comes with the batch).
    pub image: Tensor,
    /// Boxes, labels and masks at the resized (and possibly flipped) image's size.
    pub targets: Targets,
    /// The image id.
    pub image_id: i64,
    /// Whether the flip was drawn.
    pub flipped: bool,
}

/// The training images of a split (those with instances, [`CocoSplit::train_indices`])
/// through the train pipeline. Sample `i` loaded with seed `s` draws its flip from
/// `SplitMix64::new(s)`: same seed, same bytes.
#[derive(Debug, Clone)]
pub struct CocoTrain {
    split: Arc<CocoSplit>,
    indices: Vec<usize>,
    cfg: TrainPipeline,
}

impl CocoTrain {
    /// The training images of `split` under `cfg`.
    pub fn new(split: Arc<CocoSplit>, cfg: TrainPipeline) -> Self {
        let indices = split.train_indices();
        Self {
            split,
            indices,
            cfg,
        }
    }

    /// Each sample's aspect-ratio group: 1 for wide images (`width / height > 1`), else 0,
    /// as mmdet's `flag`.
    pub fn groups(&self) -> Vec<u8> {
        self.indices
            .iter()
            .map(|&i| {
                let im = &self.split.images()[i];
                u8::from(im.width > im.height)
            })
            .collect()
    }

    /// The split.
    pub fn split(&self) -> &CocoSplit {
        &self.split
    }

    /// Loads sample `index` (the `index`-th training image) with `seed`.
    pub fn load(&self, index: usize, seed: u64) -> Result<CocoTrainSample, CocoTaskError> {
        let &at = self.indices.get(index).ok_or_else(|| {
            CocoTaskError::config(
                "index",
                format!("{index} is past the {} training images", self.indices.len()),
            )
        })?;
        let info = &self.split.images()[at];
        let path = self.split.image_path(at);
        let image = load_image(&path, info)?;
        let instances = self.split.instances(at);
        let masks = instances
            .iter()
            .map(|inst| instance_mask(inst, info, self.split.annotations_path()))
            .collect::<Result<Vec<_>, _>>()?;
        let targets = Targets {
            // mmdet keeps boxes as float32.
            boxes: instances.iter().map(|i| i.bbox.map(|v| v as f32)).collect(),
            labels: instances.iter().map(|i| i.label).collect(),
            masks,
        };
        let mut rng = SplitMix64::new(seed);
        let flipped = rng.uniform() < self.cfg.flip_ratio;
        let (image, targets) =
            train_transform(&image, &targets, self.cfg.scale, flipped).map_err(|err| {
                CocoTaskError::Transform {
                    path: path.clone(),
                    message: err.to_string(),
                }
            })?;
        let (w, h) = (image.width() as usize, image.height() as usize);
        Ok(CocoTrainSample {
            image: Tensor::from_vec(normalize(&image), (3, h, w), &Device::Cpu)?,
            targets,
            image_id: info.id,
            flipped,
        })
    }
}

impl Dataset for CocoTrain {
    type Sample = CocoTrainSample;

    fn len(&self) -> usize {
        self.indices.len()
    }

    fn get(&self, index: usize, seed: u64) -> rtb_train::Result<CocoTrainSample> {
        self.load(index, seed)
            .map_err(|err| data_error(index, &err))
    }
}

/// A training batch: the samples of one optimizer step (split into micro-batches and padded
/// by the task).
#[derive(Debug, Clone)]
pub struct CocoTrainBatch {
    /// The samples, in loader order.
    pub samples: Vec<CocoTrainSample>,
}

/// Keeps the samples together (the task pads each micro-batch on its own, as mmdet pads per
/// GPU).
pub fn collate_train(samples: Vec<CocoTrainSample>) -> rtb_train::Result<CocoTrainBatch> {
    Ok(CocoTrainBatch { samples })
}

/// A decoded evaluation image before resizing, with the key its corruption seed derives from.
#[derive(Debug, Clone)]
pub struct CocoRawSample {
    /// The full-resolution image, 8-bit RGB.
    pub image: RgbImage,
    /// The image's path relative to the dataset root, e.g. `val2017/000000000139.jpg`.
    pub key: PathBuf,
}

impl CorruptibleSample for CocoRawSample {
    fn image_mut(&mut self) -> &mut RgbImage {
        &mut self.image
    }
    fn seed_key(&self) -> PathBuf {
        self.key.clone()
    }
}

/// One evaluation sample.
#[derive(Debug, Clone)]
pub struct CocoTestSample {
    /// `[3, h, w]` f32 at the test scale, normalised.
    pub image: Tensor,
    /// `(height, width)` of the original image (detections are mapped back to it).
    pub original: (usize, usize),
    /// The image id.
    pub image_id: i64,
}

/// The images of a split through the test pipeline, optionally corrupted as mmdetection's
/// `test_robustness` does: on the decoded full-resolution RGB image, before the resize, with
/// the per-image seed of [`rtb_corruption::image_seed`] (run seed, relative path, corruption,
/// severity). Every image is kept, with or without objects.
#[derive(Debug, Clone)]
pub struct CocoTest {
    split: Arc<CocoSplit>,
    folder: PathBuf,
    cfg: TestPipeline,
    corruption: Option<CorruptionSpec>,
}

impl CocoTest {
    /// The images of `split` (whose images live in the folder named `folder` under the
    /// dataset root, the corruption seeds' key prefix) under `cfg`.
    pub fn new(split: Arc<CocoSplit>, folder: &str, cfg: TestPipeline) -> Self {
        Self {
            split,
            folder: PathBuf::from(folder),
            cfg,
            corruption: None,
        }
    }

    /// The same images corrupted with `spec`.
    pub fn with_corruption(mut self, spec: CorruptionSpec) -> Self {
        self.corruption = Some(spec);
        self
    }

    /// Decodes image `index` without resizing or corruption.
    pub fn load_raw(&self, index: usize) -> Result<CocoRawSample, CocoTaskError> {
        let info = self.split.images().get(index).ok_or_else(|| {
            CocoTaskError::config(
                "index",
                format!("{index} is past the {} images", self.split.len()),
            )
        })?;
        let image = load_image(&self.split.image_path(index), info)?;
        Ok(CocoRawSample {
            image,
            key: self.folder.join(&info.file_name),
        })
    }

    /// Loads, corrupts (if configured), resizes and normalises image `index`.
    pub fn load(&self, index: usize) -> Result<CocoTestSample, CocoTaskError> {
        let mut raw = self.load_raw(index)?;
        if let Some(spec) = &self.corruption {
            spec.apply(&mut raw, index)?;
        }
        let (oh, ow) = (raw.image.height() as usize, raw.image.width() as usize);
        let (resized, _) =
            resize_image(&raw.image, self.cfg.scale).map_err(|err| CocoTaskError::Transform {
                path: self.split.image_path(index),
                message: err.to_string(),
            })?;
        let (w, h) = (resized.width() as usize, resized.height() as usize);
        Ok(CocoTestSample {
            image: Tensor::from_vec(normalize(&resized), (3, h, w), &Device::Cpu)?,
            original: (oh, ow),
            image_id: self.split.images()[index].id,
        })
    }
}

impl Dataset for CocoTest {
    type Sample = CocoTestSample;

    fn len(&self) -> usize {
        self.split.len()
    }

    fn get(&self, index: usize, _seed: u64) -> rtb_train::Result<CocoTestSample> {
        self.load(index).map_err(|err| data_error(index, &err))
    }
}

/// A batch of evaluation images, padded to 32.
#[derive(Debug, Clone)]
pub struct CocoTestBatch {
    /// The padded images with their resized and original sizes.
    pub images: ImageBatch,
    /// Each image's id.
    pub image_ids: Vec<i64>,
}

/// Pads evaluation samples into one [`ImageBatch`] (size divisor 32).
pub fn collate_test(samples: Vec<CocoTestSample>) -> rtb_train::Result<CocoTestBatch> {
    let err = |message: String| TrainError::Data { index: 0, message };
    let images: Vec<Tensor> = samples.iter().map(|s| s.image.clone()).collect();
    let batch = ImageBatch::from_images(&images, 32)
        .and_then(|b| b.with_original_sizes(samples.iter().map(|s| s.original).collect()))
        .map_err(|e| err(format!("collating COCO evaluation images: {e}")))?;
    Ok(CocoTestBatch {
        images: batch,
        image_ids: samples.iter().map(|s| s.image_id).collect(),
    })
}
