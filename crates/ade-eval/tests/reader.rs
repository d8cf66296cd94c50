//! The ADEChallengeData2016 layout reader on a tiny dataset written here.

use std::path::Path;

use rtb_ade_eval::{AdeDataset, AdeError, LabelMap, Split, write_label_png};

fn write_jpeg(path: &Path, width: u32, height: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(width, height, image::Rgb([10, 200, 30]))
        .save(path)
        .unwrap();
}

fn write_annotation(path: &Path, width: u32, height: u32, value: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let map = LabelMap::new(width, height, vec![value; (width * height) as usize]).unwrap();
    write_label_png(path, &map).unwrap();
}

fn dataset() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (stem, w, h) in [("ADE_val_00000002", 7, 5), ("ADE_val_00000001", 4, 6)] {
        write_jpeg(&root.join(format!("images/validation/{stem}.jpg")), w, h);
        write_annotation(
            &root.join(format!("annotations/validation/{stem}.png")),
            w,
            h,
            0,
        );
    }
    write_jpeg(&root.join("images/training/ADE_train_00000001.jpg"), 3, 3);
    write_annotation(
        &root.join("annotations/training/ADE_train_00000001.png"),
        3,
        3,
        151,
    );
    dir
}

#[test]
fn pairs_are_sorted_by_stem_and_sizes_check() {
    let dir = dataset();
    let validation = AdeDataset::open(dir.path(), Split::Validation).unwrap();
    assert_eq!(validation.len(), 2);
    let stems: Vec<&str> = validation
        .samples()
        .iter()
        .map(|s| s.stem.as_str())
        .collect();
    assert_eq!(stems, ["ADE_val_00000001", "ADE_val_00000002"]);
    assert!(
        validation.samples()[0]
            .image
            .ends_with("images/validation/ADE_val_00000001.jpg")
    );
    validation.check().unwrap();
    let training = AdeDataset::open(dir.path(), Split::Training).unwrap();
    assert_eq!(training.len(), 1);
    training.check().unwrap();
}

#[test]
fn reduce_zero_label_maps_zero_to_ignore_and_shifts_the_rest() {
    let dir = dataset();
    let validation = AdeDataset::open(dir.path(), Split::Validation).unwrap();
    assert!(
        validation
            .annotation(0, true)
            .unwrap()
            .data()
            .iter()
            .all(|&v| v == 255)
    );
    assert!(
        validation
            .annotation(0, false)
            .unwrap()
            .data()
            .iter()
            .all(|&v| v == 0)
    );
    let training = AdeDataset::open(dir.path(), Split::Training).unwrap();
    assert!(
        training
            .annotation(0, true)
            .unwrap()
            .data()
            .iter()
            .all(|&v| v == 150)
    );
    let mut values: Vec<u8> = (0..=255).collect();
    rtb_ade_eval::reduce_zero_label(&mut values);
    assert_eq!(values[0], 255);
    assert_eq!(values[1], 0);
    assert_eq!(values[150], 149);
    assert_eq!(values[255], 255);
}

#[test]
fn an_image_without_annotation_is_an_error_naming_both_paths() {
    let dir = dataset();
    write_jpeg(
        &dir.path().join("images/validation/ADE_val_00000003.jpg"),
        2,
        2,
    );
    let err = AdeDataset::open(dir.path(), Split::Validation).unwrap_err();
    assert!(
        matches!(
            err,
            AdeError::Missing {
                missing: "annotation",
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("ADE_val_00000003.jpg"), "{text}");
    assert!(
        text.contains("annotations/validation/ADE_val_00000003.png"),
        "{text}"
    );
}

#[test]
fn an_annotation_without_image_is_an_error() {
    let dir = dataset();
    write_annotation(
        &dir.path()
            .join("annotations/validation/ADE_val_00000009.png"),
        2,
        2,
        1,
    );
    let err = AdeDataset::open(dir.path(), Split::Validation).unwrap_err();
    assert!(
        matches!(
            err,
            AdeError::Missing {
                missing: "image",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("ADE_val_00000009"), "{err}");
}

#[test]
fn a_size_mismatch_names_the_annotation_and_the_image() {
    let dir = dataset();
    write_annotation(
        &dir.path()
            .join("annotations/validation/ADE_val_00000002.png"),
        5,
        7,
        1,
    );
    let dataset = AdeDataset::open(dir.path(), Split::Validation).unwrap();
    let err = dataset.check().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, AdeError::SizeMismatch { .. }), "{text}");
    assert!(
        text.contains("ADE_val_00000002.png") && text.contains("ADE_val_00000002.jpg"),
        "{text}"
    );
    assert!(text.contains("5×7") && text.contains("7×5"), "{text}");
}

#[test]
fn a_missing_split_folder_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = AdeDataset::open(dir.path(), Split::Validation).unwrap_err();
    assert!(err.to_string().contains("images/validation"), "{err}");
}
