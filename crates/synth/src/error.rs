//! Errors of rtb-synth; each names the file or setting involved.

use std::path::PathBuf;

/// What can go wrong while generating or reading synthetic datasets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    /// A file or folder could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// An image could not be encoded.
    #[error("{path}: cannot encode the image: {message}")]
    Encode {
        /// The file being written.
        path: PathBuf,
        /// What the encoder reported.
        message: String,
    },
    /// A label map could not be written.
    #[error(transparent)]
    LabelMap(#[from] rtb_ade_eval::AdeError),
    /// A configuration that cannot work.
    #[error("invalid synth configuration: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// A file that is not in the expected format.
    #[error("{path}: {message}")]
    Format {
        /// The file read.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

pub(crate) fn io_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SynthError {
    let path = path.into();
    move |source| SynthError::Io { path, source }
}
