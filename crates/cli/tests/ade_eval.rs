//! `rtb ade-eval` on rtb-ade-eval's golden fixtures (made from mmseg 1.2.2).

use std::path::{Path, PathBuf};
use std::process::Command;

fn case(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ade-eval/tests/golden/cases")
        .join(name)
}

fn rtb(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rtb"))
        .args(args)
        .output()
        .expect("rtb runs")
}

#[test]
fn ade_eval_prints_mmseg_numbers_and_writes_json() {
    let dir = case("blocky_ade_reduce");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let json_path = out_dir.path().join("metrics.json");
    let out = rtb(&[
        "ade-eval",
        "--gt",
        dir.join("gt").to_str().unwrap(),
        "--pred",
        dir.join("pred").to_str().unwrap(),
        "--reduce-zero-label",
        "--json",
        json_path.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The summary line holds mmseg's rounded aAcc, mIoU, mAcc.
    let display = &expected["display"];
    let summary = format!(
        "{:>7.2}  {:>7.2}  {:>7.2}",
        display["aAcc"].as_f64().unwrap(),
        display["mIoU"].as_f64().unwrap(),
        display["mAcc"].as_f64().unwrap()
    );
    assert!(stdout.contains(&summary), "{summary} not in\n{stdout}");
    assert!(stdout.contains("windowpane"), "{stdout}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let metrics = &expected["metrics"];
    for key in ["aAcc", "mIoU", "mAcc"] {
        let ours = report[key].as_f64().unwrap();
        let theirs = metrics[key].as_f64().unwrap();
        assert!((ours - theirs).abs() <= 1e-12, "{key}: {ours} vs {theirs}");
    }
    let per_class = report["per_class"].as_array().unwrap();
    assert_eq!(per_class.len(), 150);
    assert_eq!(per_class[7]["name"], "bed ");
    for (class, entry) in per_class.iter().enumerate() {
        for (ours_key, theirs_key) in [("iou", "IoU"), ("acc", "Acc")] {
            let theirs = &metrics[theirs_key][class];
            let ours = &entry[ours_key];
            if theirs.is_null() {
                assert!(ours.is_null(), "class {class} {ours_key}: {ours}");
            } else {
                let (o, t) = (ours.as_f64().unwrap(), theirs.as_f64().unwrap());
                assert!((o - t).abs() <= 1e-12 && (0.0..=1.0).contains(&o));
            }
        }
    }
}

#[test]
fn ade_eval_reports_a_missing_prediction_by_name() {
    let dir = case("perfect_19");
    let pred = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("pred/000.png"), pred.path().join("000.png")).unwrap();
    let out = rtb(&[
        "ade-eval",
        "--gt",
        dir.join("gt").to_str().unwrap(),
        "--pred",
        pred.path().to_str().unwrap(),
        "--num-classes",
        "19",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("001.png") && stderr.contains("no matching prediction"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn synth_writes_an_ade_layout_that_ade_eval_reads() {
    let out = tempfile::tempdir().unwrap();
    let root = out.path().join("ade");
    let run = rtb(&[
        "synth",
        "--kind",
        "ade",
        "--out",
        root.to_str().unwrap(),
        "--seed",
        "5",
        "--count",
        "10",
        "--num-classes",
        "4",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8(run.stdout).unwrap();
    assert!(stdout.contains("10 training + 2 validation"), "{stdout}");
    let annotations = root.join("annotations/validation");
    // Ground truth against itself as raw values is an error: stored k + 1 = 4 is no class.
    let eval = rtb(&[
        "ade-eval",
        "--gt",
        annotations.to_str().unwrap(),
        "--pred",
        annotations.to_str().unwrap(),
        "--num-classes",
        "4",
        "--reduce-zero-label",
    ]);
    assert!(!eval.status.success());
    let stderr = String::from_utf8(eval.stderr).unwrap();
    assert!(stderr.contains("prediction value 4"), "{stderr}");
    assert!(stderr.contains("ADE_val_0000000"), "{stderr}");
}
