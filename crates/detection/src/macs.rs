//! Multiply-accumulates of Mask R-CNN's neck and heads ([`MaskRcnnConfig::head_macs`]), for
//! the study's cost estimate: the backbone's count is rtb-models'
//! (`ArchConfig::forward_macs`), this is what the FPN, the RPN head and the RoI heads add.
//!
//! Counted as rtb-models counts backbones: convolutions (`k² · C_in · C_out` per output
//! pixel; the mask head's 2×2 stride-2 transposed convolution `C_in · C_out` per output
//! pixel) and fully connected layers; RoIAlign, NMS, box decoding, pasting and the losses
//! are not. Level `i` of a `H × W` input is `⌈H / s_i⌉ × ⌈W / s_i⌉` at the backbone's
//! stride `s_i`, P6 half of P5 rounded up (the max pool of kernel 1, stride 2).
//!
//! The RoI counts depend on the image, so they are bounds from the configuration: the box
//! head sees every proposal the RPN may keep (`post_nms_top_n`, or the candidates there are
//! on a small image) at test time and the sampled RoIs (`roi_sampler.num`) in training; the
//! mask head sees the positives in training (at most `num × pos_fraction`) and at most
//! `detections_per_img` detections at test time.

use crate::Flavor;
use crate::anchors::AnchorGenerator;
use crate::mask_head::POOL_SIZE;
use crate::mask_rcnn::MaskRcnnConfig;
use crate::rpn::ProposalConfig;

/// Multiply-accumulates of Mask R-CNN's neck and heads on one image (module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskRcnnMacs {
    /// The FPN: lateral 1×1 and output 3×3 convolutions on P2..P5.
    pub fpn: f64,
    /// The RPN head (3×3 convolution, objectness and delta 1×1s) on P2..P6.
    pub rpn: f64,
    /// The box head (two shared fully connected layers and the predictor) on one RoI.
    pub box_head_per_roi: f64,
    /// The mask head (convolutions, transposed convolution, logits) on one RoI.
    pub mask_head_per_roi: f64,
    /// RoIs through the box head in a training step (at most).
    pub train_rois: usize,
    /// RoIs through the mask head in a training step (positives, at most).
    pub train_mask_rois: usize,
    /// Proposals through the box head at test time (at most).
    pub test_rois: usize,
    /// Detections through the mask head at test time (at most).
    pub test_mask_rois: usize,
}

impl MaskRcnnMacs {
    /// Neck and heads in a training step's forward pass.
    pub fn train(&self) -> f64 {
        self.fpn
            + self.rpn
            + self.train_rois as f64 * self.box_head_per_roi
            + self.train_mask_rois as f64 * self.mask_head_per_roi
    }

    /// Neck and heads in an inference pass.
    pub fn test(&self) -> f64 {
        self.fpn
            + self.rpn
            + self.test_rois as f64 * self.box_head_per_roi
            + self.test_mask_rois as f64 * self.mask_head_per_roi
    }
}

/// MACs of a `k × k` convolution from `c_in` to `c_out` channels over `pixels` outputs.
fn conv(k: usize, c_in: usize, c_out: usize, pixels: usize) -> f64 {
    (k * k) as f64 * c_in as f64 * c_out as f64 * pixels as f64
}

/// Proposals the RPN can keep: its per-level top-k over the anchors there are, then the
/// image's cap.
fn proposals(cfg: &ProposalConfig, anchors_per_level: &[usize]) -> usize {
    let candidates: usize = anchors_per_level
        .iter()
        .map(|&n| n.min(cfg.pre_nms_top_n))
        .sum();
    candidates.min(cfg.post_nms_top_n)
}

impl MaskRcnnConfig {
    /// The neck's and heads' multiply-accumulates on one `height × width` (padded) image
    /// whose backbone gives C2..C5 of `in_channels` at `strides` (`Backbone::out_channels`
    /// / `strides`).
    pub fn head_macs(
        &self,
        in_channels: &[usize; 4],
        strides: &[usize; 4],
        (height, width): (usize, usize),
    ) -> MaskRcnnMacs {
        let sides: Vec<(usize, usize)> = strides
            .iter()
            .map(|&s| (height.div_ceil(s.max(1)), width.div_ceil(s.max(1))))
            .collect();
        let (h5, w5) = sides[3];
        let p6 = (h5.div_ceil(2), w5.div_ceil(2));
        let pixels: Vec<usize> = sides.iter().chain([&p6]).map(|(h, w)| h * w).collect();
        let f = self.fpn_channels;
        let fpn: f64 = (0..4)
            .map(|i| conv(1, in_channels[i], f, pixels[i]) + conv(3, f, f, pixels[i]))
            .sum();
        let a = AnchorGenerator::mask_rcnn(self.flavor).num_anchors_per_location();
        let rpn: f64 = pixels
            .iter()
            .map(|&px| conv(3, f, f, px) + conv(1, f, a, px) + conv(1, f, 4 * a, px))
            .sum();
        let anchors: Vec<usize> = pixels.iter().map(|px| a * px).collect();

        let roi = self.roi_heads();
        let boxes = &roi.box_head;
        let flat = boxes.in_channels * boxes.pool_size * boxes.pool_size;
        let rep = boxes.representation;
        let c = boxes.num_classes;
        let regression = match self.flavor {
            Flavor::Mmdet => 4 * c,
            Flavor::Torchvision => 4 * (c + 1),
        };
        let box_head_per_roi = (flat * rep + rep * rep + rep * (c + 1) + rep * regression) as f64;
        let masks = &roi.mask_head;
        let m = masks.conv_channels;
        let pooled = POOL_SIZE * POOL_SIZE;
        let convs: f64 = (0..masks.num_convs)
            .map(|i| conv(3, if i == 0 { masks.in_channels } else { m }, m, pooled))
            .sum();
        let logits = 4 * pooled;
        let mask_head_per_roi =
            convs + conv(1, m, m, logits) + conv(1, m, masks.logit_channels(), logits);

        let train_rois = self
            .roi_sampler
            .num
            .min(proposals(&self.rpn_train, &anchors));
        let positives = (self.roi_sampler.num as f64 * self.roi_sampler.pos_fraction) as usize;
        let test_rois = proposals(&self.rpn_test, &anchors);
        MaskRcnnMacs {
            fpn,
            rpn,
            box_head_per_roi,
            mask_head_per_roi,
            train_rois,
            train_mask_rois: positives.min(train_rois),
            test_rois,
            test_mask_rois: self.inference.detections_per_img.min(test_rois * c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slim mmdet Mask R-CNN (FPN 8, box head 16, mask head 4, 3 classes, 64 RoI samples)
    /// over C2..C5 of 4, 8, 16, 32 channels on a 64 × 64 image, counted by hand: P2..P6 of
    /// 16², 8², 4², 2², 1² pixels; 3 anchors per location.
    #[test]
    fn slim_detector_matches_a_hand_count() {
        let mut cfg = MaskRcnnConfig::new(Flavor::Mmdet, 3).with_widths(8, 16, 4);
        cfg.roi_sampler.num = 64;
        let macs = cfg.head_macs(&[4, 8, 16, 32], &[4, 8, 16, 32], (64, 64));
        let fpn = (4 * 256 + 8 * 64 + 16 * 16 + 32 * 4) * 8 + 9 * 8 * 8 * (256 + 64 + 16 + 4);
        assert_eq!(macs.fpn, fpn as f64);
        let rpn = (9 * 8 * 8 + 8 * 3 + 8 * 12) * (256 + 64 + 16 + 4 + 1);
        assert_eq!(macs.rpn, rpn as f64);
        // fc6 over 8 × 7 × 7, fc7, 4 class logits (with background), 12 deltas (mmdet's).
        let box_head = 392 * 16 + 16 * 16 + 16 * 4 + 16 * 12;
        assert_eq!(macs.box_head_per_roi, box_head as f64);
        // Four 3×3 convolutions at 14², the 2×2 transposed one onto 28², 3 logit channels.
        let mask_head = 9 * 8 * 4 * 196 + 3 * 9 * 4 * 4 * 196 + 4 * 4 * 784 + 4 * 3 * 784;
        assert_eq!(macs.mask_head_per_roi, mask_head as f64);
        // 1023 anchors in all: fewer than mmdet's 1000 test proposals only after the cap.
        assert_eq!(macs.test_rois, 1000);
        assert_eq!((macs.train_rois, macs.train_mask_rois), (64, 16));
        assert_eq!(macs.test_mask_rois, 100);
        assert_eq!(
            macs.train(),
            (fpn + rpn + 64 * box_head + 16 * mask_head) as f64
        );
        assert_eq!(
            macs.test(),
            (fpn + rpn + 1000 * box_head + 100 * mask_head) as f64
        );
    }

    /// On a small image the proposals are bounded by the anchors there are (a 32² image at
    /// strides 4..32: 3 × (64 + 16 + 4 + 1 + 1) = 258 anchors), and torchvision's predictor
    /// regresses the background class too.
    #[test]
    fn small_images_bound_the_proposals() {
        let cfg = MaskRcnnConfig::new(Flavor::Torchvision, 3).with_widths(8, 16, 4);
        let macs = cfg.head_macs(&[4, 8, 16, 32], &[4, 8, 16, 32], (32, 32));
        assert_eq!(macs.test_rois, 258);
        assert_eq!(macs.train_rois, 258);
        assert_eq!(macs.train_mask_rois, 128);
        let box_head = 392 * 16 + 16 * 16 + 16 * 4 + 16 * 16;
        assert_eq!(macs.box_head_per_roi, box_head as f64);
    }

    /// The paper's shapes: mmdet's R50-FPN on an image resized to 800 × 1333 and padded to
    /// 800 × 1344, whose FPN levels are 200 × 336 … 25 × 42 (P6 13 × 21 in the RPN).
    #[test]
    fn mmdet_r50_fpn_counts_the_padded_levels() {
        let cfg = MaskRcnnConfig::new(Flavor::Mmdet, 80);
        let macs = cfg.head_macs(&[256, 512, 1024, 2048], &[4, 8, 16, 32], (800, 1344));
        let pixels = [200 * 336, 100 * 168, 50 * 84, 25 * 42];
        let laterals: usize = [256, 512, 1024, 2048]
            .iter()
            .zip(pixels)
            .map(|(c, px)| c * 256 * px)
            .sum();
        let outputs: usize = pixels.iter().map(|px| 9 * 256 * 256 * px).sum();
        assert_eq!(macs.fpn, (laterals + outputs) as f64);
        let rpn_pixels: usize = pixels.iter().sum::<usize>() + 13 * 21;
        assert_eq!(macs.rpn, ((9 * 256 * 256 + 256 * 15) * rpn_pixels) as f64);
        // 512 sampled RoIs, a quarter of them positive; 1000 proposals, 100 detections.
        assert_eq!(
            (
                macs.train_rois,
                macs.train_mask_rois,
                macs.test_rois,
                macs.test_mask_rois
            ),
            (512, 128, 1000, 100)
        );
    }
}
