//! `rtb segment`: run an UperNet segmenter on every image of a folder and write one 8-bit
//! label PNG per image (class indices 0..K−1, the predictions `rtb ade-eval` reads, named
//! after the image). The model is a backbone architecture plus an UperNet checkpoint in any
//! layout rtb-segmentation imports (transformers' `UperNetForSemanticSegmentation`,
//! mmsegmentation's `.pth`, or `rtb weights import`'s output); the heads' widths and the class
//! count are read from the checkpoint. Inference is mmseg's: keep-ratio resize to the test
//! scale, whole image, logits resized back to the original size, argmax.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use candle_core::{DType, Device, Tensor};
use rtb_ade::TestConfig;
use rtb_ade_eval::{LabelMap, write_label_png};
use rtb_segmentation::{UperNetConfig, argmax, load_upernet, resize_logits};
use rtb_train::DeviceChoice;

use super::weights::ArchArgs;

/// Arguments of `rtb segment`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    arch: ArchArgs,
    /// The UperNet checkpoint (heads and backbone).
    #[arg(long, value_name = "FILE")]
    weights: PathBuf,
    /// The folder of images (.jpg, .jpeg, .png; not recursive).
    #[arg(value_name = "IMAGES_DIR")]
    images: PathBuf,
    /// Where the label PNGs go (created).
    #[arg(long, value_name = "DIR")]
    output: PathBuf,
    /// The test scale `LONG,SHORT` the image is fitted into (mmseg's ADE20K: 2048,512).
    #[arg(long, value_delimiter = ',', default_values_t = [2048u32, 512])]
    scale: Vec<u32>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
}

/// The heads' widths and the class count of a checkpoint (mmseg's UperNet otherwise).
fn config_of(
    heads: &std::collections::BTreeMap<String, Tensor>,
    source: &Path,
) -> anyhow::Result<UperNetConfig> {
    let classifier = heads
        .get("decode_head.classifier.weight")
        .with_context(|| format!("{}: no decode_head.classifier.weight", source.display()))?;
    let (classes, channels) = match classifier.dims() {
        &[k, c, 1, 1] => (k, c),
        dims => bail!(
            "{}: decode_head.classifier.weight has shape {dims:?}",
            source.display()
        ),
    };
    let mut cfg = UperNetConfig::ade20k().with_num_classes(classes);
    cfg.channels = channels;
    match heads
        .get("auxiliary_head.classifier.weight")
        .map(Tensor::dims)
    {
        Some(&[_, c, 1, 1]) => {
            if let Some(aux) = cfg.auxiliary.as_mut() {
                aux.channels = c;
            }
        }
        _ => cfg.auxiliary = None,
    }
    Ok(cfg)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let arch = args.arch.resolve()?.with_num_classes(None)?;
    let &[long, short] = args.scale.as_slice() else {
        bail!("--scale takes LONG,SHORT, got {:?}", args.scale);
    };
    let test = TestConfig {
        scale: (long, short),
    };
    let device: Device = args.device.device()?;
    let mut weights = load_upernet(&args.weights)?;
    weights.fit(&arch)?;
    let cfg = config_of(&weights.heads, &args.weights)?;
    let source = args.weights.display().to_string();
    let model = rtb_segmentation::weights::from_weights(
        &cfg,
        &arch,
        &source,
        &weights,
        (DType::F32, &device),
    )?;
    let images = super::images_in(&args.images)?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let bar = crate::progress::bar(images.len() as u64, "segmenting");
    for path in &images {
        let image = rtb_ade::load_image(path)?;
        let resized = test.resize(&image)?;
        let (w, h) = (resized.width() as usize, resized.height() as usize);
        let xs = Tensor::from_vec(rtb_ade::normalize(&resized), (1, 3, h, w), &device)?;
        let logits = model.forward(&xs)?;
        let full = resize_logits(&logits, (image.height() as usize, image.width() as usize))?;
        let classes: Vec<u8> = argmax(&full)?.flatten_all()?.to_vec1()?;
        let map = LabelMap::new(image.width(), image.height(), classes)?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        write_label_png(&args.output.join(format!("{stem}.png")), &map)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    tracing::info!(
        "{} label maps ({} classes) in {}",
        images.len(),
        cfg.num_classes,
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
