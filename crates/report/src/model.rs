//! The report's content, computed once from the results store; every output format renders
//! this model and computes nothing of its own.

use std::collections::BTreeMap;

use rtb_corruption::{Category, Corruption};
use rtb_results::{
    BackboneRecord, CellMetrics, Interval, MetricTable, Regime, Robustness, RobustnessIntervals,
    Task,
};

use crate::paper::{self, PaperTable};

/// A backbone as the report shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct BackboneEntry {
    /// Directory name in the results store.
    pub name: String,
    /// The paper row it stands for.
    pub paper_row: Option<String>,
    /// One-line description.
    pub description: String,
    /// The source task (`imagenet`, `shapes64`, …).
    pub source_task: String,
    /// Source-task top-1 in percent: measured, or else published.
    pub source_top1: Option<Value>,
    /// Source-task corruption drop (1 − rPC) in percent, when measured.
    pub source_drop: Option<f64>,
    /// 95 % intervals of the measured source top-1 and drop, in percent, when the record has
    /// bootstrap replicates.
    pub source_intervals: Option<(Interval, Interval)>,
    /// Whether rtb evaluated the backbone on its source task (rather than only quoting a
    /// published top-1).
    pub source_measured: bool,
}

/// A number and where it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// The number.
    pub value: f64,
    /// `measured` or the publication's name.
    pub source: String,
}

/// One evaluated cell with its robustness summary (None when the table is incomplete).
#[derive(Debug, Clone, PartialEq)]
pub struct CellEntry {
    /// What metrics.json holds.
    pub metrics: CellMetrics,
    /// mPC, rPC, drops of the primary metric.
    pub robustness: Option<Robustness>,
    /// Their 95 % intervals (None: no replicates stored, or the table is incomplete).
    pub intervals: Option<RobustnessIntervals>,
}

/// Whether a cell has numbers to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellStatus {
    /// No metrics.json: shown as "not run", never as zeros.
    NotRun,
    /// metrics.json lacks some benchmark corruption, so mPC cannot be computed.
    Incomplete,
    /// Complete.
    Done,
}

impl CellStatus {
    fn of(cell: Option<&CellEntry>) -> Self {
        match cell {
            None => CellStatus::NotRun,
            Some(entry) if entry.robustness.is_none() => CellStatus::Incomplete,
            Some(_) => CellStatus::Done,
        }
    }

    /// The text shown instead of a number.
    pub fn placeholder(self) -> &'static str {
        match self {
            CellStatus::NotRun => "not run",
            CellStatus::Incomplete => "incomplete",
            CellStatus::Done => "",
        }
    }
}

/// A row of Table 1 or 2: a backbone's drop per category, rtb's and the paper's.
#[derive(Debug, Clone, PartialEq)]
pub struct DropRow {
    /// The backbone.
    pub backbone: String,
    /// Whether rtb's numbers exist.
    pub status: CellStatus,
    /// The paper's row it stands for.
    pub paper_row: Option<String>,
    /// rtb's drops in the paper's column order (None: not run or incomplete).
    pub ours: [Option<f64>; 4],
    /// Their 95 % intervals (None: no replicates).
    pub ours_intervals: [Option<Interval>; 4],
    /// The paper's drops for `paper_row`.
    pub paper: Option<[f64; 4]>,
}

/// Figure 1's bars: per backbone, five values in percent (None: not run).
pub const FIGURE1_GROUPS: [&str; 5] = [
    "source top-1",
    "source-C drop",
    "COCO drop",
    "ADE20K drop",
    "CIFAR-10 drop",
];

impl Report {
    /// Figure 1's group labels, with the source task named: `ImageNet top-1` and
    /// `ImageNet-C drop` when every backbone's source is ImageNet, the synthetic task's name
    /// for the offline presets, `source` when they differ.
    pub fn figure1_labels(&self) -> [String; 5] {
        let mut names: Vec<&str> = self
            .backbones
            .iter()
            .map(|b| b.source_task.as_str())
            .filter(|t| !t.is_empty())
            .collect();
        names.sort_unstable();
        names.dedup();
        let source = match names.as_slice() {
            ["imagenet"] => "ImageNet".to_string(),
            [one] => (*one).to_string(),
            _ => "source".to_string(),
        };
        [
            format!("{source} top-1"),
            format!("{source}-C drop"),
            FIGURE1_GROUPS[2].to_string(),
            FIGURE1_GROUPS[3].to_string(),
            FIGURE1_GROUPS[4].to_string(),
        ]
    }
}

/// One backbone's bars in Figure 1.
#[derive(Debug, Clone, PartialEq)]
pub struct FigureSeries {
    /// The backbone.
    pub backbone: String,
    /// Values for [`FIGURE1_GROUPS`].
    pub values: [Option<f64>; 5],
    /// The values' 95 % intervals, in percent (None: no replicates).
    pub errors: [Option<Interval>; 5],
    /// Whether each value's source ran: a value can be missing although its backbone record
    /// or cell exists (a clean metric of 0 leaves the drop undefined; a table may be
    /// incomplete), and that must not read as "not run".
    pub ran: [bool; 5],
}

/// Everything a report shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The preset.
    pub preset: String,
    /// Backbones in display order (paper rows first, in the paper's order).
    pub backbones: Vec<BackboneEntry>,
    /// Evaluated cells, keyed by (backbone, task, regime).
    pub cells: BTreeMap<(String, Task, Regime), CellEntry>,
}

impl Report {
    /// Builds the model from the store's records of one preset.
    pub fn new(preset: &str, records: Vec<BackboneRecord>, metrics: Vec<CellMetrics>) -> Self {
        let mut backbones: Vec<BackboneEntry> = records
            .into_iter()
            .map(|record| {
                let robustness = record.source.as_ref().and_then(|t| t.robustness().ok());
                let source_intervals = record
                    .source
                    .as_ref()
                    .and_then(|t| t.intervals().ok().flatten())
                    .map(|i| (i.clean.scaled(100.0), i.drop_percent));
                let source_top1 = match (&record.source, &record.published) {
                    (Some(table), _) => Some(Value {
                        value: 100.0 * table.clean,
                        source: "measured".into(),
                    }),
                    (None, Some(published)) => Some(Value {
                        value: published.imagenet_top1,
                        source: published.source.clone(),
                    }),
                    (None, None) => None,
                };
                BackboneEntry {
                    name: record.backbone,
                    paper_row: record.paper_row,
                    description: record.description,
                    source_task: record.source_task,
                    source_top1,
                    source_drop: robustness.map(|r| r.drop_percent),
                    source_intervals,
                    source_measured: record.source.is_some(),
                }
            })
            .collect();
        let mut cells = BTreeMap::new();
        for cell in metrics {
            if cell.cell.preset != preset {
                continue;
            }
            let name = cell.cell.backbone.clone();
            if !backbones.iter().any(|b| b.name == name) {
                backbones.push(BackboneEntry {
                    name: name.clone(),
                    paper_row: None,
                    description: String::new(),
                    source_task: String::new(),
                    source_top1: None,
                    source_drop: None,
                    source_intervals: None,
                    source_measured: false,
                });
            }
            let robustness = cell.primary.robustness().ok();
            let intervals = cell.primary.intervals().ok().flatten();
            cells.insert(
                (name, cell.cell.task, cell.cell.regime),
                CellEntry {
                    metrics: cell,
                    robustness,
                    intervals,
                },
            );
        }
        let paper_order = |entry: &BackboneEntry| {
            entry
                .paper_row
                .as_deref()
                .and_then(|row| paper::ROWS.iter().position(|r| *r == row))
                .unwrap_or(paper::ROWS.len())
        };
        backbones.sort_by(|a, b| {
            paper_order(a)
                .cmp(&paper_order(b))
                .then_with(|| a.name.cmp(&b.name))
        });
        Self {
            preset: preset.to_string(),
            backbones,
            cells,
        }
    }

    /// Whether (backbone, task, regime) has numbers.
    pub fn status(&self, backbone: &str, task: Task, regime: Regime) -> CellStatus {
        CellStatus::of(self.cell(backbone, task, regime))
    }

    /// The cell of (backbone, task, regime), if it was evaluated.
    pub fn cell(&self, backbone: &str, task: Task, regime: Regime) -> Option<&CellEntry> {
        self.cells.get(&(backbone.to_string(), task, regime))
    }

    /// Table 1 (COCO, fixed) or Table 2 (ADE20K, fixed) in the paper's layout.
    pub fn drop_table(&self, task: Task, regime: Regime) -> Vec<DropRow> {
        let published = published_table(task, regime);
        self.backbones
            .iter()
            .map(|backbone| {
                let cell = self.cell(&backbone.name, task, regime);
                let robustness = cell.and_then(|c| c.robustness.as_ref());
                let intervals = cell.and_then(|c| c.intervals.as_ref());
                DropRow {
                    backbone: backbone.name.clone(),
                    status: CellStatus::of(cell),
                    paper_row: backbone.paper_row.clone(),
                    ours: paper::COLUMNS
                        .map(|category| robustness.map(|r| r.category_drop_percent[&category])),
                    ours_intervals: paper::COLUMNS.map(|category| {
                        intervals.and_then(|i| i.category_drop_percent.get(&category).copied())
                    }),
                    paper: published
                        .zip(backbone.paper_row.as_deref())
                        .and_then(|(table, row)| table.row(row).copied()),
                }
            })
            .collect()
    }

    /// Figure 1's series (full-network transfer).
    pub fn figure1(&self) -> Vec<FigureSeries> {
        self.backbones
            .iter()
            .map(|backbone| {
                let drop = |task| {
                    self.cell(&backbone.name, task, Regime::Full)
                        .and_then(|c| c.robustness.as_ref())
                        .map(|r| r.drop_percent)
                };
                let ran = |task| self.cell(&backbone.name, task, Regime::Full).is_some();
                let error = |task| {
                    self.cell(&backbone.name, task, Regime::Full)
                        .and_then(|c| c.intervals.as_ref())
                        .map(|i| i.drop_percent)
                };
                let (top1_error, source_drop_error) = backbone
                    .source_intervals
                    .filter(|_| backbone.source_measured)
                    .map_or((None, None), |(t, d)| (Some(t), Some(d)));
                let source = backbone.source_top1.is_some();
                // A published top-1 is a value, but the corrupted source task only ran if
                // rtb evaluated the backbone.
                let source_c = backbone.source_measured;
                FigureSeries {
                    backbone: backbone.name.clone(),
                    values: [
                        backbone.source_top1.as_ref().map(|v| v.value),
                        backbone.source_drop,
                        drop(Task::Coco),
                        drop(Task::Ade20k),
                        drop(Task::Cifar10),
                    ],
                    errors: [
                        top1_error,
                        source_drop_error,
                        error(Task::Coco),
                        error(Task::Ade20k),
                        error(Task::Cifar10),
                    ],
                    ran: [
                        source,
                        source_c,
                        ran(Task::Coco),
                        ran(Task::Ade20k),
                        ran(Task::Cifar10),
                    ],
                }
            })
            .collect()
    }
}

/// The paper's published table for a task and regime, where there is one.
pub(crate) fn published_table(task: Task, regime: Regime) -> Option<&'static PaperTable> {
    match (task, regime) {
        (Task::Coco, Regime::Fixed) => Some(&paper::TABLE1),
        (Task::Ade20k, Regime::Fixed) => Some(&paper::TABLE2),
        _ => None,
    }
}

/// Corruptions present in a table, benchmark ones first in reference order.
pub(crate) fn corruptions_of(table: &MetricTable) -> Vec<Corruption> {
    Corruption::ALL
        .into_iter()
        .filter(|c| table.corrupted.contains_key(c))
        .collect()
}

/// The category columns of the summary tables (the paper's order).
pub(crate) fn category_columns() -> [Category; 4] {
    paper::COLUMNS
}
