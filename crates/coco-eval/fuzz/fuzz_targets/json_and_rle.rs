//! Arbitrary bytes as an instances file, a results file (against a fixed ground truth) and a
//! compressed RLE string: every input must give a value or an error, never a panic; whatever
//! loads is evaluated for boxes and masks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtb_coco_eval::{CocoEval, CocoGt, Detections, IouType, Params, Rle};

const GT: &[u8] = br#"{"images": [{"id": 1, "height": 20, "width": 30}, {"id": 2}],
  "categories": [{"id": 1}, {"id": 2}],
  "annotations": [
    {"id": 1, "image_id": 1, "category_id": 1, "area": 50, "bbox": [1, 1, 10, 5],
     "segmentation": [[1, 1, 11, 1, 11, 6, 1, 6]]},
    {"id": 2, "image_id": 1, "category_id": 2, "area": 600, "iscrowd": 1, "bbox": [0, 0, 30, 20],
     "segmentation": {"size": [20, 30], "counts": [0, 600]}}
  ]}"#;

fuzz_target!(|data: &[u8]| {
    if let Ok(gt) = CocoGt::from_slice(data, "fuzz.json") {
        if let Ok(dt) = Detections::from_results(Vec::new(), &gt) {
            let _ = CocoEval::new(&gt, &dt, Params::new(IouType::Bbox)).run();
        }
    }
    let Ok(gt) = CocoGt::from_slice(GT, "gt.json") else {
        return;
    };
    if let Ok(dt) = Detections::from_slice(data, "fuzz.json", &gt) {
        for iou_type in [IouType::Bbox, IouType::Segm] {
            let _ = CocoEval::new(&gt, &dt, Params::new(iou_type)).run();
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let (height, width) = (data.len() as u32 % 7, data.len() as u32 % 11);
        if let Ok(rle) = Rle::from_compressed(text, height, width) {
            let _ = (rle.area(), rle.to_bbox(), rle.decode(), rle.to_compressed());
        }
    }
});
