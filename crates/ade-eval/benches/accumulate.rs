//! Accumulating 2000 ADE20K-sized (512×683) label/prediction pairs, beside the machine's
//! memory bandwidth measured on the same bytes (a sum and a copy).
//!
//! The maps come from `synthetic_pair` below, which `benches/numpy_bincount.py` mirrors bit for
//! bit so that the numpy baseline counts the very same pixels (both print the mIoU to prove
//! it). A pool of 100 distinct pairs (70 MB, twice the L3 cache) is cycled 20 times, so every
//! pass streams from memory.
//!
//! Run: `cargo bench -p rtb-ade-eval --bench accumulate` (add `-- --quick` for a short run).

#![allow(clippy::print_stderr)] // The bench prints its cross-check value for the numpy script.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;
use rtb_ade_eval::{EvalConfig, IouAccumulator};

const HEIGHT: usize = 512;
const WIDTH: usize = 683;
const IMAGES: usize = 2000;
const POOL: usize = 100;

/// splitmix64's finaliser: a stateless hash, easy to mirror in numpy.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One (stored ADE label 0..=150, prediction 0..150) pair. `blocky`: 40×56 regions of one
/// label, and predictions that follow the label except in a quarter of a shifted block grid,
/// where they are another class (boundaries do not align with the label's). Otherwise i.i.d.
/// uniform noise, the worst case for the run detection.
fn synthetic_pair(image: u64, blocky: bool) -> (Vec<u8>, Vec<u8>) {
    let mut label = vec![0u8; HEIGHT * WIDTH];
    let mut pred = vec![0u8; HEIGHT * WIDTH];
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let p = y * WIDTH + x;
            if blocky {
                let block = image * 1_000_003 + (y / 40) as u64 * 1000 + (x / 56) as u64;
                let stored = (mix(block) % 151) as u8;
                let shifted = image * 1_000_003
                    + ((y + 13) / 40) as u64 * 1000
                    + ((x + 23) / 56) as u64
                    + (1 << 40);
                let h = mix(shifted);
                label[p] = stored;
                pred[p] = if h.is_multiple_of(4) {
                    ((h >> 8) % 150) as u8
                } else {
                    stored.max(1) - 1
                };
            } else {
                let key = image * (HEIGHT * WIDTH) as u64 + p as u64;
                label[p] = (mix(key) % 151) as u8;
                pred[p] = (mix(key + (1 << 40)) % 150) as u8;
            }
        }
    }
    (label, pred)
}

fn pool(blocky: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..POOL as u64)
        .into_par_iter()
        .map(|i| synthetic_pair(i, blocky))
        .collect()
}

fn accumulate_serial(pool: &[(Vec<u8>, Vec<u8>)]) -> IouAccumulator {
    let mut acc = IouAccumulator::new(EvalConfig::ade20k()).unwrap();
    for i in 0..IMAGES {
        let (label, pred) = &pool[i % POOL];
        acc.add(label, pred).unwrap();
    }
    acc
}

fn accumulate_parallel(pool: &[(Vec<u8>, Vec<u8>)]) -> IouAccumulator {
    let empty = IouAccumulator::new(EvalConfig::ade20k()).unwrap();
    (0..IMAGES)
        .into_par_iter()
        .fold(
            || empty.clone(),
            |mut acc, i| {
                let (label, pred) = &pool[i % POOL];
                acc.add(label, pred).unwrap();
                acc
            },
        )
        .reduce(
            || empty.clone(),
            |mut a, b| {
                a.merge(&b).unwrap();
                a
            },
        )
}

/// Sums every byte of the pool (as u64 words) IMAGES / POOL times: the read bandwidth.
fn sum_words(bytes: &[u8]) -> u64 {
    bytes
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
        .fold(0u64, u64::wrapping_add)
}

/// This thread's CPU time in seconds (Linux), for a throughput that other processes on a
/// shared machine do not distort; `None` elsewhere.
fn thread_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(text.split_whitespace().next()?.parse::<f64>().ok()? / 1e9)
}

/// GB/s of `bytes` processed by `work` on this thread, by CPU time, best of 3.
fn cpu_rate(bytes: u64, mut work: impl FnMut()) -> Option<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = thread_cpu_seconds()?;
        work();
        best = best.min(thread_cpu_seconds()? - start);
    }
    Some(bytes as f64 / best / 1e9)
}

fn benches(c: &mut Criterion) {
    let pixels = (IMAGES * HEIGHT * WIDTH) as u64;
    let threads = rayon::current_num_threads();

    // Memory bandwidth on one flat buffer of the same size as the pool (label + prediction).
    let flat: Vec<u8> = (0..POOL * HEIGHT * WIDTH * 2)
        .map(|i| mix(i as u64) as u8)
        .collect();
    let passes = IMAGES / POOL;
    if let Some(rate) = cpu_rate(2 * pixels, || {
        std::hint::black_box(
            (0..passes)
                .map(|_| sum_words(&flat))
                .fold(0, u64::wrapping_add),
        );
    }) {
        eprintln!("cpu-time: sum 1 thread {rate:.2} GB/s");
    }
    let mut group = c.benchmark_group("bandwidth");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(2 * pixels));
    group.bench_function("sum/1 thread", |b| {
        b.iter(|| {
            (0..passes)
                .map(|_| sum_words(&flat))
                .fold(0, u64::wrapping_add)
        })
    });
    group.bench_function(format!("sum/{threads} threads"), |b| {
        b.iter(|| {
            (0..passes)
                .map(|_| {
                    flat.par_chunks(1 << 20)
                        .map(sum_words)
                        .reduce(|| 0, u64::wrapping_add)
                })
                .fold(0, u64::wrapping_add)
        })
    });
    let mut copy = vec![0u8; flat.len()];
    group.bench_function("memcpy/1 thread", |b| {
        b.iter(|| {
            for _ in 0..passes {
                copy.copy_from_slice(&flat);
            }
            copy[copy.len() / 2]
        })
    });
    group.finish();
    drop(copy);
    drop(flat);

    for blocky in [true, false] {
        let pool = pool(blocky);
        let kind = if blocky { "blocky" } else { "random" };
        let one_pass = accumulate_parallel(&pool);
        assert_eq!(one_pass, accumulate_serial(&pool));
        // The numpy baseline prints the same number for the same maps.
        eprintln!(
            "{kind}: mIoU {:.10} over {} images",
            one_pass.metrics().m_iou,
            one_pass.images()
        );
        if let Some(rate) = cpu_rate(2 * pixels, || {
            std::hint::black_box(accumulate_serial(&pool));
        }) {
            eprintln!("cpu-time: accumulate {kind} 1 thread {rate:.2} GB/s");
        }
        let mut group = c.benchmark_group(format!("accumulate_2000x512x683/{kind}"));
        group.sample_size(10);
        group.throughput(Throughput::Bytes(2 * pixels));
        group.bench_function("1 thread", |b| b.iter(|| accumulate_serial(&pool)));
        group.bench_function(format!("{threads} threads"), |b| {
            b.iter(|| accumulate_parallel(&pool))
        });
        group.finish();
    }
}

criterion_group!(accumulate, benches);
criterion_main!(accumulate);
