//! Importing an mmdetection Mask R-CNN checkpoint: mmdetection 3.3.0's own R50-FPN config at
//! slim widths with seeded weights (`tests/golden/make_golden_mmdet.py`), its state dict split
//! by `import_detector`, the configuration read off its shapes, and the imported model's
//! C2..C5, P2..P6, RPN head and box / mask heads equal to mmdetection's in eval mode.

mod support;

use candle_core::{DType, Device, Tensor};
use rtb_detection::Flavor;
use rtb_detection::import::{detector_config, import_detector, import_mmdet};
use rtb_detection::mask_rcnn::MaskRcnn;
use rtb_models::{BlockKind, Mode, ResNet, ResNetConfig, Stem};
use support::{Golden, relative_error};

const TOL: f64 = 1e-5;

/// The checkpoint's state dict (mmdet's keys), as `rtb weights import` would read it.
fn state(golden: &Golden) -> Vec<(String, Tensor)> {
    let mut state: Vec<(String, Tensor)> = golden
        .tensors
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("state.").map(|k| (k.to_string(), v.clone())))
        .collect();
    state.sort_by(|a, b| a.0.cmp(&b.0));
    state
}

fn close(what: &str, actual: &Tensor, expected: &Tensor) {
    assert_eq!(actual.dims(), expected.dims(), "{what}: shapes differ");
    let err = relative_error(actual, expected);
    assert!(err <= TOL, "{what}: relative error {err:e}");
}

/// mmdet's ResNet-50 with `base_channels = 8`.
fn resnet50_width8() -> ResNetConfig {
    ResNetConfig {
        block: BlockKind::Bottleneck,
        depths: [3, 4, 6, 3],
        stem: Stem::ImageNet,
        stem_width: 8,
        widths: [8, 16, 32, 64],
        in_channels: 3,
        num_classes: None,
    }
}

#[test]
fn mmdet_checkpoint_imports_with_its_configuration_and_matches_mmdet() {
    let golden = Golden::load("mask_rcnn_mmdet");
    let weights = import_detector(state(&golden)).unwrap();
    assert_eq!(weights.flavor, Flavor::Mmdet);
    assert!(weights.backbone.contains_key("layer4.2.conv3.weight"));
    assert!(weights.heads.keys().all(|k| !k.starts_with("backbone.")));

    let cfg = detector_config(&weights).unwrap();
    assert_eq!(cfg.flavor, Flavor::Mmdet);
    assert_eq!(cfg.num_classes, 3);
    assert_eq!(
        (
            cfg.fpn_channels,
            cfg.box_representation,
            cfg.mask_conv_channels
        ),
        (16, 32, 16)
    );

    let backbone = ResNet::new(
        &resnet50_width8(),
        &weights.backbone_var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();
    let model = MaskRcnn::new(
        &cfg,
        Box::new(backbone),
        &weights.heads_var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();

    let out = model
        .backbone
        .forward(&golden.get("image"), Mode::Inference)
        .unwrap();
    for (i, level) in out.features.levels.iter().enumerate() {
        close(
            &format!("c{}", i + 2),
            level,
            &golden.get(&format!("c{}", i + 2)),
        );
    }
    let pyramid = model.fpn.forward(&out.features.levels).unwrap();
    assert_eq!(pyramid.len(), 5);
    for (i, level) in pyramid.iter().enumerate() {
        close(
            &format!("p{}", i + 2),
            level,
            &golden.get(&format!("p{}", i + 2)),
        );
    }
    let rpn = model.rpn.head.forward(&pyramid).unwrap();
    for i in 0..5 {
        close(
            &format!("rpn.objectness.{i}"),
            &rpn.objectness[i],
            &golden.get(&format!("rpn.objectness.{i}")),
        );
        close(
            &format!("rpn.deltas.{i}"),
            &rpn.deltas[i],
            &golden.get(&format!("rpn.deltas.{i}")),
        );
    }
    let boxes = model
        .roi_heads
        .box_head()
        .forward(&golden.get("box.pooled"))
        .unwrap();
    // mmdet's background logit is the last one; its regression is class-specific (4·C).
    close(
        "box.class_logits",
        &boxes.class_logits,
        &golden.get("box.class_logits"),
    );
    close(
        "box.box_regression",
        &boxes.box_regression,
        &golden.get("box.box_regression"),
    );
    let masks = model
        .roi_heads
        .mask_head()
        .forward(&golden.get("mask.pooled"))
        .unwrap();
    close("mask.logits", &masks, &golden.get("mask.logits"));
}

#[test]
fn mmdet_import_names_what_is_wrong() {
    let golden = Golden::load("mask_rcnn_mmdet");
    let zero = || Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap();

    // mmengine's preprocessor buffers and BatchNorm counters are dropped, not errors.
    let mut with_buffers = state(&golden);
    with_buffers.push(("data_preprocessor.mean".into(), zero()));
    assert!(import_mmdet(with_buffers).is_ok());

    let mut unknown = state(&golden);
    unknown.push(("semantic_head.conv.weight".into(), zero()));
    let err = import_mmdet(unknown).unwrap_err().to_string();
    assert!(err.contains("semantic_head.conv.weight"), "{err}");

    let no_rpn: Vec<_> = state(&golden)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("rpn_head."))
        .collect();
    let err = import_mmdet(no_rpn).unwrap_err().to_string();
    assert!(err.contains("rpn_head."), "{err}");

    let backbone_only: Vec<_> = state(&golden)
        .into_iter()
        .filter(|(k, _)| k.starts_with("backbone."))
        .collect();
    let err = import_detector(backbone_only).unwrap_err().to_string();
    assert!(err.contains("roi_head"), "{err}");
}
