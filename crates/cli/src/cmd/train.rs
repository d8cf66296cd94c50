//! `rtb train <task>`: train one cell into a run directory. The argument handling is thin: it
//! fills the task's config struct (`rtb_cifar::CifarConfig`) from flags or from a JSON file,
//! and the library does the rest (config.json first, then checkpoints and metrics.jsonl;
//! a directory with a checkpoint resumes).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use rtb_cifar::CifarConfig;
use rtb_models::ArchConfig;
use rtb_results::Regime;
use rtb_train::{DecayConfig, DeviceChoice, Event, Observer, OptimizerConfig, Precision};

/// Tasks `rtb train` knows.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Transfer a backbone to CIFAR-10 (fixed-feature or full-network).
    Cifar(Box<CifarArgs>),
    /// Train UperNet on an ADE20K-layout dataset (fixed-feature or full-network).
    Ade(AdeArgs),
    /// Train Mask R-CNN on a COCO-layout dataset (fixed-feature or full-network).
    Coco(CocoArgs),
}

/// Arguments of `rtb train coco`.
#[derive(Debug, clap::Args)]
pub struct CocoArgs {
    /// The run config (rtb_coco::CocoConfig as JSON: a config.json of another run, or one
    /// written by hand); the flags below override its fields.
    #[arg(long, value_name = "JSON")]
    pub config: PathBuf,
    /// The run directory (config.json, checkpoints/, metrics.jsonl; later metrics.json).
    #[arg(long, value_name = "RUN_DIR")]
    pub out: PathBuf,
    /// The dataset root (train2017/, val2017/, annotations/).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Backbone weights (any layout rtb-models reads).
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// fixed or full.
    #[arg(long)]
    pub regime: Option<Regime>,
    /// Micro-batches per step (gradient accumulation; must divide the batch size).
    #[arg(long)]
    pub accumulate: Option<usize>,
    /// Stop after this many iterations (the schedule keeps its length).
    #[arg(long)]
    pub max_iters: Option<usize>,
    /// Data-loader threads.
    #[arg(long)]
    pub workers: Option<usize>,
    /// cpu, cuda or cuda:N.
    #[arg(long)]
    pub device: Option<DeviceChoice>,
}

fn run_coco(args: &CocoArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let mut cfg: rtb_coco::CocoConfig = serde_json::from_str(&text)
        .with_context(|| format!("{}: not an rtb_coco::CocoConfig", args.config.display()))?;
    if let Some(data) = &args.data {
        cfg.data_dir = data.clone();
    }
    if let Some(weights) = &args.weights {
        cfg.weights = Some(weights.clone());
    }
    if let Some(regime) = args.regime {
        cfg.regime = regime;
    }
    if let Some(accumulate) = args.accumulate {
        cfg.accumulate = accumulate;
    }
    if let Some(max) = args.max_iters {
        cfg.engine.max_iters = Some(max);
    }
    if let Some(workers) = args.workers {
        cfg.workers = workers;
    }
    if let Some(device) = args.device {
        cfg.device = device;
    }
    let mut renderer = Renderer::default();
    let summary = rtb_coco::train(&cfg, &args.out, &mut renderer)?;
    println!(
        "trained {} iterations into {}",
        summary.iterations,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `rtb train ade`.
#[derive(Debug, clap::Args)]
pub struct AdeArgs {
    /// The run config (rtb_ade::AdeConfig as JSON: a config.json of another run, or one
    /// written by hand); the flags below override its fields.
    #[arg(long, value_name = "JSON")]
    pub config: PathBuf,
    /// The run directory (config.json, checkpoints/, metrics.jsonl; later metrics.json).
    #[arg(long, value_name = "RUN_DIR")]
    pub out: PathBuf,
    /// The dataset root (images/, annotations/).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Backbone weights (any layout rtb-models reads).
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// fixed or full.
    #[arg(long)]
    pub regime: Option<Regime>,
    /// Stop after this many iterations (the schedule keeps its length).
    #[arg(long)]
    pub max_iters: Option<usize>,
    /// Data-loader threads.
    #[arg(long)]
    pub workers: Option<usize>,
    /// cpu, cuda or cuda:N.
    #[arg(long)]
    pub device: Option<DeviceChoice>,
}

fn run_ade(args: &AdeArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let mut cfg: rtb_ade::AdeConfig = serde_json::from_str(&text)
        .with_context(|| format!("{}: not an rtb_ade::AdeConfig", args.config.display()))?;
    if let Some(data) = &args.data {
        cfg.data_dir = data.clone();
    }
    if let Some(weights) = &args.weights {
        cfg.weights = Some(weights.clone());
    }
    if let Some(regime) = args.regime {
        cfg.regime = regime;
    }
    if let Some(max) = args.max_iters {
        cfg.engine.max_iters = Some(max);
    }
    if let Some(workers) = args.workers {
        cfg.workers = workers;
    }
    if let Some(device) = args.device {
        cfg.device = device;
    }
    let mut renderer = Renderer::default();
    let summary = rtb_ade::train(&cfg, &args.out, &mut renderer)?;
    println!(
        "trained {} iterations into {}",
        summary.iterations,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `rtb train cifar`.
#[derive(Debug, clap::Args)]
pub struct CifarArgs {
    /// A complete run config (rtb_cifar::CifarConfig as JSON, e.g. a config.json of another
    /// run); flags given as well override its fields.
    #[arg(long, value_name = "JSON")]
    pub config: Option<PathBuf>,
    /// The backbone: an architecture name (resnet50, resnet18, resnet_mini, resnet_tiny,
    /// swin_t, swin_t_dense, swin_mini, swin_tiny) or a JSON file with an rtb-models
    /// ArchConfig.
    #[arg(long, value_name = "ARCH")]
    pub backbone: Option<String>,
    /// Pretrained backbone weights (safetensors or PyTorch, any layout rtb-models reads; a
    /// classifier in them is dropped). Without it the backbone starts from a seeded random
    /// init.
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// fixed: frozen backbone, linear head only; full: every weight trains.
    #[arg(long)]
    pub regime: Option<Regime>,
    /// The CIFAR-10 binary folder (data_batch_1..5.bin, test_batch.bin, batches.meta.txt, or
    /// their parent holding cifar-10-batches-bin/).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Download the official archive into --data first when the files are missing.
    #[arg(long)]
    pub download: bool,
    /// Archive URL for --download (default: the official one).
    #[arg(long, value_name = "URL", requires = "download")]
    pub data_url: Option<String>,
    /// Pinned sha256 of the archive at --data-url.
    #[arg(long, value_name = "HEX", requires = "data_url")]
    pub data_sha256: Option<String>,
    /// The run directory (config.json, checkpoints/, metrics.jsonl; later metrics.json).
    #[arg(long, value_name = "RUN_DIR")]
    pub out: PathBuf,
    /// Epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many iterations (the schedule still spans every epoch).
    #[arg(long)]
    pub max_iters: Option<usize>,
    /// Training batch size.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Base learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// SGD momentum.
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Weight decay.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Learning-rate decay: cosine (per iteration) or step (×0.1 at --milestones epochs).
    #[arg(long, value_parser = ["cosine", "step", "fixed"])]
    pub schedule: Option<String>,
    /// Epochs (0-based) at which the step schedule multiplies the rate by 0.1.
    #[arg(long, value_delimiter = ',')]
    pub milestones: Vec<usize>,
    /// Linear warmup iterations.
    #[arg(long)]
    pub warmup_iters: Option<usize>,
    /// Side the 32×32 images are upsampled to (224 in the paper).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// No random crop / flip.
    #[arg(long)]
    pub no_augment: bool,
    /// The run seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// cpu, cuda or cuda:N.
    #[arg(long)]
    pub device: Option<DeviceChoice>,
    /// f32, or bf16 (CUDA only).
    #[arg(long)]
    pub precision: Option<Precision>,
    /// Data-loader threads.
    #[arg(long)]
    pub workers: Option<usize>,
    /// The preset the run belongs to (first level of the results store).
    #[arg(long)]
    pub preset: Option<String>,
    /// The backbone's name in the results store (default: the architecture name).
    #[arg(long)]
    pub name: Option<String>,
}

/// Resolves ARCH: a registered name, or a JSON file holding an ArchConfig. Returns the
/// config and a display name (the name, or the file's stem).
pub fn resolve_arch(arch: &str) -> anyhow::Result<(ArchConfig, String)> {
    let config = ArchConfig::resolve(arch)?;
    let name = if ArchConfig::from_name(arch).is_some() {
        arch.to_string()
    } else {
        Path::new(arch)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "custom".into())
    };
    Ok((config, name))
}

fn cifar_config(args: &CifarArgs) -> anyhow::Result<CifarConfig> {
    let mut cfg = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str::<CifarConfig>(&text)
                .with_context(|| format!("{}: not a CIFAR run config", path.display()))?
        }
        None => {
            let backbone = args
                .backbone
                .as_deref()
                .context("give --backbone ARCH (or --config FILE)")?;
            let regime = args
                .regime
                .context("give --regime fixed|full (or --config FILE)")?;
            let data = args
                .data
                .clone()
                .context("give --data DIR (or --config FILE)")?;
            let (arch, name) = resolve_arch(backbone)?;
            CifarConfig::new(arch, &name, args.weights.clone(), regime, data)
        }
    };
    if args.config.is_some() {
        if let Some(backbone) = &args.backbone {
            let (arch, name) = resolve_arch(backbone)?;
            cfg.arch = arch;
            cfg.backbone_name = name;
        }
        if let Some(weights) = &args.weights {
            cfg.weights = Some(weights.clone());
        }
        if let Some(regime) = args.regime {
            cfg.regime = regime;
        }
        if let Some(data) = &args.data {
            cfg.data_dir = data.clone();
        }
    }
    let engine = &mut cfg.engine;
    if let Some(epochs) = args.epochs {
        engine.epochs = epochs;
    }
    if args.max_iters.is_some() {
        engine.max_iters = args.max_iters;
    }
    if let Some(lr) = args.lr {
        engine.optimizer = engine.optimizer.clone().with_lr(lr);
    }
    if args.momentum.is_some() || args.weight_decay.is_some() {
        match &mut engine.optimizer {
            OptimizerConfig::Sgd {
                momentum,
                weight_decay,
                ..
            } => {
                *momentum = args.momentum.unwrap_or(*momentum);
                *weight_decay = args.weight_decay.unwrap_or(*weight_decay);
            }
            OptimizerConfig::Adamw { weight_decay, .. } => {
                if args.momentum.is_some() {
                    anyhow::bail!("--momentum applies to SGD; this config uses AdamW");
                }
                *weight_decay = args.weight_decay.unwrap_or(*weight_decay);
            }
        }
    }
    match args.schedule.as_deref() {
        Some("cosine") => engine.schedule.decay = DecayConfig::Cosine { min_lr: 0.0 },
        Some("fixed") => engine.schedule.decay = DecayConfig::Fixed,
        Some(_) => {
            if args.milestones.is_empty() {
                anyhow::bail!("--schedule step needs --milestones E1,E2,…");
            }
            engine.schedule.decay = DecayConfig::Step {
                milestones: args.milestones.clone(),
                gamma: 0.1,
            };
        }
        None => {}
    }
    if let Some(warmup) = args.warmup_iters {
        engine.schedule.warmup_iters = warmup;
    }
    if let Some(batch) = args.batch {
        cfg.batch_size = batch;
    }
    if let Some(size) = args.image_size {
        cfg.image_size = size;
    }
    if args.no_augment {
        cfg.augment = false;
    }
    if let Some(seed) = args.seed {
        cfg.seed = seed;
    }
    if let Some(device) = args.device {
        cfg.device = device;
    }
    if let Some(precision) = args.precision {
        cfg.precision = precision;
    }
    if let Some(workers) = args.workers {
        cfg.workers = workers;
    }
    if let Some(preset) = &args.preset {
        cfg.preset = preset.clone();
    }
    if let Some(name) = &args.name {
        cfg.backbone_name = name.clone();
    }
    Ok(cfg)
}

/// Draws the engine's events: a bar with loss, lr and images/s on a terminal; plain log lines
/// (at most one every 10 s, and one per epoch) otherwise.
pub struct Renderer {
    terminal: bool,
    bar: Option<ProgressBar>,
    phase: Option<(String, ProgressBar)>,
    last_line: Instant,
}

impl Default for Renderer {
    fn default() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            bar: None,
            phase: None,
            last_line: Instant::now(),
        }
    }
}

impl Renderer {
    fn finish_phase(&mut self) {
        if let Some((_, bar)) = self.phase.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Renderer {
    fn on_event(&mut self, event: &Event) {
        match event {
            Event::TrainingStarted {
                total_iterations,
                start_iteration,
                resumed_from,
                ..
            } => {
                self.finish_phase();
                if let Some(path) = resumed_from {
                    tracing::info!("resuming from {}", path.display());
                }
                tracing::info!("training {start_iteration}/{total_iterations} iterations");
                if self.terminal {
                    let bar = ProgressBar::new(*total_iterations as u64);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "train [{elapsed_precise}] {wide_bar} {pos}/{len} (ETA {eta}) {msg}",
                        )
                        .expect("the template is valid"),
                    );
                    bar.set_position(*start_iteration as u64);
                    self.bar = Some(bar);
                }
            }
            Event::Step(step) => {
                let message = format!(
                    "loss {:.4} lr {:.2e} {:.1} img/s",
                    step.loss, step.lr, step.items_per_second
                );
                if let Some(bar) = &self.bar {
                    bar.set_position(step.iteration as u64);
                    bar.set_message(message);
                } else if self.last_line.elapsed() >= Duration::from_secs(10) {
                    tracing::info!(
                        "iteration {} epoch {}: {message}",
                        step.iteration,
                        step.epoch
                    );
                    self.last_line = Instant::now();
                }
            }
            Event::EpochFinished { epoch, mean_loss } => {
                let line = format!("epoch {} done, mean loss {mean_loss:.4}", epoch + 1);
                match &self.bar {
                    Some(bar) => bar.println(line),
                    None => tracing::info!("{line}"),
                }
            }
            Event::CheckpointSaved { path, .. } => {
                tracing::debug!("checkpoint {}", path.display());
            }
            Event::Evaluated { epoch, values } => {
                tracing::info!("evaluation after epoch {}: {values:?}", epoch + 1);
            }
            Event::TrainingFinished {
                iterations,
                seconds,
            } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                tracing::info!("trained to iteration {iterations} in {seconds:.1} s");
            }
            Event::Phase { name, done, total } => {
                if !self.terminal {
                    if *done == *total {
                        tracing::info!("{name}: done");
                    }
                    return;
                }
                if self
                    .phase
                    .as_ref()
                    .is_none_or(|(current, _)| current != name)
                {
                    self.finish_phase();
                    let bar = crate::progress::bar(*total as u64, name);
                    self.phase = Some((name.clone(), bar));
                }
                if let Some((_, bar)) = &self.phase {
                    bar.set_position(*done as u64);
                    if done == total {
                        self.finish_phase();
                    }
                }
            }
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args {
        Args::Cifar(args) => run_cifar(&args),
        Args::Ade(args) => run_ade(&args),
        Args::Coco(args) => run_coco(&args),
    }
}

fn run_cifar(args: &CifarArgs) -> anyhow::Result<ExitCode> {
    let cfg = cifar_config(args)?;
    if args.download && !rtb_cifar::Cifar10::is_present(&cfg.data_dir) {
        let source = match (&args.data_url, &args.data_sha256) {
            (Some(url), Some(sha256)) => rtb_cifar::ArchiveSource {
                url: url.clone(),
                sha256: sha256.clone(),
            },
            (Some(_), None) => anyhow::bail!("--data-url needs --data-sha256"),
            _ => rtb_cifar::ArchiveSource::default(),
        };
        let bar = crate::progress::bytes(None, "CIFAR-10");
        let dir = rtb_cifar::download(&source, &cfg.data_dir, &mut |p| {
            if let Some(total) = p.total {
                bar.set_length(total);
            }
            bar.set_position(p.done);
        })?;
        bar.finish_and_clear();
        tracing::info!("CIFAR-10 in {}", dir.display());
    }
    let mut renderer = Renderer::default();
    let summary = rtb_cifar::train(&cfg, &args.out, &mut renderer)?;
    println!(
        "trained {} iterations into {}{}",
        summary.iterations,
        args.out.display(),
        summary
            .last_checkpoint
            .map(|p| format!(" (checkpoint {})", p.display()))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}
