//! The crate's error type: every message names the argument, shape or configuration field at
//! fault.

/// What went wrong in one of this crate's functions.
#[derive(Debug, thiserror::Error)]
pub enum DetectionError {
    /// A tensor or list argument has the wrong shape or length.
    #[error("{op}: {arg} must be {expected}, got {got}")]
    Shape {
        /// The function that rejected the argument.
        op: &'static str,
        /// The argument's name.
        arg: &'static str,
        /// What was expected, in words (e.g. `[K, 4]`).
        expected: String,
        /// What was received (a shape or a length).
        got: String,
    },
    /// A configuration value is out of its domain.
    #[error("{op}: {field} {message}")]
    Config {
        /// The constructor or function that rejected the value.
        op: &'static str,
        /// The configuration field.
        field: &'static str,
        /// What is wrong with the value, naming it.
        message: String,
    },
    /// A key that a weight layout needs is absent.
    #[error("{op}: missing weight {key}")]
    MissingWeight {
        /// The module that looked for it.
        op: &'static str,
        /// The full key.
        key: String,
    },
    /// An error from the backbone (rtb-models).
    #[error(transparent)]
    Model(#[from] rtb_models::ModelError),
    /// An error from candle or rtb-nn (tensor ops).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, DetectionError>;

/// Shorthand for a shape error.
pub(crate) fn shape(
    op: &'static str,
    arg: &'static str,
    expected: impl Into<String>,
    got: impl std::fmt::Debug,
) -> DetectionError {
    DetectionError::Shape {
        op,
        arg,
        expected: expected.into(),
        got: format!("{got:?}"),
    }
}

/// Shorthand for a configuration error.
pub(crate) fn config(
    op: &'static str,
    field: &'static str,
    message: impl Into<String>,
) -> DetectionError {
    DetectionError::Config {
        op,
        field,
        message: message.into(),
    }
}
