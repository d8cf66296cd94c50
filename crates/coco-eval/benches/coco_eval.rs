//! Criterion benches of the core: results parsing, box and mask evaluation, accumulation, RLE
//! operations, on a deterministic synthetic set (500 images, ~3.7k objects, 100 detections per
//! image: a tenth of COCO val). The end-to-end comparison with pycocotools and
//! faster-coco-eval is `bench/compare.py`.
//!
//!     cargo bench -p rtb-coco-eval

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use rtb_coco_eval::{
    Annotation, Category, CocoEval, CocoGt, DetectionResult, Detections, Image, IouType, Params,
    ResultsWriter, Rle, Segmentation,
};

struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.uniform()
    }
}

fn polygon(rng: &mut Rng, cx: f64, cy: f64, rx: f64, ry: f64, points: usize) -> Vec<f64> {
    let mut angles: Vec<f64> = (0..points)
        .map(|_| rng.range(0.0, std::f64::consts::TAU))
        .collect();
    angles.sort_by(f64::total_cmp);
    angles
        .iter()
        .flat_map(|&a| {
            let r = rng.range(0.7, 1.0);
            [cx + rx * r * a.cos(), cy + ry * r * a.sin()]
        })
        .collect()
}

fn synthetic(images: usize, masks: bool) -> (CocoGt, Vec<DetectionResult>) {
    let mut rng = Rng(42);
    let (h, w) = (480u32, 640u32);
    let mut image_list = Vec::new();
    let mut annotations = Vec::new();
    let mut results = Vec::new();
    for image in 0..images {
        let image_id = image as i64 + 1;
        image_list.push(Image {
            id: image_id,
            height: Some(h),
            width: Some(w),
        });
        let mut boxes = Vec::new();
        for _ in 0..(rng.range(0.0, 14.7) as usize) {
            let radius = rng.range(4f64.ln(), 180f64.ln()).exp();
            let (cx, cy) = (rng.range(0.0, f64::from(w)), rng.range(0.0, f64::from(h)));
            let ry = radius * rng.range(0.6, 1.4);
            let poly = polygon(&mut rng, cx, cy, radius, ry, 16);
            let rle = Rle::from_polygon(&poly, h, w);
            let category = 1 + (rng.uniform() * 80.0) as i64;
            let crowd = rng.uniform() < 0.01;
            annotations.push(Annotation {
                id: annotations.len() as i64 + 1,
                image_id,
                category_id: category,
                area: f64::from(rle.area()),
                iscrowd: crowd,
                bbox: Some(rle.to_bbox()),
                segmentation: Some(Segmentation::Polygons(vec![poly.clone()])),
            });
            boxes.push((category, cx, cy, radius, poly));
        }
        for d in 0..100 {
            let (category, cx, cy, radius, score) = match boxes.get(d / 3) {
                Some(&(category, cx, cy, radius, _)) => (
                    category,
                    cx + rng.range(-0.2, 0.2) * radius,
                    cy + rng.range(-0.2, 0.2) * radius,
                    radius * rng.range(0.8, 1.25),
                    rng.range(0.3, 1.0),
                ),
                None => (
                    1 + (rng.uniform() * 80.0) as i64,
                    rng.range(0.0, f64::from(w)),
                    rng.range(0.0, f64::from(h)),
                    rng.range(4f64.ln(), 120f64.ln()).exp(),
                    rng.range(0.0, 0.5),
                ),
            };
            let poly = polygon(&mut rng, cx, cy, radius, radius, 10);
            let rle = Rle::from_polygon(&poly, h, w);
            results.push(DetectionResult {
                image_id,
                category_id: category,
                score,
                bbox: (!masks).then(|| rle.to_bbox()),
                segmentation: masks.then(|| Segmentation::compressed(&rle)),
            });
        }
    }
    let categories = (1..=80).map(|id| Category { id, name: None }).collect();
    (CocoGt::new(image_list, annotations, categories), results)
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("coco_eval");
    group.sample_size(10);
    for (name, iou_type, masks) in [
        ("bbox", IouType::Bbox, false),
        ("segm", IouType::Segm, true),
    ] {
        let (gt, results) = synthetic(500, masks);
        let mut json = Vec::new();
        let mut writer = ResultsWriter::new(&mut json).unwrap();
        for result in &results {
            writer.write(result).unwrap();
        }
        writer.finish().unwrap();
        group.bench_function(format!("parse_results_{name}_50k"), |b| {
            b.iter(|| Detections::from_slice(black_box(&json), "dt.json", &gt).unwrap())
        });
        let dt = Detections::from_slice(&json, "dt.json", &gt).unwrap();
        let params = Params::new(iou_type);
        group.bench_function(format!("evaluate_{name}_50k"), |b| {
            b.iter(|| CocoEval::new(&gt, &dt, params.clone()).evaluate().unwrap())
        });
        let evaluation = CocoEval::new(&gt, &dt, params.clone()).evaluate().unwrap();
        group.bench_function(format!("accumulate_{name}_50k"), |b| {
            b.iter(|| evaluation.accumulate().summarize().unwrap())
        });
    }
    let mut rng = Rng(7);
    let poly = polygon(&mut rng, 320.0, 240.0, 150.0, 100.0, 40);
    group.bench_function("polygon_to_rle_640x480", |b| {
        b.iter(|| Rle::from_polygon(black_box(&poly), 480, 640))
    });
    let a = Rle::from_polygon(&poly, 480, 640);
    let b_rle = Rle::from_polygon(&polygon(&mut rng, 300.0, 250.0, 150.0, 100.0, 40), 480, 640);
    let text = a.to_compressed();
    group.bench_function("compressed_decode_640x480", |b| {
        b.iter(|| Rle::from_compressed(black_box(&text), 480, 640).unwrap())
    });
    group.bench_function("rle_iou_640x480", |b| {
        b.iter(|| {
            rtb_coco_eval::mask::rle_iou(
                black_box(std::slice::from_ref(&a)),
                std::slice::from_ref(&b_rle),
                &[false],
            )
        })
    });
    group.finish();
}

criterion_group!(coco, benches);
criterion_main!(coco);
