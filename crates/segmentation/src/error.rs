//! The crate's error type: every message names the field, tensor, key or file at fault.

use std::path::PathBuf;

/// Errors of building, running and loading a segmenter.
#[derive(Debug, thiserror::Error)]
pub enum SegError {
    /// A configuration value that cannot build a model.
    #[error("invalid UperNet config: {field}: {message}")]
    Config {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// An input tensor of the wrong rank, dtype or size.
    #[error("{what}: bad input {shape:?}: {message}")]
    Input {
        /// Which argument.
        what: &'static str,
        /// Its shape.
        shape: Vec<usize>,
        /// What is wrong with it.
        message: String,
    },
    /// Weights that do not fit, or a file whose keys are not an UperNet's.
    #[error("{source_name}: {message}")]
    Weights {
        /// The file (or description) the weights came from.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// A weights file that cannot be read.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The backbone failed (its own error names the cause).
    #[error(transparent)]
    Backbone(#[from] rtb_models::ModelError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, SegError>;

pub(crate) fn config_error(field: &'static str, message: impl Into<String>) -> SegError {
    SegError::Config {
        field,
        message: message.into(),
    }
}

pub(crate) fn input_error(
    what: &'static str,
    shape: &[usize],
    message: impl Into<String>,
) -> SegError {
    SegError::Input {
        what,
        shape: shape.to_vec(),
        message: message.into(),
    }
}
