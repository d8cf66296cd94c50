//! A run directory: `config.json` (the resolved configuration and seed, written first),
//! `checkpoints/`, `metrics.jsonl`, and whatever the task adds (`metrics.json`).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

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

    /// Reads `config.json` as `C`.
    pub fn read_config<C: serde::de::DeserializeOwned>(&self) -> Result<C> {
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
