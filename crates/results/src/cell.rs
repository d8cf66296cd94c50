//! Cells of the study and where their files live.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ResultsError;

/// A downstream task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// COCO detection and instance segmentation (Mask R-CNN); P = box AP.
    Coco,
    /// ADE20K semantic segmentation (UperNet); P = mIoU.
    Ade20k,
    /// CIFAR-10 classification; P = top-1 accuracy.
    Cifar10,
}

impl Task {
    /// All tasks, in the paper's order.
    pub const ALL: [Task; 3] = [Task::Coco, Task::Ade20k, Task::Cifar10];

    /// The directory and command-line name: `coco`, `ade20k`, `cifar10`.
    pub fn name(self) -> &'static str {
        match self {
            Task::Coco => "coco",
            Task::Ade20k => "ade20k",
            Task::Cifar10 => "cifar10",
        }
    }

    /// The name of the primary metric P.
    pub fn metric(self) -> &'static str {
        match self {
            Task::Coco => "bbox_ap",
            Task::Ade20k => "miou",
            Task::Cifar10 => "top1",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Task {
    type Err = ResultsError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Task::ALL
            .into_iter()
            .find(|t| t.name() == value)
            .ok_or_else(|| ResultsError::InvalidName {
                what: "task",
                value: value.to_string(),
                expected: "one of coco, ade20k, cifar10",
            })
    }
}

/// How the backbone is transferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Regime {
    /// The backbone is frozen; only the head (and neck) trains.
    Fixed,
    /// Every weight trains, starting from the pretrained backbone.
    Full,
}

impl Regime {
    /// Both regimes.
    pub const ALL: [Regime; 2] = [Regime::Fixed, Regime::Full];

    /// The directory and command-line name: `fixed`, `full`.
    pub fn name(self) -> &'static str {
        match self {
            Regime::Fixed => "fixed",
            Regime::Full => "full",
        }
    }
}

impl fmt::Display for Regime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Regime {
    type Err = ResultsError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Regime::ALL
            .into_iter()
            .find(|r| r.name() == value)
            .ok_or_else(|| ResultsError::InvalidName {
                what: "regime",
                value: value.to_string(),
                expected: "fixed or full",
            })
    }
}

/// One cell of the matrix: backbone × task × regime under a preset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CellId {
    /// The preset (`tiny`, `mini`, `paper`, …).
    pub preset: String,
    /// The backbone's name in the preset (`regular`, `ant`, `deepaug`, `swin_t`, …).
    pub backbone: String,
    /// The task.
    pub task: Task,
    /// The regime.
    pub regime: Regime,
}

/// Preset and backbone names become directory names: keep them to a safe alphabet.
fn check_component(what: &'static str, value: &str) -> Result<(), ResultsError> {
    let ok = !value.is_empty()
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(ResultsError::InvalidName {
            what,
            value: value.to_string(),
            expected: "letters, digits, '_', '-' and '.' only",
        })
    }
}

impl CellId {
    /// A cell, checking that the preset and backbone names are safe directory names.
    pub fn new(
        preset: &str,
        backbone: &str,
        task: Task,
        regime: Regime,
    ) -> Result<Self, ResultsError> {
        check_component("preset", preset)?;
        check_component("backbone", backbone)?;
        Ok(Self {
            preset: preset.to_string(),
            backbone: backbone.to_string(),
            task,
            regime,
        })
    }

    /// `<runs>/<preset>/<backbone>/<task>/<regime>`.
    pub fn dir(&self, runs: &Path) -> PathBuf {
        runs.join(&self.preset)
            .join(&self.backbone)
            .join(self.task.name())
            .join(self.regime.name())
    }
}

impl fmt::Display for CellId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.preset, self.backbone, self.task, self.regime
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_preset_backbone_task_regime() {
        let cell = CellId::new("mini", "swin_t", Task::Ade20k, Regime::Full).unwrap();
        assert_eq!(
            cell.dir(Path::new("runs")),
            Path::new("runs/mini/swin_t/ade20k/full")
        );
        assert_eq!(cell.to_string(), "mini/swin_t/ade20k/full");
    }

    #[test]
    fn unsafe_names_are_rejected() {
        for bad in ["", "..", "a/b", "x y", "ü"] {
            assert!(
                CellId::new("mini", bad, Task::Coco, Regime::Fixed).is_err(),
                "{bad}"
            );
        }
        let err = "imagenet".parse::<Task>().unwrap_err().to_string();
        assert!(err.contains("cifar10"), "{err}");
        assert_eq!("full".parse::<Regime>().unwrap(), Regime::Full);
    }
}
