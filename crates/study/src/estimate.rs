//! `--dry-run`'s cost estimate: multiply-accumulates of each architecture at each input size
//! (counted analytically from the config), images seen by training and evaluation, corruption
//! work, and throughput assumptions from the preset's `[cost]` table.
//!
//! An estimate, not a promise: it counts convolutions, linear layers and attention matmuls
//! and ignores norms, activations and memory traffic; the throughput constants of the shipped
//! presets were calibrated on the runs reported in the preset files.

use crate::StudyError;
use crate::plan::{Plan, Step};
use crate::preset::{DataSpec, DeviceKind};

/// The named architectures of rtb-models, as the fields the estimate needs.
#[derive(Debug, Clone, PartialEq)]
enum ArchShape {
    ResNet {
        bottleneck: bool,
        depths: [usize; 4],
        stem_width: usize,
        widths: [usize; 4],
    },
    Swin {
        patch_size: usize,
        embed_dim: usize,
        depths: [usize; 4],
        window_size: usize,
        mlp_ratio: f64,
    },
}

fn named(name: &str) -> Option<ArchShape> {
    let resnet = |bottleneck, depths, stem_width, widths| ArchShape::ResNet {
        bottleneck,
        depths,
        stem_width,
        widths,
    };
    let swin = |embed_dim, depths, window_size, mlp_ratio| ArchShape::Swin {
        patch_size: 4,
        embed_dim,
        depths,
        window_size,
        mlp_ratio,
    };
    Some(match name {
        "resnet50" => resnet(true, [3, 4, 6, 3], 64, [64, 128, 256, 512]),
        "resnet18" => resnet(false, [2, 2, 2, 2], 64, [64, 128, 256, 512]),
        "resnet_mini" => resnet(false, [1, 1, 1, 1], 16, [16, 32, 64, 128]),
        "resnet_tiny" => resnet(true, [1, 2, 1, 1], 8, [4, 8, 8, 16]),
        "swin_t" | "swin_t_dense" => swin(96, [2, 2, 6, 2], 7, 4.0),
        "swin_mini" => swin(32, [1, 1, 2, 1], 4, 2.0),
        "swin_tiny" => swin(8, [2, 2, 2, 2], 3, 2.0),
        _ => return None,
    })
}

fn usize_array(table: &toml::Table, key: &str) -> Option<[usize; 4]> {
    let values: Vec<usize> = table
        .get(key)?
        .as_array()?
        .iter()
        .map(|v| v.as_integer().and_then(|i| usize::try_from(i).ok()))
        .collect::<Option<_>>()?;
    values.try_into().ok()
}

fn shape_of(arch: &toml::Value) -> Result<ArchShape, StudyError> {
    let invalid = |message: String| StudyError::Invalid {
        what: "arch".into(),
        message,
    };
    match arch {
        toml::Value::String(name) => {
            named(name).ok_or_else(|| invalid(format!("unknown architecture name {name:?}")))
        }
        toml::Value::Table(table) => {
            let int = |key: &str| {
                table
                    .get(key)
                    .and_then(toml::Value::as_integer)
                    .and_then(|i| usize::try_from(i).ok())
                    .ok_or_else(|| invalid(format!("arch.{key} is missing or not an integer")))
            };
            let arr = |key: &str| {
                usize_array(table, key)
                    .ok_or_else(|| invalid(format!("arch.{key} is not a list of 4 integers")))
            };
            match table.get("family").and_then(toml::Value::as_str) {
                Some("resnet") => Ok(ArchShape::ResNet {
                    bottleneck: table.get("block").and_then(toml::Value::as_str)
                        == Some("bottleneck"),
                    depths: arr("depths")?,
                    stem_width: int("stem_width")?,
                    widths: arr("widths")?,
                }),
                Some("swin") => Ok(ArchShape::Swin {
                    patch_size: int("patch_size")?,
                    embed_dim: int("embed_dim")?,
                    depths: arr("depths")?,
                    window_size: int("window_size")?,
                    mlp_ratio: table
                        .get("mlp_ratio")
                        .and_then(toml::Value::as_float)
                        .unwrap_or(4.0),
                }),
                other => Err(invalid(format!(
                    "arch.family {other:?} is not \"resnet\" or \"swin\""
                ))),
            }
        }
        _ => Err(invalid("must be a name or a table".into())),
    }
}

/// Forward multiply-accumulates of one `size × size` image through the backbone's
/// convolutional and attention layers (no head).
pub fn forward_macs(arch: &toml::Value, size: usize) -> Result<f64, StudyError> {
    let conv = |k: usize, cin: usize, cout: usize, hw: f64| (k * k * cin * cout) as f64 * hw;
    Ok(match shape_of(arch)? {
        ArchShape::ResNet {
            bottleneck,
            depths,
            stem_width,
            widths,
        } => {
            let expansion = if bottleneck { 4 } else { 1 };
            let mut side = (size as f64 / 2.0).ceil();
            let mut macs = conv(7, 3, stem_width, side * side);
            side = (side / 2.0).ceil();
            let mut cin = stem_width;
            for stage in 0..4 {
                // The first 1×1 convolution of a bottleneck runs before the strided 3×3.
                let input_hw = side * side;
                if stage > 0 {
                    side = (side / 2.0).ceil();
                }
                let hw = side * side;
                let width = widths[stage];
                let cout = width * expansion;
                for block in 0..depths[stage] {
                    let input = if block == 0 { cin } else { cout };
                    let first_hw = if block == 0 { input_hw } else { hw };
                    macs += if bottleneck {
                        conv(1, input, width, first_hw)
                            + conv(3, width, width, hw)
                            + conv(1, width, cout, hw)
                    } else {
                        conv(3, input, width, hw) + conv(3, width, cout, hw)
                    };
                    if block == 0 && input != cout {
                        macs += conv(1, input, cout, hw);
                    }
                }
                cin = cout;
            }
            macs
        }
        ArchShape::Swin {
            patch_size,
            embed_dim,
            depths,
            window_size,
            mlp_ratio,
        } => {
            let mut side = (size / patch_size).max(1) as f64;
            let mut macs = conv(patch_size, 3, embed_dim, side * side);
            let mut dim = embed_dim as f64;
            for (stage, depth) in depths.iter().enumerate() {
                if stage > 0 {
                    side = (side / 2.0).ceil();
                    // Patch merging: 4C → 2C on the merged tokens.
                    macs += side * side * 4.0 * (dim / 2.0) * dim;
                }
                let tokens = side * side;
                let window = (window_size as f64).min(side).powi(2);
                let block = tokens * (4.0 * dim * dim + 2.0 * window * dim)
                    + tokens * 2.0 * mlp_ratio * dim * dim;
                macs += block * *depth as f64;
                dim *= 2.0;
            }
            macs
        }
    })
}

/// The estimate of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepCost {
    /// The step.
    pub step: Step,
    /// Estimated seconds.
    pub seconds: f64,
    /// Images through a training step.
    pub train_images: u64,
    /// Images through an evaluation forward pass.
    pub eval_images: u64,
}

/// Estimates every step of `plan` on `device`.
pub fn estimate(plan: &Plan, device: DeviceKind) -> Result<Vec<StepCost>, StudyError> {
    let preset = &plan.preset;
    let cost = &preset.cost;
    let rate = match device {
        DeviceKind::Cpu => cost.cpu_gmacs_per_second,
        DeviceKind::Cuda => cost.cuda_gmacs_per_second,
    } * 1e9;
    let conditions = (preset.corruptions().len() * preset.evaluation.severities.len()) as u64;
    let cap = |n: usize| preset.evaluation.images.map_or(n, |cap| cap.min(n)) as u64;
    let corrupt_seconds = |images: u64, side: usize| {
        images as f64 * conditions as f64 * cost.corrupt_ms_per_kilopixel * (side * side) as f64
            / 1024.0
            / 1e3
    };
    let synthetic = match &preset.data {
        DataSpec::Synthetic(s) => Some(s),
        DataSpec::Download { .. } => None,
    };
    let mut out = Vec::new();
    for step in &plan.steps {
        let (seconds, train_images, eval_images) = match step {
            Step::Data => match synthetic {
                Some(s) => {
                    let source_eval = cap(s.source_val);
                    let cifar_eval = cap(s.cifar_test);
                    let seconds = corrupt_seconds(source_eval, s.source_size)
                        + corrupt_seconds(cifar_eval, 32)
                        + (s.source_train + s.cifar_train) as f64 * 2e-5;
                    (seconds, 0, 0)
                }
                None => (0.0, 0, 0),
            },
            Step::Backbone(name) => {
                let backbone = preset.backbone(name)?;
                match (&backbone.pretrain, synthetic) {
                    (Some(pretrain), Some(s)) => {
                        let macs = forward_macs(&backbone.arch, s.source_size)?;
                        let augmix = pretrain.augment.get("kind").and_then(toml::Value::as_str)
                            == Some("augmix");
                        let jsd = augmix
                            && pretrain
                                .augment
                                .get("jsd")
                                .and_then(toml::Value::as_bool)
                                .unwrap_or(false);
                        let views = if jsd { 3.0 } else { 1.0 };
                        let train = (s.source_train * pretrain.epochs) as u64;
                        let eval = cap(s.source_val) * (1 + conditions);
                        let seconds =
                            (3.0 * views * macs * train as f64 + macs * eval as f64) / rate;
                        (seconds, train, eval)
                    }
                    // Download and import: dominated by the network, not estimated here.
                    _ => (0.0, 0, 0),
                }
            }
            Step::Cell(cell) => {
                let backbone = preset.backbone(&cell.backbone)?;
                let task = preset.task(cell.task)?;
                let spec =
                    task.regime(cell.regime, plan.schedule)
                        .ok_or_else(|| StudyError::Invalid {
                            what: format!("task {}", cell.task),
                            message: format!("no {} schedule for {}", plan.schedule, cell.regime),
                        })?;
                let macs = forward_macs(&backbone.arch, task.image_size)?;
                let (train_split, test_split) = match (synthetic, cell.task) {
                    (Some(s), rtb_results::Task::Cifar10) => (s.cifar_train, s.cifar_test),
                    (_, rtb_results::Task::Cifar10) => (50_000, 10_000),
                    (_, rtb_results::Task::Coco) => (118_287, 5_000),
                    (_, rtb_results::Task::Ade20k) => (20_210, 2_000),
                };
                let train_split = spec
                    .train_images
                    .map_or(train_split, |n| n.min(train_split));
                let train = (train_split * spec.epochs) as u64;
                let eval = cap(test_split) * (1 + conditions);
                // Fixed features: the backbone's forward only (no backward through it).
                let train_factor = match cell.regime {
                    rtb_results::Regime::Fixed => 1.0,
                    rtb_results::Regime::Full => 3.0,
                };
                let seconds = (train_factor * macs * train as f64 + macs * eval as f64) / rate;
                (seconds, train, eval)
            }
            Step::Report => (0.5, 0, 0),
        };
        out.push(StepCost {
            step: step.clone(),
            seconds: seconds + cost.process_overhead_seconds,
            train_images,
            eval_images,
        });
    }
    Ok(out)
}

/// Human-readable duration: `42 s`, `3.5 min`, `2.1 h`.
pub fn format_seconds(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("{seconds:.0} s")
    } else if seconds < 5400.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resnet50_at_224_is_about_four_gmacs() {
        // torchvision's ResNet-50 is 4.1 GMACs at 224² (the fc layer adds 2 M).
        let macs = forward_macs(&toml::Value::String("resnet50".into()), 224).unwrap();
        assert!((macs / 1e9 - 4.1).abs() < 0.15, "{}", macs / 1e9);
        let r18 = forward_macs(&toml::Value::String("resnet18".into()), 224).unwrap();
        assert!((r18 / 1e9 - 1.8).abs() < 0.1, "{}", r18 / 1e9);
    }

    #[test]
    fn swin_t_at_224_is_about_four_and_a_half_gmacs() {
        // Swin-T is 4.5 GFLOPs (multiply-adds) at 224² in the paper's table.
        let macs = forward_macs(&toml::Value::String("swin_t".into()), 224).unwrap();
        assert!((macs / 1e9 - 4.5).abs() < 0.3, "{}", macs / 1e9);
    }

    #[test]
    fn tables_and_names_agree_and_bad_tables_name_the_key() {
        let table: toml::Value = toml::from_str::<toml::Table>(
            "family = 'resnet'\nblock = 'basic'\ndepths = [1, 1, 1, 1]\nstem_width = 16\n\
             widths = [16, 32, 64, 128]\nin_channels = 3",
        )
        .unwrap()
        .into();
        assert_eq!(
            forward_macs(&table, 64).unwrap(),
            forward_macs(&toml::Value::String("resnet_mini".into()), 64).unwrap()
        );
        let bad: toml::Value = toml::from_str::<toml::Table>("family = 'resnet'")
            .unwrap()
            .into();
        let err = forward_macs(&bad, 64).unwrap_err().to_string();
        assert!(err.contains("depths"), "{err}");
        assert!(
            forward_macs(&toml::Value::String("vgg".into()), 64)
                .unwrap_err()
                .to_string()
                .contains("vgg")
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_seconds(42.0), "42 s");
        assert_eq!(format_seconds(210.0), "3.5 min");
        assert_eq!(format_seconds(7560.0), "2.1 h");
    }
}
