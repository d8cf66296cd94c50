//! `cargo xtask ci`: the same steps on a laptop as on CI.

use crate::process::{cargo, exec};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Do not fetch assets first (tests that need them then fail, as CI requires them).
    #[arg(long)]
    pub no_assets: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let root = crate::project_root();
    if !args.no_assets {
        eprintln!("== assets");
        crate::assets::run(&crate::assets::Args::default())?;
    }
    eprintln!("== format");
    exec(
        cargo()
            .current_dir(&root)
            .args(["fmt", "--all", "--", "--check"]),
    )?;
    eprintln!("== clippy");
    exec(cargo().current_dir(&root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    eprintln!("== tests");
    // Tests that need assets fail (rather than skip) when they are missing.
    exec(
        cargo()
            .current_dir(&root)
            .env("RTB_REQUIRE_ASSETS", "1")
            .args(["test", "--workspace", "--locked"]),
    )?;
    eprintln!("== ci passed");
    Ok(())
}
