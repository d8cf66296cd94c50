//! The Region Proposal Network (Ren et al., "Faster R-CNN", NeurIPS 2015): the head shared by
//! all pyramid levels and the proposal layer that turns its outputs into boxes.
//!
//! **Head** ([`RpnHead`]): a 3×3 convolution (padding 1) and ReLU, then two 1×1 convolutions:
//! objectness `[N, A, H, W]` (one logit per anchor, sigmoid) and deltas `[N, A·4, H, W]`
//! (channel `a·4 + j`). Names: torchvision `conv.0.0`, `cls_logits`, `bbox_pred` (under
//! `rpn.head.`); mmdet `rpn_conv`, `rpn_cls`, `rpn_reg` (under `rpn_head.`). Both initialise
//! weights from N(0, 0.01²) and biases to zero.
//!
//! **Proposals** ([`filter_proposals`]), per image and in eval mode:
//! 1. on each level, the `pre_nms_top_n` anchors with the highest objectness (in the anchor
//!    order `(y, x, a)` of [`crate::anchors`]; ties go to the earlier anchor);
//! 2. decode their deltas against the anchors and clip to the image's `(height, width)`;
//! 3. drop boxes narrower or lower than `min_size`, and scores below `score_threshold`;
//! 4. NMS at `nms_threshold` within each level (boxes of different levels never suppress
//!    each other), the survivors sorted by score;
//! 5. keep the best `post_nms_top_n` over the image.
//!
//! The flavors run the same steps with different settings ([`ProposalConfig`]):
//!
//! | | torchvision `filter_proposals` | mmdet 2.x `RPNHead._get_bboxes` |
//! |---|---|---|
//! | top-k | on logits (`topk`) | on sigmoid scores (`sort`) |
//! | test: pre / post | 1000 / 1000 | `nms_pre` 1000 / `max_per_img` 1000 |
//! | train: pre / post | 2000 / 2000 | 2000 / 1000 |
//! | small boxes | `w ≥ 1e-3 and h ≥ 1e-3` | none with `min_bbox_size` 0 (2.x ≥ 2.18 drop `w ≤ 0` or `h ≤ 0`) |
//! | score threshold | 0.0 | none |
//!
//! **Losses** ([`rpn_targets`], [`rpn_loss`], [`Rpn::forward_train`]), per image: every
//! anchor (none dropped at the border: torchvision never does, mmdet's `allowed_border` is
//! −1) is matched to the ground truths with [`Matcher::rpn`] (≥ 0.7 positive, < 0.3
//! negative, low-quality matches kept), 256 are sampled with at most half positive
//! ([`SamplerConfig::rpn`]), and each positive's target is its ground truth encoded against
//! it (weights 1). Over the batch's `S` sampled anchors:
//!
//! | | mmdet 2.x | torchvision |
//! |---|---|---|
//! | objectness | BCE with logits (sigmoid), summed, `/ S` | the same (`mean` over the sampled) |
//! | box | L1 of the positives' deltas, summed, `/ S` | smooth-L1 (β = 1/9), summed, `/ S` |
//!
//! Ranking logits or sigmoid scores only differs for logits whose sigmoids round to the same
//! f32 (beyond ±17), where the references break ties differently anyway. Proposals carry no
//! gradient (both references detach them).

use candle_core::{D, DType, Module, Tensor};
use candle_nn::{Init, VarBuilder};
use rtb_nn::boxes::box_iou;
use rtb_nn::conv::{Conv2d, Conv2dConfig};
use rtb_nn::loss::{
    BceWithLogitsOptions, Reduction, binary_cross_entropy_with_logits, l1_loss, smooth_l1_loss,
};
use rtb_nn::nms::batched_nms_indices_f32;

use crate::Flavor;
use crate::anchors::AnchorGenerator;
use crate::box_coder::BoxCoder;
use crate::error::{Result, config, shape};
use crate::matcher::{Match, Matcher};
use crate::sampler::{Sample, SamplerConfig, sample};

/// The RPN head's parameter names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RpnLayout {
    /// mmdetection: `rpn_conv`, `rpn_cls`, `rpn_reg`.
    #[default]
    Mmdet,
    /// torchvision: `conv.0.0`, `cls_logits`, `bbox_pred`.
    Torchvision,
}

/// The RPN head: shared 3×3 conv + ReLU, objectness and delta 1×1 convs.
#[derive(Debug, Clone)]
pub struct RpnHead {
    conv: Conv2d,
    cls: Conv2d,
    reg: Conv2d,
    num_anchors: usize,
}

/// The head's outputs on every level.
#[derive(Debug, Clone)]
pub struct RpnOutput {
    /// Objectness logits `[N, A, H_l, W_l]` per level.
    pub objectness: Vec<Tensor>,
    /// Deltas `[N, A·4, H_l, W_l]` per level.
    pub deltas: Vec<Tensor>,
}

impl RpnHead {
    /// A head over `in_channels`-channel features with `num_anchors` anchors per location,
    /// weights from `vb` under `layout`'s names.
    pub fn new(
        in_channels: usize,
        num_anchors: usize,
        layout: RpnLayout,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        if in_channels == 0 || num_anchors == 0 {
            return Err(config(
                "RpnHead::new",
                "in_channels / num_anchors",
                format!("must be positive, got {in_channels} / {num_anchors}"),
            ));
        }
        let (conv_name, cls_name, reg_name) = match layout {
            RpnLayout::Torchvision => ("conv.0.0", "cls_logits", "bbox_pred"),
            RpnLayout::Mmdet => ("rpn_conv", "rpn_cls", "rpn_reg"),
        };
        Ok(Self {
            conv: conv(in_channels, in_channels, 3, &vb.pp(conv_name))?,
            cls: conv(in_channels, num_anchors, 1, &vb.pp(cls_name))?,
            reg: conv(in_channels, 4 * num_anchors, 1, &vb.pp(reg_name))?,
            num_anchors,
        })
    }

    /// Anchors per location.
    pub fn num_anchors(&self) -> usize {
        self.num_anchors
    }

    /// Objectness and deltas of every level of `features` (`[N, C, H_l, W_l]` each).
    pub fn forward(&self, features: &[Tensor]) -> Result<RpnOutput> {
        let want = self.conv.weight().dim(1)?;
        let mut objectness = Vec::with_capacity(features.len());
        let mut deltas = Vec::with_capacity(features.len());
        for (level, xs) in features.iter().enumerate() {
            if xs.rank() != 4 || xs.dim(1)? != want {
                return Err(shape(
                    "RpnHead::forward",
                    "features",
                    format!("[N, {want}, H, W] at level {level}"),
                    xs.dims(),
                ));
            }
            let t = rtb_nn::ops::activation::relu(&self.conv.forward(xs)?)?;
            // In f32 under autocast: anchors, decoding and losses are f32.
            objectness.push(rtb_nn::autocast::widen(&self.cls.forward(&t)?)?);
            deltas.push(rtb_nn::autocast::widen(&self.reg.forward(&t)?)?);
        }
        Ok(RpnOutput { objectness, deltas })
    }
}

fn conv(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    vb: &VarBuilder<'_>,
) -> Result<Conv2d> {
    let weight = vb.get_with_hints(
        (out_channels, in_channels, kernel, kernel),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: 0.01,
        },
    )?;
    let bias = vb.get_with_hints(out_channels, "bias", Init::Const(0.0))?;
    let cfg = Conv2dConfig::default().with_padding(kernel / 2);
    Ok(Conv2d::from_tensors(weight, Some(bias), cfg))
}

/// Settings of the proposal layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProposalConfig {
    /// Top-scoring anchors kept per level before NMS.
    pub pre_nms_top_n: usize,
    /// Proposals kept per image after NMS.
    pub post_nms_top_n: usize,
    /// IoU above which NMS drops the lower-scoring box (within a level).
    pub nms_threshold: f64,
    /// Boxes with a side below this are dropped (`w ≥ min_size and h ≥ min_size` kept);
    /// `None` keeps every box (mmdet's `min_bbox_size` 0).
    pub min_size: Option<f64>,
    /// Proposals scoring below this are dropped; `None` for no threshold (mmdet).
    pub score_threshold: Option<f64>,
}

impl ProposalConfig {
    /// The test-time settings of `flavor` (table in the module docs).
    pub fn test(flavor: Flavor) -> Self {
        match flavor {
            Flavor::Torchvision => Self {
                pre_nms_top_n: 1000,
                post_nms_top_n: 1000,
                nms_threshold: 0.7,
                min_size: Some(1e-3),
                score_threshold: Some(0.0),
            },
            Flavor::Mmdet => Self {
                pre_nms_top_n: 1000,
                post_nms_top_n: 1000,
                nms_threshold: 0.7,
                min_size: None,
                score_threshold: None,
            },
        }
    }

    /// The training-time settings of `flavor` (table in the module docs).
    pub fn train(flavor: Flavor) -> Self {
        let test = Self::test(flavor);
        match flavor {
            Flavor::Torchvision => Self {
                pre_nms_top_n: 2000,
                post_nms_top_n: 2000,
                ..test
            },
            Flavor::Mmdet => Self {
                pre_nms_top_n: 2000,
                post_nms_top_n: 1000,
                ..test
            },
        }
    }
}

/// The proposals of one image.
#[derive(Debug, Clone)]
pub struct Proposals {
    /// Boxes `[K, 4]` (`[x1, y1, x2, y2]`, clipped to the image), by score descending.
    pub boxes: Tensor,
    /// Objectness probabilities `[K]` (sigmoid of the logits).
    pub scores: Tensor,
    /// Pyramid level of each proposal, `[K]` (u32).
    pub levels: Tensor,
}

/// The proposal layer (module docs): per-level top-k, decode, clip, small-box and score
/// filters, NMS per level, top-k over the image.
///
/// `objectness` and `deltas` are the head's outputs per level (`[N, A, H_l, W_l]`,
/// `[N, A·4, H_l, W_l]`), `anchors` the generator's `[H_l·W_l·A, 4]` per level (shared by the
/// images of the batch), `image_sizes` each image's unpadded `(height, width)`, `coder` the
/// RPN's box coder. Returns one [`Proposals`] per image, detached, on the input's device.
pub fn filter_proposals(
    objectness: &[Tensor],
    deltas: &[Tensor],
    anchors: &[Tensor],
    image_sizes: &[(usize, usize)],
    coder: &BoxCoder,
    cfg: &ProposalConfig,
) -> Result<Vec<Proposals>> {
    const OP: &str = "filter_proposals";
    let levels = objectness.len();
    if deltas.len() != levels || anchors.len() != levels {
        return Err(shape(
            OP,
            "deltas / anchors",
            format!("{levels} levels (one per objectness map)"),
            (deltas.len(), anchors.len()),
        ));
    }
    // Per level: scores [N, H·W·A] and deltas [N, H·W·A, 4] in the anchors' (y, x, a) order.
    let mut flat_scores = Vec::with_capacity(levels);
    let mut flat_deltas = Vec::with_capacity(levels);
    let mut batch = None;
    for level in 0..levels {
        let (n, a, h, w) = match objectness[level].dims() {
            &[n, a, h, w] => (n, a, h, w),
            dims => {
                return Err(shape(
                    OP,
                    "objectness",
                    format!("[N, A, H, W] at level {level}"),
                    dims,
                ));
            }
        };
        if *batch.get_or_insert(n) != n || n != image_sizes.len() {
            return Err(shape(
                OP,
                "objectness",
                format!(
                    "one map per image ({} images) at level {level}",
                    image_sizes.len()
                ),
                objectness[level].dims(),
            ));
        }
        if deltas[level].dims() != [n, a * 4, h, w] {
            return Err(shape(
                OP,
                "deltas",
                format!("[{n}, {}, {h}, {w}] at level {level}", a * 4),
                deltas[level].dims(),
            ));
        }
        if anchors[level].dims() != [h * w * a, 4] {
            return Err(shape(
                OP,
                "anchors",
                format!("[{}, 4] at level {level}", h * w * a),
                anchors[level].dims(),
            ));
        }
        let scores = objectness[level]
            .detach()
            .permute((0, 2, 3, 1))?
            .reshape((n, h * w * a))?;
        let level_deltas = deltas[level]
            .detach()
            .reshape((n, a, 4, h, w))?
            .permute((0, 3, 4, 1, 2))?
            .reshape((n, h * w * a, 4))?;
        flat_scores.push(scores);
        flat_deltas.push(level_deltas);
    }
    let device = objectness.first().map(|t| t.device().clone());
    let mut out = Vec::with_capacity(image_sizes.len());
    for (image, &size) in image_sizes.iter().enumerate() {
        // Gather each level's top-k and decode them.
        let mut boxes = Vec::new();
        let mut logits = Vec::new();
        let mut ids = Vec::new();
        for level in 0..levels {
            let level_logits: Vec<f32> = flat_scores[level]
                .get(image)?
                .to_dtype(DType::F32)?
                .to_vec1()?;
            let keep = top_k_indices(&level_logits, cfg.pre_nms_top_n);
            let index = Tensor::from_vec(
                keep.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                keep.len(),
                anchors[level].device(),
            )?;
            let picked_anchors = anchors[level].detach().index_select(&index, 0)?;
            let picked_deltas = flat_deltas[level]
                .get(image)?
                .index_select(&index, 0)?
                .to_dtype(picked_anchors.dtype())?;
            let decoded = coder.decode(&picked_anchors, &picked_deltas, Some(size))?;
            let decoded: Vec<f32> = decoded.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
            boxes.extend(decoded.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]));
            logits.extend(keep.iter().map(|&i| level_logits[i]));
            ids.extend(std::iter::repeat_n(level as i64, keep.len()));
        }
        let scores: Vec<f32> = logits.iter().map(|&x| sigmoid(x)).collect();
        let candidates: Vec<usize> = (0..boxes.len())
            .filter(|&i| {
                let b = boxes[i];
                let big_enough = cfg
                    .min_size
                    .is_none_or(|m| f64::from(b[2] - b[0]) >= m && f64::from(b[3] - b[1]) >= m);
                let scored = cfg
                    .score_threshold
                    .is_none_or(|t| f64::from(scores[i]) >= t);
                big_enough && scored
            })
            .collect();
        let sub_boxes: Vec<[f32; 4]> = candidates.iter().map(|&i| boxes[i]).collect();
        let sub_scores: Vec<f32> = candidates.iter().map(|&i| scores[i]).collect();
        let sub_ids: Vec<i64> = candidates.iter().map(|&i| ids[i]).collect();
        let mut keep =
            batched_nms_indices_f32(&sub_boxes, &sub_scores, &sub_ids, cfg.nms_threshold);
        keep.truncate(cfg.post_nms_top_n);
        let device = device.clone().unwrap_or(candle_core::Device::Cpu);
        let k = keep.len();
        let kept_boxes: Vec<f32> = keep.iter().flat_map(|&i| sub_boxes[i]).collect();
        let kept_scores: Vec<f32> = keep.iter().map(|&i| sub_scores[i]).collect();
        let kept_levels: Vec<u32> = keep.iter().map(|&i| sub_ids[i] as u32).collect();
        out.push(Proposals {
            boxes: Tensor::from_vec(kept_boxes, (k, 4), &device)?,
            scores: Tensor::from_vec(kept_scores, k, &device)?,
            levels: Tensor::from_vec(kept_levels, k, &device)?,
        });
    }
    Ok(out)
}

/// torch's `sigmoid` in f32.
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Indices of the `k` largest values (all when fewer), by value descending, ties to the
/// earlier index; NaN ranks last.
fn top_k_indices(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| {
        values[b]
            .partial_cmp(&values[a])
            .unwrap_or_else(|| values[a].is_nan().cmp(&values[b].is_nan()))
    });
    order.truncate(k);
    order
}

/// The head's outputs of all levels flattened in the anchors' order, as torchvision's
/// `concat_box_prediction_layers` lays them out: logits `[N, ΣH·W·A]` and deltas
/// `[N, ΣH·W·A, 4]` (differentiable; the losses use them).
pub fn flatten_levels(objectness: &[Tensor], deltas: &[Tensor]) -> Result<(Tensor, Tensor)> {
    if objectness.len() != deltas.len() {
        return Err(shape(
            "flatten_levels",
            "deltas",
            format!("{} levels (one per objectness map)", objectness.len()),
            deltas.len(),
        ));
    }
    let mut scores = Vec::with_capacity(objectness.len());
    let mut regs = Vec::with_capacity(deltas.len());
    for (o, d) in objectness.iter().zip(deltas) {
        let (n, a, h, w) = o.dims4()?;
        scores.push(o.permute((0, 2, 3, 1))?.reshape((n, h * w * a))?);
        regs.push(
            d.reshape((n, a, 4, h, w))?
                .permute((0, 3, 4, 1, 2))?
                .reshape((n, h * w * a, 4))?,
        );
    }
    Ok((Tensor::cat(&scores, D::Minus1)?, Tensor::cat(&regs, 1)?))
}

/// The RPN at inference: head, anchors, coder and proposal settings of one flavor, run
/// together (torchvision's `RegionProposalNetwork` in eval mode; mmdet's `RPNHead.simple_test`).
#[derive(Debug, Clone)]
pub struct Rpn {
    /// The head.
    pub head: RpnHead,
    /// The anchor generator (its per-location count must equal the head's).
    pub anchors: AnchorGenerator,
    /// The box coder of the deltas.
    pub coder: BoxCoder,
    /// Proposal settings at training time.
    pub train_cfg: ProposalConfig,
    /// Proposal settings at test time.
    pub test_cfg: ProposalConfig,
}

/// What [`Rpn::forward`] gives: the head's outputs (for the losses), the anchors of every
/// level and the proposals of every image.
#[derive(Debug, Clone)]
pub struct RpnForward {
    /// Objectness and deltas per level.
    pub output: RpnOutput,
    /// Anchors `[H_l·W_l·A, 4]` per level.
    pub anchors: Vec<Tensor>,
    /// Proposals per image.
    pub proposals: Vec<Proposals>,
}

impl Rpn {
    /// Mask R-CNN's RPN of `flavor` over `in_channels`-channel FPN levels (P2–P6): anchors,
    /// coder and proposal settings of that flavor, head weights from `vb` under its names
    /// (`rpn_conv`, … for mmdet, `conv.0.0`, … for torchvision).
    pub fn mask_rcnn(flavor: Flavor, in_channels: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        let anchors = AnchorGenerator::mask_rcnn(flavor);
        let layout = match flavor {
            Flavor::Mmdet => RpnLayout::Mmdet,
            Flavor::Torchvision => RpnLayout::Torchvision,
        };
        let head = RpnHead::new(in_channels, anchors.num_anchors_per_location(), layout, vb)?;
        Ok(Self {
            head,
            anchors,
            coder: BoxCoder::rpn(flavor),
            train_cfg: ProposalConfig::train(flavor),
            test_cfg: ProposalConfig::test(flavor),
        })
    }

    /// Runs the head on `features` (`[N, C, H_l, W_l]` per level), lays anchors over the
    /// padded batch of `padded_size = (H, W)`, and filters proposals per image of
    /// `image_sizes` with the training or test settings.
    pub fn forward(
        &self,
        features: &[Tensor],
        image_sizes: &[(usize, usize)],
        padded_size: (usize, usize),
        training: bool,
    ) -> Result<RpnForward> {
        if self.anchors.num_anchors_per_location() != self.head.num_anchors() {
            return Err(config(
                "Rpn::forward",
                "anchors",
                format!(
                    "give {} anchors per location, the head predicts {}",
                    self.anchors.num_anchors_per_location(),
                    self.head.num_anchors()
                ),
            ));
        }
        let output = self.head.forward(features)?;
        let grids = features
            .iter()
            .map(|f| Ok((f.dim(2)?, f.dim(3)?)))
            .collect::<Result<Vec<_>>>()?;
        let device = features
            .first()
            .map(|f| f.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        let anchors = self.anchors.anchors(&grids, padded_size, &device)?;
        let cfg = if training {
            &self.train_cfg
        } else {
            &self.test_cfg
        };
        let proposals = filter_proposals(
            &output.objectness,
            &output.deltas,
            &anchors,
            image_sizes,
            &self.coder,
            cfg,
        )?;
        Ok(RpnForward {
            output,
            anchors,
            proposals,
        })
    }
}

/// The sampled anchors of one image with their training targets.
#[derive(Debug, Clone)]
pub struct RpnTargets {
    /// Indices of the sampled positive anchors (into the image's anchors of all levels).
    pub positives: Vec<usize>,
    /// Indices of the sampled negative anchors.
    pub negatives: Vec<usize>,
    /// Regression targets `[P, 4]` of the positives, in the order of `positives`.
    pub regression_targets: Tensor,
}

/// The RPN's training targets of one image: its anchors `[A, 4]` (all levels, in
/// [`flatten_levels`]' order) matched to `gt_boxes` `[G, 4]` (`G` may be 0: every anchor is
/// then a negative) and sampled by `sampler` with the draws of `seed`.
pub fn rpn_targets(
    flavor: Flavor,
    anchors: &Tensor,
    gt_boxes: &Tensor,
    sampler: &SamplerConfig,
    seed: u64,
) -> Result<RpnTargets> {
    let matches = match_anchors(flavor, anchors, gt_boxes)?;
    let picked = sample(&matches, sampler, seed);
    rpn_targets_sampled(flavor, anchors, gt_boxes, &matches, &picked)
}

/// The anchors' matches to `gt_boxes` with [`Matcher::rpn`] of `flavor`.
pub fn match_anchors(flavor: Flavor, anchors: &Tensor, gt_boxes: &Tensor) -> Result<Vec<Match>> {
    const OP: &str = "rpn::match_anchors";
    let n = match anchors.dims() {
        [n, 4] => *n,
        dims => return Err(shape(OP, "anchors", "[A, 4] (x1, y1, x2, y2)", dims)),
    };
    match gt_boxes.dims() {
        [0, 4] | [0] => return Ok(vec![Match::Negative; n]),
        [_, 4] => {}
        dims => return Err(shape(OP, "gt_boxes", "[G, 4] (x1, y1, x2, y2)", dims)),
    }
    let gt = gt_boxes.to_dtype(anchors.dtype())?;
    Matcher::rpn(flavor).match_iou(&box_iou(&gt, anchors)?)
}

/// [`rpn_targets`] on given matches and sampled indices (for parity with a reference whose
/// sampler draws differently).
pub fn rpn_targets_sampled(
    flavor: Flavor,
    anchors: &Tensor,
    gt_boxes: &Tensor,
    matches: &[Match],
    picked: &Sample,
) -> Result<RpnTargets> {
    const OP: &str = "rpn_targets_sampled";
    let n = match anchors.dims() {
        [n, 4] => *n,
        dims => return Err(shape(OP, "anchors", "[A, 4] (x1, y1, x2, y2)", dims)),
    };
    if matches.len() != n {
        return Err(shape(
            OP,
            "matches",
            format!("{n} (one per anchor)"),
            matches.len(),
        ));
    }
    let mut gt_rows = Vec::with_capacity(picked.positives.len());
    for &i in &picked.positives {
        match matches.get(i) {
            Some(Match::Gt(g)) => gt_rows.push(*g as u32),
            _ => {
                return Err(config(
                    OP,
                    "picked.positives",
                    format!(
                        "anchor {i} is sampled as a positive but not matched to a ground truth"
                    ),
                ));
            }
        }
    }
    if let Some(&i) = picked
        .negatives
        .iter()
        .find(|&&i| matches.get(i) != Some(&Match::Negative))
    {
        return Err(config(
            OP,
            "picked.negatives",
            format!("anchor {i} is sampled as a negative but is not one"),
        ));
    }
    let device = anchors.device();
    let regression_targets = if gt_rows.is_empty() {
        Tensor::zeros((0, 4), anchors.dtype(), device)?
    } else {
        let g = match gt_boxes.dims() {
            [g, 4] => *g,
            dims => return Err(shape(OP, "gt_boxes", "[G, 4] (x1, y1, x2, y2)", dims)),
        };
        if let Some(bad) = gt_rows.iter().find(|&&r| r as usize >= g) {
            return Err(shape(
                OP,
                "matches",
                format!("ground truths below {g}"),
                bad,
            ));
        }
        let rows: Vec<u32> = picked.positives.iter().map(|&i| i as u32).collect();
        let pos = anchors.index_select(&Tensor::new(rows.as_slice(), device)?, 0)?;
        let gt = gt_boxes
            .to_dtype(anchors.dtype())?
            .index_select(&Tensor::new(gt_rows.as_slice(), device)?, 0)?;
        BoxCoder::rpn(flavor).encode(&pos, &gt)?
    };
    Ok(RpnTargets {
        positives: picked.positives.clone(),
        negatives: picked.negatives.clone(),
        regression_targets,
    })
}

/// The RPN's losses `(objectness, box)` of flattened logits `[N, A]` and deltas `[N, A, 4]`
/// ([`flatten_levels`]) against `targets[i]` of image `i`, as `flavor` computes them
/// (module docs). An error when no anchor at all is sampled.
pub fn rpn_loss(
    flavor: Flavor,
    objectness: &Tensor,
    deltas: &Tensor,
    targets: &[RpnTargets],
) -> Result<(Tensor, Tensor)> {
    const OP: &str = "rpn_loss";
    let (n, a) = match objectness.dims() {
        [n, a] => (*n, *a),
        dims => return Err(shape(OP, "objectness", "[N, A] (flatten_levels)", dims)),
    };
    if deltas.dims() != [n, a, 4] {
        return Err(shape(OP, "deltas", format!("[{n}, {a}, 4]"), deltas.dims()));
    }
    if targets.len() != n {
        return Err(shape(
            OP,
            "targets",
            format!("{n} (one per image)"),
            targets.len(),
        ));
    }
    let mut sampled = Vec::new();
    let mut labels = Vec::new();
    let mut positives = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        if let Some(bad) = t.positives.iter().chain(&t.negatives).find(|&&j| j >= a) {
            return Err(shape(
                OP,
                "targets",
                format!("anchor indices below {a}"),
                bad,
            ));
        }
        if t.regression_targets.dims() != [t.positives.len(), 4] {
            return Err(shape(
                OP,
                "targets.regression_targets",
                format!("[{}, 4] (one row per positive)", t.positives.len()),
                t.regression_targets.dims(),
            ));
        }
        for &j in &t.positives {
            sampled.push((i * a + j) as u32);
            positives.push((i * a + j) as u32);
            labels.push(1f32);
        }
        for &j in &t.negatives {
            sampled.push((i * a + j) as u32);
            labels.push(0f32);
        }
    }
    let s = sampled.len();
    if s == 0 {
        return Err(config(
            OP,
            "targets",
            "no anchor is sampled in the whole batch",
        ));
    }
    let device = objectness.device();
    let logits = objectness
        .reshape(n * a)?
        .index_select(&Tensor::new(sampled.as_slice(), device)?, 0)?;
    let labels = Tensor::new(labels.as_slice(), device)?.to_dtype(logits.dtype())?;
    let objectness_loss =
        binary_cross_entropy_with_logits(&logits, &labels, &BceWithLogitsOptions::default())?;
    if positives.is_empty() {
        return Ok((objectness_loss, (deltas.sum_all()? * 0.0)?));
    }
    let predicted = deltas
        .reshape((n * a, 4))?
        .index_select(&Tensor::new(positives.as_slice(), device)?, 0)?;
    let wanted: Vec<&Tensor> = targets.iter().map(|t| &t.regression_targets).collect();
    let wanted = Tensor::cat(&wanted, 0)?
        .to_dtype(predicted.dtype())?
        .detach();
    let summed = match flavor {
        Flavor::Torchvision => smooth_l1_loss(&predicted, &wanted, 1.0 / 9.0, Reduction::Sum)?,
        Flavor::Mmdet => l1_loss(&predicted, &wanted, Reduction::Sum)?,
    };
    Ok((objectness_loss, (summed / s as f64)?))
}

/// What [`Rpn::forward_train`] gives: the forward pass (proposals with the training
/// settings) and the two losses.
#[derive(Debug, Clone)]
pub struct RpnTrainOutput {
    /// Head outputs, anchors and proposals (detached).
    pub forward: RpnForward,
    /// Objectness loss (scalar).
    pub objectness: Tensor,
    /// Box regression loss (scalar).
    pub rpn_box: Tensor,
}

impl Rpn {
    /// Training: [`Self::forward`] with the training settings, then the losses against
    /// `gt_boxes[i]` `[G_i, 4]` of each image, whose anchors `sampler` draws with seed `seed + i`
    /// ([`SamplerConfig::rpn`] for Mask R-CNN).
    pub fn forward_train(
        &self,
        features: &[Tensor],
        image_sizes: &[(usize, usize)],
        padded_size: (usize, usize),
        gt_boxes: &[Tensor],
        sampler: &SamplerConfig,
        seed: u64,
    ) -> Result<RpnTrainOutput> {
        self.train_with(
            features,
            image_sizes,
            padded_size,
            gt_boxes,
            &|i, matches| Ok(sample(matches, sampler, seed.wrapping_add(i as u64))),
        )
    }

    /// [`Self::forward_train`] with given sampled anchors `samples[i]` of each image (indices
    /// into the anchors of all levels, for parity with a reference whose sampler draws
    /// differently); the matching is still this flavor's.
    pub fn forward_train_sampled(
        &self,
        features: &[Tensor],
        image_sizes: &[(usize, usize)],
        padded_size: (usize, usize),
        gt_boxes: &[Tensor],
        samples: &[Sample],
    ) -> Result<RpnTrainOutput> {
        if samples.len() != image_sizes.len() {
            return Err(shape(
                "Rpn::forward_train_sampled",
                "samples",
                format!("{} (one per image)", image_sizes.len()),
                samples.len(),
            ));
        }
        self.train_with(features, image_sizes, padded_size, gt_boxes, &|i, _| {
            Ok(samples[i].clone())
        })
    }

    fn train_with(
        &self,
        features: &[Tensor],
        image_sizes: &[(usize, usize)],
        padded_size: (usize, usize),
        gt_boxes: &[Tensor],
        pick: &dyn Fn(usize, &[Match]) -> Result<Sample>,
    ) -> Result<RpnTrainOutput> {
        if gt_boxes.len() != image_sizes.len() {
            return Err(shape(
                "Rpn::forward_train",
                "gt_boxes",
                format!("{} (one per image)", image_sizes.len()),
                gt_boxes.len(),
            ));
        }
        let flavor = self.anchors.flavor();
        let forward = self.forward(features, image_sizes, padded_size, true)?;
        let anchors = Tensor::cat(&forward.anchors, 0)?;
        let targets = gt_boxes
            .iter()
            .enumerate()
            .map(|(i, gt)| {
                let matches = match_anchors(flavor, &anchors, gt)?;
                let picked = pick(i, &matches)?;
                rpn_targets_sampled(flavor, &anchors, gt, &matches, &picked)
            })
            .collect::<Result<Vec<_>>>()?;
        let (objectness, deltas) =
            flatten_levels(&forward.output.objectness, &forward.output.deltas)?;
        let (objectness, rpn_box) = rpn_loss(flavor, &objectness, &deltas, &targets)?;
        Ok(RpnTrainOutput {
            forward,
            objectness,
            rpn_box,
        })
    }
}
