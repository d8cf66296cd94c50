//! The auxiliary FCN head (Long et al. 2015) that UperNet trains on C4 (mmseg's `FCNHead` in
//! `upernet_*.py`, transformers' `UperNetFCNHead`): `num_convs` 3×3 [`ConvModule`]s (one of
//! 256 channels in mmseg's config), optionally the input concatenated back through a 3×3
//! `conv_cat` (`concat_input`, off in UperNet's config), then the [`Classifier`]
//! (Dropout2d 0.1, 1×1 convolution). Its loss is weighted 0.4; it is not used at inference.
//!
//! Keys: `convs.i.{conv, batch_norm}`, `conv_cat`, `classifier` under the given prefix
//! (`auxiliary_head` in a whole model).

use candle_core::Tensor;
use candle_nn::VarBuilder;
use rtb_models::Mode;

use crate::classifier::Classifier;
use crate::conv_module::ConvModule;
use crate::error::{Result, config_error, input_error};
use crate::params::NamedTensor;

/// The auxiliary FCN head.
#[derive(Debug, Clone)]
pub struct FcnHead {
    in_channels: usize,
    convs: Vec<ConvModule>,
    conv_cat: Option<ConvModule>,
    classifier: Classifier,
}

impl FcnHead {
    /// A head over one `in_channels` map: `num_convs` (≥ 1) convolutions of `channels`, an
    /// optional `conv_cat`, `num_classes` logits, Dropout2d `dropout`.
    pub fn new(
        in_channels: usize,
        channels: usize,
        num_convs: usize,
        concat_input: bool,
        (num_classes, dropout): (usize, f64),
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        if num_convs == 0 {
            return Err(config_error(
                "auxiliary.num_convs",
                "at least one convolution is needed (mmseg's num_convs = 0 is not supported)",
            ));
        }
        let convs = (0..num_convs)
            .map(|i| {
                let cin = if i == 0 { in_channels } else { channels };
                ConvModule::new(cin, channels, 3, 1, &vb.pp("convs").pp(i))
            })
            .collect::<Result<Vec<_>>>()?;
        let conv_cat = if concat_input {
            Some(ConvModule::new(
                in_channels + channels,
                channels,
                3,
                1,
                &vb.pp("conv_cat"),
            )?)
        } else {
            None
        };
        let classifier = Classifier::new(channels, num_classes, dropout, &vb.pp("classifier"))?;
        Ok(Self {
            in_channels,
            convs,
            conv_cat,
            classifier,
        })
    }

    /// Class logits `[N, num_classes, H, W]` at the input's size; dropout masks from `seed`
    /// under [`Mode::Train`], detached under [`Mode::Inference`].
    pub fn forward(&self, xs: &Tensor, mode: Mode, seed: u64) -> Result<Tensor> {
        match xs.dims() {
            &[_, c, _, _] if c == self.in_channels => {}
            dims => {
                return Err(input_error(
                    "FcnHead input",
                    dims,
                    format!("expected [N, {}, H, W]", self.in_channels),
                ));
            }
        }
        let mut ys = xs.clone();
        for conv in &self.convs {
            ys = conv.forward(&ys, mode)?;
        }
        if let Some(conv_cat) = &self.conv_cat {
            ys = conv_cat.forward(&Tensor::cat(&[xs, &ys], 1)?, mode)?;
        }
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

    /// Every tensor under its full key.
    pub fn parameters(&self) -> Vec<NamedTensor> {
        let mut out: Vec<NamedTensor> = self.convs.iter().flat_map(|c| c.parameters()).collect();
        if let Some(conv_cat) = &self.conv_cat {
            out.extend(conv_cat.parameters());
        }
        out.extend(self.classifier.parameters());
        out
    }
}
