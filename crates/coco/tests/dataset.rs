//! The COCO layout and the train/test pipelines on small hand-made and exported datasets:
//! mmdet's skips (box outside the image, zero area, crowds, images without objects), errors
//! naming the file and annotation id for bad input (never a panic), seeded flips, and
//! corruption of the full-resolution image before the resize.

use std::path::Path;
use std::sync::Arc;

use rtb_coco::{CocoSplit, CocoTest, CocoTrain, Split, TestPipeline, TrainPipeline};
use rtb_corruption::{Corruption, Corruptor, Flavor, Severity};
use rtb_train::{CorruptionSpec, Dataset};

/// A root with one split `val2017` of two 48×40 images and the given annotations.
fn write_root(dir: &Path, annotations: &str, images: &[(&str, Option<&[u8]>)]) {
    std::fs::create_dir_all(dir.join("annotations")).unwrap();
    std::fs::create_dir_all(dir.join("val2017")).unwrap();
    let entries: Vec<String> = images
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            format!(
                r#"{{"id": {}, "file_name": "{name}", "width": 48, "height": 40}}"#,
                i + 1
            )
        })
        .collect();
    let json = format!(
        r#"{{"images": [{}], "categories": [{{"id": 5, "name": "a"}}, {{"id": 2, "name": "b"}}],
            "annotations": [{annotations}]}}"#,
        entries.join(",")
    );
    std::fs::write(dir.join("annotations/instances_val2017.json"), json).unwrap();
    for (name, bytes) in images {
        let path = dir.join("val2017").join(name);
        match bytes {
            Some(b) => std::fs::write(path, b).unwrap(),
            None => image::RgbImage::from_fn(48, 40, |x, y| {
                image::Rgb([(x * 5) as u8, (y * 6) as u8, 90])
            })
            .save(path)
            .unwrap(),
        }
    }
}

const POLY: &str = r#""segmentation": [[4, 4, 20, 4, 20, 20, 4, 20]]"#;

#[test]
fn mmdets_skips_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let anns = [
        // Kept: category 5 is class 1 (sorted ids 2, 5).
        format!(
            r#"{{"id": 1, "image_id": 1, "category_id": 5, "bbox": [4, 4, 16, 16], "area": 256, "iscrowd": 0, {POLY}}}"#
        ),
        // Box entirely outside the image: skipped.
        format!(
            r#"{{"id": 2, "image_id": 1, "category_id": 2, "bbox": [60, 4, 10, 10], "area": 100, "iscrowd": 0, {POLY}}}"#
        ),
        // Zero area: skipped.
        format!(
            r#"{{"id": 3, "image_id": 1, "category_id": 2, "bbox": [4, 4, 16, 16], "area": 0, "iscrowd": 0, {POLY}}}"#
        ),
        // Under one pixel wide: skipped.
        format!(
            r#"{{"id": 4, "image_id": 1, "category_id": 2, "bbox": [4, 4, 0.5, 16], "area": 8, "iscrowd": 0, {POLY}}}"#
        ),
        // A crowd: not a training target, not counted as skipped.
        format!(
            r#"{{"id": 5, "image_id": 2, "category_id": 2, "bbox": [4, 4, 16, 16], "area": 256, "iscrowd": 1, {POLY}}}"#
        ),
    ];
    write_root(
        dir.path(),
        &anns.join(","),
        &[("a.png", None), ("b.png", None)],
    );
    let split = CocoSplit::open(dir.path(), Split::Val).unwrap();
    assert_eq!(split.cat_ids(), [2, 5]);
    assert_eq!(split.skipped(), 3);
    assert_eq!(split.instances(0).len(), 1);
    assert_eq!(split.instances(0)[0].label, 1);
    assert_eq!(split.instances(0)[0].bbox, [4.0, 4.0, 20.0, 20.0]);
    assert!(split.instances(1).is_empty());
    // Training keeps only image 1; evaluation keeps both.
    assert_eq!(split.train_indices(), [0]);
    let split = Arc::new(split);
    assert_eq!(
        CocoTrain::new(split.clone(), TrainPipeline::default()).len(),
        1
    );
    assert_eq!(
        CocoTest::new(split, "val2017", TestPipeline { scale: (80, 64) }).len(),
        2
    );
}

fn open_err(annotation: &str, images: &[(&str, Option<&[u8]>)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_root(dir.path(), annotation, images);
    CocoSplit::open(dir.path(), Split::Val)
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_annotations_are_errors_naming_the_file_and_the_annotation() {
    let one = [("a.png", None)];
    let err = open_err(
        r#"{"id": 17, "image_id": 1, "category_id": 5, "bbox": [4, 4, 16, 16], "area": 256, "iscrowd": 0, "segmentation": [[4, 4, 20, 4]]}"#,
        &one,
    );
    assert!(
        err.contains("instances_val2017.json") && err.contains("annotation 17"),
        "{err}"
    );
    assert!(err.contains("4 coordinates"), "{err}");
    let err = open_err(
        r#"{"id": 18, "image_id": 1, "category_id": 5, "bbox": [4, 4, 16, 16], "area": 256, "iscrowd": 0}"#,
        &one,
    );
    assert!(
        err.contains("annotation 18") && err.contains("segmentation"),
        "{err}"
    );
    let err = open_err(
        r#"{"id": 19, "image_id": 1, "category_id": 5, "bbox": [4, 4, 16, 16], "area": 256, "iscrowd": 0, "segmentation": {"size": [10, 10], "counts": [0, 100]}}"#,
        &one,
    );
    assert!(
        err.contains("annotation 19") && err.contains("10×10"),
        "{err}"
    );
    let err = open_err(
        r#"{"id": 20, "image_id": 9, "category_id": 5, "bbox": [4, 4, 16, 16], "area": 256, "iscrowd": 0, {POLY}}"#
            .replace("{POLY}", POLY)
            .as_str(),
        &one,
    );
    assert!(
        err.contains("annotation 20") && err.contains("image_id"),
        "{err}"
    );
    // Malformed JSON: the file is named.
    let err = open_err(r#"{"id": 21, "image_id": 1, "bbox": "#, &one);
    assert!(err.contains("instances_val2017.json"), "{err}");
    // A missing root names the instances file.
    let dir = tempfile::tempdir().unwrap();
    let err = CocoSplit::open(dir.path(), Split::Train)
        .unwrap_err()
        .to_string();
    assert!(err.contains("instances_train2017.json"), "{err}");
}

#[test]
fn an_image_that_does_not_decode_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let ann = format!(
        r#"{{"id": 1, "image_id": 1, "category_id": 5, "bbox": [4, 4, 16, 16], "area": 256, "iscrowd": 0, {POLY}}}"#
    );
    write_root(dir.path(), &ann, &[("broken.jpg", Some(b"not an image"))]);
    let split = Arc::new(CocoSplit::open(dir.path(), Split::Val).unwrap());
    let train = CocoTrain::new(split.clone(), TrainPipeline::default());
    let err = train.get(0, 1).unwrap_err().to_string();
    assert!(err.contains("broken.jpg"), "{err}");
    let test = CocoTest::new(split, "val2017", TestPipeline::default());
    let err = test.get(0, 0).unwrap_err().to_string();
    assert!(err.contains("broken.jpg"), "{err}");
}

#[test]
fn flips_follow_the_seed_and_targets_follow_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let ann = format!(
        r#"{{"id": 1, "image_id": 1, "category_id": 5, "bbox": [4, 4, 16, 16], "area": 256, "iscrowd": 0, {POLY}}}"#
    );
    write_root(dir.path(), &ann, &[("a.png", None)]);
    let split = Arc::new(CocoSplit::open(dir.path(), Split::Val).unwrap());
    // (96, 80): 48×40 doubles to 96×80.
    let train = CocoTrain::new(
        split,
        TrainPipeline {
            scale: (96, 80),
            flip_ratio: 0.5,
        },
    );
    let (mut flips, mut plain) = (0, 0);
    for seed in 0..16 {
        let a = train.load(0, seed).unwrap();
        let b = train.load(0, seed).unwrap();
        assert_eq!(a.flipped, b.flipped, "seed {seed}");
        assert_eq!(a.image.dims(), [3, 80, 96]);
        let boxes = &a.targets.boxes[0];
        let mask = &a.targets.masks[0];
        if a.flipped {
            flips += 1;
            assert_eq!(*boxes, [96.0 - 40.0, 8.0, 96.0 - 8.0, 40.0]);
            // The mask's rightmost column set is 96 − 1 − 8 = 87 at row 20.
            assert_eq!(mask[20 * 96 + 87], 1);
            assert_eq!(mask[20 * 96 + 8], 0);
        } else {
            plain += 1;
            assert_eq!(*boxes, [8.0, 8.0, 40.0, 40.0]);
            assert_eq!(mask[20 * 96 + 8], 1);
        }
    }
    assert!(flips > 2 && plain > 2, "{flips} flips, {plain} not");
    // Never flipping with ratio 0.
    let never = CocoTrain::new(
        Arc::new(CocoSplit::open(dir.path(), Split::Val).unwrap()),
        TrainPipeline {
            scale: (96, 80),
            flip_ratio: 0.0,
        },
    );
    assert!((0..8).all(|s| !never.load(0, s).unwrap().flipped));
}

#[test]
fn evaluation_corrupts_the_full_resolution_image_with_per_image_seeds() {
    let dir = tempfile::tempdir().unwrap();
    write_root(dir.path(), "", &[("a.png", None), ("b.png", None)]);
    let split = Arc::new(CocoSplit::open(dir.path(), Split::Val).unwrap());
    let test = CocoTest::new(split, "val2017", TestPipeline { scale: (120, 100) });
    let spec = CorruptionSpec {
        corruptor: Corruptor::new(Flavor::ImageCorruptions),
        corruption: Corruption::GaussianNoise,
        severity: Severity::new(3).unwrap(),
        seed: 4,
    };
    // By hand: decode, corrupt at 48×40 with the image's seed, then resize (48×40 → 120×100).
    let mut raw = test.load_raw(1).unwrap();
    assert_eq!(raw.key, Path::new("val2017/b.png"));
    spec.apply(&mut raw, 1).unwrap();
    let (resized, _) = rtb_coco::transforms::resize_image(&raw.image, (120, 100)).unwrap();
    let expected = rtb_coco::transforms::normalize(&resized);
    let corrupted = test.clone().with_corruption(spec);
    let sample = corrupted.get(1, 0).unwrap();
    assert_eq!(sample.original, (40, 48));
    assert_eq!(sample.image.dims(), [3, 100, 120]);
    let got: Vec<f32> = sample.image.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(got, expected);
    let clean: Vec<f32> = test
        .get(1, 0)
        .unwrap()
        .image
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_ne!(got, clean);
    // The same image corrupts identically every time (the seed is per image, not per call).
    let again: Vec<f32> = corrupted
        .get(1, 9)
        .unwrap()
        .image
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(got, again);
}
