//! Detection results: reading a results JSON the way pycocotools' `loadRes` does, and writing
//! one (boxes, and masks as compressed RLE) for the detection task.

use std::io::Write;
use std::path::Path;

use rayon::prelude::*;
use serde::Deserialize;
use serde::ser::{SerializeMap, Serializer};

use crate::dataset::{
    CocoGt, Segmentation, array_spans, check_bbox, convert_segmentation, parse_element,
};
use crate::error::Error;
use crate::json::{NumberQuad, RawSegmentation, deserialize_id};
use crate::mask::{self, MaskError, Rle};

/// One detection as a detector reports it: a line of a COCO results file.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionResult {
    /// The image.
    pub image_id: i64,
    /// The predicted category.
    pub category_id: i64,
    /// Confidence; higher ranks first.
    pub score: f64,
    /// `[x, y, width, height]` in pixels.
    pub bbox: Option<[f64; 4]>,
    /// The predicted region (normally compressed RLE, see [`Segmentation::compressed`]).
    pub segmentation: Option<Segmentation>,
}

impl Segmentation {
    /// The compressed-RLE form of a mask, as detectors write it into results files.
    pub fn compressed(rle: &Rle) -> Self {
        Segmentation::Compressed {
            size: rle.size(),
            counts: rle.to_compressed(),
        }
    }
}

/// Which of `loadRes`'s branches a results file takes; pycocotools decides by the first result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultsKind {
    /// The first result has a `bbox`: every result needs one, its area is `w·h` (also for
    /// mask evaluation) and a result without a segmentation is its box as a polygon.
    Boxes,
    /// The first result has no `bbox`: every result needs a segmentation, whose pixel count is
    /// the area and whose bounding box stands in for a missing `bbox`.
    Masks,
}

/// A detection prepared for evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// The image.
    pub image_id: i64,
    /// The predicted category.
    pub category_id: i64,
    /// Confidence.
    pub score: f64,
    /// The box used by box evaluation.
    pub bbox: [f64; 4],
    /// The area compared with the area ranges.
    pub area: f64,
    /// The region used by mask evaluation; `None` means the box itself.
    pub segmentation: Option<Segmentation>,
}

/// The results of a detector on a ground truth's images.
#[derive(Debug, Clone)]
pub struct Detections {
    detections: Vec<Detection>,
    kind: ResultsKind,
    source: String,
}

#[derive(Deserialize)]
struct RawDetection<'a> {
    #[serde(deserialize_with = "deserialize_id")]
    image_id: i64,
    #[serde(deserialize_with = "deserialize_id")]
    category_id: i64,
    score: f64,
    #[serde(default)]
    bbox: Option<NumberQuad>,
    #[serde(default, borrow)]
    segmentation: Option<RawSegmentation<'a>>,
}

/// Area and bounding box of a segmentation without keeping its RLE (`maskUtils.area`,
/// `maskUtils.toBbox`).
fn area_and_box(
    segmentation: &Segmentation,
    image_size: Option<[u32; 2]>,
    image_id: i64,
) -> Result<(u32, [f64; 4]), MaskError> {
    match segmentation {
        Segmentation::Compressed { size, counts } => {
            mask::compressed_area_and_box(counts.as_bytes(), size[0], size[1])
        }
        other => {
            let rle = other.to_rle(image_size, image_id)?;
            Ok((rle.area(), rle.to_bbox()))
        }
    }
}

/// Why one result could not be prepared.
enum Failure {
    /// Its image is not in the ground truth (counted over the whole file).
    UnknownImage(i64),
    Invalid(Error),
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        Failure::Invalid(err)
    }
}

fn location(index: usize, image_id: i64) -> String {
    format!("results[{index}] (image_id {image_id})")
}

/// Type-level checks of a parsed result.
fn check_result(name: &str, index: usize, raw: RawDetection<'_>) -> Result<DetectionResult, Error> {
    let bbox = raw
        .bbox
        .map(check_bbox)
        .transpose()
        .map_err(|message| Error::invalid(name, location(index, raw.image_id), message))?;
    let segmentation = match raw.segmentation {
        None => None,
        Some(segmentation) => Some(
            convert_segmentation(segmentation)
                .map_err(|message| Error::invalid(name, location(index, raw.image_id), message))?,
        ),
    };
    if !raw.score.is_finite() {
        return Err(Error::invalid(
            name,
            location(index, raw.image_id),
            "score is not finite",
        ));
    }
    Ok(DetectionResult {
        image_id: raw.image_id,
        category_id: raw.category_id,
        score: raw.score,
        bbox,
        segmentation,
    })
}

/// `loadRes`'s choice of branch from the first result.
fn kind_of(
    name: &str,
    image_id: i64,
    has_bbox: bool,
    has_segmentation: bool,
) -> Result<ResultsKind, Error> {
    if has_bbox {
        Ok(ResultsKind::Boxes)
    } else if has_segmentation {
        Ok(ResultsKind::Masks)
    } else {
        Err(Error::invalid(
            name,
            location(0, image_id),
            "a result needs a \"bbox\" or a \"segmentation\"",
        ))
    }
}

/// `loadRes` for one result: its area, and its box when only a mask is given.
fn prepare_one(
    name: &str,
    gt: &CocoGt,
    kind: ResultsKind,
    index: usize,
    result: DetectionResult,
) -> Result<Detection, Failure> {
    if gt.image(result.image_id).is_none() {
        return Err(Failure::UnknownImage(result.image_id));
    }
    let (bbox, area) = match kind {
        ResultsKind::Boxes => {
            let bbox = result.bbox.ok_or_else(|| {
                Error::invalid(
                    name,
                    location(index, result.image_id),
                    "has no \"bbox\" although the first result has one",
                )
            })?;
            (bbox, bbox[2] * bbox[3])
        }
        ResultsKind::Masks => {
            let segmentation = result.segmentation.as_ref().ok_or_else(|| {
                Error::invalid(
                    name,
                    location(index, result.image_id),
                    "has no \"segmentation\" although the first result is a mask",
                )
            })?;
            let (area, mask_box) = area_and_box(
                segmentation,
                gt.image_size(result.image_id),
                result.image_id,
            )
            .map_err(|source| Error::Mask {
                context: format!("{name}: {}", location(index, result.image_id)),
                source,
            })?;
            (result.bbox.unwrap_or(mask_box), f64::from(area))
        }
    };
    Ok(Detection {
        image_id: result.image_id,
        category_id: result.category_id,
        score: result.score,
        bbox,
        area,
        segmentation: result.segmentation,
    })
}

/// The detections, or the first failure by index (unknown images are counted over the file,
/// as pycocotools checks them all at once).
fn finish(name: &str, outcomes: Vec<Result<Detection, Failure>>) -> Result<Vec<Detection>, Error> {
    if let Some(position) = outcomes.iter().position(Result::is_err) {
        let count = outcomes
            .iter()
            .filter(|o| matches!(o, Err(Failure::UnknownImage(_))))
            .count();
        return Err(match &outcomes[position] {
            Err(Failure::UnknownImage(image_id)) => Error::UnknownImage {
                file: name.to_string(),
                index: position,
                image_id: *image_id,
                count,
            },
            _ => match outcomes.into_iter().nth(position) {
                Some(Err(Failure::Invalid(err))) => err,
                _ => Error::invalid(name, format!("results[{position}]"), "invalid result"),
            },
        });
    }
    Ok(outcomes.into_iter().filter_map(Result::ok).collect())
}

impl Detections {
    /// Reads a results JSON file (a list of `{image_id, category_id, score, bbox?,
    /// segmentation?}`) against its ground truth.
    pub fn from_path(path: impl AsRef<Path>, gt: &CocoGt) -> Result<Self, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_slice(&bytes, &path.display().to_string(), gt)
    }

    /// Parses a results JSON document; `name` is used in error messages.
    pub fn from_slice(bytes: &[u8], name: &str, gt: &CocoGt) -> Result<Self, Error> {
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            return Err(Error::Json {
                file: name.to_string(),
                line: 1,
                column: 1,
                message: "expected a JSON array of results, found an object (is this a ground-truth file?)"
                    .to_string(),
            });
        }
        let spans = array_spans(name, bytes, 0, bytes.len(), "results")?;
        let kind = match spans.first() {
            None => ResultsKind::Boxes,
            Some(&span) => {
                let first: RawDetection<'_> = parse_element(name, bytes, span, "results", 0)?;
                kind_of(
                    name,
                    first.image_id,
                    first.bbox.is_some(),
                    first.segmentation.is_some(),
                )?
            }
        };
        let mut outcomes = Vec::with_capacity(spans.len());
        spans
            .par_iter()
            .enumerate()
            .with_min_len(256)
            .map(|(index, &span)| {
                let raw: RawDetection<'_> = parse_element(name, bytes, span, "results", index)?;
                let result = check_result(name, index, raw)?;
                prepare_one(name, gt, kind, index, result)
            })
            .collect_into_vec(&mut outcomes);
        Ok(Self {
            detections: finish(name, outcomes)?,
            kind,
            source: name.to_string(),
        })
    }

    /// Prepares in-memory results as `loadRes` does (same checks as reading a file).
    pub fn from_results(results: Vec<DetectionResult>, gt: &CocoGt) -> Result<Self, Error> {
        let name = "<memory>";
        let kind = match results.first() {
            None => ResultsKind::Boxes,
            Some(first) => kind_of(
                name,
                first.image_id,
                first.bbox.is_some(),
                first.segmentation.is_some(),
            )?,
        };
        let mut outcomes = Vec::with_capacity(results.len());
        results
            .into_par_iter()
            .enumerate()
            .with_min_len(256)
            .map(|(index, result)| {
                if let Some(bbox) = result.bbox {
                    check_bbox(NumberQuad {
                        values: bbox,
                        len: 4,
                    })
                    .map_err(|message| {
                        Error::invalid(name, location(index, result.image_id), message)
                    })?;
                }
                if !result.score.is_finite() {
                    return Err(Error::invalid(
                        name,
                        location(index, result.image_id),
                        "score is not finite",
                    )
                    .into());
                }
                prepare_one(name, gt, kind, index, result)
            })
            .collect_into_vec(&mut outcomes);
        Ok(Self {
            detections: finish(name, outcomes)?,
            kind,
            source: name.to_string(),
        })
    }

    /// The detections, in file order (ids are `index + 1`, as pycocotools numbers them).
    pub fn detections(&self) -> &[Detection] {
        &self.detections
    }

    /// Which `loadRes` branch the file took.
    pub fn kind(&self) -> ResultsKind {
        self.kind
    }

    /// The file these results came from (for messages).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Number of detections.
    pub fn len(&self) -> usize {
        self.detections.len()
    }

    /// Whether there are no detections.
    pub fn is_empty(&self) -> bool {
        self.detections.is_empty()
    }
}

fn serialize_segmentation<S: SerializeMap>(
    map: &mut S,
    segmentation: &Segmentation,
) -> Result<(), S::Error> {
    struct Rle<'a, C: serde::Serialize> {
        size: [u32; 2],
        counts: &'a C,
    }
    impl<C: serde::Serialize> serde::Serialize for Rle<'_, C> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut map = serializer.serialize_map(Some(2))?;
            map.serialize_entry("size", &self.size)?;
            map.serialize_entry("counts", self.counts)?;
            map.end()
        }
    }
    match segmentation {
        Segmentation::Polygons(parts) => map.serialize_entry("segmentation", parts),
        Segmentation::Uncompressed { size, counts } => map.serialize_entry(
            "segmentation",
            &Rle {
                size: *size,
                counts,
            },
        ),
        Segmentation::Compressed { size, counts } => map.serialize_entry(
            "segmentation",
            &Rle {
                size: *size,
                counts,
            },
        ),
    }
}

impl serde::Serialize for DetectionResult {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("image_id", &self.image_id)?;
        map.serialize_entry("category_id", &self.category_id)?;
        if let Some(bbox) = &self.bbox {
            map.serialize_entry("bbox", bbox)?;
        }
        map.serialize_entry("score", &self.score)?;
        if let Some(segmentation) = &self.segmentation {
            serialize_segmentation(&mut map, segmentation)?;
        }
        map.end()
    }
}

/// Streams results into a COCO results JSON array, one result per line.
#[derive(Debug)]
pub struct ResultsWriter<W: Write> {
    writer: W,
    written: usize,
}

impl<W: Write> ResultsWriter<W> {
    /// Starts the array.
    pub fn new(mut writer: W) -> std::io::Result<Self> {
        writer.write_all(b"[")?;
        Ok(Self { writer, written: 0 })
    }

    /// Appends one result. Floats are written in their shortest exact form, so Python reads
    /// back the same numbers.
    pub fn write(&mut self, result: &DetectionResult) -> std::io::Result<()> {
        self.writer
            .write_all(if self.written == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer(&mut self.writer, result)?;
        self.written += 1;
        Ok(())
    }

    /// Number of results written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Closes the array and returns the writer (flushed).
    pub fn finish(mut self) -> std::io::Result<W> {
        self.writer.write_all(b"\n]\n")?;
        self.writer.flush()?;
        Ok(self.writer)
    }
}

/// Writes a results file atomically (a temporary file renamed into place), so that a partial
/// file is never mistaken for a finished one.
pub fn write_results_file(
    path: impl AsRef<Path>,
    results: &[DetectionResult],
) -> Result<(), Error> {
    let path = path.as_ref();
    let io_error = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".part");
    let temporary = std::path::PathBuf::from(temporary);
    let file = std::fs::File::create(&temporary).map_err(io_error)?;
    let mut writer = ResultsWriter::new(std::io::BufWriter::new(file)).map_err(io_error)?;
    for result in results {
        writer.write(result).map_err(io_error)?;
    }
    let buffered = writer.finish().map_err(io_error)?;
    let file = buffered
        .into_inner()
        .map_err(|err| io_error(err.into_error()))?;
    file.sync_all().map_err(io_error)?;
    std::fs::rename(&temporary, path).map_err(io_error)?;
    Ok(())
}
