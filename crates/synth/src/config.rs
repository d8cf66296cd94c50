//! What to generate: the world (seed, classes) and each export's counts and sizes.

use crate::SynthError;

/// CIFAR-10-format export: 32×32 single-object images.
#[derive(Debug, Clone, PartialEq)]
pub struct CifarSpec {
    /// Training images, spread over data_batch_1..5.bin.
    pub train: usize,
    /// Test images (test_batch.bin).
    pub test: usize,
}

/// COCO-instances export: multi-instance scenes.
#[derive(Debug, Clone, PartialEq)]
pub struct CocoSpec {
    /// Images in train2017.
    pub train: usize,
    /// Images in val2017.
    pub val: usize,
    /// Image width.
    pub width: usize,
    /// Image height.
    pub height: usize,
    /// Probability that an image holds one crowd (annotated `iscrowd: 1`).
    pub crowd_probability: f64,
}

/// ADE20K-layout export: multi-instance scenes with per-pixel class maps.
#[derive(Debug, Clone, PartialEq)]
pub struct AdeSpec {
    /// Images in images/training.
    pub train: usize,
    /// Images in images/validation.
    pub val: usize,
    /// Image width.
    pub width: usize,
    /// Image height.
    pub height: usize,
}

/// The pretraining source task: one dominant shape per image.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    /// Training images.
    pub train: usize,
    /// Validation images.
    pub val: usize,
    /// Square image side.
    pub size: usize,
    /// Up to this many small shapes of other classes per image.
    pub distractors: usize,
}

/// The whole synthetic world. Every byte written follows from these values: same config,
/// same files. Defaults live in [`SynthConfig::mini`] (the `cargo xtask reproduce` preset).
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// The world seed.
    pub seed: u64,
    /// Number of shape classes K (1..=10); the first K of [`crate::ShapeKind::ALL`].
    pub num_classes: usize,
    /// The CIFAR-10-format export.
    pub cifar: CifarSpec,
    /// The COCO export.
    pub coco: CocoSpec,
    /// The ADE20K-layout export.
    pub ade: AdeSpec,
    /// The source (pretraining) task.
    pub source: SourceSpec,
}

impl SynthConfig {
    /// The offline mini study: 10 classes, CIFAR 10,000 + 2,000, COCO and ADE 1,000 + 200
    /// scenes of 128×128, source 20,000 + 2,000 images of 64×64. Seed 0.
    pub fn mini() -> Self {
        SynthConfig {
            seed: 0,
            num_classes: 10,
            cifar: CifarSpec {
                train: 10_000,
                test: 2_000,
            },
            coco: CocoSpec {
                train: 1_000,
                val: 200,
                width: 128,
                height: 128,
                crowd_probability: 0.15,
            },
            ade: AdeSpec {
                train: 1_000,
                val: 200,
                width: 128,
                height: 128,
            },
            source: SourceSpec {
                train: 20_000,
                val: 2_000,
                size: 64,
                distractors: 2,
            },
        }
    }

    /// Toy scale for tests: a few hundred small images in all.
    pub fn tiny() -> Self {
        SynthConfig {
            seed: 0,
            num_classes: 10,
            cifar: CifarSpec {
                train: 200,
                test: 50,
            },
            coco: CocoSpec {
                train: 24,
                val: 8,
                width: 96,
                height: 80,
                crowd_probability: 0.3,
            },
            ade: AdeSpec {
                train: 24,
                val: 8,
                width: 96,
                height: 80,
            },
            source: SourceSpec {
                train: 200,
                val: 50,
                size: 64,
                distractors: 2,
            },
        }
    }

    /// Sets the world seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the number of shape classes.
    pub fn with_num_classes(mut self, num_classes: usize) -> Self {
        self.num_classes = num_classes;
        self
    }

    /// Checks what every export needs: 1..=10 classes, sizes that hold a shape, at least one
    /// instance per scene.
    pub fn validate(&self) -> Result<(), SynthError> {
        let fail = |message: String| Err(SynthError::Config { message });
        if !(1..=crate::ShapeKind::ALL.len()).contains(&self.num_classes) {
            return fail(format!(
                "num_classes is {}, must be 1..={}",
                self.num_classes,
                crate::ShapeKind::ALL.len()
            ));
        }
        for (what, w, h) in [
            ("coco", self.coco.width, self.coco.height),
            ("ade", self.ade.width, self.ade.height),
            ("source", self.source.size, self.source.size),
        ] {
            if w < 16 || h < 16 || w > 4096 || h > 4096 {
                return fail(format!(
                    "{what} image size {w}×{h} must be 16..=4096 per side"
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.coco.crowd_probability) {
            return fail(format!(
                "coco crowd_probability {} is not a probability",
                self.coco.crowd_probability
            ));
        }
        Ok(())
    }
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig::mini()
    }
}
