//! `metrics.json`: the evaluation of one cell, and the robustness metrics derived from it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rtb_corruption::{Category, Corruption};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bootstrap::{Interval, Replicates};
use crate::{CellId, ResultsError};

/// The file name of a cell's evaluation.
pub const METRICS_FILE: &str = "metrics.json";

/// The version of the `metrics.json` layout this crate writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// A task metric on clean data and under corruptions (index `s − 1` holds severity `s`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricTable {
    /// P on clean data.
    pub clean: f64,
    /// P under each corruption that was evaluated, severities 1..5.
    pub corrupted: BTreeMap<Corruption, [f64; 5]>,
    /// Paired bootstrap replicates of every condition, for confidence intervals
    /// ([`MetricTable::intervals`]); `None` in files written before rtb stored them.
    pub replicates: Option<Replicates>,
}

/// The robustness metrics of DESIGN §2.
#[derive(Debug, Clone, PartialEq)]
pub struct Robustness {
    /// Mean of P over the 15 benchmark corruptions × severities 1..5.
    pub mpc: f64,
    /// mPC / P_clean.
    pub rpc: f64,
    /// 1 − rPC, in percent.
    pub drop_percent: f64,
    /// 1 − (mean of P over the category's corruptions × 5 severities) / P_clean, in percent,
    /// for noise, blur, weather and digital.
    pub category_drop_percent: BTreeMap<Category, f64>,
}

impl MetricTable {
    /// mPC, rPC and the drops; an error if a benchmark corruption is missing or P_clean is 0.
    pub fn robustness(&self) -> Result<Robustness, ResultsError> {
        let missing: Vec<&str> = Corruption::BENCHMARK
            .iter()
            .filter(|c| !self.corrupted.contains_key(c))
            .map(|c| c.name())
            .collect();
        if !missing.is_empty() {
            return Err(ResultsError::Incomplete {
                metric: "mPC",
                message: format!("no results for {}", missing.join(", ")),
            });
        }
        if self.clean == 0.0 || !self.clean.is_finite() {
            return Err(ResultsError::Incomplete {
                metric: "rPC",
                message: format!("the clean metric is {}", self.clean),
            });
        }
        let mean_over = |corruptions: &mut dyn Iterator<Item = Corruption>| {
            let (sum, count) = corruptions.fold((0.0, 0usize), |(sum, count), c| {
                (sum + self.corrupted[&c].iter().sum::<f64>(), count + 5)
            });
            sum / count as f64
        };
        let mpc = mean_over(&mut Corruption::BENCHMARK.into_iter());
        let rpc = mpc / self.clean;
        let category_drop_percent = Category::BENCHMARK
            .into_iter()
            .map(|category| {
                let mean = mean_over(&mut category.corruptions());
                (category, 100.0 * (1.0 - mean / self.clean))
            })
            .collect();
        Ok(Robustness {
            mpc,
            rpc,
            drop_percent: 100.0 * (1.0 - rpc),
            category_drop_percent,
        })
    }
}

/// Everything `metrics.json` holds for one cell.
#[derive(Debug, Clone, PartialEq)]
pub struct CellMetrics {
    /// Which cell.
    pub cell: CellId,
    /// The primary metric P (the task's: `top1`, `bbox_ap`, `miou`).
    pub primary: MetricTable,
    /// Further metrics evaluated on the same predictions (e.g. `segm_ap` for COCO).
    pub secondary: BTreeMap<String, MetricTable>,
    /// How the evaluation was run (flavor, seed, number of images, …), for the record.
    pub info: BTreeMap<String, Value>,
}

// The JSON mirror: names instead of enums, plus the derived summary for human readers
// (ignored on reading; the numbers are always recomputed from the table).
#[derive(Serialize, Deserialize)]
pub(crate) struct TableJson {
    clean: f64,
    corrupted: BTreeMap<String, [f64; 5]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    summary: Option<SummaryJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bootstrap: Option<BootstrapJson>,
}

#[derive(Serialize, Deserialize)]
struct SummaryJson {
    mpc: f64,
    rpc: f64,
    drop_percent: f64,
    category_drop_percent: BTreeMap<String, f64>,
    // 95 % intervals as [low, high], when the table has replicates (for human readers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mpc_ci95: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drop_percent_ci95: Option<[f64; 2]>,
}

// The replicates: `replicates` values per condition, resampled from `seed` and `images`. A
// replicate can be NaN (an mIoU of a resample without any labelled class); JSON has no NaN,
// so it is written as null and read back as NaN.
#[derive(Serialize, Deserialize)]
struct BootstrapJson {
    seed: u64,
    images: usize,
    replicates: usize,
    clean: Vec<Option<f64>>,
    corrupted: BTreeMap<String, [Vec<Option<f64>>; 5]>,
}

fn to_nullable(values: &[f64]) -> Vec<Option<f64>> {
    values.iter().map(|v| v.is_finite().then_some(*v)).collect()
}

fn from_nullable(values: Vec<Option<f64>>) -> Vec<f64> {
    values.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect()
}

#[derive(Serialize, Deserialize)]
struct CellMetricsJson {
    schema_version: u32,
    cell: CellId,
    metric: String,
    #[serde(flatten)]
    primary: TableJson,
    #[serde(default)]
    secondary: BTreeMap<String, TableJson>,
    #[serde(default)]
    info: BTreeMap<String, Value>,
}

pub(crate) fn table_to_json(table: &MetricTable) -> TableJson {
    TableJson {
        clean: table.clean,
        corrupted: table
            .corrupted
            .iter()
            .map(|(c, values)| (c.name().to_string(), *values))
            .collect(),
        summary: table.robustness().ok().map(|r| {
            let intervals = table.intervals().ok().flatten();
            // Undefined bounds (a resample with a clean metric of 0) are left out.
            let pair =
                |i: Interval| (i.low.is_finite() && i.high.is_finite()).then_some([i.low, i.high]);
            SummaryJson {
                mpc: r.mpc,
                rpc: r.rpc,
                drop_percent: r.drop_percent,
                category_drop_percent: r
                    .category_drop_percent
                    .iter()
                    .map(|(c, v)| (c.name().to_string(), *v))
                    .collect(),
                mpc_ci95: intervals.as_ref().and_then(|i| pair(i.mpc)),
                drop_percent_ci95: intervals.as_ref().and_then(|i| pair(i.drop_percent)),
            }
        }),
        bootstrap: table.replicates.as_ref().map(|r| BootstrapJson {
            seed: r.seed,
            images: r.images,
            replicates: r.count(),
            clean: to_nullable(&r.clean),
            corrupted: r
                .corrupted
                .iter()
                .map(|(c, rows)| {
                    (
                        c.name().to_string(),
                        std::array::from_fn(|s| to_nullable(&rows[s])),
                    )
                })
                .collect(),
        }),
    }
}

pub(crate) fn table_from_json(json: TableJson, path: &Path) -> Result<MetricTable, ResultsError> {
    let mut corrupted = BTreeMap::new();
    for (name, values) in json.corrupted {
        let corruption: Corruption = name.parse().map_err(|_| ResultsError::Invalid {
            path: path.to_path_buf(),
            message: format!("unknown corruption {name:?} in \"corrupted\""),
        })?;
        corrupted.insert(corruption, values);
    }
    let replicates = match json.bootstrap {
        None => None,
        Some(b) => {
            let mut replicates = Replicates {
                seed: b.seed,
                images: b.images,
                clean: from_nullable(b.clean),
                corrupted: BTreeMap::new(),
            };
            for (name, rows) in b.corrupted {
                let rows = rows.map(from_nullable);
                let corruption: Corruption = name.parse().map_err(|_| ResultsError::Invalid {
                    path: path.to_path_buf(),
                    message: format!("unknown corruption {name:?} in \"bootstrap.corrupted\""),
                })?;
                replicates.corrupted.insert(corruption, rows);
            }
            if replicates.count() != b.replicates {
                return Err(ResultsError::Invalid {
                    path: path.to_path_buf(),
                    message: format!(
                        "bootstrap.replicates is {} but bootstrap.clean holds {}",
                        b.replicates,
                        replicates.count()
                    ),
                });
            }
            replicates.check().map_err(|err| ResultsError::Invalid {
                path: path.to_path_buf(),
                message: err.to_string(),
            })?;
            Some(replicates)
        }
    };
    Ok(MetricTable {
        clean: json.clean,
        corrupted,
        replicates,
    })
}

impl CellMetrics {
    /// `<cell dir>/metrics.json` under `runs`.
    pub fn path(cell: &CellId, runs: &Path) -> PathBuf {
        cell.dir(runs).join(METRICS_FILE)
    }

    /// The JSON text of `metrics.json` (pretty-printed, stable key order).
    pub fn to_json(&self) -> String {
        let json = CellMetricsJson {
            schema_version: SCHEMA_VERSION,
            cell: self.cell.clone(),
            metric: self.cell.task.metric().to_string(),
            primary: table_to_json(&self.primary),
            secondary: self
                .secondary
                .iter()
                .map(|(name, table)| (name.clone(), table_to_json(table)))
                .collect(),
            info: self.info.clone(),
        };
        serde_json::to_string_pretty(&json).expect("metrics serialise to JSON")
    }

    /// Parses `metrics.json` text; `path` is only used in error messages.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, ResultsError> {
        let invalid = |message: String| ResultsError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let json: CellMetricsJson =
            serde_json::from_str(text).map_err(|err| invalid(err.to_string()))?;
        if json.schema_version != SCHEMA_VERSION {
            return Err(invalid(format!(
                "schema_version {} is not supported (this build reads {SCHEMA_VERSION})",
                json.schema_version
            )));
        }
        let mut secondary = BTreeMap::new();
        for (name, table) in json.secondary {
            secondary.insert(name, table_from_json(table, path)?);
        }
        Ok(Self {
            cell: json.cell,
            primary: table_from_json(json.primary, path)?,
            secondary,
            info: json.info,
        })
    }

    /// Writes `<cell dir>/metrics.json` atomically, so a reader sees either nothing or the
    /// whole file.
    pub fn write(&self, runs: &Path) -> Result<PathBuf, ResultsError> {
        let path = Self::path(&self.cell, runs);
        write_atomically(&path, &self.to_json())?;
        Ok(path)
    }

    /// Reads a `metrics.json` file.
    pub fn read(path: &Path) -> Result<Self, ResultsError> {
        let text = std::fs::read_to_string(path).map_err(|source| ResultsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// Every finished cell under `runs` (directories without `metrics.json` are not
    /// finished and are skipped), sorted by cell.
    pub fn read_all(runs: &Path) -> Result<Vec<CellMetrics>, ResultsError> {
        let mut found = Vec::new();
        collect_metrics_files(runs, 0, &mut found)?;
        let mut cells = found
            .iter()
            .map(|path| Self::read(path))
            .collect::<Result<Vec<_>, _>>()?;
        cells.sort_by(|a, b| a.cell.cmp(&b.cell));
        Ok(cells)
    }
}

/// Writes `text` (plus a newline) to a temporary file in the same directory, flushes it, then
/// renames it over `path`.
pub(crate) fn write_atomically(path: &Path, text: &str) -> Result<(), ResultsError> {
    use std::io::Write;
    let io = |source, path: &Path| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().expect("the file has a directory");
    std::fs::create_dir_all(dir).map_err(|e| io(e, dir))?;
    let name = path
        .file_name()
        .expect("the file has a name")
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(|e| io(e, &tmp))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| io(e, &tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| io(e, path))
}

/// `runs/<preset>/<backbone>/<task>/<regime>/metrics.json` sits four levels down.
fn collect_metrics_files(
    dir: &Path,
    depth: usize,
    out: &mut Vec<PathBuf>,
) -> Result<(), ResultsError> {
    if depth == 4 {
        let file = dir.join(METRICS_FILE);
        if file.is_file() {
            out.push(file);
        }
        return Ok(());
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && depth == 0 => return Ok(()),
        Err(source) => {
            return Err(ResultsError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| ResultsError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        if entry.path().is_dir() {
            collect_metrics_files(&entry.path(), depth + 1, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Regime, Task};

    fn table(clean: f64, value: impl Fn(Corruption, usize) -> f64) -> MetricTable {
        MetricTable {
            clean,
            corrupted: Corruption::ALL
                .into_iter()
                .map(|c| (c, std::array::from_fn(|s| value(c, s))))
                .collect(),
            replicates: None,
        }
    }

    #[test]
    fn robustness_matches_a_hand_computed_example() {
        // Noise corruptions score 0.2 + 0.1·s_index, everything else 0.5; the extras score 0
        // and must not count.
        let t = table(0.8, |c, s| match c.category() {
            Category::Noise => 0.2 + 0.1 * s as f64,
            Category::Extra => 0.0,
            _ => 0.5,
        });
        let r = t.robustness().unwrap();
        // Noise mean = 0.4 over 15 values; the other 12 corruptions × 5 = 60 values at 0.5.
        let mpc = (0.4 * 15.0 + 0.5 * 60.0) / 75.0;
        assert!((r.mpc - mpc).abs() < 1e-12);
        assert!((r.rpc - mpc / 0.8).abs() < 1e-12);
        assert!((r.drop_percent - 100.0 * (1.0 - mpc / 0.8)).abs() < 1e-9);
        assert!((r.category_drop_percent[&Category::Noise] - 50.0).abs() < 1e-9);
        assert!((r.category_drop_percent[&Category::Blur] - 37.5).abs() < 1e-9);
        assert_eq!(r.category_drop_percent.len(), 4);
    }

    #[test]
    fn missing_corruptions_and_zero_clean_are_errors() {
        let mut t = table(0.8, |_, _| 0.5);
        t.corrupted.remove(&Corruption::Fog);
        let err = t.robustness().unwrap_err().to_string();
        assert!(err.contains("fog"), "{err}");
        let zero = table(0.0, |_, _| 0.5);
        assert!(zero.robustness().is_err());
    }

    #[test]
    fn metrics_round_trip_through_an_atomic_file() {
        let dir = tempfile::tempdir().unwrap();
        let cell = CellId::new("tiny", "regular", Task::Coco, Regime::Fixed).unwrap();
        let metrics = CellMetrics {
            cell: cell.clone(),
            primary: table(0.4, |c, s| {
                0.3 - 0.01 * s as f64 - 0.001 * c as usize as f64
            }),
            secondary: [(
                "segm_ap".to_string(),
                table(0.35, |_, s| 0.3 - 0.02 * s as f64),
            )]
            .into(),
            info: [("seed".to_string(), Value::from(7))].into(),
        };
        let path = metrics.write(dir.path()).unwrap();
        assert_eq!(
            path,
            dir.path().join("tiny/regular/coco/fixed/metrics.json")
        );
        assert_eq!(CellMetrics::read(&path).unwrap(), metrics);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"metric\": \"bbox_ap\""), "{text}");
        assert!(text.contains("\"drop_percent\""), "{text}");
        assert!(
            !dir.path()
                .join("tiny/regular/coco/fixed/.metrics.json.tmp")
                .exists()
        );

        // An unfinished cell (no metrics.json) is not listed.
        std::fs::create_dir_all(dir.path().join("tiny/ant/coco/full")).unwrap();
        let all = CellMetrics::read_all(dir.path()).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].cell, cell);
        assert!(
            CellMetrics::read_all(&dir.path().join("absent"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn replicates_round_trip_and_files_without_them_still_load() {
        use crate::{Replicates, Resampler};
        let cell = CellId::new("tiny", "regular", Task::Cifar10, Regime::Full).unwrap();
        let mut primary = table(0.5, |_, s| 0.4 - 0.05 * s as f64);
        primary
            .corrupted
            .retain(|c, _| c.category() != Category::Extra);
        let resampler = Resampler::new(3, 10, 4);
        // A NaN replicate (an mIoU with no class present) is written as null.
        let mut replicates = Replicates::new(&resampler, vec![0.5, 0.6, 0.4, 0.5]);
        for c in Corruption::BENCHMARK {
            replicates.corrupted.insert(
                c,
                std::array::from_fn(|s| vec![0.4 - 0.05 * s as f64, 0.45, f64::NAN, 0.4]),
            );
        }
        primary.replicates = Some(replicates);
        let metrics = CellMetrics {
            cell,
            primary,
            secondary: BTreeMap::new(),
            info: BTreeMap::new(),
        };
        let text = metrics.to_json();
        assert!(text.contains("\"mpc_ci95\""), "{text}");
        assert!(text.contains("null"), "{text}");
        let path = Path::new("metrics.json");
        let read = CellMetrics::from_json(&text, path).unwrap();
        // NaN != NaN, so compare the text and the NaN's position.
        assert_eq!(read.to_json(), text);
        assert!(
            read.primary.replicates.as_ref().unwrap().corrupted[&Corruption::Fog][1][2].is_nan()
        );
        assert_eq!(read.primary.corrupted, metrics.primary.corrupted);

        // A file written before replicates existed: no "bootstrap", no intervals.
        let mut old: Value = serde_json::from_str(&text).unwrap();
        old.as_object_mut().unwrap().remove("bootstrap");
        let old = CellMetrics::from_json(&old.to_string(), path).unwrap();
        assert_eq!(old.primary.replicates, None);
        assert_eq!(old.primary.intervals().unwrap(), None);
        assert_eq!(old.primary.corrupted, metrics.primary.corrupted);

        // Replicate counts that disagree are a named error.
        let bad = text.replacen("\"replicates\": 4", "\"replicates\": 5", 1);
        let err = CellMetrics::from_json(&bad, path).unwrap_err().to_string();
        assert!(err.contains("bootstrap.replicates"), "{err}");
    }

    #[test]
    fn bad_files_are_errors_naming_the_file() {
        let path = Path::new("runs/x/metrics.json");
        let err = CellMetrics::from_json("{", path).unwrap_err().to_string();
        assert!(err.contains("runs/x/metrics.json"), "{err}");
        let wrong_corruption = r#"{"schema_version":1,"cell":{"preset":"p","backbone":"b",
            "task":"cifar10","regime":"full"},"metric":"top1","clean":0.5,
            "corrupted":{"rain":[0,0,0,0,0]}}"#;
        let err = CellMetrics::from_json(wrong_corruption, path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("rain"), "{err}");
        let future = wrong_corruption
            .replace("\"schema_version\":1", "\"schema_version\":9")
            .replace("rain", "fog");
        assert!(
            CellMetrics::from_json(&future, path)
                .unwrap_err()
                .to_string()
                .contains("schema_version")
        );
    }
}
