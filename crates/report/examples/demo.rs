//! Writes a report from a synthetic results store, to see what rtb's report looks like:
//! `cargo run -p rtb-report --example demo -- OUT_DIR`.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;

use rtb_corruption::Corruption;
use rtb_report::Report;
use rtb_results::{
    BackboneRecord, CellId, CellMetrics, MetricTable, Regime, Replicates, Resampler, Task,
};

fn table(clean: f64, robustness: f64) -> MetricTable {
    let value = |clean: f64, i: usize, s: usize| {
        let loss = (1.0 - robustness) * (0.1 + 0.15 * s as f64) * (1.0 + i as f64 / 19.0);
        clean * (1.0 - loss).max(0.0)
    };
    // Stand-in bootstrap replicates: each replicate scales the clean metric a little, and the
    // corrupted ones follow it (as paired resamples of the same images do).
    let resampler = Resampler::new(0, 100, 50);
    let jitter = |b: usize| 1.0 + 0.03 * ((b as f64 * 2.399).sin());
    let mut replicates = Replicates::new(
        &resampler,
        (0..resampler.replicates)
            .map(|b| clean * jitter(b))
            .collect(),
    );
    for (i, c) in Corruption::ALL.into_iter().enumerate() {
        replicates.corrupted.insert(
            c,
            std::array::from_fn(|s| {
                (0..resampler.replicates)
                    .map(|b| value(clean * jitter(b), i, s) * (1.0 + 0.01 * (b as f64).cos()))
                    .collect()
            }),
        );
    }
    MetricTable {
        clean,
        corrupted: Corruption::ALL
            .into_iter()
            .enumerate()
            .map(|(i, c)| (c, std::array::from_fn(|s| value(clean, i, s))))
            .collect(),
        replicates: Some(replicates),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "report-demo".into());
    let runs = std::env::temp_dir().join("rtb-report-demo-runs");
    let _ = std::fs::remove_dir_all(&runs);
    let backbones = [
        ("regular", "Regular", 0.5),
        ("ant", "ANT", 0.65),
        ("deepaug", "DeepAug+", 0.75),
        ("swin_t", "Swin-T", 0.7),
    ];
    for (name, row, robustness) in backbones {
        BackboneRecord {
            preset: "demo".into(),
            backbone: name.into(),
            paper_row: Some(row.into()),
            description: format!("synthetic {row} stand-in"),
            source_task: "shapes64".into(),
            source: Some(table(0.9, robustness)),
            published: None,
        }
        .write(&runs)?;
        for task in Task::ALL {
            for regime in Regime::ALL {
                // Leave one cell out to show how missing cells are reported.
                if name == "swin_t" && task == Task::Ade20k && regime == Regime::Full {
                    continue;
                }
                CellMetrics {
                    cell: CellId::new("demo", name, task, regime)?,
                    primary: table(0.4 + 0.1 * (task as usize as f64), robustness),
                    secondary: BTreeMap::new(),
                    info: BTreeMap::new(),
                }
                .write(&runs)?;
            }
        }
    }
    let files = Report::load(&runs, "demo")?.write(std::path::Path::new(&out))?;
    for file in files {
        println!("{}", file.display());
    }
    Ok(())
}
