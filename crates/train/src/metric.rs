//! Metrics: accumulators over plain values that an evaluation step produces. They never see a
//! model or a tensor; a task turns its outputs into their input types.

/// An accumulator over evaluation outputs.
pub trait Metric {
    /// What one evaluation step hands over.
    type Input;

    /// Adds one step's outputs.
    fn update(&mut self, input: &Self::Input);

    /// The value so far.
    fn value(&self) -> f64;

    /// Starts over.
    fn reset(&mut self);
}

/// Predicted and true class indices of one batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClassPredictions {
    /// The predicted class of each sample.
    pub predicted: Vec<u32>,
    /// The true class of each sample.
    pub targets: Vec<u32>,
}

/// Top-1 accuracy in [0, 1]: the fraction of samples whose prediction equals the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accuracy {
    correct: u64,
    total: u64,
}

impl Accuracy {
    /// Correct predictions so far.
    pub fn correct(&self) -> u64 {
        self.correct
    }

    /// Samples so far.
    pub fn total(&self) -> u64 {
        self.total
    }
}

impl Metric for Accuracy {
    type Input = ClassPredictions;

    fn update(&mut self, input: &ClassPredictions) {
        // A batch with mismatched lengths counts only its paired samples; tasks build both
        // vectors from the same batch, so this never drops anything in practice.
        for (p, t) in input.predicted.iter().zip(&input.targets) {
            self.correct += u64::from(p == t);
            self.total += 1;
        }
    }

    /// 0 when nothing was seen.
    fn value(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.correct as f64 / self.total as f64
        }
    }

    fn reset(&mut self) {
        *self = Self::default();
    }
}

/// Top-1 correctness of every sample, in evaluation order: the accuracy, and the per-sample
/// values a bootstrap over the evaluated images resamples.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SampleCorrectness {
    correct: Vec<bool>,
}

impl SampleCorrectness {
    /// 1.0 for each correct sample, 0.0 otherwise, in the order seen.
    pub fn values(&self) -> Vec<f64> {
        self.correct
            .iter()
            .map(|&c| f64::from(u8::from(c)))
            .collect()
    }
}

impl Metric for SampleCorrectness {
    type Input = ClassPredictions;

    fn update(&mut self, input: &ClassPredictions) {
        self.correct.extend(
            input
                .predicted
                .iter()
                .zip(&input.targets)
                .map(|(p, t)| p == t),
        );
    }

    /// 0 when nothing was seen (as [`Accuracy`]).
    fn value(&self) -> f64 {
        if self.correct.is_empty() {
            0.0
        } else {
            self.correct.iter().filter(|&&c| c).count() as f64 / self.correct.len() as f64
        }
    }

    fn reset(&mut self) {
        self.correct.clear();
    }
}

/// The mean of scalar values (e.g. a validation loss).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Mean {
    sum: f64,
    count: u64,
}

impl Metric for Mean {
    type Input = Vec<f64>;

    fn update(&mut self, input: &Vec<f64>) {
        for value in input {
            self.sum += value;
            self.count += 1;
        }
    }

    /// NaN when nothing was seen.
    fn value(&self) -> f64 {
        self.sum / self.count as f64
    }

    fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_counts_matches() {
        let mut accuracy = Accuracy::default();
        accuracy.update(&ClassPredictions {
            predicted: vec![1, 2, 3],
            targets: vec![1, 0, 3],
        });
        accuracy.update(&ClassPredictions {
            predicted: vec![4],
            targets: vec![5],
        });
        assert_eq!((accuracy.correct(), accuracy.total()), (2, 4));
        assert_eq!(accuracy.value(), 0.5);
        accuracy.reset();
        assert_eq!(accuracy.value(), 0.0);
        let mut samples = SampleCorrectness::default();
        samples.update(&ClassPredictions {
            predicted: vec![1, 2, 3],
            targets: vec![1, 0, 3],
        });
        assert_eq!(samples.values(), vec![1.0, 0.0, 1.0]);
        assert_eq!(samples.value(), 2.0 / 3.0);
        samples.reset();
        assert_eq!(samples.value(), 0.0);
        let mut mean = Mean::default();
        mean.update(&vec![1.0, 2.0, 6.0]);
        assert_eq!(mean.value(), 3.0);
    }
}
