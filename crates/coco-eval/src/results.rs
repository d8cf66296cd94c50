//! Detection results: reading a results JSON the way pycocotools' `loadRes` does, and writing
//! one (boxes, and masks as compressed RLE) for the detection task.

use std::cell::RefCell;
use std::io::Write;
use std::path::Path;

use rayon::prelude::*;
use serde::Deserialize;
use serde::ser::{SerializeMap, Serializer};

use crate::dataset::{
    CocoGt, Segmentation, check_bbox, convert_segmentation, parse_array_parallel,
};
use crate::error::Error;
use crate::json::{NumberQuad, RawSegmentation, deserialize_id, split_array};
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

thread_local! {
    static COUNTS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Area and bounding box of a segmentation without keeping its RLE (`maskUtils.area`,
/// `maskUtils.toBbox`).
fn area_and_box(
    segmentation: &Segmentation,
    image_size: Option<[u32; 2]>,
    image_id: i64,
) -> Result<(u32, [f64; 4]), MaskError> {
    match segmentation {
        Segmentation::Compressed { size, counts } => COUNTS.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            mask::decode_compressed_into(counts.as_bytes(), &mut buffer)?;
            let rle = Rle::new(size[0], size[1], std::mem::take(&mut *buffer))?;
            let out = (rle.area(), rle.to_bbox());
            *buffer = rle.into_counts();
            Ok(out)
        }),
        other => {
            let rle = other.to_rle(image_size, image_id)?;
            Ok((rle.area(), rle.to_bbox()))
        }
    }
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
        if split_array(bytes, 0, bytes.len()).is_none()
            && bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        {
            return Err(Error::Json {
                file: name.to_string(),
                line: 1,
                column: 1,
                message: "expected a JSON array of results, found an object (is this a ground-truth file?)"
                    .to_string(),
            });
        }
        let results = parse_array_parallel(
            name,
            bytes,
            0,
            bytes.len(),
            "results",
            |index, raw: RawDetection<'_>| {
                let location = || format!("results[{index}] (image_id {})", raw.image_id);
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
                if !raw.score.is_finite() {
                    return Err(Error::invalid(name, location(), "score is not finite"));
                }
                Ok(DetectionResult {
                    image_id: raw.image_id,
                    category_id: raw.category_id,
                    score: raw.score,
                    bbox,
                    segmentation,
                })
            },
        )?;
        Self::prepare(results, gt, name)
    }

    /// Prepares in-memory results as `loadRes` does (same checks as reading a file).
    pub fn from_results(results: Vec<DetectionResult>, gt: &CocoGt) -> Result<Self, Error> {
        for (index, result) in results.iter().enumerate() {
            let location = || format!("results[{index}] (image_id {})", result.image_id);
            if let Some(bbox) = result.bbox {
                check_bbox(NumberQuad {
                    values: bbox,
                    len: 4,
                })
                .map_err(|message| Error::invalid("<memory>", location(), message))?;
            }
            if !result.score.is_finite() {
                return Err(Error::invalid(
                    "<memory>",
                    location(),
                    "score is not finite",
                ));
            }
        }
        Self::prepare(results, gt, "<memory>")
    }

    fn prepare(results: Vec<DetectionResult>, gt: &CocoGt, name: &str) -> Result<Self, Error> {
        let unknown: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| gt.image(r.image_id).is_none())
            .map(|(index, _)| index)
            .collect();
        if let Some(&index) = unknown.first() {
            return Err(Error::UnknownImage {
                file: name.to_string(),
                index,
                image_id: results[index].image_id,
                count: unknown.len(),
            });
        }
        let kind = match results.first() {
            None | Some(DetectionResult { bbox: Some(_), .. }) => ResultsKind::Boxes,
            Some(DetectionResult {
                segmentation: Some(_),
                ..
            }) => ResultsKind::Masks,
            Some(first) => {
                return Err(Error::invalid(
                    name,
                    format!("results[0] (image_id {})", first.image_id),
                    "a result needs a \"bbox\" or a \"segmentation\"",
                ));
            }
        };
        let detections = results
            .into_par_iter()
            .enumerate()
            .with_min_len(512)
            .map(|(index, result)| {
                let location = || format!("results[{index}] (image_id {})", result.image_id);
                let (bbox, area) = match kind {
                    ResultsKind::Boxes => {
                        let bbox = result.bbox.ok_or_else(|| {
                            Error::invalid(
                                name,
                                location(),
                                "has no \"bbox\" although the first result has one",
                            )
                        })?;
                        (bbox, bbox[2] * bbox[3])
                    }
                    ResultsKind::Masks => {
                        let segmentation = result.segmentation.as_ref().ok_or_else(|| {
                            Error::invalid(
                                name,
                                location(),
                                "has no \"segmentation\" although the first result is a mask",
                            )
                        })?;
                        let (area, mask_box) = area_and_box(
                            segmentation,
                            gt.image_size(result.image_id),
                            result.image_id,
                        )
                        .map_err(|source| Error::Mask {
                            context: format!("{name}: {}", location()),
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
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Self {
            detections,
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
