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

/// The images of a folder for `rtb segment` and `rtb detect`: `.jpg`, `.jpeg` and `.png` files
/// (not recursive), in name order; an error when there are none.
pub(crate) fn images_in(dir: &std::path::Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    use anyhow::Context;
    let mut out: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        })
        .collect();
    out.sort();
    if out.is_empty() {
        anyhow::bail!("{}: no .jpg, .jpeg or .png images", dir.display());
    }
    Ok(out)
}
