//! Errors of the ImageNet task; each names the file, line, folder or field involved.

use std::path::PathBuf;

/// Everything that can go wrong reading, transforming or evaluating ImageNet and ImageNet-C.
#[derive(Debug, thiserror::Error)]
pub enum ImageNetError {
    /// A file or folder could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An image could not be decoded.
    #[error("{path}: cannot decode the image: {message}")]
    Decode {
        /// The image file.
        path: PathBuf,
        /// The decoder's message.
        message: String,
    },
    /// A labels file has a line that cannot be used.
    #[error("{path}, line {line}: {message}")]
    Labels {
        /// The labels file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A dataset folder does not have the expected layout or contents.
    #[error("{path}: {message}")]
    Layout {
        /// The folder or file.
        path: PathBuf,
        /// What is wrong (an unknown wnid, no images, an image without a label).
        message: String,
    },
    /// A configuration value is invalid.
    #[error("invalid {field}: {message}")]
    Config {
        /// The field or flag.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The model cannot be evaluated on ImageNet (no classifier, not 1000 classes).
    #[error("model {model}: {message}")]
    Model {
        /// The architecture's name.
        model: String,
        /// What is wrong.
        message: String,
    },
    /// The data loader failed (its message names the image).
    #[error(transparent)]
    Train(#[from] rtb_train::TrainError),
    /// A backbone's forward pass failed.
    #[error(transparent)]
    Models(Box<rtb_models::ModelError>),
    /// A corruption failed.
    #[error(transparent)]
    Corruption(#[from] rtb_corruption::CorruptionError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Bootstrap replicates could not be drawn.
    #[error(transparent)]
    Results(#[from] rtb_results::ResultsError),
}

impl ImageNetError {
    /// An [`ImageNetError::Config`].
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            field: field.into(),
            message: message.into(),
        }
    }

    /// An [`ImageNetError::Layout`].
    pub fn layout(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Layout {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl From<rtb_models::ModelError> for ImageNetError {
    fn from(err: rtb_models::ModelError) -> Self {
        Self::Models(Box::new(err))
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = ImageNetError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ImageNetError + '_ {
    move |source| ImageNetError::Io {
        path: path.to_path_buf(),
        source,
    }
}
