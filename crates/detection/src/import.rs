//! Importing detector checkpoints people already have: torchvision's `maskrcnn_resnet50_fpn`
//! state dict and mmdetection's Mask R-CNN checkpoints (2.x and 3.x share the module names),
//! each split into the backbone's tensors in rtb-models' canonical layout and the neck and
//! head tensors under that flavor's keys, ready for [`crate::mask_rcnn::MaskRcnn::new`] with
//! the configuration [`detector_config`] reads off the tensors' shapes.
//!
//! | torchvision key | mmdetection key | goes to |
//! |---|---|---|
//! | `backbone.body.*` | `backbone.*` | [`DetectorWeights::backbone`], through rtb-models' layout detection and conversion ([`rtb_models::weights::canonicalize`]: torchvision's and mmdet's ResNet names are canonical; mmdet's Swin names are converted) |
//! | `backbone.fpn.*`, `rpn.*`, `roi_heads.*` | `neck.*`, `rpn_head.*`, `roi_head.*` | [`DetectorWeights::heads`] unchanged, except torchvision's pre-0.13 `mask_head.mask_fcn{i}` names ([`crate::mask_head::torchvision_legacy_key`]) |
//!
//! Recomputed buffers (`num_batches_tracked`) and mmengine's `data_preprocessor.*` buffers
//! (the normalisation, which the task's pipeline applies) are dropped; any other key is an
//! error naming it. [`import_detector`] tells the two flavors apart by their RoI-head prefix.

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::Flavor;
use crate::error::{Result, config};
use crate::mask_head::torchvision_legacy_key;
use crate::mask_rcnn::MaskRcnnConfig;

/// A detector checkpoint split into backbone and heads.
#[derive(Debug, Clone)]
pub struct DetectorWeights {
    /// Whose keys [`Self::heads`] has.
    pub flavor: Flavor,
    /// The backbone's tensors under rtb-models' canonical keys (no prefix).
    pub backbone: BTreeMap<String, Tensor>,
    /// Neck and head tensors under the checkpoint flavor's full keys (`backbone.fpn.…`,
    /// `rpn.…`, `roi_heads.…` for torchvision; `neck.…`, `rpn_head.…`, `roi_head.…` for
    /// mmdet).
    pub heads: HashMap<String, Tensor>,
}

impl DetectorWeights {
    /// A builder over the backbone's tensors (for `ArchConfig::build` or `ResNet::new`).
    pub fn backbone_var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        let map: HashMap<String, Tensor> = self.backbone.clone().into_iter().collect();
        VarBuilder::from_tensors(map, dtype, device)
    }

    /// A builder over the neck and head tensors, rooted where [`crate::mask_rcnn::MaskRcnn::new`]
    /// expects the checkpoint's root.
    pub fn heads_var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_tensors(self.heads.clone(), dtype, device)
    }
}

/// Where each part of a flavor's checkpoint lives.
struct Prefixes {
    op: &'static str,
    flavor: Flavor,
    backbone: &'static str,
    heads: [&'static str; 3],
    rename: fn(&str) -> String,
}

const TORCHVISION: Prefixes = Prefixes {
    op: "import_torchvision",
    flavor: Flavor::Torchvision,
    backbone: "backbone.body.",
    heads: ["backbone.fpn.", "rpn.", "roi_heads."],
    rename: torchvision_legacy_key,
};

const MMDET: Prefixes = Prefixes {
    op: "import_mmdet",
    flavor: Flavor::Mmdet,
    backbone: "backbone.",
    heads: ["neck.", "rpn_head.", "roi_head."],
    rename: str::to_string,
};

/// Splits a torchvision Mask R-CNN state dict (`maskrcnn_resnet50_fpn`'s keys, optionally
/// under a `module.` prefix on every key) into backbone and heads (module docs).
pub fn import_torchvision(tensors: Vec<(String, Tensor)>) -> Result<DetectorWeights> {
    split(&TORCHVISION, tensors)
}

/// Splits an mmdetection Mask R-CNN checkpoint's state dict (`backbone.`, `neck.`,
/// `rpn_head.`, `roi_head.`; any backbone rtb-models has a layout for, such as mmdet's ResNet
/// and Swin) into backbone and heads (module docs).
pub fn import_mmdet(tensors: Vec<(String, Tensor)>) -> Result<DetectorWeights> {
    split(&MMDET, tensors)
}

/// Imports a Mask R-CNN checkpoint of either flavor, told apart by its RoI-head prefix
/// (`roi_heads.` torchvision, `roi_head.` mmdet).
pub fn import_detector(tensors: Vec<(String, Tensor)>) -> Result<DetectorWeights> {
    let has = |prefix: &str| {
        tensors
            .iter()
            .any(|(k, _)| k.strip_prefix("module.").unwrap_or(k).starts_with(prefix))
    };
    if has("roi_heads.") {
        import_torchvision(tensors)
    } else if has("roi_head.") {
        import_mmdet(tensors)
    } else {
        Err(config(
            "import_detector",
            "state dict",
            "has neither roi_heads.* (torchvision) nor roi_head.* (mmdetection) keys: not a \
             Mask R-CNN checkpoint",
        ))
    }
}

fn split(prefixes: &Prefixes, tensors: Vec<(String, Tensor)>) -> Result<DetectorWeights> {
    let op = prefixes.op;
    let all_prefixed = !tensors.is_empty() && tensors.iter().all(|(k, _)| k.starts_with("module."));
    let mut body = Vec::new();
    let mut heads = HashMap::new();
    for (key, tensor) in tensors {
        let key = if all_prefixed {
            key["module.".len()..].to_string()
        } else {
            key
        };
        if key.ends_with("num_batches_tracked") || key.starts_with("data_preprocessor.") {
            continue;
        }
        // Head prefixes first: torchvision's neck sits under `backbone.fpn.`.
        if prefixes.heads.iter().any(|p| key.starts_with(p)) {
            heads.insert((prefixes.rename)(&key), tensor);
        } else if let Some(rest) = key.strip_prefix(prefixes.backbone) {
            body.push((rest.to_string(), tensor));
        } else {
            return Err(config(
                op,
                "state dict",
                format!(
                    "has key {key}, outside {}, {} (not a {:?} Mask R-CNN checkpoint?)",
                    prefixes.backbone,
                    prefixes.heads.join(", "),
                    prefixes.flavor
                ),
            ));
        }
    }
    if body.is_empty() {
        return Err(config(
            op,
            "state dict",
            format!("has no key under {}", prefixes.backbone),
        ));
    }
    for prefix in prefixes.heads {
        if !heads.keys().any(|k| k.starts_with(prefix)) {
            return Err(config(
                op,
                "state dict",
                format!("has no key under {prefix}"),
            ));
        }
    }
    let source = format!("{:?} Mask R-CNN {}", prefixes.flavor, prefixes.backbone);
    let canonical = rtb_models::weights::canonicalize(&source, body)?;
    Ok(DetectorWeights {
        flavor: prefixes.flavor,
        backbone: canonical.tensors,
        heads,
    })
}

/// The Mask R-CNN configuration of imported weights: the flavor's defaults with the class
/// count and the FPN, box-head and mask-head widths read off the tensors' shapes (so a
/// checkpoint trained on another dataset or with slim heads loads as it was trained).
pub fn detector_config(weights: &DetectorWeights) -> Result<MaskRcnnConfig> {
    const OP: &str = "detector_config";
    let dims = |key: &'static str| -> Result<Vec<usize>> {
        weights
            .heads
            .get(key)
            .map(|t| t.dims().to_vec())
            .ok_or_else(|| config(OP, key, "is missing from the checkpoint"))
    };
    let (fpn, fc6, cls, mask_conv) = match weights.flavor {
        Flavor::Torchvision => (
            "backbone.fpn.layer_blocks.0.0.weight",
            "roi_heads.box_head.fc6.weight",
            "roi_heads.box_predictor.cls_score.weight",
            "roi_heads.mask_head.0.0.weight",
        ),
        Flavor::Mmdet => (
            "neck.fpn_convs.0.conv.weight",
            "roi_head.bbox_head.shared_fcs.0.weight",
            "roi_head.bbox_head.fc_cls.weight",
            "roi_head.mask_head.convs.0.conv.weight",
        ),
    };
    let fpn_channels = dims(fpn)?[0];
    let box_representation = dims(fc6)?[0];
    // Both flavors' classifiers have one output per foreground class plus background.
    let num_classes = dims(cls)?[0]
        .checked_sub(1)
        .filter(|&c| c > 0)
        .ok_or_else(|| config(OP, cls, "has fewer than two outputs"))?;
    let mask_conv_channels = dims(mask_conv)?[0];
    Ok(
        MaskRcnnConfig::new(weights.flavor, num_classes).with_widths(
            fpn_channels,
            box_representation,
            mask_conv_channels,
        ),
    )
}
