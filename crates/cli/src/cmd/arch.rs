//! `rtb arch`: the registry of backbone architectures.
//!
//! - `rtb arch list [--json]`: every registered family with its presets and the weight
//!   layouts it imports (the canonical one first).
//! - `rtb arch show ARCH`: the full config of a preset (or of a JSON config file), as JSON;
//!   edit it and pass the file wherever an architecture is asked for.
//! - `rtb arch macs --arch ARCH --size H[xW] [--json]`: forward multiply-accumulates of one
//!   image, which the study's cost estimate reads; with `--task T [--options JSON]
//!   [--classes K]` also those of the task's heads (the cell's `CellTask::head_macs`) in a
//!   training step's forward and in evaluation.

use std::process::ExitCode;

use anyhow::{Context, bail};
use rtb_models::ArchConfig;
use rtb_models::registry;
use rtb_results::Task;
use rtb_train::{CostQuery, HeadMacs};

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
        /// Also count the heads of this task's cell (cifar10, ade20k, coco) on a square
        /// `--size`.
        #[arg(long)]
        task: Option<Task>,
        /// The cell's task options as a JSON object (a preset regime's `options`).
        #[arg(long, requires = "task")]
        options: Option<String>,
        /// The dataset's class count (default: the task's real dataset's).
        #[arg(long, requires = "task")]
        classes: Option<usize>,
        /// Print JSON (`{"macs": …}`, with `--task` also `"head_train_macs"` and
        /// `"head_eval_macs"`) instead of text.
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

/// The heads' MACs of `task`'s cell on a square image (`CellTask::head_macs`).
fn head_macs(
    task: Task,
    arch: &ArchConfig,
    (height, width): (usize, usize),
    options: Option<&str>,
    classes: Option<usize>,
) -> anyhow::Result<HeadMacs> {
    if height != width {
        bail!("--task counts heads on a square image; --size {height}x{width} is not square");
    }
    let options = match options {
        None => serde_json::Map::new(),
        Some(text) => match serde_json::from_str(text)
            .with_context(|| format!("--options {text:?}: not JSON"))?
        {
            serde_json::Value::Object(map) => map,
            other => bail!("--options: expected a JSON object, got {other}"),
        },
    };
    let runner = crate::tasks::runner(task)
        .with_context(|| format!("this build of rtb has no {task} task"))?;
    let query = CostQuery {
        arch: serde_json::to_value(arch)?,
        image_size: height,
        options,
        num_classes: classes,
    };
    runner
        .head_macs(&query)
        .map_err(|err| anyhow::anyhow!("{task} heads of {}: {err}", arch.family()))
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
        Args::Macs {
            arch,
            size,
            task,
            options,
            classes,
            json,
        } => {
            let config = ArchConfig::resolve(&arch)?;
            let (height, width) = parse_size(&size)?;
            let macs = config.forward_macs(height, width)?;
            let heads = match task {
                Some(task) => Some(head_macs(
                    task,
                    &config,
                    (height, width),
                    options.as_deref(),
                    classes,
                )?),
                None => None,
            };
            match (json, heads) {
                (true, None) => println!("{}", serde_json::json!({ "macs": macs })),
                (true, Some(heads)) => println!(
                    "{}",
                    serde_json::json!({
                        "macs": macs,
                        "head_train_macs": heads.train,
                        "head_eval_macs": heads.eval,
                    })
                ),
                (false, heads) => {
                    println!("{:.3} GMACs at {height}x{width}", macs / 1e9);
                    if let (Some(heads), Some(task)) = (heads, task) {
                        println!(
                            "{task} heads: {:.3} GMACs in a training step's forward, {:.3} in \
                             evaluation",
                            heads.train / 1e9,
                            heads.eval / 1e9
                        );
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
