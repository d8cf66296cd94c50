//! Bad input is an error that names the file, the element and what is wrong; never a panic.

use rtb_coco_eval::{
    CocoEval, CocoGt, DetectionResult, Detections, Error, IouType, MaskError, Params, Segmentation,
};

const GT: &str = r#"{
  "images": [{"id": 1, "height": 40, "width": 50}, {"id": 2, "height": 30, "width": 30}],
  "categories": [{"id": 1, "name": "a"}],
  "annotations": [
    {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10], "area": 100,
     "iscrowd": 0, "segmentation": [[1, 1, 11, 1, 11, 11, 1, 11]]}
  ]
}"#;

fn gt() -> CocoGt {
    CocoGt::from_slice(GT.as_bytes(), "gt.json").unwrap()
}

fn dt_error(text: &str) -> String {
    Detections::from_slice(text.as_bytes(), "dt.json", &gt())
        .unwrap_err()
        .to_string()
}

fn gt_error(text: &str) -> String {
    CocoGt::from_slice(text.as_bytes(), "gt.json")
        .unwrap_err()
        .to_string()
}

#[test]
fn malformed_json_names_file_line_and_column() {
    let message = gt_error("{\"images\": [\n  {\"id\": 1,}\n]}");
    assert!(message.starts_with("gt.json: line 2 column "), "{message}");
    let message = dt_error(
        "[{\"image_id\": 1, \"category_id\": 1,\n \"score\": 0.5, \"bbox\": [1, 2, 3, 4]},\n {\"image_id\": 1 \"category_id\": 1}]",
    );
    assert!(message.starts_with("dt.json: line 3 column "), "{message}");
    let message =
        dt_error("[{\"image_id\": 1, \"category_id\": 1, \"score\": 0.5, \"bbox\": [1, 2");
    assert!(message.starts_with("dt.json: line 1 column "), "{message}");
    assert!(gt_error("").starts_with("gt.json: line 1"));
    assert!(dt_error("").starts_with("dt.json: line 1"));
}

#[test]
fn missing_and_mistyped_fields_are_named() {
    let message = dt_error(r#"[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}]"#);
    assert!(
        message.contains("results[0]: missing field `score`"),
        "{message}"
    );
    let message =
        dt_error(r#"[{"image_id": "one", "category_id": 1, "score": 1, "bbox": [1, 2, 3, 4]}]"#);
    assert!(
        message.contains("results[0]: invalid type: string \"one\""),
        "{message}"
    );
    // "annotations" may be absent (pycocotools indexes it only when present).
    assert!(CocoGt::from_slice(br#"{"images": [], "categories": []}"#, "gt.json").is_ok());
    let message = gt_error(r#"{"images": [], "annotations": []}"#);
    assert!(message.contains("missing field `categories`"), "{message}");
    let message = gt_error(
        r#"{"images": [{"id": 1}], "categories": [], "annotations": [{"id": 3, "image_id": 1, "category_id": 1}]}"#,
    );
    assert!(
        message.contains("annotations[0]: missing field `area`"),
        "{message}"
    );
}

#[test]
fn swapped_files_are_recognised() {
    let message = gt_error("[]");
    assert!(message.contains("is this a results file?"), "{message}");
    let message = dt_error(GT);
    assert!(
        message.contains("is this a ground-truth file?"),
        "{message}"
    );
}

#[test]
fn boxes_must_have_four_numbers_and_no_negative_size() {
    let message = dt_error(
        r#"[{"image_id": 1, "category_id": 1, "score": 1, "bbox": [1, 2, 3, 4]},
        {"image_id": 2, "category_id": 1, "score": 1, "bbox": [1, 2, 3]}]"#,
    );
    assert_eq!(
        message,
        "dt.json: results[1] (image_id 2): bbox has 3 numbers, expected 4 ([x, y, width, height])"
    );
    let message =
        dt_error(r#"[{"image_id": 1, "category_id": 1, "score": 1, "bbox": [1, 2, -3, 4]}]"#);
    assert!(
        message
            .contains("results[0] (image_id 1): bbox [1.0, 2.0, -3.0, 4.0] has a negative width"),
        "{message}"
    );
    let message = gt_error(
        r#"{"images": [{"id": 1}], "categories": [], "annotations": [{"id": 3, "image_id": 1, "category_id": 1, "area": 1, "bbox": [0, 0, 1, -1]}]}"#,
    );
    assert!(message.contains("annotations[0] (id 3): bbox"), "{message}");
}

#[test]
fn results_for_unknown_images_are_rejected() {
    let message = dt_error(
        r#"[{"image_id": 1, "category_id": 1, "score": 1, "bbox": [1, 2, 3, 4]},
        {"image_id": 9, "category_id": 1, "score": 1, "bbox": [1, 2, 3, 4]},
        {"image_id": 8, "category_id": 1, "score": 1, "bbox": [1, 2, 3, 4]}]"#,
    );
    assert_eq!(
        message,
        "dt.json: results[1] has image_id 9, which is not an image of the ground truth (2 results refer to unknown images)"
    );
}

#[test]
fn results_need_what_the_first_result_has() {
    let message = dt_error(
        r#"[{"image_id": 1, "category_id": 1, "score": 1, "bbox": [1, 2, 3, 4]},
        {"image_id": 1, "category_id": 1, "score": 1, "segmentation": {"size": [40, 50], "counts": "0`1"}}]"#,
    );
    assert!(
        message.contains("results[1] (image_id 1): has no \"bbox\""),
        "{message}"
    );
    let message = dt_error(r#"[{"image_id": 1, "category_id": 1, "score": 1}]"#);
    assert!(
        message.contains("needs a \"bbox\" or a \"segmentation\""),
        "{message}"
    );
}

#[test]
fn rle_counts_must_cover_the_mask() {
    // Masks-branch results are decoded at load time (their area is the pixel count).
    let err = Detections::from_slice(
        br#"[{"image_id": 1, "category_id": 1, "score": 1, "segmentation": {"size": [40, 50], "counts": "05"}}]"#,
        "dt.json",
        &gt(),
    )
    .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Mask {
                source: MaskError::CountsSum {
                    sum: 5,
                    pixels: 2000,
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("dt.json: results[0] (image_id 1): RLE counts sum to 5"),
        "{err}"
    );
    let message = dt_error(
        r#"[{"image_id": 1, "category_id": 1, "score": 1, "segmentation": {"size": [40, 50], "counts": "P"}}]"#,
    );
    assert!(message.contains("ends inside a run length"), "{message}");
    let message = dt_error(
        r#"[{"image_id": 1, "category_id": 1, "score": 1, "segmentation": {"size": [40, 50], "counts": [5, -1]}}]"#,
    );
    assert!(
        message.contains("RLE count -1 is not in 0..=4294967295"),
        "{message}"
    );
    let message = dt_error(
        r#"[{"image_id": 1, "category_id": 1, "score": 1, "segmentation": {"counts": "05"}}]"#,
    );
    assert!(
        message.contains("RLE segmentation has no \"size\""),
        "{message}"
    );

    // Ground-truth masks are only read by mask evaluation, as in pycocotools.
    let gt = CocoGt::from_slice(
        br#"{"images": [{"id": 1, "height": 4, "width": 4}], "categories": [{"id": 1}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "area": 3, "bbox": [0, 0, 2, 2],
                             "segmentation": {"size": [4, 4], "counts": [3, 3]}}]}"#,
        "gt.json",
    )
    .unwrap();
    let dt = Detections::from_slice(
        br#"[{"image_id": 1, "category_id": 1, "score": 1, "bbox": [0, 0, 2, 2]}]"#,
        "dt.json",
        &gt,
    )
    .unwrap();
    assert!(
        CocoEval::new(&gt, &dt, Params::new(IouType::Bbox))
            .run()
            .is_ok()
    );
    let err = CocoEval::new(&gt, &dt, Params::new(IouType::Segm))
        .run()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "gt.json: annotations[0] (id 5): RLE counts sum to 6 but size 4x4 has 16 pixels"
    );
}

#[test]
fn short_polygons_are_rejected_when_rasterised() {
    let gt = CocoGt::from_slice(
        br#"{"images": [{"id": 1, "height": 20, "width": 20}, {"id": 2}], "categories": [{"id": 1}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "area": 3, "bbox": [0, 0, 2, 2],
                             "segmentation": [[0, 0, 5, 5, 0, 5], [1, 1, 4, 4]]}]}"#,
        "gt.json",
    )
    .unwrap();
    let dt = Detections::from_slice(
        br#"[{"image_id": 1, "category_id": 1, "score": 1, "bbox": [0, 0, 2, 2]}]"#,
        "dt.json",
        &gt,
    )
    .unwrap();
    let err = CocoEval::new(&gt, &dt, Params::new(IouType::Segm))
        .run()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "gt.json: annotations[0] (id 5): polygon 1 has 4 coordinates; a polygon needs an even number, at least 6 (3 points)"
    );
    // Polygons of results are rasterised at the image size, which image 2 does not give.
    let err = Detections::from_slice(
        br#"[{"image_id": 2, "category_id": 1, "score": 1, "segmentation": [[0, 0, 5, 5, 0, 5]]}]"#,
        "dt.json",
        &gt,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("image 2 has no height/width"),
        "{err}"
    );
    let err = Detections::from_slice(
        br#"[{"image_id": 1, "category_id": 1, "score": 1, "segmentation": []}]"#,
        "dt.json",
        &gt,
    )
    .unwrap_err();
    assert!(err.to_string().contains("empty list of polygons"), "{err}");
}

#[test]
fn box_evaluation_needs_ground_truth_boxes() {
    let gt = CocoGt::from_slice(
        br#"{"images": [{"id": 1}], "categories": [{"id": 1}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "area": 3}]}"#,
        "gt.json",
    )
    .unwrap();
    let dt = Detections::from_slice(
        br#"[{"image_id": 1, "category_id": 1, "score": 1, "bbox": [0, 0, 2, 2]}]"#,
        "dt.json",
        &gt,
    )
    .unwrap();
    let err = CocoEval::new(&gt, &dt, Params::new(IouType::Bbox))
        .run()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "gt.json: annotations[0] (id 5): has no bbox, needed for bbox evaluation"
    );
}

#[test]
fn unusable_params_are_errors() {
    let gt = gt();
    let dt = Detections::from_results(Vec::new(), &gt).unwrap();
    let err = CocoEval::new(&gt, &dt, Params::new(IouType::Bbox).with_max_dets(vec![]))
        .evaluate()
        .unwrap_err();
    assert_eq!(err.to_string(), "params: max_dets is empty");
    let err = CocoEval::new(
        &gt,
        &dt,
        Params::new(IouType::Bbox).with_max_dets(vec![1, 10]),
    )
    .run()
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("summarize needs at least 3 maxDets"),
        "{err}"
    );
    let params = Params::new(IouType::Bbox).with_area_ranges(vec![[0.0, 1.0]], vec![]);
    let err = CocoEval::new(&gt, &dt, params).evaluate().unwrap_err();
    assert_eq!(err.to_string(), "params: 1 area ranges but 0 labels");
}

#[test]
fn empty_results_give_zero_recall_not_an_error() {
    // pycocotools cannot load an empty results list (it reads anns[0]); no detections simply
    // find nothing.
    let gt = gt();
    let dt = Detections::from_slice(b" [ ] ", "dt.json", &gt).unwrap();
    assert!(dt.is_empty());
    let report = CocoEval::new(&gt, &dt, Params::new(IouType::Bbox))
        .run()
        .unwrap();
    assert_eq!(report.summary.stats[0], 0.0);
    assert_eq!(report.summary.stats[8], 0.0);
    assert_eq!(report.summary.stats[4], -1.0);
}

#[test]
fn in_memory_results_are_checked_like_files() {
    let gt = gt();
    let result = |bbox: [f64; 4], score: f64| DetectionResult {
        image_id: 1,
        category_id: 1,
        score,
        bbox: Some(bbox),
        segmentation: None,
    };
    let err = Detections::from_results(vec![result([0.0, 0.0, -1.0, 1.0], 1.0)], &gt).unwrap_err();
    assert!(err.to_string().contains("negative width"), "{err}");
    let err =
        Detections::from_results(vec![result([0.0, 0.0, 1.0, 1.0], f64::NAN)], &gt).unwrap_err();
    assert!(err.to_string().contains("score is not finite"), "{err}");
    let mut masked = result([0.0, 0.0, 1.0, 1.0], 0.5);
    masked.segmentation = Some(Segmentation::Polygons(vec![vec![0.0; 6]]));
    assert!(Detections::from_results(vec![masked], &gt).is_ok());
}

#[test]
fn the_reported_error_does_not_depend_on_the_thread_count() {
    // Several bad results in a file big enough to be split over threads: the first one (by
    // index) is reported, whatever the pool size.
    let mut text = String::from("[");
    for i in 0..5000 {
        if i > 0 {
            text.push(',');
        }
        let bbox = match i {
            1234 => "[1, 2, 3]",
            4321 => "[1, 2, -3, 4]",
            _ => "[1, 2, 3, 4]",
        };
        text.push_str(&format!(
            r#"{{"image_id": 1, "category_id": 1, "score": 0.5, "bbox": {bbox}}}"#
        ));
    }
    text.push(']');
    let gt = gt();
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let err = pool
            .install(|| Detections::from_slice(text.as_bytes(), "dt.json", &gt))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("dt.json: results[1234] (image_id 1): bbox has 3 numbers"),
            "{threads} threads: {err}"
        );
    }
}
