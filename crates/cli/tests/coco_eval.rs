//! `rtb coco-eval` as a user runs it: pycocotools' 12 lines on stdout, the stats as JSON, and
//! errors that name the file.

use std::path::{Path, PathBuf};
use std::process::Command;

fn case(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../coco-eval/tests/golden/cases")
        .join(name)
}

fn expected(name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(case(name).join("expected.json")).unwrap()).unwrap()
}

fn rtb(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rtb"))
        .args(args)
        .output()
        .expect("rtb runs")
}

#[test]
fn prints_pycocotools_summary_and_writes_json() {
    for (name, iou_type) in [("bbox_default", "bbox"), ("segm_rle_results", "segm")] {
        let dir = case(name);
        let out_dir = tempfile::tempdir().unwrap();
        let json_path = out_dir.path().join("stats.json");
        let out = rtb(&[
            "coco-eval",
            "--gt",
            dir.join("gt.json").to_str().unwrap(),
            "--dt",
            dir.join("dt.json").to_str().unwrap(),
            "--iou-type",
            iou_type,
            "--json",
            json_path.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = expected(name);
        let lines: Vec<&str> = expected["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            lines.join("\n") + "\n"
        );

        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
        assert_eq!(written["iou_type"], iou_type);
        assert_eq!(written["stats"], expected["stats"], "{name}");
        assert_eq!(written["named"]["AP"], expected["stats"][0]);
        assert!(!out_dir.path().join("stats.json.part").exists());
    }
}

#[test]
fn quirks_are_warned_on_stderr() {
    let dir = case("bbox_default");
    let out = rtb(&[
        "coco-eval",
        "--gt",
        dir.join("gt.json").to_str().unwrap(),
        "--dt",
        dir.join("dt.json").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("have id 0"), "{stderr}");
}

#[test]
fn bad_input_is_an_error_naming_the_file() {
    let dir = case("bbox_default");
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("dt.json");
    std::fs::write(
        &bad,
        r#"[{"image_id": 424242, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]"#,
    )
    .unwrap();
    let out = rtb(&[
        "coco-eval",
        "--gt",
        dir.join("gt.json").to_str().unwrap(),
        "--dt",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("dt.json: results[0] has image_id 424242"),
        "{stderr}"
    );

    let missing = tmp.path().join("missing.json");
    let out = rtb(&[
        "coco-eval",
        "--gt",
        missing.to_str().unwrap(),
        "--dt",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("missing.json")
    );

    let out = rtb(&[
        "coco-eval",
        "--gt",
        "a",
        "--dt",
        "b",
        "--iou-type",
        "keypoints",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("unknown iou type")
    );
}
