//! `rtb weights`: look inside weight files and convert them to the canonical layout.
//!
//! - `rtb weights inspect FILE`: container format, where the state dict sat, which known key
//!   layout it is, then every key with its shape and dtype.
//! - `rtb weights import --arch NAME --from FILE --to OUT.safetensors`: reads safetensors or a
//!   PyTorch checkpoint (zip or legacy format, any nesting, `module.` prefixes), converts the
//!   keys to the canonical (timm ≥ 0.9) layout, checks them against the architecture (every
//!   missing, unexpected or mismatched key is reported) and writes safetensors. A Mask R-CNN
//!   checkpoint (torchvision's `maskrcnn_resnet50_fpn` state dict or mmdetection's) is
//!   recognised by its RoI-head keys: its backbone is converted and checked the same way,
//!   and the file written keeps the detector's neck and heads under their flavor's keys, so
//!   `rtb detect --weights` reads it back.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use candle_core::Tensor;
use rtb_models::ArchConfig;
use rtb_models::weights::{self, Nesting};

/// Arguments of `rtb weights`.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// List the tensors of a weights file and recognise its key layout.
    Inspect(InspectArgs),
    /// Convert a weights file to canonical safetensors for an architecture.
    Import(ImportArgs),
    /// Download a backbone of the weights manifest (hub or URL, checksum-checked) and
    /// optionally import it.
    Fetch(crate::cmd::weights_fetch::FetchArgs),
}

/// Arguments of `rtb weights inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A .safetensors, .pth, .pt or .pth.tar file.
    pub file: PathBuf,
    /// Top-level key of a PyTorch checkpoint that holds the state dict (default: the top
    /// level, else state_dict, model_state_dict, model).
    #[arg(long)]
    pub key: Option<String>,
}

/// How the architecture is chosen (shared with `rtb forward`).
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct ArchArgs {
    /// A registered architecture (`rtb arch list`: resnet50, swin_t, convnext_t, …).
    #[arg(long)]
    pub arch: Option<String>,
    /// A JSON file with an architecture config instead of a name, e.g.
    /// {"family": "resnet", "block": "bottleneck", "depths": [1, 2, 1, 1], "stem_width": 8,
    /// "widths": [4, 8, 8, 16], "in_channels": 3, "num_classes": 5} (rtb-models'
    /// `ArchConfig`; every field spelled out).
    #[arg(long, value_name = "JSON")]
    pub config: Option<PathBuf>,
}

impl ArchArgs {
    /// The architecture these arguments name.
    pub fn resolve(&self) -> anyhow::Result<ArchConfig> {
        match (&self.arch, &self.config) {
            (Some(name), _) => ArchConfig::from_name(name).with_context(|| {
                format!(
                    "unknown --arch {name:?}; registered: {}",
                    rtb_models::registry::preset_names().join(", ")
                )
            }),
            (None, Some(path)) => Ok(ArchConfig::resolve(&path.display().to_string())?),
            (None, None) => anyhow::bail!("give --arch NAME or --config FILE.json"),
        }
    }
}

/// Arguments of `rtb weights import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub arch: ArchArgs,
    /// The weights to convert (safetensors or PyTorch, any known layout).
    #[arg(long = "from", value_name = "FILE")]
    pub from: PathBuf,
    /// Where to write canonical safetensors.
    #[arg(long = "to", value_name = "FILE")]
    pub to: PathBuf,
    /// Top-level key of a PyTorch checkpoint that holds the state dict.
    #[arg(long)]
    pub key: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args {
        Args::Inspect(args) => inspect(&args),
        Args::Import(args) => import(&args),
        Args::Fetch(args) => crate::cmd::weights_fetch::run(&args),
    }
}

fn dims_text(tensor: &Tensor) -> String {
    let dims: Vec<String> = tensor.dims().iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

fn inspect(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let file = weights::read_weights(&args.file, args.key.as_deref())?;
    let layout = weights::detect_layout(file.tensors.iter().map(|(k, _)| k.as_str()));
    let params: usize = file.tensors.iter().map(|(_, t)| t.elem_count()).sum();
    println!("file: {}", args.file.display());
    println!("format: {}", file.format);
    match &file.nesting {
        Nesting::TopLevel => println!("state dict: top level"),
        Nesting::Key(key) => println!("state dict: under {key:?}"),
    }
    let prefixed =
        !file.tensors.is_empty() && file.tensors.iter().all(|(k, _)| k.starts_with("module."));
    if prefixed {
        println!("prefix: module. (DataParallel; stripped on import)");
    }
    match layout {
        Some(layout) => println!("layout: {layout}"),
        None => println!("layout: unknown"),
    }
    println!("tensors: {} ({params} elements)", file.tensors.len());
    let width = file.tensors.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, tensor) in &file.tensors {
        println!(
            "  {key:<width$}  {:<20} {:?}",
            dims_text(tensor),
            tensor.dtype()
        );
    }
    for (key, dtype) in &file.skipped {
        println!("  {key:<width$}  (skipped: dtype {dtype} has no candle equivalent)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `path` through a temporary file in the same folder, so a partial file is never
/// mistaken for a finished one.
pub fn save_atomically(
    tensors: &std::collections::HashMap<String, Tensor>,
    path: &Path,
) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    candle_core::safetensors::save(tensors, &tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

fn import(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let arch = args.arch.resolve()?;
    let file = weights::read_weights(&args.from, args.key.as_deref())?;
    let is_detector = file.tensors.iter().any(|(k, _)| {
        let k = k.strip_prefix("module.").unwrap_or(k);
        k.starts_with("roi_heads.") || k.starts_with("roi_head.")
    });
    if is_detector {
        return import_detector(args, &arch.with_num_classes(None)?, file.tensors);
    }
    let source = args.from.display().to_string();
    let canonical = rtb_models::canonical_for(&arch, &source, file.tensors)?;
    rtb_models::check_state_dict(&arch, &source, &canonical.tensors)?;
    tracing::info!(
        "{}: {} tensors in layout '{}' ({} recomputed buffers dropped)",
        source,
        canonical.tensors.len(),
        canonical.layout,
        canonical.dropped.len()
    );
    let tensors: std::collections::HashMap<String, Tensor> =
        canonical.tensors.into_iter().collect();
    save_atomically(&tensors, &args.to)?;
    println!(
        "wrote {} ({} tensors, canonical layout)",
        args.to.display(),
        tensors.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `rtb weights import` of a Mask R-CNN checkpoint: the backbone in the canonical layout
/// under the flavor's backbone prefix, the neck and heads as they were.
fn import_detector(
    args: &ImportArgs,
    arch: &ArchConfig,
    tensors: Vec<(String, Tensor)>,
) -> anyhow::Result<ExitCode> {
    let source = args.from.display().to_string();
    let detector = rtb_detection::import::import_detector(tensors)
        .with_context(|| format!("importing {source}"))?;
    let cfg = rtb_detection::import::detector_config(&detector)
        .with_context(|| format!("reading the detector of {source}"))?;
    rtb_models::check_state_dict(arch, &source, &detector.backbone)?;
    let prefix = cfg.backbone_prefix();
    let mut out: std::collections::HashMap<String, Tensor> = detector
        .backbone
        .iter()
        .map(|(k, t)| (format!("{prefix}.{k}"), t.clone()))
        .collect();
    out.extend(detector.heads.clone());
    save_atomically(&out, &args.to)?;
    println!(
        "wrote {} ({:?} Mask R-CNN, {} classes, FPN {}, box head {}, mask head {}; backbone in the canonical layout)",
        args.to.display(),
        detector.flavor,
        cfg.num_classes,
        cfg.fpn_channels,
        cfg.box_representation,
        cfg.mask_conv_channels
    );
    Ok(ExitCode::SUCCESS)
}
