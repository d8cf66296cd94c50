//! UperNet: any [`Backbone`]'s C2..C5 → [`UperHead`] (and, in training, the auxiliary
//! [`FcnHead`] on C4), as mmseg's `EncoderDecoder` with `upernet_*.py` and transformers'
//! `UperNetForSemanticSegmentation` run it.
//!
//! - [`UperNet::forward_train`]: logits of each head upsampled (bilinear, align_corners=False)
//!   to the labels' size, cross-entropy with ignore index 255, the auxiliary loss weighted by
//!   0.4 ([`Losses`]). mmseg's `CrossEntropyLoss` averages over *all* pixels, ignored ones
//!   counting zero (`avg_non_ignore=False`, its default and what its UperNet configs use);
//!   [`UperNetConfig::avg_non_ignore`] averages over valid pixels instead (transformers' loss).
//! - [`UperNet::forward`]: whole-image inference, logits at the input's size;
//!   [`UperNet::slide_inference`] (in [`crate::inference`]): mmseg's sliding window.
//! - Regimes ([`Regime`]): fixed-feature (backbone frozen with [`Freeze::all`], run without a
//!   graph) and full-network (everything trains).
//!
//! Keys are transformers': `backbone.<canonical rtb-models keys>`, `decode_head.…`,
//! `auxiliary_head.…`.

use candle_core::{DType, Tensor, Var};
use candle_nn::VarBuilder;
use rtb_models::{ArchConfig, Backbone, Features, Freeze, Mode};
use rtb_nn::loss::{CrossEntropyOptions, Reduction, cross_entropy};
use rtb_nn::ops::resize::resize_bilinear;
use rtb_nn::optim::ParamRole;

use crate::error::{Result, config_error, input_error};
use crate::fcn_head::FcnHead;
use crate::params::{NamedTensor, mix_seed};
use crate::uper_head::UperHead;

/// The auxiliary FCN head's settings (mmseg's `auxiliary_head` of `upernet_*.py`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuxiliaryConfig {
    /// Which feature level it reads (2: C4).
    pub in_index: usize,
    /// Width of its convolutions (256).
    pub channels: usize,
    /// Number of 3×3 convolutions (1).
    pub num_convs: usize,
    /// Concatenate the input back before the classifier (false).
    pub concat_input: bool,
    /// Dropout2d before its classifier (0.1).
    pub dropout: f64,
    /// Weight of its loss (0.4).
    pub loss_weight: f64,
}

impl AuxiliaryConfig {
    /// mmseg's UperNet auxiliary head: C4, one 3×3 convolution of 256, dropout 0.1, weight 0.4.
    pub fn mmseg() -> Self {
        Self {
            in_index: 2,
            channels: 256,
            num_convs: 1,
            concat_input: false,
            dropout: 0.1,
            loss_weight: 0.4,
        }
    }
}

/// UperNet's settings; the backbone is given separately.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UperNetConfig {
    /// Width of the decode head (512).
    pub channels: usize,
    /// PPM pool sizes ((1, 2, 3, 6)).
    pub pool_scales: Vec<usize>,
    /// Number of classes (150 for ADE20K).
    pub num_classes: usize,
    /// Dropout2d before the decode head's classifier (0.1).
    pub dropout: f64,
    /// The auxiliary head, if any.
    pub auxiliary: Option<AuxiliaryConfig>,
    /// Label value that contributes no loss (255).
    pub ignore_index: u32,
    /// Average the loss over valid pixels only (transformers); false averages over all
    /// pixels with ignored ones counting zero (mmseg's default, `avg_non_ignore=False`).
    pub avg_non_ignore: bool,
}

impl UperNetConfig {
    /// mmseg's `upernet_r50` / `upernet_swin` on ADE20K: 512 channels, pools (1, 2, 3, 6),
    /// 150 classes, dropout 0.1, auxiliary head on C4 (256, weight 0.4), ignore index 255.
    pub fn ade20k() -> Self {
        Self {
            channels: 512,
            pool_scales: vec![1, 2, 3, 6],
            num_classes: 150,
            dropout: 0.1,
            auxiliary: Some(AuxiliaryConfig::mmseg()),
            ignore_index: 255,
            avg_non_ignore: false,
        }
    }

    /// A tiny head for tests and examples: 16 channels, auxiliary of 8, 5 classes.
    pub fn tiny() -> Self {
        Self {
            channels: 16,
            pool_scales: vec![1, 2, 3, 6],
            num_classes: 5,
            dropout: 0.1,
            auxiliary: Some(AuxiliaryConfig {
                channels: 8,
                ..AuxiliaryConfig::mmseg()
            }),
            ignore_index: 255,
            avg_non_ignore: false,
        }
    }

    /// The same with `num_classes` classes.
    pub fn with_num_classes(mut self, num_classes: usize) -> Self {
        self.num_classes = num_classes;
        self
    }

    /// Checks the values that cannot build a model.
    pub fn check(&self) -> Result<()> {
        if self.channels == 0 {
            return Err(config_error("channels", "must be positive"));
        }
        if self.num_classes == 0 || self.num_classes > 256 {
            return Err(config_error(
                "num_classes",
                format!(
                    "must be in 1..=256 (label maps are 8-bit), got {}",
                    self.num_classes
                ),
            ));
        }
        if self.pool_scales.is_empty() || self.pool_scales.contains(&0) {
            return Err(config_error(
                "pool_scales",
                format!("positive sizes are needed, got {:?}", self.pool_scales),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(config_error(
                "dropout",
                format!("must be in [0, 1), got {}", self.dropout),
            ));
        }
        if let Some(aux) = &self.auxiliary {
            if aux.in_index > 3 {
                return Err(config_error(
                    "auxiliary.in_index",
                    format!("a level of C2..C5 (0..=3) is needed, got {}", aux.in_index),
                ));
            }
            if aux.channels == 0 {
                return Err(config_error("auxiliary.channels", "must be positive"));
            }
            if !(0.0..1.0).contains(&aux.dropout) {
                return Err(config_error(
                    "auxiliary.dropout",
                    format!("must be in [0, 1), got {}", aux.dropout),
                ));
            }
            if !aux.loss_weight.is_finite() || aux.loss_weight < 0.0 {
                return Err(config_error(
                    "auxiliary.loss_weight",
                    format!("must be finite and ≥ 0, got {}", aux.loss_weight),
                ));
            }
        }
        Ok(())
    }
}

/// What trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Regime {
    /// The backbone is frozen ([`Freeze::all`]) and runs without a gradient graph; the heads
    /// train.
    FixedFeature,
    /// Backbone and heads train (the backbone's freezing is [`Freeze::none`] unless changed
    /// afterwards through [`UperNet::backbone_mut`]).
    FullNetwork,
}

/// The losses of one training step (scalars).
#[derive(Debug, Clone)]
pub struct Losses {
    /// The decode head's cross-entropy (mmseg's `decode.loss_ce`).
    pub decode: Tensor,
    /// The auxiliary head's cross-entropy times its weight (mmseg's `aux.loss_ce`, which is
    /// logged already weighted), when there is an auxiliary head.
    pub auxiliary: Option<Tensor>,
    /// `decode + auxiliary`: what to differentiate.
    pub total: Tensor,
}

/// Unit indices of the heads' dropout draws (the backbone uses the step seed itself).
const DECODE_DROPOUT_UNIT: u64 = 1 << 40;
const AUX_DROPOUT_UNIT: u64 = (1 << 40) + 1;

/// An UperNet segmenter.
#[derive(Debug)]
pub struct UperNet {
    cfg: UperNetConfig,
    backbone: Box<dyn Backbone>,
    decode_head: UperHead,
    auxiliary_head: Option<FcnHead>,
    regime: Regime,
}

impl UperNet {
    /// Heads from `vb` (keys `decode_head.…`, `auxiliary_head.…` under `vb`'s prefix) over
    /// `backbone`'s C2..C5. The regime starts as [`Regime::FullNetwork`] with the backbone's
    /// freezing left as it is.
    pub fn new(
        cfg: &UperNetConfig,
        backbone: Box<dyn Backbone>,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        cfg.check()?;
        let in_channels = backbone.out_channels();
        let decode_head = UperHead::new(
            &in_channels,
            cfg.channels,
            &cfg.pool_scales,
            cfg.num_classes,
            cfg.dropout,
            &vb.pp("decode_head"),
        )?;
        let auxiliary_head = match &cfg.auxiliary {
            Some(aux) => Some(FcnHead::new(
                in_channels[aux.in_index],
                aux.channels,
                aux.num_convs,
                aux.concat_input,
                (cfg.num_classes, aux.dropout),
                &vb.pp("auxiliary_head"),
            )?),
            None => None,
        };
        Ok(Self {
            cfg: cfg.clone(),
            backbone,
            decode_head,
            auxiliary_head,
            regime: Regime::FullNetwork,
        })
    }

    /// The backbone `arch` from `vb.pp("backbone")` (canonical keys) and the heads from `vb`:
    /// one `VarBuilder` holds the whole model, e.g. [`rtb_models::init::trainable_builder`]
    /// over [`crate::weights::UperNetWeights::state_dict`].
    pub fn build(cfg: &UperNetConfig, arch: &ArchConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        let backbone = arch.build(&vb.pp("backbone"))?;
        Self::new(cfg, backbone, vb)
    }

    /// The configuration.
    pub fn config(&self) -> &UperNetConfig {
        &self.cfg
    }

    /// The backbone.
    pub fn backbone(&self) -> &dyn Backbone {
        self.backbone.as_ref()
    }

    /// The backbone, to change its freezing.
    pub fn backbone_mut(&mut self) -> &mut dyn Backbone {
        self.backbone.as_mut()
    }

    /// The decode head.
    pub fn decode_head(&self) -> &UperHead {
        &self.decode_head
    }

    /// The auxiliary head, if configured.
    pub fn auxiliary_head(&self) -> Option<&FcnHead> {
        self.auxiliary_head.as_ref()
    }

    /// The current regime.
    pub fn regime(&self) -> Regime {
        self.regime
    }

    /// Sets the regime: fixed-feature freezes the whole backbone ([`Freeze::all`]),
    /// full-network unfreezes it ([`Freeze::none`]).
    pub fn set_regime(&mut self, regime: Regime) {
        self.regime = regime;
        self.backbone.set_freeze(match regime {
            Regime::FixedFeature => Freeze::all(),
            Regime::FullNetwork => Freeze::none(),
        });
    }

    /// C2..C5 of a normalised `[N, 3, H, W]` batch. In the fixed-feature regime the backbone
    /// always runs as [`Mode::Inference`] under [`Mode::Train`] (no graph, running
    /// statistics); otherwise under `mode`.
    pub fn features(&self, images: &Tensor, mode: Mode) -> Result<Features> {
        let mode = match (self.regime, mode) {
            (Regime::FixedFeature, Mode::Train { .. }) => Mode::Inference,
            (_, mode) => mode,
        };
        Ok(self.backbone.forward(images, mode)?.features)
    }

    /// The heads' logits at stride 4 (decode) and at the auxiliary level's stride, from
    /// features; `seed` draws the dropout masks under [`Mode::Train`].
    pub fn head_logits(
        &self,
        features: &Features,
        mode: Mode,
        seed: u64,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let decode = self.decode_head.forward(
            &features.levels,
            mode,
            mix_seed(seed, DECODE_DROPOUT_UNIT),
        )?;
        let auxiliary = match (&self.auxiliary_head, &self.cfg.auxiliary) {
            (Some(head), Some(aux)) => Some(head.forward(
                &features.levels[aux.in_index],
                mode,
                mix_seed(seed, AUX_DROPOUT_UNIT),
            )?),
            _ => None,
        };
        Ok((decode, auxiliary))
    }

    fn check_images(&self, images: &Tensor) -> Result<(usize, usize, usize)> {
        match images.dims() {
            &[n, 3, h, w] if n > 0 && h > 0 && w > 0 => Ok((n, h, w)),
            dims => Err(input_error("images", dims, "expected a [N, 3, H, W] batch")),
        }
    }

    /// One training step's losses on a normalised `[N, 3, H, W]` batch with integer labels
    /// `[N, h, w]` (u8, u32 or i64; values below `num_classes` or the ignore index). Heights
    /// and widths must be multiples of the backbone's size divisor (pad crops first, labels
    /// with 255). The backbone runs under [`Mode::Train`] with `seed` (or without a graph in
    /// the fixed-feature regime), the heads' BatchNorms use batch statistics, and the dropout
    /// masks derive from `seed`. A batch needs at least two images: the 1×1 pooling branch's
    /// BatchNorm needs more than one value per channel (PyTorch refuses it too; mmseg's
    /// SyncBN sees the whole multi-GPU batch).
    pub fn forward_train(&self, images: &Tensor, labels: &Tensor, seed: u64) -> Result<Losses> {
        let (n, h, w) = self.check_images(images)?;
        let divisor = self.backbone.size_divisor().max(1);
        if h % divisor != 0 || w % divisor != 0 {
            return Err(input_error(
                "images",
                images.dims(),
                format!("training sizes must be multiples of {divisor} (pad the crop)"),
            ));
        }
        let label_size = match labels.dims() {
            &[ln, lh, lw] if ln == n && lh > 0 && lw > 0 => (lh, lw),
            dims => {
                return Err(input_error(
                    "labels",
                    dims,
                    format!("expected [{n}, H, W] class indices"),
                ));
            }
        };
        if labels.dtype().is_float() {
            return Err(input_error(
                "labels",
                labels.dims(),
                format!("class indices are integers, got {:?}", labels.dtype()),
            ));
        }
        self.check_label_values(labels)?;
        let mode = Mode::Train { seed };
        let features = self.features(images, mode)?;
        let (decode, auxiliary) = self.head_logits(&features, mode, seed)?;
        let decode = self.loss(&decode, labels, label_size)?;
        let auxiliary = match (auxiliary, &self.cfg.auxiliary) {
            (Some(logits), Some(aux)) => {
                Some((self.loss(&logits, labels, label_size)? * aux.loss_weight)?)
            }
            _ => None,
        };
        let total = match &auxiliary {
            Some(aux) => (&decode + aux)?,
            None => decode.clone(),
        };
        Ok(Losses {
            decode,
            auxiliary,
            total,
        })
    }

    /// Every label is a class index or the ignore index.
    fn check_label_values(&self, labels: &Tensor) -> Result<()> {
        let flat = labels.flatten_all()?.to_dtype(DType::I64)?;
        let ignore = i64::from(self.cfg.ignore_index);
        let valid = flat.ne(ignore)?;
        let masked = valid.where_cond(&flat, &flat.zeros_like()?)?;
        let (lowest, highest) = (
            masked.min(0)?.to_scalar::<i64>()?,
            masked.max(0)?.to_scalar::<i64>()?,
        );
        let classes = self.cfg.num_classes as i64;
        if lowest < 0 || highest >= classes {
            let bad = if lowest < 0 { lowest } else { highest };
            return Err(input_error(
                "labels",
                labels.dims(),
                format!(
                    "label value {bad} is neither a class (0..{classes}) nor the ignore index {ignore}"
                ),
            ));
        }
        Ok(())
    }

    /// mmseg's `losses()`: logits upsampled to the labels' size, cross-entropy with the
    /// ignore index, averaged over all pixels (or the valid ones with `avg_non_ignore`).
    fn loss(&self, logits: &Tensor, labels: &Tensor, size: (usize, usize)) -> Result<Tensor> {
        // Under autocast the logits are upsampled in f32, as the loss reads them.
        let logits = resize_bilinear(&rtb_nn::autocast::widen(logits)?, size, false)?;
        let opts = CrossEntropyOptions::default()
            .with_ignore_index(i64::from(self.cfg.ignore_index))
            .with_reduction(if self.cfg.avg_non_ignore {
                Reduction::Mean
            } else {
                Reduction::None
            });
        let loss = cross_entropy(&logits, labels, &opts)?;
        Ok(if self.cfg.avg_non_ignore {
            loss
        } else {
            loss.mean_all()?
        })
    }

    /// Logits `[N, num_classes, H, W]` at the input's size, without a gradient graph
    /// (whole-image inference, [`Mode::Inference`]). Sizes that are not multiples of the
    /// backbone's size divisor are zero-padded at the bottom and right, the logits resized
    /// to the padded size and cropped back (mmseg 1.x's `size_divisor` padding and
    /// `postprocess_result`).
    pub fn forward(&self, images: &Tensor) -> Result<Tensor> {
        self.logits(images, Mode::Inference)
    }

    /// [`forward`](Self::forward) under any mode: [`Mode::Eval`] keeps the gradient graph
    /// (gradients with respect to inputs or weights, running statistics), [`Mode::Train`]
    /// normalises with batch statistics and draws dropout from its seed.
    pub fn logits(&self, images: &Tensor, mode: Mode) -> Result<Tensor> {
        let (_, h, w) = self.check_images(images)?;
        let divisor = self.backbone.size_divisor().max(1);
        let (ph, pw) = (h.div_ceil(divisor) * divisor, w.div_ceil(divisor) * divisor);
        let padded = if (ph, pw) == (h, w) {
            images.clone()
        } else {
            images
                .pad_with_zeros(2, 0, ph - h)?
                .pad_with_zeros(3, 0, pw - w)?
        };
        let features = self.features(&padded, mode)?;
        let seed = match mode {
            Mode::Train { seed } => seed,
            _ => 0,
        };
        let (decode, _) = self.head_logits(&features, mode, seed)?;
        let logits = resize_bilinear(&decode, (ph, pw), false)?;
        Ok(if (ph, pw) == (h, w) {
            logits
        } else {
            logits.narrow(2, 0, h)?.narrow(3, 0, w)?
        })
    }

    /// Every tensor of the heads under its full key (`decode_head.…`, `auxiliary_head.…`).
    pub fn head_parameters(&self) -> Vec<NamedTensor> {
        let mut out = self.decode_head.parameters();
        if let Some(aux) = &self.auxiliary_head {
            out.extend(aux.parameters());
        }
        out
    }

    /// Every tensor of the model: the heads', and the backbone's as `backbone.<canonical>`.
    pub fn parameters(&self) -> Vec<NamedTensor> {
        let mut out = self.head_parameters();
        out.extend(self.backbone.parameters().into_iter().map(|p| NamedTensor {
            name: backbone_key(&p.name),
            tensor: p.tensor,
            kind: p.kind,
        }));
        out
    }

    /// The variables an optimizer trains under the current regime, with their optimizer
    /// roles: the heads' weights, biases and norm parameters (never running statistics),
    /// and in the full-network regime the backbone's trainable variables
    /// (`backbone.<canonical>`) under its freezing.
    pub fn trainable_roles(&self) -> Vec<(String, Var, ParamRole)> {
        let mut out: Vec<(String, Var, ParamRole)> = self
            .head_parameters()
            .into_iter()
            .filter(|p| p.kind.is_trainable() && p.tensor.is_variable())
            .filter_map(|p| {
                let role = p.kind.role()?;
                Var::from_tensor(&p.tensor).ok().map(|v| (p.name, v, role))
            })
            .collect();
        if self.regime == Regime::FullNetwork {
            out.extend(
                self.backbone
                    .trainable_roles()
                    .into_iter()
                    .map(|(name, var, role)| (backbone_key(&name), var, role)),
            );
        }
        out
    }

    /// [`trainable_roles`](Self::trainable_roles) without the roles.
    pub fn trainable_vars(&self) -> Vec<(String, Var)> {
        self.trainable_roles()
            .into_iter()
            .map(|(name, var, _)| (name, var))
            .collect()
    }
}

/// A backbone parameter's key in the whole model: `backbone.<canonical>`. A backbone built
/// by [`UperNet::build`] (from `vb.pp("backbone")`) already names its parameters so; one
/// built on its own names them canonically.
fn backbone_key(name: &str) -> String {
    if name.starts_with("backbone.") {
        name.to_string()
    } else {
        format!("backbone.{name}")
    }
}

/// Resizes logits `[N, K, h, w]` to `(height, width)` (bilinear, align_corners=False): the
/// last step of mmseg's inference, back to the original image size.
pub fn resize_logits(logits: &Tensor, (height, width): (usize, usize)) -> Result<Tensor> {
    if logits.rank() != 4 || height == 0 || width == 0 {
        return Err(input_error(
            "logits",
            logits.dims(),
            format!("expected [N, K, h, w] logits and a positive size, got ({height}, {width})"),
        ));
    }
    Ok(resize_bilinear(logits, (height, width), false)?)
}

/// The predicted class of each pixel, `[N, K, H, W]` → `[N, H, W]` u8 (candle's `argmax`
/// over the classes). At most 256 classes.
pub fn argmax(logits: &Tensor) -> Result<Tensor> {
    match logits.dims() {
        &[_, k, _, _] if (1..=256).contains(&k) => {}
        dims => {
            return Err(input_error(
                "logits",
                dims,
                "expected [N, K, H, W] with 1 ≤ K ≤ 256 (8-bit label maps)",
            ));
        }
    }
    Ok(logits.argmax(1)?.to_dtype(DType::U8)?)
}
