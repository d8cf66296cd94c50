//! The torchvision flavor of Mask R-CNN against torchvision's `MaskRCNN` in eval mode, end to
//! end on shared random weights (fixture: `golden/make_golden_mask_rcnn.py`, a tiny
//! torchvision-style ResNet-50 layout = rtb-models' `ResNetConfig::tiny()`): RPN proposals,
//! final boxes, scores, labels and pasted masks of two images of different sizes, the
//! state-dict import, and the five training losses on torchvision's sampled anchors and RoIs.
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
use rtb_detection::matcher::Match;
use rtb_detection::roi_heads::{GtInstances, RoiTargets, roi_targets};
use rtb_detection::sampler::Sample;
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

fn gt(golden: &Golden, i: usize) -> GtInstances {
    let labels: Vec<i64> = golden
        .get(&format!("train.gt.{i}.labels"))
        .to_vec1()
        .unwrap();
    GtInstances {
        boxes: golden.get(&format!("train.gt.{i}.boxes")),
        labels: labels.iter().map(|&l| l as usize - 1).collect(),
        masks: golden.get(&format!("train.gt.{i}.masks")),
    }
}

fn indices(t: &Tensor) -> Vec<usize> {
    t.to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|i| i as usize)
        .collect()
}

/// Training losses on torchvision's sampled anchors and RoIs (its samplers draw from torch's
/// generator; rtb's are seeded), the backbone body with BatchNorm running statistics on both
/// sides. Tolerance: 1e-5 relative on each loss; training proposals as at inference.
#[test]
fn torchvision_flavor_training_losses_equal_torchvision_on_the_same_samples() {
    let golden = Golden::load("mask_rcnn");
    let model = torchvision_model(&golden);
    let images: Vec<Tensor> = (0..2).map(|i| golden.get(&format!("image.{i}"))).collect();
    let batch = ImageBatch::from_images(&images, 32).unwrap();
    let gts: Vec<GtInstances> = (0..2).map(|i| gt(&golden, i)).collect();

    let out = model
        .backbone
        .forward(&batch.tensor, Mode::Inference)
        .unwrap();
    let features = model.fpn.forward(&out.features.levels).unwrap();
    let rpn = model
        .rpn
        .forward(&features, &batch.image_sizes, (64, 64), true)
        .unwrap();
    for (i, p) in rpn.proposals.iter().enumerate() {
        let want = golden.get(&format!("train.proposals.{i}"));
        assert_eq!(
            p.boxes.dims(),
            want.dims(),
            "image {i}: training proposal count"
        );
        assert_close(&format!("train.proposals.{i}"), &p.boxes, &want, 1e-4, 1e-3);
    }

    let rpn_samples: Vec<Sample> = (0..2)
        .map(|i| Sample {
            positives: indices(&golden.get(&format!("train.rpn_pos.{i}"))),
            negatives: indices(&golden.get(&format!("train.rpn_neg.{i}"))),
        })
        .collect();
    let roi_targets: Vec<RoiTargets> = (0..2)
        .map(|i| {
            let matched = indices(&golden.get(&format!("train.roi_matched.{i}")));
            let labels = indices(&golden.get(&format!("train.roi_labels.{i}")));
            let matches: Vec<Match> = matched
                .iter()
                .zip(&labels)
                .map(|(&g, &l)| if l > 0 { Match::Gt(g) } else { Match::Negative })
                .collect();
            roi_targets(
                Flavor::Torchvision,
                &golden.get(&format!("train.rois.{i}")),
                &gts[i],
                &matches,
            )
            .unwrap()
        })
        .collect();
    let losses = model
        .forward_train_sampled(&batch, &gts, &rpn_samples, &roi_targets, 0)
        .unwrap();
    for (name, got) in [
        ("objectness", &losses.objectness),
        ("rpn_box", &losses.rpn_box),
        ("classifier", &losses.classifier),
        ("box_reg", &losses.box_reg),
        ("mask", &losses.mask),
    ] {
        let got = got.to_scalar::<f32>().unwrap() as f64;
        let want = golden
            .get(&format!("train.loss.{name}"))
            .to_vec1::<f32>()
            .unwrap()[0] as f64;
        assert!(
            (got - want).abs() <= 1e-5 * want.abs(),
            "{name}: {got} vs torchvision {want}"
        );
    }
}
