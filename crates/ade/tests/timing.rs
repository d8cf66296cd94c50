//! Rough single-thread timing of the train and test pipelines at ADE20K sizes (683×512), run
//! only with `RTB_ADE_TIMING=1` (prints to stderr; numbers go to the report, not assertions).

#![allow(clippy::print_stderr)]

use std::time::Instant;

use image::RgbImage;
use rtb_ade::transforms::{normalize_padded, pad_labels};
use rtb_ade::{TestConfig, TrainConfig, normalize};
use rtb_ade_eval::LabelMap;
use rtb_train::seed::SplitMix64;

/// This thread's user + system CPU time in seconds (Linux; clock ticks of 10 ms), so that the
/// numbers hold on a loaded machine.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

#[test]
fn train_pipeline_timing() {
    if std::env::var("RTB_ADE_TIMING").is_err() {
        return;
    }
    let (w, h) = (683u32, 512u32);
    let image = RgbImage::from_fn(w, h, |x, y| {
        let n = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(2_246_822_519)) >> 24;
        image::Rgb([(x % 256) as u8, (y % 256) as u8, n as u8])
    });
    let label = LabelMap::new(
        w,
        h,
        (0..w * h)
            .map(|i| ((i % w) / 40 + (i / w) / 40) as u8 % 150)
            .collect(),
    )
    .unwrap();
    let cfg = TrainConfig::default();
    let n = 100;
    let cpu = cpu_seconds();
    let (mut t_aug, mut t_norm) = (0.0, 0.0);
    let mut pixels = 0usize;
    for seed in 0..n {
        let start = Instant::now();
        let draws = cfg.draw(&mut SplitMix64::new(seed), w, h).unwrap();
        let crop = cfg.augment(&image, &label, &draws).unwrap();
        let mid = Instant::now();
        let values = normalize_padded(&crop.image, (512, 512));
        let labels = pad_labels(&crop.label, (512, 512));
        t_aug += (mid - start).as_secs_f64();
        t_norm += mid.elapsed().as_secs_f64();
        pixels += (crop.resized.0 * crop.resized.1) as usize;
        assert_eq!(values.len() + labels.len(), 4 * 512 * 512);
    }
    eprintln!(
        "train pipeline: {:.2} ms CPU/image in all",
        1e3 * (cpu_seconds() - cpu) / n as f64
    );
    eprintln!(
        "train pipeline, {w}×{h}: augment {:.2} ms/image (mean resized {:.2} Mpx), \
         normalise + pad {:.2} ms/image",
        1e3 * t_aug / n as f64,
        pixels as f64 / n as f64 / 1e6,
        1e3 * t_norm / n as f64
    );
    // Parts: the resize to a typical training size, and the photometric distortion of a crop.
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(rtb_ade::transforms::resize_image(&image, 1024, 768).unwrap());
    }
    eprintln!(
        "  resize {w}×{h} → 1024×768: {:.2} ms",
        1e3 * start.elapsed().as_secs_f64() / n as f64
    );
    let crop = rtb_ade::transforms::resize_image(&image, 512, 512).unwrap();
    let draws = rtb_ade::PhotometricDraws {
        brightness: Some(10.0),
        contrast_first: true,
        contrast: Some(1.2),
        saturation: Some(0.8),
        hue: Some(5),
    };
    let start = Instant::now();
    for _ in 0..n {
        let mut pixels = crop.clone().into_raw();
        rtb_ade::photometric_distortion(&mut pixels, 512, &draws);
        std::hint::black_box(pixels);
    }
    eprintln!(
        "  photometric distortion, all steps on, 512×512: {:.2} ms",
        1e3 * start.elapsed().as_secs_f64() / n as f64
    );
    let image = RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([x as u8, y as u8, (x ^ y) as u8])
    });
    let start = Instant::now();
    for _ in 0..n {
        let resized = TestConfig::default().resize(&image).unwrap();
        std::hint::black_box(normalize(&resized));
    }
    eprintln!(
        "test pipeline, 640×480 → 683×512: {:.2} ms/image",
        1e3 * start.elapsed().as_secs_f64() / n as f64
    );
}
