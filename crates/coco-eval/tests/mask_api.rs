//! The mask API against pycocotools 2.0.11 (`tests/golden/mask_api.json`): encode, decode,
//! the compressed codec, polygon and box rasterisation, area, toBbox, IoU (with crowd) and
//! merge, all exact.

use std::path::Path;

use rtb_coco_eval::Rle;
use rtb_coco_eval::mask::{bbox_ious, rle_iou};
use serde_json::Value;

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/mask_api.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn size(case: &Value) -> (u32, u32) {
    (
        case["size"][0].as_u64().unwrap() as u32,
        case["size"][1].as_u64().unwrap() as u32,
    )
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap()
}

#[test]
fn encode_decode_area_and_box() {
    let fixture = fixture();
    for case in fixture["encode"].as_array().unwrap() {
        let (h, w) = size(case);
        let mask: Vec<u8> = case["mask_column_major"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u8)
            .collect();
        let rle = Rle::encode(&mask, h, w).unwrap();
        assert_eq!(rle.to_compressed(), text(&case["counts"]));
        assert_eq!(rle.decode(), mask);
        assert_eq!(u64::from(rle.area()), case["area"].as_u64().unwrap());
        assert_eq!(rle.to_bbox().to_vec(), floats(&case["bbox"]));
        let parsed = Rle::from_compressed(text(&case["counts"]), h, w).unwrap();
        assert_eq!(parsed, rle);
        // Row-major helpers are the transpose of the same mask.
        let row_major = rle.decode_row_major();
        assert_eq!(Rle::encode_row_major(&row_major, h, w).unwrap(), rle);
    }
}

#[test]
fn polygons_rasterise_like_fr_poly() {
    let fixture = fixture();
    for case in fixture["polygon"].as_array().unwrap() {
        let (h, w) = size(case);
        let polygon = floats(&case["polygon"]);
        let rle = Rle::from_polygon(&polygon, h, w);
        assert_eq!(
            rle.to_compressed(),
            text(&case["counts"]),
            "polygon {polygon:?} on {h}x{w}"
        );
        assert_eq!(u64::from(rle.area()), case["area"].as_u64().unwrap());
        assert_eq!(rle.to_bbox().to_vec(), floats(&case["bbox"]));
    }
}

#[test]
fn boxes_rasterise_like_fr_bbox() {
    let fixture = fixture();
    for case in fixture["bbox"].as_array().unwrap() {
        let (h, w) = size(case);
        let b = floats(&case["bbox"]);
        let rle = Rle::from_bbox([b[0], b[1], b[2], b[3]], h, w);
        assert_eq!(rle.to_compressed(), text(&case["counts"]), "box {b:?}");
    }
}

#[test]
fn iou_with_crowd_matches() {
    let fixture = fixture();
    for case in fixture["iou"].as_array().unwrap() {
        let (h, w) = size(case);
        let parse = |list: &Value| -> Vec<Rle> {
            list.as_array()
                .unwrap()
                .iter()
                .map(|c| Rle::from_compressed(text(c), h, w).unwrap())
                .collect()
        };
        let flags = |list: &Value| -> Vec<bool> {
            list.as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().unwrap() != 0)
                .collect()
        };
        let dts = parse(&case["dt"]);
        let gts = parse(&case["gt"]);
        let ious = rle_iou(&dts, &gts, &flags(&case["crowd"]));
        let expected: Vec<f64> = case["iou"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(floats)
            .collect();
        assert_eq!(ious, expected);

        let boxes = |list: &Value| -> Vec<[f64; 4]> {
            list.as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    let b = floats(b);
                    [b[0], b[1], b[2], b[3]]
                })
                .collect()
        };
        let box_ious = bbox_ious(
            &boxes(&case["box_dt"]),
            &boxes(&case["box_gt"]),
            &flags(&case["box_crowd"]),
        );
        let expected: Vec<f64> = case["box_iou"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(floats)
            .collect();
        assert_eq!(box_ious, expected);
    }
}

#[test]
fn merge_union_and_intersection() {
    let fixture = fixture();
    for case in fixture["merge"].as_array().unwrap() {
        let (h, w) = size(case);
        let rles: Vec<Rle> = case["rles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| Rle::from_compressed(text(c), h, w).unwrap())
            .collect();
        assert_eq!(
            Rle::merge(&rles, false).unwrap().to_compressed(),
            text(&case["union"])
        );
        assert_eq!(
            Rle::merge(&rles, true).unwrap().to_compressed(),
            text(&case["intersection"])
        );
    }
}

#[test]
fn uncompressed_counts_and_large_runs() {
    let fixture = fixture();
    for case in fixture["uncompressed"].as_array().unwrap() {
        let (h, w) = size(case);
        let counts: Vec<u32> = case["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let rle = Rle::new(h, w, counts).unwrap();
        assert_eq!(rle.to_compressed(), text(&case["compressed"]));
        assert_eq!(
            Rle::from_compressed(text(&case["compressed"]), h, w).unwrap(),
            rle
        );
        assert_eq!(u64::from(rle.area()), case["area"].as_u64().unwrap());
        assert_eq!(rle.to_bbox().to_vec(), floats(&case["bbox"]));
    }
}

#[test]
fn merging_different_sizes_is_an_error() {
    let a = Rle::new(2, 2, vec![4]).unwrap();
    let b = Rle::new(2, 3, vec![6]).unwrap();
    let err = Rle::merge(&[a, b], false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot merge masks of sizes [2, 2] and [2, 3]"
    );
}
