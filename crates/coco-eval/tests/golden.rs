//! Parity with pycocotools 2.0.11 on the synthetic sets of `tests/golden/make_golden.py`:
//! the 12 stats, the printed lines and the full precision / recall / scores arrays, bit for bit,
//! with 1, 2 and 3 worker threads.

use std::path::{Path, PathBuf};

use rtb_coco_eval::{CocoEval, CocoGt, Detections, EvalWarning, IouType, Params};
use serde_json::Value;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Reads a little-endian float64 `.npy` array (the only kind the script writes).
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f64>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}", path.display());
    let (header_len, header_start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[header_start..header_start + header_len]).unwrap();
    assert!(header.contains("'descr': '<f8'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap();
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let data = &bytes[header_start + header_len..];
    let values: Vec<f64> = data
        .chunks_exact(8)
        .map(|chunk| f64::from_le_bytes(chunk.try_into().unwrap()))
        .collect();
    assert_eq!(values.len(), shape.iter().product::<usize>());
    (shape, values)
}

fn params_from_json(spec: &Value) -> Params {
    let iou_type: IouType = spec["iou_type"].as_str().unwrap().parse().unwrap();
    let mut params = Params::new(iou_type);
    let floats = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    if let Some(ids) = spec.get("img_ids") {
        params.img_ids = Some(
            ids.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect(),
        );
    }
    if let Some(ids) = spec.get("cat_ids") {
        params.cat_ids = Some(
            ids.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect(),
        );
    }
    if let Some(v) = spec.get("iou_thrs") {
        params.iou_thrs = floats(v);
    }
    if let Some(v) = spec.get("rec_thrs") {
        params.rec_thrs = floats(v);
    }
    if let Some(v) = spec.get("max_dets") {
        params.max_dets = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
    }
    if let Some(v) = spec.get("area_rng") {
        params.area_rng = v
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                let pair = floats(pair);
                [pair[0], pair[1]]
            })
            .collect();
        params.area_rng_lbl = spec["area_rng_lbl"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect();
    }
    if let Some(v) = spec.get("use_cats") {
        params.use_cats = v.as_bool().unwrap();
    }
    params
}

fn assert_bits_equal(name: &str, what: &str, got: &[f64], expected: &[f64]) {
    assert_eq!(got.len(), expected.len(), "{name}: {what} length");
    let mismatches: Vec<(usize, f64, f64)> = got
        .iter()
        .zip(expected)
        .enumerate()
        .filter(|(_, (g, e))| g.to_bits() != e.to_bits())
        .map(|(i, (g, e))| (i, *g, *e))
        .take(5)
        .collect();
    assert!(
        mismatches.is_empty(),
        "{name}: {what} differs at (index, got, expected) {mismatches:?}"
    );
}

fn check_case(name: &str, threads: usize) {
    let dir = golden_dir().join("cases").join(name);
    let gt = CocoGt::from_path(dir.join("gt.json")).unwrap();
    let dt = Detections::from_path(dir.join("dt.json"), &gt).unwrap();
    let spec: Value =
        serde_json::from_slice(&std::fs::read(dir.join("params.json")).unwrap()).unwrap();
    let expected: Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let params = params_from_json(&spec);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let report = pool.install(|| CocoEval::new(&gt, &dt, params).run().unwrap());

    let floats = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let accumulation = &report.accumulation;
    assert_bits_equal(
        name,
        "iouThrs",
        &accumulation.params().iou_thrs,
        &floats(&expected["iou_thrs"]),
    );
    assert_bits_equal(
        name,
        "recThrs",
        &accumulation.params().rec_thrs,
        &floats(&expected["rec_thrs"]),
    );
    let counts: Vec<usize> = expected["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(accumulation.shape().to_vec(), counts, "{name}: shape");
    for (what, got) in [
        ("precision", accumulation.precision()),
        ("recall", accumulation.recall()),
        ("scores", accumulation.scores()),
    ] {
        let (shape, values) = read_npy(&dir.join(format!("{what}.npy")));
        let expected_shape: Vec<usize> = if what == "recall" {
            vec![counts[0], counts[2], counts[3], counts[4]]
        } else {
            counts.clone()
        };
        assert_eq!(shape, expected_shape, "{name}: {what} shape");
        assert_bits_equal(name, what, got, &values);
    }
    assert_bits_equal(
        name,
        "stats",
        &report.summary.stats,
        &floats(&expected["stats"]),
    );
    let lines: Vec<&str> = expected["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(
        report.summary.lines(),
        lines.as_slice(),
        "{name}: summary lines"
    );
}

const CASES: [&str; 7] = [
    "bbox_default",
    "bbox_pooled",
    "bbox_custom_params",
    "segm_rle_results",
    "bbox_from_mask_results",
    "segm_bbox_results",
    "segm_pooled_small_grid",
];

#[test]
fn every_case_matches_pycocotools_bit_for_bit() {
    for name in CASES {
        check_case(name, 2);
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    for name in ["bbox_default", "segm_rle_results"] {
        check_case(name, 1);
        check_case(name, 3);
    }
}

#[test]
fn quirks_are_reported_as_warnings() {
    let dir = golden_dir().join("cases");
    let gt = CocoGt::from_path(dir.join("bbox_default/gt.json")).unwrap();
    let dt = Detections::from_path(dir.join("bbox_default/dt.json"), &gt).unwrap();
    let evaluation = CocoEval::new(&gt, &dt, Params::new(IouType::Bbox))
        .evaluate()
        .unwrap();
    assert!(
        evaluation
            .warnings()
            .contains(&EvalWarning::AnnotationIdZero { count: 1 }),
        "{:?}",
        evaluation.warnings()
    );
    assert!(
        evaluation
            .warnings()
            .iter()
            .any(|w| matches!(w, EvalWarning::DetectionsOutsideCategories { count } if *count > 0)),
        "{:?}",
        evaluation.warnings()
    );

    let gt = CocoGt::from_path(dir.join("segm_rle_results/gt.json")).unwrap();
    let dt = Detections::from_path(dir.join("segm_rle_results/dt.json"), &gt).unwrap();
    let evaluation = CocoEval::new(&gt, &dt, Params::new(IouType::Segm))
        .evaluate()
        .unwrap();
    assert!(
        evaluation
            .warnings()
            .contains(&EvalWarning::DuplicateAnnotationIds { count: 1 }),
        "{:?}",
        evaluation.warnings()
    );
}
