//! The RPN's training losses against torchvision's `RegionProposalNetwork` (matching,
//! targets, `compute_loss` and its gradients) on torchvision's sampled anchors, the mmdet
//! flavor's L1 box loss on the same samples, and the seeded entry point's invariants.

mod support;

use candle_core::{DType, Device, Tensor, Var};
use rtb_detection::Flavor;
use rtb_detection::anchors::AnchorGenerator;
use rtb_detection::matcher::Match;
use rtb_detection::rpn::{
    RpnTargets, flatten_levels, match_anchors, rpn_loss, rpn_targets, rpn_targets_sampled,
};
use rtb_detection::sampler::{Sample, SamplerConfig};
use support::{Golden, assert_close};

fn indices(t: &Tensor) -> Vec<usize> {
    t.to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|i| i as usize)
        .collect()
}

fn scalar(t: &Tensor) -> f64 {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0] as f64
}

/// Torchvision's targets of both images fed through `rpn_targets_sampled` of `flavor`.
fn golden_targets(golden: &Golden, flavor: Flavor) -> Vec<RpnTargets> {
    let anchors = golden.get("anchors");
    (0..2)
        .map(|i| {
            let gt = golden.get(&format!("gt.{i}"));
            let matches = match_anchors(Flavor::Torchvision, &anchors, &gt).unwrap();
            let want: Vec<i64> = golden.get(&format!("matches.{i}")).to_vec1().unwrap();
            let got: Vec<i64> = matches.iter().map(|m| m.to_torchvision()).collect();
            assert_eq!(got, want, "image {i}: matches differ from torchvision's");
            let picked = Sample {
                positives: indices(&golden.get(&format!("pos.{i}"))),
                negatives: indices(&golden.get(&format!("neg.{i}"))),
            };
            rpn_targets_sampled(flavor, &anchors, &gt, &matches, &picked).unwrap()
        })
        .collect()
}

#[test]
fn anchors_equal_torchvision() {
    let golden = Golden::load("rpn_loss");
    let grids = [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)];
    let levels = AnchorGenerator::mask_rcnn(Flavor::Torchvision)
        .anchors(&grids, (64, 96), &Device::Cpu)
        .unwrap();
    let anchors = Tensor::cat(&levels, 0).unwrap();
    assert_close("anchors", &anchors, &golden.get("anchors"), 0.0, 1e-4);
}

#[test]
fn rpn_losses_and_gradients_match_torchvision() {
    let golden = Golden::load("rpn_loss");
    let targets = golden_targets(&golden, Flavor::Torchvision);
    for (i, t) in targets.iter().enumerate() {
        assert_close(
            &format!("targets.{i}"),
            &t.regression_targets,
            &golden.get(&format!("targets.{i}")),
            1e-5,
            1e-5,
        );
    }
    let objectness: Vec<Var> = (0..5)
        .map(|l| Var::from_tensor(&golden.get(&format!("objectness.{l}"))).unwrap())
        .collect();
    let deltas: Vec<Var> = (0..5)
        .map(|l| Var::from_tensor(&golden.get(&format!("deltas.{l}"))).unwrap())
        .collect();
    let obj: Vec<Tensor> = objectness.iter().map(|v| v.as_tensor().clone()).collect();
    let del: Vec<Tensor> = deltas.iter().map(|v| v.as_tensor().clone()).collect();
    let (flat_obj, flat_del) = flatten_levels(&obj, &del).unwrap();

    let (o, b) = rpn_loss(Flavor::Torchvision, &flat_obj, &flat_del, &targets).unwrap();
    let want_o = scalar(&golden.get("loss.objectness"));
    let want_b = scalar(&golden.get("loss.box"));
    assert!(
        (scalar(&o) - want_o).abs() <= 1e-5 * want_o.abs(),
        "objectness {} vs {want_o}",
        scalar(&o)
    );
    assert!(
        (scalar(&b) - want_b).abs() <= 1e-5 * want_b.abs(),
        "box {} vs {want_b}",
        scalar(&b)
    );
    let grads = (o + b).unwrap().backward().unwrap();
    for l in 0..5 {
        let g = grads.get(objectness[l].as_tensor()).unwrap();
        assert_close(
            &format!("grad objectness {l}"),
            g,
            &golden.get(&format!("grad.objectness.{l}")),
            1e-4,
            1e-7,
        );
        let g = grads.get(deltas[l].as_tensor()).unwrap();
        assert_close(
            &format!("grad deltas {l}"),
            g,
            &golden.get(&format!("grad.deltas.{l}")),
            1e-4,
            1e-7,
        );
    }

    let mmdet = golden_targets(&golden, Flavor::Mmdet);
    let (o_m, b_m) = rpn_loss(Flavor::Mmdet, &flat_obj, &flat_del, &mmdet).unwrap();
    assert!((scalar(&o_m) - want_o).abs() <= 1e-5 * want_o.abs());
    let want_m = scalar(&golden.get("loss.box_mmdet"));
    assert!(
        (scalar(&b_m) - want_m).abs() <= 1e-5 * want_m.abs(),
        "mmdet box {} vs {want_m}",
        scalar(&b_m)
    );
}

#[test]
fn seeded_targets_sample_256_with_at_most_half_positive_and_empty_gt_is_all_negative() {
    let golden = Golden::load("rpn_loss");
    let anchors = golden.get("anchors");
    for flavor in [Flavor::Mmdet, Flavor::Torchvision] {
        let t = rpn_targets(
            flavor,
            &anchors,
            &golden.get("gt.0"),
            &SamplerConfig::rpn(),
            3,
        )
        .unwrap();
        assert!(t.positives.len() <= 128 && !t.positives.is_empty());
        assert_eq!(t.positives.len() + t.negatives.len(), 256);
        assert_eq!(t.regression_targets.dims(), &[t.positives.len(), 4]);
        let again = rpn_targets(
            flavor,
            &anchors,
            &golden.get("gt.0"),
            &SamplerConfig::rpn(),
            3,
        )
        .unwrap();
        assert_eq!(
            (t.positives, t.negatives),
            (again.positives, again.negatives)
        );
        let empty = rpn_targets(
            flavor,
            &anchors,
            &golden.get("gt.1"),
            &SamplerConfig::rpn(),
            3,
        )
        .unwrap();
        assert!(empty.positives.is_empty());
        assert_eq!(empty.negatives.len(), 256);
    }
}

#[test]
fn bad_samples_and_shapes_are_named_errors() {
    let golden = Golden::load("rpn_loss");
    let anchors = golden.get("anchors");
    let gt = golden.get("gt.0");
    let matches = match_anchors(Flavor::Mmdet, &anchors, &gt).unwrap();
    let neg = matches.iter().position(|m| *m == Match::Negative).unwrap();
    let bad = Sample {
        positives: vec![neg],
        negatives: vec![],
    };
    let err = rpn_targets_sampled(Flavor::Mmdet, &anchors, &gt, &matches, &bad).unwrap_err();
    assert!(err.to_string().contains("picked.positives"), "{err}");
    let obj = Tensor::zeros((1, 10), DType::F32, &Device::Cpu).unwrap();
    let del = Tensor::zeros((1, 9, 4), DType::F32, &Device::Cpu).unwrap();
    let err = rpn_loss(Flavor::Mmdet, &obj, &del, &[]).unwrap_err();
    assert!(err.to_string().contains("deltas"), "{err}");
    let del = Tensor::zeros((1, 10, 4), DType::F32, &Device::Cpu).unwrap();
    let none = RpnTargets {
        positives: vec![],
        negatives: vec![],
        regression_targets: Tensor::zeros((0, 4), DType::F32, &Device::Cpu).unwrap(),
    };
    let err = rpn_loss(Flavor::Mmdet, &obj, &del, &[none]).unwrap_err();
    assert!(err.to_string().contains("no anchor"), "{err}");
}
