//! Errors of the CIFAR task; each names the file, record, key or field involved.

use std::path::PathBuf;

/// Everything that can go wrong reading, generating, training or evaluating CIFAR-10.
#[derive(Debug, thiserror::Error)]
pub enum CifarError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A dataset file is missing.
    #[error("{path} is missing: {hint}")]
    Missing {
        /// The file that should exist.
        path: PathBuf,
        /// What to do about it.
        hint: String,
    },
    /// A dataset file has the wrong size or contents.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the record or field.
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
    /// Downloading the archive failed.
    #[error(transparent)]
    Fetch(#[from] rtb_fetch::FetchError),
    /// Building or loading the backbone failed (boxed: model errors carry key reports).
    #[error(transparent)]
    Model(Box<rtb_models::ModelError>),
    /// The training engine failed.
    #[error(transparent)]
    Train(#[from] rtb_train::TrainError),
    /// Writing the results failed.
    #[error(transparent)]
    Results(#[from] rtb_results::ResultsError),
    /// A corruption failed.
    #[error(transparent)]
    Corruption(#[from] rtb_corruption::CorruptionError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl CifarError {
    /// A [`CifarError::Config`].
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = CifarError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> CifarError + '_ {
    move |source| CifarError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl From<rtb_models::ModelError> for CifarError {
    fn from(err: rtb_models::ModelError) -> Self {
        Self::Model(Box::new(err))
    }
}

/// Task errors travel through the engine as [`rtb_train::TrainError::Task`].
impl From<CifarError> for rtb_train::TrainError {
    fn from(err: CifarError) -> Self {
        match err {
            CifarError::Train(inner) => inner,
            CifarError::Candle(inner) => rtb_train::TrainError::Candle(inner),
            other => rtb_train::TrainError::Task(other.to_string()),
        }
    }
}
