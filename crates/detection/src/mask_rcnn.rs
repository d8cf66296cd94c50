//! Mask R-CNN (He et al., "Mask R-CNN", ICCV 2017) over any rtb-models [`Backbone`]: the
//! defaults of each flavor ([`MaskRcnnConfig`]) and the orchestration of backbone, FPN, RPN
//! and RoI heads ([`MaskRcnn`]), after torchvision's `GeneralizedRCNN` / `MaskRCNN` and
//! mmdetection 2.x's `TwoStageDetector` (`mask_rcnn_r50_fpn_1x`).
//!
//! Inputs are [`ImageBatch`]es: normalised, resized and padded by the caller (the task's
//! data pipeline). Detections come back in each image's original size: boxes rescaled by
//! `original / resized` per axis (torchvision's `resize_boxes`, mmdet's division by the scale
//! factor) and masks pasted into the original image ([`crate::paste`]).
//!
//! Weight prefixes (the backbone is built by the caller under [`MaskRcnnConfig::backbone_prefix`]):
//!
//! | | mmdet | torchvision |
//! |---|---|---|
//! | backbone | `backbone.` | `backbone.body.` |
//! | FPN | `neck.` | `backbone.fpn.` |
//! | RPN head | `rpn_head.` | `rpn.head.` |
//! | RoI heads | `roi_head.` | `roi_heads.` |
//!
//! Regimes: fixed-feature (the backbone under [`Freeze::all`](rtb_models::Freeze::all): no
//! graph through it, only the neck and heads train) and full-network (mmdet's ResNet default
//! [`Freeze::mmdet_resnet`](rtb_models::Freeze::mmdet_resnet): stem and stage 1 frozen,
//! BatchNorm in eval mode). The freezing is the backbone's own ([`Backbone::set_freeze`]).

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use rtb_models::{Backbone, Mode};

use crate::Flavor;
use crate::anchors::AnchorGenerator;
use crate::box_head::{BoxHeadConfig, BoxInferenceConfig};
use crate::error::{Result, shape};
use crate::fpn::{Fpn, FpnConfig, FpnLayout};
use crate::image_batch::ImageBatch;
use crate::mask_head::MaskHeadConfig;
use crate::paste::paste_masks;
use crate::roi_heads::{GtInstances, InstanceDetections, RoiHeads, RoiHeadsConfig, RoiTargets};
use crate::rpn::{ProposalConfig, Rpn};
use crate::sampler::{Sample, SamplerConfig};

/// Settings of a Mask R-CNN; [`MaskRcnnConfig::new`] gives the paper's (mmdet 2.x R50-FPN
/// 1x) or torchvision's `maskrcnn_resnet50_fpn` defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskRcnnConfig {
    /// Which reference.
    pub flavor: Flavor,
    /// Foreground classes (labels `0..num_classes`).
    pub num_classes: usize,
    /// FPN output channels (256).
    pub fpn_channels: usize,
    /// Width of the box head's two shared fully connected layers (1024).
    pub box_representation: usize,
    /// Channels of the mask head's four 3×3 convolutions and deconvolution (256).
    pub mask_conv_channels: usize,
    /// RPN proposals in training.
    pub rpn_train: ProposalConfig,
    /// RPN proposals at test time.
    pub rpn_test: ProposalConfig,
    /// RPN anchor sampling (256, half positive).
    pub rpn_sampler: SamplerConfig,
    /// RoI sampling per image (512, a quarter positive).
    pub roi_sampler: SamplerConfig,
    /// Test-time thresholds (score 0.05, class-wise NMS 0.5, 100 per image).
    pub inference: BoxInferenceConfig,
}

impl MaskRcnnConfig {
    /// Mask R-CNN R50-FPN's defaults of `flavor` for `num_classes` foreground classes.
    pub fn new(flavor: Flavor, num_classes: usize) -> Self {
        Self {
            flavor,
            num_classes,
            fpn_channels: 256,
            box_representation: 1024,
            mask_conv_channels: 256,
            rpn_train: ProposalConfig::train(flavor),
            rpn_test: ProposalConfig::test(flavor),
            rpn_sampler: SamplerConfig::rpn(),
            roi_sampler: SamplerConfig::roi_heads(),
            inference: BoxInferenceConfig::mask_rcnn(flavor),
        }
    }

    /// Slim heads (for the mini preset and tests): FPN, box head and mask head widths.
    pub fn with_widths(mut self, fpn: usize, box_head: usize, mask_head: usize) -> Self {
        self.fpn_channels = fpn;
        self.box_representation = box_head;
        self.mask_conv_channels = mask_head;
        self
    }

    /// Where the backbone's weights sit in a checkpoint of this flavor.
    pub fn backbone_prefix(&self) -> &'static str {
        match self.flavor {
            Flavor::Mmdet => "backbone",
            Flavor::Torchvision => "backbone.body",
        }
    }

    fn prefixes(&self) -> (&'static str, &'static str, &'static str) {
        match self.flavor {
            Flavor::Mmdet => ("neck", "rpn_head", "roi_head"),
            Flavor::Torchvision => ("backbone.fpn", "rpn.head", "roi_heads"),
        }
    }

    /// The RoI heads' settings this configuration implies.
    pub fn roi_heads(&self) -> RoiHeadsConfig {
        let mut cfg = RoiHeadsConfig::mask_rcnn(self.flavor, self.fpn_channels, self.num_classes);
        cfg.box_head = BoxHeadConfig::mask_rcnn(self.flavor, self.fpn_channels, self.num_classes)
            .with_representation(self.box_representation);
        cfg.mask_head = MaskHeadConfig::mask_rcnn(self.flavor, self.fpn_channels, self.num_classes)
            .with_conv_channels(self.mask_conv_channels);
        cfg.sampler = self.roi_sampler;
        cfg.inference = self.inference;
        cfg
    }
}

/// The five training losses (each a scalar), named as torchvision's loss dict.
#[derive(Debug, Clone)]
pub struct Losses {
    /// RPN objectness (BCE).
    pub objectness: Tensor,
    /// RPN box regression.
    pub rpn_box: Tensor,
    /// Box head classification (cross-entropy).
    pub classifier: Tensor,
    /// Box head regression.
    pub box_reg: Tensor,
    /// Mask (per-pixel BCE).
    pub mask: Tensor,
}

impl Losses {
    /// The sum of the five (every weight 1 in both references).
    pub fn total(&self) -> Result<Tensor> {
        Ok(
            (((&self.objectness + &self.rpn_box)? + (&self.classifier + &self.box_reg)?)?
                + &self.mask)?,
        )
    }
}

/// Mask R-CNN: backbone, FPN neck, RPN and RoI heads.
#[derive(Debug)]
pub struct MaskRcnn {
    /// The backbone (C2..C5), with its own freezing.
    pub backbone: Box<dyn Backbone>,
    /// The FPN neck (P2–P6).
    pub fpn: Fpn,
    /// The RPN.
    pub rpn: Rpn,
    /// Box and mask branches.
    pub roi_heads: RoiHeads,
    cfg: MaskRcnnConfig,
}

/// The seed stream of the RoI sampler, apart from the RPN's (`seed + i` per image).
const ROI_SEED: u64 = 0x5EED_0F02_0105_u64;

impl MaskRcnn {
    /// Neck and heads over `backbone`, weights from `vb` (the checkpoint's root) under the
    /// flavor's prefixes (module docs).
    pub fn new(
        cfg: &MaskRcnnConfig,
        backbone: Box<dyn Backbone>,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        let (neck, rpn, roi) = cfg.prefixes();
        let layout = match cfg.flavor {
            Flavor::Mmdet => FpnLayout::Mmdet,
            Flavor::Torchvision => FpnLayout::Torchvision,
        };
        let fpn_cfg =
            FpnConfig::for_backbone(backbone.as_ref(), layout).with_out_channels(cfg.fpn_channels);
        let fpn = Fpn::new(&fpn_cfg, &vb.pp(neck))?;
        let mut rpn = Rpn::mask_rcnn(cfg.flavor, cfg.fpn_channels, &vb.pp(rpn))?;
        rpn.train_cfg = cfg.rpn_train;
        rpn.test_cfg = cfg.rpn_test;
        let mut roi_cfg = cfg.roi_heads();
        // A backbone whose C2..C5 are not at strides 4..32 (a small-image stem) puts P2..P6 at
        // its own strides: anchors (scale 8 × stride) and RoI pooling follow them.
        let [s2, s3, s4, s5] = backbone.strides();
        if [s2, s3, s4, s5] != [4, 8, 16, 32] {
            rpn.anchors = AnchorGenerator::new(
                cfg.flavor,
                &[s2, s3, s4, s5, 2 * s5],
                &[8.0],
                &[0.5, 1.0, 2.0],
            )?;
            roi_cfg.strides = vec![s2, s3, s4, s5];
        }
        let roi_heads = RoiHeads::new(&roi_cfg, &vb.pp(roi))?;
        Ok(Self {
            backbone,
            fpn,
            rpn,
            roi_heads,
            cfg: cfg.clone(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &MaskRcnnConfig {
        &self.cfg
    }

    fn features(&self, batch: &ImageBatch, mode: Mode) -> Result<Vec<Tensor>> {
        let out = self.backbone.forward(&batch.tensor, mode)?;
        self.fpn.forward(&out.features.levels)
    }

    /// Training losses of `batch` against `targets[i]` of each image (boxes in the batch's
    /// pixels, `[x1, y1, x2, y2]`; masks at the batch image's size). The RPN samples anchors
    /// with seed `seed + i`, the RoI heads RoIs from another stream of `seed`; the backbone
    /// runs in [`Mode::Train`] with `seed` under its own freezing.
    pub fn forward_train(
        &self,
        batch: &ImageBatch,
        targets: &[GtInstances],
        seed: u64,
    ) -> Result<Losses> {
        self.check_targets("MaskRcnn::forward_train", batch, targets)?;
        let features = self.features(batch, Mode::Train { seed })?;
        let gt_boxes: Vec<Tensor> = targets.iter().map(|t| t.boxes.clone()).collect();
        let rpn = self.rpn.forward_train(
            &features,
            &batch.image_sizes,
            batch.padded_size()?,
            &gt_boxes,
            &self.cfg.rpn_sampler,
            seed,
        )?;
        let proposals: Vec<Tensor> = rpn
            .forward
            .proposals
            .iter()
            .map(|p| p.boxes.detach())
            .collect();
        let roi = self
            .roi_heads
            .forward_train(&features, &proposals, targets, seed ^ ROI_SEED)?;
        Ok(Losses {
            objectness: rpn.objectness,
            rpn_box: rpn.rpn_box,
            classifier: roi.classifier,
            box_reg: roi.box_reg,
            mask: roi.mask,
        })
    }

    /// [`Self::forward_train`] on given samples (for parity with a reference whose samplers
    /// draw differently): `rpn_samples[i]` the sampled anchors of image `i` (indices into its
    /// anchors of all levels), `roi_targets[i]` its sampled RoIs with their targets
    /// ([`crate::roi_heads::roi_targets`]). The RPN's proposals are computed but not used.
    pub fn forward_train_sampled(
        &self,
        batch: &ImageBatch,
        targets: &[GtInstances],
        rpn_samples: &[Sample],
        roi_targets: &[RoiTargets],
        seed: u64,
    ) -> Result<Losses> {
        const OP: &str = "MaskRcnn::forward_train_sampled";
        self.check_targets(OP, batch, targets)?;
        if roi_targets.len() != batch.len() {
            return Err(shape(
                OP,
                "roi_targets",
                format!("{} (one per image)", batch.len()),
                roi_targets.len(),
            ));
        }
        let features = self.features(batch, Mode::Train { seed })?;
        let gt_boxes: Vec<Tensor> = targets.iter().map(|t| t.boxes.clone()).collect();
        let rpn = self.rpn.forward_train_sampled(
            &features,
            &batch.image_sizes,
            batch.padded_size()?,
            &gt_boxes,
            rpn_samples,
        )?;
        let roi = self
            .roi_heads
            .forward_train_sampled(&features, roi_targets, targets)?;
        Ok(Losses {
            objectness: rpn.objectness,
            rpn_box: rpn.rpn_box,
            classifier: roi.classifier,
            box_reg: roi.box_reg,
            mask: roi.mask,
        })
    }

    fn check_targets(
        &self,
        op: &'static str,
        batch: &ImageBatch,
        targets: &[GtInstances],
    ) -> Result<()> {
        if targets.len() != batch.len() {
            return Err(shape(
                op,
                "targets",
                format!("{} (one per image)", batch.len()),
                targets.len(),
            ));
        }
        Ok(())
    }

    /// Detections of each image of `batch` (no gradient graph): boxes `[D, 4]` and scores by
    /// score descending in the image's original pixels, 0-based labels, and mask
    /// probabilities pasted into the original image, `[D, h, w]` f32 (binarise with
    /// [`crate::paste::binarize_masks`]): [`detect`](Self::detect), then
    /// [`to_original`](Self::to_original).
    pub fn forward(&self, batch: &ImageBatch) -> Result<Vec<InstanceDetections>> {
        let dets = self.detect(batch)?;
        self.to_original(dets, batch)
    }

    /// The network's part of [`forward`](Self::forward): detections in each image's resized
    /// pixels with their `[D, 28, 28]` mask probabilities, before pasting.
    pub fn detect(&self, batch: &ImageBatch) -> Result<Vec<InstanceDetections>> {
        let features = self.features(batch, Mode::Inference)?;
        let features: Vec<Tensor> = features.iter().map(|f| f.detach()).collect();
        let rpn = self
            .rpn
            .forward(&features, &batch.image_sizes, batch.padded_size()?, false)?;
        let proposals: Vec<Tensor> = rpn.proposals.iter().map(|p| p.boxes.detach()).collect();
        self.roi_heads
            .forward(&features, &proposals, &batch.image_sizes)
    }

    /// The post-processing of [`forward`](Self::forward): boxes rescaled from each image's
    /// resized size to its original one and masks pasted there (the flavor's rule).
    pub fn to_original(
        &self,
        dets: Vec<InstanceDetections>,
        batch: &ImageBatch,
    ) -> Result<Vec<InstanceDetections>> {
        dets.into_iter()
            .zip(batch.image_sizes.iter().zip(&batch.original_sizes))
            .map(|(mut det, (&(h, w), &(oh, ow)))| {
                let boxes = det.detections.boxes.clone();
                if (h, w) != (oh, ow) {
                    let scale = Tensor::new(
                        &[[
                            ow as f32 / w as f32,
                            oh as f32 / h as f32,
                            ow as f32 / w as f32,
                            oh as f32 / h as f32,
                        ]],
                        boxes.device(),
                    )?
                    .to_dtype(boxes.dtype())?;
                    det.detections.boxes = boxes.broadcast_mul(&scale)?;
                }
                det.masks = if det.detections.labels.is_empty() {
                    Tensor::zeros((0, oh, ow), DType::F32, boxes.device())?
                } else {
                    paste_masks(self.cfg.flavor, &det.masks, &det.detections.boxes, (oh, ow))?
                };
                Ok(det)
            })
            .collect()
    }
}
