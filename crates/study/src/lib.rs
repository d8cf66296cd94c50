//! `rtb-study`: the study as data and its orchestration — presets, the matrix of cells, the
//! plan, the cost estimate, and the runner that executes one `rtb` process per step.
//!
//! - [`Preset`] (`presets/{tiny,mini,paper}.toml`): data source (synthetic shapes world or
//!   downloads), the evaluation (corruptions, severities, images, seed), the backbones
//!   ([`BackboneSpec`]: architecture, paper row, a pretraining recipe or a weights-manifest
//!   entry), the tasks ([`TaskSpec`]: image size, corruption flavor, schedules per regime for
//!   `--schedule paper|short`) and the cost model. Tables only the training code understands
//!   are handed through as TOML ([`Table`]).
//! - [`matrix`], [`Plan`]: steps in dependency order — data, backbones, cells, report —
//!   filtered by [`Filter`] (`--only backbone=…,task=…,regime=…`) and dealt to shards by
//!   [`Shard`] (`--shard i/n`, contiguous blocks of the whole matrix, so a cell's shard never
//!   depends on what else runs).
//! - [`estimate()`]: `--dry-run`'s seconds per step from multiply-accumulate counts
//!   ([`ArchCosts`]: rtb-models' registry and the task crates' head counts, asked through
//!   the `rtb` binary) and split sizes.
//! - [`Orchestrator`]: runs each step as one `rtb` process ([`Invocation::args`] is the
//!   command line), skips finished steps (marker files; see [`Step::done_marker`]), blocks
//!   the dependents of failed steps, and returns a [`Summary`].
//! - [`weights`]: the backbone weights manifest (`weights/backbones.toml`) and the datasets
//!   manifest (`presets/datasets.toml`), with verified/unverified entries.
//!
//! Architecture invariant: light — serde, toml and rtb-results only; no candle, nothing that
//! trains, nothing that downloads. Both `cargo xtask reproduce` and the `rtb` binary use it,
//! so the preset is parsed the same way on both sides. The library never prints.
//!
//! ```
//! use rtb_study::{Filter, Plan, Preset, Schedule, Shard, Step};
//! let preset = Preset::from_toml(r#"
//!     name = "demo"
//!     description = "two backbones, one task"
//!     source = { name = "shapes32", flavor = "imagecorruptions" }
//!     evaluation = { images = 9 }
//!     [data]
//!     kind = "synthetic"
//!     seed = 0
//!     num_classes = 3
//!     source_train = 30
//!     source_val = 9
//!     source_size = 32
//!     cifar_train = 30
//!     cifar_test = 9
//!     [[backbone]]
//!     name = "regular"
//!     arch = "resnet_tiny"
//!     pretrain = { epochs = 1, batch_size = 8, augment = { kind = "standard" } }
//!     [[backbone]]
//!     name = "swin"
//!     arch = "swin_tiny"
//!     pretrain = { epochs = 1, batch_size = 8, augment = { kind = "standard" } }
//!     [[task]]
//!     task = "cifar10"
//!     image_size = 32
//!     flavor = "cifar-c"
//!     paper.fixed = { epochs = 1, batch_size = 8 }
//!     paper.full = { epochs = 1, batch_size = 8 }
//! "#, "demo.toml")?;
//! let all = Plan::new(&preset, Schedule::Paper, &Filter::default(), None)?;
//! assert_eq!(all.cells().count(), 4);
//! assert_eq!(all.steps.first(), Some(&Step::Data));
//! assert_eq!(all.steps.last(), Some(&Step::Report));
//! // Only full-network cells of the Swin: its backbone step stays, the other goes.
//! let only: Filter = "backbone=swin,regime=full".parse()?;
//! let plan = Plan::new(&preset, Schedule::Paper, &only, None)?;
//! let labels: Vec<String> = plan.steps.iter().map(Step::label).collect();
//! assert_eq!(labels, ["data", "backbone swin", "cell swin/cifar10/full", "report"]);
//! // Two shards share the four cells without overlap, one backbone each.
//! let first = Plan::new(&preset, Schedule::Paper, &Filter::default(), Some("1/2".parse::<Shard>()?))?;
//! let labels: Vec<String> = first.steps.iter().map(Step::label).collect();
//! assert_eq!(labels, ["data", "backbone regular", "cell regular/cifar10/fixed",
//!                     "cell regular/cifar10/full", "report"]);
//! # Ok::<(), rtb_study::StudyError>(())
//! ```
#![deny(missing_docs)]

mod estimate;
mod plan;
mod preset;
mod run;
pub mod weights;

use std::path::PathBuf;

pub use estimate::{
    ArchCosts, CachedCosts, HeadCost, HeadQuery, StepCost, estimate, format_seconds,
};
pub use plan::{
    BACKBONE_WEIGHTS, DATA_COMPLETE, Filter, ImageNetC, ImageNetData, Invocation, Layout, Plan,
    Shard, Step, matrix,
};
pub use preset::{
    BENCHMARK_CORRUPTIONS, BackboneSpec, CostSpec, CudaPrecision, DataSpec, DeviceKind,
    EvaluationSpec, Preset, PretrainSpec, RegimeSpec, Schedule, SourceSpec, SyntheticSpec, Table,
    TaskSpec, table_to_json,
};
pub use run::{Event, Orchestrator, Outcome, Summary};

/// Errors of presets, manifests, plans and runs; each names the file, key or flag.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid TOML of the expected shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A value is out of range or refers to something that does not exist.
    #[error("{what}: {message}")]
    Invalid {
        /// The key, flag or entry.
        what: String,
        /// What is wrong.
        message: String,
    },
}
