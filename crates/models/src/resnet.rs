//! ResNet (He et al., "Deep Residual Learning for Image Recognition", 2016), equal to
//! torchvision's `resnet50` and timm's `resnet50` (`resnet50.tv_in1k`): the stride sits on the
//! 3×3 convolution of the bottleneck ("ResNet v1.5", mmdetection's `style='pytorch'`).
//!
//! Keys are torchvision's (`conv1`, `bn1`, `layer{1..4}.{i}.conv{1,2,3}`, `…bn{1,2,3}`,
//! `…downsample.{0,1}`, `fc`), so a timm or torchvision state dict loads unchanged.
//! Depths, widths and the block type are configurable: [`ResNetConfig::resnet50`],
//! [`ResNetConfig::resnet18`], [`ResNetConfig::mini`] (CPU pretraining in the mini preset) and
//! [`ResNetConfig::tiny`] (tests). The stem is ImageNet's (7×7 stride 2, max pool) or, for
//! small images, one 3×3 convolution without a pool ([`Stem::Small`], as the CIFAR ResNets of
//! He et al. §4.2): a 32-pixel image keeps its detail into stage 1 instead of shrinking to 8×8.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use rtb_nn::conv::Conv2dConfig;
use rtb_nn::ops::activation::relu;
use rtb_nn::ops::pool::{MaxPool2dConfig, max_pool2d};

use crate::backbone::{
    Backbone, BackboneOutput, Features, Freeze, FreezeGroup, Mode, Parameter, PartCtx,
};
use crate::error::{ModelError, Result, config_error};
use crate::layers::{Bn, Conv, Linear, LinearInit};

/// The residual block of a ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// Two 3×3 convolutions, expansion 1 (ResNet-18/34).
    Basic,
    /// 1×1, 3×3 (strided), 1×1 convolutions, expansion 4 (ResNet-50/101/152).
    Bottleneck,
}

impl BlockKind {
    /// Output channels of a block over its width.
    pub fn expansion(&self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// What turns the image into stage 1's input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Stem {
    /// ImageNet's: a 7×7 convolution of stride 2, then a 3×3 max pool of stride 2. C2..C5 sit
    /// at strides 4, 8, 16, 32.
    #[default]
    #[serde(rename = "imagenet")]
    ImageNet,
    /// Small images': one 3×3 convolution of `stride` (1, 2 or 4) and no pool. C2..C5 sit at
    /// strides `stride` × 1, 2, 4, 8.
    Small {
        /// Stride of the stem's convolution.
        stride: usize,
    },
}

impl Stem {
    /// The stride of stage 1's input (C2) relative to the image.
    pub fn stride(&self) -> usize {
        match self {
            Stem::ImageNet => 4,
            Stem::Small { stride } => *stride,
        }
    }

    fn kernel(&self) -> usize {
        match self {
            Stem::ImageNet => 7,
            Stem::Small { .. } => 3,
        }
    }
}

/// The shape of a ResNet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    /// Residual block type.
    pub block: BlockKind,
    /// Blocks per stage (stages 1..4 produce C2..C5).
    pub depths: [usize; 4],
    /// The stem (default: ImageNet's).
    #[serde(default)]
    pub stem: Stem,
    /// Output channels of the stem's convolution.
    pub stem_width: usize,
    /// Width of each stage's blocks (outputs are `width · expansion`).
    pub widths: [usize; 4],
    /// Input channels.
    pub in_channels: usize,
    /// Classes of the `fc` classifier; `None`: no classifier.
    pub num_classes: Option<usize>,
}

impl ResNetConfig {
    /// ResNet-50 with the ImageNet classifier (torchvision / timm `resnet50`).
    pub fn resnet50() -> Self {
        Self {
            block: BlockKind::Bottleneck,
            depths: [3, 4, 6, 3],
            stem: Stem::ImageNet,
            stem_width: 64,
            widths: [64, 128, 256, 512],
            in_channels: 3,
            num_classes: Some(1000),
        }
    }

    /// ResNet-18 with the ImageNet classifier.
    pub fn resnet18() -> Self {
        Self {
            block: BlockKind::Basic,
            depths: [2, 2, 2, 2],
            ..Self::resnet50()
        }
    }

    /// A small ResNet the mini preset can pretrain on a CPU in minutes: a 3×3 stride-2 stem
    /// without max pool (32-px images reach stage 1 at 16×16; C2..C5 at strides 2..16), basic
    /// blocks, one per stage, widths 16–128, 10 classes.
    pub fn mini() -> Self {
        Self {
            block: BlockKind::Basic,
            depths: [1, 1, 1, 1],
            stem: Stem::Small { stride: 2 },
            stem_width: 16,
            widths: [16, 32, 64, 128],
            in_channels: 3,
            num_classes: Some(10),
        }
    }

    /// A tiny bottleneck ResNet for tests (every code path of ResNet-50, a few thousand
    /// parameters).
    pub fn tiny() -> Self {
        Self {
            block: BlockKind::Bottleneck,
            depths: [1, 2, 1, 1],
            stem: Stem::ImageNet,
            stem_width: 8,
            widths: [4, 8, 8, 16],
            in_channels: 3,
            num_classes: Some(5),
        }
    }

    /// Same network without a classifier (dense tasks).
    pub fn without_classifier(mut self) -> Self {
        self.num_classes = None;
        self
    }

    /// Channels of C2..C5.
    pub fn out_channels(&self) -> [usize; 4] {
        self.widths.map(|w| w * self.block.expansion())
    }

    fn validate(&self) -> Result<()> {
        const MODEL: &str = "ResNet";
        if self.depths.contains(&0) {
            return Err(config_error(
                MODEL,
                "depths",
                format!("every stage needs a block, got {:?}", self.depths),
            ));
        }
        if let Stem::Small { stride } = self.stem
            && ![1, 2, 4].contains(&stride)
        {
            return Err(config_error(
                MODEL,
                "stem.stride",
                format!("a small stem's stride is 1, 2 or 4, got {stride}"),
            ));
        }
        if self.widths.contains(&0) || self.stem_width == 0 || self.in_channels == 0 {
            return Err(config_error(
                MODEL,
                "widths",
                "widths and channels must be positive",
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

/// The shortcut projection `downsample.0` (1×1 conv, strided) + `downsample.1` (BatchNorm).
#[derive(Debug, Clone)]
struct Downsample {
    conv: Conv,
    bn: Bn,
}

/// One residual block (basic or bottleneck).
#[derive(Debug, Clone)]
struct Block {
    convs: Vec<Conv>,
    bns: Vec<Bn>,
    downsample: Option<Downsample>,
}

impl Block {
    fn new(
        kind: BlockKind,
        in_channels: usize,
        width: usize,
        stride: usize,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        let out_channels = width * kind.expansion();
        let plain = Conv2dConfig::default();
        let strided3 = Conv2dConfig::default().with_stride(stride).with_padding(1);
        let same3 = Conv2dConfig::default().with_padding(1);
        let convs = match kind {
            BlockKind::Basic => vec![
                Conv::new(in_channels, width, 3, strided3, false, &vb.pp("conv1"))?,
                Conv::new(width, width, 3, same3, false, &vb.pp("conv2"))?,
            ],
            BlockKind::Bottleneck => vec![
                Conv::new(in_channels, width, 1, plain, false, &vb.pp("conv1"))?,
                Conv::new(width, width, 3, strided3, false, &vb.pp("conv2"))?,
                Conv::new(width, out_channels, 1, plain, false, &vb.pp("conv3"))?,
            ],
        };
        let bn_widths = match kind {
            BlockKind::Basic => vec![width, width],
            BlockKind::Bottleneck => vec![width, width, out_channels],
        };
        let bns = bn_widths
            .iter()
            .enumerate()
            .map(|(i, &c)| Bn::new(c, &vb.pp(format!("bn{}", i + 1))))
            .collect::<Result<Vec<_>>>()?;
        let downsample = if stride != 1 || in_channels != out_channels {
            let vb = vb.pp("downsample");
            Some(Downsample {
                conv: Conv::new(
                    in_channels,
                    out_channels,
                    1,
                    Conv2dConfig::default().with_stride(stride),
                    false,
                    &vb.pp("0"),
                )?,
                bn: Bn::new(out_channels, &vb.pp("1"))?,
            })
        } else {
            None
        };
        Ok(Self {
            convs,
            bns,
            downsample,
        })
    }

    fn forward(&self, xs: &Tensor, ctx: PartCtx) -> Result<Tensor> {
        let mut ys = xs.clone();
        let last = self.convs.len() - 1;
        for (i, (conv, bn)) in self.convs.iter().zip(&self.bns).enumerate() {
            ys = bn.forward(&conv.forward(&ys)?, ctx.batch_stats)?;
            if i != last {
                ys = relu(&ys)?;
            }
        }
        let shortcut = match &self.downsample {
            Some(ds) => ds.bn.forward(&ds.conv.forward(xs)?, ctx.batch_stats)?,
            None => xs.clone(),
        };
        Ok(ctx.finish(relu(&(ys + shortcut)?)?))
    }

    fn params(&self, group: FreezeGroup, out: &mut Vec<Parameter>) {
        for (conv, bn) in self.convs.iter().zip(&self.bns) {
            conv.params(group, out);
            bn.params(group, out);
        }
        if let Some(ds) = &self.downsample {
            ds.conv.params(group, out);
            ds.bn.params(group, out);
        }
    }
}

/// A ResNet built from a `VarBuilder` whose paths are torchvision's keys.
#[derive(Debug, Clone)]
pub struct ResNet {
    cfg: ResNetConfig,
    conv1: Conv,
    bn1: Bn,
    layers: [Vec<Block>; 4],
    fc: Option<Linear>,
    freeze: Freeze,
}

impl ResNet {
    /// Builds the network; `vb` supplies (or, from a `VarMap`, creates) every tensor.
    pub fn new(cfg: &ResNetConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        cfg.validate()?;
        let stem_conv = match cfg.stem {
            Stem::ImageNet => Conv2dConfig::default().with_stride(2).with_padding(3),
            Stem::Small { stride } => Conv2dConfig::default().with_stride(stride).with_padding(1),
        };
        let conv1 = Conv::new(
            cfg.in_channels,
            cfg.stem_width,
            cfg.stem.kernel(),
            stem_conv,
            false,
            &vb.pp("conv1"),
        )?;
        let bn1 = Bn::new(cfg.stem_width, &vb.pp("bn1"))?;
        let mut in_channels = cfg.stem_width;
        let mut layers: [Vec<Block>; 4] = Default::default();
        for (stage, layer) in layers.iter_mut().enumerate() {
            let vb_layer = vb.pp(format!("layer{}", stage + 1));
            let stride = if stage == 0 { 1 } else { 2 };
            for i in 0..cfg.depths[stage] {
                let block = Block::new(
                    cfg.block,
                    in_channels,
                    cfg.widths[stage],
                    if i == 0 { stride } else { 1 },
                    &vb_layer.pp(i),
                )?;
                in_channels = cfg.widths[stage] * cfg.block.expansion();
                layer.push(block);
            }
        }
        let fc = match cfg.num_classes {
            Some(classes) => Some(Linear::new(
                in_channels,
                classes,
                true,
                LinearInit::Torch,
                &vb.pp("fc"),
            )?),
            None => None,
        };
        Ok(Self {
            cfg: cfg.clone(),
            conv1,
            bn1,
            layers,
            fc,
            freeze: Freeze::none(),
        })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &ResNetConfig {
        &self.cfg
    }

    fn check_input(&self, xs: &Tensor) -> Result<()> {
        let bad = |message: String| ModelError::Input {
            model: "ResNet",
            shape: xs.dims().to_vec(),
            message,
        };
        match xs.dims() {
            &[_, c, h, w] => {
                if c != self.cfg.in_channels {
                    return Err(bad(format!("expected {} channels", self.cfg.in_channels)));
                }
                let min = self.size_divisor();
                if h < min || w < min {
                    return Err(bad(format!("height and width must be at least {min}")));
                }
                Ok(())
            }
            _ => Err(bad("expected [N, C, H, W]".into())),
        }
    }
}

impl Backbone for ResNet {
    fn arch_name(&self) -> String {
        match (self.cfg.block, self.cfg.depths) {
            (BlockKind::Bottleneck, [3, 4, 6, 3]) => "resnet50".into(),
            (BlockKind::Basic, [2, 2, 2, 2]) => "resnet18".into(),
            _ => "resnet".into(),
        }
    }

    fn out_channels(&self) -> [usize; 4] {
        self.cfg.out_channels()
    }

    fn strides(&self) -> [usize; 4] {
        let s = self.cfg.stem.stride();
        [s, 2 * s, 4 * s, 8 * s]
    }

    fn size_divisor(&self) -> usize {
        8 * self.cfg.stem.stride()
    }

    fn num_features(&self) -> Option<usize> {
        Some(self.cfg.out_channels()[3])
    }

    fn num_classes(&self) -> Option<usize> {
        self.cfg.num_classes
    }

    fn forward(&self, xs: &Tensor, mode: Mode) -> Result<BackboneOutput> {
        self.check_input(xs)?;
        let freeze = self.freeze;
        let stem = PartCtx::resolve(mode, &freeze, freeze.stem_frozen());
        let ys = relu(
            &self
                .bn1
                .forward(&self.conv1.forward(xs)?, stem.batch_stats)?,
        )?;
        let mut ys = match self.cfg.stem {
            Stem::ImageNet => {
                let pool = MaxPool2dConfig::new(3).with_stride(2).with_padding(1);
                stem.finish(max_pool2d(&ys, &pool)?)
            }
            Stem::Small { .. } => stem.finish(ys),
        };
        let mut levels = Vec::with_capacity(4);
        for (stage, layer) in self.layers.iter().enumerate() {
            let ctx = PartCtx::resolve(mode, &freeze, freeze.stage_frozen(stage));
            for block in layer {
                ys = block.forward(&ys, ctx)?;
            }
            levels.push(ys.clone());
        }
        let levels: [Tensor; 4] = levels
            .try_into()
            .map_err(|_| candle_core::Error::Msg("ResNet: four stages".into()))?;
        let head = PartCtx::resolve(mode, &freeze, freeze.freeze_head);
        let pooled = head.finish(levels[3].mean((2, 3))?);
        let logits = match &self.fc {
            Some(fc) => Some(head.finish(fc.forward(&pooled)?)),
            None => None,
        };
        Ok(BackboneOutput {
            features: Features { levels },
            pooled: Some(pooled),
            logits,
        })
    }

    fn parameters(&self) -> Vec<Parameter> {
        let mut out = Vec::new();
        self.conv1.params(FreezeGroup::Stem, &mut out);
        self.bn1.params(FreezeGroup::Stem, &mut out);
        for (stage, layer) in self.layers.iter().enumerate() {
            for block in layer {
                block.params(FreezeGroup::Stage(stage), &mut out);
            }
        }
        if let Some(fc) = &self.fc {
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

impl ResNetConfig {
    /// Multiply-accumulates of one `height × width` forward pass through the convolutions
    /// (stem, blocks, shortcuts; no classifier).
    pub fn forward_macs(&self, height: usize, width: usize) -> f64 {
        let conv = |k: usize, cin: usize, cout: usize, hw: f64| (k * k * cin * cout) as f64 * hw;
        let bottleneck = self.block == BlockKind::Bottleneck;
        let expansion = self.block.expansion();
        // Output side of a strided convolution or pool with "same" padding.
        let shrink = |side: f64, by: usize| (side / by as f64).ceil();
        let half = |side: f64| shrink(side, 2);
        let (mut h, mut w, mut macs);
        match self.stem {
            Stem::ImageNet => {
                (h, w) = (half(height as f64), half(width as f64));
                macs = conv(7, self.in_channels, self.stem_width, h * w);
                (h, w) = (half(h), half(w));
            }
            Stem::Small { stride } => {
                (h, w) = (shrink(height as f64, stride), shrink(width as f64, stride));
                macs = conv(3, self.in_channels, self.stem_width, h * w);
            }
        }
        let mut cin = self.stem_width;
        for stage in 0..4 {
            // The first 1×1 convolution of a bottleneck runs before the strided 3×3.
            let input_hw = h * w;
            if stage > 0 {
                (h, w) = (half(h), half(w));
            }
            let hw = h * w;
            let width = self.widths[stage];
            let cout = width * expansion;
            for block in 0..self.depths[stage] {
                let input = if block == 0 { cin } else { cout };
                let first_hw = if block == 0 { input_hw } else { hw };
                macs += if bottleneck {
                    conv(1, input, width, first_hw)
                        + conv(3, width, width, hw)
                        + conv(1, width, cout, hw)
                } else {
                    conv(3, input, width, hw) + conv(3, width, cout, hw)
                };
                if block == 0 && (input != cout || stage > 0) {
                    macs += conv(1, input, cout, hw);
                }
            }
            cin = cout;
        }
        macs
    }
}

/// The ResNet family in the [registry](crate::registry): presets `resnet50`, `resnet18`,
/// `resnet_mini`, `resnet_tiny`; torchvision / timm keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResNetArch;

impl crate::registry::Architecture for ResNetArch {
    type Config = ResNetConfig;

    fn family(&self) -> &'static str {
        "resnet"
    }

    fn description(&self) -> &'static str {
        "ResNet (torchvision / timm, stride on the 3x3 convolution), basic or bottleneck blocks"
    }

    fn presets(&self) -> Vec<(&'static str, ResNetConfig)> {
        vec![
            ("resnet50", ResNetConfig::resnet50()),
            ("resnet18", ResNetConfig::resnet18()),
            ("resnet_mini", ResNetConfig::mini()),
            ("resnet_tiny", ResNetConfig::tiny()),
        ]
    }

    fn build(&self, cfg: &ResNetConfig, vb: &VarBuilder<'_>) -> Result<Box<dyn Backbone>> {
        Ok(Box::new(ResNet::new(cfg, vb)?))
    }

    fn num_classes(&self, cfg: &ResNetConfig) -> Option<usize> {
        cfg.num_classes
    }

    fn with_num_classes(&self, cfg: &ResNetConfig, num_classes: Option<usize>) -> ResNetConfig {
        ResNetConfig {
            num_classes,
            ..cfg.clone()
        }
    }

    fn classifier_key(&self) -> &'static str {
        "fc.weight"
    }

    fn layouts(&self) -> Vec<crate::registry::WeightLayout> {
        vec![crate::registry::WeightLayout {
            name: "torchvision_resnet",
            description: "ResNet, torchvision/timm names",
            detect: crate::weights::is_torchvision_resnet,
            convert: crate::registry::identity,
        }]
    }

    fn forward_macs(&self, cfg: &ResNetConfig, height: usize, width: usize) -> f64 {
        cfg.forward_macs(height, width)
    }
}
