//! `rtb forward`: run a backbone on a batch stored in safetensors, for checking a port
//! against a reference implementation.
//!
//! The input file holds one f32 tensor `input` `[N, 3, H, W]`, already normalised. The output
//! file holds the tensors asked for with `--outputs` (default: `c2`..`c5`, and `logits` when
//! the weights carry a classifier; `pooled` on request), computed in eval mode without a
//! gradient graph. A Swin runs timm's window rule unless its config says otherwise.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use rtb_models::{ArchConfig, Mode};

use super::weights::{ArchArgs, save_atomically};

/// Arguments of `rtb forward`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub arch: ArchArgs,
    /// Weights (safetensors or PyTorch, any known layout). A classifier in the weights sets
    /// the number of classes; weights without one give no logits.
    #[arg(long)]
    pub weights: PathBuf,
    /// safetensors file with one f32 tensor `input` [N, 3, H, W].
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the outputs (safetensors).
    #[arg(long)]
    pub output: PathBuf,
    /// Comma-separated outputs: c2, c3, c4, c5, pooled, logits.
    #[arg(long, value_delimiter = ',')]
    pub outputs: Vec<String>,
}

const KNOWN: [&str; 6] = ["c2", "c3", "c4", "c5", "pooled", "logits"];

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Args {
        arch,
        weights,
        input: input_path,
        output,
        outputs,
    } = args;
    let arch = arch.resolve()?;
    let canonical = rtb_models::read_canonical(&arch, &weights, None)?;
    let arch: ArchConfig = arch.with_classifier_of(&canonical.tensors)?;
    let source = weights.display().to_string();
    let device = Device::Cpu;
    let model =
        rtb_models::from_state_dict(&arch, &source, canonical.tensors, DType::F32, &device)?;

    let inputs = candle_core::safetensors::load(&input_path, &device)
        .with_context(|| format!("reading {}", input_path.display()))?;
    let input = inputs.get("input").with_context(|| {
        format!(
            "{} has no tensor named 'input' (found: {:?})",
            input_path.display(),
            inputs.keys().collect::<Vec<_>>()
        )
    })?;
    if input.dtype() != DType::F32 || input.rank() != 4 {
        anyhow::bail!(
            "{}: 'input' must be f32 [N, 3, H, W], got {:?} {:?}",
            input_path.display(),
            input.dtype(),
            input.dims()
        );
    }

    let wanted: Vec<String> = if outputs.is_empty() {
        let mut all: Vec<String> = ["c2", "c3", "c4", "c5"].map(String::from).to_vec();
        if model.num_classes().is_some() {
            all.push("logits".into());
        }
        all
    } else {
        outputs.iter().map(|s| s.trim().to_string()).collect()
    };
    if let Some(bad) = wanted.iter().find(|w| !KNOWN.contains(&w.as_str())) {
        anyhow::bail!("unknown output {bad:?}; known: {}", KNOWN.join(", "));
    }

    let started = std::time::Instant::now();
    let out = model.forward(input, Mode::Inference)?;
    tracing::info!("forward of {:?} in {:.2?}", input.dims(), started.elapsed());
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for name in &wanted {
        let tensor = match name.as_str() {
            "c2" => out.features.levels[0].clone(),
            "c3" => out.features.levels[1].clone(),
            "c4" => out.features.levels[2].clone(),
            "c5" => out.features.levels[3].clone(),
            "pooled" => out.pooled.clone().with_context(|| {
                format!(
                    "{}: this configuration has no pooled features",
                    model.arch_name()
                )
            })?,
            _ => out
                .logits
                .clone()
                .with_context(|| format!("{source} has no classifier, so there are no logits"))?,
        };
        tensors.insert(name.clone(), tensor.contiguous()?);
    }
    save_atomically(&tensors, &output)?;
    println!("wrote {} ({})", output.display(), wanted.join(", "));
    Ok(ExitCode::SUCCESS)
}
