//! Checkpoint import: transformers' UperNet over ConvNeXt, mmseg's names over Swin (end to
//! end against the transformers logits), and errors that name the file.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use common::{assert_close, golden, load, swin_arch};
use rtb_models::weights::read_weights;
use rtb_models::{ArchConfig, ConvNeXtConfig, Mode};
use rtb_segmentation::weights::{
    check_state_dict, from_weights, split_upernet, upernet_expected_keys,
};
use rtb_segmentation::{HeadLayout, SegError, UperNetConfig, load_upernet};

fn models_golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models/tests/golden")
        .join(name)
}

/// Seeded random head tensors for `cfg` over `arch` (transformers' names).
fn random_heads(cfg: &UperNetConfig, arch: &ArchConfig) -> Vec<(String, Tensor)> {
    upernet_expected_keys(cfg, arch)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("backbone."))
        .map(|(k, shape)| {
            let t = if k.ends_with("running_var") {
                Tensor::ones(shape, DType::F32, &Device::Cpu).unwrap()
            } else {
                Tensor::randn(0f32, 0.1, shape, &Device::Cpu).unwrap()
            };
            (k, t)
        })
        .collect()
}

#[test]
fn transformers_upernet_over_convnext_loads() {
    // transformers' UperNet keeps its ConvNextBackbone under `backbone.` with
    // ConvNextBackbone's own names (embeddings…, encoder.stages…, hidden_states_norms…).
    let arch = ArchConfig::from(ConvNeXtConfig::tiny().into_dense(0.0));
    let cfg = UperNetConfig::tiny();
    let backbone_file = models_golden("convnext_tiny_backbone_transformers.safetensors");
    let file = read_weights(&backbone_file, None).unwrap();
    let mut tensors: Vec<(String, Tensor)> = file
        .tensors
        .into_iter()
        .map(|(k, t)| (format!("backbone.{k}"), t))
        .collect();
    tensors.extend(random_heads(&cfg, &arch));
    let mut weights = split_upernet("convnext upernet", tensors).unwrap();
    assert_eq!(weights.layout, HeadLayout::Transformers);
    assert_eq!(weights.backbone.as_ref().unwrap().layout.family, "convnext");
    weights.fit(&arch).unwrap();
    let model = from_weights(
        &cfg,
        &arch,
        "convnext upernet",
        &weights,
        (DType::F32, &Device::Cpu),
    )
    .unwrap();
    // Its backbone is exactly rtb-models' ConvNeXt loaded from the same file.
    let direct =
        rtb_models::load_backbone(&arch, &backbone_file, DType::F32, &Device::Cpu).unwrap();
    let x = Tensor::randn(0f32, 1.0, (1, 3, 64, 96), &Device::Cpu).unwrap();
    let ours = model.features(&x, Mode::Inference).unwrap();
    let theirs = direct.forward(&x, Mode::Inference).unwrap().features;
    for (a, b) in ours.levels.iter().zip(&theirs.levels) {
        assert_close("ConvNeXt level", a, b, 0.0);
    }
    assert_eq!(model.forward(&x).unwrap().dims(), &[1, 5, 64, 96]);
}

/// rtb's canonical Swin keys under mmseg 0.x's Swin names (the Swin-Transformer-Semantic-
/// Segmentation release: Microsoft's, patch merging at the end of a stage, `norm0..norm3`).
fn canonical_to_mmseg_swin(key: &str) -> String {
    if let Some(rest) = key.strip_prefix("layers.")
        && let Some((stage, tail)) = rest.split_once('.')
        && tail.starts_with("downsample.")
    {
        let stage: usize = stage.parse().unwrap();
        return format!("layers.{}.{tail}", stage - 1);
    }
    key.to_string()
}

#[test]
fn mmseg_checkpoint_names_give_transformers_logits() {
    let arch = swin_arch();
    let cfg = UperNetConfig::tiny();
    let mut hf = load_upernet(&golden("upernet_swin_tiny.safetensors")).unwrap();
    hf.fit(&arch).unwrap();
    let mut mmseg: BTreeMap<String, Tensor> = BTreeMap::new();
    for (k, t) in &hf.heads {
        let k = k
            .replace(".classifier.", ".conv_seg.")
            .replace(".batch_norm.", ".bn.");
        if k.ends_with(".bn.running_var") {
            let tracked = k.replace("running_var", "num_batches_tracked");
            mmseg.insert(
                tracked,
                Tensor::new(&[7i64], &Device::Cpu)
                    .unwrap()
                    .squeeze(0)
                    .unwrap(),
            );
        }
        mmseg.insert(k, t.clone());
    }
    for (k, t) in &hf.backbone.as_ref().unwrap().tensors {
        mmseg.insert(
            format!("backbone.{}", canonical_to_mmseg_swin(k)),
            t.clone(),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upernet_mmseg.safetensors");
    candle_core::safetensors::save(&mmseg.into_iter().collect::<HashMap<_, _>>(), &path).unwrap();

    let weights = load_upernet(&path).unwrap();
    assert_eq!(weights.layout, HeadLayout::Mmseg);
    assert_eq!(weights.backbone.as_ref().unwrap().layout.family, "swin");
    let model = from_weights(&cfg, &arch, "mmseg", &weights, (DType::F32, &Device::Cpu)).unwrap();
    let gold = load("upernet_golden.safetensors");
    let logits = model.forward(&gold["whole.input"]).unwrap();
    assert_close(
        "mmseg names, whole model",
        &logits,
        &gold["whole.logits"],
        1e-4,
    );
}

#[test]
fn files_that_do_not_fit_are_errors_naming_the_source() {
    let zeros = |n: usize| Tensor::zeros(n, DType::F32, &Device::Cpu).unwrap();
    // Not an UperNet.
    let err =
        split_upernet("plain.safetensors", vec![("conv1.weight".into(), zeros(3))]).unwrap_err();
    assert!(matches!(err, SegError::Weights { .. }), "{err}");
    assert!(err.to_string().contains("plain.safetensors"), "{err}");
    // mmseg 1.x's own Swin names are not a layout rtb-models knows.
    let err = split_upernet(
        "mmseg1.pth",
        vec![
            ("decode_head.conv_seg.weight".into(), zeros(3)),
            (
                "backbone.stages.0.blocks.0.attn.w_msa.qkv.weight".into(),
                zeros(3),
            ),
        ],
    )
    .unwrap_err();
    assert!(err.to_string().contains("mmseg1.pth"), "{err}");
    // A state dict missing a head key: every missing key is listed.
    let arch = swin_arch();
    let cfg = UperNetConfig::tiny();
    let mut weights = load_upernet(&golden("upernet_swin_tiny.safetensors")).unwrap();
    weights.fit(&arch).unwrap();
    let mut state = weights.state_dict();
    state.remove("decode_head.fpn_bottleneck.conv.weight");
    let err = check_state_dict(&cfg, &arch, "cut.safetensors", &state).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("cut.safetensors") && msg.contains("decode_head.fpn_bottleneck.conv.weight"),
        "{msg}"
    );
    // The transformers 5 file's unused final Swin norm is dropped by fit, and said so.
    assert!(weights.dropped.iter().any(|k| k == "backbone.norm.weight"));
}
