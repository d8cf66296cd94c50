//! Errors of the training engine; each names the file, field or step involved.

use std::path::PathBuf;

/// Everything that can go wrong while configuring, training, checkpointing or loading data.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("invalid config field {field}: {message}")]
    Config {
        /// The field (`optimizer.lr`, `loader.batch_size`, …).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A checkpoint file is unreadable or does not fit the model or optimizer.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The requested device is not available in this build or on this machine.
    #[error("device {device}: {message}")]
    Device {
        /// The device asked for (`cuda:0`).
        device: String,
        /// Why it cannot be used.
        message: String,
    },
    /// A data sample could not be loaded or transformed.
    #[error("sample {index}: {message}")]
    Data {
        /// Index of the sample in its dataset.
        index: usize,
        /// What went wrong.
        message: String,
    },
    /// The loss became NaN or infinite.
    #[error(
        "the loss is {value} at iteration {iteration} (epoch {epoch}); lower the learning rate or clip gradients"
    )]
    NonFiniteLoss {
        /// The value.
        value: f64,
        /// 0-based iteration.
        iteration: usize,
        /// 0-based epoch.
        epoch: usize,
    },
    /// A task reported an error (its message names what failed).
    #[error("{0}")]
    Task(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl TrainError {
    /// A [`TrainError::Config`] error.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A [`TrainError::Task`] error from anything displayable (a task crate's own error).
    pub fn task(err: impl std::fmt::Display) -> Self {
        Self::Task(err.to_string())
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// Maps an I/O error to [`TrainError::Io`] for `path`.
pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}
