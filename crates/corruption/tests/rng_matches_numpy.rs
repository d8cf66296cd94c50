//! `RandomState` against numpy 1.26's legacy generator (tests/golden/rng.py → rng.json).

use rtb_corruption::RandomState;
use serde_json::Value;

fn as_f64s(values: &Value) -> Vec<f64> {
    values
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[test]
fn every_draw_equals_numpy() {
    let golden: Value = serde_json::from_str(include_str!("golden/rng.json")).unwrap();
    for case in golden["cases"].as_array().unwrap() {
        let seed = case["seed"].as_u64().unwrap() as u32;
        let mut rng = RandomState::new(seed);
        for call in case["calls"].as_array().unwrap() {
            let name = call["call"].as_str().unwrap();
            let args = &call["args"];
            let expected = if name == "choice" {
                Vec::new()
            } else {
                as_f64s(&call["values"])
            };
            let n_values = call["values"].as_array().unwrap().len();
            let got: Vec<f64> = match name {
                "random_sample" => (0..n_values).map(|_| rng.random_sample()).collect(),
                "normal" => {
                    let (loc, scale) = (args[0].as_f64().unwrap(), args[1].as_f64().unwrap());
                    (0..n_values).map(|_| rng.normal(loc, scale)).collect()
                }
                "uniform" => {
                    let (low, high) = (args[0].as_f64().unwrap(), args[1].as_f64().unwrap());
                    (0..n_values).map(|_| rng.uniform(low, high)).collect()
                }
                "randint" | "randint_scalar" => {
                    let (low, high) = (args[0].as_i64().unwrap(), args[1].as_i64().unwrap());
                    (0..n_values)
                        .map(|_| rng.randint(low, high) as f64)
                        .collect()
                }
                "poisson" => as_f64s(args)
                    .into_iter()
                    .map(|lam| rng.poisson(lam) as f64)
                    .collect(),
                "choice" => {
                    let p = args[0].as_f64().unwrap();
                    (0..n_values)
                        .map(|_| if rng.bernoulli_choice(p) { 1.0 } else { 0.0 })
                        .collect()
                }
                other => panic!("unknown call {other} in rng.json"),
            };
            // Booleans arrive as JSON true/false.
            let expected: Vec<f64> = if name == "choice" {
                call["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| if v.as_bool().unwrap() { 1.0 } else { 0.0 })
                    .collect()
            } else {
                expected
            };
            assert_eq!(got, expected, "seed {seed}, call {name}({args})");
        }
    }
}
