//! `rtb device-check`: is the device path right, and how fast is it?
//!
//! (a) every rtb-nn op on small shapes, CPU against the device (forward outputs and input
//! gradients); (b) one training step and one evaluation batch of each task's model (CIFAR
//! classifiers on ResNet-50 and Swin-T, Mask R-CNN, UperNet) with the loss, the gradient norm
//! and the evaluation outputs compared with the CPU's from the same seeded weights and
//! inputs; (c) training and evaluation throughput on the device. `--size small` uses tiny
//! models and shapes (seconds on a CPU: the run that CI and a machine without a GPU can do);
//! `--size paper` the paper's models and image sizes. The table goes to stdout, the whole
//! report to `--output` as JSON (gpu-check/run.sh puts PyTorch's numbers beside it).
//!
//! `--precision f32,bf16` runs (a) to (c) with f32 activations and again under bf16 autocast
//! (f32 weights, `rtb_nn::autocast`), each against the CPU's f32 with bounds for its type.
//!
//! With `--device cpu` the device is the CPU itself: the f32 comparisons are then trivially
//! equal, and the run proves that everything works up to the first CUDA call. candle's CPU
//! backend has no bf16 matrix product, so there `--precision f16` stands in for bf16: the
//! same autocast code paths with a narrower exponent range.

mod models;
mod ops;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::Init;
use rtb_train::DeviceChoice;
use serde::Serialize;

/// Model and shape sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// Tiny models and images: seconds on a CPU.
    Small,
    /// ResNet-50 / Swin-T at 224² (CIFAR), Mask R-CNN R-50 at 1333×800, UperNet R-50 at 512².
    Paper,
}

/// The activations' type of a run (the weights are f32 in each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckPrecision {
    /// f32 throughout.
    F32,
    /// bf16 autocast: what `precision = "bf16"` trains with (CUDA only).
    Bf16,
    /// f16 autocast: the CPU's stand-in for bf16 (same code paths).
    F16,
}

impl CheckPrecision {
    fn dtype(self) -> DType {
        match self {
            CheckPrecision::F32 => DType::F32,
            CheckPrecision::Bf16 => DType::BF16,
            CheckPrecision::F16 => DType::F16,
        }
    }
}

/// The parts of the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// (a) every rtb-nn op, CPU against the device.
    Ops,
    /// CIFAR-10 classifier on ResNet-50.
    CifarResnet50,
    /// CIFAR-10 classifier on Swin-T.
    CifarSwinT,
    /// Mask R-CNN (mmdet flavor) on ResNet-50.
    MaskRcnn,
    /// UperNet on ResNet-50.
    Upernet,
}

/// Arguments of `rtb device-check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The device checked against the CPU: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// small (tiny shapes, for a CPU) or paper (the paper's models and image sizes).
    #[arg(long, value_enum, default_value = "small")]
    pub size: Size,
    /// Where the JSON report goes.
    #[arg(long)]
    pub output: PathBuf,
    /// Only these parts (comma-separated); all by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Part>,
    /// Timed training steps (and evaluation batches) per model, after one untimed warm-up.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Batch size of the CIFAR throughput runs (default: 64 at paper size, 4 at small).
    #[arg(long)]
    pub cifar_batch: Option<usize>,
    /// Skip the CPU reference of the models (throughput only).
    #[arg(long)]
    pub no_reference: bool,
    /// The activations' types to run (comma-separated): f32, bf16 (autocast, CUDA only),
    /// f16 (autocast; bf16's stand-in on the CPU).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "f32")]
    pub precision: Vec<CheckPrecision>,
}

impl Args {
    /// The candle dtypes of `--precision`, in order, without repeats.
    fn precisions(&self) -> Vec<DType> {
        let mut out: Vec<DType> = Vec::new();
        for dtype in self.precision.iter().map(|p| p.dtype()) {
            if !out.contains(&dtype) {
                out.push(dtype);
            }
        }
        out
    }
}

/// One op's comparison.
#[derive(Debug, Serialize)]
pub struct OpResult {
    /// The op and its configuration.
    pub name: String,
    /// The dtype it ran in.
    pub dtype: String,
    /// The compared outputs and gradients.
    pub compared: Vec<String>,
    /// `max |device − cpu| / max(1, max |cpu|)` over every compared tensor.
    pub max_rel_diff: f64,
    /// The `max(1, max |cpu|)` of the worst tensor.
    pub scale: f64,
    /// The bound `max_rel_diff` must stay within.
    pub bound: f64,
    /// Whether it did.
    pub pass: bool,
    /// The error, if the op failed to run.
    pub error: Option<String>,
}

/// One model's training step, evaluation batch and throughput.
#[derive(Debug, Default, Serialize)]
pub struct ModelResult {
    /// The task and model.
    pub name: String,
    /// Input size `[height, width]`.
    pub image_size: [usize; 2],
    /// The activations' type on the device (f32, or bf16 / f16 autocast); the CPU runs f32.
    pub precision: String,
    /// Batch of the CPU comparison.
    pub reference_batch: usize,
    /// Training loss of one step on the CPU.
    pub cpu_loss: Option<f64>,
    /// Training loss of the same step on the device.
    pub device_loss: Option<f64>,
    /// `|device − cpu| / max(1e-6, |cpu|)` of the loss.
    pub loss_rel_diff: Option<f64>,
    /// Global gradient norm on the CPU and on the device, and their relative difference.
    pub cpu_grad_norm: Option<f64>,
    /// See `cpu_grad_norm`.
    pub device_grad_norm: Option<f64>,
    /// See `cpu_grad_norm`.
    pub grad_norm_rel_diff: Option<f64>,
    /// Cosine between the device's gradients (all variables, concatenated) and the CPU's.
    pub grad_cosine: Option<f64>,
    /// The smallest cosine of one variable's gradient (reported, not bounded: BatchNorm over
    /// few values can turn single small tensors under autocast).
    pub grad_min_cosine: Option<f64>,
    /// `max |device − cpu| / max(1, max |cpu|)` of the evaluation batch's outputs.
    pub eval_rel_diff: Option<f64>,
    /// The bound on the loss difference.
    pub loss_bound: f64,
    /// The bound on the gradient-norm difference.
    pub grad_norm_bound: f64,
    /// The bound on the evaluation outputs' difference.
    pub eval_bound: f64,
    /// The smallest allowed `grad_cosine`.
    pub cosine_bound: f64,
    /// Batch of the throughput runs.
    pub throughput_batch: usize,
    /// Images per second of training steps (forward, backward, SGD update) on the device.
    pub train_images_per_s: Option<f64>,
    /// Images per second of evaluation batches on the device.
    pub eval_images_per_s: Option<f64>,
    /// Whether the comparisons stayed within their bounds (true when there was no reference).
    pub pass: bool,
    /// The error, if the model failed to run.
    pub error: Option<String>,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// rtb's version.
    pub rtb_version: String,
    /// The checked device.
    pub device: String,
    /// small or paper.
    pub size: Size,
    /// Part (a).
    pub ops: Vec<OpResult>,
    /// Parts (b) and (c).
    pub models: Vec<ModelResult>,
    /// Every comparison within its bound and nothing failed.
    pub pass: bool,
}

/// A standard-normal tensor from a seed, drawn on the host (the same values on every device).
pub(crate) fn randn(dims: &[usize], seed: u64, device: &Device) -> candle_core::Result<Tensor> {
    rtb_models::init::draw(
        Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
        &dims.into(),
        seed,
        DType::F32,
        device,
    )
}

/// `max |x|` (as f64).
pub(crate) fn max_abs(x: &Tensor) -> candle_core::Result<f64> {
    x.abs()?
        .flatten_all()?
        .max(0)?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()
}

/// `max |a − b|`; NaN where either has a NaN.
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> candle_core::Result<f64> {
    if a.elem_count() == 0 {
        return Ok(0.0);
    }
    let d = (a - b)?.abs()?.flatten_all()?;
    let values = d.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    Ok(values.into_iter().fold(0f64, |acc, v| {
        if v.is_nan() || acc.is_nan() {
            f64::NAN
        } else {
            acc.max(v)
        }
    }))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let device = args
        .device
        .device()
        .with_context(|| format!("cannot open {}", args.device))?;
    let parts = if args.only.is_empty() {
        vec![
            Part::Ops,
            Part::CifarResnet50,
            Part::CifarSwinT,
            Part::MaskRcnn,
            Part::Upernet,
        ]
    } else {
        args.only.clone()
    };
    if !device.is_cuda() && args.precision.contains(&CheckPrecision::Bf16) {
        anyhow::bail!(
            "bf16 needs a CUDA device (candle's CPU backend has no bf16 matrix product); \
             --precision f16 checks the same autocast paths on the CPU"
        );
    }
    let mut report = Report {
        rtb_version: env!("CARGO_PKG_VERSION").to_string(),
        device: args.device.to_string(),
        size: args.size,
        ops: Vec::new(),
        models: Vec::new(),
        pass: true,
    };
    for part in parts {
        tracing::info!("device check: {part:?}");
        match part {
            Part::Ops => {
                for dtype in args.precisions() {
                    report.ops.extend(ops::run(&device, dtype));
                }
            }
            model => report.models.extend(models::run(model, &args, &device)),
        }
    }
    report.pass =
        report.ops.iter().all(|op| op.pass) && report.models.iter().all(|model| model.pass);
    print_table(&report);
    let json = serde_json::to_string_pretty(&report).context("cannot serialise the report")?;
    std::fs::write(&args.output, json)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    Ok(if report.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn opt(value: Option<f64>, digits: usize) -> String {
    match value {
        Some(v) if digits == 0 => format!("{v:.1}"),
        Some(v) => format!("{v:.digits$e}"),
        None => "-".to_string(),
    }
}

fn print_table(report: &Report) {
    println!(
        "device check on {} ({:?} sizes)",
        report.device, report.size
    );
    if !report.ops.is_empty() {
        println!(
            "\n{:<44} {:>5} {:>12} {:>8} {:>5}",
            "op", "type", "max rel diff", "bound", "ok"
        );
        for op in &report.ops {
            println!(
                "{:<44} {:>5} {:>12.2e} {:>8.0e} {:>5}",
                op.name,
                op.dtype,
                op.max_rel_diff,
                op.bound,
                if op.pass { "yes" } else { "NO" }
            );
            if let Some(err) = &op.error {
                println!("    error: {err}");
            }
        }
    }
    if !report.models.is_empty() {
        println!(
            "\n{:<24} {:>5} {:>10} {:>10} {:>9} {:>9} {:>8} {:>9} {:>6} {:>10} {:>10} {:>5}",
            "model",
            "type",
            "cpu loss",
            "dev loss",
            "loss rel",
            "grad rel",
            "grad cos",
            "eval rel",
            "batch",
            "train im/s",
            "eval im/s",
            "ok"
        );
        for m in &report.models {
            println!(
                "{:<24} {:>5} {:>10} {:>10} {:>9} {:>9} {:>8} {:>9} {:>6} {:>10} {:>10} {:>5}",
                m.name,
                m.precision,
                m.cpu_loss.map_or("-".into(), |v| format!("{v:.5}")),
                m.device_loss.map_or("-".into(), |v| format!("{v:.5}")),
                opt(m.loss_rel_diff, 1),
                opt(m.grad_norm_rel_diff, 1),
                m.grad_cosine.map_or("-".into(), |v| format!("{v:.5}")),
                opt(m.eval_rel_diff, 1),
                m.throughput_batch,
                opt(m.train_images_per_s, 0),
                opt(m.eval_images_per_s, 0),
                if m.pass { "yes" } else { "NO" }
            );
            if let Some(err) = &m.error {
                println!("    error: {err}");
            }
        }
    }
    println!("\n{}", if report.pass { "PASS" } else { "FAIL" });
}
