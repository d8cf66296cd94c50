//! The streaming mIoU accumulator: per-class intersection, union, predicted area and label
//! area over a whole dataset, in exact 64-bit counts.
//!
//! Each image is first counted into a 256×256 joint histogram of (stored label, prediction)
//! pairs: one increment per run of equal pairs (found 64 pixels at a time), which is what
//! makes segmentation maps, made of regions, stream at memory speed. The ignore index, reduce_zero_label
//! and range checks are then applied once per histogram row, never per pixel.

use serde::{Deserialize, Serialize};

use crate::pairs::JointHistogram;
use crate::{AdeError, EvalConfig, LabelMap, Metrics};

/// Pixels counted into the u32 joint histogram before it is flushed into the u64 totals.
const MAX_PIXELS_PER_FLUSH: usize = u32::MAX as usize;

/// Per-class intersection, union, predicted area and label area, summed over every image
/// added so far. Accumulators from threads, shards or processes merge with
/// [`IouAccumulator::merge`]; they serialise with serde (see [`IouAccumulator::to_json`]).
///
/// The four count vectors are exactly mmseg's `area_intersect`, `area_union`,
/// `area_pred_label` and `area_label`, summed (mmseg sums float copies of them; these are
/// exact integers).
#[derive(Debug, Serialize, Deserialize)]
pub struct IouAccumulator {
    config: EvalConfig,
    images: u64,
    intersect: Vec<u64>,
    union: Vec<u64>,
    pred_area: Vec<u64>,
    label_area: Vec<u64>,
    /// Reused between images; not part of the result.
    #[serde(skip)]
    scratch: Option<JointHistogram>,
}

impl Clone for IouAccumulator {
    fn clone(&self) -> Self {
        IouAccumulator {
            config: self.config,
            images: self.images,
            intersect: self.intersect.clone(),
            union: self.union.clone(),
            pred_area: self.pred_area.clone(),
            label_area: self.label_area.clone(),
            scratch: None,
        }
    }
}

impl PartialEq for IouAccumulator {
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config
            && self.images == other.images
            && self.intersect == other.intersect
            && self.union == other.union
            && self.pred_area == other.pred_area
            && self.label_area == other.label_area
    }
}

impl Eq for IouAccumulator {}

impl IouAccumulator {
    /// An empty accumulator; errors if the configuration cannot work.
    pub fn new(config: EvalConfig) -> Result<Self, AdeError> {
        config.validate()?;
        let zeros = vec![0; config.num_classes];
        Ok(IouAccumulator {
            config,
            images: 0,
            intersect: zeros.clone(),
            union: zeros.clone(),
            pred_area: zeros.clone(),
            label_area: zeros,
            scratch: None,
        })
    }

    /// The settings this accumulator counts with.
    pub fn config(&self) -> &EvalConfig {
        &self.config
    }

    /// Number of label maps added (merges add up).
    pub fn images(&self) -> u64 {
        self.images
    }

    /// Per-class pixels where prediction and label agree.
    pub fn intersect(&self) -> &[u64] {
        &self.intersect
    }

    /// Per-class pixels predicted or labelled as the class.
    pub fn union(&self) -> &[u64] {
        &self.union
    }

    /// Per-class predicted pixels (non-ignored pixels only).
    pub fn pred_area(&self) -> &[u64] {
        &self.pred_area
    }

    /// Per-class labelled pixels.
    pub fn label_area(&self) -> &[u64] {
        &self.label_area
    }

    /// Adds one label map and its prediction, both row-major with one byte per pixel. The
    /// label holds the values as stored (reduce_zero_label, if configured, is applied here);
    /// the prediction holds class indices.
    ///
    /// On error nothing is added. Errors: different lengths; a label value that is neither a
    /// class nor the ignore index; a prediction value at a non-ignored pixel that is not a
    /// class (mmseg would silently drop such values from the histograms).
    pub fn add(&mut self, label: &[u8], pred: &[u8]) -> Result<(), AdeError> {
        if label.len() != pred.len() {
            return Err(AdeError::LengthMismatch {
                label_len: label.len(),
                pred_len: pred.len(),
            });
        }
        let n = self.config.num_classes;
        let mut totals = ImageTotals::zeros(n);
        let mut scratch = self.scratch.take().unwrap_or_else(JointHistogram::new);
        let mut result = Ok(());
        let mut offset = 0;
        for (label_part, pred_part) in label
            .chunks(MAX_PIXELS_PER_FLUSH)
            .zip(pred.chunks(MAX_PIXELS_PER_FLUSH))
        {
            scratch.count(label_part, pred_part);
            let flushed = flush(&self.config, &mut scratch, &mut totals);
            if let Err(bad) = flushed {
                result = Err(bad.locate(&self.config, label_part, pred_part, offset));
                break;
            }
            offset += label_part.len();
        }
        self.scratch = Some(scratch);
        result?;
        for class in 0..n {
            self.intersect[class] += totals.intersect[class];
            self.pred_area[class] += totals.pred_area[class];
            self.label_area[class] += totals.label_area[class];
            self.union[class] +=
                totals.pred_area[class] + totals.label_area[class] - totals.intersect[class];
        }
        self.images += 1;
        Ok(())
    }

    /// Sets every count back to zero (keeping the scratch table), to reuse the accumulator
    /// for the next image.
    pub fn clear(&mut self) {
        for counts in [
            &mut self.intersect,
            &mut self.union,
            &mut self.pred_area,
            &mut self.label_area,
        ] {
            counts.fill(0);
        }
        self.images = 0;
    }

    /// Replaces the totals: `images` images and `[intersect, union, pred_area, label_area]`
    /// per class (the caller has one entry per class).
    pub(crate) fn set_totals(&mut self, images: u64, areas: &[[u64; 4]]) {
        self.images = images;
        for (class, [i, u, p, l]) in areas.iter().enumerate() {
            self.intersect[class] = *i;
            self.union[class] = *u;
            self.pred_area[class] = *p;
            self.label_area[class] = *l;
        }
    }

    /// [`add`](Self::add) for two maps whose sizes must match.
    pub fn add_map(&mut self, label: &LabelMap, pred: &LabelMap) -> Result<(), AdeError> {
        if label.size() != pred.size() {
            return Err(AdeError::SizeMismatch {
                path: "prediction".into(),
                width: pred.width(),
                height: pred.height(),
                other_path: "label".into(),
                other_width: label.width(),
                other_height: label.height(),
            });
        }
        self.add(label.data(), pred.data())
    }

    /// Adds another accumulator's counts (another thread's, shard's or process's). Both must
    /// have the same settings.
    pub fn merge(&mut self, other: &IouAccumulator) -> Result<(), AdeError> {
        if self.config != other.config {
            return Err(AdeError::Incompatible {
                message: format!("{:?} differs from {:?}", self.config, other.config),
            });
        }
        for (into, from) in [
            (&mut self.intersect, &other.intersect),
            (&mut self.union, &other.union),
            (&mut self.pred_area, &other.pred_area),
            (&mut self.label_area, &other.label_area),
        ] {
            for (a, b) in into.iter_mut().zip(from) {
                *a += *b;
            }
        }
        self.images += other.images;
        Ok(())
    }

    /// mIoU, mAcc, aAcc and the per-class values, as mmseg's `total_area_to_metrics` computes
    /// them from these totals.
    pub fn metrics(&self) -> Metrics {
        Metrics::from_areas(&self.intersect, &self.union, &self.label_area)
    }

    /// The accumulator as JSON, for merging shards computed by separate processes.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an accumulator always serialises")
    }

    /// Reads an accumulator written by [`to_json`](Self::to_json); `source` names where it
    /// came from in errors. The counts are checked for consistency.
    pub fn from_json(text: &str, source: impl Into<std::path::PathBuf>) -> Result<Self, AdeError> {
        let path = source.into();
        let parsed: IouAccumulator = serde_json::from_str(text).map_err(|err| AdeError::Json {
            path: path.clone(),
            message: err.to_string(),
        })?;
        let json_error = |message: String| AdeError::Json {
            path: path.clone(),
            message,
        };
        parsed
            .config
            .validate()
            .map_err(|err| json_error(err.to_string()))?;
        let n = parsed.config.num_classes;
        for (name, counts) in [
            ("intersect", &parsed.intersect),
            ("union", &parsed.union),
            ("pred_area", &parsed.pred_area),
            ("label_area", &parsed.label_area),
        ] {
            if counts.len() != n {
                return Err(json_error(format!(
                    "{name} has {} entries but num_classes is {n}",
                    counts.len()
                )));
            }
        }
        for class in 0..n {
            let (i, p, l) = (
                parsed.intersect[class],
                parsed.pred_area[class],
                parsed.label_area[class],
            );
            if i > p || i > l || parsed.union[class] != p + l - i {
                return Err(json_error(format!(
                    "class {class}: intersect {i}, pred_area {p}, label_area {l}, union {} are \
                     inconsistent",
                    parsed.union[class]
                )));
            }
        }
        Ok(parsed)
    }
}

/// One image's per-class totals, committed only when the whole image is valid.
struct ImageTotals {
    intersect: Vec<u64>,
    pred_area: Vec<u64>,
    label_area: Vec<u64>,
}

impl ImageTotals {
    fn zeros(n: usize) -> Self {
        ImageTotals {
            intersect: vec![0; n],
            pred_area: vec![0; n],
            label_area: vec![0; n],
        }
    }
}

/// A value found out of range while flushing; located in the map afterwards.
enum OutOfRange {
    Label(u8),
    Prediction(u8),
}

impl OutOfRange {
    fn locate(self, config: &EvalConfig, label: &[u8], pred: &[u8], offset: usize) -> AdeError {
        match self {
            OutOfRange::Label(value) => AdeError::LabelOutOfRange {
                value,
                pixel: offset + label.iter().position(|&l| l == value).unwrap_or(0),
                num_classes: config.num_classes,
                ignore: config.ignore_text(),
            },
            OutOfRange::Prediction(value) => AdeError::PredictionOutOfRange {
                value,
                pixel: offset
                    + label
                        .iter()
                        .zip(pred)
                        .position(|(&l, &p)| p == value && !config.is_ignored(config.map_label(l)))
                        .unwrap_or(0),
                num_classes: config.num_classes,
            },
        }
    }
}

/// Moves the joint histogram into per-class totals and zeroes it. The table is always left
/// zeroed, also on error.
fn flush(
    config: &EvalConfig,
    histogram: &mut JointHistogram,
    totals: &mut ImageTotals,
) -> Result<(), OutOfRange> {
    let table = histogram.counts_mut();
    let n = config.num_classes;
    let mut first_error = None;
    for stored in 0..=255u8 {
        let row = &mut table[usize::from(stored) * 256..][..256];
        // The whole table holds at most u32::MAX pixels, so a row's sum fits in u32 (and
        // the plain sum vectorises).
        let row_total = row.iter().fold(0u32, |sum, &c| sum.wrapping_add(c));
        if row_total == 0 {
            continue;
        }
        let label = config.map_label(stored);
        if !config.is_ignored(label) && first_error.is_none() {
            if usize::from(label) >= n {
                first_error = Some(OutOfRange::Label(stored));
            } else if row[n..].iter().fold(0, |any, &c| any | c) != 0 {
                let bad = row[n..].iter().position(|&c| c != 0).unwrap_or(0);
                first_error = Some(OutOfRange::Prediction((n + bad) as u8));
            } else {
                let label = usize::from(label);
                totals.label_area[label] += u64::from(row_total);
                totals.intersect[label] += u64::from(row[label]);
                for (area, &count) in totals.pred_area.iter_mut().zip(&row[..n]) {
                    *area += u64::from(count);
                }
            }
        }
        row.fill(0);
    }
    match first_error {
        Some(bad) => Err(bad),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one pixel at a time, as mmseg's `intersect_and_union` states it.
    fn naive(config: &EvalConfig, label: &[u8], pred: &[u8]) -> [Vec<u64>; 4] {
        let n = config.num_classes;
        let (mut i, mut u, mut p, mut l) = (vec![0; n], vec![0; n], vec![0; n], vec![0; n]);
        for (&raw, &pr) in label.iter().zip(pred) {
            let lab = config.map_label(raw);
            if config.is_ignored(lab) {
                continue;
            }
            l[lab as usize] += 1;
            p[pr as usize] += 1;
            if lab == pr {
                i[lab as usize] += 1;
            }
        }
        for c in 0..n {
            u[c] = p[c] + l[c] - i[c];
        }
        [i, u, p, l]
    }

    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *state >> 33
    }

    #[test]
    fn joint_histogram_equals_the_per_pixel_definition() {
        let mut state = 7;
        for (n, reduce, ignore) in [
            (150, true, Some(255)),
            (19, false, Some(255)),
            (5, false, None),
            (256, false, None),
            (3, true, Some(255)),
        ] {
            let config = EvalConfig::new(n)
                .with_reduce_zero_label(reduce)
                .with_ignore_index(ignore);
            // Mixed runs and noise of odd lengths so both paths and the remainder run.
            let len = 64 * 57 + 13;
            let mut label = Vec::with_capacity(len);
            let mut pred = Vec::with_capacity(len);
            while label.len() < len {
                let run = 1 + (lcg(&mut state) % 70) as usize;
                let max_label = if reduce { n + 1 } else { n } as u64;
                let mut l = (lcg(&mut state) % max_label) as u8;
                if ignore.is_some() && lcg(&mut state).is_multiple_of(6) {
                    l = 255;
                }
                let p = (lcg(&mut state) % n as u64) as u8;
                for _ in 0..run.min(len - label.len()) {
                    label.push(l);
                    pred.push(if lcg(&mut state).is_multiple_of(9) {
                        (lcg(&mut state) % n as u64) as u8
                    } else {
                        p
                    });
                }
            }
            let mut acc = IouAccumulator::new(config).unwrap();
            acc.add(&label, &pred).unwrap();
            let [i, u, p, l] = naive(&config, &label, &pred);
            assert_eq!(acc.intersect(), &i[..], "{config:?}");
            assert_eq!(acc.union(), &u[..]);
            assert_eq!(acc.pred_area(), &p[..]);
            assert_eq!(acc.label_area(), &l[..]);
        }
    }

    #[test]
    fn an_error_adds_nothing_and_leaves_the_scratch_clean() {
        let config = EvalConfig::new(4);
        let mut acc = IouAccumulator::new(config).unwrap();
        acc.add(&[0, 1, 2, 3], &[0, 1, 2, 2]).unwrap();
        let before = acc.clone();
        let err = acc.add(&[0, 9, 1, 9], &[0, 0, 0, 0]).unwrap_err();
        assert!(
            matches!(
                err,
                AdeError::LabelOutOfRange {
                    value: 9,
                    pixel: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(acc, before);
        let err = acc.add(&[0, 1, 255, 1], &[0, 200, 201, 7]).unwrap_err();
        assert!(
            matches!(
                err,
                AdeError::PredictionOutOfRange {
                    value: 7,
                    pixel: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(acc, before);
        // The failed images left no counts behind in the reused histogram.
        acc.add(&[1], &[1]).unwrap();
        let mut expected = before.clone();
        expected.add(&[1], &[1]).unwrap();
        assert_eq!(acc, expected);
    }

    #[test]
    fn prediction_values_at_ignored_pixels_are_not_checked() {
        let mut acc = IouAccumulator::new(EvalConfig::new(2)).unwrap();
        acc.add(&[255, 0], &[17, 0]).unwrap();
        assert_eq!(acc.pred_area(), &[1, 0]);
    }
}
