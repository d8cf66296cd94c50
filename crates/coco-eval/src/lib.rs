//! `rtb-coco-eval`: COCO box and mask evaluation that gives pycocotools 2.0.11's numbers.
//!
//! The crate owns everything between a COCO instances file, a detector's results file and the
//! 12 numbers researchers quote:
//!
//! - [`CocoGt`] reads the ground truth (images, categories, annotations with polygons,
//!   uncompressed or compressed RLE, crowd flags); [`Detections`] reads a results file the way
//!   pycocotools' `loadRes` does (areas, boxes from masks, unknown images rejected). Both parse
//!   the big arrays in parallel and report bad input as an [`Error`] naming the file, the
//!   element and the field; nothing panics on user input.
//! - [`mask`] is maskApi.c: [`Rle`] encode/decode, the compressed string codec, polygon and box
//!   rasterisation, area, bounding box, IoU with crowd regions, merge.
//! - [`CocoEval`] evaluates (`evaluate` → [`Evaluation`]), accumulates ([`Accumulation`]:
//!   precision / recall / score tables with pycocotools' layout) and summarises ([`Summary`]:
//!   the 12 stats and printed lines). Quirks that change numbers are kept for parity and
//!   reported as [`EvalWarning`]s. Work runs on rayon; results do not depend on the thread
//!   count.
//! - [`ResultsWriter`] writes results files (boxes, masks as compressed RLE) for the detection
//!   task.
//!
//! Architecture invariant: this crate knows nothing of tensors or models. It must not depend
//! on candle or any other rtb crate; its inputs and outputs are plain structs, with serde only
//! at the file edges.
//!
//! ```
//! use rtb_coco_eval::{CocoEval, CocoGt, Detections, IouType, Params};
//!
//! let gt = CocoGt::from_slice(br#"{
//!     "images": [{"id": 1, "height": 100, "width": 100}],
//!     "categories": [{"id": 7, "name": "box"}],
//!     "annotations": [
//!         {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0}
//!     ]
//! }"#, "gt.json")?;
//! let dt = Detections::from_slice(br#"[
//!     {"image_id": 1, "category_id": 7, "bbox": [10, 10, 20, 20], "score": 0.9},
//!     {"image_id": 1, "category_id": 7, "bbox": [50, 50, 10, 10], "score": 0.8}
//! ]"#, "dt.json", &gt)?;
//! let report = CocoEval::new(&gt, &dt, Params::new(IouType::Bbox)).run()?;
//! // The one object is found by the best detection: AP is 1 (exactly 1 / (1 + eps), as
//! // pycocotools computes precision); it is small, so APs too, and with no medium objects
//! // APm is -1.
//! assert_eq!(report.summary.stats[0], 1.0 / (1.0 + f64::EPSILON));
//! assert_eq!(report.summary.stats[3], report.summary.stats[0]);
//! assert_eq!(report.summary.stats[4], -1.0);
//! assert_eq!(
//!     report.summary.lines()[0],
//!     " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000"
//! );
//! # Ok::<(), rtb_coco_eval::Error>(())
//! ```
#![deny(missing_docs)]

mod dataset;
mod error;
mod eval;
mod json;
pub mod mask;
mod params;
mod results;

pub use dataset::{Annotation, Category, CocoGt, Image, Segmentation};
pub use error::Error;
pub use eval::{Accumulation, CocoEval, EvalReport, EvalWarning, Evaluation, Summary};
pub use mask::{MaskError, Rle};
pub use params::{IouType, Params, linspace};
pub use results::{
    Detection, DetectionResult, Detections, ResultsKind, ResultsWriter, write_results_file,
};
