//! Weight import: PyTorch checkpoints in both serialisation formats and with the nestings of
//! the paper's robust ResNets, layout detection, and errors that list every bad key.

mod common;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use common::golden;
use rtb_models::weights::{FileFormat, Nesting, canonicalize, read_weights};
use rtb_models::{
    ArchConfig, ModelError, ResNetConfig, SwinConfig, check_state_dict, load_backbone,
    read_canonical,
};

fn canonical(name: &str) -> (FileFormat, Nesting, &'static str, BTreeMap<String, Tensor>) {
    let file = read_weights(&golden(name), None).unwrap();
    let (format, nesting) = (file.format, file.nesting.clone());
    let c = canonicalize(name, file.tensors).unwrap();
    (format, nesting, c.layout.name, c.tensors)
}

fn assert_same_tensors(a: &BTreeMap<String, Tensor>, b: &BTreeMap<String, Tensor>) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (key, ta) in a {
        let tb = &b[key];
        assert_eq!(ta.dims(), tb.dims(), "{key}");
        assert_eq!(ta.dtype(), tb.dtype(), "{key}");
        let da = ta
            .to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let db = tb
            .to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert_eq!(da, db, "{key}");
    }
}

#[test]
fn zip_and_legacy_checkpoints_import_to_the_same_tensors() {
    let (format, nesting, layout, reference) = canonical("resnet_tiny.safetensors");
    assert_eq!(
        (format, nesting, layout),
        (
            FileFormat::Safetensors,
            Nesting::TopLevel,
            "torchvision_resnet"
        )
    );
    // ANT's release: zip, under 'model_state_dict'.
    let (format, nesting, _, ant) = canonical("resnet_tiny_ant_style.pth");
    assert_eq!(format, FileFormat::PthZip);
    assert_eq!(nesting, Nesting::Key("model_state_dict".into()));
    // DeepAugment+AugMix's release: legacy format, under 'state_dict', 'module.' prefixes,
    // optimizer state and a tensor-valued best_acc1 beside it.
    let (format, nesting, _, deepaug) = canonical("resnet_tiny_deepaug_style.pth.tar");
    assert_eq!(format, FileFormat::PthLegacy);
    assert_eq!(nesting, Nesting::Key("state_dict".into()));
    assert_same_tensors(&ant, &reference);
    assert_same_tensors(&deepaug, &reference);
}

#[test]
fn legacy_checkpoint_builds_the_same_model() {
    let arch = ArchConfig::from(ResNetConfig::tiny());
    let gold = common::load("resnet_tiny_golden.safetensors");
    let model = load_backbone(
        &arch,
        &golden("resnet_tiny_deepaug_style.pth.tar"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let out = model
        .forward(&gold["square.input"], rtb_models::Mode::Inference)
        .unwrap();
    common::assert_close(
        "logits",
        out.logits.as_ref().unwrap(),
        &gold["square.logits"],
        1e-4,
    );
}

#[test]
fn explicit_nesting_key_that_is_absent_is_an_error() {
    let err = read_weights(&golden("resnet_tiny_ant_style.pth"), Some("ema"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("resnet_tiny_ant_style.pth") && err.contains("ema"),
        "{err}"
    );
}

#[test]
fn swin_layouts_are_detected() {
    assert_eq!(canonical("swin_tiny.safetensors").2, "timm_swin");
    assert_eq!(canonical("swin_tiny_microsoft.pth").2, "microsoft_swin");
    assert_eq!(
        canonical("swin_tiny_transformers.safetensors").2,
        "transformers_swin"
    );
    assert_eq!(
        canonical("swin_tiny_backbone_transformers.safetensors").2,
        "transformers_swin"
    );
    // Microsoft and transformers checkpoints convert to exactly timm's tensors.
    let timm = canonical("swin_tiny.safetensors").3;
    assert_same_tensors(&canonical("swin_tiny_microsoft.pth").3, &timm);
    let hf = canonical("swin_tiny_transformers.safetensors").3;
    assert_same_tensors(&hf, &timm);
}

#[test]
fn wrong_family_is_an_error_naming_the_file() {
    let err = read_canonical(
        &ArchConfig::from(ResNetConfig::tiny()),
        &golden("swin_tiny.safetensors"),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("swin_tiny.safetensors") && err.contains("Swin"),
        "{err}"
    );
}

#[test]
fn key_errors_list_missing_unexpected_and_mismatched_keys() {
    let (_, _, _, mut tensors) = canonical("resnet_tiny.safetensors");
    tensors.remove("layer2.1.conv2.weight");
    tensors.remove("bn1.running_var");
    tensors.insert(
        "extra.weight".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    // Ten classes where the weights have five.
    let arch = ArchConfig::from(ResNetConfig {
        num_classes: Some(10),
        ..ResNetConfig::tiny()
    });
    let err = check_state_dict(&arch, "w.safetensors", &tensors).unwrap_err();
    let ModelError::Keys { report, .. } = &err else {
        panic!("expected a key report, got {err}");
    };
    assert_eq!(report.missing, ["bn1.running_var", "layer2.1.conv2.weight"]);
    assert_eq!(report.unexpected, ["extra.weight"]);
    let mismatched: Vec<&str> = report
        .shape_mismatches
        .iter()
        .map(|m| m.key.as_str())
        .collect();
    assert_eq!(mismatched, ["fc.weight", "fc.bias"]);
    let text = err.to_string();
    assert!(
        text.contains("w.safetensors")
            && text.contains("layer2.1.conv2.weight")
            && text.contains("fc.weight (model [10, 64], weights [5, 64])"),
        "{text}"
    );
}

#[test]
fn dense_swin_reports_the_classification_head_as_unexpected() {
    let arch = ArchConfig::from(SwinConfig::tiny().into_dense(0.0));
    let (_, _, _, tensors) = canonical("swin_tiny.safetensors");
    let err = check_state_dict(&arch, "swin", &tensors).unwrap_err();
    let ModelError::Keys { report, .. } = &err else {
        panic!("expected a key report, got {err}");
    };
    assert_eq!(
        report.unexpected,
        ["head.fc.bias", "head.fc.weight", "norm.bias", "norm.weight"]
    );
    assert_eq!(report.missing.len(), 8, "{report}"); // norm0..norm3 weight and bias
}
