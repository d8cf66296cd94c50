//! The FPN neck and the RPN against torchvision (FeaturePyramidNetwork + LastLevelMaxPool,
//! RPNHead, RegionProposalNetwork.filter_proposals in eval mode) on shared random weights,
//! both key layouts, a gradient check, and the mmdet proposal flavor on hand cases.

mod support;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rtb_detection::Flavor;
use rtb_detection::anchors::AnchorGenerator;
use rtb_detection::box_coder::BoxCoder;
use rtb_detection::fpn::{Fpn, FpnConfig, FpnLayout};
use rtb_detection::rpn::{
    ProposalConfig, Rpn, RpnHead, RpnLayout, filter_proposals, flatten_levels,
};
use rtb_nn::gradcheck::{GradCheck, check_gradients};
use support::{Golden, assert_close, relative_error};

const FPN_IN: [usize; 4] = [8, 16, 24, 32];

/// The golden tensors whose names start with `prefix`, renamed by `rename`.
fn weights(
    golden: &Golden,
    prefix: &str,
    rename: &dyn Fn(&str) -> String,
) -> HashMap<String, Tensor> {
    golden
        .tensors
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|rest| (rename(rest), v.clone())))
        .collect()
}

fn torchvision_to_mmdet_fpn(key: &str) -> String {
    key.replace("inner_blocks.", "lateral_convs.")
        .replace("layer_blocks.", "fpn_convs.")
        .replace(".0.weight", ".conv.weight")
        .replace(".0.bias", ".conv.bias")
}

#[test]
fn fpn_matches_torchvision_in_both_key_layouts() {
    let golden = Golden::load("fpn");
    let features: Vec<Tensor> = (2..=5).map(|i| golden.get(&format!("c{i}"))).collect();
    for layout in [FpnLayout::Torchvision, FpnLayout::Mmdet] {
        let map = match layout {
            FpnLayout::Torchvision => weights(&golden, "", &|k| k.to_string()),
            FpnLayout::Mmdet => weights(&golden, "", &torchvision_to_mmdet_fpn),
        };
        let vb = VarBuilder::from_tensors(map, DType::F32, &Device::Cpu);
        let cfg = FpnConfig::mask_rcnn(&FPN_IN, layout).with_out_channels(16);
        let fpn = Fpn::new(&cfg, &vb).unwrap();
        assert_eq!(fpn.num_outputs(), 5);
        let outs = fpn.forward(&features).unwrap();
        for (i, out) in outs.iter().enumerate() {
            let want = golden.get(&format!("p{}", i + 2));
            let err = relative_error(out, &want);
            assert!(err <= 1e-5, "{layout:?} P{}: relative error {err:e}", i + 2);
            assert_eq!(out.dims(), want.dims());
        }
    }
}

#[test]
fn fpn_gradients_pass_gradcheck() {
    // Inputs: C2..C4 of 2, 3, 4 channels; weights of two outputs of 2 channels.
    let mut inputs = Vec::new();
    let mut seed = 1u64;
    let mut uniform = |shape: &[usize]| {
        seed += 1;
        let n: usize = shape.iter().product();
        let data: Vec<f64> = (0..n)
            .map(|i| ((i as f64 + 1.0) * 12.9898 + seed as f64 * 78.233).sin() * 0.9)
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    };
    inputs.push(uniform(&[2, 2, 6, 5]));
    inputs.push(uniform(&[2, 3, 3, 3]));
    inputs.push(uniform(&[2, 4, 2, 2]));
    let names = [
        ("lateral_convs.0.conv.weight", vec![2, 2, 1, 1]),
        ("lateral_convs.0.conv.bias", vec![2]),
        ("lateral_convs.1.conv.weight", vec![2, 3, 1, 1]),
        ("lateral_convs.1.conv.bias", vec![2]),
        ("lateral_convs.2.conv.weight", vec![2, 4, 1, 1]),
        ("lateral_convs.2.conv.bias", vec![2]),
        ("fpn_convs.0.conv.weight", vec![2, 2, 3, 3]),
        ("fpn_convs.0.conv.bias", vec![2]),
        ("fpn_convs.1.conv.weight", vec![2, 2, 3, 3]),
        ("fpn_convs.1.conv.bias", vec![2]),
        ("fpn_convs.2.conv.weight", vec![2, 2, 3, 3]),
        ("fpn_convs.2.conv.bias", vec![2]),
    ];
    for (_, shape) in &names {
        inputs.push(uniform(shape));
    }
    let cfg = FpnConfig {
        in_channels: vec![2, 3, 4],
        out_channels: 2,
        extra_max_pool: true,
        layout: FpnLayout::Mmdet,
    };
    let f = |xs: &[Tensor]| {
        let map: HashMap<String, Tensor> = names
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.to_string(), xs[3 + i].clone()))
            .collect();
        let vb = VarBuilder::from_tensors(map, DType::F64, &Device::Cpu);
        let fpn = Fpn::new(&cfg, &vb).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let outs = fpn
            .forward(&xs[..3])
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let flat: Vec<Tensor> = outs
            .iter()
            .map(|t| t.flatten_all())
            .collect::<candle_core::Result<_>>()?;
        Tensor::cat(&flat, 0)
    };
    let report = check_gradients(f, &inputs, &GradCheck::default()).unwrap();
    assert!(report.passed(), "{report}");
    assert!(report.inputs.iter().all(|r| r.has_gradient), "{report}");
}

#[test]
fn fpn_names_missing_weights_and_wrong_inputs() {
    let vb = VarBuilder::from_tensors(HashMap::new(), DType::F32, &Device::Cpu);
    let cfg = FpnConfig::mask_rcnn(&FPN_IN, FpnLayout::Torchvision);
    let err = Fpn::new(&cfg, &vb).unwrap_err();
    assert!(err.to_string().contains("inner_blocks.0.0.weight"), "{err}");
    let err = Fpn::new(&FpnConfig::mask_rcnn(&[], FpnLayout::Mmdet), &vb).unwrap_err();
    assert!(err.to_string().contains("in_channels"), "{err}");
    let varmap = candle_nn::VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let fpn = Fpn::new(
        &FpnConfig::mask_rcnn(&[4, 8], FpnLayout::Mmdet).with_out_channels(4),
        &vb,
    )
    .unwrap();
    let mut keys: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys[0], "fpn_convs.0.conv.bias");
    assert_eq!(keys[4], "lateral_convs.0.conv.bias");
    let wrong = Tensor::zeros((1, 5, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let right = Tensor::zeros((1, 8, 2, 2), DType::F32, &Device::Cpu).unwrap();
    let err = fpn.forward(&[wrong, right.clone()]).unwrap_err();
    assert!(
        err.to_string().contains("[N, 4, H, W] at level 0")
            && err.to_string().contains("[1, 5, 4, 4]"),
        "{err}"
    );
    let err = fpn.forward(&[right]).unwrap_err();
    assert!(err.to_string().contains("2 levels"), "{err}");
}

fn rpn_head(golden: &Golden, layout: RpnLayout) -> RpnHead {
    let rename = |k: &str| match layout {
        RpnLayout::Torchvision => k.to_string(),
        RpnLayout::Mmdet => k
            .replace("conv.0.0.", "rpn_conv.")
            .replace("cls_logits.", "rpn_cls.")
            .replace("bbox_pred.", "rpn_reg."),
    };
    let vb = VarBuilder::from_tensors(weights(golden, "head.", &rename), DType::F32, &Device::Cpu);
    RpnHead::new(8, 3, layout, &vb).unwrap()
}

#[test]
fn rpn_head_matches_torchvision_in_both_key_layouts() {
    let golden = Golden::load("rpn");
    let features: Vec<Tensor> = (0..5)
        .map(|l| golden.get(&format!("features.{l}")))
        .collect();
    for layout in [RpnLayout::Torchvision, RpnLayout::Mmdet] {
        let out = rpn_head(&golden, layout).forward(&features).unwrap();
        for level in 0..5 {
            for (name, ours) in [
                ("objectness", &out.objectness[level]),
                ("deltas", &out.deltas[level]),
            ] {
                let want = golden.get(&format!("{name}.{level}"));
                let err = relative_error(ours, &want);
                assert!(err <= 1e-5, "{layout:?} {name} level {level}: {err:e}");
            }
        }
    }
}

/// Proposals of `flavor` on the golden head outputs of rpn.safetensors.
fn golden_proposals(golden: &Golden, flavor: Flavor) -> Vec<rtb_detection::rpn::Proposals> {
    let objectness: Vec<Tensor> = (0..5)
        .map(|l| golden.get(&format!("objectness.{l}")))
        .collect();
    let deltas: Vec<Tensor> = (0..5).map(|l| golden.get(&format!("deltas.{l}"))).collect();
    let grids: Vec<(usize, usize)> = objectness
        .iter()
        .map(|o| (o.dim(2).unwrap(), o.dim(3).unwrap()))
        .collect();
    let anchors = AnchorGenerator::mask_rcnn(flavor)
        .anchors(&grids, (128, 192), &Device::Cpu)
        .unwrap();
    let sizes: Vec<Vec<i64>> = golden.get("image_sizes").to_vec2().unwrap();
    let sizes: Vec<(usize, usize)> = sizes
        .iter()
        .map(|s| (s[0] as usize, s[1] as usize))
        .collect();
    filter_proposals(
        &objectness,
        &deltas,
        &anchors,
        &sizes,
        &BoxCoder::rpn(flavor),
        &ProposalConfig::test(flavor),
    )
    .unwrap()
}

#[test]
fn proposals_match_torchvision_filter_proposals() {
    let golden = Golden::load("rpn");
    let proposals = golden_proposals(&golden, Flavor::Torchvision);
    for (i, p) in proposals.iter().enumerate() {
        let want_boxes = golden.get(&format!("proposals.{i}"));
        let want_scores = golden.get(&format!("scores.{i}"));
        assert_eq!(
            p.boxes.dims(),
            want_boxes.dims(),
            "image {i}: proposal count"
        );
        assert_close(
            &format!("image {i} boxes"),
            &p.boxes,
            &want_boxes,
            1e-5,
            1e-4,
        );
        assert_close(
            &format!("image {i} scores"),
            &p.scores,
            &want_scores,
            1e-6,
            1e-7,
        );
    }
    // The flattening used by the losses has the anchors' order.
    let objectness: Vec<Tensor> = (0..5)
        .map(|l| golden.get(&format!("objectness.{l}")))
        .collect();
    let deltas: Vec<Tensor> = (0..5).map(|l| golden.get(&format!("deltas.{l}"))).collect();
    let (flat_obj, flat_deltas) = flatten_levels(&objectness, &deltas).unwrap();
    let total: usize = objectness.iter().map(|o| o.elem_count() / 2).sum();
    assert_eq!(flat_obj.dims(), &[2, total]);
    assert_eq!(flat_deltas.dims(), &[2, total, 4]);
}

/// mmdet 2.x's `RPNHead._get_bboxes`, reimplemented from its source in make_golden.py with
/// torchvision's batched_nms standing in for mmcv's.
#[test]
fn proposals_match_mmdet_get_bboxes() {
    let golden = Golden::load("rpn");
    let mmdet = Golden::load("rpn_mmdet");
    let proposals = golden_proposals(&golden, Flavor::Mmdet);
    for (i, p) in proposals.iter().enumerate() {
        let want_boxes = mmdet.get(&format!("proposals.{i}"));
        let want_scores = mmdet.get(&format!("scores.{i}"));
        assert_eq!(
            p.boxes.dims(),
            want_boxes.dims(),
            "image {i}: proposal count"
        );
        assert_close(
            &format!("image {i} boxes"),
            &p.boxes,
            &want_boxes,
            1e-5,
            1e-4,
        );
        assert_close(
            &format!("image {i} scores"),
            &p.scores,
            &want_scores,
            1e-6,
            1e-7,
        );
    }
}

/// One image, two levels with one anchor per cell: level 0 a 1×3 grid, level 1 a 1×2 grid.
fn hand_case(
    level0_logits: &[f32],
    level1_logits: &[f32],
    anchors0: &[[f32; 4]],
    anchors1: &[[f32; 4]],
) -> (Vec<Tensor>, Vec<Tensor>, Vec<Tensor>) {
    let dev = Device::Cpu;
    let objectness = vec![
        Tensor::from_slice(level0_logits, (1, 1, 1, 3), &dev).unwrap(),
        Tensor::from_slice(level1_logits, (1, 1, 1, 2), &dev).unwrap(),
    ];
    let deltas = vec![
        Tensor::zeros((1, 4, 1, 3), DType::F32, &dev).unwrap(),
        Tensor::zeros((1, 4, 1, 2), DType::F32, &dev).unwrap(),
    ];
    let flat = |a: &[[f32; 4]]| {
        Tensor::from_vec(
            a.iter().flatten().copied().collect::<Vec<_>>(),
            (a.len(), 4),
            &dev,
        )
        .unwrap()
    };
    (objectness, deltas, vec![flat(anchors0), flat(anchors1)])
}

fn run(
    cfg: &ProposalConfig,
    case: &(Vec<Tensor>, Vec<Tensor>, Vec<Tensor>),
    size: (usize, usize),
) -> (Vec<[f32; 4]>, Vec<f32>, Vec<u32>) {
    let p = filter_proposals(
        &case.0,
        &case.1,
        &case.2,
        &[size],
        &BoxCoder::rpn(Flavor::Mmdet),
        cfg,
    )
    .unwrap()
    .remove(0);
    let boxes: Vec<Vec<f32>> = p.boxes.to_vec2().unwrap();
    (
        boxes.iter().map(|b| [b[0], b[1], b[2], b[3]]).collect(),
        p.scores.to_vec1().unwrap(),
        p.levels.to_vec1().unwrap(),
    )
}

#[test]
fn mmdet_proposals_on_hand_cases() {
    let mmdet = ProposalConfig::test(Flavor::Mmdet);
    // Level 0: boxes A and B overlap (IoU 0.9), C is a zero-width box. Level 1: D equals A.
    let a = [0.0, 0.0, 10.0, 10.0];
    let b = [0.0, 0.0, 10.0, 9.0];
    let c = [5.0, 5.0, 5.0, 8.0];
    let case = hand_case(
        &[2.0, 1.0, 0.5],
        &[1.5, -1.0],
        &[a, b, c],
        &[a, [20.0, 20.0, 40.0, 60.0]],
    );
    let (boxes, scores, levels) = run(&mmdet, &case, (50, 30));
    // B is suppressed by A (same level), D survives beside A (other level), C is kept by
    // mmdet (min_bbox_size 0), the last box is clipped to the image (x ≤ 30, y ≤ 50).
    assert_eq!(boxes, vec![a, a, c, [20.0, 20.0, 30.0, 50.0]]);
    assert_eq!(levels, vec![0, 1, 0, 1]);
    let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
    assert_eq!(scores, vec![sig(2.0), sig(1.5), sig(0.5), sig(-1.0)]);
    // torchvision's settings drop the zero-width box.
    let tv = ProposalConfig::test(Flavor::Torchvision);
    let (boxes, _, _) = run(&tv, &case, (50, 30));
    assert_eq!(boxes, vec![a, a, [20.0, 20.0, 30.0, 50.0]]);
    // Pre-NMS top-1 per level: A from level 0 and D from level 1 only.
    let top1 = ProposalConfig {
        pre_nms_top_n: 1,
        ..mmdet
    };
    let (boxes, _, levels) = run(&top1, &case, (50, 30));
    assert_eq!(boxes, vec![a, a]);
    assert_eq!(levels, vec![0, 1]);
    // Post-NMS top-2 over the image: the two best survivors.
    let post2 = ProposalConfig {
        post_nms_top_n: 2,
        ..mmdet
    };
    let (_, scores, _) = run(&post2, &case, (50, 30));
    assert_eq!(scores, vec![sig(2.0), sig(1.5)]);
    // With a threshold above their IoU (0.9), B survives beside A.
    let loose = ProposalConfig {
        nms_threshold: 0.95,
        ..mmdet
    };
    let (boxes, _, _) = run(&loose, &case, (50, 30));
    assert_eq!(boxes.len(), 5);
}

#[test]
fn proposal_layer_names_bad_shapes() {
    let case = hand_case(
        &[0.0; 3],
        &[0.0; 2],
        &[[0.0, 0.0, 1.0, 1.0]; 3],
        &[[0.0, 0.0, 1.0, 1.0]; 2],
    );
    let cfg = ProposalConfig::test(Flavor::Mmdet);
    let coder = BoxCoder::rpn(Flavor::Mmdet);
    let err =
        filter_proposals(&case.0, &case.1, &case.2[..1], &[(4, 4)], &coder, &cfg).unwrap_err();
    assert!(err.to_string().contains("anchors"), "{err}");
    let err =
        filter_proposals(&case.0, &case.1, &case.2, &[(4, 4), (4, 4)], &coder, &cfg).unwrap_err();
    assert!(err.to_string().contains("2 images"), "{err}");
    let swapped = vec![case.2[1].clone(), case.2[0].clone()];
    let err = filter_proposals(&case.0, &case.1, &swapped, &[(4, 4)], &coder, &cfg).unwrap_err();
    assert!(err.to_string().contains("[3, 4] at level 0"), "{err}");
    let varmap = candle_nn::VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let head = RpnHead::new(4, 3, RpnLayout::Mmdet, &vb).unwrap();
    let mut keys: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "rpn_cls.bias",
            "rpn_cls.weight",
            "rpn_conv.bias",
            "rpn_conv.weight",
            "rpn_reg.bias",
            "rpn_reg.weight"
        ]
    );
    let err = head
        .forward(&[Tensor::zeros((1, 5, 2, 2), DType::F32, &Device::Cpu).unwrap()])
        .unwrap_err();
    assert!(err.to_string().contains("[N, 4, H, W] at level 0"), "{err}");
}

/// The whole RPN at test time (head, anchors, proposals) equals torchvision's
/// `RegionProposalNetwork` forward in eval mode, which the fixture script checked against
/// `filter_proposals`; the mmdet flavor equals mmdet's `_get_bboxes` on the same weights.
#[test]
fn rpn_forward_matches_both_references_end_to_end() {
    let golden = Golden::load("rpn");
    let mmdet = Golden::load("rpn_mmdet");
    let features: Vec<Tensor> = (0..5)
        .map(|l| golden.get(&format!("features.{l}")))
        .collect();
    let sizes = [(120, 180), (128, 150)];
    for (flavor, want, rename) in [
        (Flavor::Torchvision, &golden, None),
        (Flavor::Mmdet, &mmdet, Some(RpnLayout::Mmdet)),
    ] {
        let map = weights(&golden, "head.", &|k: &str| match rename {
            Some(_) => k
                .replace("conv.0.0.", "rpn_conv.")
                .replace("cls_logits.", "rpn_cls.")
                .replace("bbox_pred.", "rpn_reg."),
            None => k.to_string(),
        });
        let vb = VarBuilder::from_tensors(map, DType::F32, &Device::Cpu);
        let rpn = Rpn::mask_rcnn(flavor, 8, &vb).unwrap();
        let out = rpn.forward(&features, &sizes, (128, 192), false).unwrap();
        assert_eq!(out.anchors.len(), 5);
        for (i, p) in out.proposals.iter().enumerate() {
            let want_boxes = want.get(&format!("proposals.{i}"));
            assert_eq!(p.boxes.dims(), want_boxes.dims(), "{flavor:?} image {i}");
            // The head's outputs differ from torch's by float rounding (≈3e-7 relative),
            // which the decoding amplifies by exp(dw)·w (anchors up to 512 pixels).
            assert_close(
                &format!("{flavor:?} image {i}"),
                &p.boxes,
                &want_boxes,
                1e-5,
                2e-3,
            );
        }
    }
}
