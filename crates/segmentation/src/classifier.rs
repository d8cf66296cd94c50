//! The end of every mmseg decode head (`BaseDecodeHead.cls_seg`): Dropout2d, then a 1×1
//! convolution with bias to the class logits (mmseg's `conv_seg`, transformers'
//! `classifier`; transformers has no dropout, which only matters in training).

use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};
use rtb_models::{Mode, ParamKind};
use rtb_nn::conv::{Conv2d, Conv2dConfig};

use crate::dropout::Dropout2d;
use crate::error::Result;
use crate::params::{NamedTensor, push};

/// Dropout2d + 1×1 convolution to `num_classes` logits.
#[derive(Debug, Clone)]
pub struct Classifier {
    prefix: String,
    dropout: Dropout2d,
    conv: Conv2d,
}

impl Classifier {
    /// Keys `weight` `[num_classes, channels, 1, 1]` and `bias` under `vb`; created weights
    /// follow mmseg (`normal_init(conv_seg, std=0.01)`, bias 0).
    pub fn new(
        channels: usize,
        num_classes: usize,
        dropout: f64,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        let weight = vb.get_with_hints(
            (num_classes, channels, 1, 1),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: 0.01,
            },
        )?;
        let bias = vb.get_with_hints(num_classes, "bias", Init::Const(0.0))?;
        Ok(Self {
            prefix: vb.prefix(),
            dropout: Dropout2d::new(dropout)?,
            conv: Conv2d::from_tensors(weight, Some(bias), Conv2dConfig::default()),
        })
    }

    /// `[N, channels, H, W]` → `[N, num_classes, H, W]`; dropout only under [`Mode::Train`],
    /// with masks drawn from `seed`.
    pub fn forward(&self, xs: &Tensor, mode: Mode, seed: u64) -> Result<Tensor> {
        let xs = if mode.is_train() {
            self.dropout.forward_train(xs, seed)?
        } else {
            xs.clone()
        };
        Ok(self.conv.forward(&xs)?)
    }

    /// The dropout.
    pub fn dropout(&self) -> &Dropout2d {
        &self.dropout
    }

    /// Its tensors under their full keys.
    pub fn parameters(&self) -> Vec<NamedTensor> {
        let mut out = Vec::with_capacity(2);
        push(
            &mut out,
            &self.prefix,
            "weight",
            self.conv.weight(),
            ParamKind::Weight,
        );
        if let Some(bias) = self.conv.bias() {
            push(&mut out, &self.prefix, "bias", bias, ParamKind::Bias);
        }
        out
    }
}
