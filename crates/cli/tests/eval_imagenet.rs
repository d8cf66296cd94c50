//! `rtb eval imagenet` on a tiny synthetic val folder and a released-layout ImageNet-C folder,
//! with a seeded tiny ResNet saved with a 1000-class classifier.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use image::{Rgb, RgbImage};
use rtb_models::init::trainable_builder;
use rtb_models::{ArchConfig, ResNetConfig};

fn rtb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rtb"))
        .args(args)
        .output()
        .expect("rtb runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn save_weights(path: &Path) {
    let varmap = VarMap::new();
    let vb = trainable_builder(&varmap, HashMap::new(), 5, DType::F32, &Device::Cpu);
    let model = ArchConfig::from(ResNetConfig {
        num_classes: Some(1000),
        ..ResNetConfig::tiny()
    })
    .build(&vb)
    .unwrap();
    let tensors: HashMap<String, Tensor> = model
        .parameters()
        .into_iter()
        .map(|p| (p.name, p.tensor))
        .collect();
    candle_core::safetensors::save(&tensors, path).unwrap();
}

fn picture(width: u32, height: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([
            (x * (3 + seed)) as u8,
            (y * 5 + seed * 30) as u8,
            ((x ^ y) + seed) as u8,
        ])
    })
}

fn save(image: &RgbImage, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    image::codecs::jpeg::JpegEncoder::new_with_quality(file, 90)
        .encode_image(image)
        .unwrap();
}

/// Weights with a 1000-class classifier, a val folder of two classes × two images and a
/// released-layout ImageNet-C folder (gaussian_noise and fog at `severities`).
fn fixture(root: &Path, severities: &[&str]) {
    save_weights(&root.join("tiny.safetensors"));
    for (w, wnid) in ["n01440764", "n01443537"].iter().enumerate() {
        for k in 0..2u32 {
            let name = format!("ILSVRC2012_val_{:08}.JPEG", 10 * w as u32 + k + 1);
            save(
                &picture(260 + 9 * k, 240, w as u32 + k),
                &root.join("val").join(wnid).join(&name),
            );
            for corruption in ["gaussian_noise", "fog"] {
                for severity in severities {
                    save(
                        &picture(224, 224, 5 + w as u32 + k),
                        &root
                            .join("imagenet-c")
                            .join(corruption)
                            .join(severity)
                            .join(wnid)
                            .join(&name),
                    );
                }
            }
        }
    }
}

#[test]
fn eval_imagenet_prints_the_table_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fixture(root, &["1", "2"]);
    let root_str = |p: &str| root.join(p).display().to_string();
    let out = rtb(&[
        "eval",
        "imagenet",
        "--arch",
        "resnet_tiny",
        "--weights",
        &root_str("tiny.safetensors"),
        "--val",
        &root_str("val"),
        "--imagenet-c",
        &root_str("imagenet-c"),
        "--batch-size",
        "3",
        "--json",
        &root_str("out.json"),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("clean (accuracy)"), "{stdout}");
    assert!(stdout.contains("gaussian_noise 2"), "{stdout}");
    assert!(stdout.contains("fog"), "{stdout}");
    assert!(
        stdout.contains("mCE, relative mCE and drop: n/a"),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("out.json")).unwrap()).unwrap();
    assert_eq!(json["clean"]["images"], 4);
    assert_eq!(json["conditions"].as_array().unwrap().len(), 4);
    assert_eq!(json["conditions"][0]["counts"]["images"], 4);

    // Generated on the fly, a subset of images.
    let out = rtb(&[
        "eval",
        "imagenet",
        "--arch",
        "resnet_tiny",
        "--weights",
        &root_str("tiny.safetensors"),
        "--val",
        &root_str("val"),
        "--generate-c",
        "--corruptions",
        "contrast",
        "--severities",
        "3",
        "--images",
        "2",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("2 clean images"), "{stdout}");
    assert!(stdout.contains("contrast 3"), "{stdout}");

    // A folder that is not a wnid: a clear error, no panic.
    std::fs::create_dir_all(root.join("val/cats")).unwrap();
    let out = rtb(&[
        "eval",
        "imagenet",
        "--arch",
        "resnet_tiny",
        "--weights",
        &root_str("tiny.safetensors"),
        "--val",
        &root_str("val"),
    ]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cats") && stderr.contains("wnid"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The paper preset's backbone step with `--imagenet-val`: the published backbone's own
/// clean and corrupted top-1 land in backbone.json as its source table (Figure 1's first
/// two bars), equal to what `rtb eval imagenet` measures with the same settings.
#[test]
fn the_backbone_step_measures_a_published_backbone_on_imagenet() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fixture(root, &["1", "2", "3", "4", "5"]);
    let root_str = |p: &str| root.join(p).display().to_string();
    std::fs::write(
        root.join("backbones.toml"),
        r#"
[[backbone]]
name = "tiny"
arch = "resnet_tiny"
verified = false
url = { page = "https://example.invalid/", file = "tiny.safetensors" }
import = { layout = "torchvision_resnet" }
imagenet_eval = { interpolation = "bicubic", crop_pct = 0.9 }
published = { imagenet_top1 = 1.0, source = "test" }
"#,
    )
    .unwrap();
    std::fs::write(
        root.join("preset.toml"),
        r#"
name = "imagenet-test"
description = "a published backbone measured on a tiny ImageNet"
demonstration = false
[data]
kind = "download"
datasets = []
[evaluation]
corruptions = ["gaussian_noise", "fog"]
severities = [1, 2, 3, 4, 5]
seed = 0
bootstrap = 30
[cost]
cpu_gmacs_per_second = 1.0
corrupt_ms_per_kilopixel = 0.1
process_overhead_seconds = 1.0
[[backbone]]
name = "tiny"
arch = "resnet_tiny"
weights = "tiny"
[[task]]
task = "cifar10"
image_size = 32
flavor = "cifar-c"
[task.paper.full]
epochs = 1
batch_size = 4
"#,
    )
    .unwrap();
    let out = rtb(&[
        "backbone",
        "--preset",
        &root_str("preset.toml"),
        "--runs",
        &root_str("runs"),
        "--data",
        &root_str("data"),
        "--backbone",
        "tiny",
        "--manifest",
        &root_str("backbones.toml"),
        "--from",
        &root_str("tiny.safetensors"),
        "--allow-unverified",
        "--imagenet-val",
        &root_str("val"),
        "--imagenet-c",
        &root_str("imagenet-c"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("runs/imagenet-test/tiny/backbone.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["source_task"], "imagenet", "{record}");
    let source = &record["source"];
    assert!(source.is_object(), "{record}");

    // The same numbers from `rtb eval imagenet` with the manifest's transform.
    let out = rtb(&[
        "eval",
        "imagenet",
        "--arch",
        "resnet_tiny",
        "--weights",
        &root_str("tiny.safetensors"),
        "--val",
        &root_str("val"),
        "--imagenet-c",
        &root_str("imagenet-c"),
        "--interpolation",
        "bicubic",
        "--crop-pct",
        "0.9",
        "--bootstrap",
        "30",
        "--json",
        &root_str("direct.json"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let direct: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("direct.json")).unwrap()).unwrap();
    let clean_correct = direct["clean"]["top1_correct"].as_f64().unwrap();
    let clean_images = direct["clean"]["images"].as_f64().unwrap();
    let text_of = source.to_string();
    let clean = source["clean"].as_f64().unwrap();
    assert!(
        (clean - clean_correct / clean_images).abs() < 1e-12,
        "{text_of} vs {direct}"
    );
    assert!(
        text_of.contains("gaussian_noise") && text_of.contains("fog"),
        "{text_of}"
    );
    // Each corrupted cell equals the direct run's top-1 under that condition.
    for condition in direct["conditions"].as_array().unwrap() {
        let corruption = condition["corruption"].as_str().unwrap();
        let severity = condition["severity"].as_u64().unwrap() as usize;
        let counts = &condition["counts"];
        let expected =
            counts["top1_correct"].as_f64().unwrap() / counts["images"].as_f64().unwrap();
        let got = source["corrupted"][corruption][severity - 1]
            .as_f64()
            .unwrap();
        assert!(
            (got - expected).abs() < 1e-12,
            "{corruption} {severity}: {got} vs {expected}"
        );
    }

    // Paired bootstrap replicates of every condition from the preset's count and seed (issue
    // 17: the paper preset's source columns had none), the same as `rtb eval imagenet
    // --bootstrap 30 --seed 0` draws in another process.
    let boot = &source["bootstrap"];
    assert_eq!(boot["replicates"], 30, "{boot}");
    assert_eq!(boot["seed"], 0, "{boot}");
    assert_eq!(boot["images"].as_f64(), Some(clean_images), "{boot}");
    let clean_replicates: Vec<f64> = boot["clean"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(clean_replicates.len(), 30);
    for corruption in ["gaussian_noise", "fog"] {
        let rows = boot["corrupted"][corruption].as_array().unwrap();
        assert_eq!(rows.len(), 5, "{boot}");
        assert!(rows.iter().all(|row| row.as_array().unwrap().len() == 30));
    }
    let interval = rtb_results::Interval::percentile_95(&clean_replicates);
    let line = format!(
        "bootstrap (30 replicates, seed 0): clean top-1 95 % interval [{:.2}, {:.2}] %",
        100.0 * interval.low,
        100.0 * interval.high
    );
    assert!(printed.contains(&line), "{line}\n{printed}");

    // Without --imagenet-val the step records no source: the report shows "not run".
    std::fs::remove_file(root.join("runs/imagenet-test/tiny/backbone.json")).unwrap();
    let out = rtb(&[
        "backbone",
        "--preset",
        &root_str("preset.toml"),
        "--runs",
        &root_str("runs"),
        "--backbone",
        "tiny",
        "--manifest",
        &root_str("backbones.toml"),
        "--from",
        &root_str("tiny.safetensors"),
        "--allow-unverified",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("runs/imagenet-test/tiny/backbone.json")).unwrap(),
    )
    .unwrap();
    assert!(record["source"].is_null(), "{record}");
}
