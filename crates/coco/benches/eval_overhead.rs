//! What one corrupted evaluation of a COCO image costs beside Mask R-CNN's forward pass, at
//! the paper's sizes (issue 13's bar: everything but the forward < 15 % of the evaluation):
//! a 640×384 JPEG (COCO's width; 5:3, so that the test resize gives exactly 1333×800)
//! decoded as the test set decodes, corrupted at full resolution (each of the 15 benchmark
//! corruptions at severity 3, seeded), the test pipeline's keep-ratio resize to (1333, 800),
//! normalisation and padding to 32, Mask R-CNN R50-FPN's network (mmdet flavor, 80 classes:
//! backbone, FPN, RPN, box and mask heads), the post-processing (boxes back to 640×384,
//! masks pasted there), binarisation and RLE encoding into COCO results, and COCOeval's box
//! and mask evaluation and accumulation (with and without the 200 bootstrap replicates),
//! per image of a 20-image condition.
//!
//! Random weights, drawn by rtb-models' seeded initialiser with each residual block's last
//! BatchNorm scale zeroed (torchvision's `zero_init_residual`, as rtb-detection's bench, so
//! the random network stays finite), and the classifier's bias lifted for three classes so
//! that every proposal scores above the 0.05 threshold: the image keeps the full 100
//! detections, the most post-processing, encoding and matching an image can cost.
//!
//! `cargo bench -p rtb-coco --bench eval_overhead`. The timer, the test image and the
//! corruption loop are rtb-ade's bench's too (`benches/shared/eval_overhead.rs`).
#![allow(clippy::print_stdout)]

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rtb_coco::transforms::{normalize, resize_image};
use rtb_coco::{coco_ap, to_results};
use rtb_coco_eval::CocoGt;
use rtb_detection::Flavor;
use rtb_detection::image_batch::ImageBatch;
use rtb_detection::mask_rcnn::{MaskRcnn, MaskRcnnConfig};
use rtb_models::init::trainable_builder;
use rtb_models::{ResNet, ResNetConfig};
use rtb_results::Resampler;

#[path = "../../../benches/shared/eval_overhead.rs"]
mod shared;

use shared::{corruption_cost, seconds};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 384;
const CLASSES: usize = 80;
/// Images of the condition COCOeval evaluates (each with this image's detections).
const IMAGES: usize = 20;
const REPLICATES: usize = 200;

fn main() {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&shared::test_image(WIDTH, HEIGHT))
        .expect("JPEG");
    let (image, decode) = seconds(|| rtb_corruption::decode_rgb(&jpeg).expect("decode"));
    let corruption = corruption_cost(&image);

    let (batch, prepare) = seconds(|| {
        let (resized, _) = resize_image(&image, (1333, 800)).expect("resize");
        let (w, h) = (resized.width() as usize, resized.height() as usize);
        let values =
            Tensor::from_vec(normalize(&resized), (3, h, w), &Device::Cpu).expect("image tensor");
        ImageBatch::from_images(&[values], 32)
            .and_then(|b| b.with_original_sizes(vec![(HEIGHT as usize, WIDTH as usize)]))
            .expect("batch")
    });
    println!(
        "  input {}x{} padded to {:?}",
        batch.image_sizes[0].1,
        batch.image_sizes[0].0,
        batch.padded_size().expect("padded size")
    );

    let model = detector();
    let _ = model.detect(&batch).expect("warm-up");
    let (detections, forward) = seconds(|| model.detect(&batch).expect("forward"));
    let (pasted, paste) = seconds(|| model.to_original(detections, &batch).expect("paste"));
    let cat_ids: Vec<i64> = (1..=CLASSES as i64).collect();
    let (results, encode) = seconds(|| to_results(&pasted[0], 1, &cat_ids).expect("results"));

    // COCOeval over a condition of IMAGES images, each with these detections and six
    // ground-truth objects; per image = the whole / IMAGES.
    let gt = ground_truth();
    let image_ids: Vec<i64> = (1..=IMAGES as i64).collect();
    let all: Vec<_> = image_ids
        .iter()
        .flat_map(|&id| {
            results.iter().cloned().map(move |mut r| {
                r.image_id = id;
                r
            })
        })
        .collect();
    let (scores, cocoeval) =
        seconds(|| coco_ap(&gt, all.clone(), &image_ids, &[]).expect("COCOeval"));
    let weights = Resampler::new(0, IMAGES, REPLICATES).all_counts();
    let (_, with_bootstrap) =
        seconds(|| coco_ap(&gt, all, &image_ids, &weights).expect("COCOeval with bootstrap"));
    let cocoeval = cocoeval / IMAGES as f64;
    let with_bootstrap = with_bootstrap / IMAGES as f64;

    println!(
        "per image: decode {:.1} ms, corrupt {:.1} ms ({}), resize + normalise + pad {:.1} ms, \
         forward {:.0} ms ({} detections), rescale + paste {:.1} ms, binarise + RLE {:.1} ms, \
         COCOeval {:.1} ms ({:.1} ms with {REPLICATES} bootstrap replicates; box AP {:.3})",
        decode * 1e3,
        corruption.mean * 1e3,
        corruption.note(),
        prepare * 1e3,
        forward * 1e3,
        results.len(),
        paste * 1e3,
        encode * 1e3,
        cocoeval * 1e3,
        with_bootstrap * 1e3,
        scores.box_ap,
    );
    let overhead = decode + corruption.mean + prepare + paste + encode + with_bootstrap;
    println!(
        "overhead / evaluation: {:.1} % (overhead / forward {:.1} %)",
        100.0 * overhead / (overhead + forward),
        100.0 * overhead / forward
    );
}

/// mmdet's Mask R-CNN R50-FPN with seeded random weights (module docs).
fn detector() -> MaskRcnn {
    let cfg = MaskRcnnConfig::new(Flavor::Mmdet, CLASSES);
    // mmdet's fc_cls: 80 classes then background; three classes far above the rest.
    let mut bias = vec![0f32; CLASSES + 1];
    bias[..3].fill(5.0);
    let mut weights = HashMap::new();
    weights.insert(
        "roi_head.bbox_head.fc_cls.bias".to_string(),
        Tensor::from_vec(bias, CLASSES + 1, &Device::Cpu).expect("bias"),
    );
    let varmap = VarMap::new();
    let vb = trainable_builder(&varmap, weights, 0, DType::F32, &Device::Cpu);
    let backbone = ResNet::new(
        &ResNetConfig::resnet50().without_classifier(),
        &vb.pp(cfg.backbone_prefix()),
    )
    .expect("ResNet-50");
    let model = MaskRcnn::new(&cfg, Box::new(backbone), &vb).expect("Mask R-CNN");
    {
        let data = varmap.data().lock().expect("varmap");
        for (name, var) in data.iter() {
            if name.ends_with(".bn3.weight") {
                var.set(&var.zeros_like().expect("zeros")).expect("set");
            }
        }
    }
    model
}

/// IMAGES images of 640×384 with six rectangular objects each (polygons), 80 categories.
fn ground_truth() -> CocoGt {
    let images: Vec<serde_json::Value> = (1..=IMAGES)
        .map(|id| {
            serde_json::json!({
                "id": id, "width": WIDTH, "height": HEIGHT, "file_name": format!("{id}.jpg")
            })
        })
        .collect();
    let mut annotations = Vec::new();
    for image in 1..=IMAGES {
        for k in 0..6usize {
            let (x, y) = (20.0 + 100.0 * k as f64, 30.0 + 50.0 * (k % 3) as f64);
            let (w, h) = (80.0, 120.0);
            annotations.push(serde_json::json!({
                "id": image * 10 + k,
                "image_id": image,
                "category_id": 1 + k % 3,
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": 0,
                "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
            }));
        }
    }
    let categories: Vec<serde_json::Value> = (1..=CLASSES)
        .map(|id| serde_json::json!({"id": id, "name": format!("c{id}")}))
        .collect();
    let json = serde_json::json!({
        "images": images, "annotations": annotations, "categories": categories
    });
    CocoGt::from_slice(json.to_string().as_bytes(), "bench ground truth").expect("ground truth")
}
