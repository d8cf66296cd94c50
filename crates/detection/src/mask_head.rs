//! The mask branch of Mask R-CNN: torchvision's `MaskRCNNHeads` + `MaskRCNNPredictor` and
//! mmdetection's `FCNMaskHead` (the same computation), the mask targets of positive
//! proposals ([`mask_targets`]) and the mask loss ([`mask_loss`]).
//!
//! The head maps pooled RoIs `[K, C, 14, 14]` through four 3×3 convolutions (padding 1,
//! 256 channels, ReLU), a 2×2 stride-2 transposed convolution (ReLU) and a 1×1 convolution to
//! per-class logits `[K, n, 28, 28]`. Where the references differ:
//!
//! | | mmdet `FCNMaskHead` | torchvision |
//! |---|---|---|
//! | keys (under `roi_head.` / `roi_heads.`) | `mask_head.convs.i.conv`, `mask_head.upsample`, `mask_head.conv_logits` | `mask_head.i.0`, `mask_predictor.conv5_mask`, `mask_predictor.mask_fcn_logits` |
//! | logits `n` | `C` (foreground only) | `C + 1` (background channel, never trained) |
//! | init | Kaiming-normal (fan-out, ReLU), biases 0 | convs Kaiming-normal (fan-out, ReLU), biases 0 |
//!
//! torchvision checkpoints saved before 0.13 name the convolutions `mask_head.mask_fcn{i+1}`;
//! [`torchvision_legacy_key`] renames them.
//!
//! **Mask targets differ** between the references (both RoIAlign the binary GT mask of each
//! positive's matched ground truth onto the proposal at 28×28, spatial scale 1):
//!
//! | | mmdet 2.x `mask_target` (`BitmapMasks.crop_and_resize`) | torchvision `project_masks_on_boxes` |
//! |---|---|---|
//! | proposal | clipped to the mask's `[0, W] × [0, H]` first | as is |
//! | RoIAlign | `aligned=True`, sampling ratio 0 | `aligned=False`, sampling ratio 0 (its default −1) |
//! | result | binarised at `≥ 0.5` | soft (fractions in `[0, 1]`) |
//!
//! The loss is the same in both: binary cross-entropy with logits between the channel of each
//! positive's class and its target, averaged over all elements (0 with no positives, still
//! connected to the graph).

use candle_core::{DType, Module, Tensor};
use candle_nn::{Init, VarBuilder};
use rtb_nn::conv::{Conv2d, Conv2dConfig};
use rtb_nn::deconv::ConvTranspose2d;
use rtb_nn::loss::{BceWithLogitsOptions, binary_cross_entropy_with_logits};
use rtb_nn::ops::activation::relu;
use rtb_nn::roi_align::{RoiAlignConfig, roi_align};

use crate::Flavor;
use crate::error::{Result, config, shape};

/// Settings of the mask head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskHeadConfig {
    /// Whose keys, logit channels and initialisation.
    pub flavor: Flavor,
    /// Channels of the pooled features.
    pub in_channels: usize,
    /// Channels of the four convolutions and the transposed convolution (256).
    pub conv_channels: usize,
    /// Number of 3×3 convolutions (4).
    pub num_convs: usize,
    /// Foreground classes (80 on COCO), background not counted.
    pub num_classes: usize,
}

impl MaskHeadConfig {
    /// Mask R-CNN's mask head: 4 convolutions of 256 channels.
    pub fn mask_rcnn(flavor: Flavor, in_channels: usize, num_classes: usize) -> Self {
        Self {
            flavor,
            in_channels,
            conv_channels: 256,
            num_convs: 4,
            num_classes,
        }
    }

    /// With convolutions of `conv_channels` (slim heads for the mini study).
    pub fn with_conv_channels(mut self, conv_channels: usize) -> Self {
        self.conv_channels = conv_channels;
        self
    }

    /// Logit channels: `C + 1` for torchvision, `C` for mmdet.
    pub fn logit_channels(&self) -> usize {
        match self.flavor {
            Flavor::Torchvision => self.num_classes + 1,
            Flavor::Mmdet => self.num_classes,
        }
    }

    /// The logit channel of 0-based foreground class `label`.
    pub fn channel_of(&self, label: usize) -> usize {
        match self.flavor {
            Flavor::Torchvision => label + 1,
            Flavor::Mmdet => label,
        }
    }
}

/// Side of the pooled RoIs the mask head reads (14; its logits are twice that).
pub const POOL_SIZE: usize = 14;

/// The mask head and predictor.
#[derive(Debug, Clone)]
pub struct MaskHead {
    convs: Vec<Conv2d>,
    upsample: ConvTranspose2d,
    logits: Conv2d,
    cfg: MaskHeadConfig,
}

impl MaskHead {
    /// A head with weights from `vb`, the RoI heads' prefix (torchvision `roi_heads`, mmdet
    /// `roi_head`); names in the module docs.
    pub fn new(cfg: &MaskHeadConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        for (field, value) in [
            ("in_channels", cfg.in_channels),
            ("conv_channels", cfg.conv_channels),
            ("num_classes", cfg.num_classes),
        ] {
            if value == 0 {
                return Err(config("MaskHead::new", field, "must be positive, got 0"));
            }
        }
        let ch = cfg.conv_channels;
        let mut convs = Vec::with_capacity(cfg.num_convs);
        let (up_vb, logits_vb) = match cfg.flavor {
            Flavor::Torchvision => (
                vb.pp("mask_predictor.conv5_mask"),
                vb.pp("mask_predictor.mask_fcn_logits"),
            ),
            Flavor::Mmdet => (vb.pp("mask_head.upsample"), vb.pp("mask_head.conv_logits")),
        };
        for i in 0..cfg.num_convs {
            let conv_vb = match cfg.flavor {
                Flavor::Torchvision => vb.pp(format!("mask_head.{i}.0")),
                Flavor::Mmdet => vb.pp(format!("mask_head.convs.{i}.conv")),
            };
            let c_in = if i == 0 { cfg.in_channels } else { ch };
            convs.push(conv(c_in, ch, 3, &conv_vb)?);
        }
        let up_in = if cfg.num_convs == 0 {
            cfg.in_channels
        } else {
            ch
        };
        // Kaiming-normal, fan-out as PyTorch computes it for a transposed convolution's
        // weight [C_in, C_out, 2, 2]: size(0)·k·k.
        let std = (2.0 / (up_in * 4) as f64).sqrt();
        let up_weight = up_vb.get_with_hints(
            (up_in, ch, 2, 2),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: std,
            },
        )?;
        let up_bias = up_vb.get_with_hints(ch, "bias", Init::Const(0.0))?;
        Ok(Self {
            convs,
            upsample: ConvTranspose2d::from_tensors(up_weight, Some(up_bias), 2),
            logits: conv(ch, cfg.logit_channels(), 1, &logits_vb)?,
            cfg: *cfg,
        })
    }

    /// The head's settings.
    pub fn config(&self) -> &MaskHeadConfig {
        &self.cfg
    }

    /// Logits `[K, n, 2S, 2S]` of pooled RoIs `[K, C_in, S, S]` (`n` as
    /// [`MaskHeadConfig::logit_channels`]).
    pub fn forward(&self, pooled: &Tensor) -> Result<Tensor> {
        match pooled.dims() {
            [_, c, _, _] if *c == self.cfg.in_channels => {}
            dims => {
                return Err(shape(
                    "MaskHead::forward",
                    "pooled",
                    format!("[K, {}, S, S]", self.cfg.in_channels),
                    dims,
                ));
            }
        }
        let mut xs = pooled.clone();
        for conv in &self.convs {
            xs = relu(&conv.forward(&xs)?)?;
        }
        let xs = relu(&self.upsample.forward(&xs)?)?;
        // In f32 under autocast (the loss and the pasting read them).
        Ok(rtb_nn::autocast::widen(&self.logits.forward(&xs)?)?)
    }
}

/// Kaiming-normal (fan-out, ReLU) weights, zero bias, padding `k / 2`.
fn conv(c_in: usize, c_out: usize, k: usize, vb: &VarBuilder<'_>) -> Result<Conv2d> {
    let std = (2.0 / (c_out * k * k) as f64).sqrt();
    let weight = vb.get_with_hints(
        (c_out, c_in, k, k),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: std,
        },
    )?;
    let bias = vb.get_with_hints(c_out, "bias", Init::Const(0.0))?;
    Ok(Conv2d::from_tensors(
        weight,
        Some(bias),
        Conv2dConfig::default().with_padding(k / 2),
    ))
}

/// The current name of a torchvision key saved before torchvision 0.13
/// (`…mask_head.mask_fcn{i}.{weight,bias}` → `…mask_head.{i−1}.0.{weight,bias}`); other keys
/// unchanged.
pub fn torchvision_legacy_key(key: &str) -> String {
    if let Some(pos) = key.find("mask_head.mask_fcn") {
        let (head, rest) = key.split_at(pos + "mask_head.".len());
        let rest = &rest["mask_fcn".len()..];
        if let Some((digits, tail)) = rest.split_once('.')
            && let Ok(i) = digits.parse::<usize>()
            && i >= 1
        {
            return format!("{head}{}.0.{tail}", i - 1);
        }
    }
    key.to_string()
}

/// Mask targets `[P, size, size]` (f32) of the positive `proposals` `[P, 4]` of one image:
/// each one's matched ground truth `matched_gt[p]` (an index into `gt_masks` `[G, H, W]`,
/// binary, any dtype) RoI-aligned onto the proposal as `flavor` does (module docs).
pub fn mask_targets(
    flavor: Flavor,
    gt_masks: &Tensor,
    proposals: &Tensor,
    matched_gt: &[usize],
    size: usize,
) -> Result<Tensor> {
    const OP: &str = "mask_targets";
    let (g, h, w) = match gt_masks.dims() {
        [g, h, w] => (*g, *h, *w),
        dims => return Err(shape(OP, "gt_masks", "[G, H, W]", dims)),
    };
    let p = match proposals.dims() {
        [p, 4] => *p,
        dims => return Err(shape(OP, "proposals", "[P, 4] (x1, y1, x2, y2)", dims)),
    };
    if matched_gt.len() != p || matched_gt.iter().any(|&m| m >= g) {
        return Err(shape(
            OP,
            "matched_gt",
            format!("{p} indices below {g} (one per proposal)"),
            matched_gt,
        ));
    }
    if size == 0 {
        return Err(config(OP, "size", "must be positive, got 0"));
    }
    let device = proposals.device();
    if p == 0 {
        return Ok(Tensor::zeros((0, size, size), DType::F32, device)?);
    }
    let boxes = proposals.to_dtype(DType::F32)?;
    let boxes = match flavor {
        Flavor::Torchvision => boxes,
        Flavor::Mmdet => {
            let xs = boxes.narrow(1, 0, 1)?.clamp(0f32, w as f32)?;
            let ys = boxes.narrow(1, 1, 1)?.clamp(0f32, h as f32)?;
            let xe = boxes.narrow(1, 2, 1)?.clamp(0f32, w as f32)?;
            let ye = boxes.narrow(1, 3, 1)?.clamp(0f32, h as f32)?;
            Tensor::cat(&[xs, ys, xe, ye], 1)?
        }
    };
    let index: Vec<f32> = matched_gt.iter().map(|&m| m as f32).collect();
    let index = Tensor::from_vec(index, (p, 1), device)?;
    let rois = Tensor::cat(&[index, boxes], 1)?;
    let masks = gt_masks
        .to_dtype(DType::F32)?
        .to_device(device)?
        .reshape((g, 1, h, w))?;
    let cfg = RoiAlignConfig::new(size, size)
        .with_sampling_ratio(0)
        .with_aligned(flavor == Flavor::Mmdet);
    let targets = roi_align(&masks, &rois, &cfg)?.reshape((p, size, size))?;
    Ok(match flavor {
        Flavor::Torchvision => targets,
        Flavor::Mmdet => targets.ge(0.5f32)?.to_dtype(DType::F32)?,
    })
}

/// The mask loss: binary cross-entropy with logits between each positive's class channel of
/// `mask_logits` `[P, n, M, M]` (channel `cfg.channel_of(labels[p])`) and `targets`
/// `[P, M, M]`, averaged over all elements; `mask_logits.sum() · 0` when `P = 0`.
pub fn mask_loss(
    cfg: &MaskHeadConfig,
    mask_logits: &Tensor,
    labels: &[usize],
    targets: &Tensor,
) -> Result<Tensor> {
    const OP: &str = "mask_loss";
    let (p, n, m1, m2) = match mask_logits.dims() {
        [p, n, m1, m2] if *n == cfg.logit_channels() => (*p, *n, *m1, *m2),
        dims => {
            return Err(shape(
                OP,
                "mask_logits",
                format!("[P, {}, M, M]", cfg.logit_channels()),
                dims,
            ));
        }
    };
    if labels.len() != p || labels.iter().any(|&l| l >= cfg.num_classes) {
        return Err(shape(
            OP,
            "labels",
            format!("{p} foreground classes below {}", cfg.num_classes),
            labels,
        ));
    }
    if targets.dims() != [p, m1, m2] {
        return Err(shape(
            OP,
            "targets",
            format!("[{p}, {m1}, {m2}]"),
            targets.dims(),
        ));
    }
    if p == 0 {
        return Ok((mask_logits.sum_all()? * 0.0)?);
    }
    let rows: Vec<u32> = labels
        .iter()
        .enumerate()
        .map(|(i, &l)| (i * n + cfg.channel_of(l)) as u32)
        .collect();
    let rows = Tensor::new(rows.as_slice(), mask_logits.device())?;
    let picked = mask_logits
        .reshape((p * n, m1, m2))?
        .index_select(&rows, 0)?;
    Ok(binary_cross_entropy_with_logits(
        &picked,
        targets,
        &BceWithLogitsOptions::default(),
    )?)
}
