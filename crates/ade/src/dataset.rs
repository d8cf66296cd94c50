//! ADE20K-layout datasets on rtb-train's [`Dataset`] trait: [`AdeTrain`] (augmented, padded
//! 512 × 512 crops), [`AdeTest`] (optionally corrupted at full resolution, then resized;
//! labels at the original size), and their collates.
//!
//! Loading one pair checks what mmseg would trip over later: the image decodes, the label map
//! is an 8-bit single-channel PNG of the image's size, and every label value is, after
//! reduce_zero_label, a class index below the class count or 255. Each error names the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use image::RgbImage;
use rtb_ade_eval::{AdeDataset, AdeSample, LabelMap, read_label_png, reduce_zero_label};
use rtb_train::seed::SplitMix64;
use rtb_train::{CorruptibleSample, CorruptionSpec, Dataset, TrainError};

use crate::AdeTaskError;
use crate::transforms::{
    TestConfig, TrainConfig, normalize, normalize_padded, pad_chw, pad_labels,
};

/// How label files are read: the class count and ADE20K's reduce_zero_label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelSpec {
    /// Number of classes (150 for ADE20K; K for the shapes world's export).
    pub num_classes: usize,
    /// 0 → 255 and k → k − 1 (mmseg's `LoadAnnotations(reduce_zero_label=True)`).
    pub reduce_zero_label: bool,
}

impl LabelSpec {
    /// ADE20K: 150 classes, reduce_zero_label on.
    pub fn ade20k() -> Self {
        LabelSpec {
            num_classes: rtb_ade_eval::ADE20K_CLASSES.len(),
            reduce_zero_label: true,
        }
    }

    /// `num_classes` classes with reduce_zero_label on (the shapes world's export).
    pub fn reduced(num_classes: usize) -> Self {
        LabelSpec {
            num_classes,
            reduce_zero_label: true,
        }
    }

    fn validate(&self) -> Result<(), AdeTaskError> {
        if self.num_classes == 0 || self.num_classes > 255 {
            return Err(AdeTaskError::config(
                "num_classes",
                format!(
                    "{} classes: 8-bit label maps with ignore value 255 hold 1 to 255",
                    self.num_classes
                ),
            ));
        }
        Ok(())
    }
}

/// Decodes an image file (format from its content) to 8-bit RGB, with the pixels of
/// `cv2.imread` for JPEGs: three-component 4:4:4 / 4:2:0 files go through rtb-corruption's
/// libjpeg-turbo-exact decoder; other files (grey, CMYK, PNG…) through the image crate.
pub fn load_image(path: &Path) -> Result<RgbImage, AdeTaskError> {
    let bytes = std::fs::read(path).map_err(|source| AdeTaskError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    rtb_corruption::decode_rgb(&bytes).map_err(|message| AdeTaskError::Decode {
        path: path.to_path_buf(),
        message,
    })
}

/// Reads a label PNG, applies reduce_zero_label if asked and checks every value.
pub fn load_label(path: &Path, spec: LabelSpec) -> Result<LabelMap, AdeTaskError> {
    spec.validate()?;
    let mut map = read_label_png(path)?;
    let raw = map.clone();
    if spec.reduce_zero_label {
        reduce_zero_label(map.data_mut());
    }
    let bad = map
        .data()
        .iter()
        .position(|&v| v != 255 && usize::from(v) >= spec.num_classes);
    if let Some(pixel) = bad {
        let width = map.width() as usize;
        return Err(AdeTaskError::LabelOutOfRange {
            path: path.to_path_buf(),
            value: raw.data()[pixel],
            reduced: map.data()[pixel],
            x: (pixel % width) as u32,
            y: (pixel / width) as u32,
            num_classes: spec.num_classes,
        });
    }
    Ok(map)
}

/// Loads one image and its checked label map; errors name the file whose size or content is
/// wrong.
pub fn load_pair(
    sample: &AdeSample,
    spec: LabelSpec,
) -> Result<(RgbImage, LabelMap), AdeTaskError> {
    let label = load_label(&sample.annotation, spec)?;
    let image = load_image(&sample.image)?;
    if image.dimensions() != label.size() {
        return Err(AdeTaskError::SizeMismatch {
            label: sample.annotation.clone(),
            label_width: label.width(),
            label_height: label.height(),
            image: sample.image.clone(),
            image_width: image.width(),
            image_height: image.height(),
        });
    }
    Ok((image, label))
}

fn data_error(index: usize, err: &AdeTaskError) -> TrainError {
    TrainError::Data {
        index,
        message: err.to_string(),
    }
}

/// One training sample: a normalised, padded crop and its labels.
#[derive(Debug, Clone)]
pub struct AdeTrainSample {
    /// `[3, crop_h, crop_w]` f32, normalised, padded with 0.
    pub image: Tensor,
    /// `[crop_h, crop_w]` u8, reduced labels, padded with 255.
    pub label: Tensor,
}

/// The train split through mmseg's ADE20K train pipeline. Sample `i` loaded with seed `s`
/// draws every random parameter from `SplitMix64::new(s)` (rtb-train's loader passes the
/// per-sample seed of (run seed, epoch, index)): same seed, same bytes.
#[derive(Debug, Clone)]
pub struct AdeTrain {
    data: Arc<AdeDataset>,
    labels: LabelSpec,
    cfg: TrainConfig,
}

impl AdeTrain {
    /// The samples of `data` under `cfg`.
    pub fn new(
        data: Arc<AdeDataset>,
        labels: LabelSpec,
        cfg: TrainConfig,
    ) -> Result<Self, AdeTaskError> {
        cfg.validate()?;
        labels.validate()?;
        Ok(AdeTrain { data, labels, cfg })
    }

    /// The pipeline settings.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Loads and augments sample `index` with `seed` (the [`Dataset::get`] body, with this
    /// crate's error type).
    pub fn load(&self, index: usize, seed: u64) -> Result<AdeTrainSample, AdeTaskError> {
        let sample = self.sample(index)?;
        let (image, label) = load_pair(sample, self.labels)?;
        let in_file = |err: AdeTaskError| AdeTaskError::Transform {
            path: sample.image.clone(),
            message: err.to_string(),
        };
        let mut rng = SplitMix64::new(seed);
        let draws = self
            .cfg
            .draw(&mut rng, image.width(), image.height())
            .map_err(in_file)?;
        let crop = self.cfg.augment(&image, &label, &draws).map_err(in_file)?;
        let (ch, cw) = (self.cfg.crop_size.0 as usize, self.cfg.crop_size.1 as usize);
        let values = normalize_padded(&crop.image, (ch, cw));
        let labels = pad_labels(&crop.label, (ch, cw));
        Ok(AdeTrainSample {
            image: Tensor::from_vec(values, (3, ch, cw), &Device::Cpu)?,
            label: Tensor::from_vec(labels, (ch, cw), &Device::Cpu)?,
        })
    }

    fn sample(&self, index: usize) -> Result<&AdeSample, AdeTaskError> {
        self.data.samples().get(index).ok_or_else(|| {
            AdeTaskError::config(
                "index",
                format!("{index} is past the {} samples", self.data.len()),
            )
        })
    }
}

impl Dataset for AdeTrain {
    type Sample = AdeTrainSample;

    fn len(&self) -> usize {
        self.data.len()
    }

    fn get(&self, index: usize, seed: u64) -> rtb_train::Result<AdeTrainSample> {
        self.load(index, seed)
            .map_err(|err| data_error(index, &err))
    }
}

/// A batch of training samples.
#[derive(Debug, Clone)]
pub struct AdeTrainBatch {
    /// `[B, 3, H, W]` f32.
    pub images: Tensor,
    /// `[B, H, W]` u8 (255 ignored).
    pub labels: Tensor,
}

/// Stacks training samples (all of the crop size) into a batch.
pub fn collate_train(samples: Vec<AdeTrainSample>) -> rtb_train::Result<AdeTrainBatch> {
    let stack = |tensors: Vec<Tensor>| -> rtb_train::Result<Tensor> {
        Tensor::stack(&tensors, 0).map_err(|err| TrainError::Data {
            index: 0,
            message: format!("collating ADE20K training samples: {err}"),
        })
    };
    let (images, labels): (Vec<Tensor>, Vec<Tensor>) =
        samples.into_iter().map(|s| (s.image, s.label)).unzip();
    Ok(AdeTrainBatch {
        images: stack(images)?,
        labels: stack(labels)?,
    })
}

/// A decoded evaluation image before resizing, with the key its corruption seed derives from.
#[derive(Debug, Clone)]
pub struct AdeRawSample {
    /// The full-resolution image, 8-bit RGB.
    pub image: RgbImage,
    /// The reduced, checked label map at the image's size.
    pub label: LabelMap,
    /// The image's path relative to the dataset root, e.g.
    /// `images/validation/ADE_val_00000001.jpg`.
    pub key: PathBuf,
}

impl CorruptibleSample for AdeRawSample {
    fn image_mut(&mut self) -> &mut RgbImage {
        &mut self.image
    }
    fn seed_key(&self) -> PathBuf {
        self.key.clone()
    }
}

/// One evaluation sample: the resized, normalised image and the label map at the original
/// size.
#[derive(Debug, Clone)]
pub struct AdeTestSample {
    /// `[3, h, w]` f32 at the test scale, normalised.
    pub image: Tensor,
    /// The reduced label map at the original image size.
    pub label: LabelMap,
    /// The image's path relative to the dataset root (its corruption seed key).
    pub key: PathBuf,
}

/// The evaluation split through mmseg's ADE20K test pipeline, optionally corrupted: the
/// corruption applies to the decoded full-resolution image with the per-image seed of
/// [`rtb_corruption::image_seed`] (run seed, relative path, corruption, severity), before the
/// resize, as mmseg's and mmdetection's `test_robustness` do.
#[derive(Debug, Clone)]
pub struct AdeTest {
    data: Arc<AdeDataset>,
    labels: LabelSpec,
    cfg: TestConfig,
    corruption: Option<CorruptionSpec>,
}

impl AdeTest {
    /// The clean samples of `data` under `cfg`.
    pub fn new(
        data: Arc<AdeDataset>,
        labels: LabelSpec,
        cfg: TestConfig,
    ) -> Result<Self, AdeTaskError> {
        labels.validate()?;
        Ok(AdeTest {
            data,
            labels,
            cfg,
            corruption: None,
        })
    }

    /// The same samples corrupted with `spec`.
    pub fn with_corruption(mut self, spec: CorruptionSpec) -> Self {
        self.corruption = Some(spec);
        self
    }

    /// Decodes and checks sample `index` without resizing (and without corruption).
    pub fn load_raw(&self, index: usize) -> Result<AdeRawSample, AdeTaskError> {
        let sample = self.data.samples().get(index).ok_or_else(|| {
            AdeTaskError::config(
                "index",
                format!("{index} is past the {} samples", self.data.len()),
            )
        })?;
        let (image, label) = load_pair(sample, self.labels)?;
        let key = sample
            .image
            .strip_prefix(self.data.root())
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| sample.image.clone());
        Ok(AdeRawSample { image, label, key })
    }

    /// Loads, corrupts (if configured), resizes and normalises sample `index`.
    pub fn load(&self, index: usize) -> Result<AdeTestSample, AdeTaskError> {
        let mut raw = self.load_raw(index)?;
        if let Some(spec) = &self.corruption {
            spec.apply(&mut raw, index)?;
        }
        let resized = self
            .cfg
            .resize(&raw.image)
            .map_err(|err| AdeTaskError::Transform {
                path: self.data.root().join(&raw.key),
                message: err.to_string(),
            })?;
        let (w, h) = (resized.width() as usize, resized.height() as usize);
        Ok(AdeTestSample {
            image: Tensor::from_vec(normalize(&resized), (3, h, w), &Device::Cpu)?,
            label: raw.label,
            key: raw.key,
        })
    }
}

impl Dataset for AdeTest {
    type Sample = AdeTestSample;

    fn len(&self) -> usize {
        self.data.len()
    }

    fn get(&self, index: usize, _seed: u64) -> rtb_train::Result<AdeTestSample> {
        self.load(index).map_err(|err| data_error(index, &err))
    }
}

/// A batch of evaluation images padded to a common size.
#[derive(Debug, Clone)]
pub struct AdeTestBatch {
    /// `[B, 3, H, W]` f32: each image at the top left, padded with 0 on the right and bottom.
    pub images: Tensor,
    /// Each image's resized `(height, width)` inside the padding.
    pub sizes: Vec<(usize, usize)>,
    /// Each image's label map at its original size.
    pub labels: Vec<LabelMap>,
    /// Each image's relative path.
    pub keys: Vec<PathBuf>,
}

/// Pads evaluation samples to the largest height and width in the batch, rounded up to a
/// multiple of `size_divisor` (1: no rounding), and stacks them (mmseg's `stack_batch`).
pub fn collate_test(
    samples: Vec<AdeTestSample>,
    size_divisor: usize,
) -> rtb_train::Result<AdeTestBatch> {
    let err = |message: String| TrainError::Data { index: 0, message };
    let divisor = size_divisor.max(1);
    let mut sizes = Vec::with_capacity(samples.len());
    for sample in &samples {
        let (_, h, w) = sample
            .image
            .dims3()
            .map_err(|e| err(format!("an evaluation image is not [3, h, w]: {e}")))?;
        sizes.push((h, w));
    }
    let th = sizes
        .iter()
        .map(|s| s.0)
        .max()
        .unwrap_or(0)
        .div_ceil(divisor)
        * divisor;
    let tw = sizes
        .iter()
        .map(|s| s.1)
        .max()
        .unwrap_or(0)
        .div_ceil(divisor)
        * divisor;
    let mut padded = Vec::with_capacity(samples.len());
    let mut labels = Vec::with_capacity(samples.len());
    let mut keys = Vec::with_capacity(samples.len());
    for (sample, &(h, w)) in samples.into_iter().zip(&sizes) {
        let image = if (h, w) == (th, tw) {
            sample.image
        } else {
            let values = sample
                .image
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| err(format!("reading an evaluation image: {e}")))?;
            let values = pad_chw(&values, 3, (h, w), (th, tw), 0.0);
            Tensor::from_vec(values, (3, th, tw), &Device::Cpu)
                .map_err(|e| err(format!("padding an evaluation image: {e}")))?
        };
        padded.push(image);
        labels.push(sample.label);
        keys.push(sample.key);
    }
    let images = Tensor::stack(&padded, 0)
        .map_err(|e| err(format!("collating ADE20K evaluation samples: {e}")))?;
    Ok(AdeTestBatch {
        images,
        sizes,
        labels,
        keys,
    })
}
