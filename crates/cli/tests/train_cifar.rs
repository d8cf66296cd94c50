//! `rtb train cifar` and `rtb eval cifar` on a tiny synthetic CIFAR-format folder.

use std::path::Path;
use std::process::Command;

use rtb_cifar::{CifarImages, IMAGE_BYTES, encode_batch};

fn rtb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rtb"))
}

/// Class = which third of the image is bright.
fn images(n: usize, offset: usize) -> CifarImages {
    let mut out = CifarImages::default();
    for i in 0..n {
        let label = (i + offset) % 3;
        let mut rgb = vec![40u8; IMAGE_BYTES];
        for y in 0..32 {
            for x in 0..32 {
                if x / 11 == label {
                    let p = (y * 32 + x) * 3;
                    rgb[p..p + 3].copy_from_slice(&[200, 180, (i * 7 % 50) as u8]);
                }
            }
        }
        out.pixels.extend(rgb);
        out.labels.push(label as u8);
    }
    out
}

fn write_data(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, name) in rtb_cifar::TRAIN_FILES.iter().enumerate() {
        std::fs::write(dir.join(name), encode_batch(&images(8, i))).unwrap();
    }
    std::fs::write(dir.join(rtb_cifar::TEST_FILE), encode_batch(&images(9, 0))).unwrap();
    std::fs::write(dir.join(rtb_cifar::META_FILE), "left\nmiddle\nright\n").unwrap();
}

#[test]
fn train_then_resume_then_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_data(&data);
    let run = dir.path().join("runs/mini/tiny/cifar10/full");
    let train = |extra: &[&str]| {
        let mut cmd = rtb();
        cmd.args([
            "-q",
            "train",
            "cifar",
            "--backbone",
            "resnet_tiny",
            "--regime",
            "full",
        ])
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&run)
        .args([
            "--epochs",
            "2",
            "--batch",
            "8",
            "--image-size",
            "32",
            "--lr",
            "0.05",
            "--workers",
            "1",
            "--preset",
            "mini",
            "--name",
            "tiny",
            "--seed",
            "3",
        ])
        .args(extra);
        cmd.output().unwrap()
    };
    let out = train(&["--max-iters", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("trained 3 iterations"));
    let config = std::fs::read_to_string(run.join("config.json")).unwrap();
    assert!(config.contains("\"seed\": 3") && config.contains("\"family\": \"resnet\""));
    // Same flags without the stop: resumes and finishes 2 epochs × 5 batches.
    let out = train(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("trained 10 iterations"));
    // Other settings in the same directory are refused.
    let out = train(&["--no-augment"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("augment"));

    let out = rtb()
        .args(["-q", "eval", "cifar", "--run"])
        .arg(&run)
        .args([
            "--corruptions",
            "contrast,brightness",
            "--on-the-fly",
            "--batch",
            "4",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("mini/tiny/cifar10/full") && stdout.contains("contrast"),
        "{stdout}"
    );
    let metrics = rtb_results::CellMetrics::read(&run.join("metrics.json")).unwrap();
    assert_eq!(metrics.primary.corrupted.len(), 2);
    // The run directory follows the results-store layout, so the store finds it.
    let all = rtb_results::CellMetrics::read_all(&dir.path().join("runs")).unwrap();
    assert_eq!(all.len(), 1);
}

#[test]
fn bad_arguments_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = rtb()
        .args([
            "train",
            "cifar",
            "--backbone",
            "vgg16",
            "--regime",
            "full",
            "--data",
        ])
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("resnet50"));
    let out = rtb()
        .args([
            "train",
            "cifar",
            "--backbone",
            "resnet_tiny",
            "--regime",
            "full",
            "--data",
        ])
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("batches.meta.txt"));
    let out = rtb()
        .args(["eval", "cifar", "--corruptions", "rain", "--run"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rain"));
}
