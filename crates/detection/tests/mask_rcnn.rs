//! Mask R-CNN end to end on a tiny ResNet: in both regimes (fixed-feature: the backbone
//! under `Freeze::all`; full-network: mmdet's `frozen_stages=1` + `norm_eval`) and both
//! flavors, every parameter that should train gets a non-zero gradient and every frozen one
//! none; inference maps detections back to the original image size.

use std::collections::HashSet;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rtb_detection::Flavor;
use rtb_detection::image_batch::ImageBatch;
use rtb_detection::mask_rcnn::{MaskRcnn, MaskRcnnConfig};
use rtb_detection::roi_heads::GtInstances;
use rtb_models::{Backbone, Freeze, ResNet, ResNetConfig};

fn model(flavor: Flavor, freeze: Freeze) -> (MaskRcnn, VarMap) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let cfg = MaskRcnnConfig::new(flavor, 3).with_widths(16, 32, 8);
    let mut backbone = ResNet::new(
        &ResNetConfig::tiny().without_classifier(),
        &vb.pp(cfg.backbone_prefix()),
    )
    .unwrap();
    backbone.set_freeze(freeze);
    let model = MaskRcnn::new(&cfg, Box::new(backbone), &vb).unwrap();
    (model, varmap)
}

fn batch() -> ImageBatch {
    let dev = Device::Cpu;
    let a = Tensor::randn(0f32, 1.0, (3, 64, 80), &dev).unwrap();
    let b = Tensor::randn(0f32, 1.0, (3, 56, 64), &dev).unwrap();
    ImageBatch::from_images(&[a, b], 32).unwrap()
}

fn box_mask(h: usize, w: usize, b: [usize; 4]) -> Vec<u8> {
    let mut m = vec![0u8; h * w];
    for y in b[1]..b[3] {
        for x in b[0]..b[2] {
            m[y * w + x] = 1;
        }
    }
    m
}

fn targets() -> Vec<GtInstances> {
    let dev = Device::Cpu;
    let gt = |h: usize, w: usize, boxes: &[[usize; 4]], labels: Vec<usize>| {
        let flat: Vec<f32> = boxes.iter().flat_map(|b| b.map(|v| v as f32)).collect();
        let masks: Vec<u8> = boxes.iter().flat_map(|&b| box_mask(h, w, b)).collect();
        GtInstances {
            boxes: Tensor::from_vec(flat, (boxes.len(), 4), &dev).unwrap(),
            labels,
            masks: Tensor::from_vec(masks, (boxes.len(), h, w), &dev).unwrap(),
        }
    };
    vec![
        gt(64, 80, &[[8, 8, 40, 36], [30, 20, 76, 60]], vec![0, 2]),
        gt(56, 64, &[[4, 10, 50, 50]], vec![1]),
    ]
}

fn nonzero(t: &Tensor) -> bool {
    t.abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        > 0.0
}

#[test]
fn trainable_parameters_get_gradients_and_frozen_ones_none_in_both_regimes() {
    for flavor in [Flavor::Mmdet, Flavor::Torchvision] {
        for (regime, freeze) in [
            ("fixed-feature", Freeze::all()),
            ("full-network", Freeze::mmdet_resnet()),
        ] {
            let (model, varmap) = model(flavor, freeze);
            let losses = model.forward_train(&batch(), &targets(), 11).unwrap();
            for (name, l) in [
                ("objectness", &losses.objectness),
                ("rpn_box", &losses.rpn_box),
                ("classifier", &losses.classifier),
                ("box_reg", &losses.box_reg),
                ("mask", &losses.mask),
            ] {
                let v = l.to_scalar::<f32>().unwrap();
                assert!(
                    v.is_finite() && v > 0.0,
                    "{flavor:?} {regime}: {name} loss {v}"
                );
            }
            let grads = losses.total().unwrap().backward().unwrap();
            let trainable: HashSet<_> = model
                .backbone
                .trainable_vars()
                .iter()
                .map(|(_, v)| v.as_tensor().id())
                .collect();
            let backbone: HashSet<_> = model
                .backbone
                .parameters()
                .iter()
                .map(|p| p.tensor.id())
                .collect();
            let trainable_kinds: HashSet<_> = model
                .backbone
                .parameters()
                .iter()
                .filter(|p| p.kind.is_trainable())
                .map(|p| p.tensor.id())
                .collect();
            if regime == "fixed-feature" {
                assert!(trainable.is_empty());
            } else {
                assert!(!trainable.is_empty() && trainable.len() < trainable_kinds.len());
            }
            let data = varmap.data().lock().unwrap();
            let (mut trained, mut frozen) = (0, 0);
            for (name, var) in data.iter() {
                let id = var.as_tensor().id();
                let grad = grads.get(var.as_tensor());
                let should_train = if backbone.contains(&id) {
                    if !trainable_kinds.contains(&id) {
                        // Running statistics: never a gradient.
                        assert!(
                            grad.is_none(),
                            "{flavor:?} {regime}: buffer {name} has a gradient"
                        );
                        continue;
                    }
                    trainable.contains(&id)
                } else {
                    true
                };
                if should_train {
                    trained += 1;
                    let g = grad
                        .unwrap_or_else(|| panic!("{flavor:?} {regime}: {name} has no gradient"));
                    assert!(
                        nonzero(g),
                        "{flavor:?} {regime}: {name} has a zero gradient"
                    );
                } else {
                    frozen += 1;
                    assert!(
                        grad.is_none(),
                        "{flavor:?} {regime}: frozen {name} has a gradient"
                    );
                }
            }
            assert!(
                trained > 0 && frozen > 0,
                "{flavor:?} {regime}: {trained} trained, {frozen} frozen"
            );
        }
    }
}

#[test]
fn inference_maps_detections_to_the_original_size() {
    for flavor in [Flavor::Mmdet, Flavor::Torchvision] {
        let (model, _) = model(flavor, Freeze::mmdet_resnet());
        let batch = batch();
        let dets = model.forward(&batch).unwrap();
        assert_eq!(dets.len(), 2);
        let scaled = model
            .forward(
                &batch
                    .clone()
                    .with_original_sizes(vec![(128, 160), (112, 128)])
                    .unwrap(),
            )
            .unwrap();
        for (i, (d, s)) in dets.iter().zip(&scaled).enumerate() {
            let (h, w) = batch.image_sizes[i];
            let n = d.detections.labels.len();
            assert!(n > 0 && n <= 100, "{flavor:?} image {i}: {n} detections");
            assert_eq!(d.masks.dims(), &[n, h, w]);
            assert_eq!(s.masks.dims(), &[n, 2 * h, 2 * w]);
            assert_eq!(d.detections.labels, s.detections.labels);
            let doubled = (&d.detections.boxes * 2.0).unwrap();
            let diff = (doubled - &s.detections.boxes)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);
        }
    }
}

#[test]
fn batch_pads_to_32_and_targets_must_match_the_batch() {
    let batch = batch();
    assert_eq!(batch.padded_size().unwrap(), (64, 96));
    assert_eq!(batch.image_sizes, vec![(64, 80), (56, 64)]);
    let (model, _) = model(Flavor::Mmdet, Freeze::all());
    let err = model.forward_train(&batch, &targets()[..1], 0).unwrap_err();
    assert!(err.to_string().contains("targets"), "{err}");
    let bad = Tensor::zeros((3, 8), DType::F32, &Device::Cpu).unwrap();
    assert!(ImageBatch::from_images(&[bad], 32).is_err());
}

fn scalars(l: &rtb_detection::mask_rcnn::Losses) -> Vec<f32> {
    [
        &l.objectness,
        &l.rpn_box,
        &l.classifier,
        &l.box_reg,
        &l.mask,
    ]
    .iter()
    .map(|t| t.to_scalar::<f32>().unwrap())
    .collect()
}

#[test]
fn training_is_reproducible_by_seed_and_accepts_an_image_without_objects() {
    for flavor in [Flavor::Mmdet, Flavor::Torchvision] {
        let (model, _) = model(flavor, Freeze::all());
        let batch = batch();
        let a = scalars(&model.forward_train(&batch, &targets(), 3).unwrap());
        let b = scalars(&model.forward_train(&batch, &targets(), 3).unwrap());
        assert_eq!(a, b, "{flavor:?}: same seed, same losses");
        let mut with_empty = targets();
        with_empty[1] = GtInstances {
            boxes: Tensor::zeros((0, 4), DType::F32, &Device::Cpu).unwrap(),
            labels: vec![],
            masks: Tensor::zeros((0, 56, 64), DType::U8, &Device::Cpu).unwrap(),
        };
        let l = scalars(&model.forward_train(&batch, &with_empty, 3).unwrap());
        assert!(l.iter().all(|v| v.is_finite()), "{flavor:?}: {l:?}");
    }
}

#[test]
fn anchors_and_pooling_follow_a_small_stem_backbones_strides() {
    // A small-image stem puts C2..C5 at strides 2..16: P2..P6 sit at 2..32, and the anchors
    // (scale 8 × stride) and the RoI pooling must be laid there, not at 4..64.
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let cfg = MaskRcnnConfig::new(Flavor::Mmdet, 3).with_widths(16, 32, 8);
    let small = ResNetConfig {
        stem: rtb_models::Stem::Small { stride: 2 },
        ..ResNetConfig::tiny().without_classifier()
    };
    let backbone = ResNet::new(&small, &vb.pp(cfg.backbone_prefix())).unwrap();
    assert_eq!(backbone.strides(), [2, 4, 8, 16]);
    let detector = MaskRcnn::new(&cfg, Box::new(backbone), &vb).unwrap();
    assert_eq!(detector.rpn.anchors.strides(), [2, 4, 8, 16, 32]);
    assert_eq!(detector.roi_heads.config().strides, [2, 4, 8, 16]);
    let losses = detector.forward_train(&batch(), &targets(), 5).unwrap();
    for value in scalars(&losses) {
        assert!(value.is_finite(), "{value}");
    }

    // A standard backbone keeps Mask R-CNN's strides.
    let (standard, _) = model(Flavor::Mmdet, Freeze::none());
    assert_eq!(standard.rpn.anchors.strides(), [4, 8, 16, 32, 64]);
    assert_eq!(standard.roi_heads.config().strides, [4, 8, 16, 32]);
}
