//! The RoI heads against torchvision on shared random weights (fixtures from
//! tests/golden/make_golden_roi.py): multi-level pooling, the box branch in eval mode, the mask
//! branch, mask pasting and the training losses on given proposals; mmdet-flavor rules on hand
//! cases.

mod support;

use candle_core::{DType, Device, Tensor};
use rtb_detection::Flavor;
use rtb_detection::poolers::{Pooler, boxes_to_rois, infer_strides};
use support::{Golden, relative_error};

fn features(golden: &Golden) -> Vec<Tensor> {
    (2..=5).map(|i| golden.get(&format!("p{i}"))).collect()
}

fn proposals(golden: &Golden) -> Vec<Tensor> {
    (0..2)
        .map(|i| golden.get(&format!("proposals.{i}")))
        .collect()
}

fn image_sizes(golden: &Golden) -> Vec<(usize, usize)> {
    let v: Vec<Vec<i64>> = golden.get("image_shapes").to_vec2().unwrap();
    v.iter().map(|r| (r[0] as usize, r[1] as usize)).collect()
}

#[test]
fn poolers_match_torchvision_multi_scale_roi_align() {
    let golden = Golden::load("roi_heads");
    let feats = features(&golden);
    let props = proposals(&golden);
    let strides = infer_strides(&feats, &image_sizes(&golden)).unwrap();
    assert_eq!(strides, vec![4, 8, 16, 32]);
    let levels: Vec<i64> = golden.get("levels").to_vec1().unwrap();
    let pooler = Pooler::box_pooler(Flavor::Torchvision);
    let ours: Vec<i64> = pooler
        .levels(&props)
        .unwrap()
        .into_iter()
        .map(|l| l as i64)
        .collect();
    assert_eq!(ours, levels);
    for (pooler, key) in [
        (Pooler::box_pooler(Flavor::Torchvision), "pooled_box"),
        (Pooler::mask_pooler(Flavor::Torchvision), "pooled_mask"),
    ] {
        let pooled = pooler.forward(&feats, &props).unwrap();
        let err = relative_error(&pooled, &golden.get(key));
        assert!(err <= 1e-5, "{key}: relative error {err:e}");
    }
}

#[test]
fn mmdet_pooler_is_aligned_with_adaptive_sampling() {
    // One 8×8 map of stride 4 whose value is its column index: an aligned, adaptive pooler
    // averages pixel-centre samples, so a RoI over columns 0..8 (image x 0..32) pools to the
    // bin centres' feature x − 0.5; torchvision's (not aligned) pools to bin centres' x.
    let dev = Device::Cpu;
    let row: Vec<f32> = (0..8).map(|x| x as f32).collect();
    let map = Tensor::new(row.as_slice(), &dev)
        .unwrap()
        .reshape((1, 1, 1, 8))
        .unwrap()
        .broadcast_as((1, 1, 8, 8))
        .unwrap()
        .contiguous()
        .unwrap();
    let feats = vec![map.clone(), map.clone(), map.clone(), map];
    let boxes = vec![Tensor::new(&[[4f32, 4., 20., 20.]], &dev).unwrap()];
    let mmdet = Pooler::new(Flavor::Mmdet, 2, &[4, 8, 16, 32]).unwrap();
    let tv = Pooler::new(Flavor::Torchvision, 2, &[4, 8, 16, 32]).unwrap();
    let m: Vec<f32> = mmdet
        .forward(&feats, &boxes)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let t: Vec<f32> = tv
        .forward(&feats, &boxes)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    // Feature x from 1 to 5: bin centres 2 and 4; aligned subtracts half a pixel.
    assert_eq!(m, vec![1.5, 3.5, 1.5, 3.5]);
    assert_eq!(t, vec![2.0, 4.0, 2.0, 4.0]);
}

#[test]
fn pooler_errors_name_the_argument() {
    let dev = Device::Cpu;
    let feats: Vec<Tensor> = (0..4)
        .map(|l| Tensor::zeros((1, 2, 16 >> l, 16 >> l), DType::F32, &dev).unwrap())
        .collect();
    let pooler = Pooler::box_pooler(Flavor::Mmdet);
    let bad = vec![Tensor::zeros((3, 5), DType::F32, &dev).unwrap()];
    let err = pooler.forward(&feats, &bad).unwrap_err().to_string();
    assert!(err.contains("boxes"), "{err}");
    let two_images = vec![
        Tensor::zeros((1, 4), DType::F32, &dev).unwrap(),
        Tensor::zeros((1, 4), DType::F32, &dev).unwrap(),
    ];
    let err = pooler.forward(&feats, &two_images).unwrap_err().to_string();
    assert!(err.contains("image"), "{err}");
    let err = pooler
        .forward(&feats[..2], &bad[..0])
        .unwrap_err()
        .to_string();
    assert!(err.contains("features") || err.contains("boxes"), "{err}");
    assert!(Pooler::new(Flavor::Mmdet, 7, &[4, 6]).is_err());
    let rois = boxes_to_rois(&two_images).unwrap();
    assert_eq!(rois.dims(), &[2, 5]);
}
