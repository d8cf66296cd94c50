//! `cargo xtask`: rtb's build system. Orchestration only: it runs cargo, pip and the `rtb`
//! binary, and never links candle (so it builds in seconds).
//!
//! - `cargo xtask ci`: assets, format check, clippy with warnings denied, the whole test suite;
//!   exactly what CI runs.
//! - `cargo xtask assets`: fetches the external files that tests and the corruptions need (the
//!   frost textures) into the cache directory, each pinned by sha256.
//! - `cargo xtask reproduce`: the study end to end (a preset's data, backbones, cells and
//!   report), one `rtb` process per step.
//! - `cargo xtask check-cuda`: the `cuda` feature type-checked (or built with `--build`)
//!   where a CUDA toolkit is present; kept out of `ci` (a CUDA build takes many minutes).
//! - `cargo xtask gpu-check --build`: the bundle that `gpu-check/run.sh` runs on a GPU machine.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod assets;
mod ci;
mod cuda;
mod process;
mod reproduce;
#[cfg(test)]
mod tidy;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "rtb's build system")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run what CI runs: assets, `cargo fmt --check`, clippy (-D warnings), all tests.
    Ci(ci::Args),
    /// Fetch and verify the external assets (the frost textures) into the cache directory.
    Assets(assets::Args),
    /// Run the study: a preset's data, backbones and cells (one `rtb` process each), then the
    /// report. Default: the offline mini preset on the CPU.
    Reproduce(Box<reproduce::Args>),
    /// Build the `cuda` feature without a GPU (type-check, or `--build` to compile and link),
    /// with a toolkit from CUDA_HOME, PATH or the pinned NVIDIA wheels. Not part of `ci`.
    CheckCuda(cuda::CheckArgs),
    /// `--build`: the bundle carried to a GPU machine (release `rtb` with `cuda`, stripped,
    /// into gpu-check/bin/), where `bash gpu-check/run.sh` runs the device check.
    GpuCheck(cuda::GpuCheckArgs),
}

/// The repository root (xtask lives one level below it).
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the repository")
        .to_path_buf()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ci(args) => ci::run(&args),
        Command::Assets(args) => assets::run(&args),
        Command::Reproduce(args) => reproduce::run(&args),
        Command::CheckCuda(args) => cuda::check(&args),
        Command::GpuCheck(args) => cuda::gpu_check(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
