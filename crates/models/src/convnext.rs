//! ConvNeXt (Liu et al., "A ConvNet for the 2020s", CVPR 2022), equal to timm 1.0's `ConvNeXt`
//! with `conv_mlp=False` (`convnext_tiny.fb_in1k` and friends).
//!
//! Keys are timm's: `stem.{0,1}` (4×4 stride-4 convolution, channels-first LayerNorm),
//! `stages.{i}.downsample.{0,1}` for stages 1..3 (channels-first LayerNorm, 2×2 stride-2
//! convolution; stage 0 has none), `stages.{i}.blocks.{j}.{conv_dw, norm, mlp.fc1, mlp.fc2,
//! gamma}`, `head.norm`, `head.fc`; the dense-task output norms are `norm0`..`norm3`
//! (mmdetection / mmsegmentation / mmpretrain's names, the same convention as
//! [`crate::swin`]). Other layouts are converted by [`crate::weights::convnext`].
//!
//! A block, as in timm: 7×7 depthwise convolution (with bias, padding 3) → permute to
//! `[B, H, W, C]` → LayerNorm over C → Linear(C → 4C) → exact GELU → Linear(4C → C) → times the
//! per-channel layer scale `gamma` → permute back → DropPath → plus the input. The classifier
//! pools first: global average → LayerNorm (`head.norm`) → Linear (`head.fc`). Every LayerNorm
//! has eps 1e-6 (timm's `LayerNorm` / `LayerNorm2d` default and the original release's).
//! Stochastic depth rises linearly from 0 to `drop_path_rate` over all blocks
//! (`torch.linspace(0, rate, sum(depths))`).
//!
//! Freezing ([`Freeze`]): the stem is [`FreezeGroup::Stem`], stage `i` with the downsampling
//! that opens it is `Stage(i)`, so `frozen_stages = Some(k)` freezes what mmpretrain's ConvNeXt
//! freezes for `frozen_stages = k` (its `downsample_layers[i]` and `stages[i]` for `i < k`,
//! `downsample_layers[0]` being the stem). The output norm `norm{i}` is frozen with stage `i`
//! as in [`crate::swin`]; mmpretrain leaves it trainable. `head.norm` and `head.fc` are
//! `Head`.
//!
//! Parameters created by a `VarBuilder` (training from scratch) follow timm's init: N(0, 0.02²)
//! for convolutions and linears (timm truncates at ±2, i.e. ±100σ: the same in practice), zero
//! biases, unit / zero norms, `gamma` = `layer_scale_init`.

use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};
use rtb_nn::conv::Conv2dConfig;
use rtb_nn::ops::activation::gelu;
use rtb_nn::ops::drop_path::DropPath;

use crate::backbone::{
    Backbone, BackboneOutput, Features, Freeze, FreezeGroup, Mode, ParamKind, Parameter, PartCtx,
};
use crate::error::{ModelError, Result, config_error};
use crate::layers::{Conv, Linear, LinearInit, Ln, push};
use crate::weights::convnext::ConvNeXtLayout;

/// Epsilon of every LayerNorm of ConvNeXt (timm and the original release).
pub const LN_EPS: f64 = 1e-6;

const MODEL: &str = "ConvNeXt";

/// timm's init of convolution and linear weights.
const WEIGHT_INIT: Init = Init::Randn {
    mean: 0.0,
    stdev: 0.02,
};

/// The shape of a ConvNeXt.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvNeXtConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Side and stride of the stem's patchify convolution.
    pub patch_size: usize,
    /// Blocks per stage.
    pub depths: [usize; 4],
    /// Channels per stage (C2..C5).
    pub dims: [usize; 4],
    /// Side of the depthwise convolution of the blocks (odd; padded to keep the size).
    pub kernel_size: usize,
    /// Hidden width of the block MLPs over the stage width.
    pub mlp_ratio: f64,
    /// Layer scale: `Some(v)` gives every block a per-channel `gamma`, initialised to `v` when
    /// the `VarBuilder` creates it (timm: 1e-6); `None`: no layer scale (and no `gamma` key).
    pub layer_scale_init: Option<f64>,
    /// Stochastic depth, rising linearly from 0 to this over all blocks.
    pub drop_path_rate: f64,
    /// The pooled path: global average pool then the LayerNorm `head.norm`.
    pub head_norm: bool,
    /// Channels-first LayerNorms `norm0`..`norm3` on C2..C5 (mmdetection's dense outputs).
    pub out_norms: bool,
    /// Classes of the `head.fc` classifier (needs `head_norm`); `None`: no classifier.
    pub num_classes: Option<usize>,
}

impl ConvNeXtConfig {
    /// ConvNeXt-T for classification, as timm's `convnext_tiny` (28 M parameters).
    pub fn convnext_t() -> Self {
        Self {
            in_channels: 3,
            patch_size: 4,
            depths: [3, 3, 9, 3],
            dims: [96, 192, 384, 768],
            kernel_size: 7,
            mlp_ratio: 4.0,
            layer_scale_init: Some(1e-6),
            drop_path_rate: 0.0,
            head_norm: true,
            out_norms: false,
            num_classes: Some(1000),
        }
    }

    /// ConvNeXt-T as the mmdetection / mmsegmentation backbone: output norms, no head, the
    /// given drop-path rate (the published detection and segmentation configs use 0.4).
    pub fn convnext_t_dense(drop_path_rate: f64) -> Self {
        Self::convnext_t().into_dense(drop_path_rate)
    }

    /// A tiny ConvNeXt for tests (widths 8, 16, 16, 32, one or two blocks per stage, 5 classes).
    /// `tests/golden/make_golden_convnext.py` builds the same network in timm.
    pub fn tiny() -> Self {
        Self {
            in_channels: 3,
            patch_size: 4,
            depths: [1, 1, 2, 1],
            dims: [8, 16, 16, 32],
            kernel_size: 7,
            mlp_ratio: 4.0,
            layer_scale_init: Some(1e-6),
            drop_path_rate: 0.0,
            head_norm: true,
            out_norms: false,
            num_classes: Some(5),
        }
    }

    /// A small ConvNeXt for 64-pixel synthetic images that a CPU can pretrain (10 classes).
    pub fn mini() -> Self {
        Self {
            in_channels: 3,
            patch_size: 4,
            depths: [1, 1, 2, 1],
            dims: [24, 48, 96, 192],
            kernel_size: 7,
            mlp_ratio: 4.0,
            layer_scale_init: Some(1e-6),
            drop_path_rate: 0.1,
            head_norm: true,
            out_norms: false,
            num_classes: Some(10),
        }
    }

    /// The same backbone set up for dense tasks: output norms, no pooled path or classifier,
    /// the given drop-path rate.
    pub fn into_dense(mut self, drop_path_rate: f64) -> Self {
        self.head_norm = false;
        self.out_norms = true;
        self.num_classes = None;
        self.drop_path_rate = drop_path_rate;
        self
    }

    /// Channels of C2..C5.
    pub fn out_channels(&self) -> [usize; 4] {
        self.dims
    }

    /// The drop-path rate of every block, stage by stage (timm's linspace over all blocks).
    pub fn drop_path_rates(&self) -> Vec<f64> {
        let total: usize = self.depths.iter().sum();
        (0..total)
            .map(|unit| {
                if total > 1 {
                    self.drop_path_rate * unit as f64 / (total - 1) as f64
                } else {
                    0.0
                }
            })
            .collect()
    }

    fn validate(&self) -> Result<()> {
        if self.in_channels == 0 || self.patch_size == 0 {
            return Err(config_error(
                MODEL,
                "in_channels/patch_size",
                "must be positive",
            ));
        }
        if self.dims.contains(&0) {
            return Err(config_error(
                MODEL,
                "dims",
                format!("every stage needs channels, got {:?}", self.dims),
            ));
        }
        if self.depths.contains(&0) {
            return Err(config_error(
                MODEL,
                "depths",
                format!("every stage needs a block, got {:?}", self.depths),
            ));
        }
        if self.kernel_size.is_multiple_of(2) {
            return Err(config_error(
                MODEL,
                "kernel_size",
                format!("must be odd (same-size padding), got {}", self.kernel_size),
            ));
        }
        if !(self.mlp_ratio.is_finite() && self.mlp_ratio > 0.0) {
            return Err(config_error(MODEL, "mlp_ratio", "must be positive"));
        }
        if self
            .dims
            .iter()
            .any(|&d| (d as f64 * self.mlp_ratio) as usize == 0)
        {
            return Err(config_error(
                MODEL,
                "mlp_ratio",
                "gives an MLP without hidden units",
            ));
        }
        if self.layer_scale_init.is_some_and(|v| !v.is_finite()) {
            return Err(config_error(MODEL, "layer_scale_init", "must be finite"));
        }
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return Err(config_error(
                MODEL,
                "drop_path_rate",
                format!("must be in [0, 1), got {}", self.drop_path_rate),
            ));
        }
        if self.num_classes.is_some() && !self.head_norm {
            return Err(config_error(
                MODEL,
                "num_classes",
                "a classifier needs head_norm",
            ));
        }
        if self.num_classes == Some(0) {
            return Err(config_error(
                MODEL,
                "num_classes",
                "a classifier needs at least one class",
            ));
        }
        Ok(())
    }
}

/// One ConvNeXt block (`stages.{i}.blocks.{j}`).
#[derive(Debug, Clone)]
struct ConvNeXtBlock {
    conv_dw: Conv,
    norm: Ln,
    fc1: Linear,
    fc2: Linear,
    /// `(key, gamma)`.
    gamma: Option<(String, Tensor)>,
    drop_path: DropPath,
    /// Global block index: the DropPath draw's unit.
    unit: u64,
}

impl ConvNeXtBlock {
    fn new(
        cfg: &ConvNeXtConfig,
        dim: usize,
        rate: f64,
        unit: u64,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        let hidden = (dim as f64 * cfg.mlp_ratio) as usize;
        let gamma = match cfg.layer_scale_init {
            Some(value) => Some((
                vb.prefix(),
                vb.get_with_hints(dim, "gamma", Init::Const(value))?,
            )),
            None => None,
        };
        Ok(Self {
            conv_dw: Conv::new_with_init(
                dim,
                dim,
                cfg.kernel_size,
                Conv2dConfig::default()
                    .with_padding(cfg.kernel_size / 2)
                    .with_groups(dim),
                true,
                WEIGHT_INIT,
                &vb.pp("conv_dw"),
            )?,
            norm: Ln::new(dim, LN_EPS, &vb.pp("norm"))?,
            fc1: Linear::new(
                dim,
                hidden,
                true,
                LinearInit::Transformer,
                &vb.pp("mlp").pp("fc1"),
            )?,
            fc2: Linear::new(
                hidden,
                dim,
                true,
                LinearInit::Transformer,
                &vb.pp("mlp").pp("fc2"),
            )?,
            gamma,
            drop_path: DropPath::new(rate)?,
            unit,
        })
    }

    /// `xs` `[B, C, H, W]` → the same shape.
    fn forward(&self, xs: &Tensor, ctx: PartCtx, mode: Mode) -> Result<Tensor> {
        let ys = self.conv_dw.forward(xs)?;
        let ys = ys.permute((0, 2, 3, 1))?.contiguous()?;
        let ys = self.norm.forward(&ys)?;
        let ys = self.fc2.forward(&gelu(&self.fc1.forward(&ys)?)?)?;
        // Layer scale over the channels, still channels-last: a broadcast over the last dim.
        let ys = match &self.gamma {
            Some((_, gamma)) => ys.broadcast_mul(&rtb_nn::autocast::to_compute(gamma, &ys)?)?,
            None => ys,
        };
        let ys = ys.permute((0, 3, 1, 2))?.contiguous()?;
        let ys = if ctx.drop_path {
            self.drop_path
                .forward_train(&ys, mode.unit_seed(self.unit))?
        } else {
            ys
        };
        Ok(ctx.finish((xs + ys)?))
    }

    fn params(&self, group: FreezeGroup, out: &mut Vec<Parameter>) {
        self.conv_dw.params(group, out);
        self.norm.params(group, out);
        self.fc1.params(group, out);
        self.fc2.params(group, out);
        if let Some((prefix, gamma)) = &self.gamma {
            push(out, prefix, "gamma", gamma, ParamKind::LayerScale, group);
        }
    }
}

/// A stage's downsampling (`stages.{i}.downsample`): channels-first LayerNorm, 2×2 stride-2
/// convolution.
#[derive(Debug, Clone)]
struct Downsample {
    norm: Ln,
    conv: Conv,
}

#[derive(Debug, Clone)]
struct Stage {
    downsample: Option<Downsample>,
    blocks: Vec<ConvNeXtBlock>,
}

/// A ConvNeXt built from a `VarBuilder` whose paths are timm's keys.
#[derive(Debug, Clone)]
pub struct ConvNeXt {
    cfg: ConvNeXtConfig,
    stem_conv: Conv,
    stem_norm: Ln,
    stages: Vec<Stage>,
    out_norms: Option<Vec<Ln>>,
    head_norm: Option<Ln>,
    head_fc: Option<Linear>,
    freeze: Freeze,
}

impl ConvNeXt {
    /// Builds the network; `vb` supplies (or, from a `VarMap`, creates) every tensor.
    pub fn new(cfg: &ConvNeXtConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        cfg.validate()?;
        let stem_conv = Conv::new_with_init(
            cfg.in_channels,
            cfg.dims[0],
            cfg.patch_size,
            Conv2dConfig::default().with_stride(cfg.patch_size),
            true,
            WEIGHT_INIT,
            &vb.pp("stem").pp(0),
        )?;
        let stem_norm = Ln::new(cfg.dims[0], LN_EPS, &vb.pp("stem").pp(1))?;
        let rates = cfg.drop_path_rates();
        let mut unit = 0usize;
        let mut stages = Vec::with_capacity(4);
        for stage in 0..4 {
            let dim = cfg.dims[stage];
            let vb_stage = vb.pp("stages").pp(stage);
            // timm: stage 0 keeps the stem's stride and width, so it has no downsampling.
            let downsample = if stage > 0 {
                let vb_ds = vb_stage.pp("downsample");
                let prev = cfg.dims[stage - 1];
                Some(Downsample {
                    norm: Ln::new(prev, LN_EPS, &vb_ds.pp(0))?,
                    conv: Conv::new_with_init(
                        prev,
                        dim,
                        2,
                        Conv2dConfig::default().with_stride(2),
                        true,
                        WEIGHT_INIT,
                        &vb_ds.pp(1),
                    )?,
                })
            } else {
                None
            };
            let mut blocks = Vec::with_capacity(cfg.depths[stage]);
            for j in 0..cfg.depths[stage] {
                blocks.push(ConvNeXtBlock::new(
                    cfg,
                    dim,
                    rates[unit],
                    unit as u64,
                    &vb_stage.pp("blocks").pp(j),
                )?);
                unit += 1;
            }
            stages.push(Stage { downsample, blocks });
        }
        let out_norms = if cfg.out_norms {
            Some(
                (0..4)
                    .map(|i| Ln::new(cfg.dims[i], LN_EPS, &vb.pp(format!("norm{i}"))))
                    .collect::<Result<Vec<_>>>()?,
            )
        } else {
            None
        };
        let last = cfg.dims[3];
        let head_norm = if cfg.head_norm {
            Some(Ln::new(last, LN_EPS, &vb.pp("head").pp("norm"))?)
        } else {
            None
        };
        let head_fc = match cfg.num_classes {
            Some(classes) => Some(Linear::new(
                last,
                classes,
                true,
                LinearInit::Transformer,
                &vb.pp("head").pp("fc"),
            )?),
            None => None,
        };
        Ok(Self {
            cfg: cfg.clone(),
            stem_conv,
            stem_norm,
            stages,
            out_norms,
            head_norm,
            head_fc,
            freeze: Freeze::none(),
        })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &ConvNeXtConfig {
        &self.cfg
    }

    fn check_input(&self, xs: &Tensor) -> Result<()> {
        let divisor = self.size_divisor();
        let bad = |message: String| ModelError::Input {
            model: MODEL,
            shape: xs.dims().to_vec(),
            message,
        };
        match xs.dims() {
            &[_, c, h, w] => {
                if c != self.cfg.in_channels {
                    return Err(bad(format!("expected {} channels", self.cfg.in_channels)));
                }
                if h == 0 || w == 0 || h % divisor != 0 || w % divisor != 0 {
                    return Err(bad(format!(
                        "height and width must be positive multiples of {divisor} (pad the batch)"
                    )));
                }
                Ok(())
            }
            _ => Err(bad("expected [N, C, H, W]".into())),
        }
    }
}

impl Backbone for ConvNeXt {
    fn arch_name(&self) -> String {
        let c = &self.cfg;
        if c.dims == [96, 192, 384, 768] && c.depths == [3, 3, 9, 3] && c.patch_size == 4 {
            "convnext_t".into()
        } else {
            "convnext".into()
        }
    }

    fn out_channels(&self) -> [usize; 4] {
        self.cfg.out_channels()
    }

    fn size_divisor(&self) -> usize {
        self.cfg.patch_size * 8
    }

    fn num_features(&self) -> Option<usize> {
        self.head_norm.as_ref().map(|_| self.cfg.dims[3])
    }

    fn num_classes(&self) -> Option<usize> {
        self.cfg.num_classes
    }

    fn forward(&self, xs: &Tensor, mode: Mode) -> Result<BackboneOutput> {
        self.check_input(xs)?;
        let freeze = self.freeze;
        let stem = PartCtx::resolve(mode, &freeze, freeze.stem_frozen());
        let ys = self.stem_conv.forward(xs)?;
        let mut ys = stem.finish(self.stem_norm.forward_nchw(&ys)?);
        let mut levels = Vec::with_capacity(4);
        for (i, stage) in self.stages.iter().enumerate() {
            // mmpretrain's ConvNeXt freezes a stage together with the downsampling before it.
            let ctx = PartCtx::resolve(mode, &freeze, freeze.stage_frozen(i));
            if let Some(ds) = &stage.downsample {
                ys = ctx.finish(ds.conv.forward(&ds.norm.forward_nchw(&ys)?)?);
            }
            for block in &stage.blocks {
                ys = block.forward(&ys, ctx, mode)?;
            }
            levels.push(match &self.out_norms {
                Some(norms) => ctx.finish(norms[i].forward_nchw(&ys)?),
                None => ys.clone(),
            });
        }
        let head_ctx = PartCtx::resolve(mode, &freeze, freeze.freeze_head);
        let (pooled, logits) = match &self.head_norm {
            Some(norm) => {
                // timm's NormMlpClassifierHead: pool, then LayerNorm2d on [N, C, 1, 1], which
                // is a LayerNorm over C of the pooled [N, C].
                let pooled = head_ctx.finish(norm.forward(&ys.mean((2, 3))?)?);
                let logits = match &self.head_fc {
                    Some(fc) => Some(head_ctx.finish(fc.forward(&pooled)?)),
                    None => None,
                };
                (Some(pooled), logits)
            }
            None => (None, None),
        };
        let levels: [Tensor; 4] = levels
            .try_into()
            .map_err(|_| candle_core::Error::Msg("ConvNeXt: four stages".into()))?;
        Ok(BackboneOutput {
            features: Features { levels },
            pooled,
            logits,
        })
    }

    fn parameters(&self) -> Vec<Parameter> {
        let mut out = Vec::new();
        self.stem_conv.params(FreezeGroup::Stem, &mut out);
        self.stem_norm.params(FreezeGroup::Stem, &mut out);
        for (i, stage) in self.stages.iter().enumerate() {
            let group = FreezeGroup::Stage(i);
            if let Some(ds) = &stage.downsample {
                ds.norm.params(group, &mut out);
                ds.conv.params(group, &mut out);
            }
            for block in &stage.blocks {
                block.params(group, &mut out);
            }
        }
        if let Some(norms) = &self.out_norms {
            for (i, norm) in norms.iter().enumerate() {
                norm.params(FreezeGroup::Stage(i), &mut out);
            }
        }
        if let Some(norm) = &self.head_norm {
            norm.params(FreezeGroup::Head, &mut out);
        }
        if let Some(fc) = &self.head_fc {
            fc.params(FreezeGroup::Head, &mut out);
        }
        out
    }

    fn freeze(&self) -> Freeze {
        self.freeze
    }

    fn set_freeze(&mut self, freeze: Freeze) {
        self.freeze = freeze;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_path_rates_are_timms_linspace() {
        let cfg = ConvNeXtConfig {
            drop_path_rate: 0.4,
            ..ConvNeXtConfig::tiny()
        };
        let rates = cfg.drop_path_rates();
        assert_eq!(rates.len(), 5);
        assert_eq!(rates[0], 0.0);
        assert!((rates[2] - 0.2).abs() < 1e-12);
        assert!((rates[4] - 0.4).abs() < 1e-12);
    }

    #[test]
    fn bad_configs_are_errors() {
        let bad = [
            ConvNeXtConfig {
                kernel_size: 6,
                ..ConvNeXtConfig::tiny()
            },
            ConvNeXtConfig {
                depths: [1, 0, 1, 1],
                ..ConvNeXtConfig::tiny()
            },
            ConvNeXtConfig {
                head_norm: false,
                ..ConvNeXtConfig::tiny()
            },
            ConvNeXtConfig {
                drop_path_rate: 1.0,
                ..ConvNeXtConfig::tiny()
            },
        ];
        for cfg in bad {
            assert!(cfg.validate().is_err(), "{cfg:?}");
        }
        assert!(ConvNeXtConfig::convnext_t_dense(0.4).validate().is_ok());
        assert!(ConvNeXtConfig::mini().validate().is_ok());
    }
}

impl ConvNeXtConfig {
    /// Multiply-accumulates of one `height × width` forward pass: the patchify stem, the
    /// depthwise and pointwise convolutions of every block, the 2×2 downsampling convolutions
    /// (no classifier).
    pub fn forward_macs(&self, height: usize, width: usize) -> f64 {
        let patch = self.patch_size.max(1);
        let (mut h, mut w) = (
            (height / patch).max(1) as f64,
            (width / patch).max(1) as f64,
        );
        let mut macs = (patch * patch * self.in_channels * self.dims[0]) as f64 * h * w;
        for (stage, (&depth, &dim)) in self.depths.iter().zip(&self.dims).enumerate() {
            if stage > 0 {
                (h, w) = ((h / 2.0).floor().max(1.0), (w / 2.0).floor().max(1.0));
                macs += (4 * self.dims[stage - 1] * dim) as f64 * h * w;
            }
            let dim = dim as f64;
            let hw = h * w;
            let kernel = (self.kernel_size * self.kernel_size) as f64;
            let block = kernel * dim * hw + 2.0 * self.mlp_ratio * dim * dim * hw;
            macs += block * depth as f64;
        }
        macs
    }
}

fn layout_is(keys: &[&str], layout: ConvNeXtLayout) -> bool {
    crate::weights::convnext::detect(keys.iter().copied()) == Some(layout)
}

/// The ConvNeXt family in the [registry](crate::registry): presets `convnext_t`,
/// `convnext_t_dense` (drop path 0.4, mmdetection's / mmsegmentation's output norms),
/// `convnext_mini`, `convnext_tiny`; timm keys, the original release and transformers
/// imported.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConvNeXtArch;

impl crate::registry::Architecture for ConvNeXtArch {
    type Config = ConvNeXtConfig;

    fn family(&self) -> &'static str {
        "convnext"
    }

    fn description(&self) -> &'static str {
        "ConvNeXt (timm), layer scale, drop path, optional dense-task output norms"
    }

    fn presets(&self) -> Vec<(&'static str, ConvNeXtConfig)> {
        vec![
            ("convnext_t", ConvNeXtConfig::convnext_t()),
            ("convnext_t_dense", ConvNeXtConfig::convnext_t_dense(0.4)),
            ("convnext_mini", ConvNeXtConfig::mini()),
            ("convnext_tiny", ConvNeXtConfig::tiny()),
        ]
    }

    fn build(&self, cfg: &ConvNeXtConfig, vb: &VarBuilder<'_>) -> Result<Box<dyn Backbone>> {
        Ok(Box::new(ConvNeXt::new(cfg, vb)?))
    }

    fn num_classes(&self, cfg: &ConvNeXtConfig) -> Option<usize> {
        cfg.num_classes
    }

    fn with_num_classes(&self, cfg: &ConvNeXtConfig, num_classes: Option<usize>) -> ConvNeXtConfig {
        let mut out = cfg.clone();
        out.num_classes = num_classes;
        // timm's classifier reads the head norm's output.
        if num_classes.is_some() {
            out.head_norm = true;
        }
        out
    }

    fn classifier_key(&self) -> &'static str {
        "head.fc.weight"
    }

    fn layouts(&self) -> Vec<crate::registry::WeightLayout> {
        use crate::registry::{WeightLayout, identity};
        use crate::weights::convnext::to_canonical;
        vec![
            WeightLayout {
                name: "timm_convnext",
                description: "ConvNeXt, timm names",
                detect: |keys| layout_is(keys, ConvNeXtLayout::Timm),
                convert: identity,
            },
            WeightLayout {
                name: "fb_convnext",
                description: "ConvNeXt, original facebookresearch release names",
                detect: |keys| layout_is(keys, ConvNeXtLayout::FacebookOriginal),
                convert: |source, tensors| {
                    to_canonical(ConvNeXtLayout::FacebookOriginal, source, tensors)
                },
            },
            WeightLayout {
                name: "transformers_convnext",
                description: "ConvNeXt, Hugging Face transformers names",
                detect: |keys| layout_is(keys, ConvNeXtLayout::Transformers),
                convert: |source, tensors| {
                    to_canonical(ConvNeXtLayout::Transformers, source, tensors)
                },
            },
        ]
    }

    fn forward_macs(&self, cfg: &ConvNeXtConfig, height: usize, width: usize) -> f64 {
        cfg.forward_macs(height, width)
    }
}
