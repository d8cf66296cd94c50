//! The RoI heads against torchvision on shared random weights (fixtures from
//! tests/golden/make_golden_roi.py): multi-level pooling, the box branch in eval mode, the mask
//! branch, mask pasting and the training losses on given proposals; mmdet-flavor rules on hand
//! cases.

mod support;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rtb_detection::Flavor;
use rtb_detection::box_head::{
    BoxHead, BoxHeadConfig, BoxHeadOutput, BoxInferenceConfig, postprocess_detections,
};
use rtb_detection::mask_head::{
    MaskHead, MaskHeadConfig, mask_loss, mask_targets, torchvision_legacy_key,
};
use rtb_detection::matcher::Matcher;
use rtb_detection::paste::{binarize_masks, paste_masks, paste_masks_mmdet};
use rtb_detection::poolers::{Pooler, boxes_to_rois, infer_strides};
use rtb_detection::roi_heads::{
    GtInstances, RoiHeads, RoiHeadsConfig, RoiTargets, fastrcnn_loss, maskrcnn_loss, roi_targets,
    select_training_samples,
};
use rtb_detection::sampler::SamplerConfig;
use rtb_nn::boxes::box_iou;
use rtb_nn::gradcheck::{GradCheck, check_gradients};
use support::{Golden, assert_close, relative_error};

fn features(golden: &Golden) -> Vec<Tensor> {
    (2..=5).map(|i| golden.get(&format!("p{i}"))).collect()
}

fn proposals(golden: &Golden) -> Vec<Tensor> {
    (0..2)
        .map(|i| golden.get(&format!("proposals.{i}")))
        .collect()
}

fn image_sizes(golden: &Golden) -> Vec<(usize, usize)> {
    let v: Vec<Vec<i64>> = golden.get("image_shapes").to_vec2().unwrap();
    v.iter().map(|r| (r[0] as usize, r[1] as usize)).collect()
}

#[test]
fn poolers_match_torchvision_multi_scale_roi_align() {
    let golden = Golden::load("roi_heads");
    let feats = features(&golden);
    let props = proposals(&golden);
    let strides = infer_strides(&feats, &image_sizes(&golden)).unwrap();
    assert_eq!(strides, vec![4, 8, 16, 32]);
    let levels: Vec<i64> = golden.get("levels").to_vec1().unwrap();
    let pooler = Pooler::box_pooler(Flavor::Torchvision);
    let ours: Vec<i64> = pooler
        .levels(&props)
        .unwrap()
        .into_iter()
        .map(|l| l as i64)
        .collect();
    assert_eq!(ours, levels);
    for (pooler, key) in [
        (Pooler::box_pooler(Flavor::Torchvision), "pooled_box"),
        (Pooler::mask_pooler(Flavor::Torchvision), "pooled_mask"),
    ] {
        let pooled = pooler.forward(&feats, &props).unwrap();
        let err = relative_error(&pooled, &golden.get(key));
        assert!(err <= 1e-5, "{key}: relative error {err:e}");
    }
}

#[test]
fn mmdet_pooler_is_aligned_with_adaptive_sampling() {
    // One 8×8 map of stride 4 whose value is its column index: an aligned, adaptive pooler
    // averages pixel-centre samples, so a RoI over columns 0..8 (image x 0..32) pools to the
    // bin centres' feature x − 0.5; torchvision's (not aligned) pools to bin centres' x.
    let dev = Device::Cpu;
    let row: Vec<f32> = (0..8).map(|x| x as f32).collect();
    let map = Tensor::new(row.as_slice(), &dev)
        .unwrap()
        .reshape((1, 1, 1, 8))
        .unwrap()
        .broadcast_as((1, 1, 8, 8))
        .unwrap()
        .contiguous()
        .unwrap();
    let feats = vec![map.clone(), map.clone(), map.clone(), map];
    let boxes = vec![Tensor::new(&[[4f32, 4., 20., 20.]], &dev).unwrap()];
    let mmdet = Pooler::new(Flavor::Mmdet, 2, &[4, 8, 16, 32]).unwrap();
    let tv = Pooler::new(Flavor::Torchvision, 2, &[4, 8, 16, 32]).unwrap();
    let m: Vec<f32> = mmdet
        .forward(&feats, &boxes)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let t: Vec<f32> = tv
        .forward(&feats, &boxes)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    // Feature x from 1 to 5: bin centres 2 and 4; aligned subtracts half a pixel.
    assert_eq!(m, vec![1.5, 3.5, 1.5, 3.5]);
    assert_eq!(t, vec![2.0, 4.0, 2.0, 4.0]);
}

#[test]
fn pooler_errors_name_the_argument() {
    let dev = Device::Cpu;
    let feats: Vec<Tensor> = (0..4)
        .map(|l| Tensor::zeros((1, 2, 16 >> l, 16 >> l), DType::F32, &dev).unwrap())
        .collect();
    let pooler = Pooler::box_pooler(Flavor::Mmdet);
    let bad = vec![Tensor::zeros((3, 5), DType::F32, &dev).unwrap()];
    let err = pooler.forward(&feats, &bad).unwrap_err().to_string();
    assert!(err.contains("boxes"), "{err}");
    let two_images = vec![
        Tensor::zeros((1, 4), DType::F32, &dev).unwrap(),
        Tensor::zeros((1, 4), DType::F32, &dev).unwrap(),
    ];
    let err = pooler.forward(&feats, &two_images).unwrap_err().to_string();
    assert!(err.contains("image"), "{err}");
    let err = pooler
        .forward(&feats[..2], &bad[..0])
        .unwrap_err()
        .to_string();
    assert!(err.contains("features") || err.contains("boxes"), "{err}");
    assert!(Pooler::new(Flavor::Mmdet, 7, &[4, 6]).is_err());
    let rois = boxes_to_rois(&two_images).unwrap();
    assert_eq!(rois.dims(), &[2, 5]);
}

/// A key renaming (None drops the key).
type Rename = dyn Fn(&str, &Tensor) -> Option<(String, Tensor)>;

/// The golden tensors under `prefix`, renamed by `rename` (None drops the key).
fn weights(golden: &Golden, prefix: &str, rename: &Rename) -> HashMap<String, Tensor> {
    golden
        .tensors
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).and_then(|_| rename(k, v)))
        .collect()
}

fn same(k: &str, v: &Tensor) -> Option<(String, Tensor)> {
    Some((k.to_string(), v.clone()))
}

/// torchvision's box head weights under mmdet's names: background moved from the first
/// classifier row to the last, the regressor's background block dropped.
fn box_head_to_mmdet(k: &str, v: &Tensor) -> Option<(String, Tensor)> {
    let rows = v.dims()[0];
    let v = v.clone();
    Some(match k {
        "box_head.fc6.weight" | "box_head.fc6.bias" => {
            (k.replace("box_head.fc6", "bbox_head.shared_fcs.0"), v)
        }
        "box_head.fc7.weight" | "box_head.fc7.bias" => {
            (k.replace("box_head.fc7", "bbox_head.shared_fcs.1"), v)
        }
        "box_predictor.cls_score.weight" | "box_predictor.cls_score.bias" => {
            let moved = Tensor::cat(
                &[
                    v.narrow(0, 1, rows - 1).unwrap(),
                    v.narrow(0, 0, 1).unwrap(),
                ],
                0,
            )
            .unwrap();
            (
                k.replace("box_predictor.cls_score", "bbox_head.fc_cls"),
                moved,
            )
        }
        "box_predictor.bbox_pred.weight" | "box_predictor.bbox_pred.bias" => (
            k.replace("box_predictor.bbox_pred", "bbox_head.fc_reg"),
            v.narrow(0, 4, rows - 4).unwrap(),
        ),
        _ => return None,
    })
}

fn box_head(golden: &Golden, flavor: Flavor) -> BoxHead {
    let map = match flavor {
        Flavor::Torchvision => weights(golden, "box_", &same),
        Flavor::Mmdet => weights(golden, "box_", &box_head_to_mmdet),
    };
    let vb = VarBuilder::from_tensors(map, DType::F32, &Device::Cpu);
    let cfg = BoxHeadConfig::mask_rcnn(flavor, 4, 3).with_representation(32);
    BoxHead::new(&cfg, &vb).unwrap()
}

#[test]
fn box_head_matches_torchvision_and_postprocess_equals_roi_heads_eval() {
    let golden = Golden::load("roi_heads");
    let head = box_head(&golden, Flavor::Torchvision);
    let out = head.forward(&golden.get("pooled_box")).unwrap();
    let err = relative_error(&out.class_logits, &golden.get("class_logits"));
    assert!(err <= 1e-5, "class_logits: {err:e}");
    let err = relative_error(&out.box_regression, &golden.get("box_regression"));
    assert!(err <= 1e-5, "box_regression: {err:e}");

    // End to end from the features, as RoIHeads.forward in eval mode.
    let pooled = Pooler::box_pooler(Flavor::Torchvision)
        .forward(&features(&golden), &proposals(&golden))
        .unwrap();
    let out = head.forward(&pooled).unwrap();
    let cfg = BoxInferenceConfig::mask_rcnn(Flavor::Torchvision);
    let dets = postprocess_detections(
        Flavor::Torchvision,
        &out,
        &proposals(&golden),
        &image_sizes(&golden),
        &cfg,
    )
    .unwrap();
    for (i, det) in dets.iter().enumerate() {
        let labels: Vec<i64> = golden.get(&format!("det.{i}.labels")).to_vec1().unwrap();
        let ours: Vec<i64> = det.labels.iter().map(|&l| l as i64 + 1).collect();
        assert_eq!(ours, labels, "image {i}: labels");
        assert_close(
            &format!("image {i} boxes"),
            &det.boxes,
            &golden.get(&format!("det.{i}.boxes")),
            1e-5,
            1e-4,
        );
        assert_close(
            &format!("image {i} scores"),
            &det.scores,
            &golden.get(&format!("det.{i}.scores")),
            1e-5,
            1e-6,
        );
    }
}

#[test]
fn mmdet_box_head_on_converted_weights_gives_torchvision_detections() {
    // Same weights under mmdet's names and class order: the logits are a permutation of
    // torchvision's, and the detections agree (the coders' centre formula differs by a
    // rounding step; no box here is small enough for torchvision's min-size rule to act).
    let golden = Golden::load("roi_heads");
    let head = box_head(&golden, Flavor::Mmdet);
    let out = head.forward(&golden.get("pooled_box")).unwrap();
    let tv = golden.get("class_logits");
    let c = tv.dims()[1];
    let permuted = Tensor::cat(
        &[tv.narrow(1, 1, c - 1).unwrap(), tv.narrow(1, 0, 1).unwrap()],
        1,
    )
    .unwrap();
    let err = relative_error(&out.class_logits, &permuted);
    assert!(err <= 1e-5, "class_logits: {err:e}");
    assert_eq!(out.box_regression.dims(), &[96, 12]);
    let dets = postprocess_detections(
        Flavor::Mmdet,
        &out,
        &proposals(&golden),
        &image_sizes(&golden),
        &BoxInferenceConfig::mask_rcnn(Flavor::Mmdet),
    )
    .unwrap();
    for (i, det) in dets.iter().enumerate() {
        let labels: Vec<i64> = golden.get(&format!("det.{i}.labels")).to_vec1().unwrap();
        let ours: Vec<i64> = det.labels.iter().map(|&l| l as i64 + 1).collect();
        assert_eq!(ours, labels, "image {i}: labels");
        assert_close(
            &format!("image {i} boxes"),
            &det.boxes,
            &golden.get(&format!("det.{i}.boxes")),
            1e-4,
            1e-3,
        );
    }
}

#[test]
fn postprocess_thresholds_nms_and_truncation() {
    // Two proposals, two foreground classes, torchvision order (background first).
    let dev = Device::Cpu;
    let props = vec![Tensor::new(&[[0f32, 0., 10., 10.], [1., 1., 11., 11.]], &dev).unwrap()];
    let logits = Tensor::new(&[[0f32, 3., 0.], [0., 2.5, -5.]], &dev).unwrap();
    let head = BoxHeadOutput {
        class_logits: logits.clone(),
        box_regression: Tensor::zeros((2, 12), DType::F32, &dev).unwrap(),
    };
    let mut cfg = BoxInferenceConfig::mask_rcnn(Flavor::Torchvision);
    let dets =
        postprocess_detections(Flavor::Torchvision, &head, &props, &[(20, 20)], &cfg).unwrap();
    // Class 0 twice: the second overlaps the first (IoU 0.68) and goes; class 1 of the
    // first proposal (score 0.045) is under 0.05; class 1 of the second is under too.
    assert_eq!(dets[0].labels, vec![0]);
    cfg.nms_thresh = 0.9;
    let dets =
        postprocess_detections(Flavor::Torchvision, &head, &props, &[(20, 20)], &cfg).unwrap();
    assert_eq!(dets[0].labels, vec![0, 0]);
    cfg.detections_per_img = 1;
    let dets =
        postprocess_detections(Flavor::Torchvision, &head, &props, &[(20, 20)], &cfg).unwrap();
    assert_eq!(dets[0].labels.len(), 1);
    // Clipping to a 5×5 image; the second proposal scores higher (0.92 vs 0.91).
    let dets = postprocess_detections(Flavor::Torchvision, &head, &props, &[(5, 5)], &cfg).unwrap();
    let b: Vec<Vec<f32>> = dets[0].boxes.to_vec2().unwrap();
    assert_eq!(b[0], vec![1., 1., 5., 5.]);
    // Wrong shapes are errors naming the argument.
    let bad = BoxHeadOutput {
        class_logits: logits,
        box_regression: Tensor::zeros((2, 8), DType::F32, &dev).unwrap(),
    };
    let err = postprocess_detections(Flavor::Torchvision, &bad, &props, &[(5, 5)], &cfg)
        .unwrap_err()
        .to_string();
    assert!(err.contains("box_regression"), "{err}");
    // The same regressor shape is right for mmdet (no background block).
    assert!(postprocess_detections(Flavor::Mmdet, &bad, &props, &[(5, 5)], &cfg).is_ok());
}

fn mask_head(golden: &Golden) -> MaskHead {
    let map = weights(golden, "mask_", &same);
    let vb = VarBuilder::from_tensors(map, DType::F32, &Device::Cpu);
    let cfg = MaskHeadConfig::mask_rcnn(Flavor::Torchvision, 4, 3).with_conv_channels(8);
    MaskHead::new(&cfg, &vb).unwrap()
}

/// Per image: the positive proposals, their matched gts and 0-based classes.
fn positives(golden: &Golden, i: usize) -> (Tensor, Vec<usize>, Vec<usize>) {
    let labels: Vec<i64> = golden.get(&format!("train.{i}.labels")).to_vec1().unwrap();
    let matched: Vec<i64> = golden
        .get(&format!("train.{i}.matched_idxs"))
        .to_vec1()
        .unwrap();
    let pos: Vec<u32> = (0..labels.len() as u32)
        .filter(|&j| labels[j as usize] > 0)
        .collect();
    let props = golden
        .get(&format!("train.{i}.proposals"))
        .index_select(&Tensor::new(pos.as_slice(), &Device::Cpu).unwrap(), 0)
        .unwrap();
    let gts = pos.iter().map(|&j| matched[j as usize] as usize).collect();
    let classes = pos
        .iter()
        .map(|&j| labels[j as usize] as usize - 1)
        .collect();
    (props, gts, classes)
}

#[test]
fn mask_head_targets_and_loss_match_torchvision() {
    let golden = Golden::load("roi_heads");
    let head = mask_head(&golden);
    let feats = features(&golden);
    let dets: Vec<Tensor> = (0..2)
        .map(|i| golden.get(&format!("det.{i}.boxes")))
        .collect();
    let pooled = Pooler::mask_pooler(Flavor::Torchvision)
        .forward(&feats, &dets)
        .unwrap();
    let logits = head.forward(&pooled).unwrap();
    let want = golden.get("det_mask_logits");
    let err = relative_error(&logits.narrow(0, 0, want.dims()[0]).unwrap(), &want);
    assert!(err <= 1e-5, "mask logits: relative error {err:e}");

    let mut all_props = Vec::new();
    let mut all_targets = Vec::new();
    let mut all_classes = Vec::new();
    for i in 0..2 {
        let (props, gts, classes) = positives(&golden, i);
        let masks = golden.get(&format!("gt.{i}.masks"));
        all_targets.push(mask_targets(Flavor::Torchvision, &masks, &props, &gts, 28).unwrap());
        all_props.push(props);
        all_classes.extend(classes);
    }
    let targets = Tensor::cat(&all_targets, 0).unwrap();
    let err = relative_error(&targets, &golden.get("train.mask_targets"));
    assert!(err <= 1e-5, "mask targets: relative error {err:e}");
    // mmdet 2.x's mask_target (clip, aligned RoIAlign, binarise), rewritten in the script.
    let mut mmdet_targets = Vec::new();
    for i in 0..2 {
        let (props, gts, _) = positives(&golden, i);
        let masks = golden.get(&format!("gt.{i}.masks"));
        mmdet_targets.push(mask_targets(Flavor::Mmdet, &masks, &props, &gts, 28).unwrap());
    }
    let mmdet_targets = Tensor::cat(&mmdet_targets, 0).unwrap();
    assert_close(
        "mmdet mask targets",
        &mmdet_targets,
        &golden.get("train.mmdet_mask_targets"),
        0.0,
        0.0,
    );
    let pooled = Pooler::mask_pooler(Flavor::Torchvision)
        .forward(&feats, &all_props)
        .unwrap();
    let logits = head.forward(&pooled).unwrap();
    let loss = mask_loss(head.config(), &logits, &all_classes, &targets).unwrap();
    let err = relative_error(&loss.reshape(1).unwrap(), &golden.get("train.loss_mask"));
    assert!(err <= 1e-5, "mask loss: relative error {err:e}");
}

#[test]
fn mmdet_mask_targets_clip_align_and_binarise() {
    // A 4×4 mask whose left half is set, proposal exactly over it, 2×2 targets.
    let dev = Device::Cpu;
    let mask = Tensor::new(
        &[[[1u8, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]]],
        &dev,
    )
    .unwrap();
    let props = Tensor::new(&[[0f32, 0., 4., 4.], [-4., 0., 4., 4.]], &dev).unwrap();
    let t: Vec<f32> = mask_targets(Flavor::Mmdet, &mask, &props, &[0, 0], 2)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    // Aligned: the left bins sample only set pixels, the right ones only clear ones; the
    // second proposal is clipped to x ≥ 0 first, so it gives the same.
    assert_eq!(t, vec![1., 0., 1., 0., 1., 0., 1., 0.]);
    // torchvision's soft, unaligned targets of the unclipped second proposal: its left bin
    // covers x in [-4, 0] (outside, mostly zero) and the right one [0, 4] (half set).
    let t: Vec<f32> = mask_targets(Flavor::Torchvision, &mask, &props, &[0, 0], 2)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(t[4] < 0.5 && t[5] > 0.0 && t[5] < 1.0, "{t:?}");
    // Errors name the argument.
    let err = mask_targets(Flavor::Mmdet, &mask, &props, &[0, 1], 2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("matched_gt"), "{err}");
    // The mmdet loss reads channel `label` of C channels (torchvision `label + 1` of C + 1).
    let cfg = MaskHeadConfig::mask_rcnn(Flavor::Mmdet, 1, 2);
    let logits = Tensor::new(&[[[[0f32]], [[100.]]]], &dev).unwrap();
    let target = Tensor::new(&[[[1f32]]], &dev).unwrap();
    let loss: f32 = mask_loss(&cfg, &logits, &[1], &target)
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(loss < 1e-6, "{loss}");
    let empty = Tensor::zeros((0, 2, 1, 1), DType::F32, &dev).unwrap();
    let none = Tensor::zeros((0, 1, 1), DType::F32, &dev).unwrap();
    let loss: f32 = mask_loss(&cfg, &empty, &[], &none)
        .unwrap()
        .to_scalar()
        .unwrap();
    assert_eq!(loss, 0.0);
    assert_eq!(
        torchvision_legacy_key("roi_heads.mask_head.mask_fcn3.weight"),
        "roi_heads.mask_head.2.0.weight"
    );
    assert_eq!(
        torchvision_legacy_key("roi_heads.mask_head.1.0.bias"),
        "roi_heads.mask_head.1.0.bias"
    );
}

/// Builds a module from a fresh f64 VarMap, then checks the gradients of `run` with
/// respect to `inputs` and every parameter.
fn gradcheck_module<B, R>(inputs: Vec<Tensor>, build: B, run: R)
where
    B: Fn(&VarBuilder<'_>) -> rtb_detection::Result<Box<dyn std::any::Any>>,
    R: Fn(&dyn std::any::Any, &[Tensor]) -> rtb_detection::Result<Tensor>,
{
    let varmap = candle_nn::VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    build(&vb).unwrap();
    let mut names: Vec<(String, Tensor)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let n_inputs = inputs.len();
    let mut all = inputs;
    // Random non-zero values for every parameter: zero biases would put ReLU inputs exactly
    // on the kink wherever a previous ReLU zeroed a whole patch.
    all.extend(
        names
            .iter()
            .enumerate()
            .map(|(i, (_, t))| uniform(t.dims(), 100 + i as u64)),
    );
    let f = |xs: &[Tensor]| {
        let map: HashMap<String, Tensor> = names
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.clone(), xs[n_inputs + i].clone()))
            .collect();
        let vb = VarBuilder::from_tensors(map, DType::F64, &Device::Cpu);
        let module = build(&vb).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        run(module.as_ref(), &xs[..n_inputs]).map_err(|e| candle_core::Error::Msg(e.to_string()))
    };
    let report = check_gradients(f, &all, &GradCheck::default()).unwrap();
    assert!(report.passed(), "{report}");
    assert!(report.inputs.iter().all(|r| r.has_gradient), "{report}");
}

fn uniform(shape: &[usize], seed: u64) -> Tensor {
    // A fixed pseudo-random fill in [-1, 1] (no RNG crate needed).
    let n: usize = shape.iter().product();
    let mut s = seed;
    let v: Vec<f64> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

#[test]
fn heads_pass_a_gradient_check_in_both_flavors() {
    for flavor in [Flavor::Torchvision, Flavor::Mmdet] {
        let box_cfg = BoxHeadConfig {
            flavor,
            in_channels: 2,
            pool_size: 2,
            representation: 5,
            num_classes: 2,
        };
        gradcheck_module(
            vec![uniform(&[3, 2, 2, 2], 1)],
            |vb| Ok(Box::new(BoxHead::new(&box_cfg, vb)?)),
            |m, xs| {
                let head = m.downcast_ref::<BoxHead>().unwrap();
                let out = head.forward(&xs[0])?;
                Ok(Tensor::cat(
                    &[
                        out.class_logits.flatten_all()?,
                        out.box_regression.flatten_all()?,
                    ],
                    0,
                )?)
            },
        );
        let mask_cfg = MaskHeadConfig {
            flavor,
            in_channels: 2,
            conv_channels: 3,
            num_convs: 2,
            num_classes: 2,
        };
        let targets = uniform(&[2, 6, 6], 3)
            .ge(0.0)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        gradcheck_module(
            vec![uniform(&[2, 2, 3, 3], 2)],
            |vb| Ok(Box::new(MaskHead::new(&mask_cfg, vb)?)),
            |m, xs| {
                let head = m.downcast_ref::<MaskHead>().unwrap();
                let logits = head.forward(&xs[0])?;
                let loss = mask_loss(head.config(), &logits, &[1, 0], &targets)?;
                Ok(Tensor::cat(&[logits.flatten_all()?, loss.reshape(1)?], 0)?)
            },
        );
    }
}

#[test]
fn paste_matches_torchvision_paste_masks_in_image() {
    let golden = Golden::load("paste");
    let pasted = paste_masks(
        Flavor::Torchvision,
        &golden.get("masks"),
        &golden.get("boxes"),
        (64, 80),
    )
    .unwrap();
    let want = golden.get("pasted").squeeze(1).unwrap();
    let err = relative_error(&pasted, &want);
    assert!(err <= 1e-6, "pasted masks: relative error {err:e}");
    // mmdet 2.x's grid_sample paste, rewritten in the fixture script with F.grid_sample.
    let pasted = paste_masks(
        Flavor::Mmdet,
        &golden.get("masks"),
        &golden.get("boxes"),
        (64, 80),
    )
    .unwrap();
    let err = relative_error(&pasted, &golden.get("mmdet_pasted"));
    assert!(err <= 1e-5, "mmdet pasted masks: relative error {err:e}");
}

#[test]
fn mmdet_paste_samples_pixel_centres_inside_the_box() {
    // A mask of ones over the box [2, 30] × [2, 30] (28 pixels, one per cell): the pixels
    // whose centres fall inside get 1, those one pixel out 0 (up to the rounding of the
    // normalised grid, as in grid_sample).
    let dev = Device::Cpu;
    let masks = Tensor::ones((1, 28, 28), DType::F32, &dev).unwrap();
    let boxes = Tensor::new(&[[2f32, 2., 30., 30.]], &dev).unwrap();
    let pasted = paste_masks_mmdet(&masks, &boxes, (32, 32)).unwrap();
    let rows: Vec<Vec<f32>> = pasted.squeeze(0).unwrap().to_vec2().unwrap();
    for (y, row) in rows.iter().enumerate() {
        for (x, &v) in row.iter().enumerate() {
            let inside = (2..30).contains(&x) && (2..30).contains(&y);
            let want = if inside { 1.0 } else { 0.0 };
            assert!((v - want).abs() <= 1e-5, "pixel ({x}, {y}): {v}");
        }
    }
    // torchvision's expansion by one cell blurs the same box's edges.
    let tv = paste_masks(Flavor::Torchvision, &masks, &boxes, (32, 32)).unwrap();
    let tv_rows: Vec<Vec<f32>> = tv.squeeze(0).unwrap().to_vec2().unwrap();
    assert!(
        tv_rows[16][2] > 0.9 && tv_rows[16][2] < 1.0,
        "{:?}",
        tv_rows[16]
    );
    // The thresholds: torchvision > 0.5, mmdet ≥ 0.5.
    let half = Tensor::new(&[0.5f32, 0.7], &dev).unwrap();
    let tv: Vec<u8> = binarize_masks(Flavor::Torchvision, &half)
        .unwrap()
        .to_vec1()
        .unwrap();
    let mm: Vec<u8> = binarize_masks(Flavor::Mmdet, &half)
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!((tv, mm), (vec![0, 1], vec![1, 1]));
    let err = paste_masks_mmdet(&masks, &boxes.narrow(1, 0, 2).unwrap(), (4, 4)).unwrap_err();
    assert!(err.to_string().contains("boxes"), "{err}");
}

fn gt_instances(golden: &Golden, i: usize) -> GtInstances {
    let labels: Vec<i64> = golden.get(&format!("gt.{i}.labels")).to_vec1().unwrap();
    GtInstances {
        boxes: golden.get(&format!("gt.{i}.boxes")),
        labels: labels.iter().map(|&l| l as usize - 1).collect(),
        masks: golden.get(&format!("gt.{i}.masks")),
    }
}

/// The fixture's training RoIs with torchvision's matches (no sampling).
fn given_targets(golden: &Golden) -> Vec<RoiTargets> {
    (0..2)
        .map(|i| {
            let props = golden.get(&format!("train.{i}.proposals"));
            let gt = gt_instances(golden, i);
            let matches = Matcher::roi_heads(Flavor::Torchvision)
                .match_iou(&box_iou(&gt.boxes, &props).unwrap())
                .unwrap();
            let t = roi_targets(Flavor::Torchvision, &props, &gt, &matches).unwrap();
            let labels: Vec<i64> = golden.get(&format!("train.{i}.labels")).to_vec1().unwrap();
            let ours: Vec<i64> = t
                .labels
                .iter()
                .map(|l| l.map_or(0, |c| c as i64 + 1))
                .collect();
            assert_eq!(ours, labels, "image {i}: labels");
            let matched: Vec<i64> = golden
                .get(&format!("train.{i}.matched_idxs"))
                .to_vec1()
                .unwrap();
            for (j, m) in t.matched_gt.iter().enumerate() {
                if let Some(m) = m {
                    assert_eq!(*m as i64, matched[j], "image {i} RoI {j}");
                }
            }
            // Background rows are unused; compare the positives' targets.
            let want = golden.get(&format!("train.{i}.regression_targets"));
            for (j, l) in t.labels.iter().enumerate() {
                if l.is_some() {
                    assert_close(
                        &format!("image {i} RoI {j} targets"),
                        &t.regression_targets.narrow(0, j, 1).unwrap(),
                        &want.narrow(0, j, 1).unwrap(),
                        1e-5,
                        1e-5,
                    );
                }
            }
            t
        })
        .collect()
}

fn roi_heads(golden: &Golden) -> RoiHeads {
    let map = weights(golden, "", &|k, v| {
        (k.starts_with("box_") || k.starts_with("mask_")).then(|| (k.to_string(), v.clone()))
    });
    let vb = VarBuilder::from_tensors(map, DType::F32, &Device::Cpu);
    let mut cfg = RoiHeadsConfig::mask_rcnn(Flavor::Torchvision, 4, 3);
    cfg.box_head = cfg.box_head.with_representation(32);
    cfg.mask_head = cfg.mask_head.with_conv_channels(8);
    RoiHeads::new(&cfg, &vb).unwrap()
}

#[test]
fn losses_match_fastrcnn_loss_and_maskrcnn_loss_on_given_proposals() {
    let golden = Golden::load("roi_heads");
    let targets = given_targets(&golden);
    let head = box_head(&golden, Flavor::Torchvision);
    let rois: Vec<Tensor> = targets.iter().map(|t| t.proposals.clone()).collect();
    let out = head
        .forward(
            &Pooler::box_pooler(Flavor::Torchvision)
                .forward(&features(&golden), &rois)
                .unwrap(),
        )
        .unwrap();
    let (cls, reg) = fastrcnn_loss(Flavor::Torchvision, &out, &targets).unwrap();
    let err = relative_error(
        &cls.reshape(1).unwrap(),
        &golden.get("train.loss_classifier"),
    );
    assert!(err <= 1e-5, "classifier loss: {err:e}");
    let err = relative_error(&reg.reshape(1).unwrap(), &golden.get("train.loss_box_reg"));
    assert!(err <= 1e-5, "box loss: {err:e}");

    // The same through RoiHeads, with the mask loss.
    let heads = roi_heads(&golden);
    let gts: Vec<GtInstances> = (0..2).map(|i| gt_instances(&golden, i)).collect();
    let losses = heads
        .forward_train_sampled(&features(&golden), &targets, &gts)
        .unwrap();
    for (name, ours, key) in [
        ("classifier", &losses.classifier, "train.loss_classifier"),
        ("box_reg", &losses.box_reg, "train.loss_box_reg"),
        ("mask", &losses.mask, "train.loss_mask"),
    ] {
        let err = relative_error(&ours.reshape(1).unwrap(), &golden.get(key));
        assert!(err <= 1e-5, "{name}: relative error {err:e}");
    }
    // And with the free function on the mask head's logits of the positives.
    let positives: Vec<Tensor> = rtb_detection::roi_heads::positive_rois(&targets)
        .unwrap()
        .into_iter()
        .map(|p| p.boxes)
        .collect();
    let mask = mask_head(&golden);
    let logits = mask
        .forward(
            &Pooler::mask_pooler(Flavor::Torchvision)
                .forward(&features(&golden), &positives)
                .unwrap(),
        )
        .unwrap();
    let loss = maskrcnn_loss(mask.config(), &logits, &targets, &gts).unwrap();
    let err = relative_error(&loss.reshape(1).unwrap(), &golden.get("train.loss_mask"));
    assert!(err <= 1e-5, "maskrcnn_loss: {err:e}");
}

#[test]
fn roi_heads_inference_equals_torchvision_eval() {
    let golden = Golden::load("roi_heads");
    let heads = roi_heads(&golden);
    let out = heads
        .forward(
            &features(&golden),
            &proposals(&golden),
            &image_sizes(&golden),
        )
        .unwrap();
    for (i, inst) in out.iter().enumerate() {
        assert_close(
            &format!("image {i} boxes"),
            &inst.detections.boxes,
            &golden.get(&format!("det.{i}.boxes")),
            1e-5,
            1e-4,
        );
    }
    // The first detections' masks: sigmoid of the logits of their class.
    let logits = golden.get("det_mask_logits");
    let labels: Vec<i64> = golden.get("det.0.labels").to_vec1().unwrap();
    for (j, &label) in labels.iter().take(logits.dims()[0]).enumerate() {
        let want =
            candle_nn::ops::sigmoid(&logits.get(j).unwrap().get(label as usize).unwrap()).unwrap();
        let err = relative_error(&out[0].masks.get(j).unwrap(), &want);
        assert!(err <= 1e-5, "mask {j}: {err:e}");
    }
}

#[test]
fn sampling_adds_gts_and_caps_positives_and_mmdet_losses_follow_mmdet() {
    let golden = Golden::load("roi_heads");
    let gt = gt_instances(&golden, 0);
    let props = golden.get("train.0.proposals");
    for flavor in [Flavor::Torchvision, Flavor::Mmdet] {
        let sampler = SamplerConfig::new(16, 0.25).unwrap();
        let t = select_training_samples(flavor, &props, &gt, &sampler, 7).unwrap();
        let pos = t.labels.iter().filter(|l| l.is_some()).count();
        assert_eq!(t.labels.len(), 16);
        assert_eq!(pos, 4, "{flavor:?}");
        // Positives come first.
        assert!(t.labels[..pos].iter().all(|l| l.is_some()));
        // With no cap every gt (added as a proposal, IoU 1 with itself) is positive.
        let all = SamplerConfig::new(1000, 1.0).unwrap();
        let t = select_training_samples(flavor, &props, &gt, &all, 7).unwrap();
        assert!(t.labels.iter().filter(|l| l.is_some()).count() >= 3);
    }
    // mmdet: background last in the classifier, no background block, L1 summed over the
    // positives divided by the sampled count.
    let dev = Device::Cpu;
    let t = RoiTargets {
        proposals: Tensor::zeros((2, 4), DType::F32, &dev).unwrap(),
        labels: vec![Some(1), None],
        matched_gt: vec![Some(0), None],
        regression_targets: Tensor::new(&[[1f32, 0., 0., 0.], [5., 5., 5., 5.]], &dev).unwrap(),
    };
    let head = BoxHeadOutput {
        class_logits: Tensor::new(&[[0f32, 0., 0.], [0., 0., 0.]], &dev).unwrap(),
        box_regression: Tensor::new(
            &[
                [9f32, 9., 9., 9., 0., 0., 0., 0.],
                [9., 9., 9., 9., 9., 9., 9., 9.],
            ],
            &dev,
        )
        .unwrap(),
    };
    let (cls, reg) = fastrcnn_loss(Flavor::Mmdet, &head, std::slice::from_ref(&t)).unwrap();
    let cls: f32 = cls.to_scalar().unwrap();
    let reg: f32 = reg.to_scalar().unwrap();
    assert!((cls - 3f32.ln()).abs() < 1e-6, "{cls}");
    assert!((reg - 0.5).abs() < 1e-6, "{reg}");
    // The torchvision shape of the regressor is an error for mmdet.
    let err = fastrcnn_loss(Flavor::Torchvision, &head, &[t])
        .unwrap_err()
        .to_string();
    assert!(err.contains("box_regression"), "{err}");
}

#[test]
fn every_head_parameter_and_the_features_get_a_gradient_in_both_flavors() {
    let golden = Golden::load("roi_heads");
    let gts: Vec<GtInstances> = (0..2).map(|i| gt_instances(&golden, i)).collect();
    let props: Vec<Tensor> = (0..2)
        .map(|i| golden.get(&format!("train.{i}.proposals")))
        .collect();
    for flavor in [Flavor::Torchvision, Flavor::Mmdet] {
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let mut cfg = RoiHeadsConfig::mask_rcnn(flavor, 4, 3);
        cfg.box_head = cfg.box_head.with_representation(16);
        cfg.mask_head = cfg.mask_head.with_conv_channels(8);
        cfg.sampler = SamplerConfig::new(64, 0.25).unwrap();
        let heads = RoiHeads::new(&cfg, &vb).unwrap();
        let feats: Vec<candle_core::Var> = features(&golden)
            .iter()
            .map(|f| candle_core::Var::from_tensor(f).unwrap())
            .collect();
        let feat_tensors: Vec<Tensor> = feats.iter().map(|v| v.as_tensor().clone()).collect();
        let losses = heads.forward_train(&feat_tensors, &props, &gts, 3).unwrap();
        let total = ((&losses.classifier + &losses.box_reg).unwrap() + &losses.mask).unwrap();
        let grads = total.backward().unwrap();
        let data = varmap.data().lock().unwrap();
        assert_eq!(data.len(), 2 * 4 + 2 * 6, "{flavor:?}: parameter count");
        for (name, var) in data.iter() {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{flavor:?}: no gradient for {name}"));
            let norm: f32 = g.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
            assert!(
                norm > 0.0 && norm.is_finite(),
                "{flavor:?}: {name} gradient {norm}"
            );
        }
        // Every training RoI is sampled here (fewer than 64 per image): exactly the levels
        // they map to get a gradient (P4 and P5 may have none: no RoI there).
        let pooled_from = Pooler::box_pooler(flavor).levels(&props).unwrap();
        for (l, f) in feats.iter().enumerate() {
            let reached = grads.get(f.as_tensor()).is_some();
            if pooled_from.contains(&l) {
                assert!(reached, "{flavor:?}: level {l} has no gradient");
            }
        }
    }
}

#[test]
fn images_without_proposals_or_objects_are_handled() {
    // An image with no ground truth trains its RoIs as background (zero box and mask
    // losses, still in the graph); an image without proposals detects nothing.
    let golden = Golden::load("roi_heads");
    let dev = Device::Cpu;
    for flavor in [Flavor::Torchvision, Flavor::Mmdet] {
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let mut cfg = RoiHeadsConfig::mask_rcnn(flavor, 4, 3);
        cfg.box_head = cfg.box_head.with_representation(8);
        cfg.mask_head = cfg.mask_head.with_conv_channels(4);
        let heads = RoiHeads::new(&cfg, &vb).unwrap();
        let feats = features(&golden);
        let empty_gt = GtInstances {
            boxes: Tensor::zeros((0, 4), DType::F32, &dev).unwrap(),
            labels: vec![],
            masks: Tensor::zeros((0, 160, 160), DType::U8, &dev).unwrap(),
        };
        let props = vec![golden.get("proposals.0"), golden.get("proposals.1")];
        let gts = vec![empty_gt.clone(), empty_gt];
        let losses = heads.forward_train(&feats, &props, &gts, 0).unwrap();
        let box_reg: f32 = losses.box_reg.to_scalar().unwrap();
        let mask: f32 = losses.mask.to_scalar().unwrap();
        let cls: f32 = losses.classifier.to_scalar().unwrap();
        assert_eq!((box_reg, mask), (0.0, 0.0), "{flavor:?}");
        assert!(cls > 0.0 && cls.is_finite(), "{flavor:?}: {cls}");

        let none = vec![
            Tensor::zeros((0, 4), DType::F32, &dev).unwrap(),
            golden.get("proposals.1"),
        ];
        let out = heads.forward(&feats, &none, &image_sizes(&golden)).unwrap();
        assert_eq!(out[0].detections.labels.len(), 0);
        assert_eq!(out[0].masks.dims()[0], 0);
        assert_eq!(out[1].masks.dims()[0], out[1].detections.labels.len());
        let nothing = vec![none[0].clone(), none[0].clone()];
        let out = heads
            .forward(&feats, &nothing, &image_sizes(&golden))
            .unwrap();
        assert!(out.iter().all(|o| o.masks.dims() == [0, 28, 28]));
    }
}
