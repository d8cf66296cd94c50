//! The matrix of a preset and the plan that runs it: the steps (data, backbones, cells,
//! report) in dependency order, filtered by `--only` and split by `--shard`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rtb_results::{BACKBONE_FILE, CellId, METRICS_FILE, Regime, Task};

use crate::StudyError;
use crate::preset::{DataSpec, Preset, Schedule};

/// The file a finished pretraining or weight import writes beside `backbone.json`: the
/// backbone's weights in the canonical layout.
pub const BACKBONE_WEIGHTS: &str = "backbone.safetensors";
/// The marker a finished data step writes.
pub const DATA_COMPLETE: &str = "complete.json";

/// One unit of work, run as one `rtb` process.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// Make (synthetic) or download (real) the preset's datasets.
    Data,
    /// Obtain a backbone: pretrain it on the source task, or fetch and import its published
    /// weights; writes `backbone.json` and `backbone.safetensors`.
    Backbone(String),
    /// Train and evaluate one cell; writes `metrics.json`.
    Cell(CellId),
    /// Write the report.
    Report,
}

impl Step {
    /// A short label: `data`, `backbone regular`, `cell regular/cifar10/full`, `report`.
    pub fn label(&self) -> String {
        match self {
            Step::Data => "data".into(),
            Step::Backbone(name) => format!("backbone {name}"),
            Step::Cell(cell) => format!("cell {}/{}/{}", cell.backbone, cell.task, cell.regime),
            Step::Report => "report".into(),
        }
    }

    /// The file whose presence means the step is finished (`None`: always runs).
    pub fn done_marker(&self, layout: &Layout) -> Option<PathBuf> {
        match self {
            Step::Data => Some(layout.data_marker()),
            Step::Backbone(name) => Some(layout.backbone_dir(name).join(BACKBONE_FILE)),
            Step::Cell(cell) => Some(cell.dir(&layout.runs).join(METRICS_FILE)),
            Step::Report => None,
        }
    }

    /// The directory the step owns (removed first under `--no-resume`).
    pub fn owned_dir(&self, layout: &Layout) -> Option<PathBuf> {
        match self {
            Step::Data | Step::Report => None,
            Step::Backbone(name) => Some(layout.backbone_dir(name).join("pretrain")),
            Step::Cell(cell) => Some(cell.dir(&layout.runs)),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// Where a preset's files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The results store root (`runs/`).
    pub runs: PathBuf,
    /// The preset's name.
    pub preset: String,
    /// Where the preset's datasets live: `<runs>/<preset>/data` for synthetic data, the
    /// download directory (`--data`) for real data.
    pub data: PathBuf,
}

impl Layout {
    /// The layout of `preset` under `runs`; `download_dir` holds real datasets.
    pub fn new(runs: &Path, preset: &Preset, download_dir: &Path) -> Self {
        let data = match preset.data {
            DataSpec::Synthetic(_) => runs.join(&preset.name).join("data"),
            DataSpec::Download { .. } => download_dir.to_path_buf(),
        };
        Self {
            runs: runs.to_path_buf(),
            preset: preset.name.clone(),
            data,
        }
    }

    /// The marker of a finished data step: `complete.json` in a synthetic data directory,
    /// `complete-<preset>.json` in a shared download directory.
    pub fn data_marker(&self) -> PathBuf {
        if self.data == self.preset_dir().join("data") {
            self.data.join(DATA_COMPLETE)
        } else {
            self.data.join(format!("complete-{}.json", self.preset))
        }
    }

    /// `<runs>/<preset>`.
    pub fn preset_dir(&self) -> PathBuf {
        self.runs.join(&self.preset)
    }

    /// `<runs>/<preset>/<backbone>`.
    pub fn backbone_dir(&self, backbone: &str) -> PathBuf {
        self.preset_dir().join(backbone)
    }

    /// `<runs>/<preset>/<backbone>/backbone.safetensors`.
    pub fn backbone_weights(&self, backbone: &str) -> PathBuf {
        self.backbone_dir(backbone).join(BACKBONE_WEIGHTS)
    }

    /// `<runs>/<preset>/logs`: one log file per step.
    pub fn logs_dir(&self) -> PathBuf {
        self.preset_dir().join("logs")
    }
}

/// `--only backbone=a|b,task=cifar10,regime=full`: each key restricts one axis; values are
/// separated by `|` (or `+`). Backbone steps stay in the plan when a selected cell needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Allowed backbones (empty: all).
    pub backbones: Vec<String>,
    /// Allowed tasks (empty: all).
    pub tasks: Vec<Task>,
    /// Allowed regimes (empty: all).
    pub regimes: Vec<Regime>,
}

impl FromStr for Filter {
    type Err = StudyError;

    fn from_str(text: &str) -> Result<Self, StudyError> {
        let mut filter = Filter::default();
        let invalid = |message: String| StudyError::Invalid {
            what: "--only".into(),
            message,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, values) = part
                .split_once('=')
                .ok_or_else(|| invalid(format!("{part:?} is not key=value")))?;
            let values = values
                .split(['|', '+'])
                .map(str::trim)
                .filter(|v| !v.is_empty());
            match key.trim() {
                "backbone" => filter.backbones.extend(values.map(String::from)),
                "task" => {
                    for value in values {
                        filter
                            .tasks
                            .push(value.parse().map_err(|e| invalid(format!("{e}")))?);
                    }
                }
                "regime" => {
                    for value in values {
                        filter
                            .regimes
                            .push(value.parse().map_err(|e| invalid(format!("{e}")))?);
                    }
                }
                other => {
                    return Err(invalid(format!(
                        "unknown key {other:?} (backbone, task, regime)"
                    )));
                }
            }
        }
        Ok(filter)
    }
}

impl Filter {
    /// Whether the filter keeps `cell`.
    pub fn keeps(&self, cell: &CellId) -> bool {
        (self.backbones.is_empty() || self.backbones.contains(&cell.backbone))
            && (self.tasks.is_empty() || self.tasks.contains(&cell.task))
            && (self.regimes.is_empty() || self.regimes.contains(&cell.regime))
    }

    /// Whether a filter restricts anything.
    pub fn is_empty(&self) -> bool {
        self.backbones.is_empty() && self.tasks.is_empty() && self.regimes.is_empty()
    }
}

/// `--shard i/n` (1-based `i`): the cells of the whole matrix, in its canonical order, are cut
/// into `n` contiguous blocks of nearly equal size (cell `k` of `N` goes to shard
/// `⌊k·n/N⌋ + 1`), so a cell's shard depends only on the preset, never on `--only` or on what
/// has run, and a shard's cells share as few backbones as possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, 1..=count.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl FromStr for Shard {
    type Err = StudyError;

    fn from_str(text: &str) -> Result<Self, StudyError> {
        let invalid = || StudyError::Invalid {
            what: "--shard".into(),
            message: format!("{text:?} is not i/n with 1 <= i <= n"),
        };
        let (index, count) = text.split_once('/').ok_or_else(invalid)?;
        let index: usize = index.trim().parse().map_err(|_| invalid())?;
        let count: usize = count.trim().parse().map_err(|_| invalid())?;
        if count == 0 || index == 0 || index > count {
            return Err(invalid());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Every cell of a preset in canonical order: backbones in preset order, then tasks in the
/// paper's order (COCO, ADE20K, CIFAR-10), then fixed before full; only tasks the preset
/// defines, and only regimes the task defines under `schedule`.
pub fn matrix(preset: &Preset, schedule: Schedule) -> Vec<CellId> {
    let mut cells = Vec::new();
    for backbone in &preset.backbones {
        for task in Task::ALL {
            let Ok(spec) = preset.task(task) else {
                continue;
            };
            for regime in Regime::ALL {
                if spec.regime(regime, schedule).is_some() {
                    cells.push(
                        CellId::new(&preset.name, &backbone.name, task, regime)
                            .expect("names were validated with the preset"),
                    );
                }
            }
        }
    }
    cells
}

/// The steps of one invocation, in the order they run.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The preset.
    pub preset: Preset,
    /// The schedule.
    pub schedule: Schedule,
    /// Steps in dependency order: data, backbones, cells, report.
    pub steps: Vec<Step>,
}

impl Plan {
    /// The plan for `preset`: the cells `filter` and `shard` keep, the backbone steps they
    /// depend on (all backbones when nothing restricts the backbones and no shard is given),
    /// the data step, and the report.
    pub fn new(
        preset: &Preset,
        schedule: Schedule,
        filter: &Filter,
        shard: Option<Shard>,
    ) -> Result<Self, StudyError> {
        for name in &filter.backbones {
            preset.backbone(name)?;
        }
        let all = matrix(preset, schedule);
        let total = all.len();
        let cells: Vec<CellId> = all
            .into_iter()
            .enumerate()
            .filter(|(position, _)| {
                shard.is_none_or(|s| position * s.count / total.max(1) == s.index - 1)
            })
            .map(|(_, cell)| cell)
            .filter(|cell| filter.keeps(cell))
            .collect();
        let mut steps = vec![Step::Data];
        for backbone in &preset.backbones {
            let needed = cells.iter().any(|c| c.backbone == backbone.name);
            let wanted = (filter.backbones.is_empty() || filter.backbones.contains(&backbone.name))
                && shard.is_none()
                && filter.tasks.is_empty()
                && filter.regimes.is_empty();
            if needed || wanted {
                steps.push(Step::Backbone(backbone.name.clone()));
            }
        }
        steps.extend(cells.into_iter().map(Step::Cell));
        steps.push(Step::Report);
        Ok(Plan {
            preset: preset.clone(),
            schedule,
            steps,
        })
    }

    /// The cells of the plan.
    pub fn cells(&self) -> impl Iterator<Item = &CellId> {
        self.steps.iter().filter_map(|s| match s {
            Step::Cell(cell) => Some(cell),
            _ => None,
        })
    }

    /// Whether the preset's data are synthetic.
    pub fn is_synthetic(&self) -> bool {
        matches!(self.preset.data, DataSpec::Synthetic(_))
    }
}

/// How the orchestrator invokes `rtb` for a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The preset file every `rtb` process reads.
    pub preset_file: PathBuf,
    /// The file layout.
    pub layout: Layout,
    /// Where the report goes.
    pub report_dir: PathBuf,
    /// `cpu` or `cuda`.
    pub device: crate::DeviceKind,
    /// The schedule.
    pub schedule: Schedule,
    /// Allow weight-manifest entries marked unverified (paper preset).
    pub allow_unverified: bool,
    /// ImageNet data for the published backbones' own clean and corrupted top-1 (Figure 1's
    /// first two bars); `None`: those bars read "not run".
    pub imagenet: Option<ImageNetData>,
}

/// Where the user's ImageNet validation data is (rtb never downloads ImageNet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageNetData {
    /// The validation images: `val/<wnid>/*.JPEG`, or a flat folder with `labels`.
    pub val: PathBuf,
    /// A labels file for a flat folder (`val.txt` or `LOC_val_solution.csv`).
    pub labels: Option<PathBuf>,
    /// The released ImageNet-C folder (`<corruption>/<severity>/<wnid>/*.JPEG`), or `None`
    /// for clean top-1 only.
    pub imagenet_c: Option<ImageNetC>,
}

/// Which corrupted images the ImageNet-C evaluation reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageNetC {
    /// The released folders.
    Released(PathBuf),
    /// Generated on the fly from the validation images (the `imagenet-c` flavor).
    Generate,
}

impl Invocation {
    /// The `rtb` arguments of `step` (without the program).
    pub fn args(&self, step: &Step) -> Vec<String> {
        let path = |p: &Path| p.display().to_string();
        let common = |sub: &str| -> Vec<String> {
            vec![
                sub.to_string(),
                "--preset".into(),
                path(&self.preset_file),
                "--runs".into(),
                path(&self.layout.runs),
                "--data".into(),
                path(&self.layout.data),
            ]
        };
        match step {
            Step::Data => {
                let mut args = common("prepare");
                if self.allow_unverified {
                    args.push("--allow-unverified".into());
                }
                args
            }
            Step::Backbone(name) => {
                let mut args = common("backbone");
                args.extend([
                    "--backbone".into(),
                    name.clone(),
                    "--device".into(),
                    self.device.to_string(),
                ]);
                if self.allow_unverified {
                    args.push("--allow-unverified".into());
                }
                if let Some(imagenet) = &self.imagenet {
                    args.extend(["--imagenet-val".into(), path(&imagenet.val)]);
                    if let Some(labels) = &imagenet.labels {
                        args.extend(["--imagenet-labels".into(), path(labels)]);
                    }
                    match &imagenet.imagenet_c {
                        Some(ImageNetC::Released(dir)) => {
                            args.extend(["--imagenet-c".into(), path(dir)]);
                        }
                        Some(ImageNetC::Generate) => {
                            args.extend(["--imagenet-c".into(), "generate".into()]);
                        }
                        None => {}
                    }
                }
                args
            }
            Step::Cell(cell) => {
                let mut args = common("cell");
                args.extend([
                    "--backbone".into(),
                    cell.backbone.clone(),
                    "--task".into(),
                    cell.task.to_string(),
                    "--regime".into(),
                    cell.regime.to_string(),
                    "--device".into(),
                    self.device.to_string(),
                    "--schedule".into(),
                    self.schedule.to_string(),
                ]);
                args
            }
            Step::Report => vec![
                "report".into(),
                "--runs".into(),
                path(&self.layout.runs),
                "--preset".into(),
                self.layout.preset.clone(),
                "--out".into(),
                path(&self.report_dir),
            ],
        }
    }
}
