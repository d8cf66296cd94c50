//! The RoI heads of Mask R-CNN: training targets and losses of the box and mask branches as
//! free functions (torchvision's `fastrcnn_loss` / `maskrcnn_loss`, mmdetection 2.x's
//! `BBoxHead.loss` / `FCNMaskHead.loss`), and [`RoiHeads`], which runs poolers, heads,
//! losses and inference of one flavor together.
//!
//! Training, per image: the ground truths are added to the proposals, each proposal is
//! matched to the ground truths (IoU ≥ 0.5 positive, below negative; [`Matcher::roi_heads`]),
//! 512 are sampled with at most a quarter positive ([`SamplerConfig::roi_heads`]), and each
//! positive gets its class and the encoded deltas to its ground truth
//! ([`select_training_samples`]). The losses over the batch's sampled RoIs (`S` in all):
//!
//! | | mmdet 2.x | torchvision |
//! |---|---|---|
//! | classifier | cross-entropy, mean over `S` (background index `C`) | cross-entropy, mean over `S` (background index 0) |
//! | box | L1 of the positives' class deltas (stds 0.1, 0.1, 0.2, 0.2), summed, `/ S` | smooth-L1 (β = 1/9) of the positives' class deltas (weights 10, 10, 5, 5), summed, `/ S` |
//! | mask | BCE with logits on the class channel, mean over positives × 28² (targets: [`mask_targets`]) | the same (its own targets) |
//!
//! (mmdet's L1 is a "mean" with `avg_factor = S`, the count of sampled RoIs, not of the
//! positives' coordinates.) Sampled RoIs are ordered positives first, then negatives; no
//! loss depends on the order. Ground-truth labels are 0-based foreground classes in both
//! flavors.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use rtb_nn::boxes::box_iou;
use rtb_nn::loss::{CrossEntropyOptions, Reduction, cross_entropy, l1_loss, smooth_l1_loss};

use crate::Flavor;
use crate::box_coder::BoxCoder;
use crate::box_head::{
    BoxHead, BoxHeadConfig, BoxHeadOutput, BoxInferenceConfig, Detections, postprocess_detections,
};
use crate::error::{Result, config, shape};
use crate::mask_head::{MaskHead, MaskHeadConfig, mask_loss, mask_targets};
use crate::matcher::{Match, Matcher};
use crate::poolers::Pooler;
use crate::sampler::{SamplerConfig, sample};

/// The ground truth of one image.
#[derive(Debug, Clone)]
pub struct GtInstances {
    /// Boxes `[G, 4]` (`[x1, y1, x2, y2]`, input pixels).
    pub boxes: Tensor,
    /// 0-based foreground class of each box.
    pub labels: Vec<usize>,
    /// Binary masks `[G, H, W]` at the input image's size (any dtype).
    pub masks: Tensor,
}

/// The training RoIs of one image with their targets.
#[derive(Debug, Clone)]
pub struct RoiTargets {
    /// RoIs `[S, 4]`.
    pub proposals: Tensor,
    /// Class of each RoI: `Some(c)` (0-based foreground class) for a positive, `None` for
    /// background.
    pub labels: Vec<Option<usize>>,
    /// The ground truth each positive is matched to (`None` for background).
    pub matched_gt: Vec<Option<usize>>,
    /// Encoded deltas `[S, 4]` from each RoI to its ground truth (rows of background RoIs
    /// are unused).
    pub regression_targets: Tensor,
}

/// The losses of the RoI heads (each a scalar).
#[derive(Debug, Clone)]
pub struct Losses {
    /// Classification loss of the box branch.
    pub classifier: Tensor,
    /// Box regression loss of the box branch.
    pub box_reg: Tensor,
    /// Mask loss.
    pub mask: Tensor,
}

/// Targets of `proposals` `[K, 4]` given their `matches` against `gt`: a positive's class is
/// its ground truth's, its deltas encode that ground truth with `flavor`'s RoI coder. No
/// proposal may be [`Match::Ignored`] (the RoI matchers have no band between thresholds).
pub fn roi_targets(
    flavor: Flavor,
    proposals: &Tensor,
    gt: &GtInstances,
    matches: &[Match],
) -> Result<RoiTargets> {
    const OP: &str = "roi_targets";
    let k = match proposals.dims() {
        [k, 4] => *k,
        dims => return Err(shape(OP, "proposals", "[K, 4] (x1, y1, x2, y2)", dims)),
    };
    let g = check_gt(OP, gt)?;
    if matches.len() != k {
        return Err(shape(
            OP,
            "matches",
            format!("{k} (one per proposal)"),
            matches.len(),
        ));
    }
    let mut labels = Vec::with_capacity(k);
    let mut matched_gt = Vec::with_capacity(k);
    for m in matches {
        match *m {
            Match::Gt(j) if j < g => {
                labels.push(Some(gt.labels[j]));
                matched_gt.push(Some(j));
            }
            Match::Negative => {
                labels.push(None);
                matched_gt.push(None);
            }
            other => {
                return Err(shape(
                    OP,
                    "matches",
                    format!("Gt(j < {g}) or Negative for every proposal"),
                    other,
                ));
            }
        }
    }
    // Background rows are encoded against the first ground truth (or the RoI itself without
    // any), as torchvision does, and never read.
    let device = proposals.device();
    let rows: Vec<u32> = matched_gt.iter().map(|m| m.unwrap_or(0) as u32).collect();
    let targets_of = if g == 0 {
        proposals.clone()
    } else {
        let index = Tensor::new(rows.as_slice(), device)?;
        gt.boxes
            .to_dtype(proposals.dtype())?
            .index_select(&index, 0)?
    };
    let regression_targets = if k == 0 {
        Tensor::zeros((0, 4), proposals.dtype(), device)?
    } else {
        BoxCoder::roi_heads(flavor).encode(proposals, &targets_of)?
    };
    Ok(RoiTargets {
        proposals: proposals.clone(),
        labels,
        matched_gt,
        regression_targets,
    })
}

fn check_gt(op: &'static str, gt: &GtInstances) -> Result<usize> {
    let g = match gt.boxes.dims() {
        [g, 4] => *g,
        dims => return Err(shape(op, "gt.boxes", "[G, 4] (x1, y1, x2, y2)", dims)),
    };
    if gt.labels.len() != g {
        return Err(shape(
            op,
            "gt.labels",
            format!("{g} (one per box)"),
            gt.labels.len(),
        ));
    }
    match gt.masks.dims() {
        [gm, _, _] if *gm == g => Ok(g),
        dims => Err(shape(op, "gt.masks", format!("[{g}, H, W]"), dims)),
    }
}

/// The training RoIs of one image: `proposals` `[K, 4]` with the ground-truth boxes added
/// (torchvision appends them, mmdet prepends them), matched with [`Matcher::roi_heads`],
/// sampled by `sampler` with the draws of `seed` (positives first, then negatives).
pub fn select_training_samples(
    flavor: Flavor,
    proposals: &Tensor,
    gt: &GtInstances,
    sampler: &SamplerConfig,
    seed: u64,
) -> Result<RoiTargets> {
    const OP: &str = "select_training_samples";
    if !matches!(proposals.dims(), [_, 4]) {
        return Err(shape(
            OP,
            "proposals",
            "[K, 4] (x1, y1, x2, y2)",
            proposals.dims(),
        ));
    }
    check_gt(OP, gt)?;
    let gt_boxes = gt.boxes.to_dtype(proposals.dtype())?;
    let all = match flavor {
        Flavor::Torchvision => Tensor::cat(&[proposals, &gt_boxes], 0)?,
        Flavor::Mmdet => Tensor::cat(&[&gt_boxes, proposals], 0)?,
    };
    let matches = Matcher::roi_heads(flavor).match_iou(&box_iou(&gt_boxes, &all)?)?;
    let picked = sample(&matches, sampler, seed);
    let order: Vec<u32> = picked
        .positives
        .iter()
        .chain(&picked.negatives)
        .map(|&i| i as u32)
        .collect();
    let kept: Vec<Match> = order.iter().map(|&i| matches[i as usize]).collect();
    let index = Tensor::new(order.as_slice(), all.device())?;
    let rois = all.index_select(&index, 0)?;
    roi_targets(flavor, &rois, gt, &kept)
}

/// The box branch's losses `(classifier, box_reg)` of `head` (run on the concatenation of
/// every image's `targets[i].proposals`), as `flavor` computes them (module docs).
pub fn fastrcnn_loss(
    flavor: Flavor,
    head: &BoxHeadOutput,
    targets: &[RoiTargets],
) -> Result<(Tensor, Tensor)> {
    const OP: &str = "fastrcnn_loss";
    let (s, classes_with_bg) = match head.class_logits.dims() {
        [s, c] if *s > 0 && *c >= 2 => (*s, *c),
        dims => {
            return Err(shape(
                OP,
                "class_logits",
                "[S, C + 1] with S ≥ 1 sampled RoIs (an image with neither proposals nor \
                 objects has none; mmdet skips such images in training) and C ≥ 1",
                dims,
            ));
        }
    };
    let c = classes_with_bg - 1;
    let blocks = match flavor {
        Flavor::Torchvision => c + 1,
        Flavor::Mmdet => c,
    };
    if head.box_regression.dims() != [s, 4 * blocks] {
        return Err(shape(
            OP,
            "box_regression",
            format!("[{s}, {}]", 4 * blocks),
            head.box_regression.dims(),
        ));
    }
    let labels: Vec<Option<usize>> = targets
        .iter()
        .flat_map(|t| t.labels.iter().copied())
        .collect();
    if labels.len() != s {
        return Err(shape(
            OP,
            "targets",
            format!("{s} RoIs in all (the rows of class_logits)"),
            labels.len(),
        ));
    }
    if let Some(bad) = labels.iter().flatten().find(|&&l| l >= c) {
        return Err(shape(
            OP,
            "targets.labels",
            format!("classes below {c}"),
            bad,
        ));
    }
    let device = head.class_logits.device();
    let class_index = |label: Option<usize>| -> usize {
        match (flavor, label) {
            (Flavor::Torchvision, Some(l)) => l + 1,
            (Flavor::Torchvision, None) => 0,
            (Flavor::Mmdet, Some(l)) => l,
            (Flavor::Mmdet, None) => c,
        }
    };
    let cls_targets: Vec<u32> = labels.iter().map(|&l| class_index(l) as u32).collect();
    let cls_targets = Tensor::new(cls_targets.as_slice(), device)?;
    let classifier = cross_entropy(
        &head.class_logits,
        &cls_targets,
        &CrossEntropyOptions::default(),
    )?;

    let positives: Vec<u32> = (0..s as u32)
        .filter(|&i| labels[i as usize].is_some())
        .collect();
    if positives.is_empty() {
        return Ok((classifier, (head.box_regression.sum_all()? * 0.0)?));
    }
    let rows: Vec<u32> = positives
        .iter()
        .map(|&i| {
            let block = match (flavor, labels[i as usize]) {
                (Flavor::Torchvision, Some(l)) => l + 1,
                (_, l) => l.unwrap_or(0),
            };
            i * blocks as u32 + block as u32
        })
        .collect();
    let predicted = head
        .box_regression
        .reshape((s * blocks, 4))?
        .index_select(&Tensor::new(rows.as_slice(), device)?, 0)?;
    let all_targets: Vec<&Tensor> = targets.iter().map(|t| &t.regression_targets).collect();
    let wanted = Tensor::cat(&all_targets, 0)?
        .to_dtype(predicted.dtype())?
        .index_select(&Tensor::new(positives.as_slice(), device)?, 0)?;
    let summed = match flavor {
        Flavor::Torchvision => smooth_l1_loss(&predicted, &wanted, 1.0 / 9.0, Reduction::Sum)?,
        Flavor::Mmdet => l1_loss(&predicted, &wanted, Reduction::Sum)?,
    };
    Ok((classifier, (summed / s as f64)?))
}

/// The positive RoIs of one image.
#[derive(Debug, Clone)]
pub struct Positives {
    /// Boxes `[P, 4]`.
    pub boxes: Tensor,
    /// The ground truth each is matched to.
    pub matched_gt: Vec<usize>,
    /// 0-based foreground class of each.
    pub labels: Vec<usize>,
}

/// The positives of each image's `targets`, in order.
pub fn positive_rois(targets: &[RoiTargets]) -> Result<Vec<Positives>> {
    targets
        .iter()
        .map(|t| {
            let rows: Vec<u32> = (0..t.labels.len() as u32)
                .filter(|&i| t.labels[i as usize].is_some())
                .collect();
            let index = Tensor::new(rows.as_slice(), t.proposals.device())?;
            let boxes = t.proposals.index_select(&index, 0)?;
            Ok(Positives {
                boxes,
                matched_gt: t.matched_gt.iter().flatten().copied().collect(),
                labels: t.labels.iter().flatten().copied().collect(),
            })
        })
        .collect()
}

/// The mask loss of `mask_logits` `[ΣP_i, n, M, M]` (the mask head on every image's
/// positives, in image order as [`positive_rois`] lists them) against targets cut from each
/// image's ground-truth masks `gts[i].masks` as `cfg.flavor` does.
pub fn maskrcnn_loss(
    cfg: &MaskHeadConfig,
    mask_logits: &Tensor,
    targets: &[RoiTargets],
    gts: &[GtInstances],
) -> Result<Tensor> {
    const OP: &str = "maskrcnn_loss";
    if targets.len() != gts.len() {
        return Err(shape(
            OP,
            "gts",
            format!("{} (one per image)", targets.len()),
            gts.len(),
        ));
    }
    let size = match mask_logits.dims() {
        [_, _, m, _] => *m,
        dims => return Err(shape(OP, "mask_logits", "[P, n, M, M]", dims)),
    };
    let mut all_targets = Vec::with_capacity(gts.len());
    let mut all_labels = Vec::new();
    for (pos, gt) in positive_rois(targets)?.into_iter().zip(gts) {
        all_targets.push(mask_targets(
            cfg.flavor,
            &gt.masks,
            &pos.boxes,
            &pos.matched_gt,
            size,
        )?);
        all_labels.extend(pos.labels);
    }
    let mask_targets = Tensor::cat(&all_targets, 0)?;
    mask_loss(cfg, mask_logits, &all_labels, &mask_targets)
}

/// Settings of [`RoiHeads`].
#[derive(Debug, Clone, PartialEq)]
pub struct RoiHeadsConfig {
    /// Which reference.
    pub flavor: Flavor,
    /// The box head.
    pub box_head: BoxHeadConfig,
    /// The mask head.
    pub mask_head: MaskHeadConfig,
    /// RoIs sampled per image in training.
    pub sampler: SamplerConfig,
    /// Test-time thresholds.
    pub inference: BoxInferenceConfig,
    /// Strides of the pooled levels (4, 8, 16, 32).
    pub strides: Vec<usize>,
}

impl RoiHeadsConfig {
    /// Mask R-CNN's RoI heads of `flavor` over FPN outputs of `in_channels` for
    /// `num_classes` foreground classes.
    pub fn mask_rcnn(flavor: Flavor, in_channels: usize, num_classes: usize) -> Self {
        Self {
            flavor,
            box_head: BoxHeadConfig::mask_rcnn(flavor, in_channels, num_classes),
            mask_head: MaskHeadConfig::mask_rcnn(flavor, in_channels, num_classes),
            sampler: SamplerConfig::roi_heads(),
            inference: BoxInferenceConfig::mask_rcnn(flavor),
            strides: vec![4, 8, 16, 32],
        }
    }
}

/// Box and mask branches of one flavor with their poolers.
#[derive(Debug, Clone)]
pub struct RoiHeads {
    box_pooler: Pooler,
    mask_pooler: Pooler,
    box_head: BoxHead,
    mask_head: MaskHead,
    cfg: RoiHeadsConfig,
}

/// One image's detections with their mask probabilities.
#[derive(Debug, Clone)]
pub struct InstanceDetections {
    /// Boxes, scores and classes.
    pub detections: Detections,
    /// Mask probabilities `[D, M, M]` of each detection's class (28×28, before pasting).
    pub masks: Tensor,
}

impl RoiHeads {
    /// RoI heads with weights from `vb`, the heads' prefix (torchvision `roi_heads`, mmdet
    /// `roi_head`).
    pub fn new(cfg: &RoiHeadsConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        if cfg.box_head.flavor != cfg.flavor || cfg.mask_head.flavor != cfg.flavor {
            return Err(config(
                "RoiHeads::new",
                "flavor",
                format!(
                    "must agree with the heads' ({:?}, box {:?}, mask {:?})",
                    cfg.flavor, cfg.box_head.flavor, cfg.mask_head.flavor
                ),
            ));
        }
        Ok(Self {
            box_pooler: Pooler::new(cfg.flavor, cfg.box_head.pool_size, &cfg.strides)?,
            mask_pooler: Pooler::new(cfg.flavor, crate::mask_head::POOL_SIZE, &cfg.strides)?,
            box_head: BoxHead::new(&cfg.box_head, vb)?,
            mask_head: MaskHead::new(&cfg.mask_head, vb)?,
            cfg: cfg.clone(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &RoiHeadsConfig {
        &self.cfg
    }

    /// The box head (for running it on pooled features of one's own).
    pub fn box_head(&self) -> &BoxHead {
        &self.box_head
    }

    /// The mask head (for running it on pooled features of one's own).
    pub fn mask_head(&self) -> &MaskHead {
        &self.mask_head
    }

    /// Training losses: samples each image's RoIs from `proposals[i]` `[K_i, 4]` and
    /// `gts[i]` (seed `seed + i`), then [`Self::forward_train_sampled`].
    pub fn forward_train(
        &self,
        features: &[Tensor],
        proposals: &[Tensor],
        gts: &[GtInstances],
        seed: u64,
    ) -> Result<Losses> {
        if proposals.len() != gts.len() {
            return Err(shape(
                "RoiHeads::forward_train",
                "gts",
                format!("{} (one per image)", proposals.len()),
                gts.len(),
            ));
        }
        let targets = proposals
            .iter()
            .zip(gts)
            .enumerate()
            .map(|(i, (p, gt))| {
                let p = p.detach();
                select_training_samples(
                    self.cfg.flavor,
                    &p,
                    gt,
                    &self.cfg.sampler,
                    seed.wrapping_add(i as u64),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        self.forward_train_sampled(features, &targets, gts)
    }

    /// Training losses on given sampled RoIs (`targets[i]` of image `i`).
    pub fn forward_train_sampled(
        &self,
        features: &[Tensor],
        targets: &[RoiTargets],
        gts: &[GtInstances],
    ) -> Result<Losses> {
        let rois: Vec<Tensor> = targets.iter().map(|t| t.proposals.clone()).collect();
        let pooled = self.box_pooler.forward(features, &rois)?;
        let head = self.box_head.forward(&pooled)?;
        let (classifier, box_reg) = fastrcnn_loss(self.cfg.flavor, &head, targets)?;
        let positives: Vec<Tensor> = positive_rois(targets)?
            .into_iter()
            .map(|p| p.boxes)
            .collect();
        if positives.iter().all(|b| b.dims()[0] == 0) {
            // No positive anywhere: a zero mask loss (torchvision's `mask_logits.sum() · 0`
            // without running the mask head on an empty batch).
            let mask = (head.class_logits.sum_all()? * 0.0)?;
            return Ok(Losses {
                classifier,
                box_reg,
                mask,
            });
        }
        let pooled = self.mask_pooler.forward(features, &positives)?;
        let logits = self.mask_head.forward(&pooled)?;
        let mask = maskrcnn_loss(self.mask_head.config(), &logits, targets, gts)?;
        Ok(Losses {
            classifier,
            box_reg,
            mask,
        })
    }

    /// Inference: detections of each image from `proposals[i]` `[K_i, 4]` of images of
    /// `image_sizes[i] = (h, w)`, with the mask probabilities of each detection's class
    /// (torchvision's `maskrcnn_inference`; mmdet reads the same channel of its logits).
    pub fn forward(
        &self,
        features: &[Tensor],
        proposals: &[Tensor],
        image_sizes: &[(usize, usize)],
    ) -> Result<Vec<InstanceDetections>> {
        let pooled = self.box_pooler.forward(features, proposals)?;
        let head = self.box_head.forward(&pooled)?;
        let dets = postprocess_detections(
            self.cfg.flavor,
            &head,
            proposals,
            image_sizes,
            &self.cfg.inference,
        )?;
        let boxes: Vec<Tensor> = dets.iter().map(|d| d.boxes.clone()).collect();
        if dets.iter().all(|d| d.labels.is_empty()) {
            let m = 2 * self.mask_pooler.output_size();
            return dets
                .into_iter()
                .map(|det| {
                    let masks = Tensor::zeros((0, m, m), DType::F32, det.boxes.device())?;
                    Ok(InstanceDetections {
                        detections: det,
                        masks,
                    })
                })
                .collect();
        }
        let logits = self
            .mask_head
            .forward(&self.mask_pooler.forward(features, &boxes)?)?;
        let (_, n, m, _) = logits.dims4()?;
        let mut out = Vec::with_capacity(dets.len());
        let mut start = 0;
        for det in dets {
            let d = det.labels.len();
            let rows: Vec<u32> = det
                .labels
                .iter()
                .enumerate()
                .map(|(j, &l)| ((start + j) * n + self.mask_head.config().channel_of(l)) as u32)
                .collect();
            let index = Tensor::new(rows.as_slice(), logits.device())?;
            let masks = candle_nn::ops::sigmoid(
                &logits
                    .reshape((logits.dims()[0] * n, m, m))?
                    .index_select(&index, 0)?,
            )?
            .to_dtype(DType::F32)?;
            start += d;
            out.push(InstanceDetections {
                detections: det,
                masks,
            });
        }
        Ok(out)
    }
}
