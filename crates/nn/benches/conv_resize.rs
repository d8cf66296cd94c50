//! Convolution forward and forward+backward on the three shapes of issue 6, and bilinear
//! resize, on the CPU. Compare with `benches/torch_conv_resize.py` (PyTorch, 2 threads).
//!
//! RAYON_NUM_THREADS=2 cargo bench -p rtb-nn --bench conv_resize

use candle_core::{Device, Tensor, Var};
use criterion::{Criterion, criterion_group, criterion_main};
use rtb_nn::conv::{Conv2dConfig, conv2d};
use rtb_nn::ops::resize::resize_bilinear;

mod common;
use common::CONV_SHAPES;

fn randn(shape: &[usize], scale: f64) -> Tensor {
    // Tensor::randn is seeded per thread; the values do not affect the timing.
    (Tensor::randn(0f32, 1f32, shape, &Device::Cpu).unwrap() * scale).unwrap()
}

fn bench_conv(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv2d");
    group.sample_size(10);
    for s in &CONV_SHAPES {
        let x = randn(&[s.batch, s.in_channels, s.size, s.size], 1.0);
        let w = randn(&[s.out_channels, s.in_channels, s.kernel, s.kernel], 0.05);
        let cfg = Conv2dConfig::default().with_padding(s.kernel / 2);
        group.bench_function(format!("{}/forward", s.name), |b| {
            b.iter(|| conv2d(&x, &w, None, &cfg).unwrap())
        });
        let xv = Var::from_tensor(&x).unwrap();
        let wv = Var::from_tensor(&w).unwrap();
        group.bench_function(format!("{}/forward_backward", s.name), |b| {
            b.iter(|| {
                let y = conv2d(xv.as_tensor(), wv.as_tensor(), None, &cfg).unwrap();
                // Seeds the backward with ones, like `y.backward(torch.ones_like(y))`.
                let grads = y.backward().unwrap();
                assert!(grads.get(xv.as_tensor()).is_some() && grads.get(wv.as_tensor()).is_some());
            })
        });
    }
    group.finish();
}

fn bench_resize(c: &mut Criterion) {
    let mut group = c.benchmark_group("resize_bilinear");
    group.sample_size(10);
    for (name, shape, out) in [
        ("8x256x28x28_to_56", [8, 256, 28, 28], (56, 56)),
        ("2x19x128x128_to_512", [2, 19, 128, 128], (512, 512)),
    ] {
        let x = randn(&shape, 1.0);
        group.bench_function(format!("{name}/forward"), |b| {
            b.iter(|| resize_bilinear(&x, out, false).unwrap())
        });
        let xv = Var::from_tensor(&x).unwrap();
        group.bench_function(format!("{name}/forward_backward"), |b| {
            b.iter(|| {
                let y = resize_bilinear(xv.as_tensor(), out, false).unwrap();
                let grads = y.backward().unwrap();
                assert!(grads.get(xv.as_tensor()).is_some());
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_conv, bench_resize);
criterion_main!(benches);
