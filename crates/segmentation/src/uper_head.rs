//! UPerHead (Xiao et al. 2018, "Unified Perceptual Parsing for Scene Understanding"), as
//! mmseg's `UPerHead` and transformers' `UperNetHead` build it over C2..C5:
//!
//! 1. PSP on C5: [`PyramidPooling`] branches concatenated with C5, then the 3×3
//!    `bottleneck` [`ConvModule`] → the top lateral;
//! 2. 1×1 `lateral_convs` on C2..C4; top-down, each lateral adds the bilinear upsampling
//!    (align_corners=False) of the one above it;
//! 3. 3×3 `fpn_convs` on the three lower laterals (the top one is used as it is), every level
//!    upsampled to C2's size, concatenated, and the 3×3 `fpn_bottleneck`;
//! 4. the [`Classifier`]: Dropout2d (0.1 in mmseg) and a 1×1 convolution to the classes.
//!
//! Keys are transformers' (`psp_modules.i.1`, `bottleneck`, `lateral_convs.i`, `fpn_convs.i`,
//! `fpn_bottleneck`, `classifier`) under the prefix of the `VarBuilder` given
//! (`decode_head` in a whole model).

use candle_core::Tensor;
use candle_nn::VarBuilder;
use rtb_models::Mode;
use rtb_nn::ops::resize::resize_bilinear;

use crate::classifier::Classifier;
use crate::conv_module::ConvModule;
use crate::error::{Result, config_error, input_error};
use crate::params::NamedTensor;
use crate::ppm::PyramidPooling;

/// The UperNet decode head.
#[derive(Debug, Clone)]
pub struct UperHead {
    in_channels: Vec<usize>,
    psp_modules: PyramidPooling,
    bottleneck: ConvModule,
    lateral_convs: Vec<ConvModule>,
    fpn_convs: Vec<ConvModule>,
    fpn_bottleneck: ConvModule,
    classifier: Classifier,
}

impl UperHead {
    /// A head over feature maps with `in_channels` (finest first; the last one gets the PPM),
    /// `channels` wide, with `pool_scales`, `num_classes` logits and Dropout2d `dropout`.
    pub fn new(
        in_channels: &[usize],
        channels: usize,
        pool_scales: &[usize],
        num_classes: usize,
        dropout: f64,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        let Some((&top, lower)) = in_channels.split_last() else {
            return Err(config_error("in_channels", "no feature levels"));
        };
        if lower.is_empty() {
            return Err(config_error(
                "in_channels",
                format!("at least two feature levels are needed, got {in_channels:?}"),
            ));
        }
        if channels == 0 || num_classes == 0 {
            return Err(config_error(
                "channels",
                format!("channels {channels} and num_classes {num_classes} must be positive"),
            ));
        }
        let psp_modules = PyramidPooling::new(pool_scales, top, channels, &vb.pp("psp_modules"))?;
        let bottleneck = ConvModule::new(
            top + pool_scales.len() * channels,
            channels,
            3,
            1,
            &vb.pp("bottleneck"),
        )?;
        let lateral_convs = lower
            .iter()
            .enumerate()
            .map(|(i, &c)| ConvModule::new(c, channels, 1, 0, &vb.pp("lateral_convs").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let fpn_convs = (0..lower.len())
            .map(|i| ConvModule::new(channels, channels, 3, 1, &vb.pp("fpn_convs").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let fpn_bottleneck = ConvModule::new(
            in_channels.len() * channels,
            channels,
            3,
            1,
            &vb.pp("fpn_bottleneck"),
        )?;
        let classifier = Classifier::new(channels, num_classes, dropout, &vb.pp("classifier"))?;
        Ok(Self {
            in_channels: in_channels.to_vec(),
            psp_modules,
            bottleneck,
            lateral_convs,
            fpn_convs,
            fpn_bottleneck,
            classifier,
        })
    }

    /// The feature maps' channels it expects.
    pub fn in_channels(&self) -> &[usize] {
        &self.in_channels
    }

    fn check_inputs(&self, features: &[Tensor]) -> Result<()> {
        if features.len() != self.in_channels.len() {
            return Err(input_error(
                "UperHead features",
                &[features.len()],
                format!("{} feature maps expected", self.in_channels.len()),
            ));
        }
        for (xs, &c) in features.iter().zip(&self.in_channels) {
            match xs.dims() {
                &[_, got, _, _] if got == c => {}
                dims => {
                    return Err(input_error(
                        "UperHead features",
                        dims,
                        format!("expected [N, {c}, H, W] (channels {:?})", self.in_channels),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The fused features before the classifier, `[N, channels, H₂, W₂]` at the finest
    /// level's size.
    pub fn forward_features(&self, features: &[Tensor], mode: Mode) -> Result<Tensor> {
        self.check_inputs(features)?;
        let Some((top, lower)) = features.split_last() else {
            return Err(input_error("UperHead features", &[0], "no feature maps"));
        };
        // PSP on the coarsest level.
        let mut psp = vec![top.clone()];
        psp.extend(self.psp_modules.forward(top, mode)?);
        let psp = self.bottleneck.forward(&Tensor::cat(&psp, 1)?, mode)?;

        let mut laterals = lower
            .iter()
            .zip(&self.lateral_convs)
            .map(|(xs, conv)| conv.forward(xs, mode))
            .collect::<Result<Vec<_>>>()?;
        laterals.push(psp);
        // Top-down: each level adds the upsampled level above it (already summed).
        for i in (1..laterals.len()).rev() {
            let (_, _, h, w) = laterals[i - 1].dims4()?;
            let up = resize_bilinear(&laterals[i], (h, w), false)?;
            laterals[i - 1] = (&laterals[i - 1] + up)?;
        }
        let (_, _, h, w) = laterals[0].dims4()?;
        let mut outs = Vec::with_capacity(laterals.len());
        for (i, lateral) in laterals.iter().enumerate() {
            let ys = match self.fpn_convs.get(i) {
                Some(conv) => conv.forward(lateral, mode)?,
                None => lateral.clone(),
            };
            outs.push(if i == 0 {
                ys
            } else {
                resize_bilinear(&ys, (h, w), false)?
            });
        }
        self.fpn_bottleneck.forward(&Tensor::cat(&outs, 1)?, mode)
    }

    /// Class logits `[N, num_classes, H₂, W₂]` at the finest level's size (stride 4 over
    /// C2..C5). `seed` draws the dropout masks under [`Mode::Train`]; under
    /// [`Mode::Inference`] the result is detached.
    pub fn forward(&self, features: &[Tensor], mode: Mode, seed: u64) -> Result<Tensor> {
        let ys = self.forward_features(features, mode)?;
        let logits = self.classifier.forward(&ys, mode, seed)?;
        Ok(if mode.records_graph() {
            logits
        } else {
            logits.detach()
        })
    }

    /// The classifier (dropout and 1×1 convolution).
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// Every tensor under its full key, in transformers' module order.
    pub fn parameters(&self) -> Vec<NamedTensor> {
        let mut out = self.classifier.parameters();
        out.extend(self.psp_modules.parameters());
        out.extend(self.bottleneck.parameters());
        for conv in self.lateral_convs.iter().chain(&self.fpn_convs) {
            out.extend(conv.parameters());
        }
        out.extend(self.fpn_bottleneck.parameters());
        out
    }
}
