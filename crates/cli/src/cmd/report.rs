//! `rtb report`: the paper's tables and figure for one preset of a results store (rtb-report):
//! `index.md`, `index.html`, `figure1.svg`, `figure1.png`, `tables.tex`, `cells.csv` and
//! `per_corruption.csv`. Cells that have not run show as "not run".

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `rtb report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The results store.
    #[arg(long, default_value = "runs")]
    runs: PathBuf,
    /// The preset to report (`runs/<preset>/`).
    #[arg(long)]
    preset: String,
    /// Output folder (created).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let report = rtb_report::Report::load(&args.runs, &args.preset)?;
    let files = report.write(&args.out)?;
    let done = report.cells.len();
    tracing::info!(
        "report of preset {} ({done} cells, {} backbones) in {}",
        args.preset,
        report.backbones.len(),
        args.out.display()
    );
    for file in files {
        println!("{}", file.display());
    }
    Ok(ExitCode::SUCCESS)
}
