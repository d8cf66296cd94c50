//! What one corrupted evaluation of an ADE20K image costs beside its forward pass, at the
//! paper's sizes: an 854×640 decoded image (ADE20K's images are of this order), corrupted at
//! full resolution (each of the 15 benchmark corruptions at severity 3, seeded), the test
//! pipeline's keep-ratio resize to (2048, 512) → 683×512 and normalisation, UperNet-R50's
//! whole-image forward (512 channels, 150 classes), the logits resized back to 854×640 and
//! argmax, and the IoU accumulation. Prints each part per image and the overhead (everything
//! but the forward pass) as a share of the forward pass; the bar is < 15 %.
//!
//! `cargo bench -p rtb-ade --bench eval_overhead`. Frost needs the textures (`cargo xtask
//! assets`); without them the mean is over the other 14 corruptions, and the output says so.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use image::RgbImage;
use rtb_ade::{TestConfig, normalize};
use rtb_ade_eval::{EvalConfig, IouAccumulator, LabelMap};
use rtb_corruption::{Corruption, Corruptor, Flavor, FrostTextures, RandomState, Severity};
use rtb_models::init::trainable_builder;
use rtb_models::{ArchConfig, ResNetConfig};
use rtb_segmentation::{UperNet, UperNetConfig, argmax, resize_logits};

const WIDTH: u32 = 854;
const HEIGHT: u32 = 640;

fn seconds<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed().as_secs_f64())
}

fn main() {
    let image = RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
        let v = |k: u32| ((x * k + y * (k + 3)) % 251) as u8;
        image::Rgb([v(3), v(5), v(7)])
    });
    let label = LabelMap::new(
        WIDTH,
        HEIGHT,
        (0..WIDTH * HEIGHT)
            .map(|i| ((i / 97) % 150) as u8)
            .collect(),
    )
    .expect("label map");

    let mut corruptor = Corruptor::new(Flavor::ImageCorruptions);
    let frost = frost_textures();
    if let Some(dir) = &frost {
        corruptor = corruptor.with_frost_textures(FrostTextures::new(dir));
    }
    let severity = Severity::new(3).expect("severity");
    let mut corrupt_total = 0.0;
    let mut counted = 0usize;
    for corruption in Corruption::BENCHMARK {
        let mut rng = RandomState::new(7);
        match seconds(|| corruptor.corrupt(&image, corruption, severity, &mut rng)) {
            (Ok(_), s) => {
                corrupt_total += s;
                counted += 1;
                println!("  corrupt {:<18} {:>8.1} ms", corruption.name(), s * 1e3);
            }
            (Err(err), _) => println!("  corrupt {:<18} skipped: {err}", corruption.name()),
        }
    }
    let corrupt = corrupt_total / counted.max(1) as f64;

    let test = TestConfig::default();
    let (resized, resize) = seconds(|| test.resize(&image).expect("resize"));
    let (normalized, normalize_s) = seconds(|| normalize(&resized));
    let (rh, rw) = (resized.height() as usize, resized.width() as usize);
    let input = Tensor::from_vec(normalized, (1, 3, rh, rw), &Device::Cpu).expect("input");

    let varmap = VarMap::new();
    let vb = trainable_builder(&varmap, HashMap::new(), 0, DType::F32, &Device::Cpu);
    let arch = ArchConfig::from(ResNetConfig::resnet50().without_classifier());
    let model = UperNet::build(&UperNetConfig::ade20k(), &arch, &vb).expect("UperNet");
    let _ = model.forward(&input).expect("warm-up");
    let (logits, forward) = seconds(|| model.forward(&input).expect("forward"));
    let (predicted, back) = seconds(|| {
        let full = resize_logits(&logits, (HEIGHT as usize, WIDTH as usize)).expect("resize");
        let classes: Vec<u8> = argmax(&full)
            .and_then(|t| Ok(t.flatten_all()?.to_vec1()?))
            .expect("argmax");
        LabelMap::new(WIDTH, HEIGHT, classes).expect("prediction")
    });
    let mut accumulator = IouAccumulator::new(EvalConfig::new(150)).expect("accumulator");
    let ((), accumulate) = seconds(|| accumulator.add_map(&label, &predicted).expect("add"));

    let overhead = corrupt + resize + normalize_s + back + accumulate;
    println!(
        "per image: corrupt {:.1} ms (mean of {counted}{}), resize {:.1} ms, normalise {:.1} ms, \
         forward {:.0} ms, logits resize + argmax {:.1} ms, accumulate {:.2} ms",
        corrupt * 1e3,
        if frost.is_some() {
            ""
        } else {
            ", no frost textures"
        },
        resize * 1e3,
        normalize_s * 1e3,
        forward * 1e3,
        back * 1e3,
        accumulate * 1e3,
    );
    println!(
        "overhead / forward: {:.1} % (without the logits resize: {:.1} %)",
        100.0 * overhead / forward,
        100.0 * (overhead - back) / forward
    );
}

/// The frost textures' folder when `cargo xtask assets` installed them.
fn frost_textures() -> Option<std::path::PathBuf> {
    rtb_fetch::frost_dir().filter(|dir| dir.join("frost1.png").exists())
}
