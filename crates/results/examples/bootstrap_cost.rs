//! What the paired bootstrap costs at the mini preset's sizes: B = 200 replicates of every
//! condition (clean + 15 corruptions × 5 severities) of a CIFAR-format cell (500 test images)
//! and of the source task (250 images), and the intervals the report derives from them.
//! `cargo run --release -p rtb-results --example bootstrap_cost`
#![allow(clippy::print_stdout)]

use std::time::Instant;

use rtb_corruption::Corruption;
use rtb_results::{CellId, CellMetrics, MetricTable, Regime, Replicates, Resampler, Task};

/// One cell's table with replicates from per-image correctness (a fixed pattern).
fn cell(images: usize, replicates: usize) -> MetricTable {
    let resampler = Resampler::new(0, images, replicates);
    let correct = |shift: usize| -> Vec<f64> {
        (0..images)
            .map(|i| f64::from(u8::from((i * 7 + shift) % 10 < 7)))
            .collect()
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let clean = correct(0);
    let mut table = MetricTable {
        clean: mean(&clean),
        corrupted: Default::default(),
        replicates: None,
    };
    let mut reps = Replicates::new(&resampler, resampler.mean_replicates(&clean).unwrap());
    for (k, c) in Corruption::BENCHMARK.into_iter().enumerate() {
        let rows: [Vec<f64>; 5] = std::array::from_fn(|s| correct(k + s + 1));
        table
            .corrupted
            .insert(c, std::array::from_fn(|s| mean(&rows[s])));
        reps.corrupted.insert(
            c,
            std::array::from_fn(|s| resampler.mean_replicates(&rows[s]).unwrap()),
        );
    }
    table.replicates = Some(reps);
    table
}

fn main() {
    for (what, images) in [("CIFAR-format cell", 500), ("source task", 250)] {
        let runs = 5;
        let started = Instant::now();
        let mut tables = Vec::new();
        for _ in 0..runs {
            tables.push(cell(images, 200));
        }
        let replicate_ms = started.elapsed().as_secs_f64() * 1e3 / runs as f64;
        let started = Instant::now();
        for table in &tables {
            assert!(table.intervals().unwrap().is_some());
        }
        let interval_ms = started.elapsed().as_secs_f64() * 1e3 / runs as f64;
        // The size they add to metrics.json.
        let metrics = |primary: MetricTable| CellMetrics {
            cell: CellId::new("mini", "regular", Task::Cifar10, Regime::Full).unwrap(),
            primary,
            secondary: Default::default(),
            info: Default::default(),
        };
        let with = metrics(tables[0].clone()).to_json().len();
        let mut plain = tables[0].clone();
        plain.replicates = None;
        let without = metrics(plain).to_json().len();
        println!(
            "{what} ({images} images, 76 conditions, B = 200): replicates {replicate_ms:.1} ms, \
             intervals {interval_ms:.1} ms, metrics.json {without} -> {with} bytes"
        );
    }
}
