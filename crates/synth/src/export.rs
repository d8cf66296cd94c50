//! The scene exports: COCO instances and the ADE20K layout.

use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::error::io_error;
use crate::rng::{Rng, derive_seed};
use crate::scene::{Rendered, Scene, SceneLayout, compose_scene};
use crate::{ShapeKind, SynthConfig, SynthError};

pub(crate) const STREAM_COCO_TRAIN: u64 = 3;
pub(crate) const STREAM_COCO_VAL: u64 = 4;
pub(crate) const STREAM_ADE_TRAIN: u64 = 5;
pub(crate) const STREAM_ADE_VAL: u64 = 6;

/// Writes an RGB image as a baseline JPEG (quality 92; the encoder is deterministic).
pub fn write_jpeg(path: &Path, rgb: &[u8], width: usize, height: usize) -> Result<(), SynthError> {
    let file = fs::File::create(path).map_err(io_error(path))?;
    let mut writer = BufWriter::new(file);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut writer, 92)
        .encode(
            rgb,
            width as u32,
            height as u32,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|err| SynthError::Encode {
            path: path.to_path_buf(),
            message: err.to_string(),
        })?;
    std::io::Write::flush(&mut writer).map_err(io_error(path))
}

/// Uncompressed COCO RLE of a row-major mask: run lengths in column-major (Fortran) order,
/// starting with a run of zeros (possibly empty), as pycocotools' `encode` counts them.
pub fn rle_counts(mask: &[bool], width: usize, height: usize) -> Vec<u32> {
    let mut counts = Vec::new();
    let mut current = false;
    let mut run = 0u32;
    for x in 0..width {
        for y in 0..height {
            let value = mask[y * width + x];
            if value != current {
                counts.push(run);
                run = 0;
                current = value;
            }
            run += 1;
        }
    }
    counts.push(run);
    counts
}

/// A COCO segmentation: polygons, or an uncompressed RLE.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Segmentation {
    /// `[[x1, y1, x2, y2, …]]`, pixel coordinates.
    Polygons(Vec<Vec<f64>>),
    /// Column-major run lengths and `[height, width]`.
    Rle {
        /// Run lengths, zeros first.
        counts: Vec<u32>,
        /// `[height, width]`.
        size: [usize; 2],
    },
}

#[derive(Debug, Clone, Serialize)]
struct CocoImage {
    id: u64,
    file_name: String,
    width: usize,
    height: usize,
}

#[derive(Debug, Clone, Serialize)]
struct CocoAnnotation {
    id: u64,
    image_id: u64,
    category_id: u64,
    segmentation: Segmentation,
    area: f64,
    bbox: [f64; 4],
    iscrowd: u8,
}

#[derive(Debug, Clone, Serialize)]
struct CocoCategory {
    id: u64,
    name: &'static str,
    supercategory: &'static str,
}

#[derive(Debug, Serialize)]
struct CocoInfo {
    description: String,
    version: &'static str,
}

#[derive(Debug, Serialize)]
struct CocoFile {
    info: CocoInfo,
    images: Vec<CocoImage>,
    annotations: Vec<CocoAnnotation>,
    categories: Vec<CocoCategory>,
    licenses: Vec<serde_json::Value>,
}

/// What [`write_coco`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CocoSummary {
    /// `annotations/instances_train2017.json`.
    pub train_json: PathBuf,
    /// `annotations/instances_val2017.json`.
    pub val_json: PathBuf,
    /// Annotations written (train, val).
    pub annotations: (usize, usize),
    /// Of those, `iscrowd: 1` (train, val).
    pub crowds: (usize, usize),
}

/// Writes a COCO-instances dataset into `dir`: `train2017/*.jpg`, `val2017/*.jpg` and
/// `annotations/instances_{train,val}2017.json`. Category ids are class + 1. Unoccluded,
/// uncut simple shapes get polygons; occluded or cut ones and rings get RLE; a crowd is one
/// `iscrowd: 1` RLE annotation. `area` is the visible pixel count, `bbox` its tight box.
pub fn write_coco(config: &SynthConfig, dir: &Path) -> Result<CocoSummary, SynthError> {
    config.validate()?;
    let spec = &config.coco;
    let layout = SceneLayout {
        width: spec.width,
        height: spec.height,
        min_instances: 1,
        max_instances: 6,
        radius: (0.08, 0.22),
        crowd_probability: spec.crowd_probability,
        min_visible_fraction: 0.25,
    };
    let annotations_dir = dir.join("annotations");
    fs::create_dir_all(&annotations_dir).map_err(io_error(&annotations_dir))?;
    let mut jsons = Vec::new();
    let mut counts = Vec::new();
    let mut crowds = Vec::new();
    for (split, stream, count) in [
        ("train2017", STREAM_COCO_TRAIN, spec.train),
        ("val2017", STREAM_COCO_VAL, spec.val),
    ] {
        let image_dir = dir.join(split);
        fs::create_dir_all(&image_dir).map_err(io_error(&image_dir))?;
        let per_image: Vec<(CocoImage, Vec<CocoAnnotation>)> = (0..count)
            .into_par_iter()
            .map(|index| {
                let mut rng = Rng::new(derive_seed(config.seed, stream, index as u64));
                let (scene, rendered) = compose_scene(&mut rng, &layout, config.num_classes);
                let id = index as u64 + 1;
                let file_name = format!("{id:012}.jpg");
                write_jpeg(
                    &image_dir.join(&file_name),
                    &rendered.rgb,
                    scene.width,
                    scene.height,
                )?;
                let annotations = coco_annotations(&scene, &rendered, id);
                let image = CocoImage {
                    id,
                    file_name,
                    width: scene.width,
                    height: scene.height,
                };
                Ok((image, annotations))
            })
            .collect::<Result<_, SynthError>>()?;
        let mut images = Vec::with_capacity(count);
        let mut annotations = Vec::new();
        for (image, mut image_annotations) in per_image {
            images.push(image);
            for annotation in &mut image_annotations {
                annotation.id = annotations.len() as u64 + 1;
                annotations.push(annotation.clone());
            }
        }
        counts.push(annotations.len());
        crowds.push(annotations.iter().filter(|a| a.iscrowd == 1).count());
        let file = CocoFile {
            info: CocoInfo {
                description: format!(
                    "rtb-synth shapes world, seed {}, {} classes, {split}",
                    config.seed, config.num_classes
                ),
                version: "1",
            },
            images,
            annotations,
            categories: ShapeKind::ALL[..config.num_classes]
                .iter()
                .enumerate()
                .map(|(class, kind)| CocoCategory {
                    id: class as u64 + 1,
                    name: kind.name(),
                    supercategory: "shape",
                })
                .collect(),
            licenses: Vec::new(),
        };
        let path = annotations_dir.join(format!("instances_{split}.json"));
        let text = serde_json::to_string(&file).expect("COCO structs serialise");
        fs::write(&path, text).map_err(io_error(&path))?;
        jsons.push(path);
    }
    Ok(CocoSummary {
        val_json: jsons.pop().expect("two splits"),
        train_json: jsons.pop().expect("two splits"),
        annotations: (counts[0], counts[1]),
        crowds: (crowds[0], crowds[1]),
    })
}

/// Annotations of one image (ids are assigned by the caller).
fn coco_annotations(scene: &Scene, rendered: &Rendered, image_id: u64) -> Vec<CocoAnnotation> {
    let (w, h) = (scene.width, scene.height);
    let mut annotations = Vec::new();
    let annotate =
        |mask: &[bool], class: usize, segmentation: Option<Segmentation>, crowd: bool| {
            let (mut x0, mut y0, mut x1, mut y1, mut area) = (usize::MAX, usize::MAX, 0, 0, 0u64);
            for y in 0..h {
                for x in 0..w {
                    if mask[y * w + x] {
                        x0 = x0.min(x);
                        y0 = y0.min(y);
                        x1 = x1.max(x);
                        y1 = y1.max(y);
                        area += 1;
                    }
                }
            }
            (area > 0).then(|| CocoAnnotation {
                id: 0,
                image_id,
                category_id: class as u64 + 1,
                segmentation: segmentation.unwrap_or_else(|| Segmentation::Rle {
                    counts: rle_counts(mask, w, h),
                    size: [h, w],
                }),
                area: area as f64,
                bbox: [
                    x0 as f64,
                    y0 as f64,
                    (x1 - x0 + 1) as f64,
                    (y1 - y0 + 1) as f64,
                ],
                iscrowd: u8::from(crowd),
            })
        };
    let mut crowd_mask = vec![false; w * h];
    let mut crowd_class = None;
    for (index, instance) in scene.instances.iter().enumerate() {
        let id = index as u16 + 1;
        if instance.crowd.is_some() {
            for (out, &v) in crowd_mask.iter_mut().zip(&rendered.instance_map) {
                *out |= v == id;
            }
            crowd_class = Some(instance.class);
            continue;
        }
        let mask: Vec<bool> = rendered.instance_map.iter().map(|&v| v == id).collect();
        let outline = instance.outline();
        let inside = outline
            .iter()
            .flatten()
            .all(|&(x, y)| x >= 0.0 && y >= 0.0 && x <= w as f64 && y <= h as f64);
        let whole = rendered.visible[index] == rendered.full[index];
        let polygon =
            (ShapeKind::from_label(instance.class).is_simple() && inside && whole).then(|| {
                Segmentation::Polygons(
                    outline
                        .iter()
                        .map(|ring| {
                            ring.iter()
                                .flat_map(|&(x, y)| [round2(x), round2(y)])
                                .collect()
                        })
                        .collect(),
                )
            });
        annotations.extend(annotate(&mask, instance.class, polygon, false));
    }
    if let Some(class) = crowd_class {
        annotations.extend(annotate(&crowd_mask, class, None, true));
    }
    annotations
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// What [`write_ade`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdeSummary {
    /// The dataset root (holds `images/` and `annotations/`).
    pub root: PathBuf,
    /// Images per split (training, validation).
    pub images: (usize, usize),
}

/// Writes an ADE20K-layout dataset into `dir`: `images/{training,validation}/*.jpg`,
/// `annotations/{training,validation}/*.png` (8-bit; 0 = background, class k stored as k + 1,
/// so mmseg's reduce_zero_label gives classes 0..K−1) and `classes.txt`.
pub fn write_ade(config: &SynthConfig, dir: &Path) -> Result<AdeSummary, SynthError> {
    config.validate()?;
    let spec = &config.ade;
    let layout = SceneLayout {
        width: spec.width,
        height: spec.height,
        min_instances: 1,
        max_instances: 6,
        radius: (0.1, 0.3),
        crowd_probability: 0.0,
        min_visible_fraction: 0.2,
    };
    for (split, prefix, stream, count) in [
        ("training", "ADE_train", STREAM_ADE_TRAIN, spec.train),
        ("validation", "ADE_val", STREAM_ADE_VAL, spec.val),
    ] {
        let image_dir = dir.join("images").join(split);
        let annotation_dir = dir.join("annotations").join(split);
        for folder in [&image_dir, &annotation_dir] {
            fs::create_dir_all(folder).map_err(io_error(folder))?;
        }
        (0..count).into_par_iter().try_for_each(|index| {
            let mut rng = Rng::new(derive_seed(config.seed, stream, index as u64));
            let (scene, rendered) = compose_scene(&mut rng, &layout, config.num_classes);
            let stem = format!("{prefix}_{:08}", index + 1);
            write_jpeg(
                &image_dir.join(format!("{stem}.jpg")),
                &rendered.rgb,
                scene.width,
                scene.height,
            )?;
            let labels: Vec<u8> = rendered
                .instance_map
                .iter()
                .map(|&id| match id {
                    0 => 0,
                    id => scene.instances[usize::from(id) - 1].class as u8 + 1,
                })
                .collect();
            let map = rtb_ade_eval::LabelMap::new(scene.width as u32, scene.height as u32, labels)?;
            rtb_ade_eval::write_label_png(&annotation_dir.join(format!("{stem}.png")), &map)?;
            Ok::<(), SynthError>(())
        })?;
    }
    let names: String = ShapeKind::ALL[..config.num_classes]
        .iter()
        .map(|kind| format!("{}\n", kind.name()))
        .collect();
    let path = dir.join("classes.txt");
    fs::write(&path, names).map_err(io_error(&path))?;
    Ok(AdeSummary {
        root: dir.to_path_buf(),
        images: (spec.train, spec.val),
    })
}
