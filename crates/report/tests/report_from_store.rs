//! A store with a few cells, one incomplete, and the report written from it.

use std::collections::BTreeMap;

use rtb_corruption::{Category, Corruption};
use rtb_report::Report;
use rtb_results::{BackboneRecord, CellId, CellMetrics, MetricTable, Regime, Task};

/// P = clean − 0.01·severity − 0.05 for noise corruptions (so categories differ).
fn table(clean: f64, with: &[Corruption]) -> MetricTable {
    MetricTable {
        clean,
        corrupted: with
            .iter()
            .map(|&c| {
                let noise = if c.category() == Category::Noise {
                    0.05
                } else {
                    0.0
                };
                (
                    c,
                    std::array::from_fn(|s| clean - 0.01 * (s + 1) as f64 - noise),
                )
            })
            .collect(),
        replicates: None,
    }
}

fn record(name: &str, row: &str) -> BackboneRecord {
    BackboneRecord {
        preset: "mini".into(),
        backbone: name.into(),
        paper_row: Some(row.into()),
        description: format!("{name} backbone"),
        source_task: "shapes64".into(),
        source: Some(table(0.9, &Corruption::BENCHMARK)),
        published: None,
    }
}

#[test]
fn report_recomputes_every_number_and_marks_missing_cells() {
    let runs = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    record("regular", "Regular").write(runs.path()).unwrap();
    record("swin", "Swin-T").write(runs.path()).unwrap();

    let coco = CellMetrics {
        cell: CellId::new("mini", "regular", Task::Coco, Regime::Fixed).unwrap(),
        primary: table(0.40, &Corruption::ALL),
        secondary: [("segm_ap".to_string(), table(0.30, &Corruption::BENCHMARK))].into(),
        info: BTreeMap::new(),
    };
    coco.write(runs.path()).unwrap();
    // An incomplete cell: only the noise corruptions were evaluated.
    let partial = CellMetrics {
        cell: CellId::new("mini", "swin", Task::Coco, Regime::Fixed).unwrap(),
        primary: table(0.45, &[Corruption::GaussianNoise, Corruption::ShotNoise]),
        secondary: BTreeMap::new(),
        info: BTreeMap::new(),
    };
    partial.write(runs.path()).unwrap();
    // A cell of another preset must not appear.
    let other = CellMetrics {
        cell: CellId::new("tiny", "regular", Task::Cifar10, Regime::Full).unwrap(),
        primary: table(0.5, &Corruption::BENCHMARK),
        secondary: BTreeMap::new(),
        info: BTreeMap::new(),
    };
    other.write(runs.path()).unwrap();

    let report = Report::load(runs.path(), "mini").unwrap();
    let files = report.write(out.path()).unwrap();
    for name in [
        "index.md",
        "index.html",
        "figure1.svg",
        "figure1.png",
        "tables.tex",
        "cells.csv",
        "per_corruption.csv",
    ] {
        assert!(files.contains(&out.path().join(name)), "{name} missing");
    }

    // Hand-computed drops of the regular COCO cell: noise corruptions lose 0.03 + 0.05 on
    // average (severities 1..5 lose 0.01..0.05), the others 0.03.
    let noise_drop = 100.0 * (0.03 + 0.05) / 0.40;
    let blur_drop = 100.0 * 0.03 / 0.40;
    let md = std::fs::read_to_string(out.path().join("index.md")).unwrap();
    let table1 = md
        .lines()
        .skip_while(|l| !l.starts_with("## Table 1"))
        .find(|l| l.starts_with("| regular |"))
        .unwrap();
    assert!(
        table1.starts_with(&format!(
            "| regular | Regular | {noise_drop:.2} | - | 36.09 | {blur_drop:.2} | - | 44.00 |"
        )),
        "{table1}"
    );
    let swin_row = md
        .lines()
        .skip_while(|l| !l.starts_with("## Table 1"))
        .find(|l| l.starts_with("| swin |"))
        .unwrap();
    assert!(swin_row.contains("incomplete | - | 18.01"), "{swin_row}");
    let table2_row = md
        .lines()
        .skip_while(|l| !l.starts_with("## Table 2"))
        .find(|l| l.starts_with("| regular |"))
        .unwrap();
    assert!(table2_row.contains("not run | - | 48.98"), "{table2_row}");
    assert!(
        !md.contains("tiny"),
        "another preset leaked into the report"
    );
    assert!(md.contains("not comparable with the paper"));

    // Every cell appears once per backbone × task × regime.
    let cells = std::fs::read_to_string(out.path().join("cells.csv")).unwrap();
    assert_eq!(cells.lines().count(), 1 + 2 * 3 * 2);
    let long = std::fs::read_to_string(out.path().join("per_corruption.csv")).unwrap();
    // regular: primary with 19 corruptions + segm with 15, swin: 2 corruptions; each table
    // adds a clean row.
    assert_eq!(
        long.lines().count(),
        1 + (1 + 19 * 5) + (1 + 15 * 5) + (1 + 2 * 5)
    );

    let png = image::open(out.path().join("figure1.png")).unwrap();
    assert_eq!(png.width(), 960);
    let html = std::fs::read_to_string(out.path().join("index.html")).unwrap();
    assert!(html.contains("<svg"), "the figure is inlined");
}

#[test]
fn undefined_drops_read_n_a_not_not_run() {
    let runs = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // Clean source accuracy 0: the source-C drop is undefined.
    let mut zero = record("regular", "Regular");
    zero.source = Some(table(0.0, &Corruption::BENCHMARK));
    zero.write(runs.path()).unwrap();
    // A full-network cell that ran with an incomplete table.
    CellMetrics {
        cell: CellId::new("mini", "regular", Task::Cifar10, Regime::Full).unwrap(),
        primary: table(0.5, &[Corruption::Fog]),
        secondary: BTreeMap::new(),
        info: BTreeMap::new(),
    }
    .write(runs.path())
    .unwrap();
    Report::load(runs.path(), "mini")
        .unwrap()
        .write(out.path())
        .unwrap();
    let md = std::fs::read_to_string(out.path().join("index.md")).unwrap();
    let row = md
        .lines()
        .skip_while(|l| !l.starts_with("## Figure 1"))
        .find(|l| l.starts_with("| regular |"))
        .unwrap();
    assert_eq!(
        row,
        "| regular | 0.00 | - | n/a | - | not run | - | not run | - | n/a | - |"
    );
}

/// Figure 1's first two bars name the source task; a published backbone that rtb did not
/// evaluate shows its published top-1 and "not run" for the corrupted source task, one that
/// rtb evaluated on ImageNet shows both measured numbers.
#[test]
fn figure1_names_the_source_and_marks_published_backbones_not_run() {
    let runs = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let published = |name: &str, measured: bool| BackboneRecord {
        preset: "paper".into(),
        backbone: name.into(),
        paper_row: None,
        description: String::new(),
        source_task: "imagenet".into(),
        source: measured.then(|| table(0.76, &Corruption::BENCHMARK)),
        published: Some(rtb_results::Published {
            imagenet_top1: 76.13,
            imagenet_c_mce: None,
            source: "torchvision".into(),
        }),
    };
    published("regular", false).write(runs.path()).unwrap();
    published("measured", true).write(runs.path()).unwrap();
    let report = Report::load(runs.path(), "paper").unwrap();
    let labels = report.figure1_labels();
    assert_eq!(labels[0], "ImageNet top-1");
    assert_eq!(labels[1], "ImageNet-C drop");
    let series = report.figure1();
    let regular = series.iter().find(|s| s.backbone == "regular").unwrap();
    assert_eq!(regular.values[0], Some(76.13));
    assert_eq!((regular.ran[0], regular.ran[1]), (true, false));
    let measured = series.iter().find(|s| s.backbone == "measured").unwrap();
    assert!((measured.values[0].unwrap() - 76.0).abs() < 1e-9);
    assert!(measured.values[1].unwrap() > 0.0);
    assert_eq!((measured.ran[0], measured.ran[1]), (true, true));
    report.write(out.path()).unwrap();
    let md = std::fs::read_to_string(out.path().join("index.md")).unwrap();
    assert!(md.contains("ImageNet-C drop (%)"), "{md}");

    // The offline presets name their synthetic source task.
    let mini = tempfile::tempdir().unwrap();
    record("regular", "Regular").write(mini.path()).unwrap();
    let labels = Report::load(mini.path(), "mini").unwrap().figure1_labels();
    assert_eq!(labels[0], "shapes64 top-1");
    assert_eq!(labels[1], "shapes64-C drop");
}

/// A cell and a backbone with bootstrap replicates: the ± columns and the CSV bounds are the
/// intervals rtb-results computes from the paired replicates; a cell without replicates
/// shows "-".
#[test]
fn intervals_from_replicates_fill_the_plus_minus_columns() {
    use rtb_results::{Replicates, Resampler};
    let runs = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // Per-image correctness: clean gets images 0..12 of 20 right, every corruption at
    // severity s loses the first s of them.
    let resampler = Resampler::new(5, 20, 100);
    let correct = |k: usize| -> Vec<f64> { (0..20).map(|i| f64::from(u8::from(i < k))).collect() };
    let mut primary = table(0.6, &[]);
    let mut replicates =
        Replicates::new(&resampler, resampler.mean_replicates(&correct(12)).unwrap());
    for c in Corruption::BENCHMARK {
        primary
            .corrupted
            .insert(c, std::array::from_fn(|s| (11 - s) as f64 / 20.0));
        replicates.corrupted.insert(
            c,
            std::array::from_fn(|s| resampler.mean_replicates(&correct(11 - s)).unwrap()),
        );
    }
    primary.replicates = Some(replicates);
    let metrics = CellMetrics {
        cell: CellId::new("mini", "regular", Task::Cifar10, Regime::Full).unwrap(),
        primary: primary.clone(),
        secondary: BTreeMap::new(),
        info: BTreeMap::new(),
    };
    metrics.write(runs.path()).unwrap();
    let mut source = record("regular", "Regular");
    source.source = Some(primary.clone());
    source.write(runs.path()).unwrap();
    CellMetrics {
        cell: CellId::new("mini", "regular", Task::Cifar10, Regime::Fixed).unwrap(),
        primary: table(0.5, &Corruption::BENCHMARK),
        secondary: BTreeMap::new(),
        info: BTreeMap::new(),
    }
    .write(runs.path())
    .unwrap();
    let report = Report::load(runs.path(), "mini").unwrap();
    report.write(out.path()).unwrap();

    let intervals = primary.intervals().unwrap().unwrap();
    let drop = primary.robustness().unwrap().drop_percent;
    let pm = |i: rtb_results::Interval| format!("{:.2}", i.half_width());
    assert!(intervals.drop_percent.half_width() > 0.0);
    let md = std::fs::read_to_string(out.path().join("index.md")).unwrap();
    let figure_row = md
        .lines()
        .skip_while(|l| !l.starts_with("## Figure 1"))
        .find(|l| l.starts_with("| regular |"))
        .unwrap();
    assert_eq!(
        figure_row,
        format!(
            "| regular | 60.00 | {} | {drop:.2} | {} | not run | - | not run | - | {drop:.2} | {} |",
            pm(intervals.clean.scaled(100.0)),
            pm(intervals.drop_percent),
            pm(intervals.drop_percent),
        )
    );
    let cells = std::fs::read_to_string(out.path().join("cells.csv")).unwrap();
    let full = cells
        .lines()
        .find(|l| l.starts_with("regular,cifar10,full,"))
        .unwrap();
    assert!(
        full.contains(&format!("{drop:.2},{}", pm(intervals.drop_percent))),
        "{full}"
    );
    let fixed = cells
        .lines()
        .find(|l| l.starts_with("regular,cifar10,fixed,"))
        .unwrap();
    assert!(fixed.contains(",-,"), "no replicates, no ±: {fixed}");
    let long = std::fs::read_to_string(out.path().join("per_corruption.csv")).unwrap();
    let fog3 = long
        .lines()
        .find(|l| l.contains(",full,top1,fog,weather,3,"))
        .unwrap();
    let bounds = intervals.corrupted[&Corruption::Fog][2];
    assert!(
        fog3.ends_with(&format!(",{},{}", bounds.low, bounds.high)),
        "{fog3}"
    );
    // The figure's error bars come from the same intervals.
    let series = report.figure1();
    assert_eq!(series[0].errors[4], Some(intervals.drop_percent));
}
