//! metrics.json against a hand-computed example: a stub classifier that is right exactly on
//! images that are not blanked, and a released-layout CIFAR-10-C folder written here in which
//! each corruption × severity blanks a known number of images.

use std::sync::Arc;

use rtb_cifar::npy::{write_npy_i64, write_npy_u8};
use rtb_cifar::{CifarBatch, CifarCSource, CifarConfig, CifarImages, IMAGE_BYTES, evaluate_task};
use rtb_corruption::{Category, Corruption};
use rtb_results::{CellMetrics, Regime};
use rtb_train::{ClassPredictions, EvalTask, NullObserver};

const N: usize = 20;

/// Predicts the true label unless the image is blank (all zero pixels), then a wrong one.
struct Stub;

impl EvalTask for Stub {
    type Batch = CifarBatch;
    type Output = ClassPredictions;

    fn eval_step(&self, batch: CifarBatch) -> rtb_train::Result<ClassPredictions> {
        let images = batch.images.expect("evaluation batches carry images");
        let n = images.dim(0)?;
        // A blank pixel normalises to −mean/std; a (non-blank) test image has a 1 in red.
        let first: Vec<f32> = images
            .reshape((n, IMAGE_BYTES))?
            .narrow(1, 0, 1)?
            .flatten_all()?
            .to_vec1()?;
        let blank = -0.485f32 / 0.229;
        let predicted = batch
            .labels
            .iter()
            .zip(&first)
            .map(|(&label, &value)| {
                if (value - blank).abs() < 1e-4 {
                    (label + 1) % 10
                } else {
                    label
                }
            })
            .collect();
        Ok(ClassPredictions {
            predicted,
            targets: batch.labels,
        })
    }
}

/// Images blanked under corruption `c` (its index in `Corruption::ALL`) at severity `s`.
fn blanked(c: usize, s: usize) -> usize {
    (c + 2 * s) % 7 + 1
}

#[test]
fn metrics_json_matches_a_hand_computed_example() {
    let dir = tempfile::tempdir().unwrap();
    // The clean test set: images 0 and 1 blank, the others with red 1 at pixel 0.
    let mut test = CifarImages::default();
    for index in 0..N {
        let mut rgb = vec![if index < 2 { 0 } else { 90 }; IMAGE_BYTES];
        rgb[0] = if index < 2 { 0 } else { 1 };
        test.pixels.extend(rgb);
        test.labels.push((index % 10) as u8);
    }
    // Released layout: labels.npy (int64, as released) and one file per corruption.
    let cifar_c = dir.path().join("CIFAR-10-C");
    let labels: Vec<i64> = (0..5)
        .flat_map(|_| test.labels.iter().map(|&l| i64::from(l)))
        .collect();
    write_npy_i64(&cifar_c.join("labels.npy"), &[5 * N], &labels).unwrap();
    for (c, corruption) in Corruption::ALL.iter().enumerate() {
        let mut pixels = Vec::new();
        for s in 0..5 {
            for index in 0..N {
                if index < blanked(c, s) {
                    pixels.extend(std::iter::repeat_n(0u8, IMAGE_BYTES));
                } else {
                    pixels.extend_from_slice(test.image_bytes(index));
                }
            }
        }
        write_npy_u8(
            &cifar_c.join(format!("{}.npy", corruption.name())),
            &[5 * N, 32, 32, 3],
            &pixels,
        )
        .unwrap();
    }

    let arch = rtb_models::ArchConfig::from_name("resnet_tiny").unwrap();
    let mut cfg = CifarConfig::new(arch, "stub", None, Regime::Full, dir.path().into());
    cfg.preset = "hand".into();
    cfg.image_size = 32;
    cfg.workers = 2;
    cfg.eval.batch_size = 7;
    cfg.eval.source = CifarCSource::Released {
        dir: cifar_c.clone(),
    };
    let metrics = evaluate_task(&Stub, &cfg, &Arc::new(test), &mut NullObserver).unwrap();

    // Clean: 18 of 20.
    assert_eq!(metrics.primary.clean, 0.9);
    for (c, corruption) in Corruption::ALL.iter().enumerate() {
        // Images 0 and 1 are blank already, so max(blanked, 2) are wrong.
        let expected: [f64; 5] =
            std::array::from_fn(|s| (N - blanked(c, s).max(2)) as f64 / N as f64);
        assert_eq!(
            metrics.primary.corrupted[corruption], expected,
            "{corruption}"
        );
    }
    // gaussian_noise (index 0): blanked 1, 3, 5, 7, 2 → wrong 2, 3, 5, 7, 2 → 0.9, 0.85,
    // 0.75, 0.65, 0.9.
    assert_eq!(
        metrics.primary.corrupted[&Corruption::GaussianNoise],
        [0.9, 0.85, 0.75, 0.65, 0.9]
    );

    // The derived numbers (computed by rtb-results) against the same sums done by hand.
    let benchmark: Vec<f64> = Corruption::BENCHMARK
        .iter()
        .flat_map(|c| metrics.primary.corrupted[c])
        .collect();
    let mpc = benchmark.iter().sum::<f64>() / 75.0;
    let robustness = metrics.primary.robustness().unwrap();
    assert!((robustness.mpc - mpc).abs() < 1e-12);
    assert!((robustness.rpc - mpc / 0.9).abs() < 1e-12);
    let noise: f64 = [
        Corruption::GaussianNoise,
        Corruption::ShotNoise,
        Corruption::ImpulseNoise,
    ]
    .iter()
    .flat_map(|c| metrics.primary.corrupted[c])
    .sum::<f64>()
        / 15.0;
    assert!(
        (robustness.category_drop_percent[&Category::Noise] - 100.0 * (1.0 - noise / 0.9)).abs()
            < 1e-9
    );

    // What lands in metrics.json reads back equal, with the summary for humans.
    let text = metrics.to_json();
    let back = CellMetrics::from_json(&text, std::path::Path::new("metrics.json")).unwrap();
    assert_eq!(back.primary, metrics.primary);
    assert_eq!(back.cell.to_string(), "hand/stub/cifar10/full");
    assert!(
        text.contains("\"mpc\"") && text.contains("\"top1\""),
        "{text}"
    );

    // A subset of severities goes to info, not to the table.
    cfg.eval.corruptions = vec![Corruption::Fog];
    cfg.eval.severities = vec![2, 4];
    let mut test = CifarImages::default();
    for index in 0..N {
        let mut rgb = vec![if index < 2 { 0 } else { 90 }; IMAGE_BYTES];
        rgb[0] = if index < 2 { 0 } else { 1 };
        test.pixels.extend(rgb);
        test.labels.push((index % 10) as u8);
    }
    let partial = evaluate_task(&Stub, &cfg, &Arc::new(test), &mut NullObserver).unwrap();
    assert!(partial.primary.corrupted.is_empty());
    let fog = Corruption::ALL
        .iter()
        .position(|c| *c == Corruption::Fog)
        .unwrap();
    let value = partial.info["partial_severities"]["fog"]["4"]
        .as_f64()
        .unwrap();
    assert_eq!(value, (N - blanked(fog, 3).max(2)) as f64 / N as f64);

    // A corruption file of the wrong shape is an error naming it.
    write_npy_u8(
        &cifar_c.join("fog.npy"),
        &[N, 32, 32, 3],
        &vec![0; N * IMAGE_BYTES],
    )
    .unwrap();
    let test = CifarImages {
        pixels: vec![1; N * IMAGE_BYTES],
        labels: vec![0; N],
    };
    let err = evaluate_task(&Stub, &cfg, &Arc::new(test), &mut NullObserver)
        .unwrap_err()
        .to_string();
    assert!(err.contains("fog.npy") && err.contains("shape"), "{err}");
}
