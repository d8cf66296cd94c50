//! Helpers shared by the integration tests: a small synthetic CIFAR-format dataset and a
//! seeded "pretrained" backbone file.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarMap;
use rtb_cifar::{CifarImages, SIDE, encode_batch};
use rtb_models::ArchConfig;
use rtb_models::init::trainable_builder;
use rtb_train::seed::SplitMix64;

/// Four classes told apart by the colour of a square at a random place on a noisy grey
/// background.
pub const CLASSES: [&str; 4] = ["red", "green", "blue", "yellow"];
const PALETTE: [[u8; 3]; 4] = [[220, 40, 40], [40, 200, 60], [50, 60, 230], [230, 220, 50]];

pub fn synthetic_images(n: usize, seed: u64) -> CifarImages {
    let mut rng = SplitMix64::new(seed);
    let mut images = CifarImages::default();
    for index in 0..n {
        let label = (index % CLASSES.len()) as u8;
        let mut rgb = vec![0u8; SIDE * SIDE * 3];
        for value in rgb.iter_mut() {
            *value = 100 + rng.below(56) as u8;
        }
        let size = 8 + rng.below(8) as usize;
        let top = rng.below((SIDE - size) as u64) as usize;
        let left = rng.below((SIDE - size) as u64) as usize;
        let colour = PALETTE[usize::from(label)];
        for y in top..top + size {
            for x in left..left + size {
                for c in 0..3 {
                    let jitter = rng.below(30) as u8;
                    rgb[(y * SIDE + x) * 3 + c] = colour[c].saturating_sub(jitter);
                }
            }
        }
        images.pixels.extend(rgb);
        images.labels.push(label);
    }
    images
}

/// Writes a CIFAR-format folder: `per_batch` images in each of the five training batches and
/// `test` test images.
pub fn write_dataset(dir: &Path, per_batch: usize, test: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (i, name) in rtb_cifar::TRAIN_FILES.iter().enumerate() {
        let images = synthetic_images(per_batch, 100 + i as u64);
        std::fs::write(dir.join(name), encode_batch(&images)).unwrap();
    }
    std::fs::write(
        dir.join(rtb_cifar::TEST_FILE),
        encode_batch(&synthetic_images(test, 999)),
    )
    .unwrap();
    std::fs::write(dir.join(rtb_cifar::META_FILE), CLASSES.join("\n") + "\n").unwrap();
    dir.to_path_buf()
}

/// A seeded tiny ResNet (with its 5-class ImageNet-style classifier) saved as safetensors,
/// standing in for pretrained weights.
pub fn write_weights(path: &Path, arch_name: &str) -> ArchConfig {
    let arch = ArchConfig::from_name(arch_name).unwrap();
    let varmap = VarMap::new();
    let vb = trainable_builder(&varmap, Default::default(), 42, DType::F32, &Device::Cpu);
    arch.build(&vb).unwrap();
    varmap.save(path).unwrap();
    arch
}
