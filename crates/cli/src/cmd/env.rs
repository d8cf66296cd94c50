//! `rtb env`: what this build can do and where it keeps files, for bug reports and set-up.

use std::process::ExitCode;

/// Arguments of `rtb env`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    let show = |path: Option<std::path::PathBuf>| match path {
        Some(path) if path.exists() => path.display().to_string(),
        Some(path) => format!("{} (not created yet)", path.display()),
        None => "unknown (set RTB_CACHE_DIR or HOME)".to_string(),
    };
    println!("rtb {}", env!("CARGO_PKG_VERSION"));
    println!(
        "features: cuda={}",
        if cfg!(feature = "cuda") { "on" } else { "off" }
    );
    println!("cache: {}", show(rtb_fetch::cache_dir()));
    println!("frost textures: {}", show(rtb_fetch::frost_dir()));
    Ok(ExitCode::SUCCESS)
}
