//! What a run reports while it works: [`Event`]s go to an [`Observer`] (the CLI renders them
//! as a progress bar on a terminal and as plain lines otherwise; the library never prints),
//! and training and evaluation records go to the run's JSONL log ([`MetricsLog`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, io_err};

/// One training iteration's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Iterations completed, this one included (1-based).
    pub iteration: usize,
    /// 0-based epoch.
    pub epoch: usize,
    /// The loss that was minimised.
    pub loss: f64,
    /// The base learning rate of this step.
    pub lr: f64,
    /// Training samples per second over the steps since the previous record.
    pub items_per_second: f64,
    /// Named parts of the loss or other scalars the task reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<(String, f64)>,
    /// Gradient norm before clipping, when clipping is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
}

/// What happened; handed to an [`Observer`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Training starts (or resumes at `start_iteration`).
    TrainingStarted {
        /// Iterations of the whole run.
        total_iterations: usize,
        /// Iterations already done (resumed runs).
        start_iteration: usize,
        /// Batches per epoch.
        iterations_per_epoch: usize,
        /// The checkpoint resumed from.
        resumed_from: Option<PathBuf>,
    },
    /// One iteration finished.
    Step(StepRecord),
    /// An epoch finished.
    EpochFinished {
        /// 0-based epoch.
        epoch: usize,
        /// Mean loss over this epoch's iterations that ran in this process.
        mean_loss: f64,
    },
    /// A checkpoint was written.
    CheckpointSaved {
        /// Iterations completed.
        iteration: usize,
        /// The file.
        path: PathBuf,
    },
    /// The evaluation hook produced numbers.
    Evaluated {
        /// 0-based epoch after which it ran.
        epoch: usize,
        /// Metric name and value.
        values: Vec<(String, f64)>,
    },
    /// Training finished.
    TrainingFinished {
        /// Iterations completed.
        iterations: usize,
        /// Wall time of this process's part of the run.
        seconds: f64,
    },
    /// Progress of a named phase outside the loop (feature caching, evaluation, dataset
    /// generation): `done` of `total` units.
    Phase {
        /// What runs (`evaluate clean`, `cifar-c fog`).
        name: String,
        /// Units done.
        done: usize,
        /// Units in all.
        total: usize,
    },
}

/// Receives events; the CLI's renderer draws them, tests record them.
pub trait Observer {
    /// Called for each event, in order.
    fn on_event(&mut self, event: &Event);
}

/// Ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullObserver;

impl Observer for NullObserver {
    fn on_event(&mut self, _event: &Event) {}
}

/// Keeps every event (tests, and callers that summarise afterwards).
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    /// The events so far.
    pub events: Vec<Event>,
}

impl Observer for Recorder {
    fn on_event(&mut self, event: &Event) {
        self.events.push(event.clone());
    }
}

impl<F: FnMut(&Event)> Observer for F {
    fn on_event(&mut self, event: &Event) {
        self(event)
    }
}

/// One line of the JSONL log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LogRecord {
    /// A training step.
    Train(StepRecord),
    /// An evaluation.
    Eval {
        /// Iterations completed.
        iteration: usize,
        /// 0-based epoch.
        epoch: usize,
        /// Metric name and value.
        values: Vec<(String, f64)>,
    },
}

impl LogRecord {
    fn iteration(&self) -> usize {
        match self {
            LogRecord::Train(step) => step.iteration,
            LogRecord::Eval { iteration, .. } => *iteration,
        }
    }
}

/// The run's `metrics.jsonl`: one JSON object per line, appended and flushed per record.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    /// Opens `path` for appending. When resuming from iteration `resume_at`, records written
    /// after it (by a run that went on past its last checkpoint) are dropped first, so the log
    /// reads as one uninterrupted run.
    pub fn open(path: &Path, resume_at: Option<usize>) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        if let Some(iteration) = resume_at
            && path.exists()
        {
            let kept: Vec<String> = Self::read(path)?
                .into_iter()
                .filter(|r| r.iteration() <= iteration)
                .map(|r| serde_json::to_string(&r).expect("records serialise"))
                .collect();
            let mut text = kept.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            crate::run::write_atomically(path, text.as_bytes())?;
        } else if resume_at.is_none() && path.exists() {
            // A fresh run starts a fresh log.
            std::fs::remove_file(path).map_err(io_err(path))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one record.
    pub fn write(&mut self, record: &LogRecord) -> Result<()> {
        let mut line = serde_json::to_string(record).expect("records serialise");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(io_err(&self.path))
    }

    /// Reads every record of a log (an error names the file and line).
    pub fn read(path: &Path) -> Result<Vec<LogRecord>> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(number, line)| {
                serde_json::from_str(line).map_err(|err| crate::TrainError::Io {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("line {}: {err}", number + 1),
                    ),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(iteration: usize) -> LogRecord {
        LogRecord::Train(StepRecord {
            iteration,
            epoch: 0,
            loss: 1.0 / iteration as f64,
            lr: 0.1,
            items_per_second: 10.0,
            parts: vec![("classifier".into(), 0.5)],
            grad_norm: None,
        })
    }

    #[test]
    fn resuming_drops_records_past_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&path, None).unwrap();
        for i in 1..=5 {
            log.write(&step(i)).unwrap();
        }
        drop(log);
        let mut log = MetricsLog::open(&path, Some(3)).unwrap();
        log.write(&step(4)).unwrap();
        let records = MetricsLog::read(&path).unwrap();
        assert_eq!(
            records.iter().map(LogRecord::iteration).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("{\"kind\":\"train\",\"iteration\":1"),
            "{text}"
        );
        std::fs::write(&path, "{\"kind\":\"train\"}\n").unwrap();
        let err = MetricsLog::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("metrics.jsonl") && err.contains("line 1"),
            "{err}"
        );
    }
}
