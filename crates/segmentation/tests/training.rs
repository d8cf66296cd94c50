//! Gradients: finite differences in f64 through ConvModule, the heads and the loss; which
//! parameters train under each regime; seeded dropout; errors on bad input.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rtb_models::init::trainable_builder;
use rtb_models::{ArchConfig, Mode, ResNetConfig};
use rtb_nn::gradcheck::{GradCheck, check_gradients};
use rtb_segmentation::{
    ConvModule, Dropout2d, FcnHead, Regime, SegError, SlideConfig, UperHead, UperNet,
    UperNetConfig, argmax, slide_windows,
};

fn to_candle(e: SegError) -> candle_core::Error {
    candle_core::Error::wrap(e)
}

fn randn(shape: &[usize], seed: u64) -> Tensor {
    rtb_models::init::draw(
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
        &shape.into(),
        seed,
        DType::F64,
        &Device::Cpu,
    )
    .unwrap()
}

#[test]
fn conv_module_gradients_match_finite_differences() {
    // Input, convolution weight and BatchNorm affine parameters, in train and eval mode.
    let inputs = vec![
        randn(&[2, 3, 5, 4], 1),
        (randn(&[4, 3, 3, 3], 2) * 0.3).unwrap(),
        randn(&[4], 3).affine(0.1, 1.0).unwrap(),
        (randn(&[4], 4) * 0.1).unwrap(),
    ];
    for mode in [Mode::Train { seed: 0 }, Mode::Eval] {
        let f = |xs: &[Tensor]| {
            let mut map = HashMap::new();
            map.insert("m.conv.weight".to_string(), xs[1].clone());
            map.insert("m.batch_norm.weight".to_string(), xs[2].clone());
            map.insert("m.batch_norm.bias".to_string(), xs[3].clone());
            map.insert(
                "m.batch_norm.running_mean".to_string(),
                Tensor::new(&[0.1f64, -0.2, 0.0, 0.3], &Device::Cpu)?,
            );
            map.insert(
                "m.batch_norm.running_var".to_string(),
                Tensor::new(&[0.9f64, 1.2, 0.7, 1.0], &Device::Cpu)?,
            );
            let vb = VarBuilder::from_tensors(map, DType::F64, &Device::Cpu);
            let module = ConvModule::new(3, 4, 3, 1, &vb.pp("m")).map_err(to_candle)?;
            module.forward(&xs[0], mode).map_err(to_candle)
        };
        let report = check_gradients(f, &inputs, &GradCheck::default()).unwrap();
        assert!(report.passed(), "{mode:?}\n{report}");
    }
}

fn f64_builder(varmap: &VarMap, seed: u64) -> VarBuilder<'static> {
    trainable_builder(varmap, HashMap::new(), seed, DType::F64, &Device::Cpu)
}

#[test]
fn heads_gradients_match_finite_differences() {
    // Train mode: batch statistics and a seeded dropout mask (fixed by the seed, so the
    // function is deterministic), through PPM, top-down fusion and every resize.
    let varmap = VarMap::new();
    let vb = f64_builder(&varmap, 5);
    let channels = [4, 6, 8, 10];
    let head = UperHead::new(&channels, 6, &[1, 2, 3, 6], 3, 0.3, &vb.pp("decode_head")).unwrap();
    let aux = FcnHead::new(8, 5, 1, true, (3, 0.3), &vb.pp("auxiliary_head")).unwrap();
    let feats: Vec<Tensor> = (0..4)
        .map(|i| randn(&[2, channels[i], 12 >> i, 10 >> i], 10 + i as u64))
        .collect();
    let check = GradCheck {
        max_elements_per_input: 64,
        ..GradCheck::default()
    };
    for mode in [Mode::Train { seed: 3 }, Mode::Eval] {
        let f = |xs: &[Tensor]| head.forward(xs, mode, 9).map_err(to_candle);
        let report = check_gradients(f, &feats, &check).unwrap();
        assert!(report.passed(), "UperHead {mode:?}\n{report}");
        let f = |xs: &[Tensor]| aux.forward(&xs[0], mode, 9).map_err(to_candle);
        let report = check_gradients(f, &feats[2..3], &check).unwrap();
        assert!(report.passed(), "FcnHead {mode:?}\n{report}");
    }
}

#[test]
fn training_loss_gradient_matches_finite_differences() {
    // The loss with respect to the images, through a tiny ResNet, both heads, the upsampling
    // to the labels and the cross-entropy with ignored pixels (eval-mode BatchNorm in the
    // backbone would hide nothing: the full-network regime runs it in train mode).
    let varmap = VarMap::new();
    let vb = f64_builder(&varmap, 6);
    let arch = ArchConfig::from(ResNetConfig::tiny().without_classifier());
    let mut cfg = UperNetConfig::tiny();
    cfg.channels = 6;
    let model = UperNet::build(&cfg, &arch, &vb).unwrap();
    let labels: Vec<u32> = (0..2 * 32 * 32)
        .map(|i| if i % 7 == 0 { 255 } else { (i % 5) as u32 })
        .collect();
    let labels = Tensor::from_vec(labels, (2, 32, 32), &Device::Cpu).unwrap();
    let images = randn(&[2, 3, 32, 32], 20);
    let f = |xs: &[Tensor]| {
        let losses = model.forward_train(&xs[0], &labels, 4).map_err(to_candle)?;
        Ok(losses.total)
    };
    let check = GradCheck {
        max_elements_per_input: 48,
        ..GradCheck::default()
    };
    let report = check_gradients(f, &[images], &check).unwrap();
    assert!(report.passed(), "{report}");
}

fn labels_for(n: usize, h: usize, w: usize) -> Tensor {
    let labels: Vec<u8> = (0..n * h * w)
        .map(|i| if i % 11 == 0 { 255 } else { (i % 5) as u8 })
        .collect();
    Tensor::from_vec(labels, (n, h, w), &Device::Cpu).unwrap()
}

fn nonzero(t: &Tensor) -> bool {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
        > 0.0
}

fn check_regime(arch: &ArchConfig, regime: Regime) {
    let varmap = VarMap::new();
    let vb = trainable_builder(&varmap, HashMap::new(), 1, DType::F32, &Device::Cpu);
    let mut model = UperNet::build(&UperNetConfig::tiny(), arch, &vb).unwrap();
    model.set_regime(regime);
    let images = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &Device::Cpu).unwrap();
    let backbone_stats: Vec<(String, Vec<f32>)> = model
        .parameters()
        .into_iter()
        .filter(|p| p.name.starts_with("backbone.") && !p.kind.is_trainable())
        .map(|p| (p.name, p.tensor.to_vec1().unwrap()))
        .collect();
    let losses = model
        .forward_train(&images, &labels_for(2, 64, 64), 3)
        .unwrap();
    let grads = losses.total.backward().unwrap();

    let trainable = model.trainable_vars();
    let names: Vec<&str> = trainable.iter().map(|(n, _)| n.as_str()).collect();
    for (name, var) in &trainable {
        let grad = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{regime:?}: {name} trains but has no gradient"));
        assert!(nonzero(grad), "{regime:?}: {name} has an all-zero gradient");
    }
    for p in model.parameters() {
        let listed = names.contains(&p.name.as_str());
        if !listed {
            assert!(
                grads.get(&p.tensor).is_none(),
                "{regime:?}: {} is frozen (or a buffer) but has a gradient",
                p.name
            );
        }
        let expect_trains = p.kind.is_trainable()
            && (regime == Regime::FullNetwork || !p.name.starts_with("backbone."));
        assert_eq!(listed, expect_trains, "{regime:?}: {}", p.name);
    }
    // A frozen backbone runs in inference mode: its BatchNorm statistics do not move.
    if regime == Regime::FixedFeature {
        let params: HashMap<String, Tensor> = model
            .parameters()
            .into_iter()
            .map(|p| (p.name, p.tensor))
            .collect();
        for (name, before) in backbone_stats {
            assert_eq!(params[&name].to_vec1::<f32>().unwrap(), before, "{name}");
        }
    }
}

#[test]
fn every_trainable_parameter_gets_a_gradient_and_frozen_ones_none() {
    let resnet = ArchConfig::from(ResNetConfig::tiny().without_classifier());
    let swin = common::swin_arch();
    for arch in [&resnet, &swin] {
        check_regime(arch, Regime::FixedFeature);
        check_regime(arch, Regime::FullNetwork);
    }
}

#[test]
fn dropout_draws_come_from_the_seed() {
    let varmap = VarMap::new();
    let vb = trainable_builder(&varmap, HashMap::new(), 2, DType::F32, &Device::Cpu);
    let arch = ArchConfig::from(ResNetConfig::tiny().without_classifier());
    let mut cfg = UperNetConfig::tiny();
    cfg.dropout = 0.5;
    let mut model = UperNet::build(&cfg, &arch, &vb).unwrap();
    model.set_regime(Regime::FixedFeature);
    let images = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &Device::Cpu).unwrap();
    let labels = labels_for(2, 64, 64);
    let loss = |seed| {
        model
            .forward_train(&images, &labels, seed)
            .unwrap()
            .decode
            .to_scalar::<f32>()
            .unwrap()
    };
    assert_eq!(loss(5), loss(5));
    assert_ne!(loss(5), loss(6));

    let dropout = Dropout2d::new(0.1).unwrap();
    let mask = dropout.keep_mask(100, 100, 1);
    let dropped = mask.iter().filter(|k| !**k).count();
    assert!((700..1300).contains(&dropped), "{dropped} of 10000 dropped");
    let xs = Tensor::ones((1, 2, 2, 2), DType::F32, &Device::Cpu).unwrap();
    let ys = Dropout2d::new(0.5)
        .unwrap()
        .forward_with_mask(&xs, &[true, false])
        .unwrap();
    assert_eq!(
        ys.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        [2., 2., 2., 2., 0., 0., 0., 0.]
    );
    assert!(Dropout2d::new(1.0).is_err());
}

#[test]
fn slide_windows_follow_mmseg() {
    // ADE20K's test size after the keep-ratio resize: 512×683 → two crops, the second one
    // ending at the right edge.
    let ade = SlideConfig::ade20k();
    assert_eq!(
        slide_windows((512, 683), &ade),
        [(0, 512, 0, 512), (0, 512, 171, 683)]
    );
    // An image smaller than the crop is one window, not padded.
    assert_eq!(slide_windows((300, 400), &ade), [(0, 300, 0, 400)]);
    // 1024×1024: h_grids = (1024 − 512 + 340) / 341 + 1 = 3.
    let windows = slide_windows((1024, 1024), &ade);
    assert_eq!(windows.len(), 9);
    assert_eq!(windows[1], (0, 512, 341, 853));
    assert_eq!(windows[8], (512, 1024, 512, 1024));
}

fn tiny_model() -> UperNet {
    let varmap = VarMap::new();
    let vb = trainable_builder(&varmap, HashMap::new(), 3, DType::F32, &Device::Cpu);
    let arch = ArchConfig::from(ResNetConfig::tiny().without_classifier());
    UperNet::build(&UperNetConfig::tiny(), &arch, &vb).unwrap()
}

#[test]
fn bad_inputs_are_errors_that_name_the_argument() {
    let model = tiny_model();
    let images = Tensor::zeros((2, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
    // A label above the class count (not the ignore index).
    let mut values = vec![0u8; 2 * 64 * 64];
    values[17] = 7;
    let labels = Tensor::from_vec(values, (2, 64, 64), &Device::Cpu).unwrap();
    let err = model.forward_train(&images, &labels, 0).unwrap_err();
    assert!(
        matches!(err, SegError::Input { what: "labels", .. }) && err.to_string().contains('7'),
        "{err}"
    );
    // Labels of another batch size.
    let err = model
        .forward_train(&images, &labels_for(1, 64, 64), 0)
        .unwrap_err();
    assert!(err.to_string().contains("labels"), "{err}");
    // Float labels.
    let float = Tensor::zeros((2, 64, 64), DType::F32, &Device::Cpu).unwrap();
    let err = model.forward_train(&images, &float, 0).unwrap_err();
    assert!(err.to_string().contains("labels"), "{err}");
    // Training crops off the size divisor.
    let odd = Tensor::zeros((2, 3, 60, 64), DType::F32, &Device::Cpu).unwrap();
    let err = model
        .forward_train(&odd, &labels_for(2, 60, 64), 0)
        .unwrap_err();
    assert!(err.to_string().contains("multiples of 32"), "{err}");
    // One image: the pool-1 branch's BatchNorm has one value per channel.
    let one = Tensor::zeros((1, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
    let err = model
        .forward_train(&one, &labels_for(1, 64, 64), 0)
        .unwrap_err();
    assert!(err.to_string().contains("more than one value"), "{err}");
    // Not an image batch.
    let gray = Tensor::zeros((1, 1, 64, 64), DType::F32, &Device::Cpu).unwrap();
    assert!(model.forward(&gray).is_err());
    // Too many classes for an 8-bit map.
    let logits = Tensor::zeros((1, 300, 2, 2), DType::F32, &Device::Cpu).unwrap();
    assert!(argmax(&logits).is_err());
    // Configs.
    let mut cfg = UperNetConfig::tiny();
    cfg.num_classes = 0;
    assert!(cfg.check().unwrap_err().to_string().contains("num_classes"));
    let mut cfg = UperNetConfig::ade20k();
    cfg.dropout = 1.0;
    assert!(cfg.check().unwrap_err().to_string().contains("dropout"));
    let bad_slide = SlideConfig {
        crop: (0, 512),
        stride: (341, 341),
    };
    assert!(model.slide_inference(&images, &bad_slide).is_err());
}

#[test]
fn inference_shapes_and_argmax() {
    let model = tiny_model();
    let images = Tensor::randn(0f32, 1.0, (1, 3, 70, 90), &Device::Cpu).unwrap();
    let whole = model.forward(&images).unwrap();
    assert_eq!(whole.dims(), &[1, 5, 70, 90]);
    let slide = model
        .slide_inference(
            &images,
            &SlideConfig {
                crop: (64, 64),
                stride: (43, 43),
            },
        )
        .unwrap();
    assert_eq!(slide.dims(), &[1, 5, 70, 90]);
    let back = rtb_segmentation::resize_logits(&slide, (140, 180)).unwrap();
    let labels = argmax(&back).unwrap();
    assert_eq!(labels.dims(), &[1, 140, 180]);
    assert_eq!(labels.dtype(), DType::U8);
    let max = labels
        .flatten_all()
        .unwrap()
        .to_vec1::<u8>()
        .unwrap()
        .into_iter()
        .max()
        .unwrap();
    assert!(max < 5);
    // Inference records no graph.
    assert!(!whole.is_variable() && whole.backward().unwrap().get(&whole).is_some());
}
