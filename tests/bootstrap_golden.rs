//! rtb-results' paired bootstrap equals an independent numpy implementation
//! (`golden/make_bootstrap_golden.py`): the resample indices of rtb's documented generator,
//! and the 95 % intervals of clean top-1, mPC, rPC, the drop and each category's drop, each
//! from the conditions' replicate b, on per-image correctness of 37 images under clean data
//! and the 15 benchmark corruptions × 5 severities.

use std::collections::BTreeMap;

use rtb_corruption::{Category, Corruption};
use rtb_results::{Interval, MetricTable, Replicates, Resampler};
use serde_json::Value;

fn values(json: &Value) -> Vec<f64> {
    json.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn close(ours: Interval, golden: &Value, what: &str) {
    let [low, high] = [0, 1].map(|i| golden[i].as_f64().unwrap());
    // Means summed in another order than numpy's pairwise sums: a few ulps.
    let tolerance = 1e-12 * (1.0 + low.abs().max(high.abs()));
    assert!(
        (ours.low - low).abs() <= tolerance && (ours.high - high).abs() <= tolerance,
        "{what}: rtb {ours:?}, numpy [{low}, {high}]"
    );
}

#[test]
fn paired_bootstrap_intervals_equal_numpys() {
    let path = rtb_tests::repo_root().join("tests/golden/bootstrap_golden.json");
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let count = |key: &str| golden[key].as_u64().unwrap() as usize;
    let resampler = Resampler::new(
        golden["seed"].as_u64().unwrap(),
        count("images"),
        count("replicates"),
    );
    let first: Vec<usize> = golden["first_indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(resampler.indices(0)[..first.len()], first[..]);

    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let clean = values(&golden["clean"]);
    let mut table = MetricTable {
        clean: mean(&clean),
        corrupted: BTreeMap::new(),
        replicates: None,
    };
    let mut replicates = Replicates::new(&resampler, resampler.mean_replicates(&clean).unwrap());
    for (name, rows) in golden["corrupted"].as_object().unwrap() {
        let corruption: Corruption = name.parse().unwrap();
        let rows: Vec<Vec<f64>> = rows.as_array().unwrap().iter().map(values).collect();
        table
            .corrupted
            .insert(corruption, std::array::from_fn(|s| mean(&rows[s])));
        replicates.corrupted.insert(
            corruption,
            std::array::from_fn(|s| resampler.mean_replicates(&rows[s]).unwrap()),
        );
    }
    assert_eq!(table.corrupted.len(), 15);
    table.replicates = Some(replicates);

    let intervals = table.intervals().unwrap().unwrap();
    let expected = &golden["intervals"];
    close(intervals.clean, &expected["clean"], "clean");
    close(intervals.mpc, &expected["mpc"], "mPC");
    close(intervals.rpc, &expected["rpc"], "rPC");
    close(intervals.drop_percent, &expected["drop"], "drop");
    for category in Category::BENCHMARK {
        close(
            intervals.category_drop_percent[&category],
            &expected[category.name()],
            category.name(),
        );
    }
    // The point estimate lies inside its interval, and pairing makes rPC's interval narrower
    // (relatively) than clean top-1's: the corrupted scores move with the clean ones.
    let robustness = table.robustness().unwrap();
    assert!(intervals.drop_percent.low <= robustness.drop_percent);
    assert!(robustness.drop_percent <= intervals.drop_percent.high);
    assert!(
        intervals.rpc.half_width() / robustness.rpc < intervals.clean.half_width() / table.clean
    );
}
