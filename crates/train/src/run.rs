//! A run directory: `config.json` (the resolved configuration and seed, written first),
//! `checkpoints/`, `metrics.jsonl`, and whatever the task adds (`metrics.json`).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::checkpoint::Checkpointer;
use crate::error::{Result, TrainError, io_err};

/// The resolved configuration of a run.
pub const CONFIG_FILE: &str = "config.json";
/// The JSONL log of training and evaluation records.
pub const LOG_FILE: &str = "metrics.jsonl";
/// The checkpoint directory.
pub const CHECKPOINT_DIR: &str = "checkpoints";

/// Writes `bytes` to a temporary file next to `path`, flushes it, then renames it over `path`
/// (a reader sees the old file or the new one, never a part).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let name = path
        .file_name()
        .ok_or_else(|| TrainError::config("path", format!("{} has no file name", path.display())))?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_err(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// The files of one run.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run stored in `root` (nothing is created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }

    /// `metrics.jsonl`.
    pub fn log_path(&self) -> PathBuf {
        self.root.join(LOG_FILE)
    }

    /// The checkpointer of `checkpoints/`.
    pub fn checkpointer(&self) -> Checkpointer {
        Checkpointer::new(self.root.join(CHECKPOINT_DIR))
    }

    /// Whether a checkpoint exists (a new run here would resume).
    pub fn has_checkpoint(&self) -> Result<bool> {
        Ok(self.checkpointer().latest()?.is_some())
    }

    /// Writes the resolved configuration (which must carry the seed) as pretty JSON,
    /// atomically. Called before anything else is written, so every artefact of the
    /// directory can be traced to it.
    pub fn write_config<C: Serialize>(&self, config: &C) -> Result<PathBuf> {
        let path = self.config_path();
        let mut text = serde_json::to_string_pretty(config).map_err(|err| {
            TrainError::config("config", format!("cannot serialise to JSON: {err}"))
        })?;
        text.push('\n');
        write_atomically(&path, text.as_bytes())?;
        Ok(path)
    }

    /// Claims the directory for `config` (a run directory holds one configuration): writes
    /// `config.json` when there is none, else checks that the one there equals `config` once
    /// `carry_over(existing, config)` has copied onto it the settings that do not change a
    /// run's numbers (where it stops, how many threads load its data, how it is evaluated). An
    /// error names the top-level keys that differ.
    pub fn claim<C>(&self, config: &C, carry_over: impl FnOnce(&mut C, &C)) -> Result<()>
    where
        C: Serialize + DeserializeOwned + PartialEq + Clone,
    {
        if !self.config_path().exists() {
            self.write_config(config)?;
            return Ok(());
        }
        let existing: C = self.read_config()?;
        let mut comparable = existing.clone();
        carry_over(&mut comparable, config);
        if &comparable == config {
            return Ok(());
        }
        let differing: Vec<String> = match (
            serde_json::to_value(config),
            serde_json::to_value(&existing),
        ) {
            (Ok(Value::Object(ours)), Ok(Value::Object(theirs))) => ours
                .iter()
                .filter(|(key, value)| theirs.get(*key) != Some(value))
                .map(|(key, _)| key.clone())
                .collect(),
            _ => Vec::new(),
        };
        Err(TrainError::config(
            self.config_path().display().to_string(),
            format!(
                "the run directory was made with another configuration (differs in: {}); \
                 use another directory or the same settings",
                differing.join(", ")
            ),
        ))
    }

    /// Reads `config.json` as `C`.
    pub fn read_config<C: DeserializeOwned>(&self) -> Result<C> {
        let path = self.config_path();
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        serde_json::from_str(&text).map_err(|err| {
            TrainError::config(
                path.display().to_string(),
                format!("not a run config: {err}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
    struct Config {
        seed: u64,
        lr: f64,
        workers: usize,
    }

    #[test]
    fn a_run_directory_holds_one_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let first = Config {
            seed: 1,
            lr: 0.1,
            workers: 2,
        };
        let carry = |existing: &mut Config, ours: &Config| existing.workers = ours.workers;
        run.claim(&first, carry).unwrap();
        assert_eq!(run.read_config::<Config>().unwrap(), first);
        // The same settings, or ones differing only where carried over, claim it again.
        run.claim(&first, carry).unwrap();
        run.claim(
            &Config {
                workers: 8,
                ..first.clone()
            },
            carry,
        )
        .unwrap();
        // Anything else is an error naming the keys and the file.
        let other = Config {
            seed: 2,
            lr: 0.2,
            workers: 2,
        };
        let err = run.claim(&other, carry).unwrap_err().to_string();
        assert!(
            err.contains("seed, lr") || err.contains("lr, seed"),
            "{err}"
        );
        assert!(err.contains(CONFIG_FILE), "{err}");
        assert_eq!(
            run.read_config::<Config>().unwrap(),
            first,
            "left as it was"
        );
    }
}
