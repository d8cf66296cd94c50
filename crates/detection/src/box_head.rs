//! The box branch of the RoI heads: torchvision's `TwoMLPHead` + `FastRCNNPredictor` and
//! mmdetection's `Shared2FCBBoxHead` (the same computation), and its inference
//! ([`postprocess_detections`]) as a free function.
//!
//! The head flattens each pooled RoI `[C, 7, 7]`, applies two fully connected layers with
//! ReLU (1024 wide in Mask R-CNN), then a classifier and a class-specific box regressor. Where
//! the references differ:
//!
//! | | mmdet `Shared2FCBBoxHead` | torchvision |
//! |---|---|---|
//! | keys (under `roi_head.` / `roi_heads.`) | `bbox_head.shared_fcs.{0,1}`, `bbox_head.fc_cls`, `bbox_head.fc_reg` | `box_head.fc6`, `box_head.fc7`, `box_predictor.cls_score`, `box_predictor.bbox_pred` |
//! | classifier outputs | `C + 1`, background **last** | `C + 1`, background **first** |
//! | regressor outputs | `4·C` (foreground classes only) | `4·(C + 1)` (background included) |
//! | init | fcs Xavier-uniform, `fc_cls` N(0, 0.01), `fc_reg` N(0, 0.001), biases 0 | PyTorch's `Linear` default |
//!
//! Labels in this crate are 0-based foreground class indices in both flavors (torchvision's
//! label `j` is `j − 1` here; mmdet's are unchanged).
//!
//! Inference ([`postprocess_detections`]): softmax scores, class-specific decoding, clipping
//! to the image, background removed, then per image: scores `> 0.05`, (torchvision only)
//! boxes narrower or lower than `1e-2` removed, class-wise NMS at IoU 0.5, the best 100 kept.
//! torchvision's `RoIHeads.postprocess_detections` and mmdet 2.x's `multiclass_nms` differ
//! only in the small-box removal and the order of candidates before NMS (both
//! proposal-major, class-minor), so the same function serves both.

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{Init, Linear, VarBuilder};
use rtb_nn::autocast::widen;
use rtb_nn::nms::batched_nms_indices_f32;
use rtb_nn::ops::activation::relu;

use crate::Flavor;
use crate::box_coder::BoxCoder;
use crate::error::{Result, config, shape};

/// Settings of the box head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeadConfig {
    /// Whose keys, class order and initialisation.
    pub flavor: Flavor,
    /// Channels of the pooled features.
    pub in_channels: usize,
    /// Side of the pooled features (7).
    pub pool_size: usize,
    /// Width of the two fully connected layers (1024).
    pub representation: usize,
    /// Foreground classes (80 on COCO), background not counted.
    pub num_classes: usize,
}

impl BoxHeadConfig {
    /// Mask R-CNN's box head: 7×7 pooled RoIs of `in_channels`, two fc of 1024.
    pub fn mask_rcnn(flavor: Flavor, in_channels: usize, num_classes: usize) -> Self {
        Self {
            flavor,
            in_channels,
            pool_size: 7,
            representation: 1024,
            num_classes,
        }
    }

    /// With fully connected layers of `representation` (slim heads for the mini study).
    pub fn with_representation(mut self, representation: usize) -> Self {
        self.representation = representation;
        self
    }
}

/// The box head's outputs for `K` RoIs.
#[derive(Debug, Clone)]
pub struct BoxHeadOutput {
    /// Classifier logits `[K, C + 1]` (background first in torchvision, last in mmdet).
    pub class_logits: Tensor,
    /// Class-specific deltas: `[K, 4·(C + 1)]` in torchvision, `[K, 4·C]` in mmdet.
    pub box_regression: Tensor,
}

/// Two shared fully connected layers, a classifier and a box regressor.
#[derive(Debug, Clone)]
pub struct BoxHead {
    fc6: Linear,
    fc7: Linear,
    cls_score: Linear,
    bbox_pred: Linear,
    cfg: BoxHeadConfig,
}

impl BoxHead {
    /// A head with weights from `vb`, the RoI heads' prefix (torchvision `roi_heads`, mmdet
    /// `roi_head`); see the module docs for names and initialisation.
    pub fn new(cfg: &BoxHeadConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        for (field, value) in [
            ("in_channels", cfg.in_channels),
            ("pool_size", cfg.pool_size),
            ("representation", cfg.representation),
            ("num_classes", cfg.num_classes),
        ] {
            if value == 0 {
                return Err(config("BoxHead::new", field, "must be positive, got 0"));
            }
        }
        let flat = cfg.in_channels * cfg.pool_size * cfg.pool_size;
        let rep = cfg.representation;
        let c = cfg.num_classes;
        let head = match cfg.flavor {
            Flavor::Torchvision => {
                let head = vb.pp("box_head");
                let pred = vb.pp("box_predictor");
                Self {
                    fc6: torch_linear(flat, rep, &head.pp("fc6"))?,
                    fc7: torch_linear(rep, rep, &head.pp("fc7"))?,
                    cls_score: torch_linear(rep, c + 1, &pred.pp("cls_score"))?,
                    bbox_pred: torch_linear(rep, 4 * (c + 1), &pred.pp("bbox_pred"))?,
                    cfg: *cfg,
                }
            }
            Flavor::Mmdet => {
                let head = vb.pp("bbox_head");
                let xavier = |i: usize, o: usize| Init::Uniform {
                    lo: -(6.0 / (i + o) as f64).sqrt(),
                    up: (6.0 / (i + o) as f64).sqrt(),
                };
                Self {
                    fc6: linear(flat, rep, xavier(flat, rep), &head.pp("shared_fcs.0"))?,
                    fc7: linear(rep, rep, xavier(rep, rep), &head.pp("shared_fcs.1"))?,
                    cls_score: linear(rep, c + 1, normal(0.01), &head.pp("fc_cls"))?,
                    bbox_pred: linear(rep, 4 * c, normal(0.001), &head.pp("fc_reg"))?,
                    cfg: *cfg,
                }
            }
        };
        Ok(head)
    }

    /// The head's settings.
    pub fn config(&self) -> &BoxHeadConfig {
        &self.cfg
    }

    /// Logits and deltas of pooled RoIs `[K, C_in, S, S]`.
    pub fn forward(&self, pooled: &Tensor) -> Result<BoxHeadOutput> {
        let s = self.cfg.pool_size;
        match pooled.dims() {
            [_, c, h, w] if *c == self.cfg.in_channels && *h == s && *w == s => {}
            dims => {
                return Err(shape(
                    "BoxHead::forward",
                    "pooled",
                    format!("[K, {}, {s}, {s}]", self.cfg.in_channels),
                    dims,
                ));
            }
        }
        let xs = pooled.flatten_from(1)?;
        let xs = relu(&dense(&self.fc6, &xs)?)?;
        let xs = relu(&dense(&self.fc7, &xs)?)?;
        // Scores and box deltas leave the head in f32 under autocast: box geometry and
        // losses compute in f32.
        Ok(BoxHeadOutput {
            class_logits: widen(&dense(&self.cls_score, &xs)?)?,
            box_regression: widen(&dense(&self.bbox_pred, &xs)?)?,
        })
    }
}

/// A fully connected layer through rtb-nn's `linear` (one node, and the f32 weights cast to
/// half-precision activations under autocast).
fn dense(layer: &Linear, xs: &Tensor) -> candle_core::Result<Tensor> {
    rtb_nn::ops::linear::linear(xs, layer.weight(), layer.bias())
}

/// PyTorch's `nn.Linear` initialisation: weight and bias uniform in `±1/√fan_in`.
fn torch_linear(i: usize, o: usize, vb: &VarBuilder<'_>) -> Result<Linear> {
    let bound = 1.0 / (i as f64).sqrt();
    let init = Init::Uniform {
        lo: -bound,
        up: bound,
    };
    let weight = vb.get_with_hints((o, i), "weight", init)?;
    let bias = vb.get_with_hints(o, "bias", init)?;
    Ok(Linear::new(weight, Some(bias)))
}

fn linear(i: usize, o: usize, init: Init, vb: &VarBuilder<'_>) -> Result<Linear> {
    let weight = vb.get_with_hints((o, i), "weight", init)?;
    let bias = vb.get_with_hints(o, "bias", Init::Const(0.0))?;
    Ok(Linear::new(weight, Some(bias)))
}

fn normal(stdev: f64) -> Init {
    Init::Randn { mean: 0.0, stdev }
}

/// Thresholds of the box branch's inference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxInferenceConfig {
    /// Scores must exceed this (0.05).
    pub score_thresh: f64,
    /// Class-wise NMS IoU threshold (0.5).
    pub nms_thresh: f64,
    /// Detections kept per image (100).
    pub detections_per_img: usize,
    /// Boxes narrower or lower than this are dropped before NMS (torchvision `1e-2`; mmdet
    /// none).
    pub min_size: Option<f64>,
}

impl BoxInferenceConfig {
    /// Mask R-CNN's test settings of `flavor`.
    pub fn mask_rcnn(flavor: Flavor) -> Self {
        Self {
            score_thresh: 0.05,
            nms_thresh: 0.5,
            detections_per_img: 100,
            min_size: match flavor {
                Flavor::Torchvision => Some(1e-2),
                Flavor::Mmdet => None,
            },
        }
    }
}

/// The detections of one image, by score descending.
#[derive(Debug, Clone)]
pub struct Detections {
    /// Boxes `[D, 4]` (`[x1, y1, x2, y2]`, input pixels, clipped to the image).
    pub boxes: Tensor,
    /// Scores `[D]`.
    pub scores: Tensor,
    /// 0-based foreground class of each detection.
    pub labels: Vec<usize>,
}

/// The box branch's inference over a batch: `class_logits` `[ΣK_i, C + 1]` and
/// `box_regression` (as [`BoxHeadOutput`]) of the `proposals[i]` `[K_i, 4]` of images of
/// `image_sizes[i] = (h, w)`, to at most `cfg.detections_per_img` detections per image.
/// `flavor` says where the background column is and whether the regressor has a background
/// block (module docs).
pub fn postprocess_detections(
    flavor: Flavor,
    head: &BoxHeadOutput,
    proposals: &[Tensor],
    image_sizes: &[(usize, usize)],
    cfg: &BoxInferenceConfig,
) -> Result<Vec<Detections>> {
    const OP: &str = "postprocess_detections";
    if proposals.len() != image_sizes.len() {
        return Err(shape(
            OP,
            "image_sizes",
            format!("one per image ({} proposal lists)", proposals.len()),
            image_sizes.len(),
        ));
    }
    let (total, classes_with_bg) = match head.class_logits.dims() {
        [k, c] if *c >= 2 => (*k, *c),
        dims => return Err(shape(OP, "class_logits", "[K, C + 1] with C ≥ 1", dims)),
    };
    let c = classes_with_bg - 1;
    let reg_blocks = match flavor {
        Flavor::Torchvision => c + 1,
        Flavor::Mmdet => c,
    };
    if head.box_regression.dims() != [total, 4 * reg_blocks] {
        return Err(shape(
            OP,
            "box_regression",
            format!("[{total}, {}]", 4 * reg_blocks),
            head.box_regression.dims(),
        ));
    }
    let counts: Vec<usize> = proposals
        .iter()
        .map(|p| p.dims().first().copied().unwrap_or(0))
        .collect();
    if counts.iter().sum::<usize>() != total {
        return Err(shape(
            OP,
            "proposals",
            format!("{total} boxes in all (the rows of class_logits)"),
            counts,
        ));
    }
    if total == 0 {
        // candle cannot reduce an empty tensor: nothing to score.
        return proposals
            .iter()
            .map(|p| {
                Ok(Detections {
                    boxes: Tensor::zeros((0, 4), DType::F32, p.device())?,
                    scores: Tensor::zeros(0, DType::F32, p.device())?,
                    labels: Vec::new(),
                })
            })
            .collect();
    }
    let scores = candle_nn::ops::softmax(&head.class_logits.to_dtype(DType::F32)?, D::Minus1)?;
    let coder = BoxCoder::roi_heads(flavor);
    let mut out = Vec::with_capacity(proposals.len());
    let mut start = 0;
    for (i, props) in proposals.iter().enumerate() {
        let k = counts[i];
        let device = props.device().clone();
        let deltas = head.box_regression.narrow(0, start, k)?;
        let boxes = coder.decode(&props.to_dtype(DType::F32)?, &deltas, Some(image_sizes[i]))?;
        let boxes: Vec<f32> = boxes.flatten_all()?.to_vec1()?;
        let s: Vec<f32> = scores.narrow(0, start, k)?.flatten_all()?.to_vec1()?;
        start += k;
        out.push(select(flavor, &boxes, &s, k, c, cfg, &device)?);
    }
    Ok(out)
}

/// Filtering, NMS and truncation of one image's `k × (c + 1)` scores and decoded boxes.
fn select(
    flavor: Flavor,
    boxes: &[f32],
    scores: &[f32],
    k: usize,
    c: usize,
    cfg: &BoxInferenceConfig,
    device: &Device,
) -> Result<Detections> {
    let blocks = boxes.len() / k.max(1) / 4;
    let mut cand_boxes: Vec<[f32; 4]> = Vec::new();
    let mut cand_scores: Vec<f32> = Vec::new();
    let mut cand_labels: Vec<i64> = Vec::new();
    for r in 0..k {
        for label in 0..c {
            // Column of this class in the scores and block in the regressor.
            let (col, block) = match flavor {
                Flavor::Torchvision => (label + 1, label + 1),
                Flavor::Mmdet => (label, label),
            };
            let score = scores[r * (c + 1) + col];
            if f64::from(score) <= cfg.score_thresh {
                continue;
            }
            let o = (r * blocks + block) * 4;
            let b = [boxes[o], boxes[o + 1], boxes[o + 2], boxes[o + 3]];
            if let Some(min) = cfg.min_size {
                let min = min as f32;
                if !(b[2] - b[0] >= min && b[3] - b[1] >= min) {
                    continue;
                }
            }
            cand_boxes.push(b);
            cand_scores.push(score);
            cand_labels.push(label as i64);
        }
    }
    let mut keep = batched_nms_indices_f32(&cand_boxes, &cand_scores, &cand_labels, cfg.nms_thresh);
    keep.truncate(cfg.detections_per_img);
    let flat: Vec<f32> = keep.iter().flat_map(|&j| cand_boxes[j]).collect();
    let scores: Vec<f32> = keep.iter().map(|&j| cand_scores[j]).collect();
    let labels: Vec<usize> = keep.iter().map(|&j| cand_labels[j] as usize).collect();
    Ok(Detections {
        boxes: Tensor::from_vec(flat, (keep.len(), 4), device)?,
        scores: Tensor::from_vec(scores, keep.len(), device)?,
        labels,
    })
}
