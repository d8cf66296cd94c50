//! NMS, IoU and the box coder against torchvision / mmdet's formulas (fixtures from
//! `tests/golden/train/make_golden.py`).

mod train_common;

use candle_core::{DType, Device, Tensor};
use rtb_nn::boxes::{DeltaXywhCoder, box_iou, clip_boxes_to_image};
use rtb_nn::gradcheck::{GradCheck, check_gradients};
use rtb_nn::nms::{batched_nms, batched_nms_indices_f32, nms};
use train_common::{assert_close, fixture, get};

fn indices(t: &Tensor) -> Vec<i64> {
    t.to_dtype(DType::I64).unwrap().to_vec1().unwrap()
}

#[test]
fn batched_nms_matches_torchvision() {
    let fx = fixture("nms.safetensors");
    let (boxes, scores, ids) = (get(&fx, "boxes"), get(&fx, "scores"), get(&fx, "ids"));
    for thr in [3, 5, 7] {
        let keep = batched_nms(boxes, scores, ids, thr as f64 / 10.0).unwrap();
        assert_eq!(keep.dtype(), DType::U32);
        assert_eq!(
            indices(&keep),
            indices(get(&fx, &format!("batched_keep_{thr}"))),
            "batched_nms at {thr}/10"
        );
        let keep = nms(boxes, scores, thr as f64 / 10.0).unwrap();
        assert_eq!(
            indices(&keep),
            indices(get(&fx, &format!("nms_keep_{thr}"))),
            "nms at {thr}/10"
        );
    }
}

#[test]
fn batched_nms_keeps_ties_in_input_order_and_never_suppresses_across_ids() {
    let b = [[0f32, 0., 10., 10.]; 4];
    let keep = batched_nms_indices_f32(&b, &[0.5, 0.5, 0.5, 0.9], &[1, 0, 1, 2], 0.5);
    assert_eq!(keep, vec![3, 0, 1]);
}

#[test]
fn box_iou_matches_torchvision() {
    let fx = fixture("nms.safetensors");
    let iou = box_iou(get(&fx, "iou_a"), get(&fx, "iou_b")).unwrap();
    assert_close("box_iou", &iou, get(&fx, "iou"), 1e-6, 1e-7);
}

#[test]
fn delta_xywh_encode_matches_mmdet() {
    let fx = fixture("box_coder.safetensors");
    let (proposals, gt) = (get(&fx, "proposals"), get(&fx, "gt"));
    let deltas = DeltaXywhCoder::mmdet_rcnn().encode(proposals, gt).unwrap();
    assert_close("rcnn deltas", &deltas, get(&fx, "deltas_rcnn"), 1e-5, 1e-5);
    let coder = DeltaXywhCoder::new([0.01, -0.02, 0.03, 0.0], [1.0; 4]);
    let deltas = coder.encode(proposals, gt).unwrap();
    assert_close(
        "deltas with means",
        &deltas,
        get(&fx, "deltas_means"),
        1e-5,
        1e-5,
    );
}

#[test]
fn delta_xywh_decode_matches_mmdet_with_clamp_and_clip() {
    let fx = fixture("box_coder.safetensors");
    let (proposals, pred) = (get(&fx, "proposals"), get(&fx, "pred"));
    let coder = DeltaXywhCoder::mmdet_rcnn();
    let clipped = coder.decode(proposals, pred, Some((60, 70))).unwrap();
    assert_close(
        "decode clipped",
        &clipped,
        get(&fx, "decoded_clipped"),
        1e-5,
        1e-4,
    );
    let unclipped = coder.decode(proposals, pred, None).unwrap();
    assert_close(
        "decode",
        &unclipped,
        get(&fx, "decoded_unclipped"),
        1e-5,
        1e-4,
    );
    // Inside the clamp, mmdet's decoder equals torchvision's BoxCoder(weights 10, 10, 5, 5).
    let small = coder.decode(proposals, get(&fx, "small"), None).unwrap();
    assert_close(
        "decode vs torchvision",
        &small,
        get(&fx, "decoded_small_torchvision"),
        1e-5,
        1e-4,
    );
}

#[test]
fn box_coder_round_trips_and_is_differentiable() {
    let dev = Device::Cpu;
    let proposals = Tensor::new(&[[1f64, 2., 11., 8.], [0., 0., 4., 30.]], &dev).unwrap();
    let gt = Tensor::new(&[[2f64, 1., 9., 10.], [1., 3., 5., 20.]], &dev).unwrap();
    let coder = DeltaXywhCoder::mmdet_rcnn();
    let deltas = coder.encode(&proposals, &gt).unwrap();
    let back = coder.decode(&proposals, &deltas, None).unwrap();
    assert_close("round trip", &back, &gt, 1e-12, 1e-12);
    let report = check_gradients(
        |xs| coder.decode(&proposals, &xs[0], Some((25, 12))),
        &[(deltas * 0.5).unwrap()],
        &GradCheck::default(),
    )
    .unwrap();
    assert!(report.passed(), "{report}");
    let report = check_gradients(
        |xs| box_iou(&xs[0], &xs[1]),
        &[proposals, gt],
        &GradCheck::default(),
    )
    .unwrap();
    assert!(report.passed(), "{report}");
}

#[test]
fn box_functions_reject_bad_shapes() {
    let dev = Device::Cpu;
    let three = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
    let four = Tensor::zeros((2, 4), DType::F32, &dev).unwrap();
    let err = box_iou(&three, &four).unwrap_err().to_string();
    assert!(err.contains("[2, 3]"), "{err}");
    let scores = Tensor::zeros(3, DType::F32, &dev).unwrap();
    let err = nms(&four, &scores, 0.5).unwrap_err().to_string();
    assert!(err.contains("scores") && err.contains("[3]"), "{err}");
    let ids = Tensor::zeros(2, DType::F32, &dev).unwrap();
    let err = batched_nms(
        &four,
        &Tensor::zeros(2, DType::F32, &dev).unwrap(),
        &ids,
        0.5,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("ids"), "{err}");
    let coder = DeltaXywhCoder::mmdet_rpn();
    let err = coder.decode(&four, &three, None).unwrap_err().to_string();
    assert!(err.contains("deltas") && err.contains("[2, 3]"), "{err}");
    let err = clip_boxes_to_image(&three, (4, 4)).unwrap_err().to_string();
    assert!(err.contains("[2, 3]"), "{err}");
}
