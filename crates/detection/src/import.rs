//! Importing detector checkpoints: torchvision's `maskrcnn_resnet50_fpn` state dict split
//! into the backbone's tensors in rtb-models' canonical layout and the neck and head tensors
//! under the torchvision flavor's keys, ready for [`crate::mask_rcnn::MaskRcnn::new`].
//!
//! | torchvision key | goes to |
//! |---|---|
//! | `backbone.body.*` | [`DetectorWeights::backbone`], through rtb-models' layout detection and conversion ([`rtb_models::weights::canonicalize`]; torchvision's ResNet names are canonical) |
//! | `backbone.fpn.*`, `rpn.*`, `roi_heads.*` | [`DetectorWeights::heads`] unchanged, except pre-0.13 `mask_head.mask_fcn{i}` names ([`crate::mask_head::torchvision_legacy_key`]) |
//!
//! Recomputed buffers (`num_batches_tracked`) are dropped; any other key is an error naming it.

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::error::{Result, config};
use crate::mask_head::torchvision_legacy_key;

/// A detector checkpoint split into backbone and heads.
#[derive(Debug, Clone)]
pub struct DetectorWeights {
    /// The backbone's tensors under rtb-models' canonical keys (no prefix).
    pub backbone: BTreeMap<String, Tensor>,
    /// Neck and head tensors under the checkpoint flavor's full keys (`backbone.fpn.…`,
    /// `rpn.…`, `roi_heads.…` for torchvision).
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

/// Splits a torchvision Mask R-CNN state dict (`maskrcnn_resnet50_fpn`'s keys, optionally
/// under a `module.` prefix on every key) into backbone and heads (module docs).
pub fn import_torchvision(tensors: Vec<(String, Tensor)>) -> Result<DetectorWeights> {
    const OP: &str = "import_torchvision";
    let all_prefixed = !tensors.is_empty() && tensors.iter().all(|(k, _)| k.starts_with("module."));
    let mut body = Vec::new();
    let mut heads = HashMap::new();
    for (key, tensor) in tensors {
        let key = if all_prefixed {
            key["module.".len()..].to_string()
        } else {
            key
        };
        if key.ends_with("num_batches_tracked") {
            continue;
        }
        if let Some(rest) = key.strip_prefix("backbone.body.") {
            body.push((rest.to_string(), tensor));
        } else if key.starts_with("backbone.fpn.")
            || key.starts_with("rpn.")
            || key.starts_with("roi_heads.")
        {
            heads.insert(torchvision_legacy_key(&key), tensor);
        } else {
            return Err(config(
                OP,
                "state dict",
                format!(
                    "has key {key}, outside backbone.body., backbone.fpn., rpn. and roi_heads. \
                     (not a torchvision Mask R-CNN checkpoint?)"
                ),
            ));
        }
    }
    for (prefix, found) in [
        ("backbone.body.", !body.is_empty()),
        (
            "backbone.fpn.",
            heads.keys().any(|k| k.starts_with("backbone.fpn.")),
        ),
        ("rpn.", heads.keys().any(|k| k.starts_with("rpn."))),
        (
            "roi_heads.",
            heads.keys().any(|k| k.starts_with("roi_heads.")),
        ),
    ] {
        if !found {
            return Err(config(
                OP,
                "state dict",
                format!("has no key under {prefix}"),
            ));
        }
    }
    let canonical =
        rtb_models::weights::canonicalize("torchvision Mask R-CNN backbone.body", body)?;
    Ok(DetectorWeights {
        backbone: canonical.tensors,
        heads,
    })
}
