//! The crate's error type: every message names the file, key, config field or shape at fault.

use std::path::PathBuf;

/// A tensor whose shape in a checkpoint differs from what the model expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// Canonical key of the tensor.
    pub key: String,
    /// Shape the model expects.
    pub expected: Vec<usize>,
    /// Shape found in the weights.
    pub found: Vec<usize>,
}

/// How a set of weights disagrees with a model: every missing key, every unexpected key and
/// every shape mismatch, not just the first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyReport {
    /// Keys the model needs that the weights lack.
    pub missing: Vec<String>,
    /// Keys in the weights that the model does not use.
    pub unexpected: Vec<String>,
    /// Keys present in both with different shapes.
    pub shape_mismatches: Vec<ShapeMismatch>,
}

impl KeyReport {
    /// Whether the weights fit the model exactly.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.shape_mismatches.is_empty()
    }
}

impl std::fmt::Display for KeyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 20;
        let list = |f: &mut std::fmt::Formatter<'_>, what: &str, keys: &[String]| {
            if keys.is_empty() {
                return Ok(());
            }
            write!(f, "\n  {} {what}: ", keys.len())?;
            for (i, key) in keys.iter().take(SHOWN).enumerate() {
                if i > 0 {
                    write!(f, ", ")?;
                }
                write!(f, "{key}")?;
            }
            if keys.len() > SHOWN {
                write!(f, ", … ({} more)", keys.len() - SHOWN)?;
            }
            Ok(())
        };
        list(f, "missing", &self.missing)?;
        list(f, "unexpected", &self.unexpected)?;
        if !self.shape_mismatches.is_empty() {
            write!(f, "\n  {} shape mismatches: ", self.shape_mismatches.len())?;
            for (i, m) in self.shape_mismatches.iter().take(SHOWN).enumerate() {
                if i > 0 {
                    write!(f, ", ")?;
                }
                write!(
                    f,
                    "{} (model {:?}, weights {:?})",
                    m.key, m.expected, m.found
                )?;
            }
            if self.shape_mismatches.len() > SHOWN {
                write!(f, ", … ({} more)", self.shape_mismatches.len() - SHOWN)?;
            }
        }
        Ok(())
    }
}

/// Errors of model construction, forward passes and weight I/O.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configuration value that cannot build a model.
    #[error("invalid {model} config: {field}: {message}")]
    Config {
        /// Which model's config.
        model: &'static str,
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// An input tensor of the wrong rank, channels or size.
    #[error("{model}: bad input {shape:?}: {message}")]
    Input {
        /// The model that rejected it.
        model: &'static str,
        /// The input's shape.
        shape: Vec<usize>,
        /// What is wrong with it.
        message: String,
    },
    /// The model was asked for something its configuration does not have.
    #[error("{model}: {message}")]
    Unsupported {
        /// The model asked.
        model: &'static str,
        /// What it lacks.
        message: String,
    },
    /// Weights that do not fit the model.
    #[error("weights from {source_name} do not fit {arch}:{report}")]
    Keys {
        /// The file (or description) the weights came from.
        source_name: String,
        /// The architecture they were loaded into.
        arch: String,
        /// Missing, unexpected and mismatched keys.
        report: Box<KeyReport>,
    },
    /// A weights file that cannot be read or understood.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// An I/O failure on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An architecture family that is not registered, or a config that does not fit its
    /// family.
    #[error("architecture {family}: {message}")]
    Arch {
        /// The family (or the name that was looked up).
        family: String,
        /// What is wrong.
        message: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, ModelError>;

pub(crate) fn config_error(
    model: &'static str,
    field: &'static str,
    message: impl Into<String>,
) -> ModelError {
    ModelError::Config {
        model,
        field,
        message: message.into(),
    }
}

pub(crate) fn format_error(path: &std::path::Path, message: impl Into<String>) -> ModelError {
    ModelError::Format {
        path: path.to_path_buf(),
        message: message.into(),
    }
}
