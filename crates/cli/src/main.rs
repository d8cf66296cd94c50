//! `rtb`: the Robustness Transfer Benchmark's command-line interface.
//!
//! One subcommand per job; each lives in its own module under `cmd/` and owns its clap
//! arguments. The library crates do the work; this binary parses arguments, sets up logging
//! and progress bars, and turns library errors into messages (DESIGN.md §3, layer 5).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cmd;
mod progress;
mod study;
mod tasks;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Freed tensors' memory is kept for the next step instead of going back to the kernel, which
// would zero it again page by page (BENCHMARKS.md, rtb-cifar).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How much of ImageNet corruption robustness survives transfer to detection, segmentation and
/// classification.
#[derive(Debug, Parser)]
#[command(name = "rtb", version, propagate_version = true)]
struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// mIoU / mAcc / aAcc of predicted label maps against ADE20K-style ground truth (as mmseg).
    AdeEval(cmd::ade_eval::Args),
    /// COCO box or mask AP of a results file, equal to pycocotools (its 12-line summary).
    CocoEval(cmd::coco_eval::Args),
    /// Apply the ImageNet-C corruptions to one image or a whole folder (ImageNet-C layout).
    Corrupt(cmd::corrupt::Args),
    /// Write the synthetic shapes world as CIFAR-10, COCO, ADE20K-layout or source-task data.
    Synth(cmd::synth::Args),
    /// Check the device path against the CPU (every rtb-nn op, a training step and an
    /// evaluation batch of each task's model) and measure its throughput; a JSON report.
    DeviceCheck(cmd::device_check::Args),
    /// Show the build (features, devices) and where rtb keeps its cache and assets.
    Env(cmd::env::Args),
    /// The registered backbone architectures: list them, show a config, count its cost.
    #[command(subcommand)]
    Arch(cmd::arch::Args),
    /// Run a backbone (any registered architecture) on a safetensors batch and save C2..C5 /
    /// logits.
    Forward(cmd::forward::Args),
    /// Train one cell (task × backbone × regime) into a run directory; resumes from its
    /// checkpoint.
    #[command(subcommand)]
    Train(cmd::train::Args),
    /// Evaluate a trained run clean and under corruptions into its metrics.json.
    #[command(subcommand)]
    Eval(cmd::eval::Args),
    /// Segment a folder of images with an UperNet checkpoint into 8-bit label PNGs.
    Segment(cmd::segment::Args),
    /// Detect objects in a folder of images with a trained Mask R-CNN run into a COCO results
    /// JSON (boxes, scores, masks as compressed RLE).
    Detect(cmd::detect::Args),
    /// Inspect weight files and import them (PyTorch or safetensors) to canonical safetensors.
    #[command(subcommand)]
    Weights(cmd::weights::Args),
    /// Study step: make or download a preset's datasets (run by `cargo xtask reproduce`).
    Prepare(cmd::prepare::Args),
    /// Study step: pretrain (mini/tiny) or fetch and import (paper) one backbone of a preset.
    Backbone(cmd::backbone::Args),
    /// Study step: train and evaluate one cell (backbone × task × regime) of a preset.
    Cell(cmd::cell::Args),
    /// Write the report (tables, Figure 1, CSV, LaTeX) of one preset of a results store.
    Report(cmd::report::Args),
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Logs go to stderr so that stdout stays clean for results (summaries, JSON); colours only
    // on a terminal (and never with NO_COLOR), so a log file or a pipe holds plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    // candle's elementwise ops would otherwise start a spinning pool of their own beside
    // rayon's (rtb_nn::cpu says why one pool is faster).
    if std::env::var_os(rtb_nn::cpu::CANDLE_THREADS_VARIABLE).is_none() {
        // SAFETY: the first statement of `main`: no other thread exists yet that could read
        // the environment while it changes.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var(rtb_nn::cpu::CANDLE_THREADS_VARIABLE, "1");
        }
    }
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let result = rtb_nn::cpu::on_compute_pool(|| dispatch(cli.command))
        .map_err(anyhow::Error::from)
        .and_then(|result| result);
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

/// Runs one subcommand.
fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::AdeEval(args) => cmd::ade_eval::run(args),
        Command::Arch(args) => cmd::arch::run(args),
        Command::CocoEval(args) => cmd::coco_eval::run(args),
        Command::Corrupt(args) => cmd::corrupt::run(args),
        Command::Env(args) => cmd::env::run(args),
        Command::DeviceCheck(args) => cmd::device_check::run(args),
        Command::Synth(args) => cmd::synth::run(args),
        Command::Forward(args) => cmd::forward::run(args),
        Command::Weights(args) => cmd::weights::run(args),
        Command::Prepare(args) => cmd::prepare::run(args),
        Command::Backbone(args) => cmd::backbone::run(args),
        Command::Cell(args) => cmd::cell::run(args),
        Command::Report(args) => cmd::report::run(args),
        Command::Train(args) => cmd::train::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Segment(args) => cmd::segment::run(args),
        Command::Detect(args) => cmd::detect::run(args),
    }
}

/// The error and its causes joined by ": ", leaving out a cause whose text the message before
/// it already contains (library errors often embed their source, e.g. "{path}: {source}").
fn error_chain(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let message = cause.to_string();
        if text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug)]
    struct Embedding(std::io::Error);

    impl std::fmt::Display for Embedding {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "data/train.bin: {}", self.0)
        }
    }

    impl std::error::Error for Embedding {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::new(Embedding(io)).context("reading the source task");
        assert_eq!(
            error_chain(&err),
            "reading the source task: data/train.bin: no such file"
        );
    }
}
