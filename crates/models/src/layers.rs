//! Leaf layers shared by the model files: each keeps its checkpoint key prefix so the models
//! can list their parameters, and each runs through rtb-nn's differentiable ops (never the
//! candle ops without a backward; see `notes/candle.md`).

use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};
use rtb_nn::conv::{Conv2d, Conv2dConfig};
use rtb_nn::ops::norm::{BatchNorm2d, BatchNormConfig};

use crate::backbone::{FreezeGroup, ParamKind, Parameter};
use crate::error::Result;

/// Appends one parameter with the full key `prefix.name`.
pub(crate) fn push(
    out: &mut Vec<Parameter>,
    prefix: &str,
    name: &str,
    tensor: &Tensor,
    kind: ParamKind,
    group: FreezeGroup,
) {
    out.push(Parameter {
        name: format!("{prefix}.{name}"),
        tensor: tensor.clone(),
        kind,
        group,
    });
}

/// A convolution (rtb-nn's im2col/GEMM `conv2d`) with PyTorch keys `weight` and `bias`.
#[derive(Debug, Clone)]
pub(crate) struct Conv {
    prefix: String,
    inner: Conv2d,
}

impl Conv {
    /// Weights initialised like torchvision's ResNet (Kaiming normal, fan-out, ReLU) when `vb`
    /// creates them.
    pub(crate) fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        cfg: Conv2dConfig,
        bias: bool,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        let fan_out = (out_channels * kernel * kernel) as f64;
        let weight = vb.get_with_hints(
            (out_channels, in_channels / cfg.groups, kernel, kernel),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: (2.0 / fan_out).sqrt(),
            },
        )?;
        let bias = if bias {
            Some(vb.get_with_hints(out_channels, "bias", Init::Const(0.0))?)
        } else {
            None
        };
        Ok(Self {
            prefix: vb.prefix(),
            inner: Conv2d::from_tensors(weight, bias, cfg),
        })
    }

    /// Like [`Conv::new`] with an explicit weight init (the bias, if any, starts at zero):
    /// timm's ConvNeXt draws convolution weights from N(0, 0.02²).
    pub(crate) fn new_with_init(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        cfg: Conv2dConfig,
        bias: bool,
        weight_init: Init,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        let weight = vb.get_with_hints(
            (out_channels, in_channels / cfg.groups, kernel, kernel),
            "weight",
            weight_init,
        )?;
        let bias = if bias {
            Some(vb.get_with_hints(out_channels, "bias", Init::Const(0.0))?)
        } else {
            None
        };
        Ok(Self {
            prefix: vb.prefix(),
            inner: Conv2d::from_tensors(weight, bias, cfg),
        })
    }

    pub(crate) fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(self.inner.forward(xs)?)
    }

    pub(crate) fn params(&self, group: FreezeGroup, out: &mut Vec<Parameter>) {
        push(
            out,
            &self.prefix,
            "weight",
            self.inner.weight(),
            ParamKind::Weight,
            group,
        );
        if let Some(bias) = self.inner.bias() {
            push(out, &self.prefix, "bias", bias, ParamKind::Bias, group);
        }
    }
}

/// BatchNorm2d (rtb-nn's, which trains) with keys `weight`, `bias`, `running_mean`,
/// `running_var`; the mode is chosen per call.
#[derive(Debug, Clone)]
pub(crate) struct Bn {
    prefix: String,
    weight: Tensor,
    bias: Tensor,
    inner: BatchNorm2d,
}

impl Bn {
    pub(crate) fn new(channels: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        let running_mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
        let running_var = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
        let inner = BatchNorm2d::from_tensors(
            Some(weight.clone()),
            Some(bias.clone()),
            running_mean,
            running_var,
            BatchNormConfig::default(),
        )?;
        Ok(Self {
            prefix: vb.prefix(),
            weight,
            bias,
            inner,
        })
    }

    /// `batch_stats`: train mode (batch statistics, running statistics updated).
    pub(crate) fn forward(&self, xs: &Tensor, batch_stats: bool) -> Result<Tensor> {
        Ok(if batch_stats {
            self.inner.forward_train(xs)?
        } else {
            self.inner.forward_eval(xs)?
        })
    }

    pub(crate) fn params(&self, group: FreezeGroup, out: &mut Vec<Parameter>) {
        push(
            out,
            &self.prefix,
            "weight",
            &self.weight,
            ParamKind::NormWeight,
            group,
        );
        push(
            out,
            &self.prefix,
            "bias",
            &self.bias,
            ParamKind::NormBias,
            group,
        );
        push(
            out,
            &self.prefix,
            "running_mean",
            self.inner.running_mean(),
            ParamKind::RunningMean,
            group,
        );
        push(
            out,
            &self.prefix,
            "running_var",
            self.inner.running_var(),
            ParamKind::RunningVar,
            group,
        );
    }
}

/// A linear layer `x·Wᵀ + b` over the last dimension, keys `weight` `[out, in]` and `bias`.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    prefix: String,
    weight: Tensor,
    bias: Option<Tensor>,
}

/// How a [`Linear`] is initialised when a `VarBuilder` creates it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LinearInit {
    /// timm's transformer init: truncated-normal-like N(0, 0.02²) weight, zero bias.
    Transformer,
    /// PyTorch's `nn.Linear` default: uniform ±1/√fan_in for weight and bias.
    Torch,
}

impl Linear {
    pub(crate) fn new(
        in_features: usize,
        out_features: usize,
        bias: bool,
        init: LinearInit,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        let bound = 1.0 / (in_features as f64).sqrt();
        let (weight_init, bias_init) = match init {
            LinearInit::Transformer => (
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
                Init::Const(0.0),
            ),
            LinearInit::Torch => (
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            ),
        };
        let weight = vb.get_with_hints((out_features, in_features), "weight", weight_init)?;
        let bias = if bias {
            Some(vb.get_with_hints(out_features, "bias", bias_init)?)
        } else {
            None
        };
        Ok(Self {
            prefix: vb.prefix(),
            weight,
            bias,
        })
    }

    /// `xs` is `[..., in]` (rtb-nn's linear op: one graph node with its own backward).
    pub(crate) fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(rtb_nn::ops::linear::linear(
            xs,
            &self.weight,
            self.bias.as_ref(),
        )?)
    }

    pub(crate) fn params(&self, group: FreezeGroup, out: &mut Vec<Parameter>) {
        push(
            out,
            &self.prefix,
            "weight",
            &self.weight,
            ParamKind::Weight,
            group,
        );
        if let Some(bias) = &self.bias {
            push(out, &self.prefix, "bias", bias, ParamKind::Bias, group);
        }
    }
}

/// Layer norm over the last dimension (rtb-nn's, which has a backward), keys `weight`, `bias`.
#[derive(Debug, Clone)]
pub(crate) struct Ln {
    prefix: String,
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl Ln {
    pub(crate) fn new(features: usize, eps: f64, vb: &VarBuilder<'_>) -> Result<Self> {
        Ok(Self {
            prefix: vb.prefix(),
            weight: vb.get_with_hints(features, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(features, "bias", Init::Const(0.0))?,
            eps,
        })
    }

    pub(crate) fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(rtb_nn::ops::norm::layer_norm(
            xs,
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
        )?)
    }

    /// Channels-first layer norm of `[N, C, H, W]` over `C` (timm's `LayerNorm2d`).
    pub(crate) fn forward_nchw(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(rtb_nn::ops::norm::layer_norm2d(
            xs,
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
        )?)
    }

    pub(crate) fn params(&self, group: FreezeGroup, out: &mut Vec<Parameter>) {
        push(
            out,
            &self.prefix,
            "weight",
            &self.weight,
            ParamKind::NormWeight,
            group,
        );
        push(
            out,
            &self.prefix,
            "bias",
            &self.bias,
            ParamKind::NormBias,
            group,
        );
    }
}
