//! ConvNeXt against timm 1.0.31 and transformers 5.23 (fixtures from
//! `tests/golden/make_golden_convnext.py`): forward parity (C2..C5, pooled, logits within 1e-4
//! of the reference's scale), one training step (loss, every parameter's and the input's
//! gradient within 1e-3), imports from the three key layouts, the dense-task norms, freezing,
//! drop path, and finite-difference gradient checks in f64.
//!
//! The full-size check (ConvNeXt-T at 224²) runs when `RTB_FULL_PARITY_DIR` names a folder
//! written by `make_golden_convnext.py --full`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use common::{assert_close, golden, load};
use rtb_models::init::trainable_builder;
use rtb_models::weights::{canonicalize, check_keys, expected_keys, read_weights};
use rtb_models::{
    Backbone, BackboneOutput, ConvNeXt, ConvNeXtConfig, Freeze, FreezeGroup, Mode, ParamKind,
};
use rtb_nn::gradcheck::{GradCheck, check_gradients};
use rtb_nn::loss::{CrossEntropyOptions, cross_entropy};

const TOL: f64 = 1e-4;
const GOLDEN: &str = "convnext_tiny_golden.safetensors";

/// A weights file (any format, any registered layout) → its layout's name and canonical
/// tensors, through the registry like every import.
fn read_canonical(path: &Path) -> (&'static str, BTreeMap<String, Tensor>) {
    let file = read_weights(path, None).unwrap();
    let canonical = canonicalize(&path.display().to_string(), file.tensors).unwrap();
    assert_eq!(canonical.layout.family, "convnext");
    (canonical.layout.name, canonical.tensors)
}

/// Builds `cfg` from canonical tensors that must fit it exactly (plain tensors: inference).
fn build(cfg: &ConvNeXtConfig, tensors: BTreeMap<String, Tensor>) -> ConvNeXt {
    let expected = expected_keys(|vb| ConvNeXt::new(cfg, vb).map(|_| ())).unwrap();
    let report = check_keys(&expected, &tensors);
    assert!(report.is_clean(), "{report}");
    let map: HashMap<String, Tensor> = tensors.into_iter().collect();
    ConvNeXt::new(
        cfg,
        &VarBuilder::from_tensors(map, DType::F32, &Device::Cpu),
    )
    .unwrap()
}

fn tiny_from(file: &str) -> ConvNeXt {
    build(&ConvNeXtConfig::tiny(), read_canonical(&golden(file)).1)
}

/// A trainable tiny model (every tensor a `Var`) from the timm fixture.
fn trainable(cfg: &ConvNeXtConfig, file: &str) -> (VarMap, ConvNeXt) {
    let (_, tensors) = read_canonical(&golden(file));
    let varmap = VarMap::new();
    let vb = trainable_builder(
        &varmap,
        tensors.into_iter().collect(),
        0,
        DType::F32,
        &Device::Cpu,
    );
    let model = ConvNeXt::new(cfg, &vb).unwrap();
    (varmap, model)
}

/// Prints a measured error (visible with `--nocapture`), so reports can quote it.
#[allow(clippy::print_stderr)]
fn report(what: &str, actual: &Tensor, expected: &Tensor) {
    eprintln!(
        "{what}: relative error {:.2e}",
        common::relative_error(actual, expected)
    );
}

fn check(model: &ConvNeXt, gold: &HashMap<String, Tensor>, prefix: &str) {
    let input = &gold[&format!("{prefix}.input")];
    let out = model.forward(input, Mode::Inference).unwrap();
    for (i, level) in out.features.levels.iter().enumerate() {
        let name = format!("{prefix}.c{}", i + 2);
        report(&name, level, &gold[&name]);
        assert_close(&name, level, &gold[&name], TOL);
    }
    for (name, tensor) in [("pooled", &out.pooled), ("logits", &out.logits)] {
        let name = format!("{prefix}.{name}");
        let tensor = tensor.as_ref().expect(&name);
        report(&name, tensor, &gold[&name]);
        assert_close(&name, tensor, &gold[&name], TOL);
    }
}

#[test]
fn forward_matches_timm_square_and_nonsquare() {
    let model = tiny_from("convnext_tiny.safetensors");
    let gold = load(GOLDEN);
    check(&model, &gold, "square");
    check(&model, &gold, "nonsquare");
    assert_eq!(model.out_channels(), [8, 16, 16, 32]);
    assert_eq!(model.num_features(), Some(32));
    assert_eq!(model.num_classes(), Some(5));
    assert_eq!(model.arch_name(), "convnext");
}

#[test]
fn eval_mode_with_graph_equals_inference() {
    let model = tiny_from("convnext_tiny.safetensors");
    let input = &load(GOLDEN)["nonsquare.input"];
    let a = model.forward(input, Mode::Eval).unwrap();
    let b = model.forward(input, Mode::Inference).unwrap();
    assert_close(
        "logits",
        a.logits.as_ref().unwrap(),
        b.logits.as_ref().unwrap(),
        0.0,
    );
}

#[test]
#[allow(clippy::print_stderr)] // Reports the worst gradient error.
fn train_step_matches_pytorch() {
    let (_varmap, model) = trainable(&ConvNeXtConfig::tiny(), "convnext_tiny.safetensors");
    let gold = load(GOLDEN);
    let input = Var::from_tensor(&gold["train.input"]).unwrap();
    let target = gold["train.target"].to_dtype(DType::U32).unwrap();
    let out = model
        .forward(input.as_tensor(), Mode::Train { seed: 1 })
        .unwrap();
    let loss = cross_entropy(
        out.logits.as_ref().unwrap(),
        &target,
        &CrossEntropyOptions::default(),
    )
    .unwrap();
    report("loss", &loss.reshape(1).unwrap(), &gold["train.loss"]);
    assert_close("loss", &loss.reshape(1).unwrap(), &gold["train.loss"], 1e-4);
    let grads = loss.backward().unwrap();
    report(
        "input gradient",
        grads.get(input.as_tensor()).expect("input gradient"),
        &gold["train.grad_input"],
    );
    assert_close(
        "input gradient",
        grads.get(input.as_tensor()).expect("input gradient"),
        &gold["train.grad_input"],
        1e-3,
    );
    let vars = model.trainable_vars();
    let mut worst = 0f64;
    for (name, var) in &vars {
        let grad = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let expected = gold
            .get(&format!("train.grad.{name}"))
            .unwrap_or_else(|| panic!("{name}: not in the fixture"));
        worst = worst.max(common::relative_error(grad, expected));
        assert_close(&format!("grad of {name}"), grad, expected, 1e-3);
    }
    eprintln!("parameter gradients: worst relative error {worst:.2e}");
    // Every PyTorch parameter has a counterpart here.
    let n_expected = gold.keys().filter(|k| k.starts_with("train.grad.")).count();
    assert_eq!(vars.len(), n_expected);
}

#[test]
fn every_layout_imports_to_the_same_canonical_tensors() {
    let (layout, timm) = read_canonical(&golden("convnext_tiny.safetensors"));
    assert_eq!(layout, "timm_convnext");
    let same = |what: &str, other: &BTreeMap<String, Tensor>, keys: &[&String]| {
        for key in keys {
            let a = &timm[*key];
            let b = other
                .get(*key)
                .unwrap_or_else(|| panic!("{what}: {key} missing"));
            assert_close(&format!("{what}: {key}"), b, a, 0.0);
        }
    };
    let all: Vec<&String> = timm.keys().collect();
    for (file, expected_layout) in [
        ("convnext_tiny_fb.pth", "fb_convnext"),
        (
            "convnext_tiny_transformers.safetensors",
            "transformers_convnext",
        ),
    ] {
        let (layout, tensors) = read_canonical(&golden(file));
        assert_eq!(layout, expected_layout, "{file}");
        assert_eq!(
            tensors.keys().collect::<Vec<_>>(),
            all,
            "{file}: key sets differ"
        );
        same(file, &tensors, &all);
    }
    // ConvNextBackbone: no head, the dense norms instead.
    let file = "convnext_tiny_backbone_transformers.safetensors";
    let (layout, tensors) = read_canonical(&golden(file));
    assert_eq!(layout, "transformers_convnext");
    let body: Vec<&String> = all
        .iter()
        .copied()
        .filter(|k| !k.starts_with("head."))
        .collect();
    same(file, &tensors, &body);
    let norms: Vec<&String> = tensors.keys().filter(|k| !timm.contains_key(*k)).collect();
    let expected: Vec<String> = (0..4)
        .flat_map(|i| [format!("norm{i}.bias"), format!("norm{i}.weight")])
        .collect();
    assert_eq!(norms, expected.iter().collect::<Vec<_>>());
    // And the imported models compute what timm does.
    let gold = load(GOLDEN);
    check(&tiny_from("convnext_tiny_fb.pth"), &gold, "square");
    check(
        &tiny_from("convnext_tiny_transformers.safetensors"),
        &gold,
        "square",
    );
}

#[test]
fn other_architectures_are_not_taken_for_convnext() {
    // A Swin file is a Swin, and a ConvNeXt file asked for as a Swin is an error naming it.
    let file = read_weights(&golden("swin_tiny.safetensors"), None).unwrap();
    let canonical = canonicalize("swin_tiny.safetensors", file.tensors).unwrap();
    assert_eq!(canonical.layout.family, "swin");
    let swin = rtb_models::ArchConfig::from_name("swin_tiny").unwrap();
    let err = rtb_models::read_canonical(&swin, &golden("convnext_tiny.safetensors"), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("convnext_tiny.safetensors") && err.contains("convnext"),
        "{err}"
    );
}

#[test]
fn dense_norms_match_transformers_backbone() {
    let cfg = ConvNeXtConfig::tiny().into_dense(0.0);
    let (_, tensors) = read_canonical(&golden("convnext_tiny_backbone_transformers.safetensors"));
    let model = build(&cfg, tensors);
    let gold = load(GOLDEN);
    let out = model
        .forward(&gold["nonsquare.input"], Mode::Inference)
        .unwrap();
    for (i, level) in out.features.levels.iter().enumerate() {
        let name = format!("dense.c{}", i + 2);
        assert_close(&name, level, &gold[&name], TOL);
    }
    assert!(out.pooled.is_none() && out.logits.is_none());
    assert_eq!(model.num_features(), None);
    // The norms matter: without them C2 is the raw stage output, which differs.
    assert!(common::relative_error(&out.features.levels[0], &gold["nonsquare.c2"]) > 1e-2);
}

#[test]
fn parameters_have_the_right_kinds_and_groups() {
    let model = tiny_from("convnext_tiny.safetensors");
    let params = model.parameters();
    let (_, timm) = read_canonical(&golden("convnext_tiny.safetensors"));
    assert_eq!(params.len(), timm.len(), "one parameter per checkpoint key");
    for p in &params {
        assert!(timm.contains_key(&p.name), "{}", p.name);
        assert!(p.kind.is_trainable(), "{}", p.name);
        let expected_kind = if p.name.ends_with(".gamma") {
            ParamKind::LayerScale
        } else if p.name.starts_with("stem.1.")
            || p.name.contains(".downsample.0.")
            || p.name.contains(".norm.")
        {
            if p.name.ends_with("weight") {
                ParamKind::NormWeight
            } else {
                ParamKind::NormBias
            }
        } else if p.name.ends_with("weight") {
            ParamKind::Weight
        } else {
            ParamKind::Bias
        };
        assert_eq!(p.kind, expected_kind, "{}", p.name);
        let expected_group = if p.name.starts_with("stem.") {
            FreezeGroup::Stem
        } else if p.name.starts_with("head.") {
            FreezeGroup::Head
        } else {
            let stage: usize = p.name.split('.').nth(1).unwrap().parse().unwrap();
            FreezeGroup::Stage(stage)
        };
        assert_eq!(p.group, expected_group, "{}", p.name);
    }
    assert_eq!(
        params
            .iter()
            .filter(|p| p.kind == ParamKind::LayerScale)
            .count(),
        5
    );
}

/// A sum over every output with fixed weights, so each output's gradient matters.
fn scalar_of(out: &BackboneOutput) -> Tensor {
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

fn input() -> Tensor {
    rtb_models::init::draw(
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
        &(2, 3, 64, 96).into(),
        9,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap()
}

/// Trains one step under `freeze`: every trainable parameter gets a non-zero gradient, every
/// frozen one none, and `trainable_vars` lists exactly the former.
fn check_freeze(cfg: &ConvNeXtConfig, file: &str, freeze: Freeze) {
    let (_varmap, mut model) = trainable(cfg, file);
    model.set_freeze(freeze);
    let out = model.forward(&input(), Mode::Train { seed: 3 }).unwrap();
    let grads = scalar_of(&out).backward().unwrap();
    let trainable: Vec<String> = model.trainable_vars().into_iter().map(|(n, _)| n).collect();
    let mut n_frozen = 0;
    for p in model.parameters() {
        let grad = gradient_of(&grads, &p.tensor);
        if freeze.group_frozen(p.group) {
            n_frozen += 1;
            assert!(grad.is_none(), "{}: frozen but got a gradient", p.name);
            assert!(
                !trainable.contains(&p.name),
                "{}: frozen but listed",
                p.name
            );
        } else {
            let g = grad.unwrap_or_else(|| panic!("{}: trains but got no gradient", p.name));
            assert!(g > 0.0, "{}: zero gradient", p.name);
            assert!(trainable.contains(&p.name), "{}: not listed", p.name);
        }
    }
    assert_eq!(trainable.len() + n_frozen, model.parameters().len());
}

#[test]
fn freezing_follows_mmdetection() {
    let cfg = ConvNeXtConfig::tiny();
    for freeze in [
        Freeze::none(),
        Freeze {
            frozen_stages: Some(0),
            freeze_head: false,
            norm_eval: false,
        },
        Freeze {
            frozen_stages: Some(2),
            freeze_head: false,
            norm_eval: true,
        },
        Freeze {
            frozen_stages: Some(3),
            freeze_head: true,
            norm_eval: false,
        },
    ] {
        check_freeze(&cfg, "convnext_tiny.safetensors", freeze);
    }
    // The dense configuration: the output norms train (and freeze) with their stage.
    check_freeze(
        &ConvNeXtConfig::tiny().into_dense(0.1),
        "convnext_tiny_backbone_transformers.safetensors",
        Freeze {
            frozen_stages: Some(1),
            freeze_head: false,
            norm_eval: false,
        },
    );
}

#[test]
fn fully_frozen_backbone_records_no_graph() {
    let (_varmap, mut model) = trainable(
        &ConvNeXtConfig {
            drop_path_rate: 0.3,
            ..ConvNeXtConfig::tiny()
        },
        "convnext_tiny.safetensors",
    );
    model.set_freeze(Freeze::all());
    assert!(model.trainable_vars().is_empty());
    let xs = input();
    let out = model.forward(&xs, Mode::Train { seed: 0 }).unwrap();
    let grads = scalar_of(&out).backward().unwrap();
    for p in model.parameters() {
        assert!(grads.get(&p.tensor).is_none(), "{}", p.name);
    }
    // Frozen parts run in eval mode: no drop path.
    let eval = model.forward(&xs, Mode::Inference).unwrap();
    assert_close(
        "frozen train = inference",
        out.logits.as_ref().unwrap(),
        eval.logits.as_ref().unwrap(),
        0.0,
    );
}

#[test]
fn drop_path_is_seeded_and_off_in_eval() {
    let cfg = ConvNeXtConfig {
        drop_path_rate: 0.5,
        ..ConvNeXtConfig::tiny()
    };
    let (_varmap, model) = trainable(&cfg, "convnext_tiny.safetensors");
    let xs = input();
    let run = |mode| model.forward(&xs, mode).unwrap().logits.unwrap();
    let a = run(Mode::Train { seed: 7 });
    let b = run(Mode::Train { seed: 7 });
    let c = run(Mode::Train { seed: 8 });
    assert_close("same seed", &a, &b, 0.0);
    assert!(
        common::relative_error(&a, &c) > 1e-3,
        "different seeds drew the same masks"
    );
    let (_v, reference) = trainable(&ConvNeXtConfig::tiny(), "convnext_tiny.safetensors");
    let expected = reference.forward(&xs, Mode::Eval).unwrap().logits.unwrap();
    assert_close("eval ignores drop path", &run(Mode::Eval), &expected, 0.0);
    assert!(
        common::relative_error(&a, &expected) > 1e-3,
        "drop path changed nothing in train mode"
    );
}

#[test]
fn bad_inputs_are_errors() {
    let model = tiny_from("convnext_tiny.safetensors");
    let xs = Tensor::zeros((1, 3, 64, 80), DType::F32, &Device::Cpu).unwrap();
    let err = model.forward(&xs, Mode::Inference).unwrap_err().to_string();
    assert!(
        err.contains("multiples of 32") && err.contains("80"),
        "{err}"
    );
    let xs = Tensor::zeros((1, 1, 64, 64), DType::F32, &Device::Cpu).unwrap();
    let err = model.forward(&xs, Mode::Inference).unwrap_err().to_string();
    assert!(err.contains("3 channels"), "{err}");
    let bad = ConvNeXtConfig {
        kernel_size: 4,
        ..ConvNeXtConfig::tiny()
    };
    let err = ConvNeXt::new(&bad, &VarBuilder::zeros(DType::F32, &Device::Cpu))
        .unwrap_err()
        .to_string();
    assert!(err.contains("kernel_size"), "{err}");
}

#[test]
fn config_round_trips_through_json() {
    for cfg in [
        ConvNeXtConfig::convnext_t(),
        ConvNeXtConfig::convnext_t_dense(0.4),
        ConvNeXtConfig::mini(),
        ConvNeXtConfig {
            layer_scale_init: None,
            ..ConvNeXtConfig::tiny()
        },
    ] {
        let json = serde_json::to_string(&cfg).unwrap();
        let back: ConvNeXtConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cfg);
    }
    let t = ConvNeXtConfig::convnext_t();
    assert_eq!((t.depths, t.dims), ([3, 3, 9, 3], [96, 192, 384, 768]));
    let keys = expected_keys(|vb| ConvNeXt::new(&t, vb).map(|_| ())).unwrap();
    let count: usize = keys.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    // timm's convnext_tiny: 28,589,128 parameters.
    assert_eq!(count, 28_589_128);
}

/// Gradient check of a whole f64 model: the input and every parameter.
fn gradcheck_model(cfg: &ConvNeXtConfig, input_shape: (usize, usize, usize, usize), mode: Mode) {
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let vb = trainable_builder(&varmap, HashMap::new(), 11, DType::F64, &device);
    let model = ConvNeXt::new(cfg, &vb).unwrap();
    let params = model.parameters();
    let names: Vec<String> = params.iter().map(|p| p.name.clone()).collect();
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
    // Parameters off their init (layer scales of 1e-6 would hide the blocks), by seeded
    // offsets.
    inputs.extend(params.iter().enumerate().map(|(i, p)| {
        let noise = rtb_models::init::draw(
            candle_nn::Init::Randn {
                mean: 0.0,
                stdev: 0.3,
            },
            p.tensor.shape(),
            100 + i as u64,
            DType::F64,
            &device,
        )
        .unwrap();
        (&p.tensor + noise).unwrap()
    }));
    let f = |xs: &[Tensor]| -> candle_core::Result<Tensor> {
        let map: HashMap<String, Tensor> =
            names.iter().cloned().zip(xs[1..].iter().cloned()).collect();
        let model = ConvNeXt::new(cfg, &VarBuilder::from_tensors(map, DType::F64, &device))
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
    let check = GradCheck {
        max_elements_per_input: 3,
        eps: 1e-5,
        ..GradCheck::default()
    };
    let report = check_gradients(f, &inputs, &check).unwrap();
    assert!(report.passed(), "{cfg:?}\n{report}");
}

#[test]
fn gradcheck_convnext_blocks() {
    let tiny = ConvNeXtConfig {
        depths: [1, 1, 1, 1],
        dims: [4, 4, 8, 8],
        kernel_size: 3,
        mlp_ratio: 2.0,
        num_classes: Some(3),
        ..ConvNeXtConfig::tiny()
    };
    // Everything is smooth (exact GELU, LayerNorm): eps 1e-5 keeps f64 rounding of the
    // checked sum below the difference quotient's error.
    gradcheck_model(&tiny, (1, 3, 32, 64), Mode::Eval);
    // Train mode with drop path: the masks are fixed by the seed, so the function is too.
    gradcheck_model(
        &ConvNeXtConfig {
            drop_path_rate: 0.5,
            ..tiny.clone()
        },
        (2, 3, 32, 32),
        Mode::Train { seed: 4 },
    );
    gradcheck_model(&tiny.into_dense(0.0), (1, 3, 32, 64), Mode::Eval);
}

#[test]
fn full_size_convnext_t_matches_timm_when_requested() {
    let Some(dir) = std::env::var_os("RTB_FULL_PARITY_DIR") else {
        return;
    };
    let dir = Path::new(&dir);
    let (_, tensors) = read_canonical(&dir.join("convnext_t.safetensors"));
    let model = build(&ConvNeXtConfig::convnext_t(), tensors);
    assert_eq!(model.arch_name(), "convnext_t");
    let gold =
        candle_core::safetensors::load(dir.join("convnext_t_golden.safetensors"), &Device::Cpu)
            .unwrap();
    check(&model, &gold, "square");
}
