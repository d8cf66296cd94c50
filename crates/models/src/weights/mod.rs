//! Weight files: reading (safetensors, PyTorch `.pth` in the zip and the legacy format),
//! recognising key layouts, converting them to the canonical layout (timm ≥ 0.9 names), and
//! checking a state dict against a model (every missing and unexpected key, every shape
//! mismatch).
//!
//! Each registered family lists the layouts it imports ([`crate::registry::WeightLayout`]);
//! [`detect_layout`] tries them all and names the one found ([`KeyLayout`]). The built-in ones:
//! - ResNet: torchvision and timm share names (`conv1`, `layer1.0.conv1`, `fc`).
//! - Swin, timm ≥ 0.9: canonical.
//! - Swin, original Microsoft release and timm < 0.9: patch merging at the end of stage `i`
//!   (`layers.i.downsample` → `layers.(i+1).downsample`), `head.` → `head.fc.`.
//! - Swin, transformers: `swin.embeddings…`, split `query`/`key`/`value` (concatenated into
//!   `qkv`), `layernorm_before/after`, `intermediate.dense`/`output.dense`, patch merging at
//!   the end of the stage, `swin.layernorm`, `classifier` (the hub files' names), and
//!   transformers 5's module names (`q_proj`/`k_proj`/`v_proj`, `o_proj`,
//!   `relative_position_bias.relative_position_bias_table`, `mlp.fc1/fc2`); `SwinBackbone`'s
//!   `hidden_states_norms.stageK` become the dense-task norms `norm{K−1}`.
//! - Swin, OpenMMLab (mmsegmentation 1.x, mmdetection 3.x and their 0.x / 2.x releases):
//!   `patch_embed.projection`, `stages.i.blocks.j.attn.w_msa.*`, `ffn.layers.0.0` / `ffn.layers.1`,
//!   patch merging at the end of stage `i` whose `norm` / `reduction` channels are in
//!   `nn.Unfold`'s order (`c·4 + kh·2 + kw`), reordered to timm's (`(kw·2 + kh)·C + c`); the
//!   dense-task norms `norm0`..`norm3` keep their names.
//!
//! Buffers that models recompute (`num_batches_tracked`, `relative_position_index`,
//! `attn_mask`) are dropped; a DataParallel `module.` prefix is stripped.

pub mod convnext;
pub mod pth;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use crate::error::{KeyReport, ModelError, Result, ShapeMismatch, format_error};

pub use pth::{Nesting, PthFormat};

/// The container a weights file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// safetensors.
    Safetensors,
    /// PyTorch zip archive.
    PthZip,
    /// PyTorch legacy (pre-1.6) stream.
    PthLegacy,
}

impl std::fmt::Display for FileFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileFormat::Safetensors => "safetensors",
            FileFormat::PthZip => "PyTorch zip (torch.save ≥ 1.6)",
            FileFormat::PthLegacy => "PyTorch legacy (pre-1.6, non-zip)",
        })
    }
}

/// The tensors of a weights file as stored, before any renaming.
#[derive(Debug)]
pub struct WeightsFile {
    /// Container format.
    pub format: FileFormat,
    /// Where the state dict sat (`.pth` only; safetensors are flat).
    pub nesting: Nesting,
    /// Named tensors in file order (safetensors: sorted by key), on the CPU.
    pub tensors: Vec<(String, Tensor)>,
    /// Entries skipped because candle has no dtype for them: `(key, PyTorch dtype)`.
    pub skipped: Vec<(String, String)>,
}

/// Reads a weights file; the format is recognised from its contents (safetensors by its
/// header, PyTorch by its zip or pickle signature). For `.pth`, `key` selects the top-level
/// entry holding the state dict (default: see [`pth::read_pth`]).
pub fn read_weights(path: &Path, key: Option<&str>) -> Result<WeightsFile> {
    let mut head = [0u8; 9];
    {
        use std::io::Read;
        let mut file = std::fs::File::open(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let _ = file.read(&mut head).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    }
    // safetensors: an 8-byte little-endian header length, then a JSON object.
    if head[8] == b'{' {
        let map = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| format_error(path, format!("safetensors: {e}")))?;
        let mut tensors: Vec<(String, Tensor)> = map.into_iter().collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        return Ok(WeightsFile {
            format: FileFormat::Safetensors,
            nesting: Nesting::TopLevel,
            tensors,
            skipped: Vec::new(),
        });
    }
    let contents = pth::read_pth(path, key)?;
    Ok(WeightsFile {
        format: match contents.format {
            PthFormat::Zip => FileFormat::PthZip,
            PthFormat::Legacy => FileFormat::PthLegacy,
        },
        nesting: contents.nesting,
        tensors: contents.tensors,
        skipped: contents.skipped,
    })
}

/// A recognised key layout: which registered family and which of its
/// [`WeightLayout`](crate::registry::WeightLayout)s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    /// The architecture family (`resnet`, `swin`, …).
    pub family: String,
    /// The layout's short name (`torchvision`, `transformers_swin`, …).
    pub name: &'static str,
    /// One line for people.
    pub description: &'static str,
}

impl std::fmt::Display for KeyLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.description)
    }
}

/// The common `module.` prefix of DataParallel checkpoints, if every key has it.
fn strip_module_prefix(tensors: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    const PREFIX: &str = "module.";
    if !tensors.is_empty() && tensors.iter().all(|(k, _)| k.starts_with(PREFIX)) {
        tensors
            .into_iter()
            .map(|(k, t)| (k[PREFIX.len()..].to_string(), t))
            .collect()
    } else {
        tensors
    }
}

/// Recognises the layout of a set of keys (after any `module.` prefix) among the layouts of
/// every registered family, in registration order.
pub fn detect_layout<'a>(keys: impl IntoIterator<Item = &'a str>) -> Option<KeyLayout> {
    detect(keys).map(|(layout, _)| layout)
}

fn detect<'a>(
    keys: impl IntoIterator<Item = &'a str>,
) -> Option<(KeyLayout, crate::registry::ConvertFn)> {
    let keys: Vec<&str> = keys
        .into_iter()
        .map(|k| k.strip_prefix("module.").unwrap_or(k))
        .collect();
    crate::registry::layouts()
        .into_iter()
        .find(|(_, layout)| (layout.detect)(&keys))
        .map(|(family, layout)| {
            (
                KeyLayout {
                    family,
                    name: layout.name,
                    description: layout.description,
                },
                layout.convert,
            )
        })
}

/// torchvision / timm ResNet keys (`conv1`, `layer1.0.conv1`).
pub(crate) fn is_torchvision_resnet(keys: &[&str]) -> bool {
    let starts = |prefix: &str| keys.iter().any(|k| k.starts_with(prefix));
    starts("conv1.weight") && starts("layer1.0.conv1.weight")
}

fn is_timm_style_swin(keys: &[&str]) -> bool {
    let starts = |prefix: &str| keys.iter().any(|k| k.starts_with(prefix));
    starts("patch_embed.proj.") && keys.iter().any(|k| k.contains("blocks.0.attn.qkv."))
}

/// Microsoft's release merges patches at the end of a stage: stage 0 owns one.
fn is_microsoft_layout(keys: &[&str]) -> bool {
    let starts = |prefix: &str| keys.iter().any(|k| k.starts_with(prefix));
    starts("layers.0.downsample.") || (starts("head.") && !starts("head.fc."))
}

/// timm ≥ 0.9 Swin keys (canonical).
pub(crate) fn is_timm_swin(keys: &[&str]) -> bool {
    is_timm_style_swin(keys) && !is_microsoft_layout(keys)
}

/// Swin keys of the original Microsoft release (and timm < 0.9).
pub(crate) fn is_microsoft_swin(keys: &[&str]) -> bool {
    is_timm_style_swin(keys) && is_microsoft_layout(keys)
}

/// Swin keys of Hugging Face transformers.
pub(crate) fn is_transformers_swin(keys: &[&str]) -> bool {
    keys.iter()
        .any(|k| k.contains("embeddings.patch_embeddings.projection"))
}

/// OpenMMLab Swin keys (mmsegmentation / mmdetection `SwinTransformer`).
pub(crate) fn is_openmmlab_swin(keys: &[&str]) -> bool {
    let starts = |prefix: &str| keys.iter().any(|k| k.starts_with(prefix));
    starts("patch_embed.projection.") && keys.iter().any(|k| k.contains(".attn.w_msa."))
}

/// Converts an OpenMMLab Swin state dict (module docs).
pub(crate) fn openmmlab_swin_to_timm(
    source: &str,
    tensors: Vec<(String, Tensor)>,
) -> Result<Vec<(String, Tensor)>> {
    let unrecognised = |key: &str| ModelError::Unsupported {
        model: "weights",
        message: format!("{source}: unrecognised OpenMMLab Swin key {key}"),
    };
    let mut out = Vec::with_capacity(tensors.len());
    for (key, tensor) in tensors {
        if let Some(tail) = key.strip_prefix("patch_embed.projection.") {
            out.push((format!("patch_embed.proj.{tail}"), tensor));
            continue;
        }
        let Some(rest) = key.strip_prefix("stages.") else {
            // `patch_embed.norm`, the output norms `normK`, anything else: timm's names.
            out.push((key, tensor));
            continue;
        };
        let (stage, tail) = rest.split_once('.').ok_or_else(|| unrecognised(&key))?;
        let stage: usize = stage.parse().map_err(|_| unrecognised(&key))?;
        if let Some(param) = tail.strip_prefix("downsample.") {
            // mmdet merges patches at the end of a stage, timm at the start of the next one.
            let renamed = format!("layers.{}.downsample.{param}", stage + 1);
            let reordered = match param {
                "norm.weight" | "norm.bias" | "reduction.weight" => unfold_to_concat(&tensor)
                    .map_err(|e| format_error(Path::new(source), format!("{key}: {e}")))?,
                _ => return Err(unrecognised(&key)),
            };
            out.push((renamed, reordered));
            continue;
        }
        let rest = tail
            .strip_prefix("blocks.")
            .ok_or_else(|| unrecognised(&key))?;
        let (block, param) = rest.split_once('.').ok_or_else(|| unrecognised(&key))?;
        let mapped = [
            ("norm1.", "norm1."),
            ("norm2.", "norm2."),
            ("attn.w_msa.qkv.", "attn.qkv."),
            ("attn.w_msa.proj.", "attn.proj."),
            (
                "attn.w_msa.relative_position_bias_table",
                "attn.relative_position_bias_table",
            ),
            (
                "attn.w_msa.relative_position_index",
                "attn.relative_position_index",
            ),
            ("ffn.layers.0.0.", "mlp.fc1."),
            ("ffn.layers.1.", "mlp.fc2."),
        ]
        .iter()
        .find_map(|(from, to)| param.strip_prefix(from).map(|t| format!("{to}{t}")))
        .ok_or_else(|| unrecognised(&key))?;
        out.push((format!("layers.{stage}.blocks.{block}.{mapped}"), tensor));
    }
    Ok(out)
}

/// Reorders the last dimension (`4C`) of a patch-merging tensor from `nn.Unfold`'s channel
/// order `c·4 + kh·2 + kw` to timm's concatenation order `(kw·2 + kh)·C + c`.
fn unfold_to_concat(tensor: &Tensor) -> candle_core::Result<Tensor> {
    let dims = tensor.dims().to_vec();
    let last = *dims.last().unwrap_or(&0);
    if !last.is_multiple_of(4) || last == 0 {
        candle_core::bail!("last dimension {last} is not a multiple of 4");
    }
    let channels = last / 4;
    let lead: usize = dims[..dims.len() - 1].iter().product();
    tensor
        .reshape((lead, channels, 2, 2))?
        .permute((0, 3, 2, 1))?
        .contiguous()?
        .reshape(dims)
}

/// Converts Microsoft-layout Swin keys.
pub(crate) fn microsoft_swin_to_timm(
    _source: &str,
    tensors: Vec<(String, Tensor)>,
) -> Result<Vec<(String, Tensor)>> {
    Ok(tensors
        .into_iter()
        .map(|(k, t)| (microsoft_to_timm(&k), t))
        .collect())
}

/// Buffers that models recompute rather than load.
fn is_recomputed_buffer(key: &str) -> bool {
    key.ends_with("num_batches_tracked")
        || key.ends_with("relative_position_index")
        || key.ends_with("attn_mask")
}

/// Renames one Microsoft-layout Swin key.
fn microsoft_to_timm(key: &str) -> String {
    if let Some(rest) = key.strip_prefix("layers.")
        && let Some((stage, tail)) = rest.split_once('.')
        && tail.starts_with("downsample.")
        && let Ok(stage) = stage.parse::<usize>()
    {
        return format!("layers.{}.{tail}", stage + 1);
    }
    if let Some(tail) = key.strip_prefix("head.")
        && !tail.starts_with("fc.")
    {
        return format!("head.fc.{tail}");
    }
    key.to_string()
}

/// Converts a transformers-layout Swin state dict (query/key/value are concatenated).
pub(crate) fn transformers_to_timm(
    path_hint: &str,
    tensors: Vec<(String, Tensor)>,
) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::with_capacity(tensors.len());
    // (block prefix, param) → [q, k, v]
    let mut qkv: BTreeMap<(String, String), [Option<Tensor>; 3]> = BTreeMap::new();
    for (key, tensor) in tensors {
        let k = key.strip_prefix("swin.").unwrap_or(&key);
        let renamed = if let Some(tail) = k.strip_prefix("embeddings.patch_embeddings.projection.")
        {
            format!("patch_embed.proj.{tail}")
        } else if let Some(tail) = k.strip_prefix("embeddings.norm.") {
            format!("patch_embed.norm.{tail}")
        } else if let Some(tail) = k.strip_prefix("layernorm.") {
            format!("norm.{tail}")
        } else if let Some(tail) = k.strip_prefix("classifier.") {
            format!("head.fc.{tail}")
        } else if let Some(tail) = k.strip_prefix("hidden_states_norms.stage") {
            let (stage, param) = tail
                .split_once('.')
                .ok_or_else(|| ModelError::Unsupported {
                    model: "weights",
                    message: format!("{path_hint}: unrecognised key {key}"),
                })?;
            let stage: usize = stage.parse().map_err(|_| ModelError::Unsupported {
                model: "weights",
                message: format!("{path_hint}: unrecognised key {key}"),
            })?;
            format!("norm{}.{param}", stage.saturating_sub(1))
        } else if let Some(rest) = k.strip_prefix("encoder.layers.") {
            let (stage, tail) = rest
                .split_once('.')
                .ok_or_else(|| ModelError::Unsupported {
                    model: "weights",
                    message: format!("{path_hint}: unrecognised key {key}"),
                })?;
            let stage_index: usize = stage.parse().map_err(|_| ModelError::Unsupported {
                model: "weights",
                message: format!("{path_hint}: unrecognised key {key}"),
            })?;
            if let Some(tail) = tail.strip_prefix("downsample.") {
                format!("layers.{}.downsample.{tail}", stage_index + 1)
            } else if let Some(rest) = tail.strip_prefix("blocks.") {
                let (block, tail) =
                    rest.split_once('.')
                        .ok_or_else(|| ModelError::Unsupported {
                            model: "weights",
                            message: format!("{path_hint}: unrecognised key {key}"),
                        })?;
                let prefix = format!("layers.{stage}.blocks.{block}");
                let mapped = [
                    ("layernorm_before.", "norm1."),
                    ("layernorm_after.", "norm2."),
                    (
                        "attention.self.relative_position_bias_table",
                        "attn.relative_position_bias_table",
                    ),
                    (
                        "attention.self.relative_position_index",
                        "attn.relative_position_index",
                    ),
                    ("attention.output.dense.", "attn.proj."),
                    ("intermediate.dense.", "mlp.fc1."),
                    ("output.dense.", "mlp.fc2."),
                    // transformers ≥ 5 module names (what its save_pretrained may write).
                    (
                        "attention.relative_position_bias.relative_position_bias_table",
                        "attn.relative_position_bias_table",
                    ),
                    ("attention.o_proj.", "attn.proj."),
                    ("mlp.fc1.", "mlp.fc1."),
                    ("mlp.fc2.", "mlp.fc2."),
                ]
                .iter()
                .find_map(|(from, to)| {
                    tail.strip_prefix(from).map(|t| format!("{prefix}.{to}{t}"))
                });
                if let Some(mapped) = mapped {
                    mapped
                } else if let Some(t) = tail
                    .strip_prefix("attention.self.")
                    .or_else(|| tail.strip_prefix("attention."))
                {
                    let (which, param) =
                        t.split_once('.').ok_or_else(|| ModelError::Unsupported {
                            model: "weights",
                            message: format!("{path_hint}: unrecognised key {key}"),
                        })?;
                    let slot = match which {
                        "query" | "q_proj" => 0,
                        "key" | "k_proj" => 1,
                        "value" | "v_proj" => 2,
                        _ => {
                            out.push((key.clone(), tensor));
                            continue;
                        }
                    };
                    qkv.entry((prefix, param.to_string())).or_default()[slot] = Some(tensor);
                    continue;
                } else {
                    key.clone()
                }
            } else {
                key.clone()
            }
        } else {
            key.clone()
        };
        out.push((renamed, tensor));
    }
    for ((prefix, param), parts) in qkv {
        match parts {
            [Some(q), Some(k), Some(v)] => {
                out.push((
                    format!("{prefix}.attn.qkv.{param}"),
                    Tensor::cat(&[q, k, v], 0)?,
                ));
            }
            _ => {
                return Err(ModelError::Unsupported {
                    model: "weights",
                    message: format!(
                        "{path_hint}: {prefix} lacks one of attention.self.{{query,key,value}}.{param}"
                    ),
                });
            }
        }
    }
    Ok(out)
}

/// A state dict in the canonical layout, with what was done to get it.
#[derive(Debug)]
pub struct Canonical {
    /// The layout the input had.
    pub layout: KeyLayout,
    /// Canonical key → tensor.
    pub tensors: BTreeMap<String, Tensor>,
    /// Recomputed buffers that were dropped.
    pub dropped: Vec<String>,
}

/// Converts tensors in any known layout to the canonical one. `source` names the origin in
/// errors.
pub fn canonicalize(source: &str, tensors: Vec<(String, Tensor)>) -> Result<Canonical> {
    let tensors = strip_module_prefix(tensors);
    let (layout, convert) = detect(tensors.iter().map(|(k, _)| k.as_str())).ok_or_else(|| {
        let known: Vec<String> = crate::registry::layouts()
            .iter()
            .map(|(_, l)| l.description.to_string())
            .collect();
        ModelError::Unsupported {
            model: "weights",
            message: format!(
                "{source}: unknown key layout (first keys: {:?}); known: {}",
                tensors
                    .iter()
                    .take(5)
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
                known.join("; ")
            ),
        }
    })?;
    let renamed = convert(source, tensors)?;
    let mut out = BTreeMap::new();
    let mut dropped = Vec::new();
    for (key, tensor) in renamed {
        if is_recomputed_buffer(&key) {
            dropped.push(key);
        } else {
            out.insert(key, tensor);
        }
    }
    Ok(Canonical {
        layout,
        tensors: out,
        dropped,
    })
}

/// A `VarBuilder` backend that records every requested key and shape and hands out zeros.
struct ShapeRecorder {
    seen: Mutex<Vec<(String, Vec<usize>)>>,
}

impl SimpleBackend for ShapeRecorder {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push((name.to_string(), shape.dims().to_vec()));
        }
        Tensor::zeros(shape, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("shape recorder: {name} requested without a shape")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// Every key (and shape) a model asks its `VarBuilder` for, in request order: `build` is
/// run on a recording builder whose tensors are zeros (cheap: nothing is read or drawn).
pub fn expected_keys<T>(
    build: impl FnOnce(&VarBuilder<'_>) -> Result<T>,
) -> Result<Vec<(String, Vec<usize>)>> {
    let recorder = std::sync::Arc::new(ShapeRecorder {
        seen: Mutex::new(Vec::new()),
    });
    struct Shared(std::sync::Arc<ShapeRecorder>);
    impl SimpleBackend for Shared {
        fn get(
            &self,
            s: Shape,
            n: &str,
            h: Init,
            d: DType,
            dev: &Device,
        ) -> candle_core::Result<Tensor> {
            self.0.get(s, n, h, d, dev)
        }
        fn get_unchecked(&self, n: &str, d: DType, dev: &Device) -> candle_core::Result<Tensor> {
            self.0.get_unchecked(n, d, dev)
        }
        fn contains_tensor(&self, n: &str) -> bool {
            self.0.contains_tensor(n)
        }
    }
    let vb = VarBuilder::from_backend(Box::new(Shared(recorder.clone())), DType::F32, Device::Cpu);
    build(&vb)?;
    let seen = recorder
        .seen
        .lock()
        .map(|s| s.clone())
        .map_err(|_| candle_core::Error::Msg("shape recorder lock poisoned".into()))?;
    Ok(seen)
}

/// Compares a state dict with the keys and shapes a model expects.
pub fn check_keys(
    expected: &[(String, Vec<usize>)],
    tensors: &BTreeMap<String, Tensor>,
) -> KeyReport {
    let mut report = KeyReport::default();
    let expected_map: HashMap<&str, &Vec<usize>> =
        expected.iter().map(|(k, s)| (k.as_str(), s)).collect();
    for (key, shape) in expected {
        match tensors.get(key) {
            None => report.missing.push(key.clone()),
            Some(t) if t.dims() != shape.as_slice() => {
                report.shape_mismatches.push(ShapeMismatch {
                    key: key.clone(),
                    expected: shape.clone(),
                    found: t.dims().to_vec(),
                })
            }
            Some(_) => {}
        }
    }
    report.unexpected = tensors
        .keys()
        .filter(|k| !expected_map.contains_key(k.as_str()))
        .cloned()
        .collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Tensor {
        Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn layouts_are_recognised() {
        let name = |keys: &[&str]| detect_layout(keys.iter().copied()).map(|l| l.name);
        assert_eq!(
            name(&["module.conv1.weight", "module.layer1.0.conv1.weight"]),
            Some("torchvision_resnet")
        );
        let timm = [
            "patch_embed.proj.weight",
            "layers.0.blocks.0.attn.qkv.weight",
            "layers.1.downsample.norm.weight",
            "head.fc.weight",
        ];
        assert_eq!(name(&timm), Some("timm_swin"));
        let ms = [
            "patch_embed.proj.weight",
            "layers.0.blocks.0.attn.qkv.weight",
            "layers.0.downsample.norm.weight",
            "head.weight",
        ];
        assert_eq!(name(&ms), Some("microsoft_swin"));
        assert_eq!(
            name(&["swin.embeddings.patch_embeddings.projection.weight"]),
            Some("transformers_swin")
        );
        assert_eq!(name(&["foo.weight"]), None);
    }

    #[test]
    fn openmmlab_patch_merging_channels_move_from_unfold_to_timm_order() {
        // C = 2: Unfold's index c·4 + kh·2 + kw goes to timm's (kw·2 + kh)·C + c.
        let norm = Tensor::arange(0f32, 8.0, &Device::Cpu).unwrap();
        let reordered: Vec<f32> = unfold_to_concat(&norm).unwrap().to_vec1().unwrap();
        assert_eq!(reordered, [0.0, 4.0, 2.0, 6.0, 1.0, 5.0, 3.0, 7.0]);
        // A reduction weight [out, 4C] has its columns reordered, row by row.
        let weight = Tensor::arange(0f32, 16.0, &Device::Cpu)
            .unwrap()
            .reshape((2, 8))
            .unwrap();
        let rows: Vec<Vec<f32>> = unfold_to_concat(&weight).unwrap().to_vec2().unwrap();
        assert_eq!(rows[1], [8.0, 12.0, 10.0, 14.0, 9.0, 13.0, 11.0, 15.0]);

        let keys = [
            "patch_embed.projection.weight",
            "stages.0.blocks.0.attn.w_msa.qkv.weight",
        ];
        assert_eq!(
            detect_layout(keys.iter().copied()).map(|l| l.name),
            Some("openmmlab_swin")
        );
        let converted = openmmlab_swin_to_timm(
            "test",
            vec![
                ("stages.1.downsample.norm.weight".into(), norm.clone()),
                ("stages.2.blocks.1.ffn.layers.0.0.bias".into(), norm.clone()),
                (
                    "stages.2.blocks.1.ffn.layers.1.weight".into(),
                    weight.clone(),
                ),
                (
                    "stages.0.blocks.0.attn.w_msa.proj.bias".into(),
                    norm.clone(),
                ),
            ],
        )
        .unwrap();
        let names: Vec<&str> = converted.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "layers.2.downsample.norm.weight",
                "layers.2.blocks.1.mlp.fc1.bias",
                "layers.2.blocks.1.mlp.fc2.weight",
                "layers.0.blocks.0.attn.proj.bias",
            ]
        );
        let err = openmmlab_swin_to_timm(
            "ckpt.pth",
            vec![("stages.0.blocks.0.ffn.gate.weight".into(), norm)],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("ckpt.pth") && err.contains("ffn.gate"),
            "{err}"
        );
    }

    #[test]
    fn microsoft_keys_move_patch_merging_to_the_next_stage() {
        assert_eq!(
            microsoft_to_timm("layers.0.downsample.reduction.weight"),
            "layers.1.downsample.reduction.weight"
        );
        assert_eq!(
            microsoft_to_timm("layers.2.blocks.1.attn.qkv.bias"),
            "layers.2.blocks.1.attn.qkv.bias"
        );
        assert_eq!(microsoft_to_timm("head.weight"), "head.fc.weight");
        assert_eq!(microsoft_to_timm("head.fc.weight"), "head.fc.weight");
    }

    #[test]
    fn check_keys_lists_everything_wrong() {
        let expected = vec![
            ("a".to_string(), vec![1]),
            ("b".to_string(), vec![2]),
            ("c".to_string(), vec![1]),
        ];
        let mut tensors = BTreeMap::new();
        tensors.insert("a".to_string(), t());
        tensors.insert("b".to_string(), t());
        tensors.insert("z".to_string(), t());
        let report = check_keys(&expected, &tensors);
        assert_eq!(report.missing, ["c"]);
        assert_eq!(report.unexpected, ["z"]);
        assert_eq!(report.shape_mismatches.len(), 1);
        assert_eq!(report.shape_mismatches[0].key, "b");
        let text = report.to_string();
        assert!(
            text.contains("1 missing: c")
                && text.contains("1 unexpected: z")
                && text.contains("b (model [2], weights [1])"),
            "{text}"
        );
    }

    #[test]
    fn unknown_layouts_are_errors_naming_the_source() {
        let err = canonicalize("x.safetensors", vec![("foo".into(), t())])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("x.safetensors") && err.contains("foo"),
            "{err}"
        );
    }
}
