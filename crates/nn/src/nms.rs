//! Non-maximum suppression equal to `torchvision.ops.nms` / `batched_nms`.
//!
//! Boxes are `[x1, y1, x2, y2]` with areas `(x2 − x1)·(y2 − y1)` (no "+1", unlike candle's
//! `object_detection` module). Boxes are visited by score, descending, with ties in input
//! order (torchvision sorts stably); a box is dropped when its IoU with a kept box exceeds the
//! threshold. IoU is computed in the boxes' dtype, as torchvision's kernel does.
//!
//! `batched_nms` never suppresses across different ids (classes, or pyramid levels in the
//! RPN); its result is sorted by score, descending, ties in input order. torchvision gets the
//! same result by offsetting each id's boxes (`_batched_nms_coordinate_trick`) below 4000
//! coordinates on the CPU and by a per-id loop above; we always run the per-id loop, which is
//! exact (offsetting can change IoUs by a rounding step).
//!
//! The work runs on the host (the inputs are copied there); the returned indices are a `u32`
//! tensor on the input's device, ready for `index_select`.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use rtb_nn::nms::batched_nms;
//! let dev = Device::Cpu;
//! let boxes = Tensor::new(&[[0f32, 0., 10., 10.], [1., 1., 10., 10.], [0., 0., 10., 10.]], &dev).unwrap();
//! let scores = Tensor::new(&[0.9f32, 0.8, 0.7], &dev).unwrap();
//! let classes = Tensor::new(&[0u32, 0, 1], &dev).unwrap();
//! let keep = batched_nms(&boxes, &scores, &classes, 0.5).unwrap();
//! assert_eq!(keep.to_vec1::<u32>().unwrap(), vec![0, 2]);
//! ```

use std::cmp::Ordering;
use std::collections::BTreeMap;

use candle_core::{DType, Device, Result, Tensor};

use crate::error::{NnError, shape_error};
use crate::real::Real;

/// Indices of `boxes` kept by NMS at `iou_threshold`, by score descending (ties in input
/// order). Plain-slice form of [`nms`].
pub fn nms_indices_f32(boxes: &[[f32; 4]], scores: &[f32], iou_threshold: f64) -> Vec<usize> {
    let all: Vec<usize> = (0..boxes.len()).collect();
    nms_subset(boxes, scores, &all, iou_threshold)
}

/// Indices kept by [`batched_nms`], plain-slice form: `ids[i]` is box i's class or level.
pub fn batched_nms_indices_f32(
    boxes: &[[f32; 4]],
    scores: &[f32],
    ids: &[i64],
    iou_threshold: f64,
) -> Vec<usize> {
    batched_generic(boxes, scores, ids, iou_threshold)
}

/// Descending by score, stable; NaN scores go last.
fn by_score_descending<T: Real>(scores: &[T], order: &mut [usize]) {
    order.sort_by(|&a, &b| match scores[b].partial_cmp(&scores[a]) {
        Some(ordering) => ordering,
        None => match (scores[a].to_f64().is_nan(), scores[b].to_f64().is_nan()) {
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => Ordering::Equal,
        },
    });
}

/// NMS among `members` (indices into `boxes`), returning kept indices by score descending.
fn nms_subset<T: Real>(
    boxes: &[[T; 4]],
    scores: &[T],
    members: &[usize],
    iou_threshold: f64,
) -> Vec<usize> {
    let mut order = members.to_vec();
    by_score_descending(scores, &mut order);
    let areas: Vec<T> = order
        .iter()
        .map(|&i| (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1]))
        .collect();
    let mut suppressed = vec![false; order.len()];
    let mut keep = Vec::new();
    for a in 0..order.len() {
        if suppressed[a] {
            continue;
        }
        let i = order[a];
        keep.push(i);
        let bi = boxes[i];
        for b in a + 1..order.len() {
            if suppressed[b] {
                continue;
            }
            let bj = boxes[order[b]];
            let w = (bi[2].min_of(bj[2]) - bi[0].max_of(bj[0])).max_of(T::zero());
            let h = (bi[3].min_of(bj[3]) - bi[1].max_of(bj[1])).max_of(T::zero());
            let inter = w * h;
            let iou = inter / (areas[a] + areas[b] - inter);
            if iou.to_f64() > iou_threshold {
                suppressed[b] = true;
            }
        }
    }
    keep
}

fn batched_generic<T: Real>(
    boxes: &[[T; 4]],
    scores: &[T],
    ids: &[i64],
    iou_threshold: f64,
) -> Vec<usize> {
    let mut groups: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, &id) in ids.iter().enumerate() {
        groups.entry(id).or_default().push(i);
    }
    let mut keep: Vec<usize> = groups
        .values()
        .flat_map(|members| nms_subset(boxes, scores, members, iou_threshold))
        .collect();
    keep.sort_unstable();
    by_score_descending(scores, &mut keep);
    keep
}

fn check_inputs(op: &'static str, boxes: &Tensor, scores: &Tensor) -> Result<usize> {
    let k = match boxes.dims() {
        [k, 4] => *k,
        dims => return Err(shape_error(op, "boxes", "[K, 4] (x1, y1, x2, y2)", dims)),
    };
    if scores.dims() != [k] {
        return Err(shape_error(
            op,
            "scores",
            format!("[K] with K = {k} (the boxes' count)"),
            scores.dims(),
        ));
    }
    if !boxes.dtype().is_float() {
        return Err(NnError::DType {
            op,
            arg: "boxes",
            got: boxes.dtype(),
            supported: "f32, f64 (f16/bf16 are computed in f32)",
        }
        .into());
    }
    Ok(k)
}

fn run_host(
    boxes: &Tensor,
    scores: &Tensor,
    ids: Option<Vec<i64>>,
    iou_threshold: f64,
) -> Result<Tensor> {
    let k = boxes.dims()[0];
    let ids = ids.unwrap_or_else(|| vec![0; k]);
    let keep = if boxes.dtype() == DType::F64 {
        let b = host_boxes::<f64>(boxes)?;
        let s: Vec<f64> = scores
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F64)?
            .to_vec1()?;
        batched_generic(&b, &s, &ids, iou_threshold)
    } else {
        let b = host_boxes::<f32>(boxes)?;
        let s: Vec<f32> = scores
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .to_vec1()?;
        batched_generic(&b, &s, &ids, iou_threshold)
    };
    let keep: Vec<u32> = keep.into_iter().map(|i| i as u32).collect();
    Tensor::from_vec(keep.clone(), keep.len(), boxes.device())
}

fn host_boxes<T: Real>(boxes: &Tensor) -> Result<Vec<[T; 4]>> {
    let flat: Vec<T> = boxes
        .to_device(&Device::Cpu)?
        .to_dtype(T::DTYPE)?
        .flatten_all()?
        .to_vec1()?;
    Ok(flat
        .chunks_exact(4)
        .map(|c| [c[0], c[1], c[2], c[3]])
        .collect())
}

/// `torchvision.ops.nms`: indices (`u32`, on the input's device) of the boxes `[K, 4]` kept at
/// `iou_threshold`, by score `[K]` descending.
pub fn nms(boxes: &Tensor, scores: &Tensor, iou_threshold: f64) -> Result<Tensor> {
    check_inputs("nms", boxes, scores)?;
    run_host(boxes, scores, None, iou_threshold)
}

/// `torchvision.ops.batched_nms`: NMS within each id of `ids` `[K]` (integer class or level
/// ids), result sorted by score descending (ties in input order).
pub fn batched_nms(
    boxes: &Tensor,
    scores: &Tensor,
    ids: &Tensor,
    iou_threshold: f64,
) -> Result<Tensor> {
    let k = check_inputs("batched_nms", boxes, scores)?;
    if ids.dims() != [k] {
        return Err(shape_error(
            "batched_nms",
            "ids",
            format!("[K] with K = {k} (the boxes' count)"),
            ids.dims(),
        ));
    }
    if ids.dtype().is_float() {
        return Err(NnError::DType {
            op: "batched_nms",
            arg: "ids",
            got: ids.dtype(),
            supported: "u8, u32, i64",
        }
        .into());
    }
    let ids: Vec<i64> = ids
        .to_device(&Device::Cpu)?
        .to_dtype(DType::I64)?
        .to_vec1()?;
    run_host(boxes, scores, Some(ids), iou_threshold)
}
