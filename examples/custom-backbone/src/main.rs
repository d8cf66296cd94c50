//! Swapping in your own backbone, from outside rtb's crates.
//!
//! This program depends on rtb's libraries and changes none of them. It
//!
//! 1. defines a small convolutional backbone (`TinyConv`: four strided 3×3 convolutions with
//!    ReLU, C2..C5 at strides 4–32, global average pooling) and implements rtb-models'
//!    [`Backbone`] for it;
//! 2. describes it to the registry ([`Architecture`]: a family name, a serialisable config,
//!    a preset, its weight layout and its cost) and [`registry::register`]s it, after which
//!    `ArchConfig::from_name("tinyconv_small")` works everywhere a built-in name does;
//! 3. writes a small synthetic CIFAR-10 (rtb-synth), trains a full-network CIFAR cell on the
//!    new backbone and evaluates it clean and under the 15 benchmark corruptions (rtb-cifar,
//!    CIFAR-10-C parameters), into a results store;
//! 4. writes the report (rtb-report) of that store.
//!
//! Run it with `cargo run --release -p rtb-example-custom-backbone -- OUT_DIR`; the report
//! lands in `OUT_DIR/report/index.html`. Frost needs the ImageNet-C textures
//! (`cargo xtask assets`); without them frost is left out and the report's drops read n/a.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::Tensor;
use candle_nn::VarBuilder;
use rtb_corruption::Corruption;
use rtb_models::backbone::{BackboneOutput, Features, FreezeGroup, ParamKind, Parameter};
use rtb_models::registry::{self, Architecture, WeightLayout};
use rtb_models::{ArchConfig, Backbone, Freeze, Mode};
use rtb_nn::conv::{Conv2dConfig, conv2d};
use rtb_results::{CellId, Regime, Task};

/// The shape of a [`TinyConv`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TinyConvConfig {
    /// Channels of C2..C5.
    pub widths: [usize; 4],
}

/// Four strided 3×3 convolutions with ReLU; the first has stride 4 (a patchify stem), the
/// others stride 2, so the outputs are C2..C5 at strides 4, 8, 16, 32.
#[derive(Debug)]
pub struct TinyConv {
    cfg: TinyConvConfig,
    convs: Vec<(Tensor, Tensor)>,
    freeze: Freeze,
}

impl TinyConv {
    fn new(cfg: &TinyConvConfig, vb: &VarBuilder<'_>) -> rtb_models::Result<Self> {
        let mut convs = Vec::new();
        let mut cin = 3;
        for (stage, &width) in cfg.widths.iter().enumerate() {
            let vb = vb.pp(format!("stages.{stage}"));
            // Kaiming-uniform-like bounds come from the VarBuilder's default init.
            let weight = vb.get_with_hints(
                (width, cin, 3, 3),
                "weight",
                candle_nn::init::DEFAULT_KAIMING_NORMAL,
            )?;
            let bias = vb.get_with_hints(width, "bias", candle_nn::Init::Const(0.0))?;
            convs.push((weight, bias));
            cin = width;
        }
        Ok(Self {
            cfg: cfg.clone(),
            convs,
            freeze: Freeze::none(),
        })
    }
}

impl Backbone for TinyConv {
    fn arch_name(&self) -> String {
        "tinyconv".into()
    }

    fn out_channels(&self) -> [usize; 4] {
        self.cfg.widths
    }

    fn num_features(&self) -> Option<usize> {
        Some(self.cfg.widths[3])
    }

    fn num_classes(&self) -> Option<usize> {
        None
    }

    fn forward(&self, xs: &Tensor, mode: Mode) -> rtb_models::Result<BackboneOutput> {
        let mut levels = Vec::with_capacity(4);
        let mut xs = xs.clone();
        for (stage, (weight, bias)) in self.convs.iter().enumerate() {
            let stride = if stage == 0 { 4 } else { 2 };
            let cfg = Conv2dConfig::default().with_stride(stride).with_padding(1);
            xs = conv2d(&xs, weight, Some(bias), &cfg)?.relu()?;
            // Frozen stages (fixed-feature regime) and inference record no graph.
            let frozen = self.freeze.group_frozen(group_of(stage));
            if !mode.records_graph() || (mode.is_train() && frozen) {
                xs = xs.detach();
            }
            levels.push(xs.clone());
        }
        let pooled = xs.mean((2, 3))?;
        let levels: [Tensor; 4] = levels
            .try_into()
            .map_err(|_| candle_core::Error::Msg("four stages".into()))?;
        Ok(BackboneOutput {
            features: Features { levels },
            pooled: Some(pooled),
            logits: None,
        })
    }

    fn parameters(&self) -> Vec<Parameter> {
        self.convs
            .iter()
            .enumerate()
            .flat_map(|(stage, (weight, bias))| {
                [
                    Parameter {
                        name: format!("stages.{stage}.weight"),
                        tensor: weight.clone(),
                        kind: ParamKind::Weight,
                        group: group_of(stage),
                    },
                    Parameter {
                        name: format!("stages.{stage}.bias"),
                        tensor: bias.clone(),
                        kind: ParamKind::Bias,
                        group: group_of(stage),
                    },
                ]
            })
            .collect()
    }

    fn freeze(&self) -> Freeze {
        self.freeze
    }

    fn set_freeze(&mut self, freeze: Freeze) {
        self.freeze = freeze;
    }
}

/// The first convolution is the stem, the others stages 1..3 (mmdetection's numbering).
fn group_of(stage: usize) -> FreezeGroup {
    if stage == 0 {
        FreezeGroup::Stem
    } else {
        FreezeGroup::Stage(stage - 1)
    }
}

fn is_tinyconv(keys: &[&str]) -> bool {
    keys.iter().any(|k| k.starts_with("stages.0.weight"))
        && !keys.iter().any(|k| k.contains("blocks"))
}

/// The family as the registry sees it.
#[derive(Debug)]
pub struct TinyConvArch;

impl Architecture for TinyConvArch {
    type Config = TinyConvConfig;

    fn family(&self) -> &'static str {
        "tinyconv"
    }

    fn description(&self) -> &'static str {
        "four strided 3x3 convolutions (the custom-backbone example)"
    }

    fn presets(&self) -> Vec<(&'static str, TinyConvConfig)> {
        vec![(
            "tinyconv_small",
            TinyConvConfig {
                widths: [16, 32, 64, 64],
            },
        )]
    }

    fn build(
        &self,
        cfg: &TinyConvConfig,
        vb: &VarBuilder<'_>,
    ) -> rtb_models::Result<Box<dyn Backbone>> {
        Ok(Box::new(TinyConv::new(cfg, vb)?))
    }

    fn num_classes(&self, _: &TinyConvConfig) -> Option<usize> {
        None
    }

    fn with_num_classes(&self, cfg: &TinyConvConfig, _: Option<usize>) -> TinyConvConfig {
        // No classifier of its own: the tasks put their heads on the pooled features.
        cfg.clone()
    }

    fn classifier_key(&self) -> &'static str {
        "head.weight"
    }

    fn layouts(&self) -> Vec<WeightLayout> {
        vec![WeightLayout {
            name: "tinyconv",
            description: "TinyConv, this example's names",
            detect: is_tinyconv,
            convert: registry::identity,
        }]
    }

    fn forward_macs(&self, cfg: &TinyConvConfig, height: usize, width: usize) -> f64 {
        let mut macs = 0.0;
        let (mut h, mut w) = (height.div_ceil(4) as f64, width.div_ceil(4) as f64);
        let mut cin = 3;
        for (stage, &cout) in cfg.widths.iter().enumerate() {
            if stage > 0 {
                (h, w) = ((h / 2.0).ceil(), (w / 2.0).ceil());
            }
            macs += (9 * cin * cout) as f64 * h * w;
            cin = cout;
        }
        macs
    }
}

const PRESET: &str = "custom-example";
const BACKBONE: &str = "tinyconv";

/// Everything the example does, into `out`; returns the cell's run directory.
fn run(out: &Path) -> anyhow::Result<PathBuf> {
    registry::register(TinyConvArch)?;
    let arch = ArchConfig::from_name("tinyconv_small").context("the preset was registered")?;
    println!(
        "registered {} ({:.1} MMACs at 32x32)",
        arch,
        arch.forward_macs(32, 32)? / 1e6
    );

    // A small synthetic CIFAR-10 in the binary format.
    let data = out.join("data");
    let mut synth = rtb_synth::SynthConfig::tiny().with_seed(3);
    synth.cifar.train = 1000;
    synth.cifar.test = 200;
    rtb_synth::write_cifar(&synth, &data)?;

    // One full-network cell on the new backbone, evaluated clean and corrupted.
    let runs = out.join("runs");
    let cell = CellId::new(PRESET, BACKBONE, Task::Cifar10, Regime::Full)?;
    let run_dir = cell.dir(&runs);
    let mut cfg = rtb_cifar::CifarConfig::new(arch, BACKBONE, None, Regime::Full, data);
    cfg.preset = PRESET.into();
    cfg.image_size = 32;
    cfg.batch_size = 32;
    cfg.engine.epochs = 3;
    cfg.engine.optimizer = rtb_train::OptimizerConfig::Sgd {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 5e-4,
        nesterov: false,
    };
    let frost_dir = rtb_fetch::frost_dir().filter(|dir| dir.join("frost1.png").is_file());
    cfg.eval.corruptions = Corruption::BENCHMARK
        .iter()
        .copied()
        .filter(|c| *c != Corruption::Frost || frost_dir.is_some())
        .collect();
    cfg.eval.severities = vec![1, 2, 3, 4, 5];
    cfg.eval.frost_dir = frost_dir;
    let mut observer = rtb_train::NullObserver;
    rtb_cifar::train(&cfg, &run_dir, &mut observer)?;
    let metrics = rtb_cifar::evaluate(
        &run_dir,
        &rtb_cifar::EvalOverrides::default(),
        &mut observer,
    )?;
    println!(
        "clean top-1 {:.1} %; drop {}",
        100.0 * metrics.primary.clean,
        metrics
            .primary
            .robustness()
            .map_or("n/a (frost textures missing)".into(), |r| format!(
                "{:.1} %",
                r.drop_percent
            ))
    );

    // The report of the store.
    let report = rtb_report::Report::load(&runs, PRESET)?;
    let files = report.write(&out.join("report"))?;
    for file in files {
        println!("{}", file.display());
    }
    Ok(run_dir)
}

fn main() -> anyhow::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: custom-backbone OUT_DIR")?;
    run(&out)?;
    Ok(())
}
