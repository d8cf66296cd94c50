//! The crate's error type. Every message names the file (or "params"), the element and the
//! field that is wrong.

use std::path::PathBuf;

use crate::mask::MaskError;

/// Errors from reading COCO files, evaluating or writing results.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system reported.
        source: std::io::Error,
    },
    /// The text is not JSON, or a value has the wrong JSON type.
    #[error("{file}: line {line} column {column}: {message}")]
    Json {
        /// The file (or the name given to an in-memory document).
        file: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What serde_json reported, prefixed by the element (e.g. `annotations[12]`).
        message: String,
    },
    /// A value is well-formed JSON but not valid COCO (wrong box length, negative width,
    /// short polygon, RLE counts that do not cover the image…).
    #[error("{file}: {location}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// The element, e.g. `annotations[12] (id 40)` or `results[3] (image_id 9)`.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A result refers to an image that the ground truth does not have (pycocotools asserts
    /// "Results do not correspond to current coco set").
    #[error(
        "{file}: results[{index}] has image_id {image_id}, which is not an image of the ground truth \
         ({count} results refer to unknown images)"
    )]
    UnknownImage {
        /// The results file.
        file: String,
        /// Index of the first offending result.
        index: usize,
        /// Its image id.
        image_id: i64,
        /// How many results refer to images not in the ground truth.
        count: usize,
    },
    /// A mask could not be built during evaluation.
    #[error("{context}: {source}")]
    Mask {
        /// Which annotation or detection.
        context: String,
        /// The mask error.
        source: MaskError,
    },
    /// The evaluation parameters are unusable.
    #[error("params: {0}")]
    Params(String),
}

impl Error {
    pub(crate) fn invalid(
        file: &str,
        location: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            file: file.to_string(),
            location: location.into(),
            message: message.into(),
        }
    }
}
