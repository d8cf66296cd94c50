//! The study end to end at toy scale (`presets/tiny.toml`), through rtb-study's orchestrator
//! and this build's `rtb` binary, exactly as `cargo xtask reproduce --preset tiny` runs it:
//!
//! - every step succeeds, the report's files exist, and its numbers (every cell, Table 1's
//!   and Table 2's per-category drops of the COCO and ADE20K cells, Figure 1) equal those
//!   recomputed here from the raw metrics.json and backbone.json tables;
//! - a second run recomputes nothing (every step but the report is skipped, no result file
//!   is rewritten);
//! - every cell and backbone stores paired bootstrap replicates (the preset's
//!   `[evaluation] bootstrap`), and the report's ± columns are the intervals rtb-results
//!   computes from them;
//! - a backbone step killed mid-training and restarted ends with the same bytes (weights,
//!   backbone.json, the downstream cells' metrics.json with their replicates, and the report
//!   with its ± values) as an uninterrupted run: the same seed gives the same intervals.
//!
//! The corruptions include frost, so the tests need the frost textures (`cargo xtask
//! assets`); without them they skip with a note, unless RTB_REQUIRE_ASSETS=1 (CI).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use rtb_results::{BackboneRecord, CellMetrics, Interval};
use rtb_study::{
    DeviceKind, Filter, Invocation, Layout, Orchestrator, Outcome, Plan, Preset, Schedule, Step,
    Summary,
};
use rtb_tests::{frost_available, repo_root, rtb_binary};
use serde_json::Value;

fn orchestrator(preset_file: &Path, preset: &Preset, root: &Path) -> Orchestrator {
    let runs = root.join("runs");
    Orchestrator {
        rtb: rtb_binary(),
        invocation: Invocation {
            preset_file: preset_file.to_path_buf(),
            layout: Layout::new(&runs, preset, &root.join("downloads")),
            report_dir: root.join("report"),
            device: DeviceKind::Cpu,
            schedule: Schedule::Paper,
            allow_unverified: false,
            imagenet: None,
        },
        resume: true,
        env: vec![("NO_COLOR".into(), "1".into())],
        working_dir: Some(repo_root()),
    }
}

fn run(orchestrator: &Orchestrator, plan: &Plan) -> Summary {
    let summary = orchestrator.run(plan, &mut |_| {}).unwrap();
    for (step, outcome) in &summary.steps {
        if let Outcome::Failed { log, .. } = outcome {
            panic!(
                "{step} failed:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
    assert!(summary.success());
    summary
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// mPC, clean and drop (in %) from a raw table {clean, corrupted: {name: [5 values]}}.
fn recompute(table: &Value) -> (f64, f64, f64) {
    let clean = table["clean"].as_f64().unwrap();
    let corrupted = table["corrupted"].as_object().unwrap();
    assert_eq!(corrupted.len(), 15, "15 benchmark corruptions");
    let values: Vec<f64> = corrupted
        .values()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    assert_eq!(values.len(), 75);
    let mpc = values.iter().sum::<f64>() / 75.0;
    (clean, mpc, 100.0 * (1.0 - mpc / clean))
}

fn csv_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let headers: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    lines
        .map(|line| {
            headers
                .iter()
                .cloned()
                .zip(line.split(',').map(String::from))
                .collect()
        })
        .collect()
}

/// The cells of a CSV row whose header is `column` and the "±" column after it (headers
/// repeat "±", so rows are read by position).
fn with_plus_minus(path: &Path, row_starts: &str, column: &str) -> (String, String) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let headers: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = headers.iter().position(|h| *h == column).unwrap();
    assert_eq!(headers[at + 1], "±", "{column} is followed by its ± column");
    let row: Vec<&str> = lines
        .find(|l| l.starts_with(row_starts))
        .unwrap_or_else(|| panic!("no row {row_starts} in {}", path.display()))
        .split(',')
        .collect();
    (row[at].to_string(), row[at + 1].to_string())
}

/// The "±" the report prints for an interval (two decimals; "n/a" when undefined).
fn plus_minus(interval: Interval) -> String {
    if interval.low.is_finite() && interval.high.is_finite() {
        format!("{:.2}", interval.half_width())
    } else {
        "n/a".to_string()
    }
}

fn mtimes(dir: &Path, out: &mut BTreeMap<PathBuf, SystemTime>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            mtimes(&path, out);
        } else {
            let name = path.file_name().unwrap().to_string_lossy();
            if name.ends_with(".json") || name.ends_with(".safetensors") || name.ends_with(".bin") {
                out.insert(
                    path.clone(),
                    std::fs::metadata(&path).unwrap().modified().unwrap(),
                );
            }
        }
    }
}

#[test]
fn tiny_study_runs_reports_and_resumes_without_recomputing() {
    if !frost_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let preset_file = repo_root().join("presets/tiny.toml");
    let preset = Preset::load(&preset_file).unwrap();
    let orchestrator = orchestrator(&preset_file, &preset, dir.path());
    let plan = Plan::new(&preset, Schedule::Paper, &Filter::default(), None).unwrap();
    assert_eq!(
        plan.cells().count(),
        24,
        "4 backbones × (COCO + ADE20K + CIFAR-10) × 2 regimes"
    );

    let first = run(&orchestrator, &plan);
    assert_eq!(first.done(), plan.steps.len());

    let report = dir.path().join("report");
    for file in [
        "index.md",
        "index.html",
        "figure1.svg",
        "figure1.png",
        "tables.tex",
        "cells.csv",
        "per_corruption.csv",
    ] {
        let path = report.join(file);
        assert!(
            std::fs::metadata(&path)
                .map(|m| m.len() > 0)
                .unwrap_or(false),
            "{file}"
        );
    }
    let index = std::fs::read_to_string(report.join("index.md")).unwrap();
    assert!(
        index.contains("demonstrates the pipeline"),
        "the report says it is a demonstration"
    );

    // Every cell's clean, mPC and drop as the report prints them (two decimals, percent).
    let runs = dir.path().join("runs");
    let rows = csv_rows(&report.join("cells.csv"));
    for cell in plan.cells() {
        let metrics = json(&cell.dir(&runs).join("metrics.json"));
        let (clean, mpc, drop) = recompute(&metrics);
        let row = rows
            .iter()
            .find(|r| {
                r.get("Backbone") == Some(&cell.backbone)
                    && r.get("Task").map(String::as_str) == Some(cell.task.name())
                    && r.get("Regime").map(String::as_str) == Some(cell.regime.name())
            })
            .unwrap_or_else(|| panic!("no row for {cell} in cells.csv: {rows:?}"));
        assert_eq!(row["Clean"], format!("{:.2}", 100.0 * clean), "{cell}");
        assert_eq!(row["mPC"], format!("{:.2}", 100.0 * mpc), "{cell}");
        assert_eq!(row["Drop %"], format!("{drop:.2}"), "{cell}");
        assert_eq!(metrics["cell"]["preset"], "tiny");

        // The paired bootstrap: B replicates of every condition over the evaluated images,
        // and the report's ± of the drop is rtb-results' interval of them.
        let bootstrap = &metrics["bootstrap"];
        assert_eq!(
            bootstrap["replicates"].as_u64(),
            Some(preset.evaluation.bootstrap as u64),
            "{cell}"
        );
        assert_eq!(
            bootstrap["clean"].as_array().unwrap().len(),
            preset.evaluation.bootstrap,
            "{cell}"
        );
        assert_eq!(
            bootstrap["corrupted"].as_object().unwrap().len(),
            15,
            "{cell}"
        );
        let table = CellMetrics::read(&cell.dir(&runs).join("metrics.json"))
            .unwrap()
            .primary;
        let key = format!(
            "{},{},{},",
            cell.backbone,
            cell.task.name(),
            cell.regime.name()
        );
        if clean > 0.0 {
            let intervals = table.intervals().unwrap().unwrap();
            let (shown, pm) = with_plus_minus(&report.join("cells.csv"), &key, "Drop %");
            assert_eq!(shown, format!("{drop:.2}"), "{cell}");
            assert_eq!(pm, plus_minus(intervals.drop_percent), "{cell}");
            let (_, pm) = with_plus_minus(&report.join("cells.csv"), &key, "Clean");
            assert_eq!(pm, plus_minus(intervals.clean.scaled(100.0)), "{cell}");
        }
    }
    for backbone in ["regular", "ant", "deepaug", "swin"] {
        let record =
            BackboneRecord::read(&runs.join(format!("tiny/{backbone}/backbone.json"))).unwrap();
        let replicates = record.source.unwrap().replicates.unwrap();
        assert_eq!(
            replicates.count(),
            preset.evaluation.bootstrap,
            "{backbone}"
        );
        assert_eq!(replicates.corrupted.len(), 15, "{backbone}");
    }
    // Table 1 (COCO, fixed) and Table 2 (ADE20K, fixed): each backbone's per-category drops,
    // recomputed from the raw primary table of metrics.json (box AP, mIoU); the secondary
    // tables (mask AP; aAcc, mAcc) hold every condition.
    for (title, task, metric, secondary) in [
        ("# Table 1", "coco", "bbox_ap", &["mask_ap"][..]),
        ("# Table 2", "ade20k", "miou", &["aacc", "macc"][..]),
    ] {
        let start = index
            .find(title)
            .unwrap_or_else(|| panic!("the report has {title}"));
        let section = &index[start..];
        let table2 = &section[..section[1..]
            .find("\n#")
            .map_or(section.len(), |end| end + 1)];
        for backbone in ["regular", "ant", "deepaug", "swin"] {
            let metrics = json(&runs.join(format!("tiny/{backbone}/{task}/fixed/metrics.json")));
            assert_eq!(metrics["metric"], metric);
            for name in secondary {
                assert_eq!(
                    metrics["secondary"][name]["corrupted"]
                        .as_object()
                        .unwrap()
                        .len(),
                    15,
                    "{backbone}: {name}"
                );
            }
            let clean = metrics["clean"].as_f64().unwrap();
            let corrupted = metrics["corrupted"].as_object().unwrap();
            let drops: Vec<String> = ["noise", "blur", "digital", "weather"]
                .iter()
                .map(|category| {
                    let values: Vec<f64> = corrupted
                        .iter()
                        .filter(|(name, _)| {
                            name.parse::<rtb_corruption::Corruption>()
                                .unwrap()
                                .category()
                                .name()
                                == *category
                        })
                        .flat_map(|(_, row)| {
                            row.as_array()
                                .unwrap()
                                .iter()
                                .map(|v| v.as_f64().unwrap())
                                .collect::<Vec<_>>()
                        })
                        .collect();
                    let mean = values.iter().sum::<f64>() / values.len() as f64;
                    if clean > 0.0 {
                        format!("{:.2}", 100.0 * (1.0 - mean / clean))
                    } else {
                        "n/a".to_string()
                    }
                })
                .collect();
            let line = table2
                .lines()
                .find(|l| l.starts_with(&format!("| {backbone} |")))
                .unwrap_or_else(|| panic!("no {title} row for {backbone}:\n{table2}"));
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // | backbone | paper row | noise (rtb) | ± | noise (paper) | blur (rtb) | …
            let ours: Vec<&str> = (0..4).map(|i| cells[3 + 3 * i]).collect();
            assert_eq!(ours, drops, "{title} {backbone}: {line}");
        }
    }
    // The long table repeats metrics.json's raw values.
    let long = csv_rows(&report.join("per_corruption.csv"));
    for task in ["cifar10", "ade20k", "coco"] {
        let fog = long
            .iter()
            .find(|r| {
                r["backbone"] == "swin"
                    && r["task"] == task
                    && r["regime"] == "full"
                    && r["corruption"] == "fog"
                    && r["severity"] == "3"
            })
            .unwrap_or_else(|| panic!("swin/{task}/full fog severity 3"));
        let metrics = json(&runs.join(format!("tiny/swin/{task}/full/metrics.json")));
        assert_eq!(
            fog["value"].parse::<f64>().unwrap(),
            metrics["corrupted"]["fog"][2].as_f64().unwrap()
        );
    }
    // Figure 1's source columns come from backbone.json.
    for backbone in ["regular", "ant", "deepaug", "swin"] {
        let record = json(&runs.join(format!("tiny/{backbone}/backbone.json")));
        let (clean, _, drop) = recompute(&record["source"]);
        let line = index
            .lines()
            .find(|l| l.starts_with(&format!("| {backbone} |")) && l.matches('|').count() == 12)
            .unwrap_or_else(|| panic!("no Figure 1 row for {backbone}"));
        // A clean accuracy of 0 (possible at toy scale) leaves the drop undefined.
        let drop = if clean > 0.0 {
            format!("{drop:.2}")
        } else {
            "n/a".to_string()
        };
        // | backbone | top-1 | ± | drop | ± | …
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(
            (cells[2], cells[4]),
            (format!("{:.2}", 100.0 * clean).as_str(), drop.as_str()),
            "{backbone}: {line}"
        );
        assert!(cells[3].parse::<f64>().is_ok(), "a ± for top-1: {line}");
    }

    // Second run: nothing is recomputed.
    let mut before = BTreeMap::new();
    mtimes(&runs, &mut before);
    let second = run(&orchestrator, &plan);
    assert_eq!(
        second.skipped(),
        plan.steps.len() - 1,
        "all but the report skipped"
    );
    assert_eq!(second.done(), 1);
    assert!(matches!(
        second.steps.last(),
        Some((Step::Report, Outcome::Done { .. }))
    ));
    let mut after = BTreeMap::new();
    mtimes(&runs, &mut after);
    assert_eq!(before, after, "no result file was rewritten");
}

#[test]
fn a_killed_backbone_step_resumes_to_the_same_bytes() {
    if !frost_available() {
        return;
    }
    // The tiny preset with a longer AugMix pretraining (48 iterations, a checkpoint every 2),
    // so that the kill lands mid-training.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_root().join("presets/tiny.toml")).unwrap();
    let marker = "augment = { kind = \"augmix\", jsd = true }";
    assert!(text.contains(marker));
    let text = text.replacen(
        &format!("epochs = 2\nbatch_size = 16\n{marker}"),
        &format!("epochs = 12\nbatch_size = 16\n{marker}"),
        1,
    );
    assert!(text.contains("epochs = 12"));
    let preset_file = dir.path().join("tiny.toml");
    std::fs::write(&preset_file, text).unwrap();
    let preset = Preset::load(&preset_file).unwrap();
    let only: Filter = "backbone=deepaug,regime=full".parse().unwrap();
    let plan = Plan::new(&preset, Schedule::Paper, &only, None).unwrap();
    let labels: Vec<String> = plan.steps.iter().map(Step::label).collect();
    assert_eq!(
        labels,
        [
            "data",
            "backbone deepaug",
            "cell deepaug/coco/full",
            "cell deepaug/ade20k/full",
            "cell deepaug/cifar10/full",
            "report"
        ]
    );

    // Uninterrupted.
    let a = orchestrator(&preset_file, &preset, &dir.path().join("a"));
    run(&a, &plan);

    // Killed after its first checkpoint, then restarted by the orchestrator.
    let b = orchestrator(&preset_file, &preset, &dir.path().join("b"));
    run(
        &b,
        &Plan {
            steps: vec![Step::Data],
            ..plan.clone()
        },
    );
    let step = Step::Backbone("deepaug".into());
    let backbone_dir = b.invocation.layout.backbone_dir("deepaug");
    let checkpoints = backbone_dir.join("pretrain/checkpoints");
    let mut child = b
        .command(&step)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let any = std::fs::read_dir(&checkpoints)
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| !e.file_name().to_string_lossy().starts_with('.'))
            })
            .unwrap_or(false);
        if any {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the step ended before its first checkpoint"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint after 120 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !backbone_dir.join("backbone.json").exists(),
        "the kill must land before the step finished"
    );
    let resumed = run(&b, &plan);
    assert!(
        matches!(resumed.steps[0].1, Outcome::Skipped),
        "data are kept"
    );
    assert!(matches!(resumed.steps[1].1, Outcome::Done { .. }));
    let log = std::fs::read_to_string(b.invocation.layout.logs_dir().join("backbone_deepaug.log"))
        .unwrap();
    assert!(log.contains("resumes at iteration"), "{log}");

    let a_dir = a.invocation.layout.backbone_dir("deepaug");
    for file in [
        "backbone.safetensors",
        "backbone.json",
        "coco/full/metrics.json",
        "ade20k/full/metrics.json",
        "cifar10/full/metrics.json",
    ] {
        assert_eq!(
            std::fs::read(a_dir.join(file)).unwrap(),
            std::fs::read(backbone_dir.join(file)).unwrap(),
            "{file} differs between the killed-and-resumed and the uninterrupted run"
        );
    }
    // The same seeds give the same replicates, so the same intervals in the report.
    let a_report = &a.invocation.report_dir;
    let b_report = &b.invocation.report_dir;
    for file in ["index.md", "cells.csv", "per_corruption.csv"] {
        assert_eq!(
            std::fs::read_to_string(a_report.join(file)).unwrap(),
            std::fs::read_to_string(b_report.join(file)).unwrap(),
            "{file} differs between the two runs"
        );
    }
    let cells = std::fs::read_to_string(a_report.join("cells.csv")).unwrap();
    let full = cells
        .lines()
        .find(|l| l.starts_with("deepaug,cifar10,full,"))
        .unwrap();
    assert!(!full.contains(",-,"), "every ± is filled: {full}");
}
