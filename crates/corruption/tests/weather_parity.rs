//! fog, snow and spatter against the references (tests/golden/weather.py → weather.json).
//!
//! For every case: `RandomState::new(seed)` and our corruption must give the bytes of
//! `np.random.seed(seed)` followed by the reference call, compared through their sha256. No
//! case needs a tolerance: the ImageNet-C / CIFAR-10-C snow, whose layer ImageMagick 6 blurs,
//! is exact too (the port of `MotionBlurImage` keeps its Q16 quantum rounding).

use std::path::Path;

use image::RgbImage;
use rtb_corruption::{Corruption, Flavor, RandomState, Severity, corrupt};
use serde_json::Value;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

fn load_png(path: &Path) -> RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

struct Case {
    flavor: Flavor,
    corruption: Corruption,
    input: String,
    severity: Severity,
    seed: u32,
    sha256: String,
    mean: Vec<f64>,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(format!("{GOLDEN}/weather.json")).unwrap();
    let golden: Value = serde_json::from_str(&text).unwrap();
    golden["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            flavor: c["flavor"].as_str().unwrap().parse().unwrap(),
            corruption: c["corruption"].as_str().unwrap().parse().unwrap(),
            input: c["input"].as_str().unwrap().to_string(),
            severity: Severity::new(c["severity"].as_u64().unwrap() as u8).unwrap(),
            seed: c["seed"].as_u64().unwrap() as u32,
            sha256: c["sha256"].as_str().unwrap().to_string(),
            mean: c["mean"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect(),
        })
        .collect()
}

fn run(case: &Case) -> RgbImage {
    let input = load_png(&Path::new(GOLDEN).join(format!("inputs/{}.png", case.input)));
    let mut rng = RandomState::new(case.seed);
    corrupt(
        &input,
        case.corruption,
        case.severity,
        case.flavor,
        &mut rng,
    )
    .unwrap()
}

fn channel_means(image: &RgbImage) -> Vec<f64> {
    let n = (image.width() * image.height()) as f64;
    (0..3)
        .map(|c| image.pixels().map(|p| p.0[c] as f64).sum::<f64>() / n)
        .collect()
}

fn label(case: &Case) -> String {
    format!(
        "{} {} {} severity {} seed {}",
        case.flavor, case.corruption, case.input, case.severity, case.seed
    )
}

/// Exact cases of one corruption: every one must equal the reference byte for byte.
fn check_exact(corruption: Corruption) {
    let all = cases();
    let selected: Vec<&Case> = all.iter().filter(|c| c.corruption == corruption).collect();
    assert!(!selected.is_empty());
    let mut failures = Vec::new();
    for case in selected {
        let out = run(case);
        let digest = rtb_fetch::sha256_hex(out.as_raw());
        if digest != case.sha256 {
            failures.push(format!(
                "{}: means {:?}, reference {:?}",
                label(case),
                channel_means(&out),
                case.mean
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fog_equals_the_references() {
    check_exact(Corruption::Fog);
}

#[test]
fn spatter_equals_the_references() {
    check_exact(Corruption::Spatter);
}

#[test]
fn snow_equals_the_references() {
    check_exact(Corruption::Snow);
}
