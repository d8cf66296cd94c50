//! Bad input gets an error value that names the file, never a panic.

use std::path::Path;

use rtb_ade_eval::{
    AdeError, EvalConfig, LabelMap, evaluate_dirs, read_label_png, write_label_png,
};

fn write(path: &Path, width: u32, height: u32, values: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    write_label_png(
        path,
        &LabelMap::new(width, height, values.to_vec()).unwrap(),
    )
    .unwrap();
}

fn write_png(path: &Path, color: png::ColorType, depth: png::BitDepth, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut encoder = png::Encoder::new(file, 2, 2);
    encoder.set_color(color);
    encoder.set_depth(depth);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(data).unwrap();
    writer.finish().unwrap();
}

/// A gt/pred folder pair with two good files; returns (tempdir, gt, pred).
fn folders() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let gt = dir.path().join("gt");
    let pred = dir.path().join("pred");
    for name in ["a.png", "b.png"] {
        write(&gt.join(name), 2, 2, &[0, 1, 2, 255]);
        write(&pred.join(name), 2, 2, &[0, 1, 1, 0]);
    }
    (dir, gt, pred)
}

fn evaluate(gt: &Path, pred: &Path) -> Result<rtb_ade_eval::DirEvaluation, AdeError> {
    evaluate_dirs(gt, pred, EvalConfig::new(3), &|| {})
}

#[test]
fn good_folders_evaluate() {
    let (_dir, gt, pred) = folders();
    let result = evaluate(&gt, &pred).unwrap();
    assert_eq!(result.files, 2);
    assert_eq!(result.accumulator.label_area(), &[2, 2, 2]);
}

#[test]
fn size_mismatch_names_the_prediction_and_the_label() {
    let (_dir, gt, pred) = folders();
    write(&pred.join("b.png"), 1, 4, &[0, 0, 0, 0]);
    let err = evaluate(&gt, &pred).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, AdeError::SizeMismatch { .. }), "{text}");
    assert!(
        text.contains(&pred.join("b.png").display().to_string()),
        "{text}"
    );
    assert!(
        text.contains(&gt.join("b.png").display().to_string()),
        "{text}"
    );
    assert!(text.contains("1×4") && text.contains("2×2"), "{text}");
}

#[test]
fn label_value_above_the_class_count_names_the_ground_truth_file() {
    let (_dir, gt, pred) = folders();
    write(&gt.join("a.png"), 2, 2, &[0, 1, 3, 255]);
    let err = evaluate(&gt, &pred).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&gt.join("a.png").display().to_string()),
        "{text}"
    );
    assert!(text.contains("label value 3 at pixel 2"), "{text}");
    // 255 is the ignore index, not an error.
    write(&gt.join("a.png"), 2, 2, &[255, 255, 255, 255]);
    evaluate(&gt, &pred).unwrap();
}

#[test]
fn prediction_value_above_the_class_count_names_the_prediction_file() {
    let (_dir, gt, pred) = folders();
    write(&pred.join("b.png"), 2, 2, &[0, 9, 1, 0]);
    let text = evaluate(&gt, &pred).unwrap_err().to_string();
    assert!(
        text.contains(&pred.join("b.png").display().to_string()),
        "{text}"
    );
    assert!(text.contains("prediction value 9 at pixel 1"), "{text}");
}

#[test]
fn missing_prediction_names_the_path_looked_for() {
    let (_dir, gt, pred) = folders();
    std::fs::remove_file(pred.join("a.png")).unwrap();
    let err = evaluate(&gt, &pred).unwrap_err();
    assert!(
        matches!(
            err,
            AdeError::Missing {
                missing: "prediction",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&pred.join("a.png").display().to_string()),
        "{err}"
    );
}

#[test]
fn missing_or_empty_folders_are_errors() {
    let (dir, gt, _pred) = folders();
    let err = evaluate(&gt, &dir.path().join("nowhere")).unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = evaluate(&empty, &gt).unwrap_err();
    assert!(matches!(err, AdeError::Empty { .. }), "{err}");
}

#[test]
fn extra_predictions_are_reported_not_evaluated() {
    let (_dir, gt, pred) = folders();
    write(&pred.join("extra.png"), 2, 2, &[0, 0, 0, 0]);
    let result = evaluate(&gt, &pred).unwrap();
    assert_eq!(result.files, 2);
    assert_eq!(result.unmatched_predictions, vec![pred.join("extra.png")]);
}

#[test]
fn non_eight_bit_pngs_are_errors_naming_the_file() {
    let (dir, gt, pred) = folders();
    let cases: [(&str, png::ColorType, png::BitDepth, Vec<u8>, &str); 4] = [
        (
            "rgb.png",
            png::ColorType::Rgb,
            png::BitDepth::Eight,
            vec![0; 12],
            "Rgb with 8-bit",
        ),
        (
            "gray16.png",
            png::ColorType::Grayscale,
            png::BitDepth::Sixteen,
            vec![0; 8],
            "Grayscale with 16-bit",
        ),
        (
            "gray4.png",
            png::ColorType::Grayscale,
            png::BitDepth::Four,
            vec![0; 2],
            "Grayscale with 4-bit",
        ),
        (
            "alpha.png",
            png::ColorType::GrayscaleAlpha,
            png::BitDepth::Eight,
            vec![0; 8],
            "GrayscaleAlpha with 8-bit",
        ),
    ];
    for (name, color, depth, data, found) in cases {
        let path = dir.path().join(name);
        write_png(&path, color, depth, &data);
        let err = read_label_png(&path).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, AdeError::NotEightBit { .. }), "{text}");
        assert!(
            text.contains(&path.display().to_string()) && text.contains(found),
            "{text}"
        );
        // The same through folder evaluation, as a prediction.
        std::fs::copy(&path, pred.join("a.png")).unwrap();
        let text = evaluate(&gt, &pred).unwrap_err().to_string();
        assert!(
            text.contains(&pred.join("a.png").display().to_string()),
            "{text}"
        );
    }
}

#[test]
fn palette_pngs_are_read_as_indices() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.png");
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut encoder = png::Encoder::new(file, 2, 2);
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_palette(
        (0..=255u8)
            .flat_map(|i| [i, 255 - i, 7])
            .collect::<Vec<u8>>(),
    );
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&[3, 200, 0, 17]).unwrap();
    writer.finish().unwrap();
    assert_eq!(read_label_png(&path).unwrap().data(), &[3, 200, 0, 17]);
}

#[test]
fn truncated_and_non_png_files_are_errors_naming_the_file() {
    let (dir, _gt, _pred) = folders();
    let path = dir.path().join("gt/a.png");
    let bytes = std::fs::read(&path).unwrap();
    let truncated = dir.path().join("truncated.png");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = read_label_png(&truncated).unwrap_err();
    assert!(err.to_string().contains("truncated.png"), "{err}");
    let text_file = dir.path().join("text.png");
    std::fs::write(&text_file, b"not a png at all").unwrap();
    let err = read_label_png(&text_file).unwrap_err();
    assert!(matches!(err, AdeError::Png { .. }), "{err}");
    assert!(err.to_string().contains("text.png"), "{err}");
}

#[test]
fn in_memory_errors() {
    assert!(matches!(
        LabelMap::new(3, 2, vec![0; 5]),
        Err(AdeError::BufferLength { expected: 6, .. })
    ));
    let mut acc = rtb_ade_eval::IouAccumulator::new(EvalConfig::new(3)).unwrap();
    assert!(matches!(
        acc.add(&[0, 1], &[0]),
        Err(AdeError::LengthMismatch {
            label_len: 2,
            pred_len: 1
        })
    ));
    assert!(matches!(
        rtb_ade_eval::IouAccumulator::new(EvalConfig::new(0)),
        Err(AdeError::Config { .. })
    ));
    assert!(matches!(
        rtb_ade_eval::IouAccumulator::new(EvalConfig::new(257)),
        Err(AdeError::Config { .. })
    ));
    let other = rtb_ade_eval::IouAccumulator::new(EvalConfig::new(4)).unwrap();
    assert!(matches!(
        acc.merge(&other),
        Err(AdeError::Incompatible { .. })
    ));
    let err = rtb_ade_eval::IouAccumulator::from_json("{\"oops\": 1}", "shard.json").unwrap_err();
    assert!(err.to_string().contains("shard.json"), "{err}");
    // Counts that cannot come from any image are refused.
    let mut json: serde_json::Value = serde_json::from_str(&acc.to_json()).unwrap();
    json["intersect"][0] = 5.into();
    let err = rtb_ade_eval::IouAccumulator::from_json(&json.to_string(), "bad.json").unwrap_err();
    assert!(err.to_string().contains("inconsistent"), "{err}");
}
