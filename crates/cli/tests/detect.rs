//! `rtb detect --arch … --weights FILE`: a Mask R-CNN checkpoint in mmdetection's key layout
//! (a tiny ResNet under slim heads, seeded weights) detects a folder of images into a COCO
//! results JSON equal to running the same model in process; wrong arguments are errors that
//! say what to give.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rtb_coco::{to_results, transforms};
use rtb_detection::Flavor;
use rtb_detection::image_batch::ImageBatch;
use rtb_detection::mask_rcnn::{MaskRcnn, MaskRcnnConfig};
use rtb_models::ArchConfig;
use rtb_models::init::trainable_builder;

fn rtb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rtb"))
}

/// A tiny mmdet-layout Mask R-CNN (`resnet_tiny` without its classifier) written as
/// safetensors; the model it is.
fn checkpoint(path: &Path) -> MaskRcnn {
    let arch = ArchConfig::from_name("resnet_tiny")
        .unwrap()
        .with_num_classes(None)
        .unwrap();
    let varmap = VarMap::new();
    let vb = trainable_builder(&varmap, HashMap::new(), 11, DType::F32, &Device::Cpu);
    let cfg = MaskRcnnConfig::new(Flavor::Mmdet, 3).with_widths(16, 32, 8);
    let backbone = arch.build(&vb.pp(cfg.backbone_prefix())).unwrap();
    let model = MaskRcnn::new(&cfg, backbone, &vb).unwrap();
    varmap.save(path).unwrap();
    model
}

fn write_images(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, (w, h)) in [
        ("000000000007.png", (80, 64)),
        ("000000000012.png", (56, 72)),
    ] {
        let image = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 3) as u8, (y * 5) as u8, ((x + y) * 7 % 256) as u8])
        });
        image.save(dir.join(name)).unwrap();
    }
}

#[test]
fn an_mmdet_checkpoint_detects_a_folder_as_the_model_does_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("mask_rcnn.safetensors");
    let model = checkpoint(&weights);
    let images = dir.path().join("images");
    write_images(&images);
    let output = dir.path().join("results.json");
    let out = rtb()
        .args(["detect", "--arch", "resnet_tiny", "--weights"])
        .arg(&weights)
        .args(["--scale", "128,96"])
        .arg(&images)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();

    // The same images through the same model in process: category ids 1..=3 by default.
    let mut expected = Vec::new();
    for (id, name) in [(7, "000000000007.png"), (12, "000000000012.png")] {
        let image = image::open(images.join(name)).unwrap().to_rgb8();
        let (resized, _) = transforms::resize_image(&image, (128, 96)).unwrap();
        let (w, h) = (resized.width() as usize, resized.height() as usize);
        let xs =
            Tensor::from_vec(transforms::normalize(&resized), (3, h, w), &Device::Cpu).unwrap();
        let batch = ImageBatch::from_images(&[xs], 32)
            .unwrap()
            .with_original_sizes(vec![(image.height() as usize, image.width() as usize)])
            .unwrap();
        for det in model.forward(&batch).unwrap() {
            expected.extend(to_results(&det, id, &[1, 2, 3]).unwrap());
        }
    }
    assert!(!expected.is_empty(), "random heads still detect something");
    assert_eq!(written.len(), expected.len());
    for (got, want) in written.iter().zip(&expected) {
        assert_eq!(got["image_id"].as_i64().unwrap(), want.image_id);
        assert_eq!(got["category_id"].as_i64().unwrap(), want.category_id);
        let score = got["score"].as_f64().unwrap();
        assert!(
            (score - want.score).abs() < 1e-6,
            "{score} vs {}",
            want.score
        );
        let bbox: Vec<f64> = serde_json::from_value(got["bbox"].clone()).unwrap();
        for (a, b) in bbox.iter().zip(want.bbox.unwrap()) {
            assert!((a - b).abs() < 1e-3, "{bbox:?} vs {:?}", want.bbox);
        }
        assert!(got["segmentation"]["counts"].is_string());
    }

    // `rtb weights import` keeps a detector a detector: the converted file detects the same.
    let imported = dir.path().join("imported.safetensors");
    let out = rtb()
        .args(["weights", "import", "--arch", "resnet_tiny", "--from"])
        .arg(&weights)
        .arg("--to")
        .arg(&imported)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Mmdet Mask R-CNN, 3 classes"));
    let again = dir.path().join("again.json");
    let out = rtb()
        .args(["detect", "--arch", "resnet_tiny", "--weights"])
        .arg(&imported)
        .args(["--scale", "128,96"])
        .arg(&images)
        .arg("--output")
        .arg(&again)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        std::fs::read(&output).unwrap(),
        std::fs::read(&again).unwrap()
    );
}

#[test]
fn detect_says_what_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    write_images(&images);
    let out = rtb()
        .args(["detect", "--output"])
        .arg(dir.path().join("out.json"))
        .arg(&images)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--run") && stderr.contains("--weights"),
        "{stderr}"
    );

    // A backbone-only file is not a detector: the error names the file.
    let weights = dir.path().join("backbone.safetensors");
    let tensors: HashMap<String, Tensor> = [(
        "conv1.weight".to_string(),
        Tensor::zeros((8, 3, 7, 7), DType::F32, &Device::Cpu).unwrap(),
    )]
    .into_iter()
    .collect();
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    let out = rtb()
        .args(["detect", "--arch", "resnet_tiny", "--weights"])
        .arg(&weights)
        .arg("--output")
        .arg(dir.path().join("out.json"))
        .arg(&images)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("backbone.safetensors") && stderr.contains("roi_head"),
        "{stderr}"
    );
}
