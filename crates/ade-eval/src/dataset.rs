//! The ADEChallengeData2016 layout: `images/{training,validation}/*.jpg` beside
//! `annotations/{training,validation}/*.png`, one annotation per image with the same stem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::io_error;
use crate::{AdeError, LabelMap, image_size, png_size, read_label_png, reduce_zero_label};

/// Which half of ADEChallengeData2016.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// `training`: 20,210 images in the release.
    Training,
    /// `validation`: 2,000 images in the release; the split mmseg reports mIoU on.
    Validation,
}

impl Split {
    /// The folder name used under `images/` and `annotations/`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Split::Training => "training",
            Split::Validation => "validation",
        }
    }
}

/// One image and its annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdeSample {
    /// File name without extension, e.g. `ADE_val_00000001`.
    pub stem: String,
    /// `images/<split>/<stem>.jpg`.
    pub image: PathBuf,
    /// `annotations/<split>/<stem>.png`.
    pub annotation: PathBuf,
}

/// A split of an ADE20K-layout dataset, paired and sorted by file name (mmseg sorts by image
/// path). Opening checks that every image has an annotation and every annotation an image.
#[derive(Debug, Clone)]
pub struct AdeDataset {
    root: PathBuf,
    split: Split,
    samples: Vec<AdeSample>,
}

impl AdeDataset {
    /// Lists `root/images/<split>/*.jpg` and `root/annotations/<split>/*.png` and pairs them
    /// by stem. Errors name the first image without annotation (or annotation without image),
    /// and an empty or missing folder.
    pub fn open(root: impl AsRef<Path>, split: Split) -> Result<Self, AdeError> {
        let root = root.as_ref().to_path_buf();
        let image_dir = root.join("images").join(split.dir_name());
        let annotation_dir = root.join("annotations").join(split.dir_name());
        let images = list_by_stem(&image_dir, "jpg")?;
        let annotations = list_by_stem(&annotation_dir, "png")?;
        if images.is_empty() {
            return Err(AdeError::Empty {
                path: image_dir,
                what: ".jpg",
            });
        }
        for (stem, annotation) in &annotations {
            if !images.contains_key(stem) {
                return Err(AdeError::Missing {
                    path: annotation.clone(),
                    missing: "image",
                    expected: image_dir.join(format!("{stem}.jpg")),
                });
            }
        }
        let mut samples = Vec::with_capacity(images.len());
        for (stem, image) in images {
            let Some(annotation) = annotations.get(&stem) else {
                return Err(AdeError::Missing {
                    path: image,
                    missing: "annotation",
                    expected: annotation_dir.join(format!("{stem}.png")),
                });
            };
            samples.push(AdeSample {
                annotation: annotation.clone(),
                stem,
                image,
            });
        }
        Ok(AdeDataset {
            root,
            split,
            samples,
        })
    }

    /// The dataset root given to [`open`](Self::open).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The split.
    pub fn split(&self) -> Split {
        self.split
    }

    /// Number of image/annotation pairs.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no pairs (never true for an opened dataset).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The pairs, sorted by stem.
    pub fn samples(&self) -> &[AdeSample] {
        &self.samples
    }

    /// Reads every image's and annotation's header (in parallel) and checks that the sizes
    /// match and that every annotation is an 8-bit single-channel PNG. Returns the error of
    /// the first bad sample in dataset order.
    pub fn check(&self) -> Result<(), AdeError> {
        let first_error = self
            .samples
            .par_iter()
            .map(check_sample)
            .enumerate()
            .filter_map(|(index, result)| result.err().map(|err| (index, err)))
            .min_by_key(|(index, _)| *index);
        match first_error {
            Some((_, err)) => Err(err),
            None => Ok(()),
        }
    }

    /// The annotation of sample `index`, with reduce_zero_label applied when asked (mmseg's
    /// ADE20K pipeline always applies it).
    pub fn annotation(&self, index: usize, reduce: bool) -> Result<LabelMap, AdeError> {
        let mut map = read_label_png(&self.samples[index].annotation)?;
        if reduce {
            reduce_zero_label(map.data_mut());
        }
        Ok(map)
    }
}

fn check_sample(sample: &AdeSample) -> Result<(), AdeError> {
    let (image_width, image_height) = image_size(&sample.image)?;
    // Headers only: the size and the 8-bit single-channel format. Decoding every pixel would
    // cost as much as an evaluation pass, which checks the values anyway.
    let (width, height) = png_size(&sample.annotation)?;
    if (width, height) != (image_width, image_height) {
        return Err(AdeError::SizeMismatch {
            path: sample.annotation.clone(),
            width,
            height,
            other_path: sample.image.clone(),
            other_width: image_width,
            other_height: image_height,
        });
    }
    Ok(())
}

/// Files in `dir` ending in `.<extension>` (case-insensitive), by stem.
fn list_by_stem(dir: &Path, extension: &str) -> Result<BTreeMap<String, PathBuf>, AdeError> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        let matches = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case(extension));
        if !matches || !path.is_file() {
            continue;
        }
        if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
            found.insert(stem.to_string(), path.clone());
        }
    }
    Ok(found)
}
