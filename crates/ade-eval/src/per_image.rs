//! Per-image areas, kept so that a bootstrap can re-sum them over resamples of the images.

use crate::{AdeError, EvalConfig, IouAccumulator};

/// One image's non-zero per-class areas (most images hold a few of the classes).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SparseAreas {
    classes: Vec<u32>,
    // intersect, union, pred_area, label_area of each listed class.
    areas: Vec<[u64; 4]>,
}

/// The areas of every evaluated image, in evaluation order. [`PerImageAreas::weighted`] sums
/// them with image multiplicities, which equals accumulating a list in which image `i`
/// appears `counts[i]` times: a bootstrap replicate's totals without re-reading any pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerImageAreas {
    config: EvalConfig,
    images: Vec<SparseAreas>,
}

impl PerImageAreas {
    /// No images yet, for accumulators with `config`.
    pub fn new(config: EvalConfig) -> Self {
        Self {
            config,
            images: Vec::new(),
        }
    }

    /// Images recorded.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether no image was recorded.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Records `image`, an accumulator that holds exactly one image's areas; an error if its
    /// settings differ.
    pub fn push(&mut self, image: &IouAccumulator) -> Result<(), AdeError> {
        if *image.config() != self.config {
            return Err(AdeError::Incompatible {
                message: format!("{:?} differs from {:?}", image.config(), self.config),
            });
        }
        let mut sparse = SparseAreas {
            classes: Vec::new(),
            areas: Vec::new(),
        };
        for class in 0..self.config.num_classes {
            let areas = [
                image.intersect()[class],
                image.union()[class],
                image.pred_area()[class],
                image.label_area()[class],
            ];
            if areas != [0; 4] {
                sparse.classes.push(class as u32);
                sparse.areas.push(areas);
            }
        }
        self.images.push(sparse);
        Ok(())
    }

    /// The totals of the multiset in which image `i` occurs `counts[i]` times; an error
    /// unless `counts` has one entry per recorded image.
    pub fn weighted(&self, counts: &[u32]) -> Result<IouAccumulator, AdeError> {
        if counts.len() != self.images.len() {
            return Err(AdeError::Incompatible {
                message: format!(
                    "{} image multiplicities for {} recorded images",
                    counts.len(),
                    self.images.len()
                ),
            });
        }
        let mut total = IouAccumulator::new(self.config)?;
        let mut sums = vec![[0u64; 4]; self.config.num_classes];
        for (image, &count) in self.images.iter().zip(counts) {
            if count == 0 {
                continue;
            }
            for (&class, areas) in image.classes.iter().zip(&image.areas) {
                let into = &mut sums[class as usize];
                for (a, b) in into.iter_mut().zip(areas) {
                    *a += u64::from(count) * b;
                }
            }
        }
        let images = counts.iter().map(|&c| u64::from(c)).sum();
        total.set_totals(images, &sums);
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_sums_equal_accumulating_the_repeated_list() {
        let config = EvalConfig::new(5);
        // Three 2×3 images with labels 0..4 and the ignore index.
        let images: [(&[u8], &[u8]); 3] = [
            (&[0, 1, 1, 2, 255, 4], &[0, 1, 2, 2, 3, 4]),
            (&[3, 3, 3, 0, 0, 1], &[3, 4, 3, 0, 1, 1]),
            (&[2, 2, 2, 2, 2, 2], &[2, 2, 0, 0, 2, 2]),
        ];
        let mut per_image = PerImageAreas::new(config);
        let mut one = IouAccumulator::new(config).unwrap();
        for (label, pred) in images {
            one.clear();
            one.add(label, pred).unwrap();
            per_image.push(&one).unwrap();
        }
        for counts in [[1, 1, 1], [3, 0, 0], [0, 2, 1], [0, 0, 0]] {
            let mut direct = IouAccumulator::new(config).unwrap();
            for (i, &count) in counts.iter().enumerate() {
                for _ in 0..count {
                    direct.add(images[i].0, images[i].1).unwrap();
                }
            }
            assert_eq!(per_image.weighted(&counts).unwrap(), direct, "{counts:?}");
        }
        assert!(per_image.weighted(&[1, 1]).is_err());
        assert!(
            per_image
                .push(&IouAccumulator::new(EvalConfig::new(6)).unwrap())
                .is_err()
        );
    }
}
