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
    let model = ArchConfig::Resnet(ResNetConfig {
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

#[test]
fn eval_imagenet_prints_the_table_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    save_weights(&root.join("tiny.safetensors"));
    for (w, wnid) in ["n01440764", "n01443537"].iter().enumerate() {
        for k in 0..2u32 {
            let name = format!("ILSVRC2012_val_{:08}.JPEG", 10 * w as u32 + k + 1);
            save(
                &picture(260 + 9 * k, 240, w as u32 + k),
                &root.join("val").join(wnid).join(&name),
            );
            for corruption in ["gaussian_noise", "fog"] {
                for severity in ["1", "2"] {
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
