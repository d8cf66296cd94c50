//! The Feature Pyramid Network neck (Lin et al., "Feature Pyramid Networks for Object
//! Detection", CVPR 2017) over C2..C5 of any backbone: torchvision's
//! `FeaturePyramidNetwork` with `LastLevelMaxPool`, which is the same computation as
//! mmdetection's `FPN(num_outs=5, add_extra_convs=False)`.
//!
//! For each level a 1×1 lateral convolution maps `C_i` to `out_channels`; from the top down,
//! each lateral adds the nearest-neighbour upsampling of the level above (to the lateral's
//! exact size, PyTorch's legacy `"nearest"`); a 3×3 convolution (padding 1) then gives `P_i`.
//! P6 is P5 subsampled by 2 (`max_pool2d(kernel 1, stride 2)`, size `⌈H/2⌉ × ⌈W/2⌉`). No
//! normalisation and no activation.
//!
//! Weights load under either reference's names ([`FpnLayout`]), relative to the neck's
//! prefix (torchvision's `backbone.fpn.`, mmdet's `neck.`):
//!
//! | | lateral `i` | output `i` |
//! |---|---|---|
//! | torchvision | `inner_blocks.i.0.{weight,bias}` | `layer_blocks.i.0.{weight,bias}` |
//! | mmdet | `lateral_convs.i.conv.{weight,bias}` | `fpn_convs.i.conv.{weight,bias}` |
//!
//! New weights are initialised as each reference does: torchvision `kaiming_uniform_(a=1)`,
//! mmdet Xavier-uniform; biases zero.

use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};
use rtb_models::Backbone;
use rtb_nn::conv::{Conv2d, Conv2dConfig};
use rtb_nn::ops::pool::{MaxPool2dConfig, max_pool2d};
use rtb_nn::ops::resize::resize_nearest;

use crate::error::{Result, config, shape};

/// Whose parameter names (and initialisation) the neck uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FpnLayout {
    /// mmdetection: `lateral_convs.i.conv`, `fpn_convs.i.conv`; Xavier-uniform init.
    #[default]
    Mmdet,
    /// torchvision: `inner_blocks.i.0`, `layer_blocks.i.0`; `kaiming_uniform_(a=1)` init.
    Torchvision,
}

/// Settings of the neck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FpnConfig {
    /// Channels of the inputs, finest first (C2..C5: e.g. 256, 512, 1024, 2048).
    pub in_channels: Vec<usize>,
    /// Channels of every output (256 in Mask R-CNN).
    pub out_channels: usize,
    /// Whether to add the subsampled top level (P6), as Mask R-CNN does.
    pub extra_max_pool: bool,
    /// Parameter names and initialisation.
    pub layout: FpnLayout,
}

impl FpnConfig {
    /// Mask R-CNN's neck over inputs of `in_channels`: 256 channels, P6 by subsampling.
    pub fn mask_rcnn(in_channels: &[usize], layout: FpnLayout) -> Self {
        Self {
            in_channels: in_channels.to_vec(),
            out_channels: 256,
            extra_max_pool: true,
            layout,
        }
    }

    /// Mask R-CNN's neck over a backbone's C2..C5.
    pub fn for_backbone(backbone: &dyn Backbone, layout: FpnLayout) -> Self {
        Self::mask_rcnn(&backbone.out_channels(), layout)
    }

    /// With `out_channels` outputs (slim necks for the mini study).
    pub fn with_out_channels(mut self, out_channels: usize) -> Self {
        self.out_channels = out_channels;
        self
    }
}

/// The FPN neck.
#[derive(Debug, Clone)]
pub struct Fpn {
    laterals: Vec<Conv2d>,
    outputs: Vec<Conv2d>,
    extra_max_pool: bool,
}

impl Fpn {
    /// A neck with weights from `vb` (see the module docs for names and initialisation).
    pub fn new(cfg: &FpnConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        if cfg.in_channels.is_empty() || cfg.in_channels.contains(&0) {
            return Err(config(
                "Fpn::new",
                "in_channels",
                format!("must be non-empty and positive, got {:?}", cfg.in_channels),
            ));
        }
        if cfg.out_channels == 0 {
            return Err(config(
                "Fpn::new",
                "out_channels",
                "must be positive, got 0",
            ));
        }
        let (lateral_name, output_name, inner) = match cfg.layout {
            FpnLayout::Torchvision => ("inner_blocks", "layer_blocks", "0"),
            FpnLayout::Mmdet => ("lateral_convs", "fpn_convs", "conv"),
        };
        let out = cfg.out_channels;
        let mut laterals = Vec::with_capacity(cfg.in_channels.len());
        let mut outputs = Vec::with_capacity(cfg.in_channels.len());
        for (i, &c) in cfg.in_channels.iter().enumerate() {
            let lateral_vb = vb.pp(format!("{lateral_name}.{i}.{inner}"));
            laterals.push(conv(c, out, 1, cfg.layout, &lateral_vb)?);
            let output_vb = vb.pp(format!("{output_name}.{i}.{inner}"));
            outputs.push(conv(out, out, 3, cfg.layout, &output_vb)?);
        }
        Ok(Self {
            laterals,
            outputs,
            extra_max_pool: cfg.extra_max_pool,
        })
    }

    /// Number of outputs (inputs, plus one with the extra level).
    pub fn num_outputs(&self) -> usize {
        self.laterals.len() + usize::from(self.extra_max_pool)
    }

    /// P2.. from C2.. (`[N, C_i, H_i, W_i]` each, finest first): `[N, out_channels, H_i, W_i]`
    /// per input, then P6 `[N, out_channels, ⌈H_5/2⌉, ⌈W_5/2⌉]` with the extra level.
    pub fn forward(&self, features: &[Tensor]) -> Result<Vec<Tensor>> {
        if features.len() != self.laterals.len() {
            return Err(shape(
                "Fpn::forward",
                "features",
                format!("{} levels", self.laterals.len()),
                features.len(),
            ));
        }
        for (i, (xs, lateral)) in features.iter().zip(&self.laterals).enumerate() {
            let want = lateral.weight().dim(1)?;
            if xs.rank() != 4 || xs.dim(1)? != want {
                return Err(shape(
                    "Fpn::forward",
                    "features",
                    format!("[N, {want}, H, W] at level {i}"),
                    xs.dims(),
                ));
            }
        }
        let top = features.len() - 1;
        let mut outs = vec![None; features.len()];
        let mut last = self.laterals[top].forward(&features[top])?;
        outs[top] = Some(self.outputs[top].forward(&last)?);
        for i in (0..top).rev() {
            let lateral = self.laterals[i].forward(&features[i])?;
            let (_, _, h, w) = lateral.dims4()?;
            last = (lateral + resize_nearest(&last, (h, w))?)?;
            outs[i] = Some(self.outputs[i].forward(&last)?);
        }
        let mut outs: Vec<Tensor> = outs.into_iter().flatten().collect();
        if self.extra_max_pool {
            let pool = MaxPool2dConfig {
                kernel: (1, 1),
                stride: (2, 2),
                ..MaxPool2dConfig::new(1)
            };
            let p6 = max_pool2d(&outs[top], &pool)?;
            outs.push(p6);
        }
        Ok(outs)
    }
}

/// A convolution with bias, `same` padding, initialised as `layout`'s reference does.
fn conv(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    layout: FpnLayout,
    vb: &VarBuilder<'_>,
) -> Result<Conv2d> {
    let fan_in = (in_channels * kernel * kernel) as f64;
    let fan_out = (out_channels * kernel * kernel) as f64;
    let bound = match layout {
        // kaiming_uniform_(a=1): gain √(2 / (1 + 1)) = 1, bound = √3 / √fan_in.
        FpnLayout::Torchvision => (3.0 / fan_in).sqrt(),
        // xavier_uniform_: √(6 / (fan_in + fan_out)).
        FpnLayout::Mmdet => (6.0 / (fan_in + fan_out)).sqrt(),
    };
    let weight = vb.get_with_hints(
        (out_channels, in_channels, kernel, kernel),
        "weight",
        Init::Uniform {
            lo: -bound,
            up: bound,
        },
    )?;
    let bias = vb.get_with_hints(out_channels, "bias", Init::Const(0.0))?;
    let cfg = Conv2dConfig::default().with_padding(kernel / 2);
    Ok(Conv2d::from_tensors(weight, Some(bias), cfg))
}
