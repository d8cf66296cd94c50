//! Paired bootstrap confidence intervals over the evaluation images.
//!
//! A cell's evaluation scores the same images under every condition (clean, each corruption ×
//! severity). [`Resampler`] draws B resamples of those images (with replacement) from one
//! seed and the image count, so resample `b` is the same multiset of images for every
//! condition. A task computes its metric on resample `b` of each condition (replicate `b`) and
//! stores the replicates in its [`MetricTable`]; a drop's replicate `b` is then computed from
//! the conditions' replicates `b` ([`MetricTable::intervals`]), which keeps the correlation
//! between clean and corrupted scores of the same images (a paired bootstrap). Intervals are
//! the 2.5 and 97.5 percentiles of the replicates (numpy's linear interpolation).

use std::collections::BTreeMap;

use rtb_corruption::{Category, Corruption};

use crate::{MetricTable, ResultsError};

/// Replicates drawn when a preset does not say (`[evaluation] bootstrap`).
pub const DEFAULT_REPLICATES: usize = 200;

/// SplitMix64 (Steele, Lea & Flood 2014): a small, well-mixed generator; one stream per
/// replicate, so a replicate does not depend on how many others are drawn.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` by the multiply-shift map (bias below 2⁻³² for any image count).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

/// The B paired resamples of `images` evaluation images drawn from `seed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resampler {
    /// The seed (a cell's evaluation seed).
    pub seed: u64,
    /// How many images each condition scores.
    pub images: usize,
    /// How many resamples (B).
    pub replicates: usize,
}

impl Resampler {
    /// B = `replicates` resamples of `images` images from `seed`.
    pub fn new(seed: u64, images: usize, replicates: usize) -> Self {
        Self {
            seed,
            images,
            replicates,
        }
    }

    /// The image indices of resample `b` (`images` draws with replacement, in draw order).
    pub fn indices(&self, b: usize) -> Vec<usize> {
        // Each replicate's stream starts from the seed and the replicate's number, passed
        // through the generator once so that neighbouring seeds give unrelated streams.
        let mut start = SplitMix64(self.seed ^ 0x5254_425f_424f_4f54); // "RTB_BOOT"
        let mut rng = SplitMix64(start.next() ^ (b as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next();
        (0..self.images).map(|_| rng.below(self.images)).collect()
    }

    /// How often each image occurs in resample `b` (its multiplicity; they sum to `images`).
    pub fn counts(&self, b: usize) -> Vec<u32> {
        let mut counts = vec![0u32; self.images];
        for i in self.indices(b) {
            counts[i] += 1;
        }
        counts
    }

    /// The multiplicities of every resample, `[b][image]`.
    pub fn all_counts(&self) -> Vec<Vec<u32>> {
        (0..self.replicates).map(|b| self.counts(b)).collect()
    }

    /// Replicates of the mean of per-image values (accuracy from per-image correctness):
    /// replicate `b` is the mean over resample `b`. An error if `values` does not hold one
    /// value per image.
    pub fn mean_replicates(&self, values: &[f64]) -> Result<Vec<f64>, ResultsError> {
        self.check_len("per-image values", values.len())?;
        Ok((0..self.replicates)
            .map(|b| {
                let counts = self.counts(b);
                let sum: f64 = counts
                    .iter()
                    .zip(values)
                    .map(|(&c, &v)| f64::from(c) * v)
                    .sum();
                sum / self.images as f64
            })
            .collect())
    }

    /// An error unless `len` equals the image count.
    pub fn check_len(&self, what: &str, len: usize) -> Result<(), ResultsError> {
        if len == self.images {
            Ok(())
        } else {
            Err(ResultsError::Incomplete {
                metric: "bootstrap replicates",
                message: format!("{len} {what} for {} images", self.images),
            })
        }
    }
}

/// A 95 % percentile interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// The 2.5th percentile.
    pub low: f64,
    /// The 97.5th percentile.
    pub high: f64,
}

impl Interval {
    /// The 2.5th and 97.5th percentiles of `values` (numpy's default linear interpolation),
    /// NaN values left out as numpy's `nanpercentile` does (a replicate whose metric is
    /// undefined: a resample with a clean metric of 0, or without any labelled class); NaN
    /// bounds if no value is left.
    pub fn percentile_95(values: &[f64]) -> Self {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        if sorted.is_empty() {
            return Self {
                low: f64::NAN,
                high: f64::NAN,
            };
        }
        sorted.sort_by(f64::total_cmp);
        Self {
            low: percentile(&sorted, 2.5),
            high: percentile(&sorted, 97.5),
        }
    }

    /// Half the interval's width: the "±" the report prints.
    pub fn half_width(&self) -> f64 {
        (self.high - self.low) / 2.0
    }

    /// The interval scaled by `factor` (e.g. 100 for percent).
    pub fn scaled(&self, factor: f64) -> Self {
        Self {
            low: self.low * factor,
            high: self.high * factor,
        }
    }
}

/// numpy.percentile with `method="linear"` on sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let position = q / 100.0 * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    let fraction = position - below as f64;
    sorted[below] + (sorted[above] - sorted[below]) * fraction
}

/// The bootstrap replicates of one metric table: replicate `b` of every condition is the
/// metric on resample `b` of the same [`Resampler`].
#[derive(Debug, Clone, PartialEq)]
pub struct Replicates {
    /// The seed the resamples were drawn from.
    pub seed: u64,
    /// The image count they resample.
    pub images: usize,
    /// P on clean data, one value per replicate.
    pub clean: Vec<f64>,
    /// P under each corruption, severities 1..5, one value per replicate.
    pub corrupted: BTreeMap<Corruption, [Vec<f64>; 5]>,
}

impl Replicates {
    /// Empty replicates for `resampler`'s resamples with the clean ones given.
    pub fn new(resampler: &Resampler, clean: Vec<f64>) -> Self {
        Self {
            seed: resampler.seed,
            images: resampler.images,
            clean,
            corrupted: BTreeMap::new(),
        }
    }

    /// B, the number of replicates.
    pub fn count(&self) -> usize {
        self.clean.len()
    }

    /// Replicate `b` as a plain table (the conditions' values on resample `b`).
    pub fn table(&self, b: usize) -> MetricTable {
        MetricTable {
            clean: self.clean[b],
            corrupted: self
                .corrupted
                .iter()
                .map(|(c, rows)| (*c, std::array::from_fn(|s| rows[s][b])))
                .collect(),
            replicates: None,
        }
    }

    /// An error unless every condition holds B replicates.
    pub fn check(&self) -> Result<(), ResultsError> {
        let b = self.count();
        for (corruption, rows) in &self.corrupted {
            if let Some(row) = rows.iter().find(|row| row.len() != b) {
                return Err(ResultsError::Incomplete {
                    metric: "bootstrap intervals",
                    message: format!(
                        "{} has {} replicates, clean has {b}",
                        corruption.name(),
                        row.len()
                    ),
                });
            }
        }
        Ok(())
    }
}

/// 95 % intervals of a table's metrics and drops, each from the paired replicates.
#[derive(Debug, Clone, PartialEq)]
pub struct RobustnessIntervals {
    /// B, the number of replicates.
    pub replicates: usize,
    /// P on clean data.
    pub clean: Interval,
    /// P under each corruption and severity (index `s − 1`).
    pub corrupted: BTreeMap<Corruption, [Interval; 5]>,
    /// mPC.
    pub mpc: Interval,
    /// rPC.
    pub rpc: Interval,
    /// 1 − rPC in percent.
    pub drop_percent: Interval,
    /// Each benchmark category's drop in percent.
    pub category_drop_percent: BTreeMap<Category, Interval>,
}

impl MetricTable {
    /// The 95 % intervals of P, mPC, rPC and the drops from the table's replicates; `None`
    /// when the table has none (files written before rtb stored them). Replicate `b` of a
    /// drop comes from replicate `b` of every condition ([`MetricTable::robustness`] on
    /// [`Replicates::table`]). An error if the replicates are inconsistent or a benchmark
    /// corruption is missing; replicates whose value is undefined (NaN, or a drop of a
    /// resample whose clean metric is 0) are left out of the percentiles.
    pub fn intervals(&self) -> Result<Option<RobustnessIntervals>, ResultsError> {
        let Some(replicates) = &self.replicates else {
            return Ok(None);
        };
        replicates.check()?;
        // A clean metric of 0 is no error here: P's interval exists, the drops' are NaN.
        let missing: Vec<&str> = Corruption::BENCHMARK
            .iter()
            .filter(|c| !replicates.corrupted.contains_key(c) || !self.corrupted.contains_key(c))
            .map(|c| c.name())
            .collect();
        if !missing.is_empty() {
            return Err(ResultsError::Incomplete {
                metric: "bootstrap intervals",
                message: format!("no replicates for {}", missing.join(", ")),
            });
        }
        let count = replicates.count();
        let mut mpc = Vec::with_capacity(count);
        let mut rpc = Vec::with_capacity(count);
        let mut drop = Vec::with_capacity(count);
        let mut categories: BTreeMap<Category, Vec<f64>> = BTreeMap::new();
        for b in 0..count {
            match replicates.table(b).robustness() {
                Ok(r) => {
                    mpc.push(r.mpc);
                    rpc.push(r.rpc);
                    drop.push(r.drop_percent);
                    for (category, value) in r.category_drop_percent {
                        categories.entry(category).or_default().push(value);
                    }
                }
                // Every condition is present, so only a resample whose clean metric is 0 lands
                // here: it has no drop, and the drop's interval is undefined.
                Err(_) => {
                    let t = replicates.table(b);
                    mpc.push(mean_benchmark(&t));
                    rpc.push(f64::NAN);
                    drop.push(f64::NAN);
                    for category in Category::BENCHMARK {
                        categories.entry(category).or_default().push(f64::NAN);
                    }
                }
            }
        }
        Ok(Some(RobustnessIntervals {
            replicates: count,
            clean: Interval::percentile_95(&replicates.clean),
            corrupted: replicates
                .corrupted
                .iter()
                .map(|(c, rows)| {
                    (
                        *c,
                        std::array::from_fn(|s| Interval::percentile_95(&rows[s])),
                    )
                })
                .collect(),
            mpc: Interval::percentile_95(&mpc),
            rpc: Interval::percentile_95(&rpc),
            drop_percent: Interval::percentile_95(&drop),
            category_drop_percent: categories
                .into_iter()
                .map(|(c, values)| (c, Interval::percentile_95(&values)))
                .collect(),
        }))
    }
}

fn mean_benchmark(table: &MetricTable) -> f64 {
    let values: Vec<f64> = Corruption::BENCHMARK
        .iter()
        .flat_map(|c| table.corrupted[c])
        .collect();
    values.iter().sum::<f64>() / values.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resamples_are_seeded_and_paired() {
        let r = Resampler::new(7, 50, 20);
        assert_eq!(r.indices(3), r.indices(3));
        assert_eq!(Resampler::new(7, 50, 5).indices(3), r.indices(3));
        assert_ne!(r.indices(3), r.indices(4));
        assert_ne!(Resampler::new(8, 50, 20).indices(3), r.indices(3));
        for b in 0..20 {
            let counts = r.counts(b);
            assert_eq!(counts.iter().sum::<u32>(), 50);
            assert!(r.indices(b).iter().all(|&i| i < 50));
        }
        // Over many draws every image is drawn about equally often.
        let big = Resampler::new(1, 10, 2000);
        let mut total = [0u32; 10];
        for counts in big.all_counts() {
            for (t, c) in total.iter_mut().zip(counts) {
                *t += c;
            }
        }
        for t in total {
            assert!((1800..2200).contains(&t), "{total:?}");
        }
    }

    #[test]
    fn mean_replicates_equal_the_mean_over_the_resampled_list() {
        let r = Resampler::new(3, 9, 6);
        let values: Vec<f64> = (0..9).map(|i| f64::from(i % 2)).collect();
        let reps = r.mean_replicates(&values).unwrap();
        for (b, rep) in reps.iter().enumerate() {
            let direct: f64 =
                r.indices(b).iter().map(|&i| values[i]).sum::<f64>() / values.len() as f64;
            assert!((rep - direct).abs() < 1e-12);
        }
        assert!(r.mean_replicates(&values[..4]).is_err());
    }

    #[test]
    fn percentiles_match_numpy_linear() {
        // np.percentile(np.arange(11.0), [2.5, 97.5]) == [0.25, 9.75]
        let values: Vec<f64> = (0..11).rev().map(f64::from).collect();
        let i = Interval::percentile_95(&values);
        assert!((i.low - 0.25).abs() < 1e-12 && (i.high - 9.75).abs() < 1e-12);
        assert!((i.half_width() - 4.75).abs() < 1e-12);
        // np.percentile([1.0, 4.0, 2.0], [2.5, 97.5]) == [1.05, 3.9]
        let i = Interval::percentile_95(&[1.0, 4.0, 2.0]);
        assert!((i.low - 1.05).abs() < 1e-12 && (i.high - 3.9).abs() < 1e-12);
        assert!(Interval::percentile_95(&[]).low.is_nan());
        // np.nanpercentile([1.0, nan, 3.0], [2.5, 97.5]) == [1.05, 2.95]
        let i = Interval::percentile_95(&[1.0, f64::NAN, 3.0]);
        assert!((i.low - 1.05).abs() < 1e-12 && (i.high - 2.95).abs() < 1e-12);
        assert!(Interval::percentile_95(&[f64::NAN]).high.is_nan());
    }

    /// A table whose conditions score per-image correctness vectors, with replicates.
    fn table_from_images(
        resampler: &Resampler,
        clean: &[f64],
        corrupted: impl Fn(Corruption, usize) -> Vec<f64>,
    ) -> MetricTable {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let mut table = MetricTable {
            clean: mean(clean),
            corrupted: BTreeMap::new(),
            replicates: None,
        };
        let mut replicates = Replicates::new(resampler, resampler.mean_replicates(clean).unwrap());
        for c in Corruption::BENCHMARK {
            let rows: [Vec<f64>; 5] = std::array::from_fn(|s| corrupted(c, s));
            table
                .corrupted
                .insert(c, std::array::from_fn(|s| mean(&rows[s])));
            replicates.corrupted.insert(
                c,
                std::array::from_fn(|s| resampler.mean_replicates(&rows[s]).unwrap()),
            );
        }
        table.replicates = Some(replicates);
        table
    }

    #[test]
    fn paired_drop_intervals_are_narrow_when_conditions_agree_per_image() {
        // Every corruption gets exactly the clean images right except image 0: the drop is
        // nearly constant over resamples, while clean accuracy itself varies a lot. A paired
        // bootstrap sees that; resampling the conditions independently would not.
        let n = 40;
        let r = Resampler::new(11, n, 200);
        let clean: Vec<f64> = (0..n).map(|i| f64::from(u8::from(i % 2 == 0))).collect();
        let corrupted = |_, _| {
            let mut v = clean.clone();
            v[0] = 0.0;
            v
        };
        let table = table_from_images(&r, &clean, corrupted);
        let intervals = table.intervals().unwrap().unwrap();
        assert_eq!(intervals.replicates, 200);
        assert!(intervals.clean.half_width() > 0.1, "{:?}", intervals.clean);
        // Drop = 1/(#correct in resample): image 0 drawn k times of ~20 correct.
        let point = table.robustness().unwrap().drop_percent;
        assert!(intervals.drop_percent.low <= point && point <= intervals.drop_percent.high);
        assert!(
            intervals.drop_percent.high < 25.0,
            "{:?}",
            intervals.drop_percent
        );
        for b in 0..5 {
            let direct = table
                .replicates
                .as_ref()
                .unwrap()
                .table(b)
                .robustness()
                .unwrap();
            // Replicate b of the drop is 1 − (correct − k_b)/correct for k_b copies of image 0.
            let counts = r.counts(b);
            let correct: u32 = (0..n).filter(|i| i % 2 == 0).map(|i| counts[i]).sum();
            let expected = 100.0 * f64::from(counts[0]) / f64::from(correct);
            assert!((direct.drop_percent - expected).abs() < 1e-9);
        }
    }

    #[test]
    fn tables_without_replicates_have_no_intervals_and_bad_ones_are_errors() {
        let r = Resampler::new(0, 4, 3);
        let mut table =
            table_from_images(&r, &[1.0, 1.0, 0.0, 1.0], |_, _| vec![1.0, 0.0, 0.0, 1.0]);
        assert!(table.intervals().unwrap().is_some());
        table
            .replicates
            .as_mut()
            .unwrap()
            .corrupted
            .get_mut(&Corruption::Fog)
            .unwrap()[2]
            .pop();
        let err = table.intervals().unwrap_err().to_string();
        assert!(err.contains("fog"), "{err}");
        table.replicates = None;
        assert_eq!(table.intervals().unwrap(), None);

        // Nothing right on clean data: P's interval is [0, 0], the drops are undefined.
        let zero = table_from_images(&r, &[0.0; 4], |_, _| vec![0.0; 4]);
        let intervals = zero.intervals().unwrap().unwrap();
        assert_eq!((intervals.clean.low, intervals.clean.high), (0.0, 0.0));
        assert!(intervals.drop_percent.low.is_nan());
    }
}
