//! `rtb corrupt` and `rtb corrupt dataset` as a user runs them: outputs equal the library's,
//! seeds mean what they say, bad input gives clear errors, datasets resume and report
//! unreadable files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::RgbImage;
use rtb_corruption::{Corruption, Corruptor, Flavor, RandomState, Severity, image_seed};

fn rtb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rtb"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("rtb runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn test_image(width: u32, height: u32, salt: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            ((x * 7 + y * 3 + salt) % 256) as u8,
            ((x * y + salt * 5) % 256) as u8,
            ((x + 2 * y * y) % 256) as u8,
        ])
    })
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn library(
    image: &RgbImage,
    corruption: Corruption,
    severity: u8,
    flavor: Flavor,
    seed: u32,
) -> RgbImage {
    Corruptor::new(flavor)
        .corrupt(
            image,
            corruption,
            Severity::new(severity).unwrap(),
            &mut RandomState::new(seed),
        )
        .unwrap()
}

#[test]
fn single_image_equals_the_library_with_the_numpy_seed() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.png");
    let image = test_image(40, 33, 1);
    image.save(&input).unwrap();
    for (name, corruption, flavor, seed) in [
        (
            "gaussian_noise",
            Corruption::GaussianNoise,
            Flavor::ImageCorruptions,
            5u32,
        ),
        ("contrast", Corruption::Contrast, Flavor::CifarC, 0),
        ("pixelate", Corruption::Pixelate, Flavor::ImageNetC, 0),
        (
            "shot_noise",
            Corruption::ShotNoise,
            Flavor::ImageCorruptions,
            4_000_000_000,
        ),
    ] {
        let output = dir.path().join(format!("{name}.png"));
        let seed_text = seed.to_string();
        let out = rtb(&[
            "corrupt",
            "--corruption",
            name,
            "--severity",
            "3",
            "--flavor",
            flavor.name(),
            "--seed",
            &seed_text,
            arg(&input),
            arg(&output),
        ]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let written = image::open(&output).unwrap().to_rgb8();
        assert_eq!(
            written,
            library(&image, corruption, 3, flavor, seed),
            "{name}"
        );
    }
}

#[test]
fn grey_input_is_corrupted_as_rgb() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("grey.png");
    let grey = image::GrayImage::from_fn(20, 10, |x, y| image::Luma([(x * 10 + y) as u8]));
    grey.save(&input).unwrap();
    let output = dir.path().join("out.png");
    let out = rtb(&[
        "corrupt",
        "--corruption",
        "brightness",
        "--severity",
        "2",
        arg(&input),
        arg(&output),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rgb = image::DynamicImage::ImageLuma8(grey).to_rgb8();
    let expected = library(&rgb, Corruption::Brightness, 2, Flavor::ImageCorruptions, 0);
    assert_eq!(image::open(&output).unwrap().to_rgb8(), expected);
}

#[test]
fn bad_arguments_and_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.png");
    test_image(8, 8, 0).save(&input).unwrap();
    let output = dir.path().join("out.png");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--corruption", "haze", "--severity", "1"],
            "jpeg_compression",
        ),
        (
            vec!["--corruption", "fog", "--severity", "6"],
            "severities are the integers 1 to 5",
        ),
        (
            vec![
                "--corruption",
                "fog",
                "--severity",
                "1",
                "--flavor",
                "imagenet",
            ],
            "cifar-c",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["corrupt"];
        args.extend(extra);
        args.extend([arg(&input), arg(&output)]);
        let out = rtb(&args);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("panicked"));
    }
    // A missing and a truncated input name the file.
    let truncated = dir.path().join("truncated.png");
    let bytes = std::fs::read(&input).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    for path in [dir.path().join("missing.png"), truncated] {
        let out = rtb(&[
            "corrupt",
            "--corruption",
            "fog",
            "--severity",
            "1",
            arg(&path),
            arg(&output),
        ]);
        assert!(!out.status.success());
        let text = stderr(&out);
        assert!(text.contains(arg(&path)), "{text}");
        assert!(!text.contains("panicked"), "{text}");
    }
    // frost without textures names the file and the command that fetches it.
    let empty = tempfile::tempdir().unwrap();
    let out = rtb(&[
        "corrupt",
        "--corruption",
        "frost",
        "--severity",
        "1",
        "--frost-dir",
        arg(empty.path()),
        arg(&input),
        arg(&output),
    ]);
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains("frost1.png") && text.contains("cargo xtask assets"),
        "{text}"
    );
    assert!(!output.exists());
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn dataset_writes_the_imagenet_c_layout_resumes_and_reports_bad_files() {
    let input = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(input.path().join("class_a")).unwrap();
    std::fs::create_dir_all(input.path().join("class_b")).unwrap();
    let a = test_image(31, 17, 3);
    let b = test_image(12, 40, 9);
    a.save(input.path().join("class_a/one.png")).unwrap();
    b.save(input.path().join("class_b/two.png")).unwrap();
    std::fs::write(input.path().join("class_b/broken.png"), b"not a png").unwrap();
    std::fs::write(input.path().join("notes.txt"), b"ignored").unwrap();

    let run = |output: &Path, jobs: &str| {
        rtb(&[
            "corrupt",
            "dataset",
            "--input",
            arg(input.path()),
            "--output",
            arg(output),
            "--corruptions",
            "gaussian_noise,contrast",
            "--severities",
            "1-2",
            "--seed",
            "17",
            "--jobs",
            jobs,
        ])
    };
    let output = tempfile::tempdir().unwrap();
    let out = run(output.path(), "2");
    // The broken file makes the run fail, after doing everything else, and is listed.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("broken.png"), "{}", stderr(&out));

    let mut expected = Vec::new();
    for corruption in ["contrast", "gaussian_noise"] {
        for severity in ["1", "2"] {
            for file in ["class_a/one.png", "class_b/two.png"] {
                expected.push(Path::new(corruption).join(severity).join(file));
            }
        }
    }
    expected.sort();
    assert_eq!(files_under(output.path()), expected);

    for (relative, image) in [("class_a/one.png", &a), ("class_b/two.png", &b)] {
        for corruption in [Corruption::GaussianNoise, Corruption::Contrast] {
            for severity in [1u8, 2] {
                let seed = image_seed(
                    17,
                    Path::new(relative),
                    corruption,
                    Severity::new(severity).unwrap(),
                );
                let path = output
                    .path()
                    .join(corruption.name())
                    .join(severity.to_string())
                    .join(relative);
                let written = image::open(&path).unwrap().to_rgb8();
                let want = library(image, corruption, severity, Flavor::ImageCorruptions, seed);
                assert_eq!(written, want, "{}", path.display());
            }
        }
    }

    // One thread gives the same bytes.
    let serial = tempfile::tempdir().unwrap();
    run(serial.path(), "1");
    for relative in &expected {
        assert_eq!(
            std::fs::read(output.path().join(relative)).unwrap(),
            std::fs::read(serial.path().join(relative)).unwrap(),
            "{}",
            relative.display()
        );
    }

    // Resume: existing outputs are kept as they are, missing ones are filled in.
    let kept = output.path().join(&expected[0]);
    std::fs::write(&kept, b"marker: must not be rewritten").unwrap();
    let removed = output.path().join(&expected[1]);
    std::fs::remove_file(&removed).unwrap();
    let out = run(output.path(), "2");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        b"marker: must not be rewritten"
    );
    assert_eq!(
        std::fs::read(&removed).unwrap(),
        std::fs::read(serial.path().join(&expected[1])).unwrap()
    );
    assert!(
        files_under(output.path())
            .iter()
            .all(|p| !p.to_string_lossy().contains("partial"))
    );
}

#[test]
fn dataset_with_only_good_files_succeeds_and_png_flag_changes_extensions() {
    let input = tempfile::tempdir().unwrap();
    test_image(9, 9, 1)
        .save(input.path().join("x.png"))
        .unwrap();
    let output = tempfile::tempdir().unwrap();
    let out = rtb(&[
        "corrupt",
        "dataset",
        "--input",
        arg(input.path()),
        "--output",
        arg(output.path()),
        "--corruptions",
        "extra",
        "--severities",
        "5",
        "--flavor",
        "cifar-c",
        "--png",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(files_under(output.path()).len(), 4);
    assert!(output.path().join("saturate/5/x.png").is_file());
}
