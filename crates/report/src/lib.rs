//! `rtb-report`: turns the results store into the paper's tables and figure.
//!
//! [`Report::load`] reads every finished cell (`metrics.json`) and backbone record
//! (`backbone.json`) of one preset; [`Report::write`] writes into a directory:
//!
//! - `index.md` and `index.html`: Table 1 (COCO, fixed) and Table 2 (ADE20K, fixed) in the
//!   paper's layout (drop per category) with the published numbers beside rtb's, Figure 1
//!   (full-network drops per backbone), a table of every cell, the backbones, and the
//!   per-corruption × severity tables;
//! - `figure1.svg` and `figure1.png` (drawn with plotters, error bars from the 95 % bootstrap
//!   intervals; the PNG's text in DejaVu Sans, embedded by the `dejavu` crate, so no system
//!   font is needed);
//! - `cells.csv` (one row per cell), `per_corruption.csv` (long format), `tables.tex`.
//!
//! Every number is recomputed from the cells' raw tables (the summaries stored in
//! metrics.json are never trusted), and a cell that has not run shows as "not run", never as
//! a zero. Published numbers are marked with their source.
//!
//! This crate reads files written by rtb-results and depends on nothing that trains.
//!
//! ```
//! use rtb_report::Report;
//! let runs = tempfile::tempdir().unwrap();
//! let out = tempfile::tempdir().unwrap();
//! let report = Report::load(runs.path(), "mini").unwrap();
//! let files = report.write(out.path()).unwrap();
//! assert!(files.iter().any(|f| f.ends_with("index.md")));
//! let text = std::fs::read_to_string(out.path().join("index.md")).unwrap();
//! assert!(text.contains("Table 1"));
//! ```
#![deny(missing_docs)]

mod document;
mod figure;
mod model;
mod paper;
mod render;

use std::path::{Path, PathBuf};

pub use figure::FigureError;
pub use model::{
    BackboneEntry, CellEntry, CellStatus, DropRow, FIGURE1_GROUPS, FigureSeries, Report, Value,
};
use rtb_results::{BackboneRecord, CellMetrics, Interval, ResultsError};

/// Errors loading the store or writing the report; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The results store could not be read.
    #[error(transparent)]
    Results(#[from] ResultsError),
    /// An output file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The figure could not be drawn.
    #[error(transparent)]
    Figure(#[from] FigureError),
    /// The PNG could not be encoded.
    #[error("{path}: {source}")]
    Png {
        /// The file.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: image::ImageError,
    },
}

impl Report {
    /// Reads preset `preset` of the store rooted at `runs` (`runs/<preset>/…`). A preset with
    /// no results gives a report whose cells all read "not run".
    pub fn load(runs: &Path, preset: &str) -> Result<Self, ReportError> {
        let records = BackboneRecord::read_preset(runs, preset)?;
        let cells = CellMetrics::read_all(runs)?;
        Ok(Self::new(preset, records, cells))
    }

    /// Writes every output file into `out` (created if needed); returns their paths.
    pub fn write(&self, out: &Path) -> Result<Vec<PathBuf>, ReportError> {
        std::fs::create_dir_all(out).map_err(|source| ReportError::Io {
            path: out.to_path_buf(),
            source,
        })?;
        let title = format!("rtb report: preset {}", self.preset);
        let sections = document::sections(self);
        let figure_title = format!("Figure 1 - full-network transfer ({})", self.preset);
        let series = self.figure1();
        let labels = self.figure1_labels();
        let svg = figure::svg(&series, &labels, &figure_title)?;

        let mut written = Vec::new();
        let mut text_file = |name: &str, contents: String| -> Result<(), ReportError> {
            let path = out.join(name);
            write_file(&path, contents.as_bytes())?;
            written.push(path);
            Ok(())
        };
        text_file("index.md", render::markdown(&title, &sections))?;
        text_file("index.html", render::html(&title, &sections, &svg))?;
        text_file("figure1.svg", svg.clone())?;
        text_file("tables.tex", render::latex(&sections))?;
        let cells_table = sections
            .iter()
            .find(|s| s.id == "cells")
            .and_then(|s| s.table.as_ref())
            .expect("the report has a table of every cell");
        text_file("cells.csv", render::csv(cells_table))?;
        text_file("per_corruption.csv", self.per_corruption_csv())?;

        let png_path = out.join("figure1.png");
        let mut png = Vec::new();
        figure::raster(&series, &labels, &figure_title)?
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|source| ReportError::Png {
                path: png_path.clone(),
                source,
            })?;
        write_file(&png_path, &png)?;
        written.push(png_path);
        Ok(written)
    }

    /// Long format: one row per cell, metric, corruption and severity (severity 0 = clean).
    fn per_corruption_csv(&self) -> String {
        let mut table = document::Table {
            headers: [
                "preset",
                "backbone",
                "task",
                "regime",
                "metric",
                "corruption",
                "category",
                "severity",
                "value",
                "ci95_low",
                "ci95_high",
            ]
            .map(String::from)
            .to_vec(),
            rows: Vec::new(),
        };
        for ((backbone, task, regime), entry) in &self.cells {
            let mut tables = vec![(task.metric().to_string(), &entry.metrics.primary)];
            tables.extend(entry.metrics.secondary.iter().map(|(n, t)| (n.clone(), t)));
            for (metric, metric_table) in tables {
                // 95 % bounds when the table stored replicates; empty otherwise.
                let intervals = metric_table.intervals().ok().flatten();
                let bound = |i: Option<Interval>| match i {
                    Some(i) => (format!("{}", i.low), format!("{}", i.high)),
                    None => (String::new(), String::new()),
                };
                let prefix = [
                    self.preset.clone(),
                    backbone.clone(),
                    task.to_string(),
                    regime.to_string(),
                    metric.clone(),
                ];
                let mut row = |corruption: &str,
                               category: &str,
                               severity: usize,
                               value: f64,
                               interval: Option<Interval>| {
                    let mut cells = prefix.to_vec();
                    let (low, high) = bound(interval);
                    cells.extend([
                        corruption.to_string(),
                        category.to_string(),
                        severity.to_string(),
                        format!("{value}"),
                        low,
                        high,
                    ]);
                    table.rows.push(cells);
                };
                row(
                    "clean",
                    "clean",
                    0,
                    metric_table.clean,
                    intervals.as_ref().map(|i| i.clean),
                );
                for corruption in model::corruptions_of(metric_table) {
                    let row_intervals = intervals
                        .as_ref()
                        .and_then(|i| i.corrupted.get(&corruption));
                    for (s, value) in metric_table.corrupted[&corruption].iter().enumerate() {
                        row(
                            corruption.name(),
                            corruption.category().name(),
                            s + 1,
                            *value,
                            row_intervals.map(|r| r[s]),
                        );
                    }
                }
            }
        }
        render::csv(&table)
    }
}

/// Writes through a temporary file and a rename, so a reader never sees half a report file.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| ReportError::Io {
            path: path.to_path_buf(),
            source,
        })
}
