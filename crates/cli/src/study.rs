//! What the study's subcommands (`rtb prepare`, `rtb backbone`, `rtb cell`) share: reading a
//! preset, turning its handed-through tables into the typed configs of the library crates,
//! and an observer that logs training progress.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rtb_models::ArchConfig;
use rtb_study::{Layout, Preset, SyntheticSpec, Table};
use rtb_train::{EngineConfig, Event, Observer};

/// Arguments every study step takes.
#[derive(Debug, Clone, clap::Args)]
pub struct StepArgs {
    /// The preset file (`presets/mini.toml`).
    #[arg(long, value_name = "TOML")]
    pub preset: PathBuf,
    /// The results store.
    #[arg(long, default_value = "runs")]
    pub runs: PathBuf,
    /// Where downloaded datasets live (real-data presets; default: `<rtb cache>/data`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The frost textures' folder (default: `RTB_FROST_DIR`, else the cache's).
    #[arg(long)]
    pub frost_dir: Option<PathBuf>,
}

impl StepArgs {
    /// The preset and its file layout.
    pub fn load(&self) -> anyhow::Result<(Preset, Layout)> {
        let preset = Preset::load(&self.preset)?;
        let download = match &self.data {
            Some(dir) => dir.clone(),
            None => rtb_fetch::cache_dir()
                .map(|dir| dir.join("data"))
                .unwrap_or_else(|| PathBuf::from("data")),
        };
        let layout = Layout::new(&self.runs, &preset, &download);
        Ok((preset, layout))
    }

    /// The frost textures' folder, if one is known.
    pub fn frost_dir(&self) -> Option<PathBuf> {
        self.frost_dir.clone().or_else(rtb_fetch::frost_dir)
    }
}

/// The architecture a preset's `arch` value names (a name, or a table of `ArchConfig`).
pub fn arch_of(value: &toml::Value, what: &str) -> anyhow::Result<ArchConfig> {
    let arch = match value {
        toml::Value::String(name) => ArchConfig::from_name(name).with_context(|| {
            format!(
                "{what}: unknown architecture {name:?}; registered: {}",
                rtb_models::registry::preset_names().join(", ")
            )
        })?,
        other => serde_json::from_value::<ArchConfig>(serde_json::to_value(other)?)
            .with_context(|| format!("{what}: not an rtb-models architecture config"))?,
    };
    arch.check().with_context(|| what.to_string())?;
    Ok(arch)
}

/// rtb-train's engine config from a preset's `engine` table and the epoch count.
pub fn engine_of(table: &Table, epochs: usize, what: &str) -> anyhow::Result<EngineConfig> {
    let mut json = rtb_study::table_to_json(table);
    json.as_object_mut()
        .context("the engine table is a table")?
        .insert("epochs".into(), epochs.into());
    serde_json::from_value(json).with_context(|| format!("{what}.engine"))
}

/// rtb-synth's config for a synthetic preset (the COCO export, and the ADE export of a preset
/// without ADE scenes, keep rtb-synth's tiny sizes).
pub fn synth_config(spec: &SyntheticSpec) -> rtb_synth::SynthConfig {
    let mut config = rtb_synth::SynthConfig::tiny()
        .with_seed(spec.seed)
        .with_num_classes(spec.num_classes);
    config.source.train = spec.source_train;
    config.source.val = spec.source_val;
    config.source.size = spec.source_size;
    config.source.distractors = spec.source_distractors;
    config.cifar.train = spec.cifar_train;
    config.cifar.test = spec.cifar_test;
    if spec.ade_train > 0 && spec.ade_val > 0 {
        config.ade.train = spec.ade_train;
        config.ade.val = spec.ade_val;
        config.ade.width = spec.ade_size;
        config.ade.height = spec.ade_size;
    }
    if spec.coco_train > 0 && spec.coco_val > 0 {
        config.coco.train = spec.coco_train;
        config.coco.val = spec.coco_val;
        config.coco.width = spec.coco_size;
        config.coco.height = spec.coco_size;
    }
    config
}

/// The source task's corrupted validation sets as the preset asks for them (the same spec in
/// `rtb prepare` and `rtb backbone`, so the cache made by one is reused by the other).
pub fn source_c_spec(preset: &Preset) -> anyhow::Result<rtb_pretrain::SourceCSpec> {
    let source = preset
        .source
        .as_ref()
        .context("the preset has no [source] table")?;
    Ok(rtb_pretrain::SourceCSpec {
        corruptions: preset.corruptions(),
        severities: preset.evaluation.severities.clone(),
        images: preset.evaluation.images,
        seed: preset.evaluation.seed,
        flavor: source.flavor.clone(),
    })
}

/// The CIFAR folder of a synthetic preset's data directory.
pub fn synthetic_cifar_dir(data: &Path) -> PathBuf {
    data.join("cifar")
}

/// Logs training and phase progress through `tracing` (a line per epoch, per checkpoint and
/// per tenth of a phase), so a step's log file tells where it stood.
#[derive(Debug, Default)]
pub struct LogObserver {
    last_phase: Option<(String, usize)>,
    iterations: usize,
}

impl Observer for LogObserver {
    fn on_event(&mut self, event: &Event) {
        match event {
            Event::TrainingStarted {
                total_iterations,
                start_iteration,
                resumed_from,
                ..
            } => {
                self.iterations = *total_iterations;
                match resumed_from {
                    Some(path) => tracing::info!(
                        "training resumes at iteration {start_iteration}/{total_iterations} from {}",
                        path.display()
                    ),
                    None => tracing::info!("training: {total_iterations} iterations"),
                }
            }
            Event::EpochFinished { epoch, mean_loss } => {
                tracing::info!("epoch {} done, mean loss {mean_loss:.4}", epoch + 1);
            }
            Event::CheckpointSaved { iteration, path } => {
                tracing::debug!("checkpoint at iteration {iteration}: {}", path.display());
            }
            Event::TrainingFinished {
                iterations,
                seconds,
            } => tracing::info!("training finished: {iterations} iterations in {seconds:.1} s"),
            Event::Phase { name, done, total } => {
                let tenth = (done * 10) / (*total).max(1);
                let key = (name.clone(), tenth);
                if self.last_phase.as_ref() != Some(&key) && (tenth > 0 || done == total) {
                    tracing::debug!("{name}: {done}/{total}");
                    self.last_phase = Some(key);
                }
            }
            Event::Step(_) | Event::Evaluated { .. } => {}
        }
    }
}
