//! `rtb device-check --device cpu --size small`: the GPU machine's check runs end to end on the
//! CPU (every op, every task's model, the JSON report), so it is known to work up to the first
//! CUDA call before a GPU is ever lent.

use std::process::Command;

#[test]
fn the_small_cpu_device_check_passes_and_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_rtb"))
        .args(["-q", "device-check", "--device", "cpu", "--size", "small"])
        .args(["--iters", "1", "--output"])
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
    assert!(ops.len() >= 19, "{} ops", ops.len());
    for op in ops {
        assert_eq!(op["pass"], true, "{op}");
        // CPU against CPU: the same kernels on the same inputs.
        assert_eq!(op["max_rel_diff"], 0.0, "{op}");
        assert!(!op["compared"].as_array().unwrap().is_empty(), "{op}");
    }
    let models = report["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "cifar resnet_tiny",
            "cifar swin_tiny",
            "mask r-cnn resnet_tiny",
            "upernet resnet_tiny"
        ]
    );
    for model in models {
        assert_eq!(model["pass"], true, "{model}");
        let loss = model["cpu_loss"].as_f64().unwrap();
        assert!(loss.is_finite() && loss > 0.0, "{model}");
        assert_eq!(model["cpu_loss"], model["device_loss"], "{model}");
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

#[test]
fn a_cuda_device_without_the_feature_or_a_gpu_is_an_error_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rtb"))
        .args([
            "-q",
            "device-check",
            "--device",
            "cuda",
            "--only",
            "ops",
            "--output",
        ])
        .arg(dir.path().join("report.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot open cuda"), "{stderr}");
    assert!(!dir.path().join("report.json").exists());
}
