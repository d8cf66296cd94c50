//! Errors of the ADE20K task; each names the file, field or value involved.

use std::path::PathBuf;

/// Everything that can go wrong loading, transforming or batching ADE20K-style data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdeTaskError {
    /// A file could not be read.
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
    /// A label map whose size differs from its image's.
    #[error(
        "{label}: the label map is {label_width}×{label_height} but its image {image} is \
         {image_width}×{image_height}"
    )]
    SizeMismatch {
        /// The annotation file.
        label: PathBuf,
        /// Its width.
        label_width: u32,
        /// Its height.
        label_height: u32,
        /// The image file.
        image: PathBuf,
        /// The image's width.
        image_width: u32,
        /// The image's height.
        image_height: u32,
    },
    /// A label value that, after reduce_zero_label, is neither a class index nor the ignore
    /// value 255.
    #[error(
        "{path}: label value {value} at pixel (x {x}, y {y}) is {reduced} after \
         reduce_zero_label, not a class index below {num_classes} nor the ignore value 255"
    )]
    LabelOutOfRange {
        /// The annotation file.
        path: PathBuf,
        /// The value stored in the file.
        value: u8,
        /// The value after reduce_zero_label (or the stored value when reduction is off).
        reduced: u8,
        /// Column of its first occurrence.
        x: u32,
        /// Row of its first occurrence.
        y: u32,
        /// The class count.
        num_classes: usize,
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
    /// The ADE20K layout or an annotation could not be read (missing pair, empty folder,
    /// a PNG that is not an 8-bit label map); the message names the file.
    #[error(transparent)]
    Layout(#[from] rtb_ade_eval::AdeError),
    /// A configuration value or an argument that cannot work.
    #[error("invalid {field}: {message}")]
    Config {
        /// The field or argument.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The corruption of an evaluation image failed.
    #[error(transparent)]
    Train(#[from] rtb_train::TrainError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Building the backbone or reading its weights failed (boxed: model errors carry key
    /// reports).
    #[error(transparent)]
    Model(Box<rtb_models::ModelError>),
    /// The segmenter refused its input or configuration.
    #[error(transparent)]
    Segmentation(#[from] rtb_segmentation::SegError),
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

impl From<rtb_image::ResizeError> for AdeTaskError {
    fn from(err: rtb_image::ResizeError) -> Self {
        AdeTaskError::Config {
            field: "resize".into(),
            message: err.message,
        }
    }
}

impl AdeTaskError {
    /// A [`AdeTaskError::Config`] error.
    pub fn config(field: &str, message: impl Into<String>) -> Self {
        AdeTaskError::Config {
            field: field.to_string(),
            message: message.into(),
        }
    }
}
