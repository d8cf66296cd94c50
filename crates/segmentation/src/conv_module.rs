//! `ConvModule`: a convolution without bias, BatchNorm and ReLU, as mmcv's `ConvModule` with
//! `norm_cfg=dict(type='BN')` and `act_cfg=dict(type='ReLU')` (transformers'
//! `UperNetConvModule`). Every convolution of the UperNet heads but the classifiers is one.
//!
//! Keys (transformers'): `conv.weight`, `batch_norm.{weight, bias, running_mean,
//! running_var}`; mmseg's `bn.` is renamed at import ([`crate::weights`]). BatchNorm's mode
//! is explicit: [`Mode::Train`] normalises with the batch's statistics and updates the running
//! ones (per process: sync-free, unlike mmseg's SyncBN over GPUs), the other modes use the
//! running statistics.

use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};
use rtb_models::{Mode, ParamKind};
use rtb_nn::conv::{Conv2d, Conv2dConfig};
use rtb_nn::ops::norm::{BatchNorm2d, BatchNormConfig};

use crate::error::{Result, config_error};
use crate::params::{NamedTensor, push};

/// Convolution (no bias) → BatchNorm2d → ReLU.
#[derive(Debug, Clone)]
pub struct ConvModule {
    prefix: String,
    conv: Conv2d,
    bn_weight: Tensor,
    bn_bias: Tensor,
    bn: BatchNorm2d,
}

impl ConvModule {
    /// A `kernel × kernel` convolution from `in_channels` to `out_channels` with `padding`
    /// (stride 1), weights from `vb`. Created weights follow mmcv's init: Kaiming normal
    /// (fan-out, ReLU) for the convolution, 1 and 0 for the norm, running statistics 0 and 1.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        padding: usize,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        if in_channels == 0 || out_channels == 0 || kernel == 0 {
            return Err(config_error(
                "channels",
                format!(
                    "{}: a {kernel}×{kernel} convolution {in_channels} → {out_channels} has no weights",
                    vb.prefix()
                ),
            ));
        }
        let fan_out = (out_channels * kernel * kernel) as f64;
        let vb_conv = vb.pp("conv");
        let weight = vb_conv.get_with_hints(
            (out_channels, in_channels, kernel, kernel),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: (2.0 / fan_out).sqrt(),
            },
        )?;
        let conv =
            Conv2d::from_tensors(weight, None, Conv2dConfig::default().with_padding(padding));
        let vb_bn = vb.pp("batch_norm");
        let bn_weight = vb_bn.get_with_hints(out_channels, "weight", Init::Const(1.0))?;
        let bn_bias = vb_bn.get_with_hints(out_channels, "bias", Init::Const(0.0))?;
        let running_mean = vb_bn.get_with_hints(out_channels, "running_mean", Init::Const(0.0))?;
        let running_var = vb_bn.get_with_hints(out_channels, "running_var", Init::Const(1.0))?;
        let bn = BatchNorm2d::from_tensors(
            Some(bn_weight.clone()),
            Some(bn_bias.clone()),
            running_mean,
            running_var,
            BatchNormConfig::default(),
        )?;
        Ok(Self {
            prefix: vb.prefix(),
            conv,
            bn_weight,
            bn_bias,
            bn,
        })
    }

    /// `[N, in, H, W]` → `[N, out, H, W]`. [`Mode::Train`] uses batch statistics (and updates
    /// the running ones); [`Mode::Eval`] and [`Mode::Inference`] use the running statistics.
    pub fn forward(&self, xs: &Tensor, mode: Mode) -> Result<Tensor> {
        let ys = self.conv.forward(xs)?;
        let ys = if mode.is_train() {
            self.bn.forward_train(&ys)?
        } else {
            self.bn.forward_eval(&ys)?
        };
        Ok(rtb_nn::ops::activation::relu(&ys)?)
    }

    /// The convolution.
    pub fn conv(&self) -> &Conv2d {
        &self.conv
    }

    /// The BatchNorm.
    pub fn batch_norm(&self) -> &BatchNorm2d {
        &self.bn
    }

    /// Its tensors under their full keys (`<prefix>.conv.weight`, `<prefix>.batch_norm.…`).
    pub fn parameters(&self) -> Vec<NamedTensor> {
        let mut out = Vec::with_capacity(5);
        let p = &self.prefix;
        push(
            &mut out,
            p,
            "conv.weight",
            self.conv.weight(),
            ParamKind::Weight,
        );
        push(
            &mut out,
            p,
            "batch_norm.weight",
            &self.bn_weight,
            ParamKind::NormWeight,
        );
        push(
            &mut out,
            p,
            "batch_norm.bias",
            &self.bn_bias,
            ParamKind::NormBias,
        );
        push(
            &mut out,
            p,
            "batch_norm.running_mean",
            self.bn.running_mean(),
            ParamKind::RunningMean,
        );
        push(
            &mut out,
            p,
            "batch_norm.running_var",
            self.bn.running_var(),
            ParamKind::RunningVar,
        );
        out
    }
}
