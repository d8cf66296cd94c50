//! CI runs the example end to end: it must build and work against the library API alone.

use std::process::Command;

#[test]
fn the_example_registers_trains_evaluates_and_reports() {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_custom-backbone"))
        .arg(out.path())
        .env("NO_COLOR", "1")
        .status()
        .unwrap();
    assert!(status.success());
    let cell = out
        .path()
        .join("runs/custom-example/tinyconv/cifar10/full/metrics.json");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cell).unwrap()).unwrap();
    let text = metrics.to_string();
    assert!(text.contains("gaussian_noise"), "{text}");
    let config = std::fs::read_to_string(
        out.path()
            .join("runs/custom-example/tinyconv/cifar10/full/config.json"),
    )
    .unwrap();
    assert!(config.contains("\"family\": \"tinyconv\""), "{config}");
    let report = std::fs::read_to_string(out.path().join("report/index.md")).unwrap();
    assert!(report.contains("tinyconv"), "{report}");
}
