//! The evaluation crop against torchvision's `Resize(256)` + `CenterCrop(224)` on PIL images
//! (tests/golden/make_golden.py, torchvision 0.29.2, Pillow 13.0.0).

use std::path::{Path, PathBuf};

use rtb_imagenet::{EvalTransform, Interpolation, load_rgb};

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

#[derive(Debug)]
struct Case {
    input: String,
    interpolation: Interpolation,
    resize: u32,
    crop: u32,
    resized_size: (u32, u32),
    expected: String,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(golden().join("cases.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            input: c["input"].as_str().unwrap().into(),
            interpolation: c["interpolation"].as_str().unwrap().parse().unwrap(),
            resize: c["resize"].as_u64().unwrap() as u32,
            crop: c["crop"].as_u64().unwrap() as u32,
            resized_size: (
                c["resized_size"][0].as_u64().unwrap() as u32,
                c["resized_size"][1].as_u64().unwrap() as u32,
            ),
            expected: c["expected"].as_str().unwrap().into(),
        })
        .collect()
}

/// (largest difference, number of differing channel values) per case.
fn compare(case: &Case) -> (u8, usize) {
    let transform = EvalTransform::new(case.resize, case.crop, case.interpolation).unwrap();
    let image = load_rgb(&golden().join("inputs").join(&case.input)).unwrap();
    assert_eq!(
        transform.resized_size(image.width(), image.height()),
        case.resized_size,
        "{}",
        case.input
    );
    let ours = transform.crop_u8(&image).unwrap();
    let theirs = load_rgb(&golden().join("expected").join(&case.expected)).unwrap();
    assert_eq!(ours.dimensions(), theirs.dimensions(), "{}", case.expected);
    let mut max = 0u8;
    let mut differing = 0usize;
    for (a, b) in ours.as_raw().iter().zip(theirs.as_raw()) {
        let d = a.abs_diff(*b);
        max = max.max(d);
        differing += usize::from(d != 0);
    }
    (max, differing)
}

#[test]
fn the_crop_equals_torchvision_on_png_inputs() {
    // Pillow's resampling is reproduced exactly: every PNG case (RGB, grey and RGBA inputs;
    // bilinear and bicubic; down- and upscaling) is equal byte for byte.
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.input.ends_with(".png")) {
        let (max, differing) = compare(case);
        assert_eq!(
            (max, differing),
            (0, 0),
            "{} ({:?})",
            case.expected,
            case.interpolation
        );
        checked += 1;
    }
    assert_eq!(checked, 9);
}

#[test]
fn the_crop_is_within_one_grey_level_on_jpeg_inputs() {
    // The RGB (4:2:0) JPEG is decoded by rtb-corruption's libjpeg-turbo-exact decoder, so its
    // crop is equal byte for byte. The grey JPEG goes through the image crate's decoder
    // (the exact one reads three-component files only), whose IDCT rounding differs from
    // libjpeg-turbo's on some values; the resize averages the differences down to at most
    // one grey level: 1170 of the 224·224·3 = 150528 values differ by exactly 1.
    let mut checked = 0;
    for case in cases().iter().filter(|c| !c.input.ends_with(".png")) {
        let expected = match case.input.as_str() {
            "rgb_320x241.jpg" => (0, 0),
            "grey_301x259.jpg" => (1, 1170),
            other => panic!("no expectation for {other}"),
        };
        assert_eq!(compare(case), expected, "{}", case.expected);
        checked += 1;
    }
    assert_eq!(checked, 2);
}
