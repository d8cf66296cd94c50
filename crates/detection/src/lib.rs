//! `rtb-detection`: Mask R-CNN over any rtb-models [`Backbone`](rtb_models::Backbone), one
//! module per concept in the style of torchvision's `models/detection`, in two flavors:
//! mmdetection 2.x (the default, the paper's setup) and torchvision (for parity tests and for
//! importing torchvision detectors). Boxes are `[x1, y1, x2, y2]` in input-image pixels
//! throughout.
//!
//! The modules built so far:
//! - [`anchors`]: the anchor generator (no weights); per-location and per-level order equal
//!   to each reference, torchvision's rounded base anchors vs mmdet's unrounded ones;
//! - [`box_coder`]: the delta-xywh box coder in both flavors (mmdet's is rtb-nn's);
//! - [`matcher`]: max-IoU assignment (torchvision's `Matcher`, mmdet's `MaxIoUAssigner`);
//! - [`sampler`]: seeded random positive/negative sampling;
//! - [`fpn`]: the FPN neck over C2..C5 (P2–P6), with torchvision's and mmdet's key names;
//! - [`rpn`]: the RPN head, the proposal layer, anchor targets and losses in both flavors;
//! - [`poolers`]: multi-level RoIAlign for the box (7×7) and mask (14×14) branches;
//! - [`box_head`]: the shared-2fc box head and its inference (scores, decoding, class-wise NMS);
//! - [`mask_head`]: the 4-conv + deconv mask head, mask targets and the mask loss;
//! - [`paste`]: mask probabilities pasted back into the image (both references' rules);
//! - [`roi_heads`]: training targets and losses of both branches, and [`roi_heads::RoiHeads`]
//!   (poolers, heads, losses and inference together);
//! - [`import`]: torchvision Mask R-CNN state dicts split into backbone and heads;
//! - [`macs`]: the neck's and heads' multiply-accumulates at an input size (the study's
//!   cost estimate adds them to the backbone's);
//! - [`image_batch`]: images of different sizes padded into one batch;
//! - [`mask_rcnn`]: the defaults of each flavor and [`mask_rcnn::MaskRcnn`] (backbone, FPN,
//!   RPN and RoI heads; `forward_train` → five losses, `forward` → detections in the
//!   original image size).
//!
//! Coder, matcher and sampler are pure functions of their inputs and settings, shared by the
//! RPN and the RoI heads with different settings. Every op with a backward goes through
//! rtb-nn or candle ops with correct gradients.
//!
//! **Architecture Invariant:** depends on rtb-nn and rtb-models only; knows no dataset, file
//! format or training engine.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use rtb_detection::anchors::AnchorGenerator;
//! use rtb_detection::box_coder::BoxCoder;
//! use rtb_detection::matcher::{Match, Matcher};
//! use rtb_detection::sampler::{sample, SamplerConfig};
//! use rtb_detection::Flavor;
//! use rtb_nn::boxes::box_iou;
//!
//! let dev = Device::Cpu;
//! // One level of stride 16 over a 32×32 image: 2×2 cells × 3 ratios of side 128.
//! let generator = AnchorGenerator::new(Flavor::Mmdet, &[16], &[8.0], &[0.5, 1.0, 2.0]).unwrap();
//! let anchors = generator.anchors(&[(2, 2)], (32, 32), &dev).unwrap().remove(0);
//! assert_eq!(anchors.dims(), &[12, 4]);
//! // The square anchor of the first cell is centred on (0, 0).
//! let first: Vec<Vec<f32>> = anchors.narrow(0, 1, 1).unwrap().to_vec2().unwrap();
//! assert_eq!(first[0], vec![-64.0, -64.0, 64.0, 64.0]);
//!
//! // Match the anchors to one ground-truth box, sample, and encode the positives' targets.
//! let gt = Tensor::new(&[[-60f32, -60., 70., 66.]], &dev).unwrap();
//! let matches = Matcher::rpn(Flavor::Mmdet).match_iou(&box_iou(&gt, &anchors).unwrap()).unwrap();
//! assert_eq!(matches[1], Match::Gt(0));
//! let picked = sample(&matches, &SamplerConfig::rpn(), 0);
//! assert!(picked.positives.contains(&1));
//! let coder = BoxCoder::rpn(Flavor::Mmdet);
//! let targets = coder.encode(&anchors.narrow(0, 1, 1).unwrap(), &gt).unwrap();
//! let back: Vec<Vec<f32>> = coder.decode(&anchors.narrow(0, 1, 1).unwrap(), &targets, None)
//!     .unwrap().to_vec2().unwrap();
//! assert!((back[0][2] - 70.0).abs() < 1e-4);
//! ```
#![deny(missing_docs)]

pub mod anchors;
pub mod box_coder;
pub mod box_head;
pub mod error;
pub mod fpn;
pub mod image_batch;
pub mod import;
pub mod macs;
pub mod mask_head;
pub mod mask_rcnn;
pub mod matcher;
pub mod paste;
pub mod poolers;
pub mod roi_heads;
pub mod rpn;
pub mod sampler;

pub use error::{DetectionError, Result};

/// Which reference implementation a component follows where mmdetection and torchvision
/// differ (anchor rounding, box coding, matching, RPN details, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// mmdetection 2.x, the paper's setup (the default).
    #[default]
    Mmdet,
    /// torchvision's `models.detection`.
    Torchvision,
}
