//! The COCO 2017 instances layout (and the shapes world's export, which has the same one):
//! [`CocoSplit`] reads `annotations/instances_<split>.json` and turns each image's
//! annotations into training instances the way mmdetection 2.x's `CocoDataset` does.
//!
//! mmdet's rules (`_parse_ann_info`, `_filter_imgs`), kept here as documented skips:
//! - an annotation whose box does not overlap its image, whose `area` is ≤ 0 or whose box is
//!   under one pixel wide or high is skipped;
//! - crowd annotations (`iscrowd: 1`) are not training targets (mmdet's `gt_bboxes_ignore`,
//!   which its assigners ignore); evaluation keeps them, as pycocotools does;
//! - training skips images with no usable instance (mmdet's `filter_empty_gt`, which also
//!   drops images whose annotations were all skipped or crowds) and images whose short side
//!   is under 32 pixels; evaluation keeps every image.
//!
//! Errors (naming the file and the annotation id): an annotation without `bbox` or
//! `segmentation`, a polygon with fewer than three points or an odd coordinate count, an RLE
//! of another size than its image, an `images` entry without `file_name`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rtb_coco_eval::{CocoGt, Segmentation};
use serde::Deserialize;

use crate::error::CocoTaskError;

/// mmdet's shortest accepted image side in training (`_filter_imgs(min_size=32)`).
pub const MIN_TRAIN_SIDE: u32 = 32;

/// A split of COCO 2017.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// `train2017`.
    Train,
    /// `val2017`.
    Val,
}

impl Split {
    /// The image folder's name (`train2017`, `val2017`).
    pub fn folder(self) -> &'static str {
        match self {
            Split::Train => "train2017",
            Split::Val => "val2017",
        }
    }

    /// The instances file relative to the dataset root.
    pub fn annotations(self) -> PathBuf {
        Path::new("annotations").join(format!("instances_{}.json", self.folder()))
    }
}

/// An image of the instances file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The image id.
    pub id: i64,
    /// The file name inside the split's folder.
    pub file_name: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// A training target: one non-crowd object.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// The annotation's id (named by errors).
    pub annotation_id: i64,
    /// `[x1, y1, x2, y2]` in the original image's pixels (mmdet 2.x: `x + w`, no −1).
    pub bbox: [f64; 4],
    /// The 0-based contiguous class (sorted category ids).
    pub label: usize,
    /// The region, rasterised when the sample is loaded.
    pub segmentation: Segmentation,
}

#[derive(Deserialize)]
struct RawFile {
    images: Vec<RawImage>,
}

#[derive(Deserialize)]
struct RawImage {
    id: i64,
    file_name: String,
    width: u32,
    height: u32,
}

/// One split of a COCO-layout dataset: the ground truth (for evaluation), the images with
/// their file names, and each image's training instances.
#[derive(Debug, Clone)]
pub struct CocoSplit {
    image_dir: PathBuf,
    annotations: PathBuf,
    gt: Arc<CocoGt>,
    images: Vec<ImageInfo>,
    cat_ids: Vec<i64>,
    instances: Vec<Vec<Instance>>,
    skipped: usize,
}

impl CocoSplit {
    /// `<root>/annotations/instances_<split>.json` with images in `<root>/<split>/` (the
    /// shapes world's export, or COCO unpacked by hand), or the official archives as
    /// `rtb prepare` unpacks them beside themselves:
    /// `<root>/annotations_trainval2017/annotations/…` and `<root>/<split>/<split>/`.
    pub fn open(root: &Path, split: Split) -> Result<Self, CocoTaskError> {
        let unpacked = root
            .join("annotations_trainval2017")
            .join(split.annotations());
        let annotations = if unpacked.is_file() {
            unpacked
        } else {
            root.join(split.annotations())
        };
        let nested = root.join(split.folder()).join(split.folder());
        let image_dir = if nested.is_dir() {
            nested
        } else {
            root.join(split.folder())
        };
        if !annotations.is_file() {
            return Err(CocoTaskError::Missing {
                path: annotations,
                hint: "a COCO-layout root holds annotations/instances_{train,val}2017.json \
                       (rtb prepare, or rtb synth coco)"
                    .into(),
            });
        }
        Self::from_files(&annotations, &image_dir)
    }

    /// An instances file with its images in `image_dir`.
    pub fn from_files(annotations: &Path, image_dir: &Path) -> Result<Self, CocoTaskError> {
        let bytes = std::fs::read(annotations).map_err(|source| CocoTaskError::Io {
            path: annotations.to_path_buf(),
            source,
        })?;
        let name = annotations.display().to_string();
        let gt = CocoGt::from_slice(&bytes, &name)?;
        let raw: RawFile =
            serde_json::from_slice(&bytes).map_err(|err| CocoTaskError::Annotations {
                path: annotations.to_path_buf(),
                message: format!("reading `images` (id, file_name, width, height): {err}"),
            })?;
        drop(bytes);
        let mut seen = std::collections::HashSet::new();
        let images: Vec<ImageInfo> = raw
            .images
            .into_iter()
            .filter(|image| seen.insert(image.id))
            .map(|image| ImageInfo {
                id: image.id,
                file_name: image.file_name,
                width: image.width,
                height: image.height,
            })
            .collect();
        let cat_ids: Vec<i64> = gt
            .categories()
            .iter()
            .map(|c| c.id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if cat_ids.is_empty() {
            return Err(CocoTaskError::Annotations {
                path: annotations.to_path_buf(),
                message: "no categories".into(),
            });
        }
        let cat_to_label: HashMap<i64, usize> =
            cat_ids.iter().enumerate().map(|(i, &c)| (c, i)).collect();
        let index: HashMap<i64, usize> = images
            .iter()
            .enumerate()
            .map(|(i, im)| (im.id, i))
            .collect();
        let mut instances = vec![Vec::new(); images.len()];
        let mut skipped = 0;
        for ann in gt.annotations() {
            let bad = |message: String| CocoTaskError::BadAnnotation {
                path: annotations.to_path_buf(),
                annotation_id: ann.id,
                image_id: ann.image_id,
                message,
            };
            let Some(&at) = index.get(&ann.image_id) else {
                return Err(bad("its image_id is not in `images`".into()));
            };
            let info = &images[at];
            let [x, y, w, h] = ann
                .bbox
                .ok_or_else(|| bad("no `bbox` (Mask R-CNN trains on boxes)".into()))?;
            let (iw, ih) = (f64::from(info.width), f64::from(info.height));
            let inter_w = ((x + w).min(iw) - x.max(0.0)).max(0.0);
            let inter_h = ((y + h).min(ih) - y.max(0.0)).max(0.0);
            let Some(&label) = cat_to_label.get(&ann.category_id) else {
                skipped += 1;
                continue;
            };
            if inter_w * inter_h == 0.0 || ann.area <= 0.0 || w < 1.0 || h < 1.0 {
                skipped += 1;
                continue;
            }
            if ann.iscrowd {
                continue;
            }
            let segmentation = ann
                .segmentation
                .clone()
                .ok_or_else(|| bad("no `segmentation` (Mask R-CNN trains on masks)".into()))?;
            check_segmentation(&segmentation, info).map_err(bad)?;
            instances[at].push(Instance {
                annotation_id: ann.id,
                bbox: [x, y, x + w, y + h],
                label,
                segmentation,
            });
        }
        Ok(Self {
            image_dir: image_dir.to_path_buf(),
            annotations: annotations.to_path_buf(),
            gt: Arc::new(gt),
            images,
            cat_ids,
            instances,
            skipped,
        })
    }

    /// The ground truth (pycocotools' view of the file).
    pub fn gt(&self) -> &Arc<CocoGt> {
        &self.gt
    }

    /// The instances file.
    pub fn annotations_path(&self) -> &Path {
        &self.annotations
    }

    /// The images, in file order.
    pub fn images(&self) -> &[ImageInfo] {
        &self.images
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether the split has no image.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The category ids in ascending order; class `k` is `cat_ids()[k]`.
    pub fn cat_ids(&self) -> &[i64] {
        &self.cat_ids
    }

    /// The training instances of image `index`.
    pub fn instances(&self, index: usize) -> &[Instance] {
        self.instances.get(index).map_or(&[], Vec::as_slice)
    }

    /// Annotations skipped by mmdet's rules (box outside the image, empty, unknown category).
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The image file of image `index`.
    pub fn image_path(&self, index: usize) -> PathBuf {
        self.image_dir.join(&self.images[index].file_name)
    }

    /// The images training uses: at least one instance, short side at least 32 pixels.
    pub fn train_indices(&self) -> Vec<usize> {
        (0..self.images.len())
            .filter(|&i| {
                let im = &self.images[i];
                !self.instances[i].is_empty() && im.width.min(im.height) >= MIN_TRAIN_SIDE
            })
            .collect()
    }
}

/// Shapes mmdet would trip over when it rasterises the region.
fn check_segmentation(segmentation: &Segmentation, info: &ImageInfo) -> Result<(), String> {
    match segmentation {
        Segmentation::Polygons(parts) => {
            if parts.is_empty() {
                return Err("an empty polygon list".into());
            }
            for (part, polygon) in parts.iter().enumerate() {
                if polygon.len() < 6 || polygon.len() % 2 != 0 {
                    return Err(format!(
                        "polygon {part} has {} coordinates (at least 6, an even count)",
                        polygon.len()
                    ));
                }
                if polygon.iter().any(|v| !v.is_finite()) {
                    return Err(format!(
                        "polygon {part} has a coordinate that is not finite"
                    ));
                }
            }
            Ok(())
        }
        Segmentation::Uncompressed { size, .. } | Segmentation::Compressed { size, .. } => {
            if *size != [info.height, info.width] {
                return Err(format!(
                    "an RLE of size {}×{} (h×w) on an image of {}×{}",
                    size[0], size[1], info.height, info.width
                ));
            }
            Ok(())
        }
    }
}

/// The row-major binary mask (0 or 1) of `instance` at its image's size.
pub fn instance_mask(
    instance: &Instance,
    info: &ImageInfo,
    annotations: &Path,
) -> Result<Vec<u8>, CocoTaskError> {
    let rle = instance
        .segmentation
        .to_rle(Some([info.height, info.width]), info.id)
        .map_err(|err| CocoTaskError::BadAnnotation {
            path: annotations.to_path_buf(),
            annotation_id: instance.annotation_id,
            image_id: info.id,
            message: err.to_string(),
        })?;
    Ok(rle.decode_row_major())
}
