//! Running a plan: one `rtb` process per step, in order, resuming by default.
//!
//! A step whose marker file exists (`metrics.json` for a cell, `backbone.json` for a
//! backbone, the data marker) is finished and never recomputed; a step that crashed left no
//! marker and runs again, and the `rtb` process resumes from the step's last checkpoint. A
//! failed step blocks the steps that depend on it (the cells of a backbone that could not be
//! obtained; everything after a failed data step); the report always runs, showing what is
//! missing as "not run". Each step's output goes to `<runs>/<preset>/logs/<step>.log`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::StudyError;
use crate::plan::{Invocation, Plan, Step};

/// What happened to a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It ran and succeeded.
    Done {
        /// Wall-clock seconds.
        seconds: f64,
    },
    /// It was already finished (its marker exists).
    Skipped,
    /// It ran and failed.
    Failed {
        /// Wall-clock seconds.
        seconds: f64,
        /// The exit status or the reason it could not start.
        message: String,
        /// Its log file.
        log: PathBuf,
    },
    /// It did not run because a step it depends on failed.
    Blocked {
        /// The failed dependency.
        by: String,
    },
}

/// Progress of a run, for the caller to show.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A step is starting: its position (1-based), the plan's length and the command line.
    Starting {
        /// The step.
        step: Step,
        /// 1-based position.
        position: usize,
        /// Steps in the plan.
        total: usize,
        /// The command line, shell-quoted for display.
        command: String,
    },
    /// A step ended (or was skipped or blocked).
    Ended {
        /// The step.
        step: Step,
        /// What happened.
        outcome: Outcome,
    },
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Every step with its outcome, in plan order.
    pub steps: Vec<(Step, Outcome)>,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
    /// CPU seconds (user + system) used by the `rtb` processes, where the platform reports
    /// it (Linux).
    pub child_cpu_seconds: Option<f64>,
}

impl Summary {
    fn count(&self, pick: fn(&Outcome) -> bool) -> usize {
        self.steps.iter().filter(|(_, o)| pick(o)).count()
    }

    /// Steps that ran and succeeded.
    pub fn done(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Done { .. }))
    }

    /// Steps that were already finished.
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped))
    }

    /// Steps that failed.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed { .. }))
    }

    /// Steps that could not run because a dependency failed.
    pub fn blocked(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Blocked { .. }))
    }

    /// Whether every step finished (now or before).
    pub fn success(&self) -> bool {
        self.failed() == 0 && self.blocked() == 0
    }
}

/// Runs plans with one `rtb` binary.
#[derive(Debug, Clone)]
pub struct Orchestrator {
    /// The `rtb` binary.
    pub rtb: PathBuf,
    /// How steps are invoked.
    pub invocation: Invocation,
    /// Skip finished steps (the default); `false` deletes a step's outputs and runs it again.
    pub resume: bool,
    /// Extra environment variables for every `rtb` process.
    pub env: Vec<(String, String)>,
    /// The working directory of every `rtb` process (the repository root, where the default
    /// manifests `weights/backbones.toml` and `presets/datasets.toml` live); `None`: this
    /// process's.
    pub working_dir: Option<PathBuf>,
}

fn quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:+,".contains(&b))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

fn log_name(step: &Step) -> String {
    let label: String = step
        .label()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{label}.log")
}

/// User plus system CPU seconds of this process's waited-for children (Linux: fields 16 and
/// 17 of `/proc/self/stat`, in clock ticks of 1/100 s, the kernel's USER_HZ).
fn children_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields resume after its closing ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3: cutime is field 16 → index 13, cstime field 17 → index 14.
    let cutime: f64 = fields.get(13)?.parse().ok()?;
    let cstime: f64 = fields.get(14)?.parse().ok()?;
    Some((cutime + cstime) / 100.0)
}

fn remove_if_exists(path: &Path) -> Result<(), StudyError> {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StudyError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl Orchestrator {
    /// The command that runs `step`.
    pub fn command(&self, step: &Step) -> Command {
        let mut command = Command::new(&self.rtb);
        command.args(self.invocation.args(step));
        for (key, value) in &self.env {
            command.env(key, value);
        }
        if let Some(dir) = &self.working_dir {
            command.current_dir(dir);
        }
        command
    }

    /// The command line of `step`, for display.
    pub fn command_line(&self, step: &Step) -> String {
        std::iter::once(self.rtb.display().to_string())
            .chain(self.invocation.args(step))
            .map(|a| quote(&a))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs every step of `plan`, reporting progress to `observer`.
    pub fn run(
        &self,
        plan: &Plan,
        observer: &mut dyn FnMut(&Event),
    ) -> Result<Summary, StudyError> {
        let started = Instant::now();
        let cpu_before = children_cpu_seconds();
        let layout = &self.invocation.layout;
        let logs = layout.logs_dir();
        std::fs::create_dir_all(&logs).map_err(|source| StudyError::Io {
            path: logs.clone(),
            source,
        })?;
        let total = plan.steps.len();
        let mut results: Vec<(Step, Outcome)> = Vec::with_capacity(total);
        let mut failed_data = None;
        let mut failed_backbones: Vec<(String, String)> = Vec::new();
        for (index, step) in plan.steps.iter().enumerate() {
            let blocker = match step {
                Step::Data | Step::Report => None,
                Step::Backbone(_) => failed_data.clone(),
                Step::Cell(cell) => failed_data.clone().or_else(|| {
                    failed_backbones
                        .iter()
                        .find(|(name, _)| *name == cell.backbone)
                        .map(|(_, label)| label.clone())
                }),
            };
            let outcome = if let Some(by) = blocker {
                Outcome::Blocked { by }
            } else {
                let marker = step.done_marker(layout);
                if self.resume && marker.as_ref().is_some_and(|m| m.is_file()) {
                    Outcome::Skipped
                } else {
                    if !self.resume {
                        if let Some(marker) = &marker {
                            remove_if_exists(marker)?;
                        }
                        if let Some(dir) = step.owned_dir(layout) {
                            remove_if_exists(&dir)?;
                        }
                    }
                    observer(&Event::Starting {
                        step: step.clone(),
                        position: index + 1,
                        total,
                        command: self.command_line(step),
                    });
                    self.run_step(step, &logs.join(log_name(step)))?
                }
            };
            if let Outcome::Failed { .. } | Outcome::Blocked { .. } = outcome {
                match step {
                    Step::Data => failed_data = Some(step.label()),
                    Step::Backbone(name) => failed_backbones.push((name.clone(), step.label())),
                    Step::Cell(_) | Step::Report => {}
                }
            }
            observer(&Event::Ended {
                step: step.clone(),
                outcome: outcome.clone(),
            });
            results.push((step.clone(), outcome));
        }
        let child_cpu_seconds = match (cpu_before, children_cpu_seconds()) {
            (Some(before), Some(after)) => Some(after - before),
            _ => None,
        };
        Ok(Summary {
            steps: results,
            seconds: started.elapsed().as_secs_f64(),
            child_cpu_seconds,
        })
    }

    fn run_step(&self, step: &Step, log: &Path) -> Result<Outcome, StudyError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StudyError::Io { path, source }
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io(log))?;
        writeln!(file, "$ {}", self.command_line(step)).map_err(io(log))?;
        let stdout = file.try_clone().map_err(io(log))?;
        let started = Instant::now();
        let status = self
            .command(step)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(file)
            .status();
        let seconds = started.elapsed().as_secs_f64();
        Ok(match status {
            Ok(status) if status.success() => Outcome::Done { seconds },
            Ok(status) => Outcome::Failed {
                seconds,
                message: format!("rtb exited with {status}"),
                log: log.to_path_buf(),
            },
            Err(err) => Outcome::Failed {
                seconds,
                message: format!("cannot start {}: {err}", self.rtb.display()),
                log: log.to_path_buf(),
            },
        })
    }
}
