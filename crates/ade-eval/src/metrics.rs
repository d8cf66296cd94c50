//! mmseg's `total_area_to_metrics` and its display rounding.

use serde::{Serialize, Serializer};

/// Dataset-level segmentation metrics. Fractions in [0, 1]; NaN where mmseg has NaN (a class
/// with no label and no predicted pixel has IoU 0/0, a class with no label pixel has
/// accuracy 0/0).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    /// Pixel accuracy over all non-ignored pixels: Σ intersection / Σ label area.
    #[serde(rename = "aAcc", serialize_with = "nan_as_null")]
    pub a_acc: f64,
    /// Mean of the per-class IoU, NaN entries left out (numpy's `nanmean`).
    #[serde(rename = "mIoU", serialize_with = "nan_as_null")]
    pub m_iou: f64,
    /// Mean of the per-class accuracy, NaN entries left out.
    #[serde(rename = "mAcc", serialize_with = "nan_as_null")]
    pub m_acc: f64,
    /// Per-class intersection / union.
    #[serde(skip)]
    pub iou: Vec<f64>,
    /// Per-class intersection / label area.
    #[serde(skip)]
    pub acc: Vec<f64>,
}

impl Metrics {
    /// The metrics of summed areas, computed as mmseg does in float64: IoU = I / U,
    /// Acc = I / L, aAcc = ΣI / ΣL, means by `nanmean`.
    pub fn from_areas(intersect: &[u64], union: &[u64], label_area: &[u64]) -> Metrics {
        let ratio = |num: u64, den: u64| num as f64 / den as f64;
        let iou: Vec<f64> = intersect
            .iter()
            .zip(union)
            .map(|(&i, &u)| ratio(i, u))
            .collect();
        let acc: Vec<f64> = intersect
            .iter()
            .zip(label_area)
            .map(|(&i, &l)| ratio(i, l))
            .collect();
        // Exact integer sums; mmseg's float64 sums of integers below 2^53 are exact too.
        let a_acc = ratio(intersect.iter().sum(), label_area.iter().sum());
        Metrics {
            a_acc,
            m_iou: nanmean(&iou),
            m_acc: nanmean(&acc),
            iou,
            acc,
        }
    }
}

fn nan_as_null<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_nan() {
        serializer.serialize_none()
    } else {
        serializer.serialize_f64(*value)
    }
}

/// numpy's `nanmean` of a float64 array: NaNs are replaced by 0 and summed with numpy's
/// pairwise summation, then divided by the count of non-NaN values. NaN when all are NaN.
pub fn nanmean(values: &[f64]) -> f64 {
    let zeroed: Vec<f64> = values
        .iter()
        .map(|&v| if v.is_nan() { 0.0 } else { v })
        .collect();
    let count = values.iter().filter(|v| !v.is_nan()).count();
    numpy_sum(&zeroed) / count as f64
}

/// `np.sum` of a contiguous float64 array: numpy's pairwise summation (blocks of at most 128
/// values, eight partial sums per block). The order matters only in the last bits, but
/// following it keeps mIoU and mAcc bit-identical to mmseg's.
pub fn numpy_sum(values: &[f64]) -> f64 {
    pairwise_sum(values)
}

fn pairwise_sum(values: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = values.len();
    if n < 8 {
        values.iter().fold(0.0, |sum, &v| sum + v)
    } else if n <= BLOCK {
        let mut partial = [0.0f64; 8];
        partial.copy_from_slice(&values[..8]);
        let whole = n - n % 8;
        for block in values[8..whole].chunks_exact(8) {
            for (p, &v) in partial.iter_mut().zip(block) {
                *p += v;
            }
        }
        let mut sum = ((partial[0] + partial[1]) + (partial[2] + partial[3]))
            + ((partial[4] + partial[5]) + (partial[6] + partial[7]));
        for &v in &values[whole..] {
            sum += v;
        }
        sum
    } else {
        let mut half = n / 2;
        half -= half % 8;
        pairwise_sum(&values[..half]) + pairwise_sum(&values[half..])
    }
}

/// mmseg's display value of a fraction: `np.round(fraction * 100, 2)`, i.e. numpy's
/// round-half-to-even of the value scaled by 100 again. NaN stays NaN.
pub fn mmseg_round(fraction: f64) -> f64 {
    ((fraction * 100.0) * 100.0).round_ties_even() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanmean_skips_nan_and_is_nan_when_all_are() {
        assert_eq!(nanmean(&[0.5, f64::NAN, 1.0]), 0.75);
        assert!(nanmean(&[f64::NAN, f64::NAN]).is_nan());
        assert!(nanmean(&[]).is_nan());
    }

    #[test]
    fn pairwise_sum_adds_every_element_once() {
        for n in [0usize, 1, 7, 8, 9, 15, 16, 127, 128, 129, 150, 256, 1000] {
            let values: Vec<f64> = (0..n).map(|i| i as f64).collect();
            let expected = (n * n.saturating_sub(1) / 2) as f64;
            assert_eq!(numpy_sum(&values), expected, "n = {n}");
        }
    }

    #[test]
    fn rounding_is_half_to_even_after_scaling_like_numpy() {
        assert_eq!(mmseg_round(0.123456), 12.35);
        assert_eq!(mmseg_round(0.5), 50.0);
        assert_eq!(mmseg_round(1.0), 100.0);
        assert!(mmseg_round(f64::NAN).is_nan());
    }
}
