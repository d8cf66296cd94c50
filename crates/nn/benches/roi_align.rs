//! Multi-level RoIAlign forward and backward on the CPU: 1000 RoIs over 4 FPN levels
//! (strides 4..32 of an 800×1344 image), 256 channels, 7×7, sampling 0, aligned, mmdet's
//! level rule. Compare with `benches/roi_align_torchvision.py` (same RoIs, torchvision's
//! roi_align per level as mmdet's SingleRoIExtractor calls it).
//!
//! RAYON_NUM_THREADS=2 cargo bench -p rtb-nn --bench roi_align

use candle_core::{Device, Tensor, Var};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rtb_nn::roi_align::MultiScaleRoiAlign;

const IMAGE: (usize, usize) = (800, 1344);
const CHANNELS: usize = 256;
const N_ROIS: usize = 1000;

/// The `i`-th value of a fixed sequence in [0, 1) (the same formula as the Python script).
fn unit(i: usize, salt: f64) -> f64 {
    let v = ((i as f64 + 1.0) * 12.9898 + salt * 78.233).sin() * 43758.5453;
    v - v.floor()
}

/// RoIs `[K, 5]` with sizes log-uniform in 16..800 pixels, so every level gets some.
pub fn bench_rois() -> Vec<f32> {
    let mut rois = Vec::with_capacity(N_ROIS * 5);
    for i in 0..N_ROIS {
        let side = 16.0 * (50f64).powf(unit(i, 1.0));
        let aspect = (unit(i, 2.0) - 0.5).exp();
        let (w, h) = (side * aspect, side / aspect);
        let cx = unit(i, 3.0) * IMAGE.1 as f64;
        let cy = unit(i, 4.0) * IMAGE.0 as f64;
        rois.extend(
            [0.0, cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0].map(|v| v as f32),
        );
    }
    rois
}

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let pooler = MultiScaleRoiAlign::mmdet_box();
    let vars: Vec<Var> = [4usize, 8, 16, 32]
        .iter()
        .map(|s| {
            let t =
                Tensor::randn(0f32, 1f32, (1, CHANNELS, IMAGE.0 / s, IMAGE.1 / s), &dev).unwrap();
            Var::from_tensor(&t).unwrap()
        })
        .collect();
    let features: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let rois = Tensor::from_vec(bench_rois(), (N_ROIS, 5), &dev).unwrap();
    let levels = pooler.levels(&rois).unwrap();
    let per_level: Vec<usize> = (0..4)
        .map(|l| levels.iter().filter(|&&x| x == l).count())
        .collect();
    assert!(
        per_level.iter().all(|&n| n > 0),
        "RoIs per level: {per_level:?}"
    );
    let grad_output = Tensor::randn(0f32, 1f32, (N_ROIS, CHANNELS, 7, 7), &dev).unwrap();

    let mut group = c.benchmark_group("roi_align_1000x256_7x7_fpn4");
    group.sample_size(10);
    group.bench_function("forward", |b| {
        b.iter(|| pooler.forward(&features, &rois).unwrap())
    });
    group.bench_function("backward", |b| {
        b.iter_batched(
            || {
                (pooler.forward(&features, &rois).unwrap() * &grad_output)
                    .unwrap()
                    .sum_all()
                    .unwrap()
            },
            |loss| loss.backward().unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
