//! How label maps are interpreted: the class count, the ignore index and ADE20K's
//! reduce_zero_label.

use serde::{Deserialize, Serialize};

use crate::AdeError;

/// The settings that decide what a label value means. Defaults live in [`EvalConfig::new`]
/// (ignore 255, no reduction) and [`EvalConfig::ade20k`] (150 classes, ignore 255, reduce).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// Number of classes; class indices are `0..num_classes` (at most 256).
    pub num_classes: usize,
    /// Label value that is left out of every count (mmseg's `ignore_index`, 255 by default).
    /// `None` ignores nothing.
    pub ignore_index: Option<u8>,
    /// ADE20K's convention, applied to the ground truth only: 0 (other/background) becomes the
    /// ignore value 255 and every other value k becomes k − 1 (255 stays 255). Exactly mmseg's
    /// `LoadAnnotations(reduce_zero_label=True)`.
    pub reduce_zero_label: bool,
}

impl EvalConfig {
    /// `num_classes` classes, ignore index 255, no reduction.
    pub fn new(num_classes: usize) -> Self {
        EvalConfig {
            num_classes,
            ignore_index: Some(255),
            reduce_zero_label: false,
        }
    }

    /// ADE20K as mmseg evaluates it: 150 classes, ignore 255, reduce_zero_label on.
    pub fn ade20k() -> Self {
        EvalConfig::new(crate::ADE20K_CLASSES.len()).with_reduce_zero_label(true)
    }

    /// Sets the ignore index (`None`: nothing is ignored).
    pub fn with_ignore_index(mut self, ignore_index: Option<u8>) -> Self {
        self.ignore_index = ignore_index;
        self
    }

    /// Turns ADE20K's reduce_zero_label on or off.
    pub fn with_reduce_zero_label(mut self, reduce_zero_label: bool) -> Self {
        self.reduce_zero_label = reduce_zero_label;
        self
    }

    /// Checks that the settings can work: 1..=256 classes.
    pub fn validate(&self) -> Result<(), AdeError> {
        if self.num_classes == 0 || self.num_classes > 256 {
            return Err(AdeError::Config {
                message: format!(
                    "num_classes is {}, but 8-bit label maps hold 1 to 256 classes",
                    self.num_classes
                ),
            });
        }
        Ok(())
    }

    /// The ground-truth value that a stored value `raw` stands for, after reduce_zero_label.
    pub fn map_label(&self, raw: u8) -> u8 {
        if self.reduce_zero_label {
            reduce_zero_label_value(raw)
        } else {
            raw
        }
    }

    /// Whether a (mapped) label value is left out of the counts.
    pub fn is_ignored(&self, label: u8) -> bool {
        self.ignore_index == Some(label)
    }

    pub(crate) fn ignore_text(&self) -> String {
        match self.ignore_index {
            Some(value) => value.to_string(),
            None => "none".to_string(),
        }
    }
}

/// reduce_zero_label for one value: 0 → 255, 255 → 255, k → k − 1. This is what mmseg's
/// `label[label == 0] = 255; label = label - 1; label[label == 254] = 255` does to uint8 maps.
pub fn reduce_zero_label_value(raw: u8) -> u8 {
    match raw {
        0 | 255 => 255,
        value => value - 1,
    }
}

/// Applies reduce_zero_label to a whole map in place.
pub fn reduce_zero_label(labels: &mut [u8]) {
    for value in labels {
        *value = reduce_zero_label_value(*value);
    }
}
