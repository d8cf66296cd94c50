//! Forward throughput of ResNet-50 and Swin-T (batch 16, 224², f32) on random seeded weights,
//! the rtb side of `tests/golden/bench_torch.py`. Threads: set `RAYON_NUM_THREADS` (rtb-nn's
//! kernels) and the gemm thread count through candle's defaults (`RAYON_NUM_THREADS` as well).
//!
//! `RTB_BENCH_BATCH` changes the batch size (default 16).

use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rtb_models::init::trainable_builder;
use rtb_models::{ArchConfig, Mode};

fn bench_forward(c: &mut Criterion) {
    let batch: usize = std::env::var("RTB_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let device = Device::Cpu;
    let xs = Tensor::randn(0f32, 1.0, (batch, 3, 224, 224), &device).expect("input");
    let mut group = c.benchmark_group("forward_224");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(batch as u64));
    for name in ["resnet50", "swin_t"] {
        let arch = ArchConfig::from_name(name).expect("known arch");
        let varmap = VarMap::new();
        let vb = trainable_builder(&varmap, Default::default(), 0, DType::F32, &device);
        let model = arch.build(&vb).expect("model");
        group.bench_function(name, |b| {
            b.iter(|| model.forward(&xs, Mode::Inference).expect("forward"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_forward);
criterion_main!(benches);
