//! `cargo xtask reproduce`: the study end to end. Reads a preset (`presets/<name>.toml`),
//! builds `rtb` in release (with `--features cuda` for `--device cuda`), prints the plan with
//! a cost estimate (architecture costs come from `rtb arch macs`, i.e. rtb-models' registry;
//! split sizes from the preset's data), fetches the frost textures if a corruption needs them, runs one `rtb`
//! process per step through rtb-study's orchestrator (data, backbones, cells, report;
//! finished steps are skipped, crashed ones resume from their checkpoints), and ends with a
//! summary.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use rtb_study::weights::DatasetsManifest;
use rtb_study::{
    ArchCosts, CachedCosts, DeviceKind, Event, Filter, HeadCost, HeadQuery, ImageNetC,
    ImageNetData, Invocation, Layout, Orchestrator, Outcome, Plan, Preset, Schedule, Shard, Step,
    StudyError, estimate, format_seconds,
};

use crate::process::{cargo, exec};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The preset: `tiny`, `mini` (offline, CPU, minutes), `paper` (the real study), or a path
    /// to a preset file.
    #[arg(long, default_value = "mini")]
    pub preset: String,
    /// Where the `rtb` processes compute.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceKind,
    /// The paper's schedules or the preset's shortened ones.
    #[arg(long, default_value = "paper")]
    pub schedule: Schedule,
    /// Only these cells: `backbone=a|b,task=cifar10,regime=full`.
    #[arg(long)]
    pub only: Option<Filter>,
    /// This machine's share of the cells: `i/n` (1-based).
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Print the plan and its cost estimate, run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The results store (default: `runs/` in the repository).
    #[arg(long)]
    pub runs: Option<PathBuf>,
    /// Where the report goes (default: `report/<preset>/` in the repository).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Where real datasets are downloaded (default: `<rtb cache>/data`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Recompute every step of the plan (deletes their outputs first).
    #[arg(long)]
    pub no_resume: bool,
    /// Use manifest entries (weights, datasets) whose pins are marked unverified.
    #[arg(long)]
    pub allow_unverified: bool,
    /// Use this `rtb` binary instead of building one.
    #[arg(long)]
    pub rtb: Option<PathBuf>,
    /// ImageNet validation images (`val/<wnid>/*.JPEG`, or a flat folder with
    /// `--imagenet-labels`): the published backbones' own top-1 (Figure 1's first bar).
    #[arg(long, value_name = "DIR")]
    pub imagenet_val: Option<PathBuf>,
    /// Labels of a flat ImageNet validation folder (`val.txt` or `LOC_val_solution.csv`).
    #[arg(long, value_name = "FILE", requires = "imagenet_val")]
    pub imagenet_labels: Option<PathBuf>,
    /// The released ImageNet-C folder, or `generate` to corrupt the validation images on
    /// the fly: the backbones' ImageNet-C drop and mCE (Figure 1's second bar).
    #[arg(long, value_name = "DIR|generate", requires = "imagenet_val")]
    pub imagenet_c: Option<String>,
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    })
}

/// `tiny` → `<root>/presets/tiny.toml`; anything with a `/` or ending in `.toml` is a path.
pub fn preset_path(root: &Path, preset: &str) -> anyhow::Result<PathBuf> {
    if preset.contains('/') || preset.ends_with(".toml") {
        absolute(Path::new(preset))
    } else {
        Ok(root.join("presets").join(format!("{preset}.toml")))
    }
}

/// Architecture costs from rtb-models' registry, asked of the `rtb` binary (xtask links no
/// model code): `rtb arch macs --arch A --size N --json`.
#[derive(Debug)]
pub struct RtbArchCosts {
    rtb: PathBuf,
}

impl RtbArchCosts {
    /// Runs `rtb arch macs --json --size N --arch A` with `extra` arguments and returns the
    /// JSON it prints; errors are `invalid(message)`.
    fn arch_macs_json(
        &self,
        arch: &toml::Value,
        size: usize,
        extra: &[String],
        invalid: &dyn Fn(String) -> StudyError,
    ) -> Result<serde_json::Value, StudyError> {
        let arch_arg = match arch {
            toml::Value::String(name) => name.clone(),
            other => serde_json::to_string(other).map_err(|e| invalid(e.to_string()))?,
        };
        let output = std::process::Command::new(&self.rtb)
            .args(["arch", "macs", "--json", "--size"])
            .arg(size.to_string())
            .arg("--arch")
            .arg(&arch_arg)
            .args(extra)
            .output()
            .map_err(|e| invalid(format!("cannot run {}: {e}", self.rtb.display())))?;
        if !output.status.success() {
            return Err(invalid(
                String::from_utf8_lossy(&output.stderr).trim().to_string(),
            ));
        }
        serde_json::from_slice(&output.stdout)
            .map_err(|e| invalid(format!("rtb arch macs printed no JSON: {e}")))
    }
}

impl ArchCosts for RtbArchCosts {
    fn forward_macs(&self, arch: &toml::Value, size: usize) -> Result<f64, StudyError> {
        let invalid = |message: String| StudyError::Invalid {
            what: format!("arch {arch}"),
            message,
        };
        self.arch_macs_json(arch, size, &[], &invalid)?
            .get("macs")
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| invalid("rtb arch macs printed no \"macs\"".into()))
    }

    fn head_macs(&self, query: &HeadQuery<'_>) -> Result<HeadCost, StudyError> {
        let arch = query.arch;
        let invalid = |message: String| StudyError::Invalid {
            what: format!("{} heads over arch {arch}", query.task),
            message,
        };
        let mut extra = vec![
            "--task".to_string(),
            query.task.name().to_string(),
            "--options".to_string(),
            rtb_study::table_to_json(query.options).to_string(),
        ];
        if let Some(classes) = query.num_classes {
            extra.extend(["--classes".to_string(), classes.to_string()]);
        }
        let value = self.arch_macs_json(arch, query.size, &extra, &invalid)?;
        let field = |key: &str| {
            value
                .get(key)
                .and_then(serde_json::Value::as_f64)
                .ok_or_else(|| invalid(format!("rtb arch macs --task printed no {key:?}")))
        };
        Ok(HeadCost {
            train: field("head_train_macs")?,
            eval: field("head_eval_macs")?,
        })
    }
}

/// The datasets manifest next to the presets.
fn datasets_manifest(root: &Path) -> anyhow::Result<DatasetsManifest> {
    Ok(DatasetsManifest::load(
        &root.join("presets").join("datasets.toml"),
    )?)
}

/// The plan as text: one line per step with its estimate, and the total.
pub fn describe(
    plan: &Plan,
    device: DeviceKind,
    costs: &dyn ArchCosts,
    datasets: &DatasetsManifest,
) -> anyhow::Result<String> {
    let costs = estimate(plan, device, costs, datasets)?;
    let mut text = format!(
        "preset {} ({}), schedule {}, device {}: {} steps, {} cells\n",
        plan.preset.name,
        plan.preset.description,
        plan.schedule,
        device,
        plan.steps.len(),
        plan.cells().count()
    );
    let width = plan
        .steps
        .iter()
        .map(|s| s.label().len())
        .max()
        .unwrap_or(0);
    for cost in &costs {
        let mut images = String::new();
        if cost.train_images > 0 || cost.eval_images > 0 {
            images = format!(
                "  ({} training, {} evaluation images)",
                cost.train_images, cost.eval_images
            );
        }
        text.push_str(&format!(
            "  {:<width$}  ~{}{images}\n",
            cost.step.label(),
            format_seconds(cost.seconds)
        ));
    }
    let total: f64 = costs.iter().map(|c| c.seconds).sum();
    text.push_str(&format!(
        "estimated total: ~{} (an estimate from multiply-accumulate counts; finished steps are \
         skipped)\n",
        format_seconds(total)
    ));
    if plan.preset.demonstration {
        text.push_str(
            "note: this preset's numbers demonstrate the pipeline on synthetic data; they are \
             not the paper's\n",
        );
    }
    Ok(text)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                root.join(dir)
            }
        })
        .unwrap_or_else(|| root.join("target"))
}

fn build_rtb(root: &Path, device: DeviceKind) -> anyhow::Result<PathBuf> {
    let mut command = cargo();
    command
        .current_dir(root)
        .args(["build", "--release", "-p", "rtb-cli"]);
    if device == DeviceKind::Cuda {
        command.args(["--features", "cuda"]);
    }
    exec(&mut command)?;
    let binary = target_dir(root)
        .join("release")
        .join(format!("rtb{}", std::env::consts::EXE_SUFFIX));
    if !binary.is_file() {
        bail!("the build finished but {} does not exist", binary.display());
    }
    Ok(binary)
}

fn needs_frost(preset: &Preset) -> bool {
    preset.corruptions().iter().any(|c| c == "frost")
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let root = crate::project_root();
    let preset_file = preset_path(&root, &args.preset)?;
    let preset = Preset::load(&preset_file)?;
    let runs = absolute(args.runs.as_deref().unwrap_or(&root.join("runs")))?;
    let report = absolute(
        args.report
            .as_deref()
            .unwrap_or(&root.join("report").join(&preset.name)),
    )?;
    let data = match &args.data {
        Some(dir) => absolute(dir)?,
        None => rtb_fetch::cache_dir()
            .map(|dir| dir.join("data"))
            .unwrap_or_else(|| root.join("data")),
    };
    let filter = args.only.clone().unwrap_or_default();
    let plan = Plan::new(&preset, args.schedule, &filter, args.shard)?;
    // The estimate asks `rtb` for the architectures' costs, so it is built first (a no-op
    // when it is up to date).
    let rtb = match &args.rtb {
        Some(path) => absolute(path)?,
        None => build_rtb(&root, args.device)?,
    };
    let costs = CachedCosts::new(RtbArchCosts { rtb: rtb.clone() });
    eprint!(
        "{}",
        describe(&plan, args.device, &costs, &datasets_manifest(&root)?)?
    );
    if args.dry_run {
        return Ok(());
    }
    if needs_frost(&preset)
        && !rtb_fetch::frost_dir().is_some_and(|dir| dir.join("frost1.png").is_file())
    {
        eprintln!("== assets (frost textures)");
        crate::assets::run(&crate::assets::Args::default())?;
    }
    let orchestrator = Orchestrator {
        rtb,
        invocation: Invocation {
            preset_file,
            layout: Layout::new(&runs, &preset, &data),
            report_dir: report.clone(),
            device: args.device,
            schedule: args.schedule,
            allow_unverified: args.allow_unverified,
            imagenet: match &args.imagenet_val {
                Some(val) => Some(ImageNetData {
                    val: absolute(val)?,
                    labels: args.imagenet_labels.as_deref().map(absolute).transpose()?,
                    imagenet_c: match args.imagenet_c.as_deref() {
                        None => None,
                        Some("generate") => Some(ImageNetC::Generate),
                        Some(dir) => Some(ImageNetC::Released(absolute(Path::new(dir))?)),
                    },
                }),
                None => None,
            },
        },
        resume: !args.no_resume,
        env: Vec::new(),
        working_dir: Some(root),
    };
    let summary = run_plan(&orchestrator, &plan)?;
    if !summary.success() {
        bail!(
            "{} step(s) failed and {} could not run; rerun the same command to retry them \
             (finished steps are kept)",
            summary.failed(),
            summary.blocked()
        );
    }
    eprintln!("report: {}", report.join("index.html").display());
    Ok(())
}

/// Runs `plan`, printing each step and the summary.
pub fn run_plan(orchestrator: &Orchestrator, plan: &Plan) -> anyhow::Result<rtb_study::Summary> {
    let started = Instant::now();
    let mut observer = |event: &Event| match event {
        Event::Starting {
            step,
            position,
            total,
            command,
        } => {
            eprintln!("[{position}/{total}] {step}");
            eprintln!("    $ {command}");
        }
        Event::Ended { step, outcome } => match outcome {
            Outcome::Done { seconds } => eprintln!("    {step}: done in {seconds:.1} s"),
            Outcome::Skipped => eprintln!("    {step}: finished before, skipped"),
            Outcome::Failed {
                seconds,
                message,
                log,
            } => eprintln!(
                "    {step}: FAILED after {seconds:.1} s ({message}); log: {}",
                log.display()
            ),
            Outcome::Blocked { by } => eprintln!("    {step}: not run ({by} failed)"),
        },
    };
    let summary = orchestrator
        .run(plan, &mut observer)
        .context("running the plan")?;
    let cells = |pick: fn(&Outcome) -> bool| {
        summary
            .steps
            .iter()
            .filter(|(s, o)| matches!(s, Step::Cell(_)) && pick(o))
            .count()
    };
    eprintln!(
        "summary: {} steps done, {} skipped (finished before), {} failed, {} blocked; cells: {} \
         done, {} skipped, {} failed; {:.1} s wall{}",
        summary.done(),
        summary.skipped(),
        summary.failed(),
        summary.blocked(),
        cells(|o| matches!(o, Outcome::Done { .. })),
        cells(|o| matches!(o, Outcome::Skipped)),
        cells(|o| matches!(o, Outcome::Failed { .. } | Outcome::Blocked { .. })),
        started.elapsed().as_secs_f64(),
        summary
            .child_cpu_seconds
            .map(|cpu| format!(", {cpu:.1} s CPU in rtb processes"))
            .unwrap_or_default()
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for the registry: the real costs are checked where rtb-models is linked
    /// (rtb-cli's tests cost every shipped preset's architectures).
    struct Flat;

    impl ArchCosts for Flat {
        fn forward_macs(&self, _: &toml::Value, size: usize) -> Result<f64, StudyError> {
            Ok(1e5 * (size * size) as f64)
        }

        fn head_macs(&self, query: &HeadQuery<'_>) -> Result<HeadCost, StudyError> {
            let macs = 1e5 * (query.size * query.size) as f64;
            Ok(HeadCost {
                train: macs,
                eval: macs,
            })
        }
    }

    #[test]
    fn shipped_presets_parse_and_plan() {
        let root = crate::project_root();
        let datasets = datasets_manifest(&root).unwrap();
        for name in ["tiny", "mini", "paper"] {
            let path = preset_path(&root, name).unwrap();
            let preset = Preset::load(&path).unwrap();
            let plan = Plan::new(&preset, Schedule::Paper, &Filter::default(), None).unwrap();
            let text = describe(&plan, DeviceKind::Cpu, &Flat, &datasets).unwrap();
            assert!(text.contains("estimated total"), "{text}");
            assert_eq!(plan.steps.first(), Some(&Step::Data));
            assert_eq!(plan.steps.last(), Some(&Step::Report));
        }
        assert!(
            preset_path(&root, "other/x.toml")
                .unwrap()
                .ends_with("other/x.toml")
        );
    }
}
