//! The datasets end to end on the shapes world's ADE export, determinism, corruption, and
//! every kind of bad input issue 14 lists: a clear error naming the file, never a panic.

use std::path::Path;
use std::sync::Arc;

use image::{Rgb, RgbImage};
use rtb_ade::{
    AdeTaskError, AdeTest, AdeTrain, LabelSpec, TestConfig, TrainConfig, collate_test,
    collate_train,
};
use rtb_ade_eval::{AdeDataset, LabelMap, Split, write_label_png};
use rtb_corruption::{Corruption, Corruptor, Flavor, Severity};
use rtb_synth::{SynthConfig, write_ade};
use rtb_train::{CorruptionSpec, DataLoader, Dataset, LoaderConfig};

fn synth_export(dir: &Path) -> SynthConfig {
    let mut cfg = SynthConfig::tiny();
    cfg.ade.train = 6;
    cfg.ade.val = 3;
    write_ade(&cfg, dir).unwrap();
    cfg
}

/// A smaller train pipeline for the tests' small images (the default resizes to ~512²).
fn small_train() -> TrainConfig {
    TrainConfig {
        scale: (256, 64),
        crop_size: (64, 64),
        ..TrainConfig::default()
    }
}

#[test]
fn the_synthetic_export_loads_through_the_train_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = synth_export(dir.path());
    let data = Arc::new(AdeDataset::open(dir.path(), Split::Training).unwrap());
    data.check().unwrap();
    let train = AdeTrain::new(data, LabelSpec::reduced(cfg.num_classes), small_train()).unwrap();
    let loader = DataLoader::new(
        train,
        collate_train,
        LoaderConfig {
            batch_size: 4,
            shuffle: true,
            workers: 2,
            seed: 5,
            ..Default::default()
        },
    )
    .unwrap();
    let batches: Vec<_> = loader.epoch(0).collect::<Result<_, _>>().unwrap();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0].images.dims(), &[4, 3, 64, 64]);
    assert_eq!(batches[0].labels.dims(), &[4, 64, 64]);
    let labels: Vec<u8> = batches[0].labels.flatten_all().unwrap().to_vec1().unwrap();
    assert!(
        labels
            .iter()
            .all(|&v| v == 255 || usize::from(v) < cfg.num_classes)
    );
    assert!(labels.iter().any(|&v| v != 255), "some labelled pixels");

    // Same seed, same bytes, whatever the worker count; another epoch draws differently.
    let again = DataLoader::new(
        loader.dataset().clone(),
        collate_train,
        LoaderConfig {
            workers: 0,
            ..loader.config().clone()
        },
    )
    .unwrap();
    let first: Vec<f32> = batches[0].images.flatten_all().unwrap().to_vec1().unwrap();
    let repeat = again.epoch(0).next().unwrap().unwrap();
    let repeat: Vec<f32> = repeat.images.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(first, repeat);
    let other = loader.epoch(1).next().unwrap().unwrap();
    let other: Vec<f32> = other.images.flatten_all().unwrap().to_vec1().unwrap();
    assert_ne!(first, other);
}

#[test]
fn the_synthetic_export_loads_through_the_test_pipeline_clean_and_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = synth_export(dir.path());
    let data = Arc::new(AdeDataset::open(dir.path(), Split::Validation).unwrap());
    let labels = LabelSpec::reduced(cfg.num_classes);
    let test_cfg = TestConfig { scale: (256, 64) };
    let clean = AdeTest::new(data.clone(), labels, test_cfg).unwrap();
    let sample = clean.load(0).unwrap();
    // 96×80 fitted into (256, 64): factor 0.8 → 77×64; labels stay 96×80.
    assert_eq!(sample.image.dims(), &[3, 64, 77]);
    assert_eq!(sample.label.size(), (96, 80));
    assert_eq!(
        sample.key,
        Path::new("images/validation/ADE_val_00000001.jpg")
    );

    let spec = CorruptionSpec {
        corruptor: Corruptor::new(Flavor::ImageCorruptions),
        corruption: Corruption::GaussianNoise,
        severity: Severity::ALL[2],
        seed: 3,
    };
    let corrupted = clean.clone().with_corruption(spec);
    let a = corrupted.get(0, 0).unwrap();
    let b = corrupted.get(0, 99).unwrap();
    let values =
        |t: &candle_core::Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
    assert_eq!(
        values(&a.image),
        values(&b.image),
        "per-image seeds ignore the loader seed"
    );
    assert_ne!(values(&a.image), values(&sample.image));
    assert_eq!(a.label, sample.label);

    let batch = collate_test(vec![clean.load(0).unwrap(), clean.load(1).unwrap()], 32).unwrap();
    assert_eq!(batch.images.dims(), &[2, 3, 64, 96]);
    assert_eq!(batch.sizes, vec![(64, 77), (64, 77)]);
    assert_eq!(batch.labels.len(), 2);
}

/// A one-pair dataset in `dir`, with the image written by `image` and the label map by
/// `label`.
fn one_pair(dir: &Path, image: impl FnOnce(&Path), label: impl FnOnce(&Path)) {
    for sub in ["images/training", "annotations/training"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    image(&dir.join("images/training/a.jpg"));
    label(&dir.join("annotations/training/a.png"));
}

fn jpeg(width: u32, height: u32) -> impl FnOnce(&Path) {
    move |path| {
        RgbImage::from_pixel(width, height, Rgb([90, 120, 200]))
            .save(path)
            .unwrap()
    }
}

fn label_png(width: u32, height: u32, value: u8) -> impl FnOnce(&Path) {
    move |path| {
        let map = LabelMap::new(width, height, vec![value; (width * height) as usize]).unwrap();
        write_label_png(path, &map).unwrap();
    }
}

/// Loads sample 0 through both datasets and returns the train error's message after
/// checking that both fail.
fn load_error(dir: &Path, labels: LabelSpec) -> String {
    let data = Arc::new(AdeDataset::open(dir, Split::Training).unwrap());
    let train = AdeTrain::new(data.clone(), labels, small_train()).unwrap();
    let test = AdeTest::new(data, labels, TestConfig::default()).unwrap();
    let test_error = test.get(0, 0).unwrap_err().to_string();
    let train_error = train.get(0, 0).unwrap_err().to_string();
    assert_eq!(test_error, train_error);
    train_error
}

#[test]
fn a_label_map_of_another_size_is_an_error_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    one_pair(dir.path(), jpeg(8, 6), label_png(8, 5, 1));
    let message = load_error(dir.path(), LabelSpec::ade20k());
    assert!(message.contains("annotations/training/a.png"), "{message}");
    assert!(message.contains("images/training/a.jpg"), "{message}");
    assert!(
        message.contains("8×5") && message.contains("8×6"),
        "{message}"
    );
}

#[test]
fn a_label_value_above_the_class_count_is_an_error_naming_the_file_and_pixel() {
    let dir = tempfile::tempdir().unwrap();
    // Stored 151 is 150 after reduce_zero_label: not below 150 classes.
    one_pair(dir.path(), jpeg(4, 3), |path| {
        let mut data = vec![150u8; 12];
        data[6] = 151;
        write_label_png(path, &LabelMap::new(4, 3, data).unwrap()).unwrap();
    });
    let message = load_error(dir.path(), LabelSpec::ade20k());
    assert!(message.contains("annotations/training/a.png"), "{message}");
    assert!(
        message.contains("label value 151 at pixel (x 2, y 1)"),
        "{message}"
    );
    assert!(message.contains("150 after reduce_zero_label"), "{message}");

    // 0 (→ 255), 255 (stays 255) and 150 (→ 149) are all valid ADE20K values.
    let dir = tempfile::tempdir().unwrap();
    one_pair(dir.path(), jpeg(3, 1), |path| {
        write_label_png(path, &LabelMap::new(3, 1, vec![0, 255, 150]).unwrap()).unwrap();
    });
    let data = Arc::new(AdeDataset::open(dir.path(), Split::Training).unwrap());
    let test = AdeTest::new(data, LabelSpec::ade20k(), TestConfig::default()).unwrap();
    assert_eq!(test.load(0).unwrap().label.data(), &[255, 255, 149]);

    // The class count of the synthetic world applies the same way.
    let dir = tempfile::tempdir().unwrap();
    one_pair(dir.path(), jpeg(2, 2), label_png(2, 2, 4));
    let message = load_error(dir.path(), LabelSpec::reduced(3));
    assert!(message.contains("below 3"), "{message}");
}

#[test]
fn a_missing_pair_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    one_pair(dir.path(), jpeg(4, 4), label_png(4, 4, 1));
    jpeg(4, 4)(&dir.path().join("images/training/b.jpg"));
    let err = AdeDataset::open(dir.path(), Split::Training).unwrap_err();
    let message = AdeTaskError::from(err).to_string();
    assert!(message.contains("images/training/b.jpg"), "{message}");
    assert!(message.contains("annotations/training/b.png"), "{message}");

    // A file removed after the listing: an I/O error naming it.
    std::fs::remove_file(dir.path().join("images/training/b.jpg")).unwrap();
    let data = Arc::new(AdeDataset::open(dir.path(), Split::Training).unwrap());
    std::fs::remove_file(dir.path().join("images/training/a.jpg")).unwrap();
    let test = AdeTest::new(data, LabelSpec::ade20k(), TestConfig::default()).unwrap();
    let message = test.get(0, 0).unwrap_err().to_string();
    assert!(message.contains("images/training/a.jpg"), "{message}");
}

#[test]
fn an_image_that_does_not_decode_is_an_error_naming_the_file() {
    for bytes in [
        b"not an image at all".to_vec(),
        // A JPEG cut after its header.
        {
            let mut buf = std::io::Cursor::new(Vec::new());
            RgbImage::from_pixel(16, 16, Rgb([1, 2, 3]))
                .write_to(&mut buf, image::ImageFormat::Jpeg)
                .unwrap();
            buf.into_inner()[..40].to_vec()
        },
    ] {
        let dir = tempfile::tempdir().unwrap();
        one_pair(
            dir.path(),
            |path| std::fs::write(path, &bytes).unwrap(),
            label_png(16, 16, 1),
        );
        let message = load_error(dir.path(), LabelSpec::ade20k());
        assert!(message.contains("images/training/a.jpg"), "{message}");
        assert!(message.contains("cannot decode"), "{message}");
    }
}

#[test]
fn a_label_file_that_is_not_an_eight_bit_png_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    one_pair(dir.path(), jpeg(4, 4), |path| {
        RgbImage::from_pixel(4, 4, Rgb([1, 1, 1]))
            .save(path)
            .unwrap()
    });
    let message = load_error(dir.path(), LabelSpec::ade20k());
    assert!(message.contains("annotations/training/a.png"), "{message}");
}

#[test]
fn bad_configurations_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    one_pair(dir.path(), jpeg(4, 4), label_png(4, 4, 1));
    let data = Arc::new(AdeDataset::open(dir.path(), Split::Training).unwrap());
    let bad = TrainConfig {
        ratio_range: (2.0, 0.5),
        ..TrainConfig::default()
    };
    assert!(AdeTrain::new(data.clone(), LabelSpec::ade20k(), bad).is_err());
    assert!(AdeTrain::new(data.clone(), LabelSpec::reduced(0), small_train()).is_err());
    let train = AdeTrain::new(data, LabelSpec::ade20k(), small_train()).unwrap();
    assert!(train.get(5, 0).is_err());
    assert!(collate_test(Vec::new(), 1).is_err());
}

#[test]
fn odd_shapes_never_panic_and_degenerate_ones_name_the_file() {
    // Any size through many seeds: either a crop or an error naming the file.
    let mut errors = 0;
    for (w, h) in [
        (1, 1),
        (2, 3),
        (5000, 3),
        (5000, 1),
        (3, 700),
        (33, 32),
        (511, 513),
    ] {
        let dir = tempfile::tempdir().unwrap();
        one_pair(dir.path(), jpeg(w, h), label_png(w, h, 1));
        let data = Arc::new(AdeDataset::open(dir.path(), Split::Training).unwrap());
        let train =
            AdeTrain::new(data.clone(), LabelSpec::ade20k(), TrainConfig::default()).unwrap();
        for seed in 0..8 {
            match train.get(0, seed) {
                Ok(sample) => assert_eq!(sample.image.dims(), &[3, 512, 512]),
                Err(err) => {
                    errors += 1;
                    let message = err.to_string();
                    assert!(message.contains("images/training/a.jpg"), "{message}");
                    assert!(message.contains("0 pixels"), "{message}");
                }
            }
        }
        let test = AdeTest::new(data, LabelSpec::ade20k(), TestConfig::default()).unwrap();
        match test.get(0, 0) {
            Ok(sample) => assert_eq!(sample.label.size(), (w, h)),
            Err(err) => assert!(err.to_string().contains("images/training/a.jpg"), "{err}"),
        }
    }
    // 5000×1 at small ratios rescales to a height of 0.
    assert!(errors > 0);
}
