//! The ImageNet validation set: which image files, which class each one is.
//!
//! Two layouts:
//! - **folders** (`val/<wnid>/*.JPEG`, torchvision's `ImageFolder`): one folder per class,
//!   named by its wnid. The class index is the wnid's position in the sorted list of the 1000
//!   ILSVRC-2012 wnids ([`crate::synsets`]), not its position among the folders present, so a
//!   folder with a subset of the classes keeps the right indices. A folder whose name is not
//!   one of the 1000 wnids is an error naming it.
//! - **flat** (all images in one folder) with a labels file:
//!   - `val.txt`: lines `ILSVRC2012_val_00000001.JPEG 65`, the index in sorted-wnid order;
//!   - Kaggle's `LOC_val_solution.csv`: a header `ImageId,PredictionString`, then lines
//!     `ILSVRC2012_val_00000001,n01751748 …` whose first token is the wnid (the image is
//!     `<ImageId>` plus its extension in the folder).
//!
//!   Every image in the folder needs a labels line (an error names the image and the file);
//!   lines for images not in the folder are ignored, so a folder with part of the images
//!   works with the full labels file.
//!
//! The devkit's `ILSVRC2012_validation_ground_truth.txt` holds one number per line in the
//! devkit's own ILSVRC2012_ID order (1..=1000), which is not the sorted-wnid order; mapping it
//! needs the devkit's `meta.mat`, which this crate does not read. Such a file is refused with
//! an error that suggests `val.txt` or `LOC_val_solution.csv`, instead of silently giving wrong
//! labels.
//!
//! Files are listed as `ImageFolder` does: the extensions `.jpg .jpeg .png .ppm .bmp .pgm .tif
//! .tiff .webp` (any case), sorted by name, folders walked recursively; a flat folder's images
//! are put in the same order (class, then name). Every image also has a
//! seed key, `<wnid>/<file name>` in both layouts, from which the per-image corruption seeds
//! derive (so the generated ImageNet-C does not depend on the layout the images came in).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::error::{ImageNetError, Result, io_err};
use crate::synsets::{class_index, wnids};

/// File extensions `ImageFolder` accepts (compared in lower case).
pub const IMAGE_EXTENSIONS: [&str; 9] = [
    "jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp",
];

/// One validation image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValImage {
    /// The file.
    pub path: PathBuf,
    /// The stable key of its per-image seeds: `<wnid>/<file name>`.
    pub key: PathBuf,
    /// The class index (sorted-wnid order, 0..1000).
    pub label: usize,
}

/// A list of labelled validation images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValSet {
    root: PathBuf,
    images: Vec<ValImage>,
}

/// How a labels file of the flat layout is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelsFormat {
    /// `val.txt`: `<file name> <index>` per line.
    ValTxt,
    /// Kaggle's `LOC_val_solution.csv`.
    KaggleCsv,
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The image files under `dir`, recursively, each folder's entries sorted by name.
fn walk_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .map(|entry| entry.map(|e| e.path()).map_err(io_err(dir)))
        .collect::<Result<_>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk_images(&path, out)?;
        } else if is_image(&path) {
            out.push(path);
        }
    }
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl ValSet {
    /// A set from its parts (images in the given order).
    pub fn from_images(root: impl Into<PathBuf>, images: Vec<ValImage>) -> Self {
        Self {
            root: root.into(),
            images,
        }
    }

    /// Opens `dir` in the folder layout when `labels` is `None`, else in the flat layout with
    /// that labels file.
    pub fn open(dir: &Path, labels: Option<&Path>) -> Result<Self> {
        match labels {
            None => Self::from_folders(dir),
            Some(labels) => Self::from_flat(dir, labels),
        }
    }

    /// The folder layout `dir/<wnid>/*` (see the module documentation).
    pub fn from_folders(dir: &Path) -> Result<Self> {
        let mut class_dirs: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .map(|entry| entry.map(|e| e.path()).map_err(io_err(dir)))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .filter(|p| p.is_dir())
            .collect();
        class_dirs.sort();
        if class_dirs.is_empty() {
            return Err(ImageNetError::layout(
                dir,
                "no class folders: expected <wnid>/ folders of images (or give a labels file \
                 for a flat folder)",
            ));
        }
        let mut images = Vec::new();
        for class_dir in class_dirs {
            let wnid = file_name(&class_dir);
            let label = class_index(&wnid).ok_or_else(|| {
                ImageNetError::layout(
                    &class_dir,
                    format!(
                        "the folder name {wnid:?} is not one of the 1000 ImageNet-1k wnids \
                         (expected names like n01440764)"
                    ),
                )
            })?;
            let mut files = Vec::new();
            walk_images(&class_dir, &mut files)?;
            for path in files {
                let key = Path::new(&wnid).join(file_name(&path));
                images.push(ValImage { path, key, label });
            }
        }
        if images.is_empty() {
            return Err(ImageNetError::layout(
                dir,
                "the class folders hold no images",
            ));
        }
        Ok(Self::from_images(dir, images))
    }

    /// The flat layout: the images directly in `dir`, labelled by `labels` (`val.txt` or
    /// `LOC_val_solution.csv`, told apart by content).
    pub fn from_flat(dir: &Path, labels: &Path) -> Result<Self> {
        let by_name = read_labels(labels)?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .map(|entry| entry.map(|e| e.path()).map_err(io_err(dir)))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(ImageNetError::layout(dir, "no image files in the folder"));
        }
        let mut images = Vec::with_capacity(files.len());
        for path in files {
            let name = file_name(&path);
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let label = by_name
                .get(&name)
                .or_else(|| by_name.get(&stem))
                .copied()
                .ok_or_else(|| {
                    ImageNetError::layout(
                        &path,
                        format!(
                            "the image has no line in the labels file {}",
                            labels.display()
                        ),
                    )
                })?;
            let key = Path::new(wnids()[label]).join(&name);
            images.push(ValImage { path, key, label });
        }
        // The folder layout's order (class, then file name), so that the first n images are
        // the same ones in both layouts and in the released ImageNet-C folders.
        images.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self::from_images(dir, images))
    }

    /// The folder the images were read from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The images in evaluation order.
    pub fn images(&self) -> &[ValImage] {
        &self.images
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The first `n` images (all when there are fewer).
    pub fn truncated(mut self, n: usize) -> Self {
        self.images.truncate(n);
        self
    }

    /// The classes present, as sorted class indices.
    pub fn classes(&self) -> Vec<usize> {
        let mut classes: Vec<usize> = self.images.iter().map(|i| i.label).collect();
        classes.sort_unstable();
        classes.dedup();
        classes
    }
}

/// Decodes an image file (format from its content, not its extension) to 8-bit RGB as
/// `PIL.Image.open(path).convert('RGB')` does: grey is repeated into the three channels,
/// alpha is dropped.
///
/// JPEG files with three components and 4:4:4 or 4:2:0 sampling (almost all of ImageNet) go
/// through rtb-corruption's libjpeg-turbo-exact decoder, so they equal Pillow's pixels bit for
/// bit; other JPEGs (grey, CMYK, 4:2:2, Adobe-transform files) and other formats go through
/// the image crate, whose JPEG decoder can differ from libjpeg-turbo by a few grey levels
/// here and there (up-sampling and IDCT rounding).
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let decode = |message: String| ImageNetError::Decode {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    rtb_corruption::decode_rgb(&bytes).map_err(decode)
}

/// Which format a labels file is in, from its name and first line; the devkit's ground truth
/// is an error (see the module documentation).
pub fn detect_labels_format(path: &Path, text: &str) -> Result<LabelsFormat> {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let name = file_name(path);
    if first.trim_start().starts_with("ImageId") || name.to_ascii_lowercase().ends_with(".csv") {
        return Ok(LabelsFormat::KaggleCsv);
    }
    let tokens: Vec<&str> = first.split_whitespace().collect();
    if name == "ILSVRC2012_validation_ground_truth.txt"
        || (tokens.len() == 1 && tokens[0].parse::<u32>().is_ok())
    {
        return Err(ImageNetError::Labels {
            path: path.to_path_buf(),
            line: 1,
            message: "this looks like the devkit's ground truth (one ILSVRC2012_ID per line, \
                      in the devkit's meta.mat order, not the sorted-wnid order); it cannot be \
                      mapped without meta.mat. Use a val.txt (`<file> <index>` in sorted-wnid \
                      order), Kaggle's LOC_val_solution.csv, or the val/<wnid>/ folder layout"
                .into(),
        });
    }
    Ok(LabelsFormat::ValTxt)
}

/// Reads a labels file into file name (or, for the CSV, image id) → class index.
pub fn read_labels(path: &Path) -> Result<BTreeMap<String, usize>> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    parse_labels(path, &text)
}

/// [`read_labels`] on text already read; `path` names the file in errors.
pub fn parse_labels(path: &Path, text: &str) -> Result<BTreeMap<String, usize>> {
    let format = detect_labels_format(path, text)?;
    let bad = |line: usize, message: String| ImageNetError::Labels {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut out = BTreeMap::new();
    let mut seen_header = false;
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (name, label) = match format {
            LabelsFormat::ValTxt => {
                let mut tokens = line.split_whitespace();
                let (Some(name), Some(index), None) = (tokens.next(), tokens.next(), tokens.next())
                else {
                    return Err(bad(
                        number,
                        format!("expected `<file name> <class index>`, found {line:?}"),
                    ));
                };
                let label: usize = index.parse().map_err(|_| {
                    bad(number, format!("the class index {index:?} is not a number"))
                })?;
                if label >= wnids().len() {
                    return Err(bad(
                        number,
                        format!("the class index {label} is not in 0..1000"),
                    ));
                }
                (name.to_string(), label)
            }
            LabelsFormat::KaggleCsv => {
                if !seen_header {
                    seen_header = true;
                    if line.starts_with("ImageId") {
                        continue;
                    }
                }
                let Some((id, prediction)) = line.split_once(',') else {
                    return Err(bad(
                        number,
                        format!("expected `ImageId,PredictionString`, found {line:?}"),
                    ));
                };
                let wnid = prediction.split_whitespace().next().unwrap_or("");
                let label = class_index(wnid).ok_or_else(|| {
                    bad(
                        number,
                        format!("{wnid:?} (the first token of the prediction string) is not an ImageNet-1k wnid"),
                    )
                })?;
                (id.trim().to_string(), label)
            }
        };
        if out.insert(name.clone(), label).is_some() {
            return Err(bad(number, format!("{name} is labelled twice")));
        }
    }
    if out.is_empty() {
        return Err(bad(1, "the labels file has no labels".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn val_txt_and_kaggle_csv_parse() {
        let p = Path::new("val.txt");
        let labels = parse_labels(
            p,
            "ILSVRC2012_val_00000001.JPEG 65\n\nILSVRC2012_val_00000002.JPEG 970\n",
        )
        .unwrap();
        assert_eq!(labels["ILSVRC2012_val_00000001.JPEG"], 65);
        assert_eq!(labels["ILSVRC2012_val_00000002.JPEG"], 970);
        let p = Path::new("LOC_val_solution.csv");
        let labels = parse_labels(
            p,
            "ImageId,PredictionString\nILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 44 21 322 295\n",
        )
        .unwrap();
        assert_eq!(
            labels["ILSVRC2012_val_00008726"],
            class_index("n02119789").unwrap()
        );
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        let p = Path::new("val.txt");
        let err = parse_labels(p, "a.JPEG 1\nb.JPEG x\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("val.txt, line 2") && err.contains("\"x\""),
            "{err}"
        );
        let err = parse_labels(p, "a.JPEG 1000\n").unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("0..1000"), "{err}");
        let err = parse_labels(p, "a.JPEG 1\na.JPEG 2\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("twice"), "{err}");
        let p = Path::new("LOC_val_solution.csv");
        let err = parse_labels(p, "ImageId,PredictionString\nx,n99999999 1 2 3 4\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("n99999999"), "{err}");
    }

    #[test]
    fn the_devkit_ground_truth_is_refused_with_a_hint() {
        let p = Path::new("ILSVRC2012_validation_ground_truth.txt");
        let err = parse_labels(p, "490\n361\n").unwrap_err().to_string();
        assert!(err.contains("meta.mat") && err.contains("val.txt"), "{err}");
        // Also by content under another name.
        let err = parse_labels(Path::new("gt.txt"), "490\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("devkit"), "{err}");
    }
}
