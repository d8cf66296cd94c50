//! `backbone.json`: what the report needs to know about a backbone of a preset — which row of
//! the paper it stands for, and its accuracy and robustness on its source task.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ResultsError;
use crate::metrics::{TableJson, table_from_json, table_to_json, write_atomically};
use crate::{MetricTable, SCHEMA_VERSION};

/// The file name, in `runs/<preset>/<backbone>/`.
pub const BACKBONE_FILE: &str = "backbone.json";

/// Published ImageNet numbers of a real backbone (from the weights manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// ImageNet top-1 accuracy in percent.
    pub imagenet_top1: f64,
    /// ImageNet-C mean corruption error in percent, when published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imagenet_c_mce: Option<f64>,
    /// Where the numbers come from.
    pub source: String,
}

/// One backbone of a preset.
#[derive(Debug, Clone, PartialEq)]
pub struct BackboneRecord {
    /// The preset.
    pub preset: String,
    /// The backbone's name in the preset (its directory name).
    pub backbone: String,
    /// The paper's row this backbone stands for (`Regular`, `ANT`, `DeepAug+`, `Swin-T`), if
    /// any; the report puts the paper's numbers beside it.
    pub paper_row: Option<String>,
    /// One line for the report (e.g. "small ResNet, noise-augmented pretraining").
    pub description: String,
    /// The source task's name (`imagenet`, `shapes64`, …).
    pub source_task: String,
    /// Top-1 on the source task, clean and corrupted, when rtb measured it.
    pub source: Option<MetricTable>,
    /// Published numbers, for backbones that come from a paper.
    pub published: Option<Published>,
}

#[derive(Serialize, Deserialize)]
struct BackboneJson {
    schema_version: u32,
    preset: String,
    backbone: String,
    #[serde(default)]
    paper_row: Option<String>,
    #[serde(default)]
    description: String,
    source_task: String,
    #[serde(default)]
    source: Option<TableJson>,
    #[serde(default)]
    published: Option<Published>,
}

impl BackboneRecord {
    /// `runs/<preset>/<backbone>/backbone.json`.
    pub fn path(runs: &Path, preset: &str, backbone: &str) -> PathBuf {
        runs.join(preset).join(backbone).join(BACKBONE_FILE)
    }

    /// Writes the record atomically.
    pub fn write(&self, runs: &Path) -> Result<PathBuf, ResultsError> {
        let json = BackboneJson {
            schema_version: SCHEMA_VERSION,
            preset: self.preset.clone(),
            backbone: self.backbone.clone(),
            paper_row: self.paper_row.clone(),
            description: self.description.clone(),
            source_task: self.source_task.clone(),
            source: self.source.as_ref().map(table_to_json),
            published: self.published.clone(),
        };
        let text = serde_json::to_string_pretty(&json).expect("records serialise to JSON");
        let path = Self::path(runs, &self.preset, &self.backbone);
        write_atomically(&path, &text)?;
        Ok(path)
    }

    /// Reads a record.
    pub fn read(path: &Path) -> Result<Self, ResultsError> {
        let invalid = |message: String| ResultsError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|source| ResultsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let json: BackboneJson =
            serde_json::from_str(&text).map_err(|err| invalid(err.to_string()))?;
        if json.schema_version != SCHEMA_VERSION {
            return Err(invalid(format!(
                "schema_version {} is not supported (this build reads {SCHEMA_VERSION})",
                json.schema_version
            )));
        }
        Ok(Self {
            preset: json.preset,
            backbone: json.backbone,
            paper_row: json.paper_row,
            description: json.description,
            source_task: json.source_task,
            source: json.source.map(|t| table_from_json(t, path)).transpose()?,
            published: json.published,
        })
    }

    /// Every record of `preset` under `runs`, sorted by backbone name.
    pub fn read_preset(runs: &Path, preset: &str) -> Result<Vec<Self>, ResultsError> {
        let dir = runs.join(preset);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(ResultsError::Io { path: dir, source }),
        };
        let mut records = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| ResultsError::Io {
                path: dir.clone(),
                source,
            })?;
            let path = entry.path().join(BACKBONE_FILE);
            if path.is_file() {
                records.push(Self::read(&path)?);
            }
        }
        records.sort_by(|a, b| a.backbone.cmp(&b.backbone));
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtb_corruption::Corruption;

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let record = BackboneRecord {
            preset: "mini".into(),
            backbone: "ant".into(),
            paper_row: Some("ANT".into()),
            description: "small ResNet, noise-augmented".into(),
            source_task: "shapes64".into(),
            source: Some(MetricTable {
                clean: 0.9,
                corrupted: Corruption::BENCHMARK
                    .into_iter()
                    .map(|c| (c, [0.5; 5]))
                    .collect(),
                replicates: None,
            }),
            published: None,
        };
        let path = record.write(dir.path()).unwrap();
        assert_eq!(path, dir.path().join("mini/ant/backbone.json"));
        assert_eq!(BackboneRecord::read(&path).unwrap(), record);
        assert_eq!(
            BackboneRecord::read_preset(dir.path(), "mini").unwrap(),
            vec![record]
        );
        assert!(
            BackboneRecord::read_preset(dir.path(), "paper")
                .unwrap()
                .is_empty()
        );
    }
}
