//! One module per subcommand: its clap `Args` and a `run(args) -> anyhow::Result<ExitCode>`.

pub mod ade_eval;
pub mod coco_eval;
pub mod corrupt;
pub mod env;
pub mod eval;
pub mod forward;
pub mod synth;
pub mod train;
pub mod weights;
pub mod backbone;
pub mod cell;
pub mod prepare;
pub mod report;
pub mod weights_fetch;
