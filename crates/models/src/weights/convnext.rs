//! ConvNeXt key layouts and their conversion to the canonical (timm) names that
//! [`crate::convnext::ConvNeXt`] reads.
//!
//! Known layouts ([`ConvNeXtLayout`]), each mapping checked against its source:
//! - timm (`convnext_tiny.fb_in1k`; timm 1.0 `timm/models/convnext.py`): canonical,
//!   `stem.{0,1}`, `stages.N.downsample.{0,1}` (N = 1..3), `stages.N.blocks.M.{conv_dw, norm,
//!   mlp.fc1, mlp.fc2, gamma}`, `head.norm`, `head.fc`; dense-task norms `norm0..norm3`.
//! - The original facebookresearch/ConvNeXt release (`models/convnext.py`; timm's own
//!   `checkpoint_filter_fn` converts it the same way): `downsample_layers.0.{0,1}` is the
//!   stem, `downsample_layers.N.{0,1}` the downsampling of stage N, `stages.N.M.{dwconv, norm,
//!   pwconv1, pwconv2, gamma}`, `norm` (after pooling) and `head` (the classifier). The
//!   release wraps its state dict in `{'model': …}`, which [`crate::weights::read_weights`]
//!   unwraps. Keys `norm0..norm3` (dense-task output norms) pass through unchanged: that is
//!   how mmpretrain's ConvNeXt names them (checked); the original repository's detection and
//!   segmentation backbones are believed to use the same names, which was not checked here. A
//!   whole detector's `backbone.` prefix is not removed, and mmpretrain's block names
//!   (`depthwise_conv`, `pointwise_conv1/2`) are not converted.
//! - Hugging Face transformers (`models/convnext/modeling_convnext.py`): `ConvNextModel`
//!   (`embeddings.patch_embeddings`, `embeddings.layernorm`, `encoder.stages.N.
//!   downsampling_layer.{0,1}`, `encoder.stages.N.layers.M.{dwconv, layernorm, pwconv1,
//!   pwconv2, layer_scale_parameter}`, `layernorm`), `ConvNextForImageClassification` (the same
//!   under `convnext.`, plus `classifier`) and `ConvNextBackbone` (`hidden_states_norms.stageK`,
//!   K = 1..4, become the dense-task norms `norm{K−1}`). Beware: transformers' final
//!   `layernorm` uses `config.layer_norm_eps` (1e-12 by default) where timm and the release use
//!   1e-6; pooled features and logits of such a model differ very slightly from ours.
//!
//! A DataParallel `module.` prefix is stripped (when every key has it) and buffers that models
//! recompute (`num_batches_tracked`) are dropped.

use candle_core::Tensor;

use crate::error::{ModelError, Result};

/// A ConvNeXt key layout this module converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvNeXtLayout {
    /// timm names (canonical).
    Timm,
    /// The original facebookresearch/ConvNeXt release.
    FacebookOriginal,
    /// Hugging Face transformers `ConvNextModel` / `ConvNextForImageClassification` /
    /// `ConvNextBackbone`.
    Transformers,
}

impl std::fmt::Display for ConvNeXtLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConvNeXtLayout::Timm => "ConvNeXt, timm names",
            ConvNeXtLayout::FacebookOriginal => "ConvNeXt, original facebookresearch release names",
            ConvNeXtLayout::Transformers => "ConvNeXt, Hugging Face transformers names",
        })
    }
}

const MODULE_PREFIX: &str = "module.";

/// Recognises a ConvNeXt layout from its keys (a `module.` prefix is ignored); `None` for keys
/// of anything else.
pub fn detect<'a>(keys: impl IntoIterator<Item = &'a str>) -> Option<ConvNeXtLayout> {
    let keys: Vec<&str> = keys
        .into_iter()
        .map(|k| k.strip_prefix(MODULE_PREFIX).unwrap_or(k))
        .collect();
    let has = |needle: &str| keys.iter().any(|k| k.contains(needle));
    let starts = |prefix: &str| keys.iter().any(|k| k.starts_with(prefix));
    if has("embeddings.patch_embeddings.")
        && (has(".downsampling_layer.") || has(".layer_scale_parameter") || has(".pwconv1."))
    {
        return Some(ConvNeXtLayout::Transformers);
    }
    if starts("downsample_layers.0.") && has(".dwconv.") {
        return Some(ConvNeXtLayout::FacebookOriginal);
    }
    if starts("stem.0.") && has(".conv_dw.") && starts("stages.") {
        return Some(ConvNeXtLayout::Timm);
    }
    None
}

fn unrecognised(source_hint: &str, key: &str) -> ModelError {
    ModelError::Unsupported {
        model: "weights",
        message: format!("{source_hint}: unrecognised ConvNeXt key {key}"),
    }
}

/// `"N.rest"` → `(N, "rest")`.
fn index_and_tail(s: &str) -> Option<(usize, &str)> {
    let (index, tail) = s.split_once('.')?;
    Some((index.parse().ok()?, tail))
}

/// Renames one key of the original release.
fn facebook_key(source_hint: &str, key: &str) -> Result<String> {
    let bad = || unrecognised(source_hint, key);
    if let Some(rest) = key.strip_prefix("downsample_layers.") {
        let (stage, tail) = index_and_tail(rest).ok_or_else(bad)?;
        return Ok(if stage == 0 {
            format!("stem.{tail}")
        } else {
            format!("stages.{stage}.downsample.{tail}")
        });
    }
    if let Some(rest) = key.strip_prefix("stages.") {
        let (stage, rest) = index_and_tail(rest).ok_or_else(bad)?;
        let (block, tail) = index_and_tail(rest).ok_or_else(bad)?;
        let tail = if let Some(t) = tail.strip_prefix("dwconv.") {
            format!("conv_dw.{t}")
        } else if let Some(t) = tail.strip_prefix("pwconv1.") {
            format!("mlp.fc1.{t}")
        } else if let Some(t) = tail.strip_prefix("pwconv2.") {
            format!("mlp.fc2.{t}")
        } else if tail.starts_with("norm.") || tail == "gamma" {
            tail.to_string()
        } else {
            return Err(bad());
        };
        return Ok(format!("stages.{stage}.blocks.{block}.{tail}"));
    }
    if let Some(t) = key.strip_prefix("norm.") {
        return Ok(format!("head.norm.{t}"));
    }
    if let Some(t) = key.strip_prefix("head.") {
        return Ok(format!("head.fc.{t}"));
    }
    // mmdetection / mmsegmentation output norms keep their names.
    Ok(key.to_string())
}

/// Renames one transformers key.
fn transformers_key(source_hint: &str, key: &str) -> Result<String> {
    let bad = || unrecognised(source_hint, key);
    let k = key.strip_prefix("convnext.").unwrap_or(key);
    if let Some(t) = k.strip_prefix("embeddings.patch_embeddings.") {
        return Ok(format!("stem.0.{t}"));
    }
    if let Some(t) = k.strip_prefix("embeddings.layernorm.") {
        return Ok(format!("stem.1.{t}"));
    }
    if let Some(rest) = k.strip_prefix("encoder.stages.") {
        let (stage, tail) = index_and_tail(rest).ok_or_else(bad)?;
        if let Some(t) = tail.strip_prefix("downsampling_layer.") {
            return Ok(format!("stages.{stage}.downsample.{t}"));
        }
        let rest = tail.strip_prefix("layers.").ok_or_else(bad)?;
        let (block, tail) = index_and_tail(rest).ok_or_else(bad)?;
        let tail = [
            ("dwconv.", "conv_dw."),
            ("layernorm.", "norm."),
            ("pwconv1.", "mlp.fc1."),
            ("pwconv2.", "mlp.fc2."),
        ]
        .iter()
        .find_map(|(from, to)| tail.strip_prefix(from).map(|t| format!("{to}{t}")))
        .or_else(|| (tail == "layer_scale_parameter").then(|| "gamma".to_string()))
        .ok_or_else(bad)?;
        return Ok(format!("stages.{stage}.blocks.{block}.{tail}"));
    }
    if let Some(t) = k.strip_prefix("layernorm.") {
        return Ok(format!("head.norm.{t}"));
    }
    if let Some(t) = k.strip_prefix("classifier.") {
        return Ok(format!("head.fc.{t}"));
    }
    if let Some(rest) = k.strip_prefix("hidden_states_norms.stage") {
        let (stage, param) = index_and_tail(rest).ok_or_else(bad)?;
        if !(1..=4).contains(&stage) {
            return Err(bad());
        }
        return Ok(format!("norm{}.{param}", stage - 1));
    }
    Err(bad())
}

/// Converts a state dict in `layout` to the canonical names. `source_hint` names the origin in
/// errors. A `module.` prefix on every key is stripped first; recomputed buffers
/// (`num_batches_tracked`) are dropped. Tensors are moved, never copied.
pub fn to_canonical(
    layout: ConvNeXtLayout,
    source_hint: &str,
    tensors: Vec<(String, Tensor)>,
) -> Result<Vec<(String, Tensor)>> {
    let strip = !tensors.is_empty() && tensors.iter().all(|(k, _)| k.starts_with(MODULE_PREFIX));
    let mut out = Vec::with_capacity(tensors.len());
    for (key, tensor) in tensors {
        let key = if strip {
            key[MODULE_PREFIX.len()..].to_string()
        } else {
            key
        };
        if key.ends_with("num_batches_tracked") {
            continue;
        }
        let renamed = match layout {
            ConvNeXtLayout::Timm => key,
            ConvNeXtLayout::FacebookOriginal => facebook_key(source_hint, &key)?,
            ConvNeXtLayout::Transformers => transformers_key(source_hint, &key)?,
        };
        out.push((renamed, tensor));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_recognised() {
        assert_eq!(
            detect(["stem.0.weight", "stages.0.blocks.0.conv_dw.weight"]),
            Some(ConvNeXtLayout::Timm)
        );
        assert_eq!(
            detect([
                "module.downsample_layers.0.0.weight",
                "module.stages.0.0.dwconv.weight"
            ]),
            Some(ConvNeXtLayout::FacebookOriginal)
        );
        assert_eq!(
            detect([
                "convnext.embeddings.patch_embeddings.weight",
                "convnext.encoder.stages.0.layers.0.pwconv1.weight"
            ]),
            Some(ConvNeXtLayout::Transformers)
        );
        // Swin's transformers names are not ConvNeXt's.
        assert_eq!(
            detect(["swin.embeddings.patch_embeddings.projection.weight"]),
            None
        );
        assert_eq!(detect(["conv1.weight", "layer1.0.conv1.weight"]), None);
    }

    #[test]
    fn keys_are_renamed() {
        let fb = |k: &str| facebook_key("x", k).unwrap();
        assert_eq!(fb("downsample_layers.0.1.bias"), "stem.1.bias");
        assert_eq!(
            fb("downsample_layers.2.1.weight"),
            "stages.2.downsample.1.weight"
        );
        assert_eq!(
            fb("stages.2.7.pwconv2.bias"),
            "stages.2.blocks.7.mlp.fc2.bias"
        );
        assert_eq!(fb("stages.0.0.gamma"), "stages.0.blocks.0.gamma");
        assert_eq!(fb("norm.weight"), "head.norm.weight");
        assert_eq!(fb("head.weight"), "head.fc.weight");
        assert_eq!(fb("norm3.weight"), "norm3.weight");
        assert!(facebook_key("x", "stages.0.0.bogus.weight").is_err());
        let hf = |k: &str| transformers_key("x", k).unwrap();
        assert_eq!(
            hf("convnext.encoder.stages.3.layers.2.layer_scale_parameter"),
            "stages.3.blocks.2.gamma"
        );
        assert_eq!(
            hf("encoder.stages.1.downsampling_layer.0.weight"),
            "stages.1.downsample.0.weight"
        );
        assert_eq!(hf("hidden_states_norms.stage4.bias"), "norm3.bias");
        assert_eq!(hf("convnext.layernorm.weight"), "head.norm.weight");
        assert_eq!(hf("classifier.bias"), "head.fc.bias");
        let err = transformers_key("file.bin", "hidden_states_norms.stage5.bias").unwrap_err();
        assert!(err.to_string().contains("file.bin"), "{err}");
    }
}
