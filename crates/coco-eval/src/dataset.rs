//! COCO instances (ground truth): images, categories, annotations with boxes and
//! segmentations, read from JSON with the elements parsed in parallel.

use std::collections::HashMap;
use std::path::Path;

use rayon::prelude::*;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::Error;
use crate::json::{
    NumberQuad, RawCounts, RawSegmentation, deserialize_flag, deserialize_id, document_error,
    element_error, split_array,
};
use crate::mask::{MaskError, Rle};

/// An image of the ground truth. Only the fields evaluation needs are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// The image id.
    pub id: i64,
    /// Height in pixels, needed to rasterise polygons.
    pub height: Option<u32>,
    /// Width in pixels, needed to rasterise polygons.
    pub width: Option<u32>,
}

/// A category of the ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct Category {
    /// The category id.
    pub id: i64,
    /// Its name, when the file gives one.
    pub name: Option<String>,
}

/// An object's region as COCO writes it. Shapes are checked when the region is rasterised
/// ([`Segmentation::to_rle`]), as pycocotools only looks at them for mask evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Segmentation {
    /// Polygon parts `[x0, y0, x1, y1, …]` in pixels; the region is their union.
    Polygons(Vec<Vec<f64>>),
    /// Run lengths as a list (COCO's crowd regions).
    Uncompressed {
        /// `[height, width]`.
        size: [u32; 2],
        /// Run lengths, starting with a run of 0s.
        counts: Vec<u32>,
    },
    /// Run lengths in the compressed string form (detector outputs).
    Compressed {
        /// `[height, width]`.
        size: [u32; 2],
        /// The compressed counts.
        counts: String,
    },
}

impl Segmentation {
    /// The region as an RLE, as pycocotools' `annToRLE`: polygons are rasterised at the
    /// image's size and merged; RLEs keep their own size.
    pub fn to_rle(&self, image_size: Option<[u32; 2]>, image_id: i64) -> Result<Rle, MaskError> {
        match self {
            Segmentation::Polygons(parts) => {
                let [height, width] = image_size.ok_or(MaskError::NoImageSize { image_id })?;
                if parts.is_empty() {
                    return Err(MaskError::NoPolygon);
                }
                for (part, polygon) in parts.iter().enumerate() {
                    if polygon.len() < 6 || polygon.len() % 2 != 0 {
                        return Err(MaskError::PolygonLength {
                            part,
                            len: polygon.len(),
                        });
                    }
                }
                if parts.len() == 1 {
                    return Ok(Rle::from_polygon(&parts[0], height, width));
                }
                let rles: Vec<Rle> = parts
                    .iter()
                    .map(|polygon| Rle::from_polygon(polygon, height, width))
                    .collect();
                Rle::merge(&rles, false)
            }
            Segmentation::Uncompressed { size, counts } => {
                Rle::new(size[0], size[1], counts.clone())
            }
            Segmentation::Compressed { size, counts } => {
                Rle::from_compressed(counts, size[0], size[1])
            }
        }
    }
}

/// A ground-truth object.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// Annotation id (0 is legal but pycocotools then never counts a match to it).
    pub id: i64,
    /// The image it belongs to.
    pub image_id: i64,
    /// Its category.
    pub category_id: i64,
    /// The `area` field: used for area ranges in both box and mask evaluation.
    pub area: f64,
    /// Crowd regions are ignored and may match many detections.
    pub iscrowd: bool,
    /// `[x, y, width, height]`, needed for box evaluation.
    pub bbox: Option<[f64; 4]>,
    /// The region, needed for mask evaluation.
    pub segmentation: Option<Segmentation>,
}

/// A COCO instances file: the ground truth of an evaluation.
#[derive(Debug, Clone)]
pub struct CocoGt {
    images: Vec<Image>,
    annotations: Vec<Annotation>,
    categories: Vec<Category>,
    /// Image id → index in `images` (the last entry wins, as in pycocotools' dict).
    image_index: HashMap<i64, usize>,
    /// Image id → annotation indices in file order (pycocotools' `imgToAnns`).
    anns_by_image: HashMap<i64, Vec<u32>>,
    source: String,
}

#[derive(Deserialize)]
struct RawDocument<'a> {
    #[serde(borrow)]
    images: &'a RawValue,
    #[serde(borrow, default)]
    annotations: Option<&'a RawValue>,
    #[serde(borrow)]
    categories: &'a RawValue,
}

#[derive(Deserialize)]
struct RawImage {
    #[serde(deserialize_with = "deserialize_id")]
    id: i64,
    #[serde(default)]
    height: Option<u64>,
    #[serde(default)]
    width: Option<u64>,
}

#[derive(Deserialize)]
struct RawCategory {
    #[serde(deserialize_with = "deserialize_id")]
    id: i64,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct RawAnnotation<'a> {
    #[serde(deserialize_with = "deserialize_id")]
    id: i64,
    #[serde(deserialize_with = "deserialize_id")]
    image_id: i64,
    #[serde(deserialize_with = "deserialize_id")]
    category_id: i64,
    area: f64,
    #[serde(default, deserialize_with = "deserialize_flag")]
    iscrowd: bool,
    #[serde(default)]
    bbox: Option<NumberQuad>,
    #[serde(default, borrow)]
    segmentation: Option<RawSegmentation<'a>>,
}

/// Checks a box read from JSON: four numbers, non-negative width and height.
pub(crate) fn check_bbox(quad: NumberQuad) -> Result<[f64; 4], String> {
    if quad.len != 4 {
        return Err(format!(
            "bbox has {} numbers, expected 4 ([x, y, width, height])",
            quad.len
        ));
    }
    let [_, _, width, height] = quad.values;
    if width < 0.0 || height < 0.0 {
        return Err(format!(
            "bbox {:?} has a negative width or height",
            quad.values
        ));
    }
    Ok(quad.values)
}

fn size_u32(value: u64, what: &str) -> Result<u32, String> {
    u32::try_from(value).map_err(|_| format!("{what} {value} does not fit in 32 bits"))
}

/// Converts a parsed segmentation; only types are checked here.
pub(crate) fn convert_segmentation(raw: RawSegmentation<'_>) -> Result<Segmentation, String> {
    match raw {
        RawSegmentation::Polygons(parts) => Ok(Segmentation::Polygons(parts)),
        RawSegmentation::Rle { size, counts } => {
            let (height, width) =
                size.ok_or_else(|| "RLE segmentation has no \"size\"".to_string())?;
            let size = [
                size_u32(height, "RLE height")?,
                size_u32(width, "RLE width")?,
            ];
            match counts.ok_or_else(|| "RLE segmentation has no \"counts\"".to_string())? {
                RawCounts::List(list) => {
                    let counts = list
                        .iter()
                        .map(|&c| {
                            u32::try_from(c)
                                .map_err(|_| format!("RLE count {c} is not in 0..=4294967295"))
                        })
                        .collect::<Result<Vec<u32>, String>>()?;
                    Ok(Segmentation::Uncompressed { size, counts })
                }
                RawCounts::Text(text) => Ok(Segmentation::Compressed {
                    size,
                    counts: text.into_owned(),
                }),
            }
        }
    }
}

/// The element spans of the JSON array `bytes[begin..end]`, or serde_json's precise error.
pub(crate) fn array_spans(
    file: &str,
    bytes: &[u8],
    begin: usize,
    end: usize,
    what: &str,
) -> Result<Vec<(usize, usize)>, Error> {
    split_array(bytes, begin, end).ok_or_else(|| {
        // Not a well-formed array: let serde_json say precisely what is wrong and where.
        let err = serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(&bytes[begin..end])
            .err()
            .map(|err| element_error(file, bytes, begin, what, &err));
        err.unwrap_or_else(|| Error::Json {
            file: file.to_string(),
            line: 0,
            column: 0,
            message: format!("{what}: expected a JSON array"),
        })
    })
}

/// Parses one array element, with its position in the file on error.
pub(crate) fn parse_element<'a, T: Deserialize<'a>>(
    file: &str,
    bytes: &'a [u8],
    (start, stop): (usize, usize),
    what: &str,
    index: usize,
) -> Result<T, Error> {
    serde_json::from_slice(&bytes[start..stop])
        .map_err(|err| element_error(file, bytes, start, &format!("{what}[{index}]"), &err))
}

/// The values, or the error of the first element (by index) that failed, so that the error
/// reported does not depend on the thread count.
pub(crate) fn first_error_or_values<U>(
    mut outcomes: Vec<Result<U, Error>>,
) -> Result<Vec<U>, Error> {
    if let Some(position) = outcomes.iter().position(Result::is_err)
        && let Err(err) = outcomes.swap_remove(position)
    {
        return Err(err);
    }
    Ok(outcomes.into_iter().filter_map(Result::ok).collect())
}

/// Parses the array `bytes[begin..end]` element by element in parallel.
pub(crate) fn parse_array_parallel<'a, T, U, F>(
    file: &str,
    bytes: &'a [u8],
    begin: usize,
    end: usize,
    what: &str,
    convert: F,
) -> Result<Vec<U>, Error>
where
    T: Deserialize<'a>,
    U: Send,
    F: Fn(usize, T) -> Result<U, Error> + Sync,
{
    let spans = array_spans(file, bytes, begin, end, what)?;
    let mut outcomes = Vec::with_capacity(spans.len());
    spans
        .par_iter()
        .enumerate()
        .with_min_len(256)
        .map(|(index, &span)| convert(index, parse_element(file, bytes, span, what, index)?))
        .collect_into_vec(&mut outcomes);
    first_error_or_values(outcomes)
}

fn raw_range(bytes: &[u8], raw: &RawValue) -> (usize, usize) {
    let start = raw.get().as_ptr() as usize - bytes.as_ptr() as usize;
    (start, start + raw.get().len())
}

impl CocoGt {
    /// Reads an instances JSON file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_slice(&bytes, &path.display().to_string())
    }

    /// Parses an instances JSON document; `name` is used in error messages.
    pub fn from_slice(bytes: &[u8], name: &str) -> Result<Self, Error> {
        let document: RawDocument<'_> = serde_json::from_slice(bytes).map_err(|err| {
            if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
                Error::Json {
                    file: name.to_string(),
                    line: 1,
                    column: 1,
                    message: "expected a COCO instances object with \"images\", \"annotations\" \
                              and \"categories\", found an array (is this a results file?)"
                        .to_string(),
                }
            } else {
                document_error(name, &err)
            }
        })?;
        let (begin, end) = raw_range(bytes, document.images);
        let images =
            parse_array_parallel(name, bytes, begin, end, "images", |index, raw: RawImage| {
                let location = || format!("images[{index}] (id {})", raw.id);
                let dim = |value: Option<u64>, what: &str| {
                    value
                        .map(|v| size_u32(v, what))
                        .transpose()
                        .map_err(|message| Error::invalid(name, location(), message))
                };
                Ok(Image {
                    id: raw.id,
                    height: dim(raw.height, "height")?,
                    width: dim(raw.width, "width")?,
                })
            })?;
        let (begin, end) = raw_range(bytes, document.categories);
        let categories = parse_array_parallel(
            name,
            bytes,
            begin,
            end,
            "categories",
            |_, raw: RawCategory| {
                Ok(Category {
                    id: raw.id,
                    name: raw.name,
                })
            },
        )?;
        let annotations = match document.annotations {
            None => Vec::new(),
            Some(raw) => {
                let (begin, end) = raw_range(bytes, raw);
                parse_array_parallel(
                    name,
                    bytes,
                    begin,
                    end,
                    "annotations",
                    |index, raw: RawAnnotation<'_>| {
                        let location = || format!("annotations[{index}] (id {})", raw.id);
                        let bbox = raw
                            .bbox
                            .map(check_bbox)
                            .transpose()
                            .map_err(|message| Error::invalid(name, location(), message))?;
                        let segmentation = match raw.segmentation {
                            None => None,
                            Some(segmentation) => Some(
                                convert_segmentation(segmentation)
                                    .map_err(|message| Error::invalid(name, location(), message))?,
                            ),
                        };
                        Ok(Annotation {
                            id: raw.id,
                            image_id: raw.image_id,
                            category_id: raw.category_id,
                            area: raw.area,
                            iscrowd: raw.iscrowd,
                            bbox,
                            segmentation,
                        })
                    },
                )?
            }
        };
        Ok(Self::build(
            images,
            annotations,
            categories,
            name.to_string(),
        ))
    }

    /// A ground truth from values (for tests, converters, or the synthetic world).
    pub fn new(
        images: Vec<Image>,
        annotations: Vec<Annotation>,
        categories: Vec<Category>,
    ) -> Self {
        Self::build(images, annotations, categories, "<memory>".to_string())
    }

    fn build(
        images: Vec<Image>,
        annotations: Vec<Annotation>,
        categories: Vec<Category>,
        source: String,
    ) -> Self {
        let mut image_index = HashMap::with_capacity(images.len());
        for (index, image) in images.iter().enumerate() {
            image_index.insert(image.id, index);
        }
        let mut anns_by_image: HashMap<i64, Vec<u32>> = HashMap::with_capacity(images.len());
        for (index, ann) in annotations.iter().enumerate() {
            anns_by_image
                .entry(ann.image_id)
                .or_default()
                .push(index as u32);
        }
        Self {
            images,
            annotations,
            categories,
            image_index,
            anns_by_image,
            source,
        }
    }

    /// The images, in file order.
    pub fn images(&self) -> &[Image] {
        &self.images
    }

    /// The annotations, in file order.
    pub fn annotations(&self) -> &[Annotation] {
        &self.annotations
    }

    /// The categories, in file order.
    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    /// The file this ground truth came from (for messages).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The image with this id (the last one listed, if the file repeats an id).
    pub fn image(&self, id: i64) -> Option<&Image> {
        self.image_index.get(&id).map(|&index| &self.images[index])
    }

    /// `[height, width]` of an image, if the file gives both.
    pub fn image_size(&self, id: i64) -> Option<[u32; 2]> {
        let image = self.image(id)?;
        Some([image.height?, image.width?])
    }

    /// Sorted unique image ids (pycocotools' `sorted(getImgIds())`).
    pub fn image_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.image_index.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Sorted category ids as listed (pycocotools' `sorted(getCatIds())`, repeats kept).
    pub fn category_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.categories.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids
    }

    /// Indices of the annotations on an image, in file order.
    pub(crate) fn annotations_of(&self, image_id: i64) -> &[u32] {
        self.anns_by_image
            .get(&image_id)
            .map_or(&[][..], Vec::as_slice)
    }
}
