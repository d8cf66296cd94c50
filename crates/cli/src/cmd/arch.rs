//! `rtb arch`: the registry of backbone architectures.
//!
//! - `rtb arch list [--json]`: every registered family with its presets and the weight
//!   layouts it imports (the canonical one first).
//! - `rtb arch show ARCH`: the full config of a preset (or of a JSON config file), as JSON;
//!   edit it and pass the file wherever an architecture is asked for.
//! - `rtb arch macs --arch ARCH --size H[xW] [--json]`: forward multiply-accumulates of one
//!   image, which the study's cost estimate reads.

use std::process::ExitCode;

use anyhow::Context;
use rtb_models::ArchConfig;
use rtb_models::registry;

/// Arguments of `rtb arch`.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// List the registered architecture families, their presets and weight layouts.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the full config of a preset or config file as JSON.
    Show {
        /// A registered preset or a JSON config file.
        arch: String,
    },
    /// Forward multiply-accumulates of one image (no task head).
    Macs {
        /// A registered preset, a JSON config file, or an inline JSON config.
        #[arg(long)]
        arch: String,
        /// Image size: `224` or `800x1333` (height x width).
        #[arg(long)]
        size: String,
        /// Print JSON (`{"macs": …}`) instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn parse_size(size: &str) -> anyhow::Result<(usize, usize)> {
    let parse = |s: &str| {
        s.trim()
            .parse::<usize>()
            .ok()
            .filter(|&v| v > 0)
            .with_context(|| format!("--size {size:?}: expected 224 or HEIGHTxWIDTH"))
    };
    match size.split_once('x') {
        Some((h, w)) => Ok((parse(h)?, parse(w)?)),
        None => {
            let side = parse(size)?;
            Ok((side, side))
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args {
        Args::List { json } => {
            let families = registry::summaries();
            if json {
                let value: Vec<serde_json::Value> = families
                    .iter()
                    .map(|f| {
                        serde_json::json!({
                            "family": f.family,
                            "description": f.description,
                            "presets": f.presets,
                            "layouts": f.layouts.iter().map(|(name, description)| {
                                serde_json::json!({"name": name, "description": description})
                            }).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                for family in &families {
                    println!("{}: {}", family.family, family.description);
                    println!("  presets: {}", family.presets.join(", "));
                    for (i, (name, description)) in family.layouts.iter().enumerate() {
                        let canonical = if i == 0 { " (canonical)" } else { "" };
                        println!("  layout {name}{canonical}: {description}");
                    }
                }
            }
        }
        Args::Show { arch } => {
            let arch = ArchConfig::resolve(&arch)?;
            println!("{}", serde_json::to_string_pretty(&arch)?);
        }
        Args::Macs { arch, size, json } => {
            let config = ArchConfig::resolve(&arch)?;
            let (height, width) = parse_size(&size)?;
            let macs = config.forward_macs(height, width)?;
            if json {
                println!("{}", serde_json::json!({ "macs": macs }));
            } else {
                println!("{:.3} GMACs at {height}x{width}", macs / 1e9);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
