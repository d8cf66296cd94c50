//! The mask head's upsampler, `ConvTranspose2d(256, 256, 2, stride=2)` on 256 RoIs of 14×14:
//! forward, and the backward kernels alone (dX and dW from a given dY, `conv_transpose2d_grads`).
//! PyTorch's side is `benches/deconv_torch.py` (same shapes, same thread count).
//!
//! RAYON_NUM_THREADS=2 cargo bench -p rtb-nn --bench deconv

use candle_core::{Device, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use rtb_nn::deconv::{conv_transpose2d, conv_transpose2d_grads};

const ROIS: usize = 256;
const CHANNELS: usize = 256;
const SIZE: usize = 14;

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let xs = Tensor::randn(0f32, 1f32, (ROIS, CHANNELS, SIZE, SIZE), &dev).unwrap();
    let weight =
        (Tensor::randn(0f32, 1f32, (CHANNELS, CHANNELS, 2, 2), &dev).unwrap() * 0.03).unwrap();
    let bias = Tensor::zeros(CHANNELS, candle_core::DType::F32, &dev).unwrap();
    let grad_out = Tensor::randn(0f32, 1f32, (ROIS, CHANNELS, 2 * SIZE, 2 * SIZE), &dev).unwrap();
    let mut group = c.benchmark_group("deconv2x2_mask_head");
    group.sample_size(10);
    group.bench_function("forward", |b| {
        b.iter(|| conv_transpose2d(&xs, &weight, Some(&bias), 2).unwrap())
    });
    group.bench_function("backward_dx_dw", |b| {
        b.iter(|| conv_transpose2d_grads(&xs, &weight, &grad_out, 2).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
