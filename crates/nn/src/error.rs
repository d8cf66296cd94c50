//! Errors of this crate's ops, losses and optimizers.
//!
//! Every public function returns `candle_core::Result` so that it composes with candle's own
//! ops through `?`; the messages come from [`NnError`], wrapped into `candle_core::Error`, so
//! a caller sees which op, which argument and which shapes disagreed.

/// What went wrong in one of this crate's functions.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// A tensor argument has the wrong shape.
    #[error("{op}: {arg} must be {expected}, got shape {got:?}")]
    Shape {
        /// The op that rejected the argument.
        op: &'static str,
        /// The argument's name.
        arg: &'static str,
        /// The expected shape, in words (e.g. `[N, C, H, W]`).
        expected: String,
        /// The shape received.
        got: Vec<usize>,
    },
    /// A tensor argument has a dtype the op does not support.
    #[error("{op}: {arg} has dtype {got:?}; supported: {supported}")]
    DType {
        /// The op that rejected the argument.
        op: &'static str,
        /// The argument's name.
        arg: &'static str,
        /// The dtype received.
        got: candle_core::DType,
        /// The supported dtypes, in words.
        supported: &'static str,
    },
    /// An argument's value is out of its domain.
    #[error("{op}: {message}")]
    Invalid {
        /// The op that rejected the argument.
        op: &'static str,
        /// What is wrong, naming the argument and the value.
        message: String,
    },
    /// Saved optimizer state does not match the optimizer it is loaded into.
    #[error("optimizer state: {message}")]
    State {
        /// What is missing or mismatched, naming the key.
        message: String,
    },
}

impl From<NnError> for candle_core::Error {
    fn from(err: NnError) -> Self {
        candle_core::Error::wrap(err)
    }
}

/// Shorthand for a shape error.
pub(crate) fn shape_error(
    op: &'static str,
    arg: &'static str,
    expected: impl Into<String>,
    got: &[usize],
) -> candle_core::Error {
    NnError::Shape {
        op,
        arg,
        expected: expected.into(),
        got: got.to_vec(),
    }
    .into()
}

/// Shorthand for an invalid-argument error.
pub(crate) fn invalid(op: &'static str, message: impl Into<String>) -> candle_core::Error {
    NnError::Invalid {
        op,
        message: message.into(),
    }
    .into()
}
