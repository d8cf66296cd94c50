//! Both transfer regimes end to end on a synthetic CIFAR-format set made here, with a tiny
//! ResNet: learning, which variables change, bit-identical resume, the evaluation files, and
//! an autocast step against the f32 one.
#![allow(clippy::print_stderr)] // Tests report the accuracy they reached.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Tensor;
use rtb_cifar::{
    CifarCSource, CifarConfig, EvalOverrides, build_task, evaluate, train, train_task,
};
use rtb_corruption::Corruption;
use rtb_results::{CellMetrics, Regime};
use rtb_train::{Checkpointer, DecayConfig, NullObserver, OptimizerConfig, RunDir, TrainTask};

fn bytes_of(tensor: &Tensor) -> Vec<u8> {
    tensor
        .flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

fn backbone_bytes(task: &rtb_cifar::CifarTask) -> BTreeMap<String, Vec<u8>> {
    task.model()
        .backbone()
        .parameters()
        .into_iter()
        .map(|p| (p.name, bytes_of(&p.tensor)))
        .collect()
}

fn config(data: &Path, weights: &Path, regime: Regime, epochs: usize) -> CifarConfig {
    let arch = rtb_models::ArchConfig::from_name("resnet_tiny").unwrap();
    let mut cfg = CifarConfig::new(arch, "tiny", Some(weights.into()), regime, data.into());
    cfg.preset = "test".into();
    cfg.image_size = 32;
    cfg.batch_size = 16;
    cfg.workers = 1;
    cfg.seed = 5;
    cfg.engine.epochs = epochs;
    cfg.engine.log_every = 5;
    cfg.engine.optimizer = OptimizerConfig::Sgd {
        lr: match regime {
            Regime::Full => 0.05,
            Regime::Fixed => 0.2,
        },
        momentum: 0.9,
        weight_decay: 5e-4,
        nesterov: false,
    };
    cfg.eval.batch_size = 40;
    cfg
}

#[test]
fn full_network_fine_tuning_learns_and_trains_every_variable() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::write_dataset(&dir.path().join("data"), 32, 80);
    let weights = dir.path().join("tiny.safetensors");
    common::write_weights(&weights, "resnet_tiny");
    let mut cfg = config(&data, &weights, Regime::Full, 6);
    cfg.eval.corruptions = vec![Corruption::GaussianNoise, Corruption::Contrast];
    cfg.eval.source = CifarCSource::OnTheFly;

    let before = build_task(&cfg, 4).unwrap();
    let initial: BTreeMap<String, Vec<u8>> = before
        .trainable_vars()
        .into_iter()
        .map(|(name, var)| (name, bytes_of(var.as_tensor())))
        .collect();
    let run_dir = dir.path().join("run");
    let (task, summary) = train_task(&cfg, &run_dir, &mut NullObserver).unwrap();
    assert_eq!(summary.iterations, 6 * (160 / 16));

    // Every trainable variable moved; the optimizer held the backbone and the head.
    let trained = task.trainable_vars();
    assert_eq!(trained.len(), initial.len());
    assert!(
        trained
            .iter()
            .any(|(n, _)| n.starts_with("backbone.layer4"))
    );
    for (name, var) in &trained {
        assert_ne!(
            initial[name],
            bytes_of(var.as_tensor()),
            "{name} did not change"
        );
    }

    // config.json came first and holds the seed; the log and checkpoints are there.
    let run = RunDir::new(&run_dir);
    let written: CifarConfig = run.read_config().unwrap();
    assert_eq!(written, cfg);
    assert!(run.log_path().is_file());
    assert!(run.has_checkpoint().unwrap());

    let metrics = evaluate(&run_dir, &EvalOverrides::default(), &mut NullObserver).unwrap();
    // Chance is 0.25 on four balanced classes.
    assert!(
        metrics.primary.clean >= 0.7,
        "clean top-1 {}",
        metrics.primary.clean
    );
    eprintln!(
        "full-network clean top-1 {:.3}; gaussian_noise {:?}",
        metrics.primary.clean,
        metrics.primary.corrupted[&Corruption::GaussianNoise]
    );
    let read = CellMetrics::read(&run_dir.join("metrics.json")).unwrap();
    assert_eq!(read.primary, metrics.primary);
    assert_eq!(read.cell.to_string(), "test/tiny/cifar10/full");
    assert_eq!(read.primary.corrupted.len(), 2);
    assert_eq!(read.info["images"], 80);
}

#[test]
fn the_fixed_feature_regime_changes_no_backbone_variable() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::write_dataset(&dir.path().join("data"), 16, 40);
    let weights = dir.path().join("tiny.safetensors");
    common::write_weights(&weights, "resnet_tiny");
    for cache in [false, true] {
        let mut cfg = config(&data, &weights, Regime::Fixed, 3);
        // Features are cached only without augmentation.
        cfg.augment = !cache;
        assert_eq!(cfg.uses_feature_cache(), cache);
        let before = build_task(&cfg, 4).unwrap();
        let backbone_before = backbone_bytes(&before);
        let head_before: Vec<Vec<u8>> = before
            .trainable_vars()
            .iter()
            .map(|(_, v)| bytes_of(v.as_tensor()))
            .collect();
        let run_dir = dir.path().join(format!("run-{cache}"));
        let (task, _) = train_task(&cfg, &run_dir, &mut NullObserver).unwrap();
        // The optimizer held only the head.
        let names: Vec<String> = task.trainable_vars().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["head.weight", "head.bias"]);
        assert_eq!(backbone_bytes(&task), backbone_before, "cache {cache}");
        let head_after: Vec<Vec<u8>> = task
            .trainable_vars()
            .iter()
            .map(|(_, v)| bytes_of(v.as_tensor()))
            .collect();
        assert_ne!(head_after, head_before);
        // Checkpoints hold the head only; the backbone comes from its weights file.
        let record = RunDir::new(&run_dir)
            .checkpointer()
            .latest()
            .unwrap()
            .unwrap();
        let checkpoint = Checkpointer::load(&record.path, &candle_core::Device::Cpu).unwrap();
        assert_eq!(checkpoint.model.len(), 2);
    }
}

#[test]
fn resume_is_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::write_dataset(&dir.path().join("data"), 16, 8);
    let weights = dir.path().join("tiny.safetensors");
    common::write_weights(&weights, "resnet_tiny");
    let mut cfg = config(&data, &weights, Regime::Full, 2);
    cfg.engine.schedule.decay = DecayConfig::Cosine { min_lr: 0.0 };
    cfg.engine.clip_grad_norm = Some(10.0);
    // 80 images, batch 16: 5 iterations per epoch, 10 in all; stop at 7 (mid-epoch).
    let whole_dir = dir.path().join("whole");
    let (whole, _) = train_task(&cfg, &whole_dir, &mut NullObserver).unwrap();

    let split_dir = dir.path().join("split");
    let mut first = cfg.clone();
    first.engine.max_iters = Some(7);
    let summary = train(&first, &split_dir, &mut NullObserver).unwrap();
    assert_eq!(summary.iterations, 7);
    let mut second = cfg.clone();
    second.workers = 3;
    let (resumed, summary) = train_task(&second, &split_dir, &mut NullObserver).unwrap();
    assert_eq!(summary.iterations, 10);
    assert!(
        summary
            .resumed_from
            .unwrap()
            .ends_with("checkpoint-00000007.safetensors")
    );

    let state = |task: &rtb_cifar::CifarTask| -> BTreeMap<String, Vec<u8>> {
        task.state_tensors()
            .unwrap()
            .iter()
            .map(|(k, t)| (k.clone(), bytes_of(t)))
            .collect()
    };
    let (a, b) = (state(&whole), state(&resumed));
    assert_eq!(a.len(), b.len());
    assert!(a.keys().any(|k| k.ends_with("running_mean")));
    for (key, value) in &a {
        assert_eq!(value, &b[key], "{key} differs after resume");
    }

    // Another configuration in the same directory is refused, naming what differs.
    let mut other = cfg.clone();
    other.image_size = 64;
    let err = train(&other, &split_dir, &mut NullObserver)
        .unwrap_err()
        .to_string();
    assert!(err.contains("image_size"), "{err}");
}

#[test]
fn missing_and_broken_data_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("tiny.safetensors");
    common::write_weights(&weights, "resnet_tiny");
    let cfg = config(&dir.path().join("nowhere"), &weights, Regime::Full, 1);
    let err = train(&cfg, &dir.path().join("run"), &mut NullObserver)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("batches.meta.txt") && err.contains("missing"),
        "{err}"
    );

    let data = common::write_dataset(&dir.path().join("data"), 4, 4);
    let path = data.join("data_batch_3.bin");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let cfg = config(&data, &weights, Regime::Full, 1);
    let err = train(&cfg, &dir.path().join("run2"), &mut NullObserver)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("data_batch_3.bin") && err.contains("record 3"),
        "{err}"
    );

    // Evaluating a run that never trained names the missing checkpoints.
    std::fs::write(&path, &bytes).unwrap();
    let run = dir.path().join("run3");
    RunDir::new(&run).write_config(&cfg).unwrap();
    let err = evaluate(&run, &EvalOverrides::default(), &mut NullObserver)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checkpoints") && err.contains("train it first"),
        "{err}"
    );
}

/// Regression: parameter groups found norms by name prefix (`bn`, `norm`, …), so a norm
/// with another name — torchvision's shortcut norm `downsample.1`, ConvNeXt's `stem.1` —
/// got weight decay. Groups now follow the backbone's parameter kinds.
#[test]
fn norms_get_no_weight_decay_whatever_their_names() {
    for arch_name in ["resnet_tiny", "convnext_tiny", "swin_tiny"] {
        let arch = rtb_models::ArchConfig::from_name(arch_name).unwrap();
        let model = rtb_cifar::Classifier::build(
            &arch,
            None,
            Regime::Full,
            10,
            0,
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let kinds: BTreeMap<String, rtb_models::ParamKind> = model
            .backbone()
            .parameters()
            .into_iter()
            .map(|p| (format!("{}{}", rtb_cifar::BACKBONE_PREFIX, p.name), p.kind))
            .collect();
        let groups =
            rtb_train::GroupsConfig::no_decay_for_norms_and_biases().build(model.trainable_roles());
        let mut seen = 0;
        for group in &groups {
            for (name, _) in &group.params {
                let Some(kind) = kinds.get(name) else {
                    continue; // the head
                };
                seen += 1;
                let decays = matches!(kind, rtb_models::ParamKind::Weight);
                assert_eq!(
                    group.decay_mult != 0.0,
                    decays,
                    "{arch_name}: {name} ({kind:?}) in a group with decay_mult {}",
                    group.decay_mult
                );
            }
        }
        assert_eq!(seen, model.backbone().trainable_vars().len(), "{arch_name}");
    }
    // The names alone would have missed the ResNet shortcut's norm.
    let by_name = rtb_nn::optim::ParamGroupsBuilder::default().norm_decay_mult(0.0);
    assert_eq!(
        by_name
            .multipliers("backbone.layer1.0.downsample.1.weight")
            .1,
        1.0
    );
    assert_eq!(
        by_name
            .multipliers_with_role(
                "backbone.layer1.0.downsample.1.weight",
                Some(rtb_nn::optim::ParamRole::Norm)
            )
            .1,
        0.0
    );
}

#[test]
fn an_autocast_step_follows_the_f32_step_with_f32_gradients() {
    // Half-precision activations over f32 weights (f16 here: candle's CPU backend has no bf16
    // matrix product; the GPU runs the same paths in bf16).
    use candle_core::{DType, Device};
    use rtb_train::{StepContext, TrainTask};
    let ctx = StepContext {
        iteration: 0,
        epoch: 0,
        batch_in_epoch: 0,
        seed: 5,
        learning_rate: 0.01,
    };
    let images = rtb_models::init::draw(
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
        &(8, 3, 32, 32).into(),
        9,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    // Measured agreement with the f32 gradients: ResNet 0.991 overall (0.943 for the worst
    // tensor: BatchNorm over few values amplifies rounding), Swin 0.99999 (0.962). ConvNeXt's
    // layer scale of 1e-6 underflows f16 gradients to zero (not bf16's: it has f32's range),
    // so it is checked against PyTorch's autocast in rtb-models instead.
    for (arch_name, overall, worst) in [("resnet_tiny", 0.98, 0.9), ("swin_tiny", 0.999, 0.9)] {
        let arch = rtb_models::ArchConfig::from_name(arch_name).unwrap();
        let step = |dtype: DType| {
            let model = rtb_cifar::Classifier::build(
                &arch,
                None,
                Regime::Full,
                10,
                3,
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
            let mut task = rtb_cifar::CifarTask::new(model, 64, Device::Cpu, dtype);
            let batch = rtb_cifar::CifarBatch {
                indices: (0..8).collect(),
                images: Some(images.clone()),
                labels: (0..8).map(|i| i % 10).collect(),
            };
            let out = task.train_step(batch, &ctx).unwrap();
            let grads = out.loss.backward().unwrap();
            let vars = task.trainable_vars();
            assert!(vars.iter().all(|(_, var)| var.dtype() == DType::F32));
            let grads = rtb_nn::autocast::master_gradients(&vars, &grads).unwrap();
            (out.loss.to_scalar::<f32>().unwrap(), grads)
        };
        let (loss32, grads32) = step(DType::F32);
        let (loss16, grads16) = step(DType::F16);
        assert!(
            (loss16 - loss32).abs() <= 1e-3 * loss32.abs(),
            "{arch_name}: loss {loss16} under autocast, {loss32} in f32"
        );
        let agreement = rtb_nn::autocast::agreement(&grads16, &grads32).unwrap();
        assert!(
            agreement.overall >= overall && agreement.worst.0 >= worst,
            "{arch_name}: {agreement:?}"
        );
    }
}
