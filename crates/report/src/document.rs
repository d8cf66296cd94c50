//! The report as a list of sections with plain-text tables, so that Markdown, HTML and LaTeX
//! render the same content and none of them computes anything.

use rtb_corruption::Corruption;
use rtb_results::{Interval, Regime, Task};

use crate::model::{CellStatus, Report, category_columns, corruptions_of, published_table};
use crate::paper;

/// A table of already-formatted cells.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// One section of the report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Section {
    /// Stable identifier (HTML anchors, LaTeX labels, file names).
    pub id: String,
    pub title: String,
    /// Heading level: 2 for the main sections, 3 for per-cell tables.
    pub level: u8,
    pub paragraphs: Vec<String>,
    /// Figure 1 is drawn here.
    pub figure: bool,
    pub table: Option<Table>,
}

/// Two decimals, as the paper prints.
pub(crate) fn number(value: f64) -> String {
    format!("{value:.2}")
}

fn shown(value: Option<f64>, status: CellStatus) -> String {
    match value {
        Some(v) if status == CellStatus::Done => number(v),
        _ => match status {
            CellStatus::Done => "n/a".to_string(),
            other => other.placeholder().to_string(),
        },
    }
}

/// The "±" cell: half the width of the 95 % interval, "-" without one (files written before
/// rtb stored bootstrap replicates, or a cell that did not run).
pub(crate) fn plus_minus(interval: Option<Interval>) -> String {
    match interval {
        Some(i) if i.low.is_finite() && i.high.is_finite() => number(i.half_width()),
        Some(_) => "n/a".into(),
        None => "-".into(),
    }
}

/// "±" in a header.
const PM: &str = "±";

fn drop_section(report: &Report, id: &str, title: &str, task: Task) -> Section {
    let published = published_table(task, Regime::Fixed).expect("Tables 1 and 2 are published");
    let mut headers = vec!["Backbone".to_string(), "Paper row".to_string()];
    for category in category_columns() {
        let name = capitalised(category.name());
        headers.push(format!("{name} (rtb)"));
        headers.push(PM.to_string());
        headers.push(format!("{name} (paper)"));
    }
    let rows = report
        .drop_table(task, Regime::Fixed)
        .into_iter()
        .map(|row| {
            let mut cells = vec![
                row.backbone.clone(),
                row.paper_row.clone().unwrap_or_else(|| "-".into()),
            ];
            for (i, ours) in row.ours.iter().enumerate() {
                cells.push(shown(*ours, row.status));
                cells.push(plus_minus(row.ours_intervals[i]));
                cells.push(
                    row.paper
                        .map(|p| number(p[i]))
                        .unwrap_or_else(|| "-".into()),
                );
            }
            cells
        })
        .collect();
    Section {
        id: id.to_string(),
        title: title.to_string(),
        level: 2,
        paragraphs: vec![format!(
            "Accuracy drop (1 − rPC, in %) of the task metric per corruption category, with the \
             backbone frozen; ± is half the width of rtb's 95 % bootstrap interval over the \
             evaluation images. \"paper\" columns are the published numbers ({}) for the paper \
             row each backbone stands for.",
            published.source
        )],
        figure: false,
        table: Some(Table { headers, rows }),
    }
}

fn capitalised(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn figure_section(report: &Report) -> Section {
    let mut headers = vec!["Backbone".to_string()];
    for label in report.figure1_labels() {
        headers.push(format!("{label} (%)"));
        headers.push(PM.to_string());
    }
    let rows = report
        .figure1()
        .into_iter()
        .map(|series| {
            let mut cells = vec![series.backbone];
            for ((v, ran), error) in series.values.iter().zip(series.ran).zip(series.errors) {
                cells.push(match v {
                    Some(v) => number(*v),
                    // Ran, but no number: the drop is undefined (clean metric 0) or the table is
                    // incomplete.
                    None if ran => "n/a".into(),
                    None => "not run".into(),
                });
                cells.push(plus_minus(error));
            }
            cells
        })
        .collect();
    Section {
        id: "figure1".into(),
        title: "Figure 1 — full-network transfer".into(),
        level: 2,
        paragraphs: vec![
            "Per backbone: top-1 on its source task (ImageNet for the paper preset), the drop \
             (1 − rPC, %) on the corrupted source task, and the drop on each downstream task \
             after fine-tuning every weight; ± and the error bars are 95 % bootstrap intervals \
             over the evaluation images (paired: every condition resamples the same images). \
             Missing bars are cells that were not run, or whose drop \
             is undefined (n/a: a clean metric of 0, or an incomplete table)."
                .into(),
            paper::FIGURE1_FINDINGS.into(),
        ],
        figure: true,
        table: Some(Table { headers, rows }),
    }
}

fn all_cells_section(report: &Report) -> Section {
    let mut headers: Vec<String> = [
        "Backbone", "Task", "Regime", "Metric", "Clean", PM, "mPC", PM, "rPC", PM, "Drop %", PM,
    ]
    .map(String::from)
    .to_vec();
    for c in category_columns() {
        headers.push(format!("{} drop %", capitalised(c.name())));
        headers.push(PM.to_string());
    }
    let mut rows = Vec::new();
    for backbone in &report.backbones {
        for task in Task::ALL {
            for regime in Regime::ALL {
                let status = report.status(&backbone.name, task, regime);
                let cell = report.cell(&backbone.name, task, regime);
                let robustness = cell.and_then(|c| c.robustness.as_ref());
                let intervals = cell.and_then(|c| c.intervals.as_ref());
                let mut row = vec![
                    backbone.name.clone(),
                    task.name().to_string(),
                    regime.name().to_string(),
                    task.metric().to_string(),
                    match cell {
                        Some(c) => number(100.0 * c.metrics.primary.clean),
                        None => status.placeholder().to_string(),
                    },
                    plus_minus(intervals.map(|i| i.clean.scaled(100.0))),
                    shown(robustness.map(|r| 100.0 * r.mpc), status),
                    plus_minus(intervals.map(|i| i.mpc.scaled(100.0))),
                    shown(robustness.map(|r| r.rpc), status),
                    plus_minus(intervals.map(|i| i.rpc)),
                    shown(robustness.map(|r| r.drop_percent), status),
                    plus_minus(intervals.map(|i| i.drop_percent)),
                ];
                for c in category_columns() {
                    row.push(shown(
                        robustness.map(|r| r.category_drop_percent[&c]),
                        status,
                    ));
                    row.push(plus_minus(
                        intervals.and_then(|i| i.category_drop_percent.get(&c).copied()),
                    ));
                }
                rows.push(row);
            }
        }
    }
    Section {
        id: "cells".into(),
        title: "Every cell".into(),
        level: 2,
        paragraphs: vec![
            "Clean and mPC are the task metric in % (top-1, box AP, mIoU); rPC = mPC / clean; \
             drops are 1 − rPC in %. mPC averages the 15 benchmark corruptions × severities \
             1..5. Each ± is half the width of the 95 % bootstrap interval over the evaluation \
             images, paired across conditions; \"-\" where the cell stored no replicates."
                .into(),
        ],
        figure: false,
        table: Some(Table { headers, rows }),
    }
}

fn per_corruption_sections(report: &Report) -> Vec<Section> {
    let mut sections = vec![Section {
        id: "per-corruption".into(),
        title: "Per corruption and severity".into(),
        level: 2,
        paragraphs: vec![
            "The task metric in % for each corruption (rows) and severity (columns), ± half the \
             width of its 95 % bootstrap interval when the cell stored replicates. Extras \
             (speckle_noise, gaussian_blur, spatter, saturate) are shown when evaluated but \
             never enter mPC."
                .into(),
        ],
        figure: false,
        table: None,
    }];
    for ((backbone, task, regime), entry) in &report.cells {
        let mut tables = vec![(task.metric().to_string(), &entry.metrics.primary)];
        tables.extend(
            entry
                .metrics
                .secondary
                .iter()
                .map(|(name, table)| (name.clone(), table)),
        );
        for (metric, table) in tables {
            // Each value with its 95 % interval's half-width, when the table has replicates
            // (an incomplete table has none: its intervals need every benchmark corruption).
            let intervals = table.intervals().ok().flatten();
            let with_pm = |value: f64, interval: Option<Interval>| match interval {
                Some(i) => format!(
                    "{} ± {}",
                    number(100.0 * value),
                    plus_minus(Some(i.scaled(100.0)))
                ),
                None => number(100.0 * value),
            };
            let mut headers = vec!["Corruption".to_string(), "Category".to_string()];
            headers.extend((1..=5).map(|s| format!("s{s}")));
            headers.push("Mean".into());
            let mut rows = vec![{
                let mut row = vec!["clean".to_string(), "-".to_string()];
                let clean = with_pm(table.clean, intervals.as_ref().map(|i| i.clean));
                row.extend((0..5).map(|_| clean.clone()));
                row.push(clean);
                row
            }];
            for corruption in corruptions_of(table) {
                let values = table.corrupted[&corruption];
                let row_intervals = intervals
                    .as_ref()
                    .and_then(|i| i.corrupted.get(&corruption));
                let mut row = vec![
                    corruption.name().to_string(),
                    corruption.category().name().to_string(),
                ];
                row.extend(
                    values
                        .iter()
                        .enumerate()
                        .map(|(s, v)| with_pm(*v, row_intervals.map(|r| r[s]))),
                );
                row.push(number(100.0 * values.iter().sum::<f64>() / 5.0));
                rows.push(row);
            }
            let missing: Vec<&str> = Corruption::BENCHMARK
                .iter()
                .filter(|c| !table.corrupted.contains_key(c))
                .map(|c| c.name())
                .collect();
            sections.push(Section {
                id: format!("{backbone}-{task}-{regime}-{metric}"),
                title: format!("{backbone} / {task} / {regime} — {metric}"),
                level: 3,
                paragraphs: if missing.is_empty() {
                    Vec::new()
                } else {
                    vec![format!("Not evaluated: {}.", missing.join(", "))]
                },
                figure: false,
                table: Some(Table { headers, rows }),
            });
        }
    }
    sections
}

fn backbones_section(report: &Report) -> Section {
    let headers = [
        "Backbone",
        "Paper row",
        "Source task",
        "Source top-1 %",
        PM,
        "Source-C drop %",
        PM,
        "Description",
    ]
    .map(String::from)
    .to_vec();
    let rows = report
        .backbones
        .iter()
        .map(|b| {
            vec![
                b.name.clone(),
                b.paper_row.clone().unwrap_or_else(|| "-".into()),
                if b.source_task.is_empty() {
                    "-".into()
                } else {
                    b.source_task.clone()
                },
                b.source_top1
                    .as_ref()
                    .map(|v| format!("{} ({})", number(v.value), v.source))
                    .unwrap_or_else(|| "not run".into()),
                plus_minus(b.source_intervals.map(|(top1, _)| top1)),
                b.source_drop
                    .map(number)
                    .unwrap_or_else(|| "not run".into()),
                plus_minus(b.source_intervals.map(|(_, drop)| drop)),
                b.description.clone(),
            ]
        })
        .collect();
    Section {
        id: "backbones".into(),
        title: "Backbones".into(),
        level: 2,
        paragraphs: Vec::new(),
        figure: false,
        table: Some(Table { headers, rows }),
    }
}

/// The whole report, in reading order.
pub(crate) fn sections(report: &Report) -> Vec<Section> {
    let mut intro = vec![format!(
        "Robustness transfer results of preset `{}`: how much of each backbone's corruption \
         robustness survives transfer. Numbers marked \"paper\" are published values; every \
         other number was measured by rtb and recomputed from the cells' metrics.json.",
        report.preset
    )];
    if report.preset != "paper" {
        intro.push(
            "This preset runs small backbones pretrained on a synthetic source task and \
             transferred to synthetic tasks: it demonstrates the pipeline end to end, and its \
             numbers are not comparable with the paper's."
                .into(),
        );
    }
    let mut sections = vec![
        Section {
            id: "overview".into(),
            title: "Overview".into(),
            level: 2,
            paragraphs: intro,
            figure: false,
            table: None,
        },
        drop_section(
            report,
            "table1",
            "Table 1 — fixed-feature transfer to COCO detection (box AP)",
            Task::Coco,
        ),
        drop_section(
            report,
            "table2",
            "Table 2 — fixed-feature transfer to ADE20K segmentation (mIoU)",
            Task::Ade20k,
        ),
        figure_section(report),
        all_cells_section(report),
        backbones_section(report),
    ];
    sections.extend(per_corruption_sections(report));
    sections
}
