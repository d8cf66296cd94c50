//! `rtb device-check --device cpu --size small --precision f32,f16`: the GPU machine's check
//! runs end to end on the CPU (every op, every task's model, the JSON report; in f32 and under
//! f16 autocast, the CPU's stand-in for bf16), so it is known to work up to the first CUDA call
//! before a GPU is ever lent.

use std::process::Command;

#[test]
fn the_small_cpu_device_check_passes_and_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_rtb"))
        .args(["-q", "device-check", "--device", "cpu", "--size", "small"])
        .args(["--precision", "f32,f16", "--iters", "1", "--output"])
        .arg(&output)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("PASS"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    assert_eq!(report["device"], "cpu");
    assert_eq!(report["pass"], true);
    let ops = report["ops"].as_array().unwrap();
    let (f32_ops, half_ops): (Vec<_>, Vec<_>) = ops.iter().partition(|op| op["dtype"] == "f32");
    assert!(f32_ops.len() >= 19, "{} ops", f32_ops.len());
    // Every op but NMS and gradient clipping (boxes and gradients stay f32) under autocast.
    assert_eq!(half_ops.len(), f32_ops.len() - 2);
    for op in ops {
        assert_eq!(op["pass"], true, "{op}");
        assert!(!op["compared"].as_array().unwrap().is_empty(), "{op}");
        let diff = op["max_rel_diff"].as_f64().unwrap();
        if op["dtype"] == "f32" {
            // CPU against CPU: the same kernels on the same inputs.
            assert_eq!(diff, 0.0, "{op}");
        } else {
            // f16 rounding, and nothing that is not rounding.
            assert!(diff > 0.0 && diff < 1e-2, "{op}");
        }
    }
    let models = report["models"].as_array().unwrap();
    let names: Vec<String> = models
        .iter()
        .map(|m| {
            format!(
                "{} {}",
                m["name"].as_str().unwrap(),
                m["precision"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "cifar resnet_tiny f32",
            "cifar resnet_tiny f16",
            "cifar swin_tiny f32",
            "cifar swin_tiny f16",
            "mask r-cnn resnet_tiny f32",
            "mask r-cnn resnet_tiny f16",
            "upernet resnet_tiny f32",
            "upernet resnet_tiny f16"
        ]
    );
    for model in models {
        assert_eq!(model["pass"], true, "{model}");
        let loss = model["cpu_loss"].as_f64().unwrap();
        assert!(loss.is_finite() && loss > 0.0, "{model}");
        let cosine = model["grad_cosine"].as_f64().unwrap();
        if model["precision"] == "f32" {
            assert_eq!(model["cpu_loss"], model["device_loss"], "{model}");
            assert!((cosine - 1.0).abs() < 1e-12, "{model}");
        } else {
            // Autocast differs from f32 by rounding only (measured: losses within 6e-4, the
            // gradients' cosine 0.97 to 1.0).
            assert!(model["loss_rel_diff"].as_f64().unwrap() < 2e-3, "{model}");
            assert!(cosine > 0.95, "{model}");
        }
        assert!(model["device_grad_norm"].as_f64().unwrap() > 0.0, "{model}");
        assert!(
            model["train_images_per_s"].as_f64().unwrap() > 0.0,
            "{model}"
        );
        assert!(
            model["eval_images_per_s"].as_f64().unwrap() > 0.0,
            "{model}"
        );
    }
}

/// Runs `rtb -q device-check ARGS --only ops --output <tmp>/report.json`, which must fail
/// before writing the report; returns its stderr.
fn refused(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rtb"))
        .args(["-q", "device-check"])
        .args(args)
        .args(["--only", "ops", "--output"])
        .arg(dir.path().join("report.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!dir.path().join("report.json").exists());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_cuda_device_without_the_feature_or_a_gpu_is_an_error_that_says_so() {
    let stderr = refused(&["--device", "cuda"]);
    assert!(stderr.contains("cannot open cuda"), "{stderr}");
}

#[test]
fn bf16_on_the_cpu_is_an_error_that_names_the_stand_in() {
    let stderr = refused(&["--device", "cpu", "--precision", "bf16"]);
    assert!(stderr.contains("bf16 needs a CUDA device"), "{stderr}");
    assert!(stderr.contains("--precision f16"), "{stderr}");
}
