//! Errors of the ADE20K reader and the mIoU accumulator. Each names the file, or the value and
//! pixel that is wrong.

use std::path::PathBuf;

/// Everything that can go wrong while reading ADE20K-style data or accumulating mIoU.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdeError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// A PNG could not be decoded (truncated, corrupt, not a PNG).
    #[error("{path}: not a readable PNG: {message}")]
    Png {
        /// The file involved.
        path: PathBuf,
        /// What the decoder reported.
        message: String,
    },
    /// A label map PNG that does not hold one 8-bit value per pixel (16-bit, RGB, alpha,
    /// or 1/2/4-bit).
    #[error(
        "{path}: a label map must be an 8-bit single-channel PNG (grayscale or palette indices), \
         found {color} with {bits}-bit samples"
    )]
    NotEightBit {
        /// The file involved.
        path: PathBuf,
        /// The PNG colour type found, e.g. `Rgb`.
        color: String,
        /// The bit depth found.
        bits: u8,
    },
    /// An image's header could not be read to learn its size.
    #[error("{path}: cannot read the image size: {message}")]
    ImageHeader {
        /// The file involved.
        path: PathBuf,
        /// What the decoder reported.
        message: String,
    },
    /// Two maps (or an image and its annotation) that must have the same size do not.
    #[error(
        "{path}: size {width}×{height} differs from {other_path}'s {other_width}×{other_height}"
    )]
    SizeMismatch {
        /// The file whose size is wrong.
        path: PathBuf,
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
        /// The file it must match.
        other_path: PathBuf,
        /// The width it must have.
        other_width: u32,
        /// The height it must have.
        other_height: u32,
    },
    /// A buffer passed in memory does not have as many pixels as its stated size.
    #[error("a {what} buffer has {len} values but its size {width}×{height} needs {expected}")]
    BufferLength {
        /// `label` or `prediction`.
        what: &'static str,
        /// Its length.
        len: usize,
        /// Its stated width.
        width: u32,
        /// Its stated height.
        height: u32,
        /// `width × height`.
        expected: usize,
    },
    /// Label and prediction slices of different lengths were given to the accumulator.
    #[error("label has {label_len} pixels but prediction has {pred_len}")]
    LengthMismatch {
        /// Number of label pixels.
        label_len: usize,
        /// Number of prediction pixels.
        pred_len: usize,
    },
    /// A ground-truth value (after reduce_zero_label, if on) that is neither a class index
    /// below `num_classes` nor the ignore index.
    #[error(
        "label value {value} at pixel {pixel} is not a class index below {num_classes} nor the \
         ignore index {ignore}"
    )]
    LabelOutOfRange {
        /// The offending value as stored in the map (before any reduction).
        value: u8,
        /// Row-major index of its first occurrence.
        pixel: usize,
        /// The class count.
        num_classes: usize,
        /// The ignore index, as text (`255` or `none`).
        ignore: String,
    },
    /// A prediction value at a non-ignored pixel that is not a class index.
    #[error("prediction value {value} at pixel {pixel} is not a class index below {num_classes}")]
    PredictionOutOfRange {
        /// The offending value.
        value: u8,
        /// Row-major index of its first occurrence at a non-ignored pixel.
        pixel: usize,
        /// The class count.
        num_classes: usize,
    },
    /// A per-file error, with the file it came from.
    #[error("{path}: {source}")]
    InFile {
        /// The file whose content is wrong.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: Box<AdeError>,
    },
    /// An image without an annotation, an annotation without an image, or a prediction missing.
    #[error("{path} has no matching {missing}: expected {expected}")]
    Missing {
        /// The file that exists.
        path: PathBuf,
        /// What is missing (`annotation`, `image`, `prediction`).
        missing: &'static str,
        /// The path that was looked for.
        expected: PathBuf,
    },
    /// A folder that holds no files of the expected kind.
    #[error("{path}: no {what} files found")]
    Empty {
        /// The folder.
        path: PathBuf,
        /// What was looked for, e.g. `.png`.
        what: &'static str,
    },
    /// Accumulators with different settings cannot be merged.
    #[error("cannot merge accumulators: {message}")]
    Incompatible {
        /// Which setting differs.
        message: String,
    },
    /// A configuration value that cannot work (e.g. zero classes).
    #[error("invalid configuration: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// A serialised accumulator that cannot be read back.
    #[error("{path}: not an rtb-ade-eval accumulator: {message}")]
    Json {
        /// The file involved.
        path: PathBuf,
        /// What the parser reported.
        message: String,
    },
}

impl AdeError {
    /// Wraps `self` with the file it came from, unless it already names one.
    pub fn in_file(self, path: impl Into<PathBuf>) -> AdeError {
        match self {
            AdeError::LabelOutOfRange { .. }
            | AdeError::PredictionOutOfRange { .. }
            | AdeError::LengthMismatch { .. }
            | AdeError::BufferLength { .. } => AdeError::InFile {
                path: path.into(),
                source: Box::new(self),
            },
            other => other,
        }
    }
}

pub(crate) fn io_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AdeError {
    let path = path.into();
    move |source| AdeError::Io { path, source }
}
