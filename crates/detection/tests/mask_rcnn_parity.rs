//! The torchvision flavor of Mask R-CNN against torchvision's `MaskRCNN` in eval mode, end to
//! end on shared random weights (fixture: `golden/make_golden_mask_rcnn.py`, a tiny
//! torchvision-style ResNet-50 layout = rtb-models' `ResNetConfig::tiny()`): RPN proposals,
//! final boxes, scores, labels and pasted masks of two images of different sizes.
//!
//! Tolerances: proposals and boxes within 1e-3 px absolute + 1e-4 relative; scores within
//! 1e-5 absolute; pasted mask probabilities within 1e-4 absolute; counts and labels exact.

mod support;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rtb_detection::Flavor;
use rtb_detection::image_batch::ImageBatch;
use rtb_detection::import::import_torchvision;
use rtb_detection::mask_rcnn::{MaskRcnn, MaskRcnnConfig};
use rtb_models::{Backbone, Freeze, Mode, ResNet, ResNetConfig};
use support::{Golden, assert_close};

fn torchvision_model(golden: &Golden) -> MaskRcnn {
    let vb = VarBuilder::from_tensors(golden.tensors.clone(), DType::F32, &Device::Cpu);
    let mut cfg = MaskRcnnConfig::new(Flavor::Torchvision, 3).with_widths(16, 32, 8);
    cfg.inference.detections_per_img = 10;
    let mut backbone = ResNet::new(
        &ResNetConfig::tiny().without_classifier(),
        &vb.pp(cfg.backbone_prefix()),
    )
    .unwrap();
    backbone.set_freeze(Freeze::all());
    MaskRcnn::new(&cfg, Box::new(backbone), &vb).unwrap()
}

#[test]
fn torchvision_flavor_equals_torchvision_mask_rcnn_in_eval_mode() {
    let golden = Golden::load("mask_rcnn");
    let model = torchvision_model(&golden);
    let images: Vec<Tensor> = (0..2).map(|i| golden.get(&format!("image.{i}"))).collect();
    let batch = ImageBatch::from_images(&images, 32).unwrap();
    assert_eq!(batch.padded_size().unwrap(), (64, 64));

    // Proposals, from the pieces the model runs.
    let out = model
        .backbone
        .forward(&batch.tensor, Mode::Inference)
        .unwrap();
    let features = model.fpn.forward(&out.features.levels).unwrap();
    let rpn = model
        .rpn
        .forward(&features, &batch.image_sizes, (64, 64), false)
        .unwrap();
    for (i, p) in rpn.proposals.iter().enumerate() {
        let want = golden.get(&format!("proposals.{i}"));
        assert_eq!(p.boxes.dims(), want.dims(), "image {i}: proposal count");
        assert_close(&format!("proposals.{i}"), &p.boxes, &want, 1e-4, 1e-3);
    }

    let dets = model.forward(&batch).unwrap();
    for (i, d) in dets.iter().enumerate() {
        let want_labels: Vec<i64> = golden.get(&format!("labels.{i}")).to_vec1().unwrap();
        let labels: Vec<i64> = d.detections.labels.iter().map(|&l| l as i64 + 1).collect();
        assert_eq!(labels, want_labels, "image {i}: labels");
        assert_close(
            &format!("boxes.{i}"),
            &d.detections.boxes,
            &golden.get(&format!("boxes.{i}")),
            1e-4,
            1e-3,
        );
        assert_close(
            &format!("scores.{i}"),
            &d.detections.scores,
            &golden.get(&format!("scores.{i}")),
            0.0,
            1e-5,
        );
        assert_close(
            &format!("masks.{i}"),
            &d.masks,
            &golden.get(&format!("masks.{i}")),
            0.0,
            1e-4,
        );
    }
}

#[test]
fn imported_torchvision_state_dict_gives_the_same_detections() {
    let golden = Golden::load("mask_rcnn");
    let state: Vec<(String, Tensor)> = golden
        .tensors
        .iter()
        // The model's state dict: everything but the fixture's inputs and outputs.
        .filter(|(k, _)| matches!(k.split('.').next(), Some("backbone" | "rpn" | "roi_heads")))
        .map(|(k, v)| (format!("module.{k}"), v.clone()))
        .collect();
    let weights = import_torchvision(state.clone()).unwrap();
    assert!(weights.backbone.contains_key("layer1.0.conv1.weight"));
    assert!(weights.heads.contains_key("roi_heads.mask_head.0.0.weight"));
    assert!(
        weights
            .heads
            .keys()
            .all(|k| !k.starts_with("backbone.body."))
    );
    let mut cfg = MaskRcnnConfig::new(Flavor::Torchvision, 3).with_widths(16, 32, 8);
    cfg.inference.detections_per_img = 10;
    let backbone = ResNet::new(
        &ResNetConfig::tiny().without_classifier(),
        &weights.backbone_var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();
    let model = MaskRcnn::new(
        &cfg,
        Box::new(backbone),
        &weights.heads_var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();
    let images: Vec<Tensor> = (0..2).map(|i| golden.get(&format!("image.{i}"))).collect();
    let batch = ImageBatch::from_images(&images, 32).unwrap();
    let dets = model.forward(&batch).unwrap();
    for (i, d) in dets.iter().enumerate() {
        assert_close(
            &format!("boxes.{i}"),
            &d.detections.boxes,
            &golden.get(&format!("boxes.{i}")),
            1e-4,
            1e-3,
        );
        assert_close(
            &format!("masks.{i}"),
            &d.masks,
            &golden.get(&format!("masks.{i}")),
            0.0,
            1e-4,
        );
    }

    // A key outside the four groups is named.
    let mut bad: Vec<(String, Tensor)> = state
        .into_iter()
        .map(|(k, v)| (k["module.".len()..].to_string(), v))
        .collect();
    bad.push((
        "transform.something".into(),
        Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap(),
    ));
    let err = import_torchvision(bad).unwrap_err();
    assert!(err.to_string().contains("transform.something"), "{err}");
}
