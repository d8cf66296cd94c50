//! One module per subcommand: its clap `Args` and a `run(args) -> anyhow::Result<ExitCode>`.

// Every `run` takes its parsed `Args` by value: the one shape `main` dispatches on.
#![allow(clippy::needless_pass_by_value)]

pub mod ade_eval;
pub mod arch;
pub mod backbone;
pub mod cell;
pub mod coco_eval;
pub mod corrupt;
pub mod detect;
pub mod device_check;
pub mod env;
pub mod eval;
pub mod forward;
pub mod imagenet;
pub mod prepare;
pub mod report;
pub mod segment;
pub mod synth;
pub mod train;
pub mod weights;
pub mod weights_fetch;
