//! Evaluation parameters (pycocotools' `Params`) and the numpy arithmetic they depend on.

use std::fmt;

/// What is compared: boxes or masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IouType {
    /// Box IoU on `[x, y, w, h]`.
    Bbox,
    /// Mask IoU on run-length encoded regions.
    Segm,
}

impl IouType {
    /// The name pycocotools uses (`"bbox"`, `"segm"`).
    pub fn as_str(self) -> &'static str {
        match self {
            IouType::Bbox => "bbox",
            IouType::Segm => "segm",
        }
    }
}

impl fmt::Display for IouType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for IouType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bbox" => Ok(IouType::Bbox),
            "segm" => Ok(IouType::Segm),
            other => Err(format!(
                "unknown iou type {other:?} (expected bbox or segm)"
            )),
        }
    }
}

/// `numpy.linspace(start, stop, num)` with the same rounding: `i * step + start`, and the
/// last value set to `stop`.
pub fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return Vec::new();
    }
    if num == 1 {
        return vec![start];
    }
    let div = (num - 1) as f64;
    let delta = stop - start;
    let step = delta / div;
    let mut values: Vec<f64> = if step == 0.0 {
        (0..num).map(|i| i as f64 / div * delta + start).collect()
    } else {
        (0..num).map(|i| i as f64 * step + start).collect()
    };
    values[num - 1] = stop;
    values
}

/// Parameters of an evaluation; [`Params::new`] gives pycocotools' defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Boxes or masks.
    pub iou_type: IouType,
    /// Images to evaluate; `None` means every image of the ground truth.
    pub img_ids: Option<Vec<i64>>,
    /// Categories to evaluate; `None` means every category of the ground truth.
    pub cat_ids: Option<Vec<i64>>,
    /// IoU thresholds (default `linspace(.5, .95, 10)`).
    pub iou_thrs: Vec<f64>,
    /// Recall thresholds of the precision curve (default `linspace(0, 1, 101)`).
    pub rec_thrs: Vec<f64>,
    /// Detections kept per image and category (default `[1, 10, 100]`; sorted before use).
    pub max_dets: Vec<usize>,
    /// Object area ranges, both ends inclusive (default all, small, medium, large).
    pub area_rng: Vec<[f64; 2]>,
    /// Labels of `area_rng`, used by the summary (`all`, `small`, `medium`, `large`).
    pub area_rng_lbl: Vec<String>,
    /// Match within categories (`true`) or across them (`false`, one pooled category).
    pub use_cats: bool,
}

impl Params {
    /// pycocotools' defaults for box or mask evaluation.
    pub fn new(iou_type: IouType) -> Self {
        // The same expressions as pycocotools: np.round((0.95 - .5) / .05) + 1 points.
        let iou_count = ((0.95f64 - 0.5) / 0.05).round() as usize + 1;
        let rec_count = ((1.00f64 - 0.0) / 0.01).round() as usize + 1;
        Self {
            iou_type,
            img_ids: None,
            cat_ids: None,
            iou_thrs: linspace(0.5, 0.95, iou_count),
            rec_thrs: linspace(0.0, 1.0, rec_count),
            max_dets: vec![1, 10, 100],
            area_rng: vec![
                [0.0, 1e5 * 1e5],
                [0.0, 32.0 * 32.0],
                [32.0 * 32.0, 96.0 * 96.0],
                [96.0 * 96.0, 1e5 * 1e5],
            ],
            area_rng_lbl: ["all", "small", "medium", "large"]
                .map(String::from)
                .to_vec(),
            use_cats: true,
        }
    }

    /// Restricts the evaluation to these images.
    pub fn with_img_ids(mut self, ids: Vec<i64>) -> Self {
        self.img_ids = Some(ids);
        self
    }

    /// Restricts the evaluation to these categories.
    pub fn with_cat_ids(mut self, ids: Vec<i64>) -> Self {
        self.cat_ids = Some(ids);
        self
    }

    /// Sets the IoU thresholds.
    pub fn with_iou_thrs(mut self, thresholds: Vec<f64>) -> Self {
        self.iou_thrs = thresholds;
        self
    }

    /// Sets the recall thresholds.
    pub fn with_rec_thrs(mut self, thresholds: Vec<f64>) -> Self {
        self.rec_thrs = thresholds;
        self
    }

    /// Sets the per-image detection limits.
    pub fn with_max_dets(mut self, max_dets: Vec<usize>) -> Self {
        self.max_dets = max_dets;
        self
    }

    /// Sets the area ranges and their labels.
    pub fn with_area_ranges(mut self, ranges: Vec<[f64; 2]>, labels: Vec<String>) -> Self {
        self.area_rng = ranges;
        self.area_rng_lbl = labels;
        self
    }

    /// Pools all categories (`useCats = 0`).
    pub fn with_use_cats(mut self, use_cats: bool) -> Self {
        self.use_cats = use_cats;
        self
    }
}

/// numpy's pairwise summation of a contiguous float64 array (`np.add.reduce`), so that means
/// come out bit-identical to `np.mean`.
pub(crate) fn numpy_sum(values: &[f64]) -> f64 {
    fn pairwise(values: &[f64]) -> f64 {
        let n = values.len();
        if n < 8 {
            let mut sum = 0.0;
            for &v in values {
                sum += v;
            }
            sum
        } else if n <= 128 {
            let mut partial = [0.0f64; 8];
            partial.copy_from_slice(&values[..8]);
            let mut i = 8;
            while i < n - n % 8 {
                for (j, slot) in partial.iter_mut().enumerate() {
                    *slot += values[i + j];
                }
                i += 8;
            }
            let mut sum = ((partial[0] + partial[1]) + (partial[2] + partial[3]))
                + ((partial[4] + partial[5]) + (partial[6] + partial[7]));
            while i < n {
                sum += values[i];
                i += 1;
            }
            sum
        } else {
            let mut half = n / 2;
            half -= half % 8;
            pairwise(&values[..half]) + pairwise(&values[half..])
        }
    }
    0.0 + pairwise(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_thresholds_hit_the_summary_values() {
        let params = Params::new(IouType::Bbox);
        assert_eq!(params.iou_thrs.len(), 10);
        assert_eq!(params.rec_thrs.len(), 101);
        // summarize() looks thresholds up by exact equality.
        assert!(params.iou_thrs.contains(&0.5));
        assert!(params.iou_thrs.contains(&0.75));
        assert_eq!(params.iou_thrs[9], 0.95);
    }

    #[test]
    fn numpy_sum_small_and_blocked() {
        assert_eq!(numpy_sum(&[]), 0.0);
        assert_eq!(numpy_sum(&[1.0, 2.0, 3.0]), 6.0);
        let values: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        assert_eq!(numpy_sum(&values), 499_500.0);
    }
}

#[cfg(test)]
mod numpy_tests {
    use super::numpy_sum;

    /// `np.mean` on arrays of every size class of numpy's pairwise summation
    /// (`tests/golden/numpy_mean.json`, written by make_golden.py).
    #[test]
    fn mean_matches_numpy_bit_for_bit() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/numpy_mean.json");
        let cases: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        for case in cases.as_array().unwrap() {
            let values: Vec<f64> = case["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let mean = numpy_sum(&values) / values.len() as f64;
            assert_eq!(
                mean.to_bits(),
                case["mean"].as_f64().unwrap().to_bits(),
                "n = {}",
                values.len()
            );
        }
    }
}
