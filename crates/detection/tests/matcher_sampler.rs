//! Matching against torchvision's Matcher and mmdet 2.x's MaxIoUAssigner (reimplemented from
//! its source in tests/golden/make_golden.py), and the seeded samplers.

mod support;

use candle_core::{DType, Device, Tensor};
use rtb_detection::Flavor;
use rtb_detection::matcher::{Match, Matcher};
use rtb_detection::sampler::{SamplerConfig, add_gt_as_proposals, sample};
use support::Golden;

#[test]
fn matchers_equal_both_references() {
    let golden = Golden::load("matcher");
    for case in ["random", "ties", "single_gt"] {
        let iou = golden.get(&format!("{case}.iou"));
        for (flavor, key) in [(Flavor::Torchvision, "tv"), (Flavor::Mmdet, "mmdet")] {
            let matches = Matcher::rpn(flavor).match_iou(&iou).unwrap();
            let ours: Vec<i64> = matches
                .iter()
                .map(|m| match flavor {
                    Flavor::Torchvision => m.to_torchvision(),
                    Flavor::Mmdet => m.to_mmdet(),
                })
                .collect();
            let want: Vec<i64> = golden.get(&format!("{case}.{key}")).to_vec1().unwrap();
            assert_eq!(ours, want, "{case} {key}");
        }
    }
}

#[test]
fn low_quality_rules_differ_as_documented() {
    let iou = Tensor::new(
        &[
            [0.9f32, 0.6, 0.6, 0.1, 0.0],
            [0.8, 0.5, 0.1, 0.65, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.2],
        ],
        &Device::Cpu,
    )
    .unwrap();
    let tv = Matcher::rpn(Flavor::Torchvision).match_iou(&iou).unwrap();
    let mm = Matcher::rpn(Flavor::Mmdet).match_iou(&iou).unwrap();
    // Prediction 0 is the best of ground truths 0 and 1. torchvision gives it its own best
    // (0, IoU 0.9); mmdet gives it to each ground truth in turn, so the last one (1) wins.
    assert_eq!(tv[0], Match::Gt(0));
    assert_eq!(mm[0], Match::Gt(1));
    // Ground truth 2's best IoU is 0.2: torchvision matches prediction 4 to it, mmdet
    // (min_pos_iou 0.3) leaves it negative.
    assert_eq!(tv[4], Match::Gt(2));
    assert_eq!(mm[4], Match::Negative);
    // Between 0.3 and 0.7 and nobody's best: ignored in both.
    assert_eq!(tv[3], Match::Ignored);
    assert_eq!(mm[3], Match::Ignored);
    assert_eq!(tv[1], Match::Ignored);
    // Without ground truth everything is negative.
    let empty = Tensor::zeros((0, 4), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(
        Matcher::rpn(Flavor::Mmdet).match_iou(&empty).unwrap(),
        vec![Match::Negative; 4]
    );
    let err = Matcher::rpn(Flavor::Mmdet)
        .match_iou(&Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap())
        .unwrap_err();
    assert!(
        err.to_string().contains("iou") && err.to_string().contains("[3]"),
        "{err}"
    );
    let err = Matcher::new(Flavor::Torchvision, 0.3, 0.7, true).unwrap_err();
    assert!(err.to_string().contains("low_threshold"), "{err}");
    // The RoI heads' matchers have no ignored band. mmdet's low-quality step (min_pos_iou
    // 0.5) moves prediction 0 to ground truth 1, whose best it is; torchvision has none.
    let roi = Matcher::roi_heads(Flavor::Torchvision)
        .match_iou(&iou)
        .unwrap();
    assert_eq!(
        roi,
        vec![
            Match::Gt(0),
            Match::Gt(0),
            Match::Gt(0),
            Match::Gt(1),
            Match::Negative
        ]
    );
    let roi = Matcher::roi_heads(Flavor::Mmdet).match_iou(&iou).unwrap();
    assert_eq!(
        roi,
        vec![
            Match::Gt(1),
            Match::Gt(0),
            Match::Gt(0),
            Match::Gt(1),
            Match::Negative
        ]
    );
}

fn matches_with(pos: usize, neg: usize, ignored: usize) -> Vec<Match> {
    // Interleaved so that picks are spread over the index range.
    let mut out = Vec::new();
    let (mut p, mut n, mut i) = (pos, neg, ignored);
    while p + n + i > 0 {
        if p > 0 {
            out.push(Match::Gt(p % 3));
            p -= 1;
        }
        if n > 0 {
            out.push(Match::Negative);
            n -= 1;
        }
        if i > 0 {
            out.push(Match::Ignored);
            i -= 1;
        }
    }
    out
}

#[test]
fn sampler_counts_follow_both_references() {
    let cfg = SamplerConfig::rpn();
    // Plenty of both: 128 + 128.
    let s = sample(&matches_with(500, 1000, 50), &cfg, 1);
    assert_eq!((s.positives.len(), s.negatives.len()), (128, 128));
    // Few positives: all of them, negatives fill up to 256.
    let s = sample(&matches_with(20, 1000, 50), &cfg, 1);
    assert_eq!((s.positives.len(), s.negatives.len()), (20, 236));
    // Few of both: everything there is.
    let s = sample(&matches_with(3, 7, 50), &cfg, 1);
    assert_eq!((s.positives.len(), s.negatives.len()), (3, 7));
    // mmdet's neg_pos_ub bounds the negatives per positive (max(1, positives)).
    let bounded = cfg.with_neg_pos_ub(3.0);
    let s = sample(&matches_with(20, 1000, 0), &bounded, 1);
    assert_eq!((s.positives.len(), s.negatives.len()), (20, 60));
    let s = sample(&matches_with(0, 1000, 0), &bounded, 1);
    assert_eq!((s.positives.len(), s.negatives.len()), (0, 3));
    // The RoI sampler: a quarter of 512.
    let s = sample(&matches_with(500, 1000, 0), &SamplerConfig::roi_heads(), 1);
    assert_eq!((s.positives.len(), s.negatives.len()), (128, 384));
    let err = SamplerConfig::new(10, 1.5).unwrap_err();
    assert!(err.to_string().contains("pos_fraction"), "{err}");
}

#[test]
fn sampler_is_deterministic_sorted_and_picks_the_right_kinds() {
    let matches = matches_with(300, 900, 100);
    let cfg = SamplerConfig::rpn();
    let a = sample(&matches, &cfg, 42);
    assert_eq!(a, sample(&matches, &cfg, 42), "same seed, same picks");
    assert_ne!(a, sample(&matches, &cfg, 43), "another seed, other picks");
    for (list, want_positive) in [(&a.positives, true), (&a.negatives, false)] {
        assert!(
            list.windows(2).all(|w| w[0] < w[1]),
            "ascending and distinct"
        );
        for &i in list {
            assert_eq!(matches!(matches[i], Match::Gt(_)), want_positive);
            assert_ne!(matches[i], Match::Ignored);
        }
    }
    // Uniform: over many seeds every positive is picked about 128/300 of the time.
    let mut counts = vec![0usize; matches.len()];
    for seed in 0..300 {
        for i in sample(&matches, &cfg, seed).positives {
            counts[i] += 1;
        }
    }
    let positives: Vec<usize> = (0..matches.len())
        .filter(|&i| matches!(matches[i], Match::Gt(_)))
        .collect();
    let expected = 300.0 * 128.0 / 300.0;
    for &i in &positives {
        let c = counts[i] as f64;
        assert!(
            (c - expected).abs() < 6.0 * expected.sqrt(),
            "index {i}: {c} vs {expected}"
        );
    }
}

#[test]
fn gt_as_proposals_come_first_as_their_own_matches() {
    let matches = vec![Match::Negative, Match::Gt(1), Match::Ignored];
    let with_gt = add_gt_as_proposals(&matches, 2);
    assert_eq!(
        with_gt,
        vec![
            Match::Gt(0),
            Match::Gt(1),
            Match::Negative,
            Match::Gt(1),
            Match::Ignored
        ]
    );
    let s = sample(&with_gt, &SamplerConfig::roi_heads(), 0);
    assert_eq!(s.positives, vec![0, 1, 3]);
    assert_eq!(s.negatives, vec![2]);
}
