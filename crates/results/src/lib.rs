//! `rtb-results`: the results store that every task writes and the report reads.
//!
//! A *cell* of the study is one backbone × task × regime under one preset. Its directory is
//! `runs/<preset>/<backbone>/<task>/<regime>/` ([`CellId::dir`]) and its evaluation lands in
//! `metrics.json` ([`CellMetrics`]), written atomically (temporary file, then rename), so a
//! file that exists is a finished evaluation.
//!
//! Each backbone of a preset has `runs/<preset>/<backbone>/backbone.json`
//! ([`BackboneRecord`]): the paper row it stands for and its source-task accuracy.
//!
//! The robustness metrics of DESIGN §2 are computed here, in one place
//! ([`MetricTable::robustness`]): mPC is the mean of the task metric P over the 15 benchmark
//! corruptions × severities 1..5 (clean excluded), rPC = mPC / P_clean, the reported drop is
//! 1 − rPC in percent, and the drop of a category uses the mean over that category's
//! corruptions × 5 severities.
//!
//! Confidence intervals come from a paired bootstrap over the evaluation images
//! ([`Resampler`], [`Replicates`], [`MetricTable::intervals`]): a table may carry B replicates
//! of every condition, each computed on the same seeded resample of the images, and every
//! interval of a drop is the percentile interval of the drops of the replicates.
//!
//! This crate knows no model, tensor or dataset; it depends only on serde and on
//! rtb-corruption for the corruption names and categories.
//!
//! ```
//! use std::collections::BTreeMap;
//! use rtb_corruption::{Category, Corruption};
//! use rtb_results::MetricTable;
//! let mut table = MetricTable { clean: 0.8, corrupted: BTreeMap::new(), replicates: None };
//! for corruption in Corruption::BENCHMARK {
//!     table.corrupted.insert(corruption, [0.6; 5]);
//! }
//! let robustness = table.robustness().unwrap();
//! assert!((robustness.mpc - 0.6).abs() < 1e-12);
//! assert!((robustness.drop_percent - 25.0).abs() < 1e-9);
//! assert!((robustness.category_drop_percent[&Category::Noise] - 25.0).abs() < 1e-9);
//! ```
#![deny(missing_docs)]

mod backbone;
mod bootstrap;
mod cell;
mod metrics;

pub use backbone::{BACKBONE_FILE, BackboneRecord, Published};
pub use bootstrap::{DEFAULT_REPLICATES, Interval, Replicates, Resampler, RobustnessIntervals};
pub use cell::{CellId, Regime, Task};
pub use metrics::{CellMetrics, METRICS_FILE, MetricTable, Robustness, SCHEMA_VERSION};

use std::path::PathBuf;

/// Errors reading or writing the results store; each names the file or field.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A metrics file is not valid JSON of the expected shape.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The table lacks results that a metric needs.
    #[error("cannot compute {metric}: {message}")]
    Incomplete {
        /// The metric asked for.
        metric: &'static str,
        /// What is missing.
        message: String,
    },
    /// A name that is not a task, regime or path component rtb accepts.
    #[error("invalid {what} {value:?}: {expected}")]
    InvalidName {
        /// Which kind of name.
        what: &'static str,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
}
