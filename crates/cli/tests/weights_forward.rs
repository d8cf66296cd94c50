//! `rtb weights inspect|import` and `rtb forward` on the tiny fixtures of rtb-models (made by
//! `crates/models/tests/golden/make_golden.py` with timm 1.0.31 / transformers 5.23).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{DType, Device, Tensor};

fn rtb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rtb"))
        .args(args)
        .output()
        .expect("rtb runs")
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/tests/golden")
        .join(name)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn max_relative_error(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let diff = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let scale = b
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    f64::from(diff / scale)
}

#[test]
fn inspect_names_format_nesting_and_layout() {
    let out = rtb(&[
        "weights",
        "inspect",
        golden("resnet_tiny_deepaug_style.pth.tar")
            .to_str()
            .unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("legacy"), "{stdout}");
    assert!(stdout.contains("under \"state_dict\""), "{stdout}");
    assert!(stdout.contains("prefix: module."), "{stdout}");
    assert!(
        stdout.contains("ResNet, torchvision/timm names"),
        "{stdout}"
    );
    assert!(
        stdout.contains("module.layer1.0.conv2.weight") && stdout.contains("[4, 4, 3, 3]"),
        "{stdout}"
    );

    let out = rtb(&[
        "weights",
        "inspect",
        golden("swin_tiny_transformers.safetensors")
            .to_str()
            .unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("Swin, Hugging Face transformers names"),
        "{stdout}"
    );
}

#[test]
fn inspect_of_a_missing_file_is_an_error_naming_it() {
    let out = rtb(&["weights", "inspect", "/no/such/weights.pth"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("/no/such/weights.pth") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn import_then_forward_matches_timm() {
    let dir = tempfile::tempdir().unwrap();
    let imported = dir.path().join("swin.safetensors");
    // The Microsoft layout (zip .pth under 'model') to canonical safetensors.
    let out = rtb(&[
        "weights",
        "import",
        "--arch",
        "swin_tiny",
        "--from",
        golden("swin_tiny_microsoft.pth").to_str().unwrap(),
        "--to",
        imported.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tensors = candle_core::safetensors::load(&imported, &Device::Cpu).unwrap();
    assert!(tensors.contains_key("layers.1.downsample.reduction.weight"));
    assert!(tensors.contains_key("head.fc.weight"));
    assert!(
        !tensors
            .keys()
            .any(|k| k.ends_with("relative_position_index"))
    );

    let gold = candle_core::safetensors::load(golden("swin_tiny_golden.safetensors"), &Device::Cpu)
        .unwrap();
    let input_path = dir.path().join("x.safetensors");
    let mut input = std::collections::HashMap::new();
    input.insert("input".to_string(), gold["square.input"].clone());
    candle_core::safetensors::save(&input, &input_path).unwrap();
    let output_path = dir.path().join("y.safetensors");
    let out = rtb(&[
        "forward",
        "--arch",
        "swin_tiny",
        "--weights",
        imported.to_str().unwrap(),
        "--input",
        input_path.to_str().unwrap(),
        "--output",
        output_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let y = candle_core::safetensors::load(&output_path, &Device::Cpu).unwrap();
    let mut keys: Vec<&String> = y.keys().collect();
    keys.sort();
    assert_eq!(keys, ["c2", "c3", "c4", "c5", "logits"]);
    for key in ["c2", "c3", "c4", "c5", "logits"] {
        let err = max_relative_error(&y[key], &gold[&format!("square.{key}")]);
        assert!(err < 1e-4, "{key}: {err}");
    }
}

#[test]
fn forward_with_a_json_config_and_selected_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("arch.json");
    std::fs::write(
        &config,
        r#"{"family": "resnet", "block": "bottleneck", "depths": [1, 2, 1, 1], "stem_width": 8,
            "widths": [4, 8, 8, 16], "in_channels": 3, "num_classes": 5}"#,
    )
    .unwrap();
    let gold =
        candle_core::safetensors::load(golden("resnet_tiny_golden.safetensors"), &Device::Cpu)
            .unwrap();
    let input_path = dir.path().join("x.safetensors");
    let mut input = std::collections::HashMap::new();
    input.insert("input".to_string(), gold["nonsquare.input"].clone());
    candle_core::safetensors::save(&input, &input_path).unwrap();
    let output_path = dir.path().join("y.safetensors");
    let out = rtb(&[
        "forward",
        "--config",
        config.to_str().unwrap(),
        "--weights",
        golden("resnet_tiny_ant_style.pth").to_str().unwrap(),
        "--input",
        input_path.to_str().unwrap(),
        "--output",
        output_path.to_str().unwrap(),
        "--outputs",
        "c3,logits,pooled",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let y = candle_core::safetensors::load(&output_path, &Device::Cpu).unwrap();
    assert_eq!(y.len(), 3);
    assert!(max_relative_error(&y["c3"], &gold["nonsquare.c3"]) < 1e-4);
    assert!(max_relative_error(&y["logits"], &gold["nonsquare.logits"]) < 1e-4);
    assert_eq!(y["pooled"].dims(), &[2, 64]);
}

#[test]
fn forward_errors_are_messages_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let input_path = dir.path().join("x.safetensors");
    let mut input = std::collections::HashMap::new();
    input.insert(
        "pixels".to_string(),
        Tensor::zeros((1, 3, 64, 64), DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&input, &input_path).unwrap();
    let weights = golden("resnet_tiny.safetensors");
    let output = dir.path().join("y.safetensors");
    let base = [
        "forward",
        "--weights",
        weights.to_str().unwrap(),
        "--input",
        input_path.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ];
    // No tensor named 'input'.
    let out = rtb(&[&base[..], &["--arch", "resnet_tiny"]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("'input'"),
        "{}",
        text(&out.stderr)
    );
    // Unknown architecture.
    let out = rtb(&[&base[..], &["--arch", "vgg16"]].concat());
    assert!(text(&out.stderr).contains("vgg16") && text(&out.stderr).contains("resnet50"));
    // A ResNet-50 does not fit the tiny weights: every bad key is listed.
    let out = rtb(&[
        "weights",
        "import",
        "--arch",
        "resnet50",
        "--from",
        weights.to_str().unwrap(),
        "--to",
        output.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("missing")
            && stderr.contains("shape mismatches")
            && stderr.contains("conv1.weight (model [64, 3, 7, 7], weights [8, 3, 7, 7])"),
        "{stderr}"
    );
    assert!(!output.exists());
}
