//! Writes a tiny synthetic ImageNet fixture to try `rtb eval imagenet` without the dataset:
//! `DIR/val/<wnid>/*.JPEG` (three classes, odd sizes), `DIR/val.txt` with the same images
//! flat in `DIR/flat/`, a released-layout `DIR/imagenet-c/<corruption>/<severity>/<wnid>/`
//! (gaussian_noise and fog at severities 1 and 2, 224×224), and `DIR/tiny.safetensors`, a
//! seeded `resnet_tiny` with a 1000-class classifier.
//!
//! ```text
//! cargo run -p rtb-imagenet --example tiny_fixture -- /tmp/tiny-imagenet
//! rtb eval imagenet --arch resnet_tiny --weights /tmp/tiny-imagenet/tiny.safetensors \
//!     --val /tmp/tiny-imagenet/val --imagenet-c /tmp/tiny-imagenet/imagenet-c
//! ```
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use image::{Rgb, RgbImage};
use rtb_models::init::trainable_builder;
use rtb_models::{ArchConfig, ResNetConfig};

const WNIDS: [&str; 3] = ["n01440764", "n01443537", "n15075141"];

fn picture(width: u32, height: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let v = x.wrapping_mul(7 + seed) ^ y.wrapping_mul(13 + 3 * seed);
        Rgb([v as u8, (x + y * seed) as u8, (seed * 40 + x / 3) as u8])
    })
}

fn save(image: &RgbImage, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    let file = std::fs::File::create(path)?;
    image::codecs::jpeg::JpegEncoder::new_with_quality(file, 90).encode_image(image)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir: PathBuf = std::env::args()
        .nth(1)
        .ok_or("usage: tiny_fixture DIR")?
        .into();
    let mut val_txt = String::new();
    for (w, wnid) in WNIDS.iter().enumerate() {
        let w = w as u32;
        for k in 0..2u32 {
            let name = format!("ILSVRC2012_val_{:08}.JPEG", 10 * w + k + 1);
            let image = picture(250 + 17 * k + 5 * w, 240 + 31 * w, 3 * w + k);
            save(&image, &dir.join("val").join(wnid).join(&name))?;
            save(&image, &dir.join("flat").join(&name))?;
            let index = rtb_imagenet::synsets::class_index(wnid).ok_or("a known wnid")?;
            val_txt.push_str(&format!("{name} {index}\n"));
            for (c, corruption) in ["gaussian_noise", "fog"].iter().enumerate() {
                for severity in 1..=2u32 {
                    let seed = 5 * c as u32 + severity + 2 * w + k;
                    let path = dir
                        .join("imagenet-c")
                        .join(corruption)
                        .join(severity.to_string())
                        .join(wnid)
                        .join(&name);
                    save(&picture(224, 224, seed), &path)?;
                }
            }
        }
    }
    std::fs::write(dir.join("val.txt"), val_txt)?;

    // A seeded resnet_tiny whose classifier favours the fixture's three classes, so that
    // top-1 is right on some images and wrong on others.
    let mut bias = vec![0f32; 1000];
    for wnid in WNIDS {
        bias[rtb_imagenet::synsets::class_index(wnid).ok_or("a known wnid")?] = 20.0;
    }
    let weights = HashMap::from([(
        "fc.bias".to_string(),
        Tensor::from_vec(bias, 1000, &Device::Cpu)?,
    )]);
    let varmap = VarMap::new();
    let vb = trainable_builder(&varmap, weights, 11, DType::F32, &Device::Cpu);
    let model = ArchConfig::from(ResNetConfig {
        num_classes: Some(1000),
        ..ResNetConfig::tiny()
    })
    .build(&vb)?;
    let tensors: HashMap<String, Tensor> = model
        .parameters()
        .into_iter()
        .map(|p| (p.name, p.tensor))
        .collect();
    candle_core::safetensors::save(&tensors, dir.join("tiny.safetensors"))?;
    println!("wrote the tiny ImageNet fixture to {}", dir.display());
    Ok(())
}
