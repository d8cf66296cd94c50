//! Errors of the COCO task; each names the file, annotation, field or value involved.

use std::path::PathBuf;

/// Everything that can go wrong loading, transforming, training or evaluating COCO data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CocoTaskError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// An image file that does not decode (truncated, corrupt, not an image).
    #[error("{path}: cannot decode the image: {message}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What the decoder reported.
        message: String,
    },
    /// An instances file that is not COCO (bad JSON, a missing or mistyped field).
    #[error("{path}: {message}")]
    Annotations {
        /// The instances file.
        path: PathBuf,
        /// What is wrong, naming the element.
        message: String,
    },
    /// An annotation that cannot be used (no bbox or segmentation, a polygon of the wrong
    /// length, an RLE of another size than its image).
    #[error("{path}: annotation {annotation_id} (image {image_id}): {message}")]
    BadAnnotation {
        /// The instances file.
        path: PathBuf,
        /// The annotation's id.
        annotation_id: i64,
        /// Its image's id.
        image_id: i64,
        /// What is wrong.
        message: String,
    },
    /// A decoded image whose size differs from its `images` entry.
    #[error(
        "{path}: the image is {width}×{height} but the instances file says {expected_width}×\
         {expected_height} (image {image_id})"
    )]
    SizeMismatch {
        /// The image file.
        path: PathBuf,
        /// Its id.
        image_id: i64,
        /// Decoded width.
        width: u32,
        /// Decoded height.
        height: u32,
        /// The instances file's width.
        expected_width: u32,
        /// The instances file's height.
        expected_height: u32,
    },
    /// An image the pipeline cannot transform (e.g. so elongated that resizing leaves a side
    /// of 0 pixels).
    #[error("{path}: {message}")]
    Transform {
        /// The image file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// COCO evaluation failed.
    #[error(transparent)]
    Eval(#[from] rtb_coco_eval::Error),
    /// A configuration value or an argument that cannot work.
    #[error("invalid {field}: {message}")]
    Config {
        /// The field or argument.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The engine, a loader or a corruption failed.
    #[error(transparent)]
    Train(#[from] rtb_train::TrainError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Building the backbone or reading its weights failed (boxed: model errors carry key
    /// reports).
    #[error(transparent)]
    Model(Box<rtb_models::ModelError>),
    /// The detector refused its input or configuration.
    #[error(transparent)]
    Detection(#[from] rtb_detection::DetectionError),
    /// Writing or naming the results failed.
    #[error(transparent)]
    Results(#[from] rtb_results::ResultsError),
    /// A file or folder the run needs is missing.
    #[error("{path} is missing: {hint}")]
    Missing {
        /// The file or folder.
        path: PathBuf,
        /// What to do about it.
        hint: String,
    },
}

impl From<rtb_models::ModelError> for CocoTaskError {
    fn from(err: rtb_models::ModelError) -> Self {
        CocoTaskError::Model(Box::new(err))
    }
}

impl CocoTaskError {
    /// A [`CocoTaskError::Config`] error.
    pub fn config(field: &str, message: impl Into<String>) -> Self {
        CocoTaskError::Config {
            field: field.to_string(),
            message: message.into(),
        }
    }
}
