//! Checkpoints: the [`Checkpointer`] saves and restores, a [`CheckpointingStrategy`] decides
//! which files to keep. They are separate so that "keep the last N" and "keep the best" can be
//! swapped without touching the file format.
//!
//! A checkpoint is one safetensors file, `checkpoint-<iteration:08>.safetensors`, written to
//! `.<name>.tmp` in the same directory, flushed, then renamed: a file with the final name is
//! always complete. Tensors are stored under `model.<name>` and `optimizer.<name>.<buffer>`;
//! the training position ([`TrainProgress`]: iteration, epoch, batch within the epoch, seed)
//! is JSON in the safetensors metadata under `rtb.progress`. The engine draws every random
//! number from the seed and the position, so the position is the whole RNG state.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError, io_err};

/// The format tag in every checkpoint's metadata.
pub const CHECKPOINT_FORMAT: &str = "rtb-train-checkpoint-v1";

const MODEL_PREFIX: &str = "model.";
const OPTIMIZER_PREFIX: &str = "optimizer.";

/// Where training stands: what a resumed run needs besides tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainProgress {
    /// Iterations completed.
    pub iteration: usize,
    /// The epoch of the next iteration (0-based).
    pub epoch: usize,
    /// The batch of `epoch` that the next iteration takes (0-based).
    pub batch_in_epoch: usize,
    /// The run seed (data order, per-sample augmentation and step seeds derive from it).
    pub seed: u64,
}

/// What a checkpoint holds.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Where training stands.
    pub progress: TrainProgress,
    /// The model: every tensor a task reports as state (parameters and buffers).
    pub model: BTreeMap<String, Tensor>,
    /// The optimizer's state tensors (`<param>.<buffer>`).
    pub optimizer: HashMap<String, Tensor>,
    /// Free-form metadata (the task's name, the config's hash), strings only.
    pub metadata: BTreeMap<String, String>,
}

/// A checkpoint file on disk.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CheckpointRecord {
    /// Iterations completed when it was written.
    pub iteration: usize,
    /// The file.
    pub path: PathBuf,
}

/// Saves, lists, loads and removes the checkpoints of one directory.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    dir: PathBuf,
}

impl Checkpointer {
    /// A checkpointer over `dir` (created on the first save).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file name of the checkpoint after `iteration` iterations.
    pub fn file_name(iteration: usize) -> String {
        format!("checkpoint-{iteration:08}.safetensors")
    }

    /// Writes `checkpoint` atomically and returns its record.
    pub fn save(&self, checkpoint: &Checkpoint) -> Result<CheckpointRecord> {
        std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let name = Self::file_name(checkpoint.progress.iteration);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (key, tensor) in &checkpoint.model {
            tensors.push((format!("{MODEL_PREFIX}{key}"), tensor.contiguous()?));
        }
        for (key, tensor) in &checkpoint.optimizer {
            tensors.push((format!("{OPTIMIZER_PREFIX}{key}"), tensor.contiguous()?));
        }
        let mut metadata: HashMap<String, String> = checkpoint
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        metadata.insert("rtb.format".into(), CHECKPOINT_FORMAT.into());
        metadata.insert(
            "rtb.progress".into(),
            serde_json::to_string(&checkpoint.progress).expect("progress serialises"),
        );
        let bytes =
            safetensors::serialize(tensors.iter().map(|(k, t)| (k.as_str(), t)), Some(metadata))
                .map_err(|err| TrainError::Checkpoint {
                    path: path.clone(),
                    message: format!("cannot serialise: {err}"),
                })?;
        let mut file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(io_err(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(CheckpointRecord {
            iteration: checkpoint.progress.iteration,
            path,
        })
    }

    /// Every finished checkpoint in the directory, oldest first (temporary files of an
    /// interrupted save are ignored).
    pub fn list(&self) -> Result<Vec<CheckpointRecord>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(io_err(&self.dir)(err)),
        };
        let mut records = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let iteration = name
                .strip_prefix("checkpoint-")
                .and_then(|rest| rest.strip_suffix(".safetensors"))
                .and_then(|digits| digits.parse::<usize>().ok());
            if let Some(iteration) = iteration {
                records.push(CheckpointRecord {
                    iteration,
                    path: entry.path(),
                });
            }
        }
        records.sort();
        Ok(records)
    }

    /// The newest checkpoint, if any.
    pub fn latest(&self) -> Result<Option<CheckpointRecord>> {
        Ok(self.list()?.pop())
    }

    /// Reads a checkpoint file; tensors land on `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Checkpoint> {
        let bad = |message: String| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|err| bad(format!("not a safetensors file: {err}")))?;
        let metadata: BTreeMap<String, String> = header
            .metadata()
            .clone()
            .map(|m| m.into_iter().collect())
            .unwrap_or_default();
        match metadata.get("rtb.format") {
            Some(format) if format == CHECKPOINT_FORMAT => {}
            Some(other) => {
                return Err(bad(format!(
                    "format {other:?} is not {CHECKPOINT_FORMAT:?} (written by another version?)"
                )));
            }
            None => return Err(bad("no rtb.format metadata: not an rtb checkpoint".into())),
        }
        let progress: TrainProgress = metadata
            .get("rtb.progress")
            .ok_or_else(|| bad("no rtb.progress metadata".into()))
            .and_then(|text| {
                serde_json::from_str(text).map_err(|err| bad(format!("rtb.progress: {err}")))
            })?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, device)
            .map_err(|err| bad(format!("cannot read tensors: {err}")))?;
        let mut model = BTreeMap::new();
        let mut optimizer = HashMap::new();
        for (key, tensor) in tensors {
            if let Some(name) = key.strip_prefix(MODEL_PREFIX) {
                model.insert(name.to_string(), tensor);
            } else if let Some(name) = key.strip_prefix(OPTIMIZER_PREFIX) {
                optimizer.insert(name.to_string(), tensor);
            } else {
                return Err(bad(format!(
                    "tensor {key:?} is neither model.* nor optimizer.*"
                )));
            }
        }
        let metadata = metadata
            .into_iter()
            .filter(|(k, _)| !k.starts_with("rtb."))
            .collect();
        Ok(Checkpoint {
            progress,
            model,
            optimizer,
            metadata,
        })
    }

    /// Deletes a checkpoint file.
    pub fn remove(&self, record: &CheckpointRecord) -> Result<()> {
        std::fs::remove_file(&record.path).map_err(io_err(&record.path))
    }
}

/// Decides which checkpoints to delete after a save.
pub trait CheckpointingStrategy: std::fmt::Debug + Send {
    /// Given every checkpoint on disk (oldest first, the one just saved included), the ones to
    /// delete.
    fn to_remove(&mut self, on_disk: &[CheckpointRecord]) -> Vec<CheckpointRecord>;
}

/// Keep the newest `n` checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepLast(pub usize);

impl CheckpointingStrategy for KeepLast {
    fn to_remove(&mut self, on_disk: &[CheckpointRecord]) -> Vec<CheckpointRecord> {
        let keep = self.0.max(1);
        let excess = on_disk.len().saturating_sub(keep);
        on_disk[..excess].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_list_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let checkpointer = Checkpointer::new(dir.path().join("ckpt"));
        assert!(checkpointer.latest().unwrap().is_none());
        let device = Device::Cpu;
        for iteration in [10, 2, 7] {
            let checkpoint = Checkpoint {
                progress: TrainProgress {
                    iteration,
                    epoch: 1,
                    batch_in_epoch: 3,
                    seed: 5,
                },
                model: [(
                    "w".to_string(),
                    Tensor::new(&[1.5f32, iteration as f32], &device).unwrap(),
                )]
                .into(),
                optimizer: [(
                    "w.momentum_buffer".to_string(),
                    Tensor::new(&[0.25f32, -1.0], &device).unwrap(),
                )]
                .into(),
                metadata: [("task".to_string(), "toy".to_string())].into(),
            };
            checkpointer.save(&checkpoint).unwrap();
        }
        // A temporary file from an interrupted save is not a checkpoint.
        std::fs::write(
            dir.path().join("ckpt/.checkpoint-00000099.safetensors.tmp"),
            b"partial",
        )
        .unwrap();
        let records = checkpointer.list().unwrap();
        assert_eq!(
            records.iter().map(|r| r.iteration).collect::<Vec<_>>(),
            [2, 7, 10]
        );
        let loaded = Checkpointer::load(&records[2].path, &device).unwrap();
        assert_eq!(loaded.progress.iteration, 10);
        assert_eq!(loaded.progress.batch_in_epoch, 3);
        assert_eq!(loaded.model["w"].to_vec1::<f32>().unwrap(), [1.5, 10.0]);
        assert_eq!(
            loaded.optimizer["w.momentum_buffer"]
                .to_vec1::<f32>()
                .unwrap(),
            [0.25, -1.0]
        );
        assert_eq!(loaded.metadata["task"], "toy");

        let mut keep = KeepLast(2);
        let doomed = keep.to_remove(&records);
        assert_eq!(doomed, records[..1].to_vec());
        for record in &doomed {
            checkpointer.remove(record).unwrap();
        }
        assert_eq!(checkpointer.list().unwrap().len(), 2);
    }

    #[test]
    fn foreign_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint-00000001.safetensors");
        std::fs::write(&path, b"garbage").unwrap();
        let err = Checkpointer::load(&path, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("checkpoint-00000001"), "{err}");
        let plain = dir.path().join("plain.safetensors");
        let t = Tensor::new(&[1f32], &Device::Cpu).unwrap();
        candle_core::safetensors::save(&HashMap::from([("x", t)]), &plain).unwrap();
        let err = Checkpointer::load(&plain, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an rtb checkpoint"), "{err}");
    }
}
