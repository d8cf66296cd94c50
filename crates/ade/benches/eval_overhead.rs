//! What one corrupted evaluation of an ADE20K image costs beside its forward pass, at the
//! paper's sizes: an 854×640 decoded image (ADE20K's images are of this order), corrupted at
//! full resolution (each of the 15 benchmark corruptions at severity 3, seeded), the test
//! pipeline's keep-ratio resize to (2048, 512) → 683×512 and normalisation, UperNet-R50's
//! whole-image forward (512 channels, 150 classes), the logits resized back to 854×640 and
//! argmax, and the IoU accumulation. Prints each part per image and the overhead (everything
//! but the forward pass) as a share of the forward pass; the bar is < 15 %.
//!
//! `cargo bench -p rtb-ade --bench eval_overhead`. The timer, the test image and the
//! corruption loop are rtb-coco's bench's too (`benches/shared/eval_overhead.rs`). Frost
//! needs the textures (`cargo xtask assets`); without them the mean is over the other 14
//! corruptions, and the output says so.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rtb_ade::{TestConfig, normalize};
use rtb_ade_eval::{EvalConfig, IouAccumulator, LabelMap};
use rtb_models::init::trainable_builder;
use rtb_models::{ArchConfig, ResNetConfig};
use rtb_segmentation::{UperNet, UperNetConfig, argmax, resize_logits};

#[path = "../../../benches/shared/eval_overhead.rs"]
mod shared;

use shared::{corruption_cost, seconds};

const WIDTH: u32 = 854;
const HEIGHT: u32 = 640;

fn main() {
    let image = shared::test_image(WIDTH, HEIGHT);
    let label = LabelMap::new(
        WIDTH,
        HEIGHT,
        (0..WIDTH * HEIGHT)
            .map(|i| ((i / 97) % 150) as u8)
            .collect(),
    )
    .expect("label map");

    let corruption = corruption_cost(&image);
    let corrupt = corruption.mean;

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
        "per image: corrupt {:.1} ms ({}), resize {:.1} ms, normalise {:.1} ms, \
         forward {:.0} ms, logits resize + argmax {:.1} ms, accumulate {:.2} ms",
        corrupt * 1e3,
        corruption.note(),
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
