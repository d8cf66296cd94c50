//! UperNet checkpoints: transformers' `UperNetForSemanticSegmentation` safetensors and
//! mmsegmentation's `.pth`, split into the heads (transformers' names, which the model uses)
//! and the backbone (rtb-models' canonical names, through
//! [`rtb_models::weights::canonicalize`]).
//!
//! Head keys, checked against transformers 5.23's `modeling_upernet.py` and mmseg's
//! `UPerHead` / `FCNHead` / mmcv's `ConvModule`:
//!
//! | transformers | mmsegmentation |
//! |---|---|
//! | `decode_head.psp_modules.i.1.conv` / `.batch_norm` | `decode_head.psp_modules.i.1.conv` / `.bn` |
//! | `decode_head.{bottleneck, lateral_convs.i, fpn_convs.i, fpn_bottleneck}.{conv, batch_norm}` | the same with `bn` |
//! | `decode_head.classifier` | `decode_head.conv_seg` |
//! | `auxiliary_head.convs.i.{conv, batch_norm}`, `auxiliary_head.conv_cat` | `…{conv, bn}` |
//! | `auxiliary_head.classifier` | `auxiliary_head.conv_seg` |
//!
//! `num_batches_tracked` is dropped. Backbone keys lose their `backbone.` prefix and go
//! through rtb-models' layouts:
//! - transformers `SwinBackbone` (hub names `backbone.embeddings…`, `backbone.encoder…`,
//!   `backbone.hidden_states_norms.stageK`, and transformers 5's `backbone.swin.…` with
//!   `q_proj`/`k_proj`/`v_proj`), and `ConvNextBackbone`; transformers 5's SwinBackbone also
//!   carries the unused final `swin.layernorm` (canonical `norm.*`), which
//!   [`UperNetWeights::fit`] drops for a dense backbone;
//! - mmseg 0.x Swin as in the Swin-Transformer-Semantic-Segmentation release (Microsoft
//!   names, `norm0..norm3` output norms), mmseg 1.x's own Swin names
//!   (`stages.i.blocks.j.attn.w_msa`, `ffn.layers`, rtb-models' `openmmlab_swin` layout), and
//!   torchvision-named ResNets.
//!
//! Not handled (the backbone's layout is reported unknown, naming the file): the deep-stem
//! ResNetV1c of mmseg's `upernet_r50` configs (`stem.0…`, which rtb-models' ResNet has no
//! layout for), and mmpretrain's ConvNeXt names.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rtb_models::ArchConfig;
use rtb_models::weights::{Canonical, canonicalize, check_keys, expected_keys, read_weights};

use crate::error::{Result, SegError};
use crate::upernet::{UperNet, UperNetConfig};

/// Which naming the heads of a checkpoint use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadLayout {
    /// transformers' `UperNetForSemanticSegmentation` (what the model uses).
    Transformers,
    /// mmsegmentation's `EncoderDecoder` (`conv_seg`, `bn`).
    Mmseg,
}

/// An UperNet checkpoint split into heads and backbone.
#[derive(Debug)]
pub struct UperNetWeights {
    /// The heads' naming in the file.
    pub layout: HeadLayout,
    /// `decode_head.…` and `auxiliary_head.…` tensors under transformers' names.
    pub heads: BTreeMap<String, Tensor>,
    /// The backbone in rtb-models' canonical layout (`None` when the file has no
    /// `backbone.` keys).
    pub backbone: Option<Canonical>,
    /// Keys dropped on the way (`num_batches_tracked`, buffers the backbone recomputes, an
    /// unused final norm).
    pub dropped: Vec<String>,
}

/// An mmseg head key under transformers' name (`None` for `num_batches_tracked`).
pub fn head_key_from_mmseg(key: &str) -> Option<String> {
    if key.ends_with("num_batches_tracked") {
        return None;
    }
    let key = key
        .replace(".conv_seg.", ".classifier.")
        .replace(".bn.", ".batch_norm.");
    Some(key)
}

fn weights_error(source: &str, message: impl Into<String>) -> SegError {
    SegError::Weights {
        source_name: source.to_string(),
        message: message.into(),
    }
}

/// Splits the tensors of an UperNet checkpoint (`source` names it in errors).
pub fn split_upernet(source: &str, tensors: Vec<(String, Tensor)>) -> Result<UperNetWeights> {
    let tensors: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(|(k, t)| match k.strip_prefix("module.") {
            Some(rest) => (rest.to_string(), t),
            None => (k, t),
        })
        .collect();
    let has = |needle: &str| tensors.iter().any(|(k, _)| k.starts_with(needle));
    let layout = if has("decode_head.classifier.") {
        HeadLayout::Transformers
    } else if has("decode_head.conv_seg.") {
        HeadLayout::Mmseg
    } else {
        return Err(weights_error(
            source,
            format!(
                "not an UperNet checkpoint: no decode_head.classifier (transformers) or \
                 decode_head.conv_seg (mmseg) key; first keys: {:?}",
                tensors
                    .iter()
                    .take(5)
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
            ),
        ));
    };
    let mut heads = BTreeMap::new();
    let mut backbone = Vec::new();
    let mut dropped = Vec::new();
    let mut unknown = Vec::new();
    for (key, tensor) in tensors {
        if let Some(rest) = key.strip_prefix("backbone.") {
            backbone.push((rest.to_string(), tensor));
        } else if key.starts_with("decode_head.") || key.starts_with("auxiliary_head.") {
            if key.ends_with("num_batches_tracked") {
                dropped.push(key);
                continue;
            }
            let name = match layout {
                HeadLayout::Transformers => key,
                HeadLayout::Mmseg => head_key_from_mmseg(&key).unwrap_or(key),
            };
            heads.insert(name, tensor);
        } else {
            unknown.push(key);
        }
    }
    if !unknown.is_empty() {
        return Err(weights_error(
            source,
            format!("keys outside backbone / decode_head / auxiliary_head: {unknown:?}"),
        ));
    }
    let backbone = if backbone.is_empty() {
        None
    } else {
        let canonical = canonicalize(&format!("{source} (backbone.)"), backbone)?;
        dropped.extend(canonical.dropped.iter().map(|k| format!("backbone.{k}")));
        Some(canonical)
    };
    Ok(UperNetWeights {
        layout,
        heads,
        backbone,
        dropped,
    })
}

/// Reads an UperNet checkpoint (safetensors or `.pth`, any layout above) and splits it.
pub fn load_upernet(path: &Path) -> Result<UperNetWeights> {
    let file = read_weights(path, None)?;
    split_upernet(&path.display().to_string(), file.tensors)
}

impl UperNetWeights {
    /// The whole model's state dict: the heads, and the backbone as `backbone.<canonical>`
    /// (what [`UperNet::build`] asks a `VarBuilder` for).
    pub fn state_dict(&self) -> BTreeMap<String, Tensor> {
        let mut out = self.heads.clone();
        if let Some(backbone) = &self.backbone {
            for (k, t) in &backbone.tensors {
                out.insert(format!("backbone.{k}"), t.clone());
            }
        }
        out
    }

    /// Drops backbone tensors that `arch` does not have and no dense backbone uses: the
    /// final norm (`norm.weight`, `norm.bias`) that transformers 5's `SwinBackbone` carries
    /// but never applies. They are listed in [`dropped`](Self::dropped).
    pub fn fit(&mut self, arch: &ArchConfig) -> Result<()> {
        let Some(backbone) = &mut self.backbone else {
            return Ok(());
        };
        let expected: BTreeSet<String> =
            arch.expected_keys()?.into_iter().map(|(k, _)| k).collect();
        for key in ["norm.weight", "norm.bias"] {
            if !expected.contains(key) && backbone.tensors.remove(key).is_some() {
                self.dropped.push(format!("backbone.{key}"));
            }
        }
        Ok(())
    }
}

/// Every key and shape an UperNet of `cfg` over `arch` asks for (the backbone's as
/// `backbone.<canonical>`).
pub fn upernet_expected_keys(
    cfg: &UperNetConfig,
    arch: &ArchConfig,
) -> Result<Vec<(String, Vec<usize>)>> {
    let mut inner: Option<SegError> = None;
    let keys = expected_keys(|vb| match UperNet::build(cfg, arch, vb) {
        Ok(_) => Ok(()),
        Err(SegError::Backbone(e)) => Err(e),
        Err(other) => {
            inner = Some(other);
            Ok(())
        }
    })?;
    match inner {
        Some(e) => Err(e),
        None => Ok(keys),
    }
}

/// Checks that a whole-model state dict fits `cfg` over `arch` exactly (every missing,
/// unexpected and mismatched key in one error).
pub fn check_state_dict(
    cfg: &UperNetConfig,
    arch: &ArchConfig,
    source: &str,
    tensors: &BTreeMap<String, Tensor>,
) -> Result<()> {
    let report = check_keys(&upernet_expected_keys(cfg, arch)?, tensors);
    if report.is_clean() {
        Ok(())
    } else {
        Err(weights_error(
            source,
            format!("does not fit UperNet over {arch}:{report}"),
        ))
    }
}

/// Builds an UperNet for inference from a checkpoint that fits it exactly (plain tensors:
/// nothing trains). For training, give [`UperNetWeights::state_dict`] to
/// [`rtb_models::init::trainable_builder`] and call [`UperNet::build`].
pub fn from_weights(
    cfg: &UperNetConfig,
    arch: &ArchConfig,
    source: &str,
    weights: &UperNetWeights,
    (dtype, device): (DType, &Device),
) -> Result<UperNet> {
    let state = weights.state_dict();
    check_state_dict(cfg, arch, source, &state)?;
    let map: HashMap<String, Tensor> = state.into_iter().collect();
    UperNet::build(cfg, arch, &VarBuilder::from_tensors(map, dtype, device))
}
