//! End-to-end evaluation on tiny synthetic folders with a seeded tiny ResNet (1000 classes):
//! counts and errors against a direct per-image computation, both clean layouts, released and
//! generated ImageNet-C, and bad input.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use image::{Rgb, RgbImage};
use rtb_corruption::{Corruption, Severity};
use rtb_imagenet::evaluate::{generate_one, rank_of_label};
use rtb_imagenet::imagenet_c::{
    ALEXNET_CLEAN_TOP1_ERROR, alexnet_top1_errors, corruption_error, relative_corruption_error,
};
use rtb_imagenet::{
    CSource, EvalOptions, EvalTransform, GenerateC, ImageNetResults, ReleasedC, TopKCounts, ValSet,
    evaluate, evaluate_clean, load_rgb,
};
use rtb_models::init::trainable_builder;
use rtb_models::{ArchConfig, Backbone, Mode, ResNetConfig};
use rtb_train::NullObserver;

const WNIDS: [&str; 3] = ["n01440764", "n01443537", "n15075141"];

/// A seeded tiny ResNet. With 1000 classes its classifier bias lifts the three classes of the
/// test folders (0, 1, 999) far above the others, so top-5 is always right and top-1 depends
/// on the image (random weights alone would almost never hit a label out of 1000).
fn tiny_model(classes: usize) -> Box<dyn Backbone> {
    let varmap = VarMap::new();
    let mut weights = HashMap::new();
    if classes == 1000 {
        let mut bias = vec![0f32; classes];
        for class in [0, 1, 999] {
            bias[class] = 20.0;
        }
        weights.insert(
            "fc.bias".to_string(),
            Tensor::from_vec(bias, classes, &Device::Cpu).unwrap(),
        );
    }
    let vb = trainable_builder(&varmap, weights, 11, DType::F32, &Device::Cpu);
    ArchConfig::from(ResNetConfig {
        num_classes: Some(classes),
        ..ResNetConfig::tiny()
    })
    .build(&vb)
    .unwrap()
}

fn picture(width: u32, height: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let v = x.wrapping_mul(7 + seed) ^ y.wrapping_mul(13 + 3 * seed);
        Rgb([v as u8, (x + y * seed) as u8, (seed * 40 + x / 3) as u8])
    })
}

/// Writes `image` as a JPEG (quality 90) or a PNG, by extension.
fn save(image: &RgbImage, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    if path.extension().unwrap() == "png" {
        image.save(path).unwrap();
    } else {
        let file = std::fs::File::create(path).unwrap();
        let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(file, 90);
        encoder.encode_image(image).unwrap();
    }
}

/// A clean val folder: two images per wnid of odd sizes, in `val/<wnid>/`.
fn clean_folder(root: &Path) -> PathBuf {
    let val = root.join("val");
    for (w, wnid) in WNIDS.iter().enumerate() {
        for k in 0..2u32 {
            let name = format!("ILSVRC2012_val_{:08}.JPEG", 10 * w as u32 + k + 1);
            let size = (250 + 17 * k + 5 * w as u32, 240 + 31 * w as u32);
            save(
                &picture(size.0, size.1, 3 * w as u32 + k),
                &val.join(wnid).join(name),
            );
        }
    }
    val
}

fn direct_counts(
    model: &dyn Backbone,
    items: &[(RgbImage, usize)],
    prepare: impl Fn(&RgbImage) -> Vec<f32>,
) -> TopKCounts {
    let mut counts = TopKCounts::default();
    for (image, label) in items {
        let xs = Tensor::from_vec(prepare(image), (1, 3, 224, 224), &Device::Cpu).unwrap();
        let logits = model.forward(&xs, Mode::Inference).unwrap().logits.unwrap();
        let row = logits.to_vec2::<f32>().unwrap().remove(0);
        let rank = rank_of_label(&row, *label);
        counts.images += 1;
        counts.top1_correct += usize::from(rank == 0);
        counts.top5_correct += usize::from(rank < 5);
    }
    counts
}

fn options(corruptions: Vec<Corruption>, severities: &[u8]) -> EvalOptions {
    EvalOptions {
        transform: EvalTransform::timm_default(),
        batch_size: 4,
        workers: 2,
        corruptions,
        severities: severities
            .iter()
            .map(|&s| Severity::new(s).unwrap())
            .collect(),
        max_images: None,
        bootstrap: 0,
        bootstrap_seed: 0,
    }
}

/// Each image's top-1 outcome, computed directly (one forward pass per image).
fn direct_correct(
    model: &dyn Backbone,
    items: &[(RgbImage, usize)],
    prepare: impl Fn(&RgbImage) -> Vec<f32>,
) -> Vec<bool> {
    items
        .iter()
        .map(|(image, label)| {
            let xs = Tensor::from_vec(prepare(image), (1, 3, 224, 224), &Device::Cpu).unwrap();
            let logits = model.forward(&xs, Mode::Inference).unwrap().logits.unwrap();
            rank_of_label(&logits.to_vec2::<f32>().unwrap()[0], *label) == 0
        })
        .collect()
}

#[test]
fn clean_counts_equal_a_direct_computation_in_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    let val = clean_folder(dir.path());
    let model = tiny_model(1000);
    let transform = EvalTransform::timm_default();

    let folders = ValSet::from_folders(&val).unwrap();
    assert_eq!(folders.len(), 6);
    assert_eq!(folders.classes(), vec![0, 1, 999]);

    // The same images flat, with val.txt and with Kaggle's CSV.
    let flat = dir.path().join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    let mut val_txt = String::new();
    let mut csv = String::from("ImageId,PredictionString\n");
    for item in folders.images() {
        let name = item.path.file_name().unwrap().to_str().unwrap().to_string();
        std::fs::copy(&item.path, flat.join(&name)).unwrap();
        val_txt.push_str(&format!("{name} {}\n", item.label));
        let wnid = item.key.parent().unwrap().to_str().unwrap();
        csv.push_str(&format!(
            "{},{wnid} 1 2 3 4\n",
            name.trim_end_matches(".JPEG")
        ));
    }
    // A line for an image that is not in the folder is ignored.
    val_txt.push_str("ILSVRC2012_val_00049999.JPEG 7\n");
    std::fs::write(dir.path().join("val.txt"), &val_txt).unwrap();
    std::fs::write(dir.path().join("LOC_val_solution.csv"), &csv).unwrap();
    let by_txt = ValSet::open(&flat, Some(&dir.path().join("val.txt"))).unwrap();
    let by_csv = ValSet::open(&flat, Some(&dir.path().join("LOC_val_solution.csv"))).unwrap();

    let items: Vec<(RgbImage, usize)> = folders
        .images()
        .iter()
        .map(|i| (load_rgb(&i.path).unwrap(), i.label))
        .collect();
    let expected = direct_counts(model.as_ref(), &items, |im| transform.apply(im).unwrap());
    assert_eq!(expected.images, 6);
    // Not a trivial agreement: some images right, some wrong at top-1; all right at top-5.
    assert!(
        0 < expected.top1_correct && expected.top1_correct < 6,
        "{expected:?}"
    );
    assert_eq!(expected.top5_correct, 6);

    for set in [&folders, &by_txt, &by_csv] {
        let mut labels: Vec<(PathBuf, usize)> = set
            .images()
            .iter()
            .map(|i| (i.key.clone(), i.label))
            .collect();
        labels.sort();
        let mut reference: Vec<(PathBuf, usize)> = folders
            .images()
            .iter()
            .map(|i| (i.key.clone(), i.label))
            .collect();
        reference.sort();
        assert_eq!(labels, reference, "same keys and labels in every layout");
        // And in the same order (class, then file name), so `--images n` picks the same ones.
        let keys: Vec<&PathBuf> = set.images().iter().map(|i| &i.key).collect();
        let folder_keys: Vec<&PathBuf> = folders.images().iter().map(|i| &i.key).collect();
        assert_eq!(keys, folder_keys);
        let counts = evaluate_clean(
            model.as_ref(),
            set,
            &options(vec![], &[]),
            &Device::Cpu,
            &mut NullObserver,
        )
        .unwrap();
        assert_eq!(counts, expected);
    }
}

#[test]
fn a_subset_of_classes_keeps_the_standard_indices() {
    let dir = tempfile::tempdir().unwrap();
    save(&picture(40, 30, 1), &dir.path().join("n01443537/a.JPEG"));
    save(&picture(40, 30, 2), &dir.path().join("n15075141/b.png"));
    let set = ValSet::from_folders(dir.path()).unwrap();
    let labels: Vec<usize> = set.images().iter().map(|i| i.label).collect();
    assert_eq!(labels, vec![1, 999]);
    assert_eq!(set.images()[0].key, Path::new("n01443537/a.JPEG"));
}

/// A released-layout ImageNet-C folder: gaussian_noise and contrast at severities 1 and 3,
/// two 224×224 images per wnid.
fn released_folder(root: &Path) -> PathBuf {
    let c = root.join("imagenet-c");
    for (ci, corruption) in ["gaussian_noise", "contrast"].iter().enumerate() {
        for severity in [1u32, 3] {
            for (w, wnid) in WNIDS.iter().enumerate() {
                for k in 0..2u32 {
                    let seed = 5 * ci as u32 + severity + 2 * w as u32 + k;
                    save(
                        &picture(224, 224, seed),
                        &c.join(corruption)
                            .join(severity.to_string())
                            .join(wnid)
                            .join(format!("ILSVRC2012_val_{:08}.JPEG", 10 * w as u32 + k + 1)),
                    );
                }
            }
        }
    }
    // Folders that are not corruptions are ignored.
    std::fs::create_dir_all(c.join("README_not_a_corruption")).unwrap();
    c
}

#[test]
fn released_imagenet_c_counts_and_errors_equal_a_direct_computation() {
    let dir = tempfile::tempdir().unwrap();
    let val = ValSet::from_folders(&clean_folder(dir.path())).unwrap();
    let released = ReleasedC::open(&released_folder(dir.path())).unwrap();
    assert_eq!(released.present().len(), 2);
    let model = tiny_model(1000);
    let transform = EvalTransform::timm_default();
    let opts = options(
        vec![Corruption::GaussianNoise, Corruption::Contrast],
        &[1, 3],
    );
    let source = CSource::Released(released.clone());
    let results = evaluate(
        model.as_ref(),
        &val,
        Some(&source),
        &opts,
        &Device::Cpu,
        &mut NullObserver,
    )
    .unwrap();

    assert_eq!(results.conditions.len(), 4);
    let hits: usize = results
        .conditions
        .iter()
        .map(|c| c.counts.top1_correct)
        .sum();
    assert!(
        0 < hits && hits < 24,
        "top-1 hits {hits} of 24: not a trivial agreement"
    );
    let mut errors: BTreeMap<&str, [Option<f64>; 5]> = BTreeMap::new();
    for condition in &results.conditions {
        let corruption: Corruption = condition.corruption.parse().unwrap();
        let severity = Severity::new(condition.severity).unwrap();
        let set = released.set(corruption, severity).unwrap();
        // Released images: ToTensor + Normalize only.
        let items: Vec<(RgbImage, usize)> = set
            .images()
            .iter()
            .map(|i| (load_rgb(&i.path).unwrap(), i.label))
            .collect();
        let expected = direct_counts(model.as_ref(), &items, |im| transform.normalize(im));
        assert_eq!(condition.counts, expected, "{corruption} {severity}");
        assert_eq!(condition.counts.images, 6);
        assert_eq!(
            condition.top1_error,
            1.0 - expected.top1_correct as f64 / 6.0
        );
        assert_eq!(
            condition.top5_error,
            1.0 - expected.top5_correct as f64 / 6.0
        );
        errors.entry(corruption.name()).or_insert([None; 5])[severity.index()] =
            Some(condition.top1_error);
    }
    // CE and relative CE over the two severities, by hand.
    for summary in &results.corruptions {
        let corruption: Corruption = summary.corruption.parse().unwrap();
        let e = errors[corruption.name()];
        let a = alexnet_top1_errors(corruption).unwrap();
        let by_hand = (e[0].unwrap() + e[2].unwrap()) / (a[0] + a[2]);
        assert!((summary.ce.unwrap() - by_hand).abs() < 1e-12);
        assert_eq!(summary.ce, corruption_error(&e, &a));
        let clean = results.clean_top1_error;
        let rel = (e[0].unwrap() - clean + e[2].unwrap() - clean)
            / (a[0] - ALEXNET_CLEAN_TOP1_ERROR + a[2] - ALEXNET_CLEAN_TOP1_ERROR);
        assert!((summary.relative_ce.unwrap() - rel).abs() < 1e-12);
        assert_eq!(
            summary.relative_ce,
            relative_corruption_error(&e, clean, &a, ALEXNET_CLEAN_TOP1_ERROR)
        );
        assert_eq!(summary.severities, vec![1, 3]);
    }
    // Two corruptions at two severities: no mCE, no drop, nothing in the MetricTable.
    assert_eq!(
        (results.mce, results.relative_mce, results.drop_percent),
        (None, None, None)
    );
    assert!(results.metric_table().corrupted.is_empty());
    assert_eq!(results.metric_table().clean, results.clean.top1_accuracy());
    // JSON round trip.
    let back: ImageNetResults = serde_json::from_str(&results.to_json()).unwrap();
    assert_eq!(back, results);

    // A severity the folder lacks is an error naming the folder.
    let err = evaluate(
        model.as_ref(),
        &val,
        Some(&source),
        &options(vec![Corruption::Contrast], &[5]),
        &Device::Cpu,
        &mut NullObserver,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("contrast/5") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn generated_imagenet_c_equals_a_direct_computation() {
    let dir = tempfile::tempdir().unwrap();
    let val = ValSet::from_folders(&clean_folder(dir.path()))
        .unwrap()
        .truncated(4);
    let model = tiny_model(1000);
    let transform = EvalTransform::timm_default();
    let generate = GenerateC::new(3);
    let opts = options(vec![Corruption::GaussianNoise, Corruption::Contrast], &[2]);
    let results = evaluate(
        model.as_ref(),
        &val,
        Some(&CSource::Generated(generate.clone())),
        &opts,
        &Device::Cpu,
        &mut NullObserver,
    )
    .unwrap();
    assert_eq!(results.conditions.len(), 2);
    for condition in &results.conditions {
        let corruption: Corruption = condition.corruption.parse().unwrap();
        let severity = Severity::new(condition.severity).unwrap();
        let items: Vec<(RgbImage, usize)> = val
            .images()
            .iter()
            .map(|i| {
                let crop = transform.crop_u8(&load_rgb(&i.path).unwrap()).unwrap();
                let corrupted =
                    generate_one(&generate, &crop, &i.key, corruption, severity).unwrap();
                // Deterministic: the same seed gives the same bytes.
                assert_eq!(
                    corrupted,
                    generate_one(&generate, &crop, &i.key, corruption, severity).unwrap()
                );
                (corrupted, i.label)
            })
            .collect();
        let expected = direct_counts(model.as_ref(), &items, |im| transform.normalize(im));
        assert_eq!(condition.counts, expected, "{corruption}");
    }
    // The JPEG round trip changes the images.
    let crop = transform
        .crop_u8(&load_rgb(&val.images()[0].path).unwrap())
        .unwrap();
    let key = &val.images()[0].key;
    let sev = Severity::new(2).unwrap();
    let with_jpeg = generate_one(&generate, &crop, key, Corruption::Contrast, sev).unwrap();
    let without = generate_one(
        &GenerateC {
            jpeg_quality: None,
            ..generate.clone()
        },
        &crop,
        key,
        Corruption::Contrast,
        sev,
    )
    .unwrap();
    assert_ne!(with_jpeg, without);
    assert_eq!(
        with_jpeg,
        rtb_corruption::jpeg_round_trip(&without, rtb_imagenet::imagenet_c::RELEASED_JPEG_QUALITY)
    );
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(1000);
    let opts = options(vec![], &[]);

    // An undecodable image: the error names the file.
    let broken = dir.path().join("broken");
    save(&picture(30, 30, 1), &broken.join("n01440764/good.JPEG"));
    std::fs::write(broken.join("n01440764/bad.JPEG"), b"not an image at all").unwrap();
    let set = ValSet::from_folders(&broken).unwrap();
    let err = evaluate_clean(model.as_ref(), &set, &opts, &Device::Cpu, &mut NullObserver)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.JPEG") && err.contains("decode"), "{err}");

    // An unknown wnid folder: the error names the folder.
    let unknown = dir.path().join("unknown");
    save(&picture(30, 30, 1), &unknown.join("n01440764/a.JPEG"));
    save(&picture(30, 30, 1), &unknown.join("cats/b.JPEG"));
    let err = ValSet::from_folders(&unknown).unwrap_err().to_string();
    assert!(err.contains("cats") && err.contains("wnid"), "{err}");

    // An image without a labels line: the error names the image and the labels file.
    let flat = dir.path().join("flat");
    save(
        &picture(30, 30, 1),
        &flat.join("ILSVRC2012_val_00000001.JPEG"),
    );
    save(
        &picture(30, 30, 2),
        &flat.join("ILSVRC2012_val_00000002.JPEG"),
    );
    let labels = dir.path().join("val.txt");
    std::fs::write(&labels, "ILSVRC2012_val_00000001.JPEG 65\n").unwrap();
    let err = ValSet::from_flat(&flat, &labels).unwrap_err().to_string();
    assert!(
        err.contains("ILSVRC2012_val_00000002.JPEG") && err.contains("val.txt"),
        "{err}"
    );
    // A malformed line: file and line.
    std::fs::write(
        &labels,
        "ILSVRC2012_val_00000001.JPEG 65\nILSVRC2012_val_00000002.JPEG\n",
    )
    .unwrap();
    let err = ValSet::from_flat(&flat, &labels).unwrap_err().to_string();
    assert!(err.contains("val.txt, line 2"), "{err}");
    // The devkit's ground truth is refused with a hint.
    let devkit = dir.path().join("ILSVRC2012_validation_ground_truth.txt");
    std::fs::write(&devkit, "490\n361\n").unwrap();
    let err = ValSet::from_flat(&flat, &devkit).unwrap_err().to_string();
    assert!(
        err.contains("meta.mat") && err.contains("LOC_val_solution.csv"),
        "{err}"
    );

    // A model without 1000 classes.
    let small = tiny_model(5);
    let good = ValSet::from_folders(&unknown.join("..").join("broken"))
        .unwrap()
        .truncated(1);
    let err = evaluate_clean(
        small.as_ref(),
        &good,
        &opts,
        &Device::Cpu,
        &mut NullObserver,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("5 classes") && err.contains("1000"), "{err}");

    // An empty or missing folder.
    assert!(ValSet::from_folders(&dir.path().join("nope")).is_err());
    assert!(
        ReleasedC::open(&broken)
            .unwrap_err()
            .to_string()
            .contains("released ImageNet-C")
    );
}

#[test]
fn mce_and_relative_mce_equal_a_hand_computation() {
    // 15 corruptions × 5 severities of counts on 100 images, clean 30 % top-1 error.
    let clean = TopKCounts {
        images: 100,
        top1_correct: 70,
        top5_correct: 90,
    };
    let mut conditions = BTreeMap::new();
    let mut errors = BTreeMap::new();
    for (ci, corruption) in Corruption::BENCHMARK.into_iter().enumerate() {
        let mut row = [0.0; 5];
        for severity in Severity::ALL {
            let correct = 65 - 3 * severity.index() - ci;
            conditions.insert(
                (corruption, severity),
                TopKCounts {
                    images: 100,
                    top1_correct: correct,
                    top5_correct: correct + 15,
                },
            );
            row[severity.index()] = 1.0 - correct as f64 / 100.0;
        }
        errors.insert(corruption, row);
    }
    // By hand: CE_c = Σ_s E / Σ_s E_AlexNet, relative with the clean errors subtracted.
    let mut ce_sum = 0.0;
    let mut rel_sum = 0.0;
    for (corruption, row) in &errors {
        let a = alexnet_top1_errors(*corruption).unwrap();
        let (mut e, mut ea, mut r, mut ra) = (0.0, 0.0, 0.0, 0.0);
        for s in 0..5 {
            e += row[s];
            ea += a[s];
            r += row[s] - 0.3;
            ra += a[s] - 0.43478;
        }
        ce_sum += e / ea;
        rel_sum += r / ra;
    }
    let (mce, rel) = (ce_sum / 15.0, rel_sum / 15.0);
    assert!((rtb_imagenet::imagenet_c::mce(&errors).unwrap() - mce).abs() < 1e-12);
    assert!((rtb_imagenet::imagenet_c::relative_mce(&errors, 0.3).unwrap() - rel).abs() < 1e-12);
    let results = ImageNetResults::from_counts(
        "hand",
        EvalTransform::timm_default(),
        clean,
        None,
        &conditions,
    );
    assert!((results.mce.unwrap() - mce).abs() < 1e-12);
    assert!((results.relative_mce.unwrap() - rel).abs() < 1e-12);
    // The drop: 1 − mPC / clean top-1, with mPC the mean top-1 accuracy over the 75 sets.
    let mpc: f64 = errors
        .values()
        .flat_map(|r| r.iter().map(|e| 1.0 - e))
        .sum::<f64>()
        / 75.0;
    let drop = 100.0 * (1.0 - mpc / 0.7);
    assert!((results.drop_percent.unwrap() - drop).abs() < 1e-9);
    assert_eq!(results.metric_table().corrupted.len(), 15);
}

/// Bootstrap replicates of generated ImageNet-C (contrast at all five severities, so it enters
/// the table): replicate b of a condition is the top-1 accuracy over the image indices of
/// resample b in draw order, so an image drawn twice counts twice; the same seed gives the
/// same replicates, another seed others; the MetricTable carries them.
#[test]
fn bootstrap_replicates_resample_each_images_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let val = ValSet::from_folders(&clean_folder(dir.path())).unwrap();
    let model = tiny_model(1000);
    let transform = EvalTransform::timm_default();
    let generate = GenerateC::new(3);
    let source = CSource::Generated(generate.clone());
    let opts = EvalOptions {
        bootstrap: 40,
        bootstrap_seed: 9,
        ..options(vec![Corruption::Contrast], &[1, 2, 3, 4, 5])
    };
    let run = |opts: &EvalOptions| {
        evaluate(
            model.as_ref(),
            &val,
            Some(&source),
            opts,
            &Device::Cpu,
            &mut NullObserver,
        )
        .unwrap()
    };
    let results = run(&opts);
    let replicates = results.replicates.clone().unwrap();
    assert_eq!((replicates.seed, replicates.images), (9, 6));
    assert_eq!(replicates.count(), 40);
    let resampler = rtb_results::Resampler::new(9, 6, 40);
    let by_draws = |correct: &[bool], b: usize| {
        let draws = resampler.indices(b);
        draws.iter().filter(|&&i| correct[i]).count() as f64 / draws.len() as f64
    };
    // Resamples with an image drawn more than once exist (6 draws of 6 images).
    assert!((0..40).any(|b| {
        let mut draws = resampler.indices(b);
        draws.sort_unstable();
        draws.windows(2).any(|w| w[0] == w[1])
    }));

    let clean_items: Vec<(RgbImage, usize)> = val
        .images()
        .iter()
        .map(|i| (load_rgb(&i.path).unwrap(), i.label))
        .collect();
    let clean = direct_correct(model.as_ref(), &clean_items, |im| {
        transform.apply(im).unwrap()
    });
    let mut outcomes = vec![clean.clone()];
    for (b, value) in replicates.clean.iter().enumerate() {
        assert_eq!(*value, by_draws(&clean, b), "clean replicate {b}");
    }
    let rows = &replicates.corrupted[&Corruption::Contrast];
    for severity in Severity::ALL {
        let items: Vec<(RgbImage, usize)> = val
            .images()
            .iter()
            .map(|i| {
                let crop = transform.crop_u8(&load_rgb(&i.path).unwrap()).unwrap();
                let image =
                    generate_one(&generate, &crop, &i.key, Corruption::Contrast, severity).unwrap();
                (image, i.label)
            })
            .collect();
        let correct = direct_correct(model.as_ref(), &items, |im| transform.normalize(im));
        let row = &rows[severity.index()];
        for (b, value) in row.iter().enumerate() {
            assert_eq!(*value, by_draws(&correct, b), "s{severity} replicate {b}");
        }
        outcomes.push(correct);
    }
    // Not a constant: some image is right and some wrong somewhere, so resamples differ.
    let all: Vec<bool> = outcomes.concat();
    assert!(all.contains(&true) && all.contains(&false), "{all:?}");
    let spread = |values: &[f64]| values.iter().any(|v| *v != values[0]);
    assert!(spread(&replicates.clean) || rows.iter().any(|row| spread(row)));

    // The table carries them; the same seed repeats them, another seed does not.
    let table = results.metric_table();
    assert_eq!(table.replicates.as_ref(), Some(&replicates));
    assert_eq!(run(&opts).replicates, Some(replicates.clone()));
    let other = run(&EvalOptions {
        bootstrap_seed: 10,
        ..opts.clone()
    });
    assert_ne!(other.replicates, Some(replicates));
    // Without bootstrap, none.
    assert_eq!(
        run(&EvalOptions {
            bootstrap: 0,
            ..opts
        })
        .replicates,
        None
    );
}

/// Pairing needs the clean set's images in every released folder: with bootstrap, a folder
/// that lacks one is an error naming it (without bootstrap it is counted as before); a
/// corruption at fewer than five severities gets no replicates in the table.
#[test]
fn bootstrap_needs_paired_released_folders() {
    let dir = tempfile::tempdir().unwrap();
    let val = ValSet::from_folders(&clean_folder(dir.path())).unwrap();
    let root = released_folder(dir.path());
    let model = tiny_model(1000);
    let opts = EvalOptions {
        bootstrap: 10,
        ..options(
            vec![Corruption::GaussianNoise, Corruption::Contrast],
            &[1, 3],
        )
    };
    let run = |opts: &EvalOptions| {
        let source = CSource::Released(ReleasedC::open(&root).unwrap());
        evaluate(
            model.as_ref(),
            &val,
            Some(&source),
            opts,
            &Device::Cpu,
            &mut NullObserver,
        )
    };
    let results = run(&opts).unwrap();
    let replicates = results.replicates.as_ref().unwrap();
    assert_eq!(replicates.clean.len(), 10);
    assert!(replicates.corrupted.is_empty());
    assert!(
        results
            .metric_table()
            .replicates
            .unwrap()
            .corrupted
            .is_empty()
    );

    std::fs::remove_file(
        root.join("contrast/3")
            .join(WNIDS[1])
            .join("ILSVRC2012_val_00000012.JPEG"),
    )
    .unwrap();
    let err = run(&opts).unwrap_err().to_string();
    assert!(
        err.contains("contrast/3") && err.contains("5 images, the clean set 6"),
        "{err}"
    );
    let counted = run(&EvalOptions {
        bootstrap: 0,
        ..opts
    })
    .unwrap();
    assert_eq!(counted.conditions.len(), 4);
}
