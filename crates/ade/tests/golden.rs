//! Parity with OpenCV 4.10, mmcv 2.1.0 and mmseg 1.2.2 on the fixtures of
//! `tests/golden/make_golden.py`: every output must be byte-identical (compared by SHA-256).
//! Inputs are recomputed here from the same coordinate hash as the script's.

use image::RgbImage;
use rtb_ade::photometric::{
    hsv_to_rgb_pixel_scalar, hsv_to_rgb_pixel_vector, photometric_distortion, rgb_to_hsv_pixel,
};
use rtb_ade::transforms::{normalize_padded, pad_chw, pad_labels};
use rtb_ade::{
    PhotometricDraws, TestConfig, TrainConfig, TrainDraws, normalize, rescale_size, resize_linear,
    resize_nearest,
};
use rtb_ade_eval::{LabelMap, reduce_zero_label};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn golden() -> Value {
    let text = include_str!("golden/golden.json");
    serde_json::from_str(text).expect("golden.json parses")
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn u(v: &Value) -> usize {
    v.as_u64().expect("an unsigned integer") as usize
}

/// The script's `pattern`: H×W×C noise from a 32-bit hash of (y, x, channel, salt).
fn pattern(h: usize, w: usize, c: usize, salt: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(h * w * c);
    for y in 0..h as u64 {
        for x in 0..w as u64 {
            for ch in 0..c as u64 {
                let m = 0xFFFF_FFFFu64;
                let mut v = (x * 2_654_435_761
                    + y * 2_246_822_519
                    + ch * 3_266_489_917
                    + salt * 668_265_263)
                    & m;
                v ^= v >> 15;
                v = (v * 2_246_822_519) & m;
                v ^= v >> 13;
                v = (v * 3_266_489_917) & m;
                v ^= v >> 16;
                out.push((v >> 24) as u8);
            }
        }
    }
    out
}

/// The script's `smooth`: gradients in R and G, a diagonal ramp in B.
fn smooth(h: usize, w: usize, salt: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(h * w * 3);
    for y in 0..h as u64 {
        for x in 0..w as u64 {
            out.push((x * 255 / (w as u64 - 1).max(1)) as u8);
            out.push((y * 255 / (h as u64 - 1).max(1)) as u8);
            out.push(((x + y + salt) * 7 % 256) as u8);
        }
    }
    out
}

fn source(kind: &str, h: usize, w: usize, salt: u64) -> Vec<u8> {
    match kind {
        "noise" => pattern(h, w, 3, salt),
        "smooth" => smooth(h, w, salt),
        other => panic!("unknown source {other}"),
    }
}

/// The script's `labels`: 8×8 blocks of `pattern % num_raw`.
fn labels(h: usize, w: usize, num_raw: u64, salt: u64) -> Vec<u8> {
    let (bh, bw) = (h.div_ceil(8), w.div_ceil(8));
    let blocks = pattern(bh, bw, 1, salt);
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h {
        for x in 0..w {
            out.push((u64::from(blocks[(y / 8) * bw + x / 8]) % num_raw) as u8);
        }
    }
    out
}

fn train_labels(h: usize, w: usize, num_raw: u64, salt: u64, mode: &str) -> Vec<u8> {
    let mut raw = labels(h, w, num_raw, salt);
    match mode {
        "blocks" => {}
        "corner" => {
            for y in 0..h {
                for x in 0..w {
                    if !(y < h / 2 && x < w / 2) {
                        raw[y * w + x] = 1;
                    }
                }
            }
        }
        "single" => {
            for y in 0..h {
                for x in 0..w {
                    raw[y * w + x] = u8::from(x != 0);
                }
            }
        }
        other => panic!("unknown label mode {other}"),
    }
    raw
}

fn photometric_draws(p: &Value) -> PhotometricDraws {
    PhotometricDraws {
        brightness: p["brightness"].as_f64(),
        contrast_first: p["contrast_first"].as_bool().expect("bool"),
        contrast: p["contrast"].as_f64(),
        saturation: p["saturation"].as_f64(),
        hue: p["hue"].as_i64().map(|v| v as i32),
    }
}

#[test]
fn inputs_match_the_script() {
    let g = golden();
    let check = &g["pattern_check"];
    let values: Vec<u8> = check["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| u(v) as u8)
        .collect();
    assert_eq!(pattern(3, 4, 3, 7), values);
    assert_eq!(
        sha(&smooth(5, 9, 3)),
        check["smooth_sha256"].as_str().unwrap()
    );
    assert_eq!(
        sha(&labels(13, 21, 151, 5)),
        check["labels_sha256"].as_str().unwrap()
    );
}

#[test]
fn rescale_size_equals_mmcv() {
    let g = golden();
    for case in g["rescale"].as_array().unwrap() {
        let (w, h) = (u(&case["w"]) as u32, u(&case["h"]) as u32);
        let scale = (u(&case["scale"][0]) as u32, u(&case["scale"][1]) as u32);
        let expected = (u(&case["size"][0]) as u32, u(&case["size"][1]) as u32);
        assert_eq!(rescale_size(w, h, scale).unwrap().0, expected, "{case}");
    }
}

#[test]
fn resizes_equal_cv2_byte_for_byte() {
    let g = golden();
    let cases = g["resize"].as_array().unwrap();
    assert!(cases.len() > 100);
    for case in cases {
        let (w, h, dw, dh) = (u(&case["w"]), u(&case["h"]), u(&case["dw"]), u(&case["dh"]));
        let salt = u(&case["salt"]) as u64;
        if case["kind"] == "rescale" {
            let scale = (u(&case["scale"][0]) as u32, u(&case["scale"][1]) as u32);
            let ((rw, rh), _) = rescale_size(w as u32, h as u32, scale).unwrap();
            assert_eq!((rw as usize, rh as usize), (dw, dh), "{case}");
        }
        let image = source(case["source"].as_str().unwrap(), h, w, salt);
        let out = resize_linear(&image, w, h, 3, dw, dh).unwrap();
        assert_eq!(
            sha(&out),
            case["image_sha256"].as_str().unwrap(),
            "bilinear {w}×{h} → {dw}×{dh} ({})",
            case["source"]
        );
        let label = labels(h, w, 151, salt);
        let out = resize_nearest(&label, w, h, 1, dw, dh).unwrap();
        assert_eq!(
            sha(&out),
            case["label_sha256"].as_str().unwrap(),
            "nearest {w}×{h} → {dw}×{dh}"
        );
    }
}

#[test]
fn hsv_conversions_equal_cv2_on_every_input() {
    let g = golden();
    // RGB → HSV over all 2^24 colours, in the order r, g, b.
    let mut hasher = Sha256::new();
    let mut row = Vec::with_capacity(3 * 65536);
    for r in 0..=255u8 {
        row.clear();
        for gg in 0..=255u8 {
            for b in 0..=255u8 {
                row.extend_from_slice(&rgb_to_hsv_pixel(r, gg, b));
            }
        }
        hasher.update(&row);
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(digest, g["hsv"]["rgb_to_hsv_all_sha256"].as_str().unwrap());
    // HSV → RGB over all (h < 180, s, v), through the vector kernel and the scalar tail.
    for (kind, convert) in [
        (
            "vector",
            hsv_to_rgb_pixel_vector as fn(u8, u8, u8) -> [u8; 3],
        ),
        ("scalar", hsv_to_rgb_pixel_scalar),
    ] {
        let mut hasher = Sha256::new();
        for h in 0..180u8 {
            row.clear();
            for s in 0..=255u8 {
                for v in 0..=255u8 {
                    row.extend_from_slice(&convert(h, s, v));
                }
            }
            hasher.update(&row);
        }
        let digest: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let key = format!("hsv_to_rgb_{kind}_sha256");
        assert_eq!(digest, g["hsv"][key.as_str()].as_str().unwrap(), "{kind}");
    }
}

#[test]
fn photometric_distortion_equals_mmseg() {
    let g = golden();
    for case in g["photometric"].as_array().unwrap() {
        let (w, h, salt) = (u(&case["w"]), u(&case["h"]), u(&case["salt"]) as u64);
        let mut pixels = source(case["source"].as_str().unwrap(), h, w, salt);
        let draws = photometric_draws(&case["params"]);
        photometric_distortion(&mut pixels, w, &draws);
        assert_eq!(sha(&pixels), case["sha256"].as_str().unwrap(), "{case}");
    }
}

#[test]
fn train_pipeline_equals_mmseg_given_the_same_draws() {
    let g = golden();
    for case in g["train_pipeline"].as_array().unwrap() {
        let (w, h, salt) = (u(&case["w"]), u(&case["h"]), u(&case["salt"]) as u64);
        let image = RgbImage::from_raw(
            w as u32,
            h as u32,
            source(case["source"].as_str().unwrap(), h, w, salt),
        )
        .unwrap();
        let mut raw = train_labels(
            h,
            w,
            u(&case["num_raw"]) as u64,
            salt,
            case["label_mode"].as_str().unwrap(),
        );
        reduce_zero_label(&mut raw);
        let label = LabelMap::new(w as u32, h as u32, raw).unwrap();
        let (lo, hi) = (0.5, 2.0);
        let draws = TrainDraws {
            ratio: case["u"].as_f64().unwrap() * (hi - lo) + lo,
            crop_candidates: case["crop_candidates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| (u(&c[0]) as u32, u(&c[1]) as u32))
                .collect(),
            flip: case["flip"].as_bool().unwrap(),
            photometric: photometric_draws(&case["photometric"]),
        };
        // Resize, crop and flip alone, then the whole pipeline.
        let geometric = TrainConfig {
            photometric: None,
            ..TrainConfig::default()
        };
        let crop = geometric.augment(&image, &label, &draws).unwrap();
        let resized = (u(&case["resized"][0]) as u32, u(&case["resized"][1]) as u32);
        assert_eq!(crop.resized, resized, "{case}");
        let used = u(&case["candidates_drawn"]) - 1;
        assert_eq!(crop.offset, draws.crop_candidates[used], "crop choice");
        assert_eq!(
            sha(crop.image.as_raw()),
            case["crop_image_sha256"].as_str().unwrap()
        );
        assert_eq!(
            sha(crop.label.data()),
            case["label_sha256"].as_str().unwrap()
        );

        let full = TrainConfig::default()
            .augment(&image, &label, &draws)
            .unwrap();
        let shape = (
            u(&case["crop_shape"][0]) as u32,
            u(&case["crop_shape"][1]) as u32,
        );
        assert_eq!((full.image.height(), full.image.width()), shape);
        assert_eq!(
            sha(full.image.as_raw()),
            case["final_image_sha256"].as_str().unwrap()
        );
        let padded = normalize_padded(&full.image, (512, 512));
        let size = (full.image.height() as usize, full.image.width() as usize);
        assert_eq!(
            padded,
            pad_chw(&normalize(&full.image), 3, size, (512, 512), 0.0)
        );
        assert_eq!(
            sha(&f32_bytes(&padded)),
            case["normalized_sha256"].as_str().unwrap()
        );
        let padded_label = pad_labels(&full.label, (512, 512));
        assert_eq!(
            sha(&padded_label),
            case["padded_label_sha256"].as_str().unwrap()
        );
    }
}

#[test]
fn test_pipeline_equals_mmseg() {
    let g = golden();
    for case in g["test_pipeline"].as_array().unwrap() {
        let (w, h, salt) = (u(&case["w"]), u(&case["h"]), u(&case["salt"]) as u64);
        let image = RgbImage::from_raw(w as u32, h as u32, smooth(h, w, salt)).unwrap();
        let resized = TestConfig::default().resize(&image).unwrap();
        let size = (u(&case["resized"][0]) as u32, u(&case["resized"][1]) as u32);
        assert_eq!(resized.dimensions(), size);
        assert_eq!(
            sha(resized.as_raw()),
            case["image_sha256"].as_str().unwrap()
        );
        assert_eq!(
            sha(&f32_bytes(&normalize(&resized))),
            case["normalized_sha256"].as_str().unwrap()
        );
    }
}

#[test]
fn jpeg_files_decode_as_cv2_imdecode_and_resize_as_mmseg() {
    let g = golden();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for case in g["decode"].as_array().unwrap() {
        let path = dir.join(case["file"].as_str().unwrap());
        let image = rtb_ade::load_image(&path).unwrap();
        assert_eq!(
            sha(image.as_raw()),
            case["decoded_sha256"].as_str().unwrap(),
            "{case}"
        );
        let resized = TestConfig::default().resize(&image).unwrap();
        let size = (u(&case["resized"][0]) as u32, u(&case["resized"][1]) as u32);
        assert_eq!(resized.dimensions(), size);
        assert_eq!(
            sha(resized.as_raw()),
            case["resized_sha256"].as_str().unwrap()
        );
    }
}
