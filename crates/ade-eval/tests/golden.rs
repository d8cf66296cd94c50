//! Parity with mmsegmentation 1.2.2 on the fixtures that `golden/make_golden.py` wrote from
//! mmseg's own LoadAnnotations, IoUMetric.intersect_and_union and total_area_to_metrics.

use std::path::{Path, PathBuf};

use rtb_ade_eval::{
    ADE20K_CLASSES, EvalConfig, IouAccumulator, Metrics, evaluate_dirs, mmseg_round, read_label_png,
};
use serde_json::Value;

const TOLERANCE: f64 = 1e-12;

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cases")
}

fn cases() -> Vec<(PathBuf, Value)> {
    let mut found: Vec<_> = std::fs::read_dir(cases_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|dir| {
            let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
            (dir, serde_json::from_str(&text).unwrap())
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        found.len() >= 8,
        "expected the 8 golden cases, found {}",
        found.len()
    );
    found
}

fn config_of(expected: &Value) -> EvalConfig {
    EvalConfig::new(expected["num_classes"].as_u64().unwrap() as usize)
        .with_reduce_zero_label(expected["reduce_zero_label"].as_bool().unwrap())
        .with_ignore_index(expected["ignore_index"].as_u64().map(|v| v as u8))
}

fn counts(value: &Value) -> Vec<u64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

/// A float or null (NaN) from the fixture.
fn float(value: &Value) -> f64 {
    value.as_f64().unwrap_or(f64::NAN)
}

fn floats(value: &Value) -> Vec<f64> {
    value.as_array().unwrap().iter().map(float).collect()
}

fn assert_close(case: &str, what: &str, ours: f64, theirs: f64) {
    if theirs.is_nan() {
        assert!(ours.is_nan(), "{case} {what}: ours {ours}, mmseg NaN");
    } else {
        assert!(
            (ours - theirs).abs() <= TOLERANCE,
            "{case} {what}: ours {ours}, mmseg {theirs}"
        );
    }
}

fn assert_all_close(case: &str, what: &str, ours: &[f64], theirs: &[f64]) {
    assert_eq!(ours.len(), theirs.len(), "{case} {what}");
    for (class, (&o, &t)) in ours.iter().zip(theirs).enumerate() {
        assert_close(case, &format!("{what}[{class}]"), o, t);
    }
}

fn areas(acc: &IouAccumulator) -> Vec<Vec<u64>> {
    vec![
        acc.intersect().to_vec(),
        acc.union().to_vec(),
        acc.pred_area().to_vec(),
        acc.label_area().to_vec(),
    ]
}

#[test]
fn per_image_areas_equal_mmseg_intersect_and_union() {
    for (dir, expected) in cases() {
        let case = dir.file_name().unwrap().to_string_lossy().to_string();
        let config = config_of(&expected);
        for (file, image_areas) in expected["files"]
            .as_array()
            .unwrap()
            .iter()
            .zip(expected["per_image_areas"].as_array().unwrap())
        {
            let file = file.as_str().unwrap();
            let label = read_label_png(&dir.join("gt").join(file)).unwrap();
            let pred = read_label_png(&dir.join("pred").join(file)).unwrap();
            let mut acc = IouAccumulator::new(config).unwrap();
            acc.add_map(&label, &pred).unwrap();
            let theirs: Vec<Vec<u64>> =
                image_areas.as_array().unwrap().iter().map(counts).collect();
            assert_eq!(areas(&acc), theirs, "{case}/{file}");
        }
    }
}

#[test]
fn folder_evaluation_equals_mmseg_total_area_to_metrics() {
    for (dir, expected) in cases() {
        let case = dir.file_name().unwrap().to_string_lossy().to_string();
        let config = config_of(&expected);
        let evaluation = evaluate_dirs(&dir.join("gt"), &dir.join("pred"), config, &|| {}).unwrap();
        let acc = &evaluation.accumulator;
        assert_eq!(
            evaluation.files,
            expected["files"].as_array().unwrap().len()
        );
        assert!(evaluation.unmatched_predictions.is_empty());
        let totals: Vec<Vec<u64>> = expected["total_areas"]
            .as_array()
            .unwrap()
            .iter()
            .map(counts)
            .collect();
        assert_eq!(areas(acc), totals, "{case}");

        let metrics = acc.metrics();
        let want = &expected["metrics"];
        assert_close(&case, "aAcc", metrics.a_acc, float(&want["aAcc"]));
        assert_close(&case, "mIoU", metrics.m_iou, float(&want["mIoU"]));
        assert_close(&case, "mAcc", metrics.m_acc, float(&want["mAcc"]));
        assert_all_close(&case, "IoU", &metrics.iou, &floats(&want["IoU"]));
        assert_all_close(&case, "Acc", &metrics.acc, &floats(&want["Acc"]));
        check_display(&case, &metrics, &expected);
    }
}

/// mmseg's printed numbers: np.round(100·x, 2), from float64 totals and from mmseg 1.x's own
/// float32 path (equal on these small fixtures, where float32 sums are exact).
fn check_display(case: &str, metrics: &Metrics, expected: &Value) {
    let display = &expected["display"];
    let same = |what: &str, ours: f64, theirs: f64| {
        assert!(
            ours == theirs || (ours.is_nan() && theirs.is_nan()),
            "{case} display {what}: ours {ours}, mmseg {theirs}"
        );
    };
    same("aAcc", mmseg_round(metrics.a_acc), float(&display["aAcc"]));
    same("mIoU", mmseg_round(metrics.m_iou), float(&display["mIoU"]));
    same("mAcc", mmseg_round(metrics.m_acc), float(&display["mAcc"]));
    for (class, (&ours, theirs)) in metrics.iou.iter().zip(floats(&display["IoU"])).enumerate() {
        same(&format!("IoU[{class}]"), mmseg_round(ours), theirs);
    }
    for (class, (&ours, theirs)) in metrics.acc.iter().zip(floats(&display["Acc"])).enumerate() {
        same(&format!("Acc[{class}]"), mmseg_round(ours), theirs);
    }
    let native = &expected["native_float32_display"];
    for (what, ours) in [
        ("aAcc", metrics.a_acc),
        ("mIoU", metrics.m_iou),
        ("mAcc", metrics.m_acc),
    ] {
        let theirs = float(&native[what]) as f32;
        assert_eq!(mmseg_round(ours) as f32, theirs, "{case} native {what}");
    }
}

#[test]
fn merged_shards_equal_one_pass() {
    for (dir, expected) in cases() {
        let config = config_of(&expected);
        let files: Vec<&str> = expected["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        let mut one_pass = IouAccumulator::new(config).unwrap();
        let mut shards = Vec::new();
        for file in &files {
            let label = read_label_png(&dir.join("gt").join(file)).unwrap();
            let pred = read_label_png(&dir.join("pred").join(file)).unwrap();
            one_pass.add_map(&label, &pred).unwrap();
            // Each image split in two row bands, each band a shard of its own.
            let cut = label.data().len() / 2;
            for range in [0..cut, cut..label.data().len()] {
                let mut shard = IouAccumulator::new(config).unwrap();
                shard
                    .add(&label.data()[range.clone()], &pred.data()[range])
                    .unwrap();
                shards.push(shard.to_json());
            }
        }
        let mut merged = IouAccumulator::new(config).unwrap();
        for (index, json) in shards.iter().enumerate().rev() {
            merged
                .merge(&IouAccumulator::from_json(json, format!("shard-{index}.json")).unwrap())
                .unwrap();
        }
        assert_eq!(areas(&merged), areas(&one_pass), "{}", dir.display());
        assert_eq!(merged.images(), 2 * one_pass.images());
        assert_eq!(
            format!("{:?}", merged.metrics()),
            format!("{:?}", one_pass.metrics())
        );
    }
}

#[test]
fn class_names_equal_mmseg_ade20k_dataset() {
    let text = std::fs::read_to_string(cases_dir().join("classes.json")).unwrap();
    let theirs: Vec<String> = serde_json::from_str(&text).unwrap();
    assert_eq!(ADE20K_CLASSES.to_vec(), theirs);
}

#[test]
fn rounding_equals_numpy_round() {
    let text = std::fs::read_to_string(cases_dir().join("rounding.json")).unwrap();
    let pairs: Vec<(f64, f64)> = serde_json::from_str(&text).unwrap();
    assert!(pairs.len() > 100);
    for (fraction, theirs) in pairs {
        assert_eq!(
            mmseg_round(fraction),
            theirs,
            "np.round({fraction} * 100, 2)"
        );
    }
}
