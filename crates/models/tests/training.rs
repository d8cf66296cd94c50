//! Training: one cross-entropy step of each tiny model against PyTorch (loss, every
//! parameter's gradient, BatchNorm running statistics), finite-difference gradient checks of
//! every block type in f64, and freezing (what trains gets a gradient, what is frozen none).

mod common;

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use common::{assert_close, golden, load, trainable};
use rtb_models::init::trainable_builder;
use rtb_models::{
    ArchConfig, BlockKind, Freeze, FreezeGroup, Mode, ResNetConfig, SwinConfig, WindowRule,
    read_canonical,
};
use rtb_nn::gradcheck::{GradCheck, check_gradients};
use rtb_nn::loss::{CrossEntropyOptions, cross_entropy};

/// One step against the fixture's `train.*` tensors.
fn check_train_step(arch: &ArchConfig, weights: &str, golden_file: &str) {
    let (_varmap, model) = trainable(arch, weights);
    let gold = load(golden_file);
    let input = &gold["train.input"];
    let target = gold["train.target"].to_dtype(DType::U32).unwrap();
    let out = model.forward(input, Mode::Train { seed: 1 }).unwrap();
    let loss = cross_entropy(
        out.logits.as_ref().unwrap(),
        &target,
        &CrossEntropyOptions::default(),
    )
    .unwrap();
    assert_close("loss", &loss.reshape(1).unwrap(), &gold["train.loss"], 1e-4);
    let grads = loss.backward().unwrap();
    let vars = model.trainable_vars();
    assert!(!vars.is_empty());
    for (name, var) in &vars {
        let grad = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let expected = gold
            .get(&format!("train.grad.{name}"))
            .unwrap_or_else(|| panic!("{name}: not in the fixture"));
        assert_close(&format!("grad of {name}"), grad, expected, 1e-3);
    }
    // Every PyTorch parameter has a counterpart here.
    let n_expected = gold.keys().filter(|k| k.starts_with("train.grad.")).count();
    assert_eq!(vars.len(), n_expected);
    // BatchNorm statistics after the step.
    for p in model.parameters() {
        if !p.kind.is_trainable() {
            let expected = &gold[&format!("train.stat.{}", p.name)];
            assert_close(
                &format!("running statistic {}", p.name),
                &p.tensor,
                expected,
                1e-4,
            );
        }
    }
}

#[test]
fn resnet_train_step_matches_pytorch() {
    check_train_step(
        &ArchConfig::from(ResNetConfig::tiny()),
        "resnet_tiny.safetensors",
        "resnet_tiny_golden.safetensors",
    );
}

#[test]
fn swin_train_step_matches_pytorch() {
    check_train_step(
        &ArchConfig::from(SwinConfig::tiny()),
        "swin_tiny.safetensors",
        "swin_tiny_golden.safetensors",
    );
}

/// A sum over every output with fixed weights, so each output's gradient matters.
fn scalar_of(out: &rtb_models::BackboneOutput) -> Tensor {
    let mut total = Tensor::zeros((), DType::F32, &Device::Cpu).unwrap();
    for (i, level) in out.features.levels.iter().enumerate() {
        let w = ((i + 1) as f64) * 0.1;
        total = (total + (level.sqr().unwrap().mean_all().unwrap() * w).unwrap()).unwrap();
    }
    if let Some(logits) = &out.logits {
        total = (total + logits.sqr().unwrap().mean_all().unwrap()).unwrap();
    }
    total
}

fn gradient_of(grads: &GradStore, tensor: &Tensor) -> Option<f64> {
    grads.get(tensor).map(|g| {
        g.abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    })
}

/// Trains one step under `freeze`: every trainable variable gets a non-zero gradient, every
/// frozen parameter none, and running statistics move only where BatchNorm trains.
fn check_freeze(arch: &ArchConfig, weights: &str, input: &Tensor, freeze: Freeze) {
    let (_varmap, mut model) = trainable(arch, weights);
    model.set_freeze(freeze);
    let before: HashMap<String, Vec<f32>> = model
        .parameters()
        .into_iter()
        .filter(|p| !p.kind.is_trainable())
        .map(|p| {
            (
                p.name,
                p.tensor.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            )
        })
        .collect();
    let out = model.forward(input, Mode::Train { seed: 3 }).unwrap();
    let grads = scalar_of(&out).backward().unwrap();
    let trainable: Vec<String> = model.trainable_vars().into_iter().map(|(n, _)| n).collect();
    for p in model.parameters() {
        let frozen = freeze.group_frozen(p.group);
        let grad = gradient_of(&grads, &p.tensor);
        if !p.kind.is_trainable() {
            // rtb-nn's BatchNorm2d::forward_eval does not detach its running statistics, so in
            // eval mode they may receive a (never used) gradient; they are never trainable.
            assert!(
                !trainable.contains(&p.name),
                "{}: a buffer listed as trainable",
                p.name
            );
            let moved =
                before[&p.name] != p.tensor.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let bn_trains = !frozen && !freeze.norm_eval;
            assert_eq!(
                moved, bn_trains,
                "{}: running statistic moved = {moved}",
                p.name
            );
        } else if frozen {
            assert!(grad.is_none(), "{}: frozen but got a gradient", p.name);
            assert!(
                !trainable.contains(&p.name),
                "{}: frozen but listed as trainable",
                p.name
            );
        } else {
            let g = grad.unwrap_or_else(|| panic!("{}: trains but got no gradient", p.name));
            assert!(g > 0.0, "{}: zero gradient", p.name);
            assert!(
                trainable.contains(&p.name),
                "{}: not listed as trainable",
                p.name
            );
        }
    }
}

fn resnet_input() -> Tensor {
    Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &Device::Cpu).unwrap()
}

fn swin_input() -> Tensor {
    Tensor::randn(0f32, 1.0, (2, 3, 96, 128), &Device::Cpu).unwrap()
}

#[test]
fn resnet_freezing_follows_mmdetection() {
    let arch = ArchConfig::from(ResNetConfig::tiny());
    for freeze in [
        Freeze::none(),
        Freeze::mmdet_resnet(),
        Freeze {
            frozen_stages: Some(0),
            freeze_head: false,
            norm_eval: false,
        },
        Freeze {
            frozen_stages: Some(3),
            freeze_head: true,
            norm_eval: false,
        },
    ] {
        check_freeze(&arch, "resnet_tiny.safetensors", &resnet_input(), freeze);
    }
}

#[test]
fn swin_freezing_follows_mmdetection() {
    let arch = ArchConfig::from(SwinConfig::tiny());
    for freeze in [
        Freeze::none(),
        Freeze {
            frozen_stages: Some(2),
            freeze_head: false,
            norm_eval: false,
        },
    ] {
        check_freeze(&arch, "swin_tiny.safetensors", &swin_input(), freeze);
    }
    // The dense configuration: output norms train with their stage.
    let dense = ArchConfig::from(SwinConfig::tiny().into_dense(0.1));
    let canonical = read_canonical(
        &dense,
        &golden("swin_tiny_backbone_transformers.safetensors"),
        None,
    )
    .unwrap();
    let varmap = VarMap::new();
    let vb = trainable_builder(
        &varmap,
        canonical.tensors.into_iter().collect(),
        0,
        DType::F32,
        &Device::Cpu,
    );
    let mut model = dense.build(&vb).unwrap();
    model.set_freeze(Freeze {
        frozen_stages: Some(1),
        freeze_head: false,
        norm_eval: false,
    });
    let out = model
        .forward(&swin_input(), Mode::Train { seed: 0 })
        .unwrap();
    let grads = scalar_of(&out).backward().unwrap();
    for p in model.parameters() {
        let grad = gradient_of(&grads, &p.tensor);
        match p.group {
            FreezeGroup::Stem | FreezeGroup::Stage(0) => assert!(grad.is_none(), "{}", p.name),
            _ => assert!(grad.is_some_and(|g| g > 0.0), "{}", p.name),
        }
    }
}

#[test]
fn fully_frozen_backbone_records_no_graph() {
    for (arch, weights, input) in [
        (
            ArchConfig::from(ResNetConfig::tiny()),
            "resnet_tiny.safetensors",
            resnet_input(),
        ),
        (
            ArchConfig::from(SwinConfig::tiny()),
            "swin_tiny.safetensors",
            swin_input(),
        ),
    ] {
        let (_varmap, mut model) = trainable(&arch, weights);
        model.set_freeze(Freeze::all());
        assert!(model.trainable_vars().is_empty());
        let out = model.forward(&input, Mode::Train { seed: 0 }).unwrap();
        let grads = scalar_of(&out).backward().unwrap();
        for p in model.parameters() {
            assert!(grads.get(&p.tensor).is_none(), "{}", p.name);
        }
        // And it equals inference mode (BatchNorm and DropPath in eval).
        let eval = model.forward(&input, Mode::Inference).unwrap();
        assert_close(
            "frozen train = inference",
            out.features.c5(),
            eval.features.c5(),
            0.0,
        );
    }
}

#[test]
fn drop_path_is_seeded_and_off_in_eval() {
    let arch = ArchConfig::from(SwinConfig {
        drop_path_rate: 0.5,
        ..SwinConfig::tiny()
    });
    let (_varmap, model) = trainable(&arch, "swin_tiny.safetensors");
    let input = swin_input();
    let run = |mode| model.forward(&input, mode).unwrap().logits.unwrap();
    let a = run(Mode::Train { seed: 7 });
    let b = run(Mode::Train { seed: 7 });
    let c = run(Mode::Train { seed: 8 });
    assert_close("same seed", &a, &b, 0.0);
    assert!(
        common::relative_error(&a, &c) > 1e-3,
        "different seeds drew the same masks"
    );
    let plain = ArchConfig::from(SwinConfig::tiny());
    let (_v, reference) = trainable(&plain, "swin_tiny.safetensors");
    let eval = model.forward(&input, Mode::Eval).unwrap().logits.unwrap();
    let expected = reference
        .forward(&input, Mode::Eval)
        .unwrap()
        .logits
        .unwrap();
    assert_close("eval ignores drop path", &eval, &expected, 0.0);
}

/// Gradient check of a whole f64 model: the input and every trainable parameter.
fn gradcheck_model(
    arch: &ArchConfig,
    input_shape: (usize, usize, usize, usize),
    mode: Mode,
    eps: f64,
) {
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let vb = trainable_builder(&varmap, HashMap::new(), 11, DType::F64, &device);
    let model = arch.build(&vb).unwrap();
    let params = model.parameters();
    let names: Vec<String> = params
        .iter()
        .filter(|p| p.kind.is_trainable())
        .map(|p| p.name.clone())
        .collect();
    let buffers: HashMap<String, Tensor> = params
        .iter()
        .filter(|p| !p.kind.is_trainable())
        .map(|p| (p.name.clone(), p.tensor.copy().unwrap()))
        .collect();
    // A seeded input: the check must be reproducible.
    let image = rtb_models::init::draw(
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
        &input_shape.into(),
        5,
        DType::F64,
        &device,
    )
    .unwrap();
    let mut inputs = vec![image];
    // Parameters off their init (zero biases would put ReLUs of constant channels exactly on
    // their kink), by seeded offsets.
    inputs.extend(
        params
            .iter()
            .filter(|p| p.kind.is_trainable())
            .enumerate()
            .map(|(i, p)| {
                let noise = rtb_models::init::draw(
                    candle_nn::Init::Randn {
                        mean: 0.0,
                        stdev: 0.1,
                    },
                    p.tensor.shape(),
                    100 + i as u64,
                    DType::F64,
                    &device,
                )
                .unwrap();
                (&p.tensor + noise).unwrap()
            }),
    );
    let f = |xs: &[Tensor]| -> candle_core::Result<Tensor> {
        let mut map = buffers
            .iter()
            .map(|(k, v)| (k.clone(), v.copy().unwrap()))
            .collect::<HashMap<_, _>>();
        map.extend(names.iter().cloned().zip(xs[1..].iter().cloned()));
        let model = arch
            .build(&VarBuilder::from_tensors(map, DType::F64, &device))
            .map_err(candle_core::Error::wrap)?;
        let out = model
            .forward(&xs[0], mode)
            .map_err(candle_core::Error::wrap)?;
        let mut parts: Vec<Tensor> = out
            .features
            .levels
            .iter()
            .map(|l| l.flatten_all())
            .collect::<candle_core::Result<_>>()?;
        if let Some(logits) = out.logits {
            parts.push(logits.flatten_all()?);
        }
        Tensor::cat(&parts, 0)
    };
    let cfg = GradCheck {
        max_elements_per_input: 3,
        eps,
        ..GradCheck::default()
    };
    let report = check_gradients(f, &inputs, &cfg).unwrap();
    assert!(report.passed(), "{arch:?}\n{report}");
}

#[test]
fn gradcheck_resnet_blocks() {
    let tiny = ResNetConfig {
        block: BlockKind::Bottleneck,
        depths: [1, 1, 1, 1],
        stem: rtb_models::Stem::ImageNet,
        stem_width: 4,
        widths: [2, 2, 4, 4],
        in_channels: 3,
        num_classes: Some(3),
    };
    // ReLU and max-pool kinks: a small step and few pixels keep steps from crossing one.
    gradcheck_model(
        &ArchConfig::from(tiny.clone()),
        (2, 3, 32, 32),
        Mode::Train { seed: 0 },
        1e-6,
    );
    gradcheck_model(
        &ArchConfig::from(tiny.clone()),
        (1, 3, 32, 32),
        Mode::Eval,
        1e-6,
    );
    let basic = ResNetConfig {
        block: BlockKind::Basic,
        ..tiny
    };
    gradcheck_model(
        &ArchConfig::from(basic.clone()),
        (2, 3, 32, 32),
        Mode::Train { seed: 0 },
        1e-6,
    );
    gradcheck_model(
        &ArchConfig::from(basic.clone()),
        (1, 3, 32, 32),
        Mode::Eval,
        1e-6,
    );
    // The small-image stem (one 3×3 convolution, no pool) of the mini preset's ResNets.
    let small = ResNetConfig {
        stem: rtb_models::Stem::Small { stride: 2 },
        ..basic
    };
    gradcheck_model(
        &ArchConfig::from(small.clone()),
        (2, 3, 16, 16),
        Mode::Train { seed: 0 },
        1e-6,
    );
    gradcheck_model(&ArchConfig::from(small), (1, 3, 16, 16), Mode::Eval, 1e-6);
}

#[test]
fn gradcheck_swin_blocks_both_window_rules() {
    let tiny = SwinConfig {
        embed_dim: 4,
        depths: [2, 2, 2, 2],
        num_heads: [1, 2, 2, 2],
        window_size: 3,
        mlp_ratio: 1.0,
        ..SwinConfig::tiny()
    };
    // eps 1e-5: the checked scalar sums thousands of outputs, whose f64 rounding (~1e-12)
    // would dominate differences over a smaller step (Swin is smooth: no kinks to cross).
    gradcheck_model(
        &ArchConfig::from(SwinConfig {
            num_classes: Some(3),
            ..tiny.clone()
        }),
        (1, 3, 96, 128),
        Mode::Eval,
        1e-5,
    );
    let dense = SwinConfig {
        window_rule: WindowRule::Padded,
        ..tiny.into_dense(0.0)
    };
    gradcheck_model(&ArchConfig::from(dense), (1, 3, 128, 160), Mode::Eval, 1e-5);
}

/// The mini preset's ResNet keeps a 32-px image's detail: stage 1 runs at 16×16 (the ImageNet
/// stem left it 8×8), the strides it reports match its feature maps, and the cost estimate
/// counts the 3×3 stem (hand count: stem 110,592; stage 1 1,179,648; stages 2–4 917,504 each).
#[test]
fn resnet_mini_small_stem_shapes_strides_and_cost() {
    let arch = ArchConfig::from_name("resnet_mini").unwrap();
    let varmap = VarMap::new();
    let vb = trainable_builder(&varmap, HashMap::new(), 3, DType::F32, &Device::Cpu);
    let model = arch.build(&vb).unwrap();
    let xs = Tensor::zeros((2, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
    let out = model.forward(&xs, Mode::Eval).unwrap();
    let sides: Vec<usize> = out
        .features
        .levels
        .iter()
        .map(|level| level.dims4().unwrap().3)
        .collect();
    assert_eq!(sides, [16, 8, 4, 2]);
    assert_eq!(model.strides(), [2, 4, 8, 16]);
    assert_eq!(model.size_divisor(), 16);
    assert_eq!(arch.forward_macs(32, 32).unwrap(), 4_042_752.0);
    // An input smaller than the divisor is an error, not a panic.
    let small = Tensor::zeros((1, 3, 8, 8), DType::F32, &Device::Cpu).unwrap();
    assert!(model.forward(&small, Mode::Eval).is_err());
}

/// The convolutional stem (`stem_channels`) keeps Swin's strides, names its convolutions
/// `patch_embed.stem.{i}` / `patch_embed.proj` in the stem's freezing unit, is counted in the
/// cost estimate (hand count below), passes a gradient check, and refuses patch sizes it
/// cannot halve down to.
#[test]
fn swin_conv_stem_strides_keys_cost_and_gradients() {
    let plain = SwinConfig {
        embed_dim: 8,
        num_classes: Some(3),
        ..SwinConfig::tiny()
    };
    let stem = SwinConfig {
        stem_channels: Some(4),
        ..plain.clone()
    };
    let arch = ArchConfig::from(stem.clone());
    let varmap = VarMap::new();
    let vb = trainable_builder(&varmap, HashMap::new(), 3, DType::F32, &Device::Cpu);
    let model = arch.build(&vb).unwrap();
    let xs = Tensor::zeros((2, 3, 64, 32), DType::F32, &Device::Cpu).unwrap();
    let out = model.forward(&xs, Mode::Eval).unwrap();
    let sides: Vec<(usize, usize)> = out
        .features
        .levels
        .iter()
        .map(|level| (level.dims4().unwrap().2, level.dims4().unwrap().3))
        .collect();
    assert_eq!(sides, [(16, 8), (8, 4), (4, 2), (2, 1)]);
    assert_eq!(model.strides(), [4, 8, 16, 32]);
    let shapes: HashMap<String, (Vec<usize>, FreezeGroup)> = model
        .parameters()
        .into_iter()
        .map(|p| (p.name, (p.tensor.dims().to_vec(), p.group)))
        .collect();
    assert_eq!(
        shapes["patch_embed.stem.0.weight"],
        (vec![4, 3, 3, 3], FreezeGroup::Stem)
    );
    assert_eq!(
        shapes["patch_embed.proj.weight"],
        (vec![8, 4, 3, 3], FreezeGroup::Stem)
    );
    assert!(!shapes.contains_key("patch_embed.stem.1.weight"));
    // 32×32: stem.0 3→4 on 16×16 (27,648) and proj 4→8 on 8×8 (18,432) replace the 4×4
    // patch projection 3→8 on 8×8 (24,576).
    let plain_arch = ArchConfig::from(plain.clone());
    let extra = arch.forward_macs(32, 32).unwrap() - plain_arch.forward_macs(32, 32).unwrap();
    assert_eq!(extra, 27_648.0 + 18_432.0 - 24_576.0);
    for bad in [
        SwinConfig {
            patch_size: 3,
            ..stem.clone()
        },
        SwinConfig {
            stem_channels: Some(0),
            ..stem.clone()
        },
    ] {
        let varmap = VarMap::new();
        let vb = trainable_builder(&varmap, HashMap::new(), 3, DType::F32, &Device::Cpu);
        let err = ArchConfig::from(bad).build(&vb).err().unwrap().to_string();
        assert!(err.contains("stem_channels"), "{err}");
    }
    let small = SwinConfig {
        embed_dim: 4,
        depths: [1, 1, 1, 1],
        num_heads: [1, 1, 2, 2],
        mlp_ratio: 1.0,
        stem_channels: Some(2),
        ..plain
    };
    gradcheck_model(&ArchConfig::from(small), (1, 3, 32, 32), Mode::Eval, 1e-5);
}
