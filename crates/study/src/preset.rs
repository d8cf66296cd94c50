//! The preset schema: a TOML file that says which backbones, tasks, regimes and evaluation
//! make up one run of the study. Everything the orchestrator and the `rtb` processes need is
//! here, so a preset is the whole recipe: `presets/{tiny,mini,paper}.toml`.
//!
//! Tables that only the training code understands (the engine's optimizer and schedule, the
//! augmentation's parameters) are kept as TOML tables ([`Table`]) and handed through; the
//! `rtb` binary deserialises them into its own typed configs and names the preset key in its
//! errors.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rtb_results::{Regime, Task};
use serde::{Deserialize, Serialize};

use crate::StudyError;

/// A TOML table handed through to the code that understands it.
pub type Table = toml::Table;

/// Which training schedule of a task to use (`--schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// The paper's schedules (the default).
    #[default]
    Paper,
    /// A shortened schedule for quick checks (a preset may define it; otherwise the paper
    /// schedule is used).
    Short,
}

impl Schedule {
    /// `paper` or `short`.
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Paper => "paper",
            Schedule::Short => "short",
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Schedule {
    type Err = StudyError;

    fn from_str(value: &str) -> Result<Self, StudyError> {
        match value {
            "paper" => Ok(Schedule::Paper),
            "short" => Ok(Schedule::Short),
            _ => Err(StudyError::Invalid {
                what: "schedule".into(),
                message: format!("{value:?} is not paper or short"),
            }),
        }
    }
}

/// Where a computation runs (`--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// The CPU (the default).
    #[default]
    Cpu,
    /// An NVIDIA GPU (the `rtb` binary must be built with `--features cuda`).
    Cuda,
}

impl DeviceKind {
    /// `cpu` or `cuda`.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DeviceKind {
    type Err = StudyError;

    fn from_str(value: &str) -> Result<Self, StudyError> {
        match value {
            "cpu" => Ok(DeviceKind::Cpu),
            "cuda" => Ok(DeviceKind::Cuda),
            _ => Err(StudyError::Invalid {
                what: "device".into(),
                message: format!("{value:?} is not cpu or cuda"),
            }),
        }
    }
}

/// Where the data of a preset comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DataSpec {
    /// The synthetic shapes world (rtb-synth), generated into `<runs>/<preset>/data/`.
    Synthetic(SyntheticSpec),
    /// The real datasets, downloaded with checksums into the data directory (`--data`) from
    /// the entries of `presets/datasets.toml`.
    Download {
        /// Names of entries in the datasets manifest this preset needs.
        datasets: Vec<String>,
    },
}

/// Counts and sizes of the synthetic world (rtb-synth's `SynthConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSpec {
    /// World seed.
    pub seed: u64,
    /// Shape classes (1..=10).
    pub num_classes: usize,
    /// Source-task training images.
    pub source_train: usize,
    /// Source-task validation images (the source-task evaluation uses them).
    pub source_val: usize,
    /// Source-task image side.
    pub source_size: usize,
    /// Up to this many distractor shapes per source image.
    #[serde(default = "default_distractors")]
    pub source_distractors: usize,
    /// CIFAR-format training images (32×32).
    pub cifar_train: usize,
    /// CIFAR-format test images.
    pub cifar_test: usize,
    /// ADE20K-layout training scenes (the segmentation cells; needed with an `ade20k` task).
    #[serde(default)]
    pub ade_train: usize,
    /// ADE20K-layout validation scenes.
    #[serde(default)]
    pub ade_val: usize,
    /// Side of the ADE20K-layout scenes (square).
    #[serde(default = "default_ade_size")]
    pub ade_size: usize,
    /// COCO-export training scenes (the detection cells; needed with a `coco` task).
    #[serde(default)]
    pub coco_train: usize,
    /// COCO-export validation scenes.
    #[serde(default)]
    pub coco_val: usize,
    /// Side of the COCO-export scenes (square).
    #[serde(default = "default_ade_size")]
    pub coco_size: usize,
}

fn default_ade_size() -> usize {
    64
}

fn default_distractors() -> usize {
    2
}

/// How every cell (and the source task) is evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationSpec {
    /// Corruption names; empty means the 15 benchmark corruptions.
    #[serde(default)]
    pub corruptions: Vec<String>,
    /// Severities (1..=5).
    #[serde(default = "all_severities")]
    pub severities: Vec<u8>,
    /// Evaluate at most this many images per condition (`None`: the whole split).
    #[serde(default)]
    pub images: Option<usize>,
    /// The evaluation seed: per-image corruption seeds derive from it, and so do the
    /// bootstrap resamples.
    #[serde(default)]
    pub seed: u64,
    /// Bootstrap replicates for the 95 % confidence intervals (0: none).
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
}

fn default_bootstrap() -> usize {
    rtb_results::DEFAULT_REPLICATES
}

fn all_severities() -> Vec<u8> {
    vec![1, 2, 3, 4, 5]
}

/// How a backbone is obtained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneSpec {
    /// Directory name in the results store (`regular`, `ant`, `deepaug`, `swin`).
    pub name: String,
    /// The paper's row it stands for (`Regular`, `ANT`, `DeepAug+`, `Swin-T`).
    #[serde(default)]
    pub paper_row: Option<String>,
    /// One line for the report.
    #[serde(default)]
    pub description: String,
    /// The architecture: a name known to rtb-models (`resnet_mini`, `swin_t`, …) or a table
    /// of rtb-models' `ArchConfig` (`family = "resnet"`, …).
    pub arch: toml::Value,
    /// Pretrain on the preset's source task (mini and tiny presets).
    #[serde(default)]
    pub pretrain: Option<PretrainSpec>,
    /// Take published weights from the manifest entry of this name (`weights/backbones.toml`;
    /// paper preset).
    #[serde(default)]
    pub weights: Option<String>,
}

/// Pretraining on the synthetic source task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainSpec {
    /// Epochs over the source training split.
    pub epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// The run seed (initial weights, order, augmentation draws).
    #[serde(default)]
    pub seed: u64,
    /// The robustness recipe: `{ kind = "standard" }`, `{ kind = "noise", … }` (ANT-like) or
    /// `{ kind = "augmix", … }` (DeepAug+AugMix-like); parameters as rtb-pretrain documents.
    pub augment: Table,
    /// The training engine's table (rtb-train's `EngineConfig` without `epochs`: optimizer,
    /// schedule, groups, clip_grad_norm, checkpoint).
    #[serde(default)]
    pub engine: Table,
}

/// One training schedule of a task in one regime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegimeSpec {
    /// Epochs over the task's training split.
    pub epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Shortened schedules: stop after `epochs × ⌈train_images / batch_size⌉` iterations, as
    /// if each epoch had this many images (`None`: whole epochs).
    #[serde(default)]
    pub train_images: Option<usize>,
    /// The run seed.
    #[serde(default)]
    pub seed: u64,
    /// The training engine's table (rtb-train's `EngineConfig` without `epochs`).
    #[serde(default)]
    pub engine: Table,
    /// Engine tables for the backbones of one architecture family (`swin`, `resnet`,
    /// `convnext`), used instead of `engine` for them: mmseg trains UperNet with SGD on
    /// ResNets and with AdamW on Swin.
    #[serde(default)]
    pub engine_for: BTreeMap<String, Table>,
    /// Task-specific settings handed to the task's crate (augmentation, head, …).
    #[serde(default)]
    pub options: Table,
}

impl RegimeSpec {
    /// The engine table for a backbone of architecture family `family`.
    pub fn engine_of(&self, family: &str) -> &Table {
        self.engine_for.get(family).unwrap_or(&self.engine)
    }
}

/// A downstream task and its schedules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Which task.
    pub task: Task,
    /// Input side the backbone sees (CIFAR's 32×32 images are resized to it).
    pub image_size: usize,
    /// The corruption flavor of this task's evaluation (`cifar-c`, `imagecorruptions`,
    /// `imagenet-c`).
    pub flavor: String,
    /// The schedules per regime, under `[task.paper.fixed]`, `[task.paper.full]` and
    /// optionally `[task.short.*]`.
    pub paper: BTreeMap<Regime, RegimeSpec>,
    /// Shortened schedules (`--schedule short`); missing regimes fall back to `paper`.
    #[serde(default)]
    pub short: BTreeMap<Regime, RegimeSpec>,
}

impl TaskSpec {
    /// The schedule of `regime` under `schedule`.
    pub fn regime(&self, regime: Regime, schedule: Schedule) -> Option<&RegimeSpec> {
        match schedule {
            Schedule::Short => self.short.get(&regime).or_else(|| self.paper.get(&regime)),
            Schedule::Paper => self.paper.get(&regime),
        }
    }
}

/// The source task's evaluation (pretrained backbones only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// The source task's name in the report (`shapes64`).
    pub name: String,
    /// The corruption flavor of the source-task evaluation.
    pub flavor: String,
}

/// Throughput assumptions of `--dry-run`'s cost estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostSpec {
    /// Sustained multiply-accumulates per second of a training or inference step on the CPU,
    /// in billions (both cores).
    #[serde(default = "default_cpu_gmacs")]
    pub cpu_gmacs_per_second: f64,
    /// The same on one GPU.
    #[serde(default = "default_cuda_gmacs")]
    pub cuda_gmacs_per_second: f64,
    /// Milliseconds to corrupt one image of 32×32 pixels (scaled by pixel count), averaged
    /// over the benchmark corruptions, on the CPU.
    #[serde(default = "default_corrupt_ms")]
    pub corrupt_ms_per_kilopixel: f64,
    /// Seconds of fixed overhead per `rtb` process (start, data loading).
    #[serde(default = "default_overhead")]
    pub process_overhead_seconds: f64,
    /// Per-task multipliers of a cell's compute time (its multiply-accumulates over the
    /// rate above), for tasks whose steps run at another speed per multiply-accumulate than
    /// the one rate fits (`task_factor = { coco = 1.5 }`); 1 for a task not named.
    #[serde(default)]
    pub task_factor: BTreeMap<Task, f64>,
    /// The same for the backbones' pretraining and source-task evaluation steps.
    #[serde(default = "default_factor")]
    pub pretrain_factor: f64,
    /// Per-architecture multipliers of a backbone's multiply-accumulates, for architectures
    /// that run at another speed per multiply-accumulate than the one rate fits (a small
    /// Swin's many small ops: `arch_factor = { swin_mini = 1.7 }`), keyed by the name a
    /// backbone's `arch` gives; 1 for others and for `arch` tables. Applies to the backbone's
    /// share of its pretraining and of every cell, not to the task heads.
    #[serde(default)]
    pub arch_factor: BTreeMap<String, f64>,
}

fn default_factor() -> f64 {
    1.0
}

impl CostSpec {
    /// The multiplier of `task`'s compute time (1 unless `task_factor` names it).
    pub fn factor(&self, task: Task) -> f64 {
        self.task_factor.get(&task).copied().unwrap_or(1.0)
    }

    /// The multiplier of a backbone's multiply-accumulates (1 unless `arch_factor` names its
    /// `arch`).
    pub fn arch_factor(&self, arch: &toml::Value) -> f64 {
        arch.as_str()
            .and_then(|name| self.arch_factor.get(name))
            .copied()
            .unwrap_or(1.0)
    }
}

fn default_cpu_gmacs() -> f64 {
    3.0
}
fn default_cuda_gmacs() -> f64 {
    3000.0
}
fn default_corrupt_ms() -> f64 {
    0.15
}
fn default_overhead() -> f64 {
    1.0
}

impl Default for CostSpec {
    fn default() -> Self {
        Self {
            cpu_gmacs_per_second: default_cpu_gmacs(),
            cuda_gmacs_per_second: default_cuda_gmacs(),
            corrupt_ms_per_kilopixel: default_corrupt_ms(),
            process_overhead_seconds: default_overhead(),
            task_factor: BTreeMap::new(),
            pretrain_factor: default_factor(),
            arch_factor: BTreeMap::new(),
        }
    }
}

/// The activations' type of the cells on CUDA. The CPU always computes in f32 (candle's CPU
/// backend has no bf16 matrix product).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CudaPrecision {
    /// f32 throughout (the default; what the paper's runs used).
    #[default]
    F32,
    /// bf16 autocast: f32 weights, gradients and optimizer state, bf16 activations.
    Bf16,
}

/// One preset: the whole recipe of a run of the study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    /// The preset's name: the directory `runs/<name>/`.
    pub name: String,
    /// What it is, for the plan and the report.
    pub description: String,
    /// Whether its numbers are a demonstration of the pipeline (synthetic data, small
    /// backbones) rather than a reproduction of the paper; the report says so.
    #[serde(default)]
    pub demonstration: bool,
    /// Where the data comes from.
    pub data: DataSpec,
    /// The source task (pretrained backbones).
    #[serde(default)]
    pub source: Option<SourceSpec>,
    /// How every evaluation runs.
    pub evaluation: EvaluationSpec,
    /// The backbones, in display order (`[[backbone]]`).
    #[serde(rename = "backbone")]
    pub backbones: Vec<BackboneSpec>,
    /// The tasks (`[[task]]`).
    #[serde(rename = "task", default)]
    pub tasks: Vec<TaskSpec>,
    /// Cost-estimate assumptions.
    #[serde(default)]
    pub cost: CostSpec,
    /// The cells' activations on CUDA (`precision = "bf16"`: autocast); ignored on the CPU.
    #[serde(default)]
    pub precision: CudaPrecision,
}

/// Benchmark corruption names, in the paper's category order (noise, blur, weather,
/// digital); kept here so the preset crate needs no image code.
pub const BENCHMARK_CORRUPTIONS: [&str; 15] = [
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
];

const EXTRA_CORRUPTIONS: [&str; 4] = ["speckle_noise", "gaussian_blur", "spatter", "saturate"];
/// Directory names under `runs/<preset>/` that are not backbones.
const RESERVED_NAMES: [&str; 3] = ["data", "logs", "report"];
const FLAVORS: [&str; 3] = ["imagecorruptions", "imagenet-c", "cifar-c"];

impl Preset {
    /// Parses and validates preset TOML; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, StudyError> {
        let preset: Preset = toml::from_str(text).map_err(|err| StudyError::Parse {
            path: PathBuf::from(origin),
            message: err.to_string(),
        })?;
        preset.validate().map_err(|err| match err {
            StudyError::Invalid { what, message } => StudyError::Invalid {
                what: format!("{origin}: {what}"),
                message,
            },
            other => other,
        })?;
        Ok(preset)
    }

    /// Reads and validates a preset file.
    pub fn load(path: &Path) -> Result<Self, StudyError> {
        let text = std::fs::read_to_string(path).map_err(|source| StudyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The backbone named `name`.
    pub fn backbone(&self, name: &str) -> Result<&BackboneSpec, StudyError> {
        self.backbones
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| StudyError::Invalid {
                what: "backbone".into(),
                message: format!(
                    "preset {} has no backbone {name:?} (it has {})",
                    self.name,
                    self.backbones
                        .iter()
                        .map(|b| b.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    /// The task spec of `task`.
    pub fn task(&self, task: Task) -> Result<&TaskSpec, StudyError> {
        self.tasks
            .iter()
            .find(|t| t.task == task)
            .ok_or_else(|| StudyError::Invalid {
                what: "task".into(),
                message: format!("preset {} has no task {task}", self.name),
            })
    }

    /// The corruption names evaluated (the 15 benchmark ones when the preset lists none).
    pub fn corruptions(&self) -> Vec<String> {
        if self.evaluation.corruptions.is_empty() {
            BENCHMARK_CORRUPTIONS
                .iter()
                .map(|c| c.to_string())
                .collect()
        } else {
            self.evaluation.corruptions.clone()
        }
    }

    /// Checks names, counts and cross references; an error names the key.
    pub fn validate(&self) -> Result<(), StudyError> {
        let invalid = |what: &str, message: String| {
            Err(StudyError::Invalid {
                what: what.to_string(),
                message,
            })
        };
        rtb_results::CellId::new(&self.name, "x", Task::Cifar10, Regime::Fixed).map_err(|err| {
            StudyError::Invalid {
                what: "name".into(),
                message: err.to_string(),
            }
        })?;
        let factors = self
            .cost
            .task_factor
            .iter()
            .map(|(task, factor)| (format!("cost.task_factor.{task}"), *factor))
            .chain([(
                "cost.pretrain_factor".to_string(),
                self.cost.pretrain_factor,
            )])
            .chain(
                self.cost
                    .arch_factor
                    .iter()
                    .map(|(arch, factor)| (format!("cost.arch_factor.{arch}"), *factor)),
            );
        for (key, factor) in factors {
            if !(factor.is_finite() && factor > 0.0) {
                return invalid(&key, format!("must be a positive number, got {factor}"));
            }
        }
        if self.backbones.is_empty() {
            return invalid(
                "backbone",
                "a preset needs at least one [[backbone]]".into(),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (index, backbone) in self.backbones.iter().enumerate() {
            let key = format!("backbone[{index}]");
            rtb_results::CellId::new(&self.name, &backbone.name, Task::Cifar10, Regime::Fixed)
                .map_err(|err| StudyError::Invalid {
                    what: format!("{key}.name"),
                    message: err.to_string(),
                })?;
            if RESERVED_NAMES.contains(&backbone.name.as_str()) {
                return invalid(
                    &format!("{key}.name"),
                    format!("{:?} is reserved for the preset's own files", backbone.name),
                );
            }
            if !seen.insert(backbone.name.as_str()) {
                return invalid(
                    &format!("{key}.name"),
                    format!("{:?} appears twice", backbone.name),
                );
            }
            match (&backbone.pretrain, &backbone.weights) {
                (Some(_), Some(_)) | (None, None) => {
                    return invalid(
                        &key,
                        format!(
                            "{:?} needs exactly one of [backbone.pretrain] and backbone.weights",
                            backbone.name
                        ),
                    );
                }
                (Some(pretrain), None) => {
                    if pretrain.epochs == 0 || pretrain.batch_size == 0 {
                        return invalid(
                            &format!("{key}.pretrain"),
                            "epochs and batch_size must be at least 1".into(),
                        );
                    }
                    if !pretrain.augment.contains_key("kind") {
                        return invalid(
                            &format!("{key}.pretrain.augment"),
                            "needs kind = \"standard\" | \"noise\" | \"augmix\"".into(),
                        );
                    }
                    if !matches!(self.data, DataSpec::Synthetic(_)) || self.source.is_none() {
                        return invalid(
                            &format!("{key}.pretrain"),
                            "pretraining needs synthetic data and a [source] table".into(),
                        );
                    }
                }
                (None, Some(_)) => {}
            }
            if !(backbone.arch.is_str() || backbone.arch.is_table()) {
                return invalid(
                    &format!("{key}.arch"),
                    "must be an architecture name or a table".into(),
                );
            }
        }
        let mut tasks = std::collections::BTreeSet::new();
        for (index, task) in self.tasks.iter().enumerate() {
            let key = format!("task[{index}]");
            if !tasks.insert(task.task) {
                return invalid(&key, format!("task {} appears twice", task.task));
            }
            if !FLAVORS.contains(&task.flavor.as_str()) {
                return invalid(
                    &format!("{key}.flavor"),
                    format!("{:?} is not one of {}", task.flavor, FLAVORS.join(", ")),
                );
            }
            if task.image_size < 16 {
                return invalid(
                    &format!("{key}.image_size"),
                    format!("{} is below 16", task.image_size),
                );
            }
            if task.paper.is_empty() {
                return invalid(
                    &format!("{key}.paper"),
                    "needs [task.paper.fixed] and/or [task.paper.full]".into(),
                );
            }
            for (table, schedules) in [("paper", &task.paper), ("short", &task.short)] {
                for (regime, spec) in schedules {
                    if spec.epochs == 0 || spec.batch_size == 0 {
                        return invalid(
                            &format!("{key}.{table}.{regime}"),
                            "epochs and batch_size must be at least 1".into(),
                        );
                    }
                }
            }
        }
        if let Some(source) = &self.source
            && !FLAVORS.contains(&source.flavor.as_str())
        {
            return invalid(
                "source.flavor",
                format!("{:?} is not one of {}", source.flavor, FLAVORS.join(", ")),
            );
        }
        for name in &self.evaluation.corruptions {
            if !BENCHMARK_CORRUPTIONS.contains(&name.as_str())
                && !EXTRA_CORRUPTIONS.contains(&name.as_str())
            {
                return invalid(
                    "evaluation.corruptions",
                    format!("{name:?} is not a corruption"),
                );
            }
        }
        if self.evaluation.severities.is_empty()
            || self
                .evaluation
                .severities
                .iter()
                .any(|s| !(1..=5).contains(s))
        {
            return invalid(
                "evaluation.severities",
                format!(
                    "{:?}: must be a non-empty list of 1..=5",
                    self.evaluation.severities
                ),
            );
        }
        if self.evaluation.images == Some(0) {
            return invalid("evaluation.images", "must be at least 1".into());
        }
        if let DataSpec::Synthetic(synthetic) = &self.data {
            if !(1..=10).contains(&synthetic.num_classes) {
                return invalid(
                    "data.num_classes",
                    format!("{} is not 1..=10", synthetic.num_classes),
                );
            }
            if synthetic.source_train == 0
                || synthetic.source_val == 0
                || synthetic.cifar_train == 0
                || synthetic.cifar_test == 0
            {
                return invalid("data", "every split needs at least one image".into());
            }
            let has_ade = self.tasks.iter().any(|t| t.task == Task::Ade20k);
            if has_ade && (synthetic.ade_train == 0 || synthetic.ade_val == 0) {
                return invalid(
                    "data",
                    "an ade20k task needs ade_train and ade_val scenes of the synthetic world"
                        .into(),
                );
            }
            let has_coco = self.tasks.iter().any(|t| t.task == Task::Coco);
            if has_coco && (synthetic.coco_train == 0 || synthetic.coco_val == 0) {
                return invalid(
                    "data",
                    "a coco task needs coco_train and coco_val scenes of the synthetic world"
                        .into(),
                );
            }
            if has_coco && synthetic.coco_size < 32 {
                return invalid(
                    "data.coco_size",
                    format!(
                        "{} is below 32 (mmdet's shortest training image side)",
                        synthetic.coco_size
                    ),
                );
            }
            if has_ade && synthetic.ade_size < 32 {
                return invalid(
                    "data.ade_size",
                    format!("{} is below 32 (the backbones' stride)", synthetic.ade_size),
                );
            }
        }
        Ok(())
    }
}

/// Converts a handed-through TOML table to JSON (what the typed configs of the training code
/// deserialise from).
pub fn table_to_json(table: &Table) -> serde_json::Value {
    serde_json::to_value(table).expect("TOML values are JSON values")
}
