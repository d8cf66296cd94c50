//! The source task's images: the training set with the recipe's augmentation, the validation
//! set, and its corrupted copies ("source-C"), generated once per preset and cached in the
//! source-task file format of rtb-synth.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use rayon::prelude::*;
use rtb_corruption::{Corruption, Corruptor, Flavor, FrostTextures, RandomState, Severity};
use rtb_synth::{SOURCE_MAGIC, SourceSplit, read_source};
use rtb_train::Dataset;
use serde::{Deserialize, Serialize};

use crate::augment::Augment;
use crate::error::{PretrainError, Result};

/// ImageNet channel means (RGB on [0, 1]); the same normalisation the downstream tasks use,
/// so pretrained features see the statistics they were trained on.
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations.
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A split held in memory with interleaved pixels (what augmentation and corruption take).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    /// Square side.
    pub side: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Labels.
    pub labels: Vec<u8>,
    /// Interleaved RGB, `side × side × 3` bytes per image.
    pub rgb: Vec<u8>,
}

impl Images {
    /// Reads a source-task split (`train.bin`, `val.bin` or a source-C file).
    pub fn read(path: &Path) -> Result<Self> {
        let split = read_source(path).map_err(|source| PretrainError::Synth {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_split(&split, path)
    }

    fn from_split(split: &SourceSplit, path: &Path) -> Result<Self> {
        if split.width != split.height {
            return Err(PretrainError::Data {
                path: path.to_path_buf(),
                message: format!("images are {}×{}, not square", split.width, split.height),
            });
        }
        let plane = split.width * split.height;
        let mut rgb = vec![0u8; split.pixels.len()];
        for (image, out) in split
            .pixels
            .chunks_exact(3 * plane)
            .zip(rgb.chunks_exact_mut(3 * plane))
        {
            for p in 0..plane {
                for channel in 0..3 {
                    out[3 * p + channel] = image[channel * plane + p];
                }
            }
        }
        Ok(Self {
            side: split.width,
            num_classes: split.num_classes,
            labels: split.labels.clone(),
            rgb,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image `index`, interleaved.
    pub fn image(&self, index: usize) -> &[u8] {
        let bytes = self.side * self.side * 3;
        &self.rgb[index * bytes..(index + 1) * bytes]
    }

    /// The first `count` images.
    pub fn truncated(&self, count: usize) -> Self {
        let count = count.min(self.len());
        let bytes = self.side * self.side * 3;
        Self {
            side: self.side,
            num_classes: self.num_classes,
            labels: self.labels[..count].to_vec(),
            rgb: self.rgb[..count * bytes].to_vec(),
        }
    }

    /// Writes the split in rtb-synth's source-task format (atomically).
    pub fn write(&self, path: &Path) -> Result<()> {
        let plane = self.side * self.side;
        let mut bytes = Vec::with_capacity(32 + self.len() * (1 + 3 * plane));
        bytes.extend_from_slice(SOURCE_MAGIC);
        for field in [1, self.side, self.side, 3, self.len(), self.num_classes] {
            bytes.extend_from_slice(&(field as u32).to_le_bytes());
        }
        for (index, &label) in self.labels.iter().enumerate() {
            bytes.push(label);
            let image = self.image(index);
            for channel in 0..3 {
                bytes.extend(image.chunks_exact(3).map(|p| p[channel]));
            }
        }
        rtb_train::write_atomically(path, &bytes)?;
        Ok(())
    }
}

/// Normalised planar `[N, 3, side, side]` from planar [0, 1] floats.
pub fn normalize_planar(views: &[Vec<f32>], side: usize, device: &Device) -> Result<Tensor> {
    let plane = side * side;
    let mut values = Vec::with_capacity(views.len() * 3 * plane);
    for view in views {
        for channel in 0..3 {
            values.extend(
                view[channel * plane..(channel + 1) * plane]
                    .iter()
                    .map(|v| (v - MEAN[channel]) / STD[channel]),
            );
        }
    }
    Ok(Tensor::from_vec(
        values,
        (views.len(), 3, side, side),
        device,
    )?)
}

/// Normalised `[N, 3, side, side]` of images `range` of `images`.
pub fn batch_tensor(
    images: &Images,
    range: std::ops::Range<usize>,
    device: &Device,
) -> Result<Tensor> {
    let plane = images.side * images.side;
    let views: Vec<Vec<f32>> = range
        .map(|index| {
            let image = images.image(index);
            let mut planar = vec![0f32; 3 * plane];
            for (p, rgb) in image.chunks_exact(3).enumerate() {
                for channel in 0..3 {
                    planar[channel * plane + p] = f32::from(rgb[channel]) / 255.0;
                }
            }
            planar
        })
        .collect();
    normalize_planar(&views, images.side, device)
}

/// One training sample: the recipe's views (planar floats in [0, 1]) and the label.
#[derive(Debug, Clone)]
pub struct Sample {
    /// 1 view, or 3 for AugMix with the JSD loss (clean, two mixtures).
    pub views: Vec<Vec<f32>>,
    /// The class.
    pub label: u8,
}

/// The augmented training set.
#[derive(Debug, Clone)]
pub struct TrainSet {
    /// The images.
    pub images: Arc<Images>,
    /// The recipe.
    pub augment: Augment,
}

impl Dataset for TrainSet {
    type Sample = Sample;

    fn len(&self) -> usize {
        self.images.len()
    }

    fn get(&self, index: usize, seed: u64) -> rtb_train::Result<Sample> {
        Ok(Sample {
            views: self
                .augment
                .apply(self.images.image(index), self.images.side, seed),
            label: self.images.labels[index],
        })
    }
}

/// A batch: `[V·N, 3, S, S]` with the views stacked view-major (all first views, then all
/// second views, …) and the labels `[N]`.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Images.
    pub images: Tensor,
    /// Labels (u32).
    pub labels: Tensor,
    /// Views per sample.
    pub views: usize,
}

/// Collates samples into a CPU [`Batch`].
// By value: the data loader's collate hook hands the batch's samples over.
#[allow(clippy::needless_pass_by_value)]
pub fn collate(samples: Vec<Sample>) -> rtb_train::Result<Batch> {
    let views = samples.first().map_or(1, |s| s.views.len());
    let side = samples
        .first()
        .map_or(1, |s| ((s.views[0].len() / 3) as f64).sqrt() as usize);
    let mut ordered = Vec::with_capacity(views * samples.len());
    for view in 0..views {
        for sample in &samples {
            ordered.push(sample.views[view].clone());
        }
    }
    let images = normalize_planar(&ordered, side, &Device::Cpu)
        .map_err(|err| rtb_train::TrainError::Task(err.to_string()))?;
    let labels: Vec<u32> = samples.iter().map(|s| u32::from(s.label)).collect();
    let labels = Tensor::new(labels, &Device::Cpu)?;
    Ok(Batch {
        images,
        labels,
        views,
    })
}

/// How the corrupted validation sets are made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceCSpec {
    /// Corruptions.
    pub corruptions: Vec<String>,
    /// Severities 1..=5.
    pub severities: Vec<u8>,
    /// Corrupt the first this many validation images (`None`: all).
    pub images: Option<usize>,
    /// Seed of the per-image corruption seeds.
    pub seed: u64,
    /// The corruption flavor (`imagecorruptions`, `imagenet-c`, `cifar-c`).
    pub flavor: String,
}

impl SourceCSpec {
    /// The corruptions, parsed.
    pub fn corruptions(&self) -> Result<Vec<Corruption>> {
        self.corruptions
            .iter()
            .map(|name| {
                name.parse().map_err(|_| PretrainError::Config {
                    field: "eval.corruptions".into(),
                    message: format!("{name:?} is not a corruption"),
                })
            })
            .collect()
    }

    /// The severities, checked.
    pub fn severities(&self) -> Result<Vec<Severity>> {
        self.severities
            .iter()
            .map(|&s| {
                Severity::new(s).ok_or_else(|| PretrainError::Config {
                    field: "eval.severities".into(),
                    message: format!("{s} is not 1..=5"),
                })
            })
            .collect()
    }

    /// The flavor, parsed.
    pub fn flavor(&self) -> Result<Flavor> {
        Flavor::ALL
            .into_iter()
            .find(|f| f.name() == self.flavor)
            .ok_or_else(|| PretrainError::Config {
                field: "eval.flavor".into(),
                message: format!("{:?} is not a corruption flavor", self.flavor),
            })
    }
}

/// The file of one corruption at one severity in a source-C folder.
pub fn source_c_file(dir: &Path, corruption: Corruption, severity: Severity) -> PathBuf {
    dir.join(format!("{}-{}.bin", corruption.name(), severity.get()))
}

const SOURCE_C_MANIFEST: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SourceCManifest {
    spec: SourceCSpec,
    images: usize,
    done: Vec<String>,
}

/// The per-image key the corruption seed derives from: `val/<index>`.
pub fn image_key(index: usize) -> PathBuf {
    PathBuf::from(format!("val/{index:06}"))
}

/// Makes (or completes) the corrupted validation sets of `val` in `dir`, one file per
/// corruption and severity; files listed in the folder's manifest for the same spec are kept.
/// `progress(done, total)` is called after each file.
pub fn generate_source_c(
    val: &Images,
    dir: &Path,
    spec: &SourceCSpec,
    frost_dir: Option<&Path>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<BTreeMap<(Corruption, Severity), PathBuf>> {
    let corruptions = spec.corruptions()?;
    let severities = spec.severities()?;
    let val = spec
        .images
        .map_or_else(|| val.clone(), |n| val.truncated(n));
    let manifest_path = dir.join(SOURCE_C_MANIFEST);
    let mut manifest = std::fs::read_to_string(&manifest_path)
        .ok()
        .and_then(|text| serde_json::from_str::<SourceCManifest>(&text).ok())
        .filter(|m| m.spec == *spec && m.images == val.len())
        .unwrap_or(SourceCManifest {
            spec: spec.clone(),
            images: val.len(),
            done: Vec::new(),
        });
    let mut corruptor = Corruptor::new(spec.flavor()?);
    if corruptions.contains(&Corruption::Frost) {
        let dir = frost_dir.ok_or(PretrainError::Config {
            field: "frost".into(),
            message: "frost needs the frost textures: run `cargo xtask assets` or set \
                      RTB_FROST_DIR"
                .into(),
        })?;
        let textures = FrostTextures::new(dir);
        textures.verify()?;
        corruptor = corruptor.with_frost_textures(textures);
    }
    let total = corruptions.len() * severities.len();
    let mut files = BTreeMap::new();
    let mut done = 0;
    for &corruption in &corruptions {
        for &severity in &severities {
            let path = source_c_file(dir, corruption, severity);
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !(manifest.done.contains(&name) && path.is_file()) {
                let side = val.side;
                let corrupted: Vec<Vec<u8>> = (0..val.len())
                    .into_par_iter()
                    .map(|index| {
                        let image = image::RgbImage::from_raw(
                            side as u32,
                            side as u32,
                            val.image(index).to_vec(),
                        )
                        .expect("the buffer holds side² RGB pixels");
                        let mut rng = RandomState::new(rtb_corruption::image_seed(
                            spec.seed,
                            &image_key(index),
                            corruption,
                            severity,
                        ));
                        corruptor
                            .corrupt(&image, corruption, severity, &mut rng)
                            .map(image::RgbImage::into_raw)
                    })
                    .collect::<std::result::Result<_, _>>()?;
                let out = Images {
                    side: val.side,
                    num_classes: val.num_classes,
                    labels: val.labels.clone(),
                    rgb: corrupted.concat(),
                };
                out.write(&path)?;
                manifest.done.push(name);
                let text = serde_json::to_string_pretty(&manifest).expect("manifests serialise");
                rtb_train::write_atomically(&manifest_path, text.as_bytes())?;
            }
            files.insert((corruption, severity), path);
            done += 1;
            progress(done, total);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_round_trip_through_the_synth_format() {
        let dir = tempfile::tempdir().unwrap();
        let images = Images {
            side: 2,
            num_classes: 3,
            labels: vec![2, 0],
            rgb: (0..24).collect(),
        };
        let path = dir.path().join("x.bin");
        images.write(&path).unwrap();
        // rtb-synth's reader sees planar pixels: red plane of image 0 first.
        let split = read_source(&path).unwrap();
        assert_eq!(&split.pixels[..4], &[0, 3, 6, 9]);
        assert_eq!(Images::read(&path).unwrap(), images);
        assert_eq!(images.truncated(1).labels, [2]);
    }

    #[test]
    fn collate_stacks_views_view_major() {
        let sample = |value: f32, label| Sample {
            views: vec![vec![value; 12], vec![value + 0.5; 12]],
            label,
        };
        let batch = collate(vec![sample(0.0, 1), sample(0.25, 2)]).unwrap();
        assert_eq!(batch.images.dims(), &[4, 3, 2, 2]);
        assert_eq!(batch.views, 2);
        let first: Vec<f32> = batch.images.flatten_all().unwrap().to_vec1().unwrap();
        // Image order: sample 0 view 0, sample 1 view 0, sample 0 view 1, sample 1 view 1.
        let red = |image: usize| first[image * 12];
        let expect = |v: f32| (v - MEAN[0]) / STD[0];
        assert_eq!(
            [red(0), red(1), red(2), red(3)],
            [expect(0.0), expect(0.25), expect(0.5), expect(0.75)]
        );
        assert_eq!(batch.labels.to_vec1::<u32>().unwrap(), [1, 2]);
    }
}
