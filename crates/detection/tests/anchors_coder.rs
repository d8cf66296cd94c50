//! Anchors and box coding against torchvision's AnchorGenerator and BoxCoder and mmdet 2.x's
//! AnchorGenerator (reimplemented from its source in tests/golden/make_golden.py).

mod support;

use candle_core::{DType, Device, Tensor};
use rtb_detection::Flavor;
use rtb_detection::anchors::AnchorGenerator;
use rtb_detection::box_coder::{BoxCoder, WeightedBoxCoder};
use support::{Golden, assert_close};

fn grids_of(h: usize, w: usize) -> Vec<(usize, usize)> {
    let mut grids: Vec<(usize, usize)> = [4, 8, 16, 32].iter().map(|s| (h / s, w / s)).collect();
    let (h5, w5) = grids[3];
    grids.push((h5.div_ceil(2), w5.div_ceil(2)));
    grids
}

#[test]
fn anchors_equal_both_references_bit_for_bit() {
    let golden = Golden::load("anchors");
    let (h, w) = (96, 160);
    for (flavor, prefix) in [(Flavor::Torchvision, "tv"), (Flavor::Mmdet, "mmdet")] {
        let generator = AnchorGenerator::mask_rcnn(flavor);
        let anchors = generator
            .anchors(&grids_of(h, w), (h, w), &Device::Cpu)
            .unwrap();
        assert_eq!(anchors.len(), 5);
        for (level, ours) in anchors.iter().enumerate() {
            let want = golden.get(&format!("{prefix}.{level}"));
            assert_close(&format!("{prefix} level {level}"), ours, &want, 0.0, 0.0);
        }
    }
}

#[test]
fn torchvision_rounds_base_anchors_and_mmdet_does_not() {
    let tv = AnchorGenerator::mask_rcnn(Flavor::Torchvision)
        .base_anchors(0)
        .unwrap();
    let mm = AnchorGenerator::mask_rcnn(Flavor::Mmdet)
        .base_anchors(0)
        .unwrap();
    // Ratio 0.5 (h/w) at side 32: w = 32·√2, h = 32/√2.
    assert_eq!(tv[0], [-23.0, -11.0, 23.0, 11.0]);
    assert!((mm[0][0] + 22.627_417).abs() < 1e-5 && (mm[0][1] + 11.313_708).abs() < 1e-5);
    assert_eq!(tv[1], [-16.0, -16.0, 16.0, 16.0]);
    assert_eq!(mm[1], [-16.0, -16.0, 16.0, 16.0]);
    // torchvision derives P6's stride from the grid: 96 // 2 and 160 // 3.
    let tv_gen = AnchorGenerator::mask_rcnn(Flavor::Torchvision);
    assert_eq!(tv_gen.level_stride(4, (2, 3), (96, 160)).unwrap(), (48, 53));
    let mm_gen = AnchorGenerator::mask_rcnn(Flavor::Mmdet);
    assert_eq!(mm_gen.level_stride(4, (2, 3), (96, 160)).unwrap(), (64, 64));
}

#[test]
fn anchor_generator_rejects_bad_configuration() {
    let err = AnchorGenerator::new(Flavor::Mmdet, &[4, 0], &[8.0], &[1.0]).unwrap_err();
    assert!(err.to_string().contains("strides"), "{err}");
    let err = AnchorGenerator::new(Flavor::Mmdet, &[4], &[], &[1.0]).unwrap_err();
    assert!(err.to_string().contains("scales"), "{err}");
    let err = AnchorGenerator::new(Flavor::Mmdet, &[4], &[8.0], &[-1.0]).unwrap_err();
    assert!(err.to_string().contains("ratios"), "{err}");
    let generator = AnchorGenerator::mask_rcnn(Flavor::Mmdet);
    let err = generator
        .anchors(&[(2, 2)], (8, 8), &Device::Cpu)
        .unwrap_err();
    assert!(
        err.to_string().contains("grids") && err.to_string().contains('5'),
        "{err}"
    );
    let err = AnchorGenerator::mask_rcnn(Flavor::Torchvision)
        .level_stride(0, (0, 3), (8, 8))
        .unwrap_err();
    assert!(err.to_string().contains("grid"), "{err}");
}

#[test]
fn torchvision_box_coder_matches_torchvision() {
    let golden = Golden::load("box_coder");
    for (name, coder) in [
        ("rpn", WeightedBoxCoder::rpn()),
        ("roi", WeightedBoxCoder::roi_heads()),
    ] {
        let proposals = golden.get(&format!("{name}.proposals"));
        let gt = golden.get(&format!("{name}.gt"));
        let targets = coder.encode(&proposals, &gt).unwrap();
        assert_close(
            &format!("{name} encode"),
            &targets,
            &golden.get(&format!("{name}.targets")),
            1e-5,
            1e-5,
        );
        // Class-specific deltas (m = 2), some beyond the clamp in both directions.
        let decoded = coder
            .decode(&proposals, &golden.get(&format!("{name}.deltas")))
            .unwrap();
        assert_close(
            &format!("{name} decode"),
            &decoded,
            &golden.get(&format!("{name}.decoded")),
            1e-5,
            1e-3,
        );
    }
}

#[test]
fn both_coders_round_trip_and_differ_only_in_the_lower_clamp() {
    let dev = Device::Cpu;
    let priors = Tensor::new(&[[0f64, 0., 10., 20.], [5., 5., 9., 7.]], &dev).unwrap();
    let gt = Tensor::new(&[[1f64, -2., 13., 25.], [4., 4., 12., 8.]], &dev).unwrap();
    for flavor in [Flavor::Mmdet, Flavor::Torchvision] {
        for coder in [BoxCoder::rpn(flavor), BoxCoder::roi_heads(flavor)] {
            let deltas = coder.encode(&priors, &gt).unwrap();
            let back = coder.decode(&priors, &deltas, None).unwrap();
            assert_close(&format!("{flavor:?} round trip"), &back, &gt, 1e-12, 1e-12);
        }
    }
    // dw = −6: mmdet clamps to −log(1000/16), torchvision does not.
    let deltas = Tensor::new(&[[0f64, 0., -6., 0.]], &dev).unwrap();
    let prior = priors.narrow(0, 0, 1).unwrap();
    let mm = BoxCoder::rpn(Flavor::Mmdet)
        .decode(&prior, &deltas, None)
        .unwrap();
    let tv = BoxCoder::rpn(Flavor::Torchvision)
        .decode(&prior, &deltas, None)
        .unwrap();
    let width = |t: &Tensor| {
        let v: Vec<Vec<f64>> = t.to_vec2().unwrap();
        v[0][2] - v[0][0]
    };
    assert!((width(&mm) - 10.0 * 16.0 / 1000.0).abs() < 1e-12);
    assert!((width(&tv) - 10.0 * (-6f64).exp()).abs() < 1e-12);
    // Clipping to (H, W) = (15, 8) in both flavors.
    let big = Tensor::new(&[[0f64, 0., 2., 2.]], &dev).unwrap();
    for flavor in [Flavor::Mmdet, Flavor::Torchvision] {
        let out = BoxCoder::rpn(flavor)
            .decode(&prior, &big, Some((15, 8)))
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        assert_eq!(out[0][2], 8.0);
        assert_eq!(out[0][3], 15.0);
    }
    let err = WeightedBoxCoder::rpn()
        .decode(&prior, &Tensor::zeros((2, 4), DType::F64, &dev).unwrap())
        .unwrap_err();
    assert!(
        err.to_string().contains("deltas") && err.to_string().contains("[2, 4]"),
        "{err}"
    );
}
