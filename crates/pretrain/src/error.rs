//! Errors of pretraining; each names the file or field involved.

use std::path::PathBuf;

/// What can go wrong while pretraining or evaluating a backbone on the source task.
#[derive(Debug, thiserror::Error)]
pub enum PretrainError {
    /// A configuration value is out of range.
    #[error("invalid pretraining config field {field}: {message}")]
    Config {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A data file is malformed or inconsistent.
    #[error("{path}: {message}")]
    Data {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A source-task file could not be read.
    #[error("{path}: {source}")]
    Synth {
        /// The file.
        path: PathBuf,
        /// The reader's error.
        #[source]
        source: rtb_synth::SynthError,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The training engine failed.
    #[error(transparent)]
    Train(#[from] rtb_train::TrainError),
    /// The model could not be built or run.
    #[error(transparent)]
    Model(#[from] rtb_models::ModelError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A corruption failed.
    #[error(transparent)]
    Corruption(#[from] rtb_corruption::CorruptionError),
    /// The results store could not be written.
    #[error(transparent)]
    Results(#[from] rtb_results::ResultsError),
}

/// `Result` with [`PretrainError`].
pub type Result<T> = std::result::Result<T, PretrainError>;

impl From<PretrainError> for rtb_train::TrainError {
    fn from(err: PretrainError) -> Self {
        match err {
            PretrainError::Train(inner) => inner,
            other => rtb_train::TrainError::Task(other.to_string()),
        }
    }
}
