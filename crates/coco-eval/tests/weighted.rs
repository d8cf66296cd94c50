//! `Evaluation::accumulate_weighted` equals evaluating a dataset in which every image is
//! copied as often as its weight: the golden cases' ground truth and detections are expanded
//! here (copy `c` of image `id` becomes image `1000·id + c`, so copies sort next to each
//! other), evaluated and accumulated directly, and compared bit for bit with the weighted
//! accumulation of the original. This is how a bootstrap replicate of box AP is computed.

use std::path::PathBuf;

use rtb_coco_eval::{CocoEval, CocoGt, Detections, IouType, Params};
use serde_json::Value;

fn case(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/cases")
        .join(name)
}

fn read(path: PathBuf) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Weights 0..=3 from a small LCG (seeded), one per image.
fn weights(n: usize, seed: u64) -> Vec<u32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % 4) as u32
        })
        .collect()
}

/// The dataset with annotation ids renumbered 1, 2, … (pycocotools treats id 0 and repeated
/// ids specially — a repeated id resolves to its last annotation, possibly in another image —
/// and copies could not keep those quirks), and its expansion by `weights` over the sorted
/// image ids.
fn datasets(gt: &Value, dt: &Value, weights: &[u32]) -> ((Value, Value), (Value, Value)) {
    let mut original = gt.clone();
    for (index, ann) in original["annotations"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        ann["id"] = (index as i64 + 1).into();
    }
    let mut ids: Vec<i64> = gt["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    let weight = |id: i64| weights[ids.binary_search(&id).unwrap()];
    let mut expanded = original.clone();
    let copies = |items: &Value, image_key: &str, id_key: Option<&str>| -> Value {
        let mut out = Vec::new();
        for item in items.as_array().unwrap() {
            let image = item[image_key].as_i64().unwrap();
            for c in 0..weight(image) {
                let mut copy = item.clone();
                copy[image_key] = (1000 * image + i64::from(c)).into();
                if let Some(key) = id_key {
                    copy[key] = (1000 * item[key].as_i64().unwrap() + i64::from(c)).into();
                }
                out.push(copy);
            }
        }
        Value::Array(out)
    };
    expanded["images"] = copies(&original["images"], "id", None);
    expanded["annotations"] = copies(&original["annotations"], "image_id", Some("id"));
    // Detections: copies of an image's detections keep their order within the image.
    let expanded_dt = copies(dt, "image_id", None);
    ((original, dt.clone()), (expanded, expanded_dt))
}

fn check(name: &str, params: &Params, seed: u64) {
    let gt = read(case(name).join("gt.json"));
    let dt = read(case(name).join("dt.json"));
    let n = gt["images"].as_array().unwrap().len();
    let weights = weights(n, seed);
    assert!(
        weights.contains(&0) && weights.iter().any(|&w| w > 1),
        "{weights:?}"
    );
    let ((gt, dt), (big_gt, big_dt)) = datasets(&gt, &dt, &weights);
    let load = |gt: &Value, dt: &Value| {
        let gt = CocoGt::from_slice(&serde_json::to_vec(gt).unwrap(), "gt.json").unwrap();
        let dt = Detections::from_slice(&serde_json::to_vec(dt).unwrap(), "dt.json", &gt).unwrap();
        (gt, dt)
    };
    let (gt, dt) = load(&gt, &dt);
    let (big_gt, big_dt) = load(&big_gt, &big_dt);
    let evaluation = CocoEval::new(&gt, &dt, params.clone()).evaluate().unwrap();
    let weighted = evaluation.accumulate_weighted(&weights).unwrap();
    let direct = CocoEval::new(&big_gt, &big_dt, params.clone())
        .evaluate()
        .unwrap()
        .accumulate();
    assert_eq!(weighted.shape(), direct.shape(), "{name}");
    for (what, ours, theirs) in [
        ("precision", weighted.precision(), direct.precision()),
        ("recall", weighted.recall(), direct.recall()),
        ("scores", weighted.scores(), direct.scores()),
    ] {
        let differ = ours
            .iter()
            .zip(theirs)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(differ, 0, "{name}: {what} differs in {differ} cells");
    }
    let stats = weighted.summarize().unwrap().stats;
    assert_eq!(stats, direct.summarize().unwrap().stats, "{name}");
    assert_eq!(
        evaluation
            .weighted_stats(&[weights.clone(), vec![1; n]])
            .unwrap(),
        vec![stats, evaluation.accumulate().summarize().unwrap().stats],
        "{name}"
    );
}

#[test]
fn weighted_accumulation_equals_evaluating_the_expanded_dataset() {
    for seed in [1, 2, 3] {
        check("bbox_default", &Params::new(IouType::Bbox), seed);
        check("segm_rle_results", &Params::new(IouType::Segm), seed);
        let mut pooled = Params::new(IouType::Bbox);
        pooled.use_cats = false;
        check("bbox_pooled", &pooled, seed);
    }
}

#[test]
fn unit_weights_equal_accumulate_and_a_wrong_count_is_an_error() {
    let gt = CocoGt::from_path(case("bbox_default").join("gt.json")).unwrap();
    let dt = Detections::from_path(case("bbox_default").join("dt.json"), &gt).unwrap();
    let evaluation = CocoEval::new(&gt, &dt, Params::new(IouType::Bbox))
        .evaluate()
        .unwrap();
    let n = gt.images().len();
    let ones = evaluation.accumulate_weighted(&vec![1; n]).unwrap();
    assert_eq!(ones.precision(), evaluation.accumulate().precision());
    let err = evaluation
        .accumulate_weighted(&vec![1; n - 1])
        .unwrap_err()
        .to_string();
    assert!(err.contains("image weights"), "{err}");
}
